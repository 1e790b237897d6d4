// CudaDeviceMemoryResource: device memory of one CUDA device, from
// cudaMalloc. The backend under the per-device CachingPool; nothing else in
// tensorcast allocates device memory.
//
// cudaMalloc rather than cudaMallocAsync: the CachingPool above already
// caches, so a stream-ordered mempool underneath would be a second cache
// whose reserved bytes our stats and EmptyCache cannot see or release (its
// release threshold, trimming and stream ordering would all need managing
// through an interface that has no stream yet). cudaMalloc is synchronous,
// its memory is usable from every stream at once, and its cost -- and
// cudaFree's implicit device synchronisation -- is paid only when the pool
// takes or returns a segment, which is rare once the pool is warm.
//
// Thread-safe: each call makes the resource's device current for its
// duration and restores the caller's device afterwards. Allocations are
// aligned to at least 256 bytes (cudaMalloc guarantees it); Allocate(0)
// takes one byte so that it returns a unique pointer.
// Errors: RESOURCE_EXHAUSTED (cudaErrorMemoryAllocation, or a size no
// device can hold) naming the device and the size; other CUDA errors
// (e.g. a device index that does not exist) as INTERNAL via CudaStatus.
// A failing cudaFree is logged, never thrown.
//
// Also here: CudaEventFence, the CUDA Fence for CachingPool's stream-aware
// reuse, and StreamIdOf, a cudaStream_t as the pool's StreamId.
#ifndef TENSORCAST_SERVER_MEMORY_CUDA_MEMORY_RESOURCE_H_
#define TENSORCAST_SERVER_MEMORY_CUDA_MEMORY_RESOURCE_H_

#include <cuda_runtime_api.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/memory/cuda_check.h"
#include "server/memory/fence.h"
#include "server/memory/memory_resource.h"

namespace tensorcast {

// The number of CUDA devices; a machine with no device or no driver has 0
// (and OK). Other runtime errors come back as CudaStatus. (server/ops has
// its own copy for its kernels: memory does not depend on ops.)
[[nodiscard]] absl::StatusOr<int> CudaDeviceCount();

namespace cuda_internal {

// For the CUDA resources: `cuda_error` (a CudaStatus from a failed
// allocation) restated as "<resource>: cannot allocate <size>: <cuda's
// words>", keeping its code. Clears CUDA's last-error slot, so that a later
// cudaGetLastError (after a kernel launch, say) does not report it again.
absl::Status AllocationFailure(const absl::Status& cuda_error,
                               absl::string_view resource, size_t bytes);

}  // namespace cuda_internal

// Makes a device current for one scope and restores the caller's device
// afterwards, so that a resource or engine never changes the device a
// calling thread (a gRPC worker) works on.
class ScopedDevice {
 public:
  ScopedDevice() = default;
  ScopedDevice(const ScopedDevice&) = delete;
  ScopedDevice& operator=(const ScopedDevice&) = delete;
  ~ScopedDevice();  // a failing restore is logged
  [[nodiscard]] absl::Status Enter(int device);

 private:
  int previous_ = -1;  // >= 0: the device to restore
};

// `stream` as CachingPool's StreamId. The legacy default stream (nullptr,
// cudaStreamLegacy) and cudaStreamPerThread map to kNoStream: the first
// synchronises with every blocking stream and the second is a different
// stream in each thread under one handle, so neither may claim the pool's
// same-stream reuse.
inline StreamId StreamIdOf(cudaStream_t stream) {
  if (stream == nullptr || stream == cudaStreamLegacy ||
      stream == cudaStreamPerThread) {
    return kNoStream;
  }
  return reinterpret_cast<StreamId>(stream);
}

// A Fence over a CUDA event recorded on a stream: Passed() once the stream
// has run everything queued on it before Make. Free a pool block with it
// after the block's last use on that stream is queued:
//
//   absl::StatusOr<std::shared_ptr<CudaEventFence>> fence =
//       CudaEventFence::Make(stream);
//   if (!fence.ok()) return fence.status();
//   pool.Free(p, StreamIdOf(stream), *std::move(fence));
//
// Make creates the event on the calling thread's current device, which
// must be the stream's. Passed() is cudaEventQuery (non-blocking); an error
// from it other than "not ready" is logged once and counts as not passed,
// so a block behind a broken fence is never reused by another stream.
// Thread-safe; the destructor destroys the event and never throws.
class CudaEventFence final : public Fence {
 public:
  [[nodiscard]] static absl::StatusOr<std::shared_ptr<CudaEventFence>> Make(
      cudaStream_t stream);
  ~CudaEventFence() override;
  CudaEventFence(const CudaEventFence&) = delete;
  CudaEventFence& operator=(const CudaEventFence&) = delete;

  bool Passed() const override;

 private:
  explicit CudaEventFence(cudaEvent_t event) : event_(event) {}

  const cudaEvent_t event_;
  mutable std::atomic<bool> error_logged_{false};
};

class CudaDeviceMemoryResource final : public MemoryResource {
 public:
  explicit CudaDeviceMemoryResource(int device);

  int device() const { return device_; }
  // "cuda:N".
  absl::string_view Name() const override { return name_; }
  // cudaMemGetInfo's free bytes on the device (every process's allocations
  // counted, so what a new cudaMalloc may still get); nullopt when the call
  // fails.
  std::optional<int64_t> AvailableBytes() const override;

 private:
  absl::StatusOr<void*> DoAllocate(size_t bytes) override;
  void DoDeallocate(void* p, size_t bytes) noexcept override;

  // Constant after construction.
  const int device_;
  const std::string name_;
};

// An owning block of device memory straight from cudaMalloc (rmm's
// device_buffer), for tests and benchmarks that need raw device memory; the
// server allocates through CachingPool. Freed on destruction; not copyable.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (ptr_ != nullptr) CudaStatus(cudaFree(ptr_), "cudaFree").IgnoreError();
  }
  // At least one byte is allocated, so a 0-byte buffer has a valid address.
  absl::Status Allocate(size_t size) {
    TC_CUDA_TRY(cudaMalloc(&ptr_, size == 0 ? 1 : size));
    return absl::OkStatus();
  }
  uint8_t* get() const { return static_cast<uint8_t*>(ptr_); }

 private:
  void* ptr_ = nullptr;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_MEMORY_CUDA_MEMORY_RESOURCE_H_
