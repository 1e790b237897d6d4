#include "server/memory/malloc_tuning.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace tensorcast {

bool OperatorTunesMalloc(const char* glibc_tunables,
                         const char* mmap_threshold_env,
                         const char* trim_threshold_env) {
  if (mmap_threshold_env != nullptr || trim_threshold_env != nullptr) {
    return true;
  }
  return glibc_tunables != nullptr &&
         std::strstr(glibc_tunables, "glibc.malloc.") != nullptr;
}

MallocTuning TuneMallocForStreaming() {
  MallocTuning out;
#if defined(__GLIBC__)
  if (OperatorTunesMalloc(std::getenv("GLIBC_TUNABLES"),
                          std::getenv("MALLOC_MMAP_THRESHOLD_"),
                          std::getenv("MALLOC_TRIM_THRESHOLD_"))) {
    out.detail = "left as the environment sets it (glibc malloc tunables)";
    return out;
  }
  // The trim threshold first: setting the mmap threshold also fixes it
  // (glibc stops adapting both), and the order keeps trim > mmap.
  const bool trim = mallopt(M_TRIM_THRESHOLD,
                            static_cast<int>(kMallocTrimThresholdBytes)) == 1;
  const bool mmap = mallopt(M_MMAP_THRESHOLD,
                            static_cast<int>(kMallocMmapThresholdBytes)) == 1;
  out.applied = trim && mmap;
  out.detail = out.applied ? "mmap threshold 32 MiB, trim threshold 64 MiB"
                           : "mallopt refused the thresholds";
#else
  out.detail = "not glibc: left as it is";
#endif
  return out;
}

}  // namespace tensorcast
