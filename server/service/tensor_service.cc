#include "server/service/tensor_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/descriptor.h"
#include "proto/wire.h"
#include "server/cluster/forward.h"
#include "server/core/caller_message.h"
#include "server/core/echo.h"
#include "server/core/size.h"
#include "server/service/logging.h"
#include "server/service/proto_convert.h"
#include "server/service/status.h"

namespace tensorcast {
namespace {

// A failed RPC's message is logged up to this long.
constexpr size_t kMaxLoggedMessageBytes = 1024;

}  // namespace

void LogRpc(TensorServiceImpl* service, const char* method,
            grpc::CallbackServerContext* ctx, const absl::Status& status,
            std::chrono::steady_clock::time_point start) {
  double ms = std::chrono::duration<double, std::milli>(
                  std::chrono::steady_clock::now() - start)
                  .count();
  service->metrics().RecordRpc(method, status.code(), ms / 1000);
  const spdlog::level::level_enum level =
      status.ok() ? spdlog::level::debug : spdlog::level::warn;
  if (!spdlog::should_log(level)) return;
  std::vector<LogField> fields = {
      {"method", method},
      {"code", absl::StatusCodeToString(status.code())},
      {"peer", ctx->peer()},
      {"ms", absl::StrFormat("%.3f", ms), /*number=*/true}};
  // The message may quote what the client sent (escaped and cut short
  // where it was quoted). On the line it is cut to a bounded length and
  // written as a JSON string (quotes, backslashes and control characters
  // escaped), so that nothing in it can end the message="..." field.
  std::string message;
  if (!status.ok()) {
    absl::string_view text = status.message();
    std::string cut(text.substr(0, kMaxLoggedMessageBytes));
    if (cut.size() < text.size()) {
      absl::StrAppend(&cut, "...(", text.size(), " bytes)");
    }
    AppendJsonString(cut, &message);
    fields.push_back({"error", std::move(cut)});
  }
  ScopedLogFields scoped(std::move(fields));
  if (status.ok()) {
    spdlog::debug("rpc={} peer={} code=OK ms={:.3f}", method, ctx->peer(), ms);
  } else {
    spdlog::warn("rpc={} peer={} code={} ms={:.3f} message={}", method,
                 ctx->peer(), absl::StatusCodeToString(status.code()), ms,
                 message);
  }
}

namespace {

// What a unary request may hold, checked on its encoded bytes before
// protobuf parses it. Parsing costs memory per field (an unknown or
// repeated string field of two bytes becomes a heap string of tens), so a
// request's fields are counted, not only its bytes: its own, those of the
// embedded messages named in `nested`, and one repeated field's entries.
struct RequestLimits {
  size_t max_bytes = 64 << 10;
  int max_fields = 32;
  struct Nested {
    int field;
    int max_fields;
  };
  std::vector<Nested> nested;
  int counted_field = 0;  // 0: none
  int max_counted = 0;
  const char* counted_what = "";
};

constexpr int kMaxLiteralFields = (1 << 17) + 32;  // every value unpacked

// Create's literal values come unpacked in up to kMaxLiteralFields fields;
// its other messages (arange, the empty ones) are small.
const RequestLimits kCreateLimits = {
    static_cast<size_t>(kMaxReceiveMessageBytes),
    32 + static_cast<int>(kMaxRank),  // unpacked shape dims
    {{16, kMaxLiteralFields}, {13, 32}, {10, 32}, {11, 32}, {14, 32}}};
const RequestLimits kDeleteLimits = {
    static_cast<size_t>(kMaxReceiveMessageBytes),
    kMaxDeleteRefs + 32,
    {},
    1,
    kMaxDeleteRefs,
    "refs"};
const RequestLimits kSmallLimits = {};

bool ReadVarint(absl::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    const uint8_t b = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

absl::Status Malformed(const char* method) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed ", method, " request"));
}

// Walks an encoded message's fields, calling field(number, payload) for
// each (payload: a length-delimited field's bytes, else empty) until it
// returns an error. INVALID_ARGUMENT when the bytes are not a message, or
// hold groups (which no request has).
template <typename F>
absl::Status ForEachField(absl::string_view in, const char* method, F field) {
  while (!in.empty()) {
    uint64_t tag, n;
    if (!ReadVarint(&in, &tag) || (tag >> 3) == 0) return Malformed(method);
    absl::string_view payload;
    switch (tag & 7) {
      case wire::kVarint:
        if (!ReadVarint(&in, &n)) return Malformed(method);
        break;
      case wire::kFixed64:
      case wire::kFixed32: {
        const size_t width = (tag & 7) == wire::kFixed64 ? 8 : 4;
        if (in.size() < width) return Malformed(method);
        in.remove_prefix(width);
        break;
      }
      case wire::kLengthDelimited:
        if (!ReadVarint(&in, &n) || n > in.size()) return Malformed(method);
        payload = in.substr(0, n);
        in.remove_prefix(n);
        break;
      default:
        return Malformed(method);
    }
    if (absl::Status s = field(tag >> 3, payload); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status TooManyFields(const char* method, int max) {
  return absl::InvalidArgumentError(absl::StrCat(
      "a ", method, " request (or a message in it) holds more than ", max,
      " fields"));
}

// Refuses the encoded request past `limits`: too many fields of its own,
// of the counted field, or in all the occurrences of each nested message
// field (INVALID_ARGUMENT); bytes that are not a message.
absl::Status ScanFields(absl::string_view in, const char* method,
                        const RequestLimits& limits) {
  int fields = 0;
  int counted = 0;
  std::vector<int> nested_fields(limits.nested.size(), 0);
  return ForEachField(
      in, method, [&](uint64_t number, absl::string_view payload) {
        if (++fields > limits.max_fields) {
          return TooManyFields(method, limits.max_fields);
        }
        if (number == static_cast<uint64_t>(limits.counted_field) &&
            ++counted > limits.max_counted) {
          return absl::InvalidArgumentError(absl::StrCat(
              method, " takes at most ", limits.max_counted, " ",
              limits.counted_what, " per call; split the request"));
        }
        for (size_t i = 0; i < limits.nested.size(); ++i) {
          if (number != static_cast<uint64_t>(limits.nested[i].field)) continue;
          const int max = limits.nested[i].max_fields;
          int& seen = nested_fields[i];
          if (absl::Status s = ForEachField(
                  payload, method,
                  [&](uint64_t, absl::string_view) {
                    return ++seen > max ? TooManyFields(method, max)
                                        : absl::OkStatus();
                  });
              !s.ok()) {
            return s;
          }
        }
        return absl::OkStatus();
      });
}

absl::Status TooBig(const char* method, size_t max, size_t bytes) {
  return absl::ResourceExhaustedError(
      absl::StrCat("a ", method, " request is at most ", max,
                   " bytes; this one has ", bytes));
}

// The request, parsed once its size and fields are within `limits`.
absl::Status ParseRequest(absl::string_view bytes, const char* method,
                          const RequestLimits& limits,
                          google::protobuf::MessageLite* request) {
  if (bytes.size() > limits.max_bytes) {
    return TooBig(method, limits.max_bytes, bytes.size());
  }
  if (absl::Status s = ScanFields(bytes, method, limits); !s.ok()) return s;
  if (!request->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Malformed(method);
  }
  return absl::OkStatus();
}

absl::Status ParseRequest(const grpc::ByteBuffer& raw, const char* method,
                          const RequestLimits& limits,
                          google::protobuf::MessageLite* request) {
  // Refused before the bytes are even gathered.
  if (raw.Length() > limits.max_bytes) {
    return TooBig(method, limits.max_bytes, raw.Length());
  }
  std::vector<grpc::Slice> slices;
  if (!raw.Dump(&slices).ok()) return Malformed(method);
  std::string bytes;
  bytes.reserve(raw.Length());
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return ParseRequest(bytes, method, limits, request);
}

// Fetch's request and Put's header: small, with an unpacked shape at most.
const RequestLimits kStreamLimits = {
    64 << 10, 32 + static_cast<int>(kMaxRank), {}, 0, 0, ""};

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
grpc::ServerUnaryReactor* Reply(TensorServiceImpl* service, const char* method,
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
      caller.ok() ? TensorServiceImpl::ForCaller(status, *caller) : status));
  // Counted out only once the reply is handed to gRPC, so a drain that sees
  // no calls left cannot cut off a computed reply.
  service->UnaryEnded();
  return reactor;
}

// Packs a Literal's one non-empty list as contiguous elements.
absl::Status LiteralToSpec(const v1::Literal& literal, CreateSpec* spec) {
  int lists =
      (literal.float_values_size() > 0) + (literal.int_values_size() > 0) +
      (literal.uint_values_size() > 0) + (literal.bool_values_size() > 0) +
      (literal.complex_values_size() > 0);
  if (lists > 1) {
    return absl::InvalidArgumentError(
        "a literal gives values in exactly one of its lists");
  }
  auto pack = [spec](DType dtype, const auto& values) {
    spec->literal_dtype = dtype;
    spec->literal_bytes.resize(values.size() * ItemSize(dtype));
    char* out = spec->literal_bytes.data();
    for (auto v : values) {
      std::memcpy(out, &v, sizeof(v));
      out += sizeof(v);
    }
  };
  if (literal.int_values_size() > 0) {
    pack(DType::kInt64, literal.int_values());
  } else if (literal.uint_values_size() > 0) {
    pack(DType::kUInt64, literal.uint_values());
  } else if (literal.bool_values_size() > 0) {
    std::vector<uint8_t> bools(literal.bool_values().begin(),
                               literal.bool_values().end());
    pack(DType::kBool, bools);
  } else if (literal.complex_values_size() > 0) {
    if (literal.complex_values_size() % 2 != 0) {
      return absl::InvalidArgumentError(
          "complex_values holds (real, imaginary) pairs: its length must be "
          "even");
    }
    pack(DType::kFloat64, literal.complex_values());
    spec->literal_dtype = DType::kComplex128;
  } else {
    pack(DType::kFloat64, literal.float_values());
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status TensorServiceImpl::CheckAccepting() const {
  if (draining_.load()) {
    return absl::UnavailableError(
        "the server is shutting down; retry against another instance");
  }
  return absl::OkStatus();
}

// The service's method names, from its descriptor.
static std::vector<std::string> MethodNames() {
  std::vector<std::string> names;
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          v1::TensorService::service_full_name());
  for (int i = 0; service != nullptr && i < service->method_count(); ++i) {
    names.push_back(service->method(i)->name());
  }
  return names;
}

TensorServiceImpl::TensorServiceImpl(TensorStore* store,
                                     const DeviceRegistry* devices,
                                     const Authenticator* auth,
                                     ServiceOptions options)
    : ctx_{store, devices, options.max_tensor_bytes, nullptr},
      auth_(auth),
      options_(options),
      shared_memory_(options.shared_memory_dir, options.shared_memory_limits),
      shm_workers_(options.shared_memory
                       ? std::make_unique<WorkerPool>(std::clamp<int>(
                             std::thread::hardware_concurrency() / 2, 2, 8))
                       : nullptr),
      metrics_(MethodNames()) {}

ServiceSnapshot TensorServiceImpl::Snapshot() const {
  ServiceSnapshot snapshot;
  for (const auto& device : ctx_.devices->all()) {
    DeviceSnapshot& d = snapshot.devices.emplace_back();
    d.name = device->name();
    d.description = device->description();
    d.pool = device->pool().Stats();
    d.tensors = store()->CountOnDevice(device.get());
    d.tensor_bytes = store()->BytesOnDevice(device.get());
  }
  snapshot.tensors = store()->size();
  snapshot.active_streams = active_streams();
  snapshot.version = TENSORCAST_VERSION;
  return snapshot;
}

absl::StatusOr<Caller> TensorServiceImpl::Admit(
    grpc::CallbackServerContext* ctx, StreamSlot* slot, LiveCall* live) const {
  if (absl::Status s = CheckAccepting(); !s.ok()) return s;
  absl::StatusOr<Caller> caller = auth_->Authenticate(*ctx);
  if (!caller.ok()) return caller.status();
  if (live != nullptr) {
    if (absl::Status s = live->Start(*caller, ctx); !s.ok()) return s;
  }
  if (slot != nullptr) {
    if (absl::Status s = StreamSlot::Take(caller->tenant, slot); !s.ok()) {
      return s;
    }
  }
  return caller;
}

StreamBudget TensorServiceImpl::BudgetFor(const Caller& caller) const {
  return StreamBudget{caller.tenant, ctx_.devices->staging()};
}

ConversionContext TensorServiceImpl::ContextFor(const Caller& caller) const {
  ConversionContext ctx = ctx_;
  ctx.tenant = caller.tenant;
  return ctx;
}

absl::Status ParseStreamRequest(const grpc::ByteBuffer& bytes, const char* what,
                                google::protobuf::MessageLite* message) {
  return ParseRequest(bytes, what, kStreamLimits, message);
}

absl::Status ParseStreamRequest(absl::string_view bytes, const char* what,
                                google::protobuf::MessageLite* message) {
  return ParseRequest(bytes, what, kStreamLimits, message);
}

absl::Status TensorServiceImpl::ForCaller(const absl::Status& status,
                                          const Caller& caller) {
  if (caller.admin || status.ok()) return status;
  std::optional<std::string> message = CallerMessage(status);
  if (!message.has_value()) return status;
  if (caller.tenant != nullptr) {
    const int64_t quota = caller.tenant->limits().max_bytes;
    absl::StrAppend(&*message, "; tenant '", caller.tenant->name(), "' holds ",
                    FormatSize(caller.tenant->bytes()),
                    quota > 0
                        ? absl::StrCat(" of its quota of ", FormatSize(quota))
                        : std::string(" (no quota)"));
  }
  return absl::Status(status.code(), *message);
}

std::string TensorServiceImpl::RegionOwner(grpc::CallbackServerContext* ctx,
                                           const Caller& caller) {
  return absl::StrCat(ctx->peer(), " ", caller.name());
}

absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>>
TensorServiceImpl::FindRegion(grpc::CallbackServerContext* ctx,
                              const Caller& caller,
                              absl::string_view id) const {
  if (!options_.shared_memory) {
    return absl::FailedPreconditionError(kSharedMemoryOff);
  }
  return shared_memory_.Find(id, RegionOwner(ctx, caller));
}

grpc::ServerWriteReactor<v1::SharedMemoryEvent>*
TensorServiceImpl::OpenSharedMemory(
    grpc::CallbackServerContext* ctx,
    const v1::OpenSharedMemoryRequest* request) {
  return NewSharedMemorySession(this, ctx, request);
}

grpc::ServerReadReactor<grpc::ByteBuffer>* TensorServiceImpl::Put(
    grpc::CallbackServerContext* ctx, grpc::ByteBuffer* response) {
  return NewPutReactor(this, ctx, response);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* TensorServiceImpl::Fetch(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request) {
  if (auto* r = MaybeForwardFetch(this, ctx, request)) return r;
  return NewFetchReactor(this, ctx, request);
}

grpc::ServerUnaryReactor* TensorServiceImpl::Create(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  UnaryCall<v1::CreateRequest, v1::CreateResponse> ctx(
      call, raw_request, raw_response, kCreateLimits);
  const v1::CreateRequest* request = &ctx.request;
  v1::CreateResponse* response = &ctx.response;
  return Reply(this, "Create", ctx, [&](const Caller& caller) -> absl::Status {
    absl::StatusOr<std::optional<DType>> dtype = FromProto(request->dtype());
    if (!dtype.ok()) return dtype.status();
    CreateSpec spec;
    spec.shape.assign(request->shape().begin(), request->shape().end());
    spec.device = request->device();
    spec.requires_grad = request->requires_grad();
    spec.name = request->name();
    spec.ttl_seconds = request->ttl_seconds();
    switch (request->init_case()) {
      case v1::CreateRequest::kZeros:
      case v1::CreateRequest::INIT_NOT_SET:
        spec.init = CreateSpec::Init::kZeros;
        break;
      case v1::CreateRequest::kOnes:
        spec.init = CreateSpec::Init::kOnes;
        break;
      case v1::CreateRequest::kFull:
        spec.init = CreateSpec::Init::kFull;
        spec.value = request->full();
        break;
      case v1::CreateRequest::kArange:
        spec.init = CreateSpec::Init::kArange;
        spec.start = request->arange().start();
        spec.step = request->arange().step();
        break;
      case v1::CreateRequest::kEye:
        spec.init = CreateSpec::Init::kEye;
        break;
      case v1::CreateRequest::kRandSeed:
        spec.init = CreateSpec::Init::kRand;
        spec.seed = request->rand_seed();
        break;
      case v1::CreateRequest::kValues:
        spec.init = CreateSpec::Init::kLiteral;
        if (absl::Status s = LiteralToSpec(request->values(), &spec); !s.ok()) {
          return s;
        }
        break;
    }
    if (dtype->has_value()) {
      spec.dtype = **dtype;
    } else if (spec.init == CreateSpec::Init::kLiteral) {
      // torch.tensor's inference: bools stay bool, ints int64, floats
      // float32 (the default dtype), complex complex64.
      switch (spec.literal_dtype) {
        case DType::kBool:
          spec.dtype = DType::kBool;
          break;
        case DType::kInt64:
        case DType::kUInt64:
          spec.dtype = DType::kInt64;
          break;
        case DType::kComplex128:
          spec.dtype = DType::kComplex64;
          break;
        default:
          spec.dtype = DType::kFloat32;
      }
    } else {
      spec.dtype = DType::kFloat32;
    }
    absl::StatusOr<TensorPtr> t =
        CreateTensor(ContextFor(caller), std::move(spec));
    if (!t.ok()) return t.status();
    FillTensorInfo(**t, response->mutable_tensor());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensorServiceImpl::Info(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  if (auto* r =
          MaybeForwardUnary(this, "Info", call, raw_request, raw_response)) {
    return r;
  }
  UnaryCall<v1::InfoRequest, v1::InfoResponse> ctx(call, raw_request,
                                                   raw_response, kSmallLimits);
  const v1::InfoRequest* request = &ctx.request;
  v1::InfoResponse* response = &ctx.response;
  return Reply(this, "Info", ctx, [&](const Caller& caller) -> absl::Status {
    absl::StatusOr<TensorPtr> t =
        store()->Get(request->ref(), caller.tenant.get());
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
  return Reply(this, "List", ctx, [&](const Caller& caller) -> absl::Status {
    absl::StatusOr<TensorStore::Page> page =
        store()->List(request->page_size(), request->page_token(),
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
  if (auto* r =
          MaybeForwardUnary(this, "Delete", call, raw_request, raw_response)) {
    return r;
  }
  UnaryCall<v1::DeleteRequest, v1::DeleteResponse> ctx(
      call, raw_request, raw_response, kDeleteLimits);
  const v1::DeleteRequest* request = &ctx.request;
  v1::DeleteResponse* response = &ctx.response;
  return Reply(this, "Delete", ctx, [&](const Caller& caller) -> absl::Status {
    if (request->refs().empty()) {
      return absl::InvalidArgumentError("Delete needs at least one ref");
    }
    std::vector<std::string> refs(request->refs().begin(),
                                  request->refs().end());
    absl::StatusOr<int> n = store()->Delete(refs, caller.tenant.get());
    if (!n.ok()) return n.status();
    response->set_deleted(*n);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensorServiceImpl::Detach(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  if (auto* r =
          MaybeForwardUnary(this, "Detach", call, raw_request, raw_response)) {
    return r;
  }
  UnaryCall<v1::DetachRequest, v1::DetachResponse> ctx(
      call, raw_request, raw_response, kSmallLimits);
  const v1::DetachRequest* request = &ctx.request;
  v1::DetachResponse* response = &ctx.response;
  return Reply(this, "Detach", ctx, [&](const Caller& caller) -> absl::Status {
    absl::StatusOr<TensorPtr> src =
        store()->Get(request->ref(), caller.tenant.get());
    if (!src.ok()) return src.status();
    absl::StatusOr<TensorPtr> t = DetachTensor(
        ContextFor(caller), *src, request->name(), request->ttl_seconds());
    if (!t.ok()) return t.status();
    FillTensorInfo(**t, response->mutable_tensor());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensorServiceImpl::To(
    grpc::CallbackServerContext* call, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  if (auto* r =
          MaybeForwardUnary(this, "To", call, raw_request, raw_response)) {
    return r;
  }
  UnaryCall<v1::ToRequest, v1::ToResponse> ctx(call, raw_request, raw_response,
                                               kSmallLimits);
  const v1::ToRequest* request = &ctx.request;
  v1::ToResponse* response = &ctx.response;
  return Reply(this, "To", ctx, [&](const Caller& caller) -> absl::Status {
    absl::StatusOr<std::optional<DType>> dtype = FromProto(request->dtype());
    if (!dtype.ok()) return dtype.status();
    absl::StatusOr<TensorPtr> src =
        store()->Get(request->ref(), caller.tenant.get());
    if (!src.ok()) return src.status();
    ToSpec spec;
    spec.device = request->device();
    spec.dtype = *dtype;
    spec.copy = request->copy();
    spec.name = request->name();
    spec.ttl_seconds = request->ttl_seconds();
    absl::StatusOr<TensorPtr> t = ToTensor(ContextFor(caller), *src, spec);
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
  return Reply(this, "Stats", ctx, [&](const Caller& caller) -> absl::Status {
    auto fill_tenant = [](const Tenant& t, v1::TenantStats* out) {
      const TenantLimits limits = t.limits();
      out->set_tenant(t.name());
      out->set_bytes(t.bytes());
      out->set_tensors(t.tensors());
      out->set_active_streams(t.streams());
      out->set_quota_bytes(limits.max_bytes);
      out->set_max_tensors(limits.max_tensors);
      out->set_max_streams(limits.max_streams);
    };
    if (caller.tenant != nullptr)
      fill_tenant(*caller.tenant, response->mutable_tenant());
    response->set_version(TENSORCAST_VERSION);
    if (!caller.admin) {
      // One's own figures only: the server's are admin's.
      response->set_tensors(caller.tenant->tensors());
      response->set_active_streams(caller.tenant->streams());
      return absl::OkStatus();
    }
    for (const TenantPtr& t : auth_->Tenants()) {
      fill_tenant(*t, response->add_tenants());
    }
    const ServiceSnapshot snapshot = Snapshot();
    for (const DeviceSnapshot& device : snapshot.devices) {
      const PoolStats& s = device.pool;
      v1::DeviceStats* d = response->add_devices();
      d->set_device(device.name);
      d->set_description(device.description);
      d->set_allocated_bytes(s.allocated_bytes);
      d->set_reserved_bytes(s.reserved_bytes);
      d->set_peak_allocated_bytes(s.peak_allocated_bytes);
      d->set_peak_reserved_bytes(s.peak_reserved_bytes);
      d->set_limit_bytes(s.limit_bytes);
      d->set_alloc_count(s.alloc_count);
      d->set_free_count(s.free_count);
      d->set_cache_hits(s.cache_hits);
      d->set_cache_misses(s.cache_misses);
      d->set_segment_count(s.segment_count);
      d->set_tensors(device.tensors);
      d->set_free_bytes(FreeBytes(device));
    }
    response->set_tensors(snapshot.tensors);
    response->set_active_streams(snapshot.active_streams);
    response->set_cuda_available(ctx_.devices->cuda_available());
    response->set_cuda_status(ctx_.devices->cuda_status());
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
      this, "EmptyCache", ctx, [&](const Caller& caller) -> absl::Status {
        if (!caller.admin) {
          return absl::PermissionDeniedError(
              "EmptyCache is for admin tokens: it acts on the whole server");
        }
        int64_t released = 0;
        if (request->device().empty()) {
          for (const auto& device : ctx_.devices->all()) {
            released += device->pool().EmptyCache();
          }
          // The GPUs' pinned staging goes back to the OS too.
          if (CachingPool* pinned = ctx_.devices->pinned_pool()) {
            released += pinned->EmptyCache();
          }
        } else {
          absl::StatusOr<Device*> device = ctx_.devices->Get(request->device());
          if (!device.ok()) return device.status();
          released = (*device)->pool().EmptyCache();
        }
        response->set_released_bytes(released);
        return absl::OkStatus();
      });
}

}  // namespace tensorcast
