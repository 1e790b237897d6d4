#include "server/service/tensor_service.h"

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/cluster/forward.h"
#include "server/service/proto_convert.h"
#include "server/service/reactors.h"
#include "server/service/request_limits.h"
#include "server/service/status.h"

namespace tensorcast {
namespace {

// A unary call: gRPC's context, the request as it arrived and where the
// response goes, and the parsed messages the handler body works on.
template <typename Request, typename Response>
struct UnaryCall {
  UnaryCall(grpc::CallbackServerContext* context,
            const grpc::ByteBuffer* raw_request, grpc::ByteBuffer* raw_response,
            const RequestLimits& limits)
      : context(context),
        raw_request(raw_request),
        raw_response(raw_response),
        limits(limits) {}
  grpc::CallbackServerContext* const context;
  const grpc::ByteBuffer* const raw_request;
  grpc::ByteBuffer* const raw_response;
  const RequestLimits& limits;
  Request request;
  Response response;
};

// Admits the call (token first: a stranger's request is not even parsed),
// parses its request within its limits, runs the handler body with the
// caller, and finishes the call with the body's status and response.
template <typename Request, typename Response, typename Body>
grpc::ServerUnaryReactor* Reply(ServiceContext* service, const char* method,
                                UnaryCall<Request, Response>& call, Body body) {
  auto start = std::chrono::steady_clock::now();
  service->UnaryStarted();
  grpc::CallbackServerContext* ctx = call.context;
  absl::StatusOr<Caller> caller = service->Admit(ctx);
  absl::Status status = caller.status();
  if (caller.ok()) {
    status =
        ParseRequest(*call.raw_request, method, call.limits, &call.request);
    if (status.ok()) status = body(*caller);
    bool own_buffer;
    if (status.ok() && !grpc::SerializationTraits<Response>::Serialize(
                            call.response, call.raw_response, &own_buffer)
                            .ok()) {
      status = absl::InternalError(
          absl::StrCat("cannot encode the ", method, " response"));
    }
  }
  LogRpc(service, method, ctx, status, start);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(
      caller.ok() ? ServiceContext::ForCaller(status, *caller) : status));
  // Counted out only once the reply is handed to gRPC, so a drain that sees
  // no calls left cannot cut off a computed reply.
  service->UnaryEnded();
  return reactor;
}

}  // namespace

grpc::ServerWriteReactor<v1::SharedMemoryEvent>*
TensorServiceImpl::OpenSharedMemory(
    grpc::CallbackServerContext* ctx,
    const v1::OpenSharedMemoryRequest* request) {
  return NewSharedMemorySession(&context_, ctx, request);
}

