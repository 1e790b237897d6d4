// Devices the server serves ("cpu" and, where CUDA is built and a GPU is
// present, "cuda:N"), each with its own CachingPool and Engine (the loops or
// kernels that fill, cast and move its memory). The registry is built once
// at start-up and is immutable after; Device objects live as long as the
// registry and are thread-safe (pool and engine are).
#ifndef TENSORCAST_SERVER_STORE_DEVICE_H_
#define TENSORCAST_SERVER_STORE_DEVICE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/memory/caching_pool.h"
#include "server/memory/memory_resource.h"
#include "server/ops/engine.h"
#include "server/store/staging_budget.h"

namespace tensorcast {

// A parsed device name: "cpu", "cuda" (= "cuda:0") or "cuda:N".
struct DeviceName {
  bool is_cuda = false;
  int index = 0;
  std::string ToString() const;
};
// INVALID_ARGUMENT for anything else ("", "gpu", "cuda:x", "cuda:-1").
absl::StatusOr<DeviceName> ParseDeviceName(absl::string_view text);

class Device {
 public:
  // A CUDA device's engine needs its pool: make_engine gets it once the
  // pool exists.
  Device(
      std::string name, std::string description,
      std::unique_ptr<MemoryResource> upstream, int64_t limit_bytes,
      const std::function<std::unique_ptr<Engine>(CachingPool*)>& make_engine);
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  const std::string& name() const { return name_; }
  const std::string& description() const { return description_; }
  bool is_host() const { return name_ == "cpu"; }
  CachingPool& pool() { return pool_; }
  Engine& engine() const { return *engine_; }

 private:
  // Constant after construction.
  const std::string name_;
  const std::string description_;
  std::unique_ptr<MemoryResource> upstream_;  // outlives pool_
  CachingPool pool_;
  std::unique_ptr<Engine> engine_;  // uses pool_
};

struct DeviceOptions {
  // "auto", "cpu", or a comma-separated list such as "cpu,cuda:0".
  std::string devices = "auto";
  int64_t memory_limit_bytes = 0;  // per device; 0 = no limit
  // The GPUs' pinned host staging, all of it (0 = no limit). GPU Fetch
  // streams, which hold theirs for as long as the client takes to read,
  // may reserve kFetchStagingEighths eighths of it between them
  // (staging()); the rest is left for the short-lived staging of uploads
  // and copies.
  int64_t max_staging_bytes = int64_t{1} << 30;
};

// The share (eighths) of --max-staging-bytes that GPU Fetch streams may
// hold between them.
inline constexpr int64_t kFetchStagingEighths = 7;

class DeviceRegistry {
 public:
  // INVALID_ARGUMENT for an unparseable list; FAILED_PRECONDITION when a
  // listed CUDA device does not exist here.
  static absl::StatusOr<std::unique_ptr<DeviceRegistry>> Create(
      const DeviceOptions& options);

  // A registry of given devices (devices[0] must be "cpu"), for tests that
  // stand a host-memory engine in for a GPU, and for embedders.
  // `fetch_staging_bytes` is staging()'s limit (0 = none).
  static std::unique_ptr<DeviceRegistry> FromDevices(
      std::vector<std::unique_ptr<Device>> devices, std::string cuda_status,
      int64_t fetch_staging_bytes = 0);

  // The device for a name on a request. "" means "cpu". INVALID_ARGUMENT for
  // a malformed name, FAILED_PRECONDITION for a device this server lacks.
  absl::StatusOr<Device*> Get(absl::string_view name) const;
  const std::vector<std::unique_ptr<Device>>& all() const { return devices_; }
  Device* host() const { return devices_.front().get(); }

  // Pinned host memory for the CUDA engines' staging; null without a GPU.
  // Its limit is --max-staging-bytes.
  CachingPool* pinned_pool() const { return pinned_pool_.get(); }
  // What GPU Fetch streams reserve their pinned slots from (StagingBudget):
  // kFetchStagingEighths of --max-staging-bytes.
  StagingBudget* staging() const { return staging_.get(); }

  bool cuda_available() const { return cuda_available_; }
  // Why CUDA is or is not in use, for logs and Stats.
  const std::string& cuda_status() const { return cuda_status_; }

 private:
  DeviceRegistry() = default;
  // Constant after construction; devices_[0] is always "cpu". The pinned
  // pool outlives the devices whose engines stage through it.
  std::unique_ptr<MemoryResource> pinned_upstream_;
  std::unique_ptr<CachingPool> pinned_pool_;
  std::unique_ptr<StagingBudget> staging_;
  std::vector<std::unique_ptr<Device>> devices_;
  bool cuda_available_ = false;
  std::string cuda_status_;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_DEVICE_H_
