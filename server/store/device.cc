#include "server/store/device.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/echo.h"
#include "server/memory/host_memory_resource.h"
#include "server/ops/cuda_backend.h"

namespace tensorcast {

std::string DeviceName::ToString() const {
  return is_cuda ? absl::StrCat("cuda:", index) : "cpu";
}

absl::StatusOr<DeviceName> ParseDeviceName(absl::string_view text) {
  absl::string_view t = absl::StripAsciiWhitespace(text);
  if (t == "cpu") return DeviceName{};
  if (t == "cuda") return DeviceName{true, 0};
  if (absl::ConsumePrefix(&t, "cuda:")) {
    int index;
    if (absl::SimpleAtoi(t, &index) && index >= 0 && index < 1024 &&
        absl::ascii_isdigit(t.front())) {
      return DeviceName{true, index};
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device '", EchoInput(text),
                   "'; expected 'cpu', 'cuda' or 'cuda:N'"));
}

Device::Device(
    std::string name, std::string description,
    std::unique_ptr<MemoryResource> upstream, int64_t limit_bytes,
    const std::function<std::unique_ptr<Engine>(CachingPool*)>& make_engine)
    : name_(std::move(name)),
      description_(std::move(description)),
      upstream_(std::move(upstream)),
      pool_(name_, upstream_.get(), limit_bytes),
      engine_(make_engine(&pool_)) {}

absl::StatusOr<std::unique_ptr<DeviceRegistry>> DeviceRegistry::Create(
    const DeviceOptions& options) {
  // Parse before probing: a typo is INVALID_ARGUMENT whatever the machine.
  absl::string_view list = absl::StripAsciiWhitespace(options.devices);
  const bool all_gpus = list == "auto";
  std::vector<int> wanted;  // CUDA indices, in the order listed
  if (!all_gpus) {
    for (absl::string_view item : absl::StrSplit(list, ',')) {
      absl::StatusOr<DeviceName> name = ParseDeviceName(item);
      if (!name.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--devices: ", name.status().message()));
      }
      if (name->is_cuda && std::find(wanted.begin(), wanted.end(),
                                     name->index) == wanted.end()) {
        wanted.push_back(name->index);
      }
    }
  }

  if (options.max_staging_bytes < 0) {
    return absl::InvalidArgumentError(
        "--max-staging-bytes must not be negative");
  }
  std::unique_ptr<DeviceRegistry> registry(new DeviceRegistry());
  registry->staging_ = std::make_unique<StagingBudget>(
      options.max_staging_bytes / 8 * kFetchStagingEighths);
  registry->devices_.push_back(std::make_unique<Device>(
      "cpu", "host memory", std::make_unique<HostMemoryResource>(),
      options.memory_limit_bytes,
      [](CachingPool*) { return NewHostEngine(); }));
  // Probing starts a CUDA context: only when a GPU may be used.
  if (!all_gpus && wanted.empty()) {
    registry->cuda_status_ =
        "this server was started with --devices=cpu, so it serves cpu only";
    return registry;
  }
  CudaProbe probe = ProbeCuda();
  registry->cuda_status_ = probe.status;
  if (all_gpus) {
    for (const CudaDeviceInfo& info : probe.devices) {
      wanted.push_back(info.index);
    }
  }
  for (int index : wanted) {
    if (index >= static_cast<int>(probe.devices.size())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--devices asks for cuda:", index, " but ",
          probe.devices.empty()
              ? probe.status
              : absl::StrCat("this machine has ", probe.devices.size(),
                             " CUDA device(s)")));
    }
  }
  if (wanted.empty()) return registry;

  registry->pinned_upstream_ = NewPinnedResource();
  registry->pinned_pool_ = std::make_unique<CachingPool>(
      "pinned", registry->pinned_upstream_.get(), options.max_staging_bytes);
  CachingPool* pinned = registry->pinned_pool_.get();
  for (int index : wanted) {
    registry->devices_.push_back(std::make_unique<Device>(
        DeviceName{true, index}.ToString(), probe.devices[index].description,
        NewCudaDeviceResource(index), options.memory_limit_bytes,
        [index, pinned](CachingPool* pool) {
          return NewCudaEngine(index, pool, pinned);
        }));
  }
  registry->cuda_available_ = true;
  return registry;
}

std::unique_ptr<DeviceRegistry> DeviceRegistry::FromDevices(
    std::vector<std::unique_ptr<Device>> devices, std::string cuda_status,
    int64_t fetch_staging_bytes) {
  std::unique_ptr<DeviceRegistry> registry(new DeviceRegistry());
  registry->staging_ = std::make_unique<StagingBudget>(fetch_staging_bytes);
  registry->devices_ = std::move(devices);
  registry->cuda_available_ = registry->devices_.size() > 1;
  registry->cuda_status_ = std::move(cuda_status);
  return registry;
}

absl::StatusOr<Device*> DeviceRegistry::Get(absl::string_view text) const {
  if (absl::StripAsciiWhitespace(text).empty()) return host();
  absl::StatusOr<DeviceName> name = ParseDeviceName(text);
  if (!name.ok()) return name.status();
  std::string canonical = name->ToString();
  for (const auto& device : devices_) {
    if (device->name() == canonical) return device.get();
  }
  if (!cuda_available_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "device ", canonical, " is not available: ", cuda_status_));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("device ", canonical, " does not exist on this server"));
}

}  // namespace tensorcast
