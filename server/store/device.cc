#include "server/store/device.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/memory/host_memory_resource.h"

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
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown device '", text, "'; expected 'cpu', 'cuda' or 'cuda:N'"));
}

Device::Device(std::string name, std::string description,
               std::unique_ptr<MemoryResource> upstream, int64_t limit_bytes)
    : name_(std::move(name)),
      description_(std::move(description)),
      upstream_(std::move(upstream)),
      pool_(name_, upstream_.get(), limit_bytes) {}

absl::StatusOr<std::unique_ptr<DeviceRegistry>> DeviceRegistry::Create(
    const DeviceOptions& options) {
  std::unique_ptr<DeviceRegistry> registry(new DeviceRegistry());
  registry->cuda_status_ =
      "this server was built without CUDA, so it serves cpu only";
  registry->devices_.push_back(std::make_unique<Device>(
      "cpu", "host memory", std::make_unique<HostMemoryResource>(),
      options.memory_limit_bytes));

  absl::string_view list = absl::StripAsciiWhitespace(options.devices);
  if (list == "auto" || list == "cpu") return registry;
  for (absl::string_view item : absl::StrSplit(list, ',')) {
    absl::StatusOr<DeviceName> name = ParseDeviceName(item);
    if (!name.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--devices: ", name.status().message()));
    }
    if (name->is_cuda) {
      return absl::FailedPreconditionError(
          absl::StrCat("--devices asks for ", name->ToString(), " but ",
                       registry->cuda_status_));
    }
  }
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
