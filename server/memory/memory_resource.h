// MemoryResource: the one interface through which tensorcast gets raw memory
// (host, pinned host and CUDA device), after RAPIDS rmm's
// device_memory_resource. Callers use the non-virtual Allocate/Deallocate;
// backends and adaptors implement the private DoAllocate/DoDeallocate.
//
// Contract for every implementation:
//  - Thread-safe: Allocate and Deallocate may be called from any thread.
//  - Allocate(n) returns memory aligned to at least kAlignment bytes, or
//    RESOURCE_EXHAUSTED with a message saying how much was asked for.
//    Allocate(0) returns a valid pointer, distinct from every other live one.
//  - Deallocate(p, n) takes back what Allocate(n) returned, with the same n.
//    It never fails and never throws; Deallocate(nullptr, n) is a no-op.
//  - The resource must outlive every allocation made from it; it is neither
//    copyable nor movable (adaptors hold a pointer to their upstream).
// Resources know no streams: stream-ordered reuse is CachingPool's
// (Allocate(bytes, stream) and Free(p, stream, fence), caching_pool.h),
// which takes segments from a resource and gives them back only once no
// stream can still be using them.
#ifndef TENSORCAST_SERVER_MEMORY_MEMORY_RESOURCE_H_
#define TENSORCAST_SERVER_MEMORY_MEMORY_RESOURCE_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tensorcast {

class MemoryResource {
 public:
  // Every allocation is aligned to at least this (as cudaMalloc's 256 B),
  // so any dtype and vectorized kernels can use it directly.
  static constexpr size_t kAlignment = 256;

  MemoryResource() = default;
  virtual ~MemoryResource();
  MemoryResource(const MemoryResource&) = delete;
  MemoryResource& operator=(const MemoryResource&) = delete;

  [[nodiscard]] absl::StatusOr<void*> Allocate(size_t bytes) {
    return DoAllocate(bytes);
  }
  void Deallocate(void* p, size_t bytes) noexcept {
    if (p != nullptr) DoDeallocate(p, bytes);
  }

  // For messages and stats: "host", "pinned", "cuda:0", "counting(host)".
  virtual absl::string_view Name() const = 0;

  // The bytes the memory behind this resource has free now, as far as it
  // can tell (the host's MemAvailable, a device's cudaMemGetInfo free), or
  // nullopt when it cannot (the default). A snapshot: other processes
  // change it at any moment. Never blocks for long; thread-safe.
  virtual std::optional<int64_t> AvailableBytes() const { return std::nullopt; }

 private:
  virtual absl::StatusOr<void*> DoAllocate(size_t bytes) = 0;
  virtual void DoDeallocate(void* p, size_t bytes) noexcept = 0;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_MEMORY_MEMORY_RESOURCE_H_
