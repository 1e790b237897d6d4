// Cast: converts contiguous elements from one dtype to another, for every
// pair of the 15 dtypes, on the CPU. Stateless and thread-safe; the caller
// owns both buffers, which must not overlap (except src == dst with equal
// dtypes). Any alignment is accepted; aligned buffers take the fast path.
// The per-element rules live in convert.h (shared with the GPU kernels);
// here they run as one vectorised loop per pair, in an x86-64-v3 (AVX2)
// variant where the CPU has it, chosen once per process.
//
// Semantics are NumPy's `astype` (ml_dtypes' for bfloat16) wherever NumPy
// defines them:
//   - float narrowing (float64 -> float32/float16, float32 -> float16/
//     bfloat16) rounds to nearest even, overflow gives +-inf, NaN stays NaN
//     (always a quiet NaN; sign kept, payload not guaranteed);
//   - every narrowing rounds once, straight from the source type:
//     float64 -> bfloat16 and float64 -> float16 do not pass through float32
//     (as ml_dtypes >= 0.7 and NumPy; PyTorch rounds float64 -> float16
//     through float32, so it differs by one ulp on a few values, e.g.
//     70.96874823 -> 70.9375 here, 71.0 in PyTorch);
//   - integer -> float rounds to nearest even, once (int64 -> bfloat16 too:
//     2^60 + 2^52 + 1 rounds up); integer narrowing wraps (two's
//     complement);
//   - float -> integer truncates toward zero (float16/bfloat16 via their
//     float32 value);
//   - x -> bool is x != 0 (NaN -> true; complex: re != 0 || im != 0);
//     bool -> x is 0 or 1 (any non-zero byte reads as true);
//   - complex -> real drops the imaginary part; real -> complex has imag 0.
//
// Where NumPy leaves the result undefined -- a float (or the real part of a
// complex) that is NaN, or whose truncated value does not fit the integer
// target, e.g. 300.0 -> int8, -1.0 -> uint8, inf -> int64 -- tensorcast
// defines it as: truncate toward zero, then saturate to the target's
// [min, max]; NaN -> 0. (300.0 -> int8 = 127, -1.0 -> uint8 = 0,
// -inf -> int32 = INT32_MIN.) This is what CUDA's saturating conversion
// instructions do, so GPU kernels give the same bits.
#ifndef TENSORCAST_SERVER_OPS_CAST_H_
#define TENSORCAST_SERVER_OPS_CAST_H_

#include <cstdint>

#include "common/dtype.h"

namespace tensorcast {

// Converts n contiguous elements (n <= 0: nothing). src holds n elements of
// src_dtype, dst has room for n elements of dst_dtype.
void Cast(const void* src, DType src_dtype, void* dst, DType dst_dtype,
          int64_t n);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_OPS_CAST_H_
