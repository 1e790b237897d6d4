#include "server/memory/pinned_memory_resource.h"

#include <cuda_runtime_api.h>
#include <spdlog/spdlog.h>

#include <cstdint>

#include "absl/status/status.h"
#include "server/memory/cuda_check.h"
#include "server/memory/cuda_memory_resource.h"

namespace tensorcast {
namespace {

absl::Status HostAlloc(size_t bytes, void** p) {
  TC_CUDA_TRY(cudaHostAlloc(p, bytes, cudaHostAllocDefault));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<void*> PinnedHostMemoryResource::DoAllocate(size_t bytes) {
  // cudaHostAlloc rounds up to whole pages; past this it would wrap.
  if (bytes > SIZE_MAX - (size_t{2} << 20)) {
    return cuda_internal::AllocationFailure(
        absl::ResourceExhaustedError("size too large"), Name(), bytes);
  }
  void* p = nullptr;
  // Take a byte for Allocate(0), so that it returns a unique pointer.
  const absl::Status status = HostAlloc(bytes == 0 ? 1 : bytes, &p);
  if (!status.ok()) {
    return cuda_internal::AllocationFailure(status, Name(), bytes);
  }
  return p;
}

void PinnedHostMemoryResource::DoDeallocate(void* p, size_t bytes) noexcept {
  const absl::Status status = CudaStatus(cudaFreeHost(p), "cudaFreeHost");
  if (!status.ok()) {
    spdlog::error("pinned: Deallocate({}, {} bytes): {}", p, bytes,
                  status.ToString());
  }
}

}  // namespace tensorcast
