// The little of the CUDA runtime tensorcast-load needs for --cuda-ipc beside
// CudaIpcRegion (client/cpp/cuda_ipc_region.h): whether a GPU is there
// before anything is made, and the put payload copied into device memory.
// Built from gpu_cuda.cc where CUDA is, from gpu_none.cc (UNIMPLEMENTED)
// where it is not. Thread-safe.
#ifndef TENSORCAST_CLIENT_LOAD_GPU_H_
#define TENSORCAST_CLIENT_LOAD_GPU_H_

#include <cstdint>

#include "absl/status/status.h"

namespace tensorcast::load {

// OK when GPU `device` of this process can be used. Otherwise a one-line
// message for the user: UNIMPLEMENTED when this build has no CUDA,
// FAILED_PRECONDITION when no such GPU is visible (no driver, no GPU,
// CUDA_VISIBLE_DEVICES).
absl::Status CheckGpu(int device);

// Copies `n` host bytes at `src` to device memory `dst` on GPU `device`;
// the copy has finished when it returns OK.
absl::Status CopyToGpu(int device, void* dst, const void* src, int64_t n);

}  // namespace tensorcast::load

#endif  // TENSORCAST_CLIENT_LOAD_GPU_H_
