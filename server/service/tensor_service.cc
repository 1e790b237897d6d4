#include "server/service/tensor_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/descriptor.h"
#include "server/service/logging.h"
#include "server/service/proto_convert.h"
#include "server/service/status.h"

namespace tensorcast {

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
  if (!status.ok()) fields.push_back({"error", std::string(status.message())});
  ScopedLogFields scoped(std::move(fields));
  if (status.ok()) {
    spdlog::debug("rpc={} peer={} code=OK ms={:.3f}", method, ctx->peer(), ms);
  } else {
    spdlog::warn("rpc={} peer={} code={} ms={:.3f} message=\"{}\"", method,
                 ctx->peer(), absl::StatusCodeToString(status.code()), ms,
                 std::string(status.message()));
  }
}

namespace {

// Admits the call and runs a unary handler body with its caller; finishes
// the call with the body's status.
template <typename Body>
grpc::ServerUnaryReactor* Reply(TensorServiceImpl* service, const char* method,
                                grpc::CallbackServerContext* ctx, Body body) {
  auto start = std::chrono::steady_clock::now();
  service->UnaryStarted();
  absl::StatusOr<Caller> caller = service->Admit(ctx);
  absl::Status status = caller.ok() ? body(*caller) : caller.status();
  LogRpc(service, method, ctx, status, start);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
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
  return NewFetchReactor(this, ctx, request);
}

grpc::ServerUnaryReactor* TensorServiceImpl::Create(
    grpc::CallbackServerContext* ctx, const v1::CreateRequest* request,
    v1::CreateResponse* response) {
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
    grpc::CallbackServerContext* ctx, const v1::InfoRequest* request,
    v1::InfoResponse* response) {
  return Reply(this, "Info", ctx, [&](const Caller& caller) -> absl::Status {
    absl::StatusOr<TensorPtr> t =
        store()->Get(request->ref(), caller.tenant.get());
    if (!t.ok()) return t.status();
    FillTensorInfo(**t, response->mutable_tensor());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensorServiceImpl::List(
    grpc::CallbackServerContext* ctx, const v1::ListRequest* request,
    v1::ListResponse* response) {
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
    grpc::CallbackServerContext* ctx, const v1::DeleteRequest* request,
    v1::DeleteResponse* response) {
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
    grpc::CallbackServerContext* ctx, const v1::DetachRequest* request,
    v1::DetachResponse* response) {
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
    grpc::CallbackServerContext* ctx, const v1::ToRequest* request,
    v1::ToResponse* response) {
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
    grpc::CallbackServerContext* ctx, const v1::StatsRequest* /*request*/,
    v1::StatsResponse* response) {
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
    }
    response->set_tensors(snapshot.tensors);
    response->set_active_streams(snapshot.active_streams);
    response->set_cuda_available(ctx_.devices->cuda_available());
    response->set_cuda_status(ctx_.devices->cuda_status());
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* TensorServiceImpl::EmptyCache(
    grpc::CallbackServerContext* ctx, const v1::EmptyCacheRequest* request,
    v1::EmptyCacheResponse* response) {
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
