#include "server/memory/host_memory_resource.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/size.h"

namespace tensorcast {
namespace {

// Rounds up to a multiple of `align` (a power of two); false on overflow.
bool RoundUp(size_t bytes, size_t align, size_t* out) {
  if (bytes > SIZE_MAX - (align - 1)) return false;
  *out = (bytes + align - 1) & ~(align - 1);
  return true;
}

absl::Status Exhausted(size_t bytes, absl::string_view why) {
  return absl::ResourceExhaustedError(absl::StrCat(
      "out of host memory: cannot allocate ",
      FormatSize(static_cast<int64_t>(bytes > INT64_MAX ? INT64_MAX : bytes)),
      ": ", why));
}

}  // namespace

absl::StatusOr<void*> HostMemoryResource::DoAllocate(size_t bytes) {
  if (bytes < kHugeBlockBytes) {
    size_t size;
    RoundUp(bytes == 0 ? 1 : bytes, kAlignment, &size);  // cannot overflow
    void* p = std::aligned_alloc(kAlignment, size);
    if (p == nullptr) return Exhausted(bytes, "aligned_alloc failed");
    return p;
  }
  size_t size;
  if (!RoundUp(bytes, kHugePageBytes, &size) ||
      size > SIZE_MAX - kHugePageBytes) {
    return Exhausted(bytes, "size too large");
  }
  // Over-map by one huge page, then trim both ends to a 2 MiB boundary.
  const size_t mapped = size + kHugePageBytes;
  void* raw = mmap(nullptr, mapped, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    return Exhausted(bytes, absl::StrCat("mmap: ", std::strerror(errno)));
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned =
      (start + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  const size_t head = aligned - start;
  const size_t tail = mapped - head - size;
  if (head > 0) munmap(raw, head);
  if (tail > 0) munmap(reinterpret_cast<void*>(aligned + size), tail);
  void* p = reinterpret_cast<void*>(aligned);
  // Best effort: THP may be off ("never"), then this fails harmlessly.
  (void)madvise(p, size, MADV_HUGEPAGE);
  return p;
}

void HostMemoryResource::DoDeallocate(void* p, size_t bytes) noexcept {
  if (bytes < kHugeBlockBytes) {
    std::free(p);
    return;
  }
  size_t size = 0;
  RoundUp(bytes, kHugePageBytes, &size);
  munmap(p, size);
}

std::optional<int64_t> HostMemoryResource::AvailableBytes() const {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  int64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return std::nullopt;
}

}  // namespace tensorcast
