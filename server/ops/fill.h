// Fills for Create: constant, arange, eye and rand, written straight into a
// contiguous buffer of any dtype. Stateless and thread-safe; the caller owns
// dst, which has room for n elements (rows * cols for FillEye). n <= 0 fills
// nothing.
//
// Values are computed in double and converted by Cast's rules (cast.h): a
// fill value out of an integer dtype's range saturates (-1.0 as uint8 is 0,
// 300.0 as int8 is 127, NaN is 0), where NumPy raises and PyTorch wraps;
// callers that want an error must check the range first.
//
// FillRand's generator is counter-based and device-independent, so a GPU
// kernel reproduces it bit for bit. Scalar j (element j; for complex dtypes
// the real part of element i is scalar 2i and the imaginary part 2i+1) is
//   x_j = splitmix64_mix(seed + 0x9e3779b97f4a7c15 * (j + 1))
// (the j-th output of a splitmix64 generator seeded with `seed`), and the
// value is the top p bits of x_j times 2^-p, with p the dtype's significand
// width: 53 for float64/complex128, 24 for float32/complex64, 11 for
// float16, 8 for bfloat16. Every value is exactly representable, uniform on
// the dtype's grid over [0, 1), and never 1.
#ifndef TENSORCAST_SERVER_OPS_FILL_H_
#define TENSORCAST_SERVER_OPS_FILL_H_

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"

namespace tensorcast {

// Every element = value (converted by Cast's rules).
void FillValue(void* dst, DType dtype, int64_t n, double value);

// Element i = start + i * step, computed in double, then converted.
void FillArange(void* dst, DType dtype, int64_t n, double start, double step);

// A rows x cols row-major identity: 1 where row == col, 0 elsewhere.
void FillEye(void* dst, DType dtype, int64_t rows, int64_t cols);

// Uniform [0, 1) values (see above). INVALID_ARGUMENT for bool and integer
// dtypes ("rand is only defined for floating point dtypes, got int64"); dst
// is untouched then.
absl::Status FillRand(void* dst, DType dtype, int64_t n, uint64_t seed);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_OPS_FILL_H_
