// Internal to server/ops and its tests: Cast through a chosen
// instruction-set variant of the kernels. Cast picks the best variant the
// CPU supports once; tests use this to hold every variant the machine can
// run to the same results. Thread-safe; same contract as Cast (cast.h).
#ifndef TENSORCAST_SERVER_OPS_CAST_INTERNAL_H_
#define TENSORCAST_SERVER_OPS_CAST_INTERNAL_H_

#include <cstdint>

#include "common/dtype.h"

namespace tensorcast {

enum class CastIsa {
  kBaseline,   // the build's target (x86-64: SSE2)
  kX86_64_V3,  // AVX2, FMA, F16C, BMI2 (x86-64 only)
};

// Whether this build has the variant and this CPU can run it.
bool CastIsaAvailable(CastIsa isa);

// Cast with the given variant; it must be available.
void CastWithIsa(CastIsa isa, const void* src, DType src_dtype, void* dst,
                 DType dst_dtype, int64_t n);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_OPS_CAST_INTERNAL_H_
