// HostMemoryResource: pageable host memory from the OS, aligned for any
// dtype. Stateless and thread-safe; one process-wide instance suffices.
//
// Below kHugeBlockBytes it uses aligned_alloc (256-byte aligned). From
// kHugeBlockBytes on it maps anonymous memory itself, 2 MiB-aligned and
// rounded to whole 2 MiB pages, and advises transparent huge pages: these
// are the pool's segments and big tensors, which are streamed through
// sequentially, so huge pages save TLB misses; mapping them directly (rather
// than through malloc) hands the memory back to the OS the moment the pool
// releases a segment, instead of leaving it in a malloc arena. The advice is
// best effort (THP may be disabled); the memory is correct either way.
//
// Errors: RESOURCE_EXHAUSTED when the OS refuses, naming the size.
#ifndef TENSORCAST_SERVER_MEMORY_HOST_MEMORY_RESOURCE_H_
#define TENSORCAST_SERVER_MEMORY_HOST_MEMORY_RESOURCE_H_

#include <cstddef>

#include "server/memory/memory_resource.h"

namespace tensorcast {

class HostMemoryResource final : public MemoryResource {
 public:
  // Allocations of at least this many bytes are mapped and 2 MiB-aligned.
  static constexpr size_t kHugeBlockBytes = size_t{2} << 20;
  static constexpr size_t kHugePageBytes = size_t{2} << 20;

  HostMemoryResource() = default;

  absl::string_view Name() const override { return "host"; }
  // /proc/meminfo's MemAvailable (what the kernel estimates a new
  // allocation can take without swapping); nullopt where it is unreadable.
  std::optional<int64_t> AvailableBytes() const override;

 private:
  absl::StatusOr<void*> DoAllocate(size_t bytes) override;
  void DoDeallocate(void* p, size_t bytes) noexcept override;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_MEMORY_HOST_MEMORY_RESOURCE_H_
