// The fills of fill.h for device memory, on a CUDA stream: each writes the
// same bits as its CPU twin (FillValue, FillArange, FillEye, FillRand) for
// the same arguments. Values are computed in double with no FMA contraction
// (the target builds with -fmad=false) and converted by convert.h's rules;
// FillValue's and FillEye's element is converted on the host, so those two
// match even for NaN; FillArange's NaNs (a NaN or infinite start or step)
// are NaN but their payload and sign are not guaranteed. FillRand runs
// counter_rng.h's counter-based generator.
//
// Asynchronous: returns once the work is queued on `stream`; the caller owns
// dst, keeps it alive until the stream has run it, and gives device memory
// (or memory the device can address) of the current device, aligned to its
// element's alignment, with room for n elements (rows * cols for
// FillEyeOnDevice). n <= 0 fills nothing. Thread-safe.
//
// Errors: INVALID_ARGUMENT for a null or misaligned dst (with something to
// fill), an unknown dtype, rows * cols overflowing, or FillRandOnDevice on a
// bool or integer dtype (FillRand's message; nothing is queued then); a
// launch failure (or an earlier asynchronous error surfacing at launch) as
// CudaStatus (server/memory/cuda_check.h).
#ifndef TENSORCAST_SERVER_OPS_FILL_CUDA_H_
#define TENSORCAST_SERVER_OPS_FILL_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"

namespace tensorcast {

// Every element = value (converted by Cast's rules).
[[nodiscard]] absl::Status FillValueOnDevice(void* dst, DType dtype, int64_t n,
                                             double value, cudaStream_t stream);

// Element i = start + i * step, computed in double, then converted.
[[nodiscard]] absl::Status FillArangeOnDevice(void* dst, DType dtype, int64_t n,
                                              double start, double step,
                                              cudaStream_t stream);

// A rows x cols row-major identity: 1 where row == col, 0 elsewhere.
[[nodiscard]] absl::Status FillEyeOnDevice(void* dst, DType dtype, int64_t rows,
                                           int64_t cols, cudaStream_t stream);

// Uniform [0, 1) values, FillRand's stream for `seed` (fill.h).
[[nodiscard]] absl::Status FillRandOnDevice(void* dst, DType dtype, int64_t n,
                                            uint64_t seed, cudaStream_t stream);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_OPS_FILL_CUDA_H_
