// TuneMallocForStreaming: keeps glibc's malloc from handing large freed
// blocks back to the kernel, which a streaming server otherwise pays for
// on every message.
//
// gRPC receives a large message (a Put's 1 MiB data chunks) into buffers it
// mallocs and frees once per message. glibc serves a block above its mmap
// threshold with a fresh mmap and unmaps it on free; a smaller one, freed at
// the top of the heap, is trimmed back to the kernel as soon as more than
// the trim threshold sits free there. Either way the next message's buffer
// is new memory, and the kernel page-faults and zeroes it, 4 KiB at a time,
// while the bytes arrive: on a Put that costs as much as the copy itself.
// The tuning raises the mmap threshold to 32 MiB (glibc's own upper bound
// for its adaptive threshold) and the trim threshold to 64 MiB, so these
// buffers are reused; the price is up to that much freed memory kept per
// malloc arena rather than returned at once. Tensors themselves live in
// the memory pool (mmap), which this does not touch.
//
// The operator decides first: when the environment already sets any of
// glibc's malloc tunables (GLIBC_TUNABLES naming glibc.malloc.*, or the
// MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ variables), nothing is
// changed. Without glibc it does nothing.
//
// Call once at start-up, before the threads that allocate start; not
// thread-safe against concurrent mallopt calls.
#ifndef TENSORCAST_SERVER_MEMORY_MALLOC_TUNING_H_
#define TENSORCAST_SERVER_MEMORY_MALLOC_TUNING_H_

#include <cstdint>
#include <string>

namespace tensorcast {

struct MallocTuning {
  // Whether mallopt was called (and accepted both settings).
  bool applied = false;
  // What was done or why not, for the start-up log.
  std::string detail;
};

inline constexpr int64_t kMallocMmapThresholdBytes = int64_t{32} << 20;
inline constexpr int64_t kMallocTrimThresholdBytes = int64_t{64} << 20;

// Reads the environment (getenv) to honour the operator's settings.
MallocTuning TuneMallocForStreaming();

// The decision alone, for tests: whether an environment with these values
// (nullptr = unset) leaves malloc to the operator.
bool OperatorTunesMalloc(const char* glibc_tunables,
                         const char* mmap_threshold_env,
                         const char* trim_threshold_env);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_MEMORY_MALLOC_TUNING_H_
