// GatherCastOnDevice: GatherCast (gather.h) for device memory, on a CUDA
// stream. Elements [start, start + count) of a strided view, in C order of
// its shape, are converted by convert.h's rules (the same kernels' rules as
// CastOnDevice) and written contiguously to dst, so results are
// bit-identical to the CPU's GatherCast, NaN payloads aside (a conversion
// that goes through device float arithmetic gives a quiet NaN).
//
// Asynchronous: returns once the work is queued on `stream`; the caller owns
// storage and dst and keeps them alive until the stream has run it. Both
// must be device memory (or memory the device can address) of the current
// device, must not overlap, and must be aligned to their element's
// alignment. Thread-safe. A contiguous run goes to cudaMemcpyAsync (same
// dtype) or CastOnDevice; any other layout to one kernel launch, each
// thread decomposing its output index over the view's dims (size-1 dims
// dropped and adjacent dims merged first, so most views need few).
//
// Preconditions (checked by the caller, as for GatherCast): every element
// the layout addresses lies inside the storage, and 0 <= start, 0 <= count,
// start + count <= the view's element count.
//
// Errors: INVALID_ARGUMENT for a null or misaligned buffer (count > 0), an
// unknown dtype, or a layout whose shape and strides differ in length or
// exceed kMaxRank; a launch failure (or an earlier asynchronous error
// surfacing at launch) as CudaStatus (server/memory/cuda_check.h).
#ifndef TENSORCAST_SERVER_OPS_GATHER_CUDA_H_
#define TENSORCAST_SERVER_OPS_GATHER_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "common/dtype.h"
#include "server/core/shape.h"

namespace tensorcast {

// `storage` points at element 0 of the storage (of src_dtype); the layout's
// offset and strides (in elements, possibly 0 or negative) address it. dst
// has room for count elements of dst_dtype. count <= 0: nothing.
[[nodiscard]] absl::Status GatherCastOnDevice(
    const void* storage, DType src_dtype, const Layout& layout, int64_t start,
    int64_t count, void* dst, DType dst_dtype, cudaStream_t stream);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_OPS_GATHER_CUDA_H_
