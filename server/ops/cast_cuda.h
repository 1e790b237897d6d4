// CastOnDevice: Cast (cast.h) for device memory, on a CUDA stream. Same
// rules for every one of the 225 dtype pairs -- the kernels run convert.h's
// element functions -- so results are bit-identical to the CPU's for every
// value, with NaN payloads not guaranteed (always a quiet NaN).
//
// Asynchronous: returns once the work is queued on `stream`; the caller owns
// both buffers and keeps them alive until the stream has run it. Both must
// be device memory (or memory the device can address) of the current
// device, must not overlap (except src == dst with equal dtypes), and must
// be aligned to their element's alignment (as any element offset into a
// cudaMalloc'd buffer is); buffers that are also 16-byte aligned relative to
// each other take the vectorised path. Thread-safe.
//
// Errors: INVALID_ARGUMENT for a null or misaligned buffer; a launch failure
// (or an earlier asynchronous error surfacing at launch) as CudaStatus
// (server/memory/cuda_check.h).
#ifndef TENSORCAST_SERVER_OPS_CAST_CUDA_H_
#define TENSORCAST_SERVER_OPS_CAST_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"

namespace tensorcast {

// Converts n contiguous elements (n <= 0: nothing). src holds n elements of
// src_dtype, dst has room for n elements of dst_dtype.
[[nodiscard]] absl::Status CastOnDevice(const void* src, DType src_dtype,
                                        void* dst, DType dst_dtype, int64_t n,
                                        cudaStream_t stream);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_OPS_CAST_CUDA_H_
