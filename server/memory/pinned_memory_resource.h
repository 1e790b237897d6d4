// PinnedHostMemoryResource: page-locked host memory from
// cudaHostAlloc(cudaHostAllocDefault), which the GPU's copy engines read and
// write directly (no staging through a driver bounce buffer), so host<->
// device copies from it can be asynchronous and run at full bus speed. For
// staging buffers; pinning is slow and takes memory from the OS for good, so
// put a CachingPool on top rather than allocating per request.
//
// Thread-safe and stateless. Allocations are page-aligned (at least 256
// bytes); Allocate(0) takes one byte so that it returns a unique pointer.
// Errors: RESOURCE_EXHAUSTED (cudaErrorMemoryAllocation, or a size beyond
// what can be pinned) naming the size; other CUDA errors (e.g. no driver)
// as INTERNAL via CudaStatus. A failing cudaFreeHost is logged, never
// thrown.
#ifndef TENSORCAST_SERVER_MEMORY_PINNED_MEMORY_RESOURCE_H_
#define TENSORCAST_SERVER_MEMORY_PINNED_MEMORY_RESOURCE_H_

#include <cstddef>

#include "absl/status/statusor.h"
#include "server/memory/memory_resource.h"

namespace tensorcast {

class PinnedHostMemoryResource final : public MemoryResource {
 public:
  PinnedHostMemoryResource() = default;

  absl::string_view Name() const override { return "pinned"; }

 private:
  absl::StatusOr<void*> DoAllocate(size_t bytes) override;
  void DoDeallocate(void* p, size_t bytes) noexcept override;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_MEMORY_PINNED_MEMORY_RESOURCE_H_
