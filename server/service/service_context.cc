#include "server/service/service_context.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/size.h"
#include "google/protobuf/descriptor.h"
#include "server/core/caller_message.h"
#include "server/ops/cuda_backend.h"
#include "server/service/logging.h"
#include "server/service/proto_convert.h"
#include "tensorcast/v1/tensor_service.grpc.pb.h"

namespace tensorcast {
namespace {

// A failed RPC's message is logged up to this long.
constexpr size_t kMaxLoggedMessageBytes = 1024;

// The CUDA ordinals of the GPUs the server serves: the only ones CUDA IPC
// regions may be on.
std::vector<int> ServedGpus(const DeviceRegistry* devices) {
  std::vector<int> served;
  if (devices == nullptr) return served;
  for (const std::unique_ptr<Device>& device : devices->all()) {
    absl::StatusOr<DeviceName> name = ParseDeviceName(device->name());
    if (name.ok() && name->is_cuda) served.push_back(name->index);
  }
  return served;
}

}  // namespace

void LogRpc(ServiceContext* service, const char* method,
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

absl::Status ServiceContext::CheckAccepting() const {
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

ServiceContext::ServiceContext(TensorStore* store,
                               const DeviceRegistry* devices,
                               const Authenticator* auth,
                               ServiceOptions options)
    : ctx_{store, devices, options.max_tensor_bytes, nullptr},
      auth_(auth),
      options_(options),
      shared_memory_(options.shared_memory_dir, options.shared_memory_limits,
                     NewIpcMemoryOpener(ServedGpus(devices))),
      shm_workers_(options.shared_memory
                       ? std::make_unique<WorkerPool>(std::clamp<int>(
                             std::thread::hardware_concurrency() / 2, 2, 8))
                       : nullptr),
      metrics_(MethodNames()) {}

ServiceSnapshot ServiceContext::Snapshot() const {
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

absl::StatusOr<Caller> ServiceContext::Admit(grpc::CallbackServerContext* ctx,
                                             StreamSlot* slot,
                                             LiveCall* live) const {
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

StreamBudget ServiceContext::BudgetFor(const Caller& caller) const {
  return StreamBudget{caller.tenant, ctx_.devices->staging()};
}

ConversionContext ServiceContext::ContextFor(const Caller& caller) const {
  ConversionContext ctx = ctx_;
  ctx.tenant = caller.tenant;
  return ctx;
}

absl::Status ServiceContext::ForCaller(const absl::Status& status,
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

std::string ServiceContext::RegionOwner(grpc::CallbackServerContext* ctx,
                                        const Caller& caller) {
  return absl::StrCat(ctx->peer(), " ", caller.name());
}

absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>>
ServiceContext::FindRegion(grpc::CallbackServerContext* ctx,
                           const Caller& caller, absl::string_view id) const {
  if (!options_.shared_memory) {
    return absl::FailedPreconditionError(kSharedMemoryOff);
  }
  return shared_memory_.Find(id, RegionOwner(ctx, caller));
}

void ServiceContext::FillStats(const Caller& caller,
                               v1::StatsResponse* response) const {
  if (!caller.admin) {
    FillStatsResponse(caller, nullptr, response);
    return;
  }
  ServerStats server;
  server.tenants = auth_->Tenants();
  server.snapshot = Snapshot();
  server.cuda_available = ctx_.devices->cuda_available();
  server.cuda_status = ctx_.devices->cuda_status();
  FillStatsResponse(caller, &server, response);
}

}  // namespace tensorcast