grpc::ServerReadReactor<grpc::ByteBuffer>* TensorServiceImpl::Put(
    grpc::CallbackServerContext* ctx, grpc::ByteBuffer* response) {
  return NewPutReactor(&context_, ctx, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* TensorServiceImpl::Fetch(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) {
  if (auto* r = MaybeForwardFetch(&context_, ctx, request)) return r;
  return NewFetchReactor(&context_, ctx, request);
}

grpc::ServerUnaryReactor* TensorServiceImpl::Create(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  UnaryCall<v1::CreateRequest, v1::CreateResponse> ctx(
      call, raw_request, raw_response, kCreateLimits);
  const v1::CreateRequest* request = &ctx.request;
  v1::CreateResponse* response = &ctx.response;
  return Reply(
      &context_, "Create", ctx, [&](const Caller& caller) -> absl::Status {
        absl::StatusOr<CreateSpec> spec = CreateSpecFromProto(*request);
        if (!spec.ok()) return spec.status();
        absl::StatusOr<TensorPtr> t =
            CreateTensor(context_.ContextFor(caller), *std::move(spec));
        if (!t.ok()) return t.status();
        FillTensorInfo(**t, response->mutable_tensor());
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* TensorServiceImpl::Info(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  if (auto* r = MaybeForwardUnary(&context_, "Info", call, raw_request,
                                  raw_response)) {
    return r;
  }
  UnaryCall<v1::InfoRequest, v1::InfoResponse> ctx(call, raw_request,
                                                   raw_response, kSmallLimits);
  const v1::InfoRequest* request = &ctx.request;
  v1::InfoResponse* response = &ctx.response;
  return Reply(&context_, "Info", ctx,
               [&](const Caller& caller) -> absl::Status {
                 absl::StatusOr<TensorPtr> t =
                     context_.store()->Get(request->ref(), caller.tenant.get());
                 if (!t.ok()) return t.status();
                 FillTensorInfo(**t, response->mutable_tensor());
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* TensorServiceImpl::List(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  UnaryCall<v1::ListRequest, v1::ListResponse> ctx(call, raw_request,
                                                   raw_response, kSmallLimits);
  const v1::ListRequest* request = &ctx.request;
  v1::ListResponse* response = &ctx.response;
  return Reply(
      &context_, "List", ctx, [&](const Caller& caller) -> absl::Status {
        absl::StatusOr<TensorStore::Page> page =
            context_.store()->List(request->page_size(), request->page_token(),
                                   request->name_prefix(), caller.tenant.get());
        if (!page.ok()) return page.status();
        for (const TensorPtr& t : page->tensors) {
          FillTensorInfo(*t, response->add_tensors());
        }
        response->set_next_page_token(page->next_page_token);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* TensorServiceImpl::Delete(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  if (auto* r = MaybeForwardUnary(&context_, "Delete", call, raw_request,
                                  raw_response)) {
    return r;
  }
  UnaryCall<v1::DeleteRequest, v1::DeleteResponse> ctx(
      call, raw_request, raw_response, kDeleteLimits);
  const v1::DeleteRequest* request = &ctx.request;
  v1::DeleteResponse* response = &ctx.response;
  return Reply(
      &context_, "Delete", ctx, [&](const Caller& caller) -> absl::Status {
        if (request->refs().empty()) {
          return absl::InvalidArgumentError("Delete needs at least one ref");
        }
        std::vector<std::string> refs(request->refs().begin(),
                                      request->refs().end());
        absl::StatusOr<int> n =
            context_.store()->Delete(refs, caller.tenant.get());
        if (!n.ok()) return n.status();
        response->set_deleted(*n);
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* TensorServiceImpl::Detach(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  if (auto* r = MaybeForwardUnary(&context_, "Detach", call, raw_request,
                                  raw_response)) {
    return r;
  }
  UnaryCall<v1::DetachRequest, v1::DetachResponse> ctx(
      call, raw_request, raw_response, kSmallLimits);
  const v1::DetachRequest* request = &ctx.request;
  v1::DetachResponse* response = &ctx.response;
  return Reply(&context_, "Detach", ctx,
               [&](const Caller& caller) -> absl::Status {
                 absl::StatusOr<TensorPtr> src =
                     context_.store()->Get(request->ref(), caller.tenant.get());
                 if (!src.ok()) return src.status();
                 absl::StatusOr<TensorPtr> t =
                     DetachTensor(context_.ContextFor(caller), *src,
                                  request->name(), request->ttl_seconds());
                 if (!t.ok()) return t.status();
                 FillTensorInfo(**t, response->mutable_tensor());
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* TensorServiceImpl::To(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  if (auto* r =
          MaybeForwardUnary(&context_, "To", call, raw_request, raw_response)) {
    return r;
  }
  UnaryCall<v1::ToRequest, v1::ToResponse> ctx(call, raw_request, raw_response,
                                               kSmallLimits);
  const v1::ToRequest* request = &ctx.request;
  v1::ToResponse* response = &ctx.response;
  return Reply(&context_, "To", ctx, [&](const Caller& caller) -> absl::Status {
    absl::StatusOr<ToSpec> spec = ToSpecFromProto(*request);
    if (!spec.ok()) return spec.status();
    absl::StatusOr<TensorPtr> src =
        context_.store()->Get(request->ref(), caller.tenant.get());
    if (!src.ok()) return src.status();
    absl::StatusOr<TensorPtr> t =
        ToTensor(context_.ContextFor(caller), *src, *spec);
    if (!t.ok()) return t.status();
    FillTensorInfo(**t, response->mutable_tensor());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensorServiceImpl::Stats(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  UnaryCall<v1::StatsRequest, v1::StatsResponse> ctx(
      call, raw_request, raw_response, kSmallLimits);
  v1::StatsResponse* response = &ctx.response;
  return Reply(&context_, "Stats", ctx,
               [&](const Caller& caller) -> absl::Status {
                 context_.FillStats(caller, response);
                 return absl::OkStatus();
               });
}

grpc::ServerUnaryReactor* TensorServiceImpl::EmptyCache(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  UnaryCall<v1::EmptyCacheRequest, v1::EmptyCacheResponse> ctx(
      call, raw_request, raw_response, kSmallLimits);
  const v1::EmptyCacheRequest* request = &ctx.request;
  v1::EmptyCacheResponse* response = &ctx.response;
  return Reply(
      &context_, "EmptyCache", ctx, [&](const Caller& caller) -> absl::Status {
        if (!caller.admin) {
          return absl::PermissionDeniedError(
              "EmptyCache is for admin tokens: it acts on the whole server");
        }
        int64_t released = 0;
        if (request->device().empty()) {
          for (const auto& device : context_.devices()->all()) {
            released += device->pool().EmptyCache();
          }
          // The GPUs' pinned staging goes back to the OS too.
          if (CachingPool* pinned = context_.devices()->pinned_pool()) {
            released += pinned->EmptyCache();
          }
        } else {
          absl::StatusOr<Device*> device =
              context_.devices()->Get(request->device());
          if (!device.ok()) return device.status();
          released = (*device)->pool().EmptyCache();
        }
        response->set_released_bytes(released);
        return absl::OkStatus();
      });
}

}  // namespace tensorcast
