// TC_CUDA_TRY: the one way tensorcast calls the CUDA runtime. It evaluates a
// call and, if that fails, returns an absl::Status from the enclosing
// function naming the call, where it was made and CUDA's description of the
// error. Header-only so that .cu and .cc files share it; usable from any
// function that returns absl::Status (or absl::StatusOr<T>).
#ifndef TENSORCAST_SERVER_MEMORY_CUDA_CHECK_H_
#define TENSORCAST_SERVER_MEMORY_CUDA_CHECK_H_

#include <cuda_runtime_api.h>

#include <string>

#include "absl/status/status.h"

namespace tensorcast {

// OK for cudaSuccess; RESOURCE_EXHAUSTED for an allocation failure; INTERNAL
// otherwise. `what` says which call failed (and where).
inline absl::Status CudaStatus(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return absl::OkStatus();
  std::string message = std::string(what) + ": " + cudaGetErrorName(error) +
                        ": " + cudaGetErrorString(error);
  return error == cudaErrorMemoryAllocation
             ? absl::ResourceExhaustedError(message)
             : absl::InternalError(message);
}

}  // namespace tensorcast

#define TC_CUDA_STRINGIFY_INNER_(x) #x
#define TC_CUDA_STRINGIFY_(x) TC_CUDA_STRINGIFY_INNER_(x)

// Evaluates `expr` (a cudaError_t) once; on error returns the CudaStatus.
#define TC_CUDA_TRY(expr)                                                      \
  do {                                                                         \
    const cudaError_t tc_cuda_try_error_ = (expr);                             \
    if (tc_cuda_try_error_ != cudaSuccess) {                                   \
      return ::tensorcast::CudaStatus(tc_cuda_try_error_,                      \
                                      #expr " at " __FILE__                    \
                                            ":" TC_CUDA_STRINGIFY_(__LINE__)); \
    }                                                                          \
  } while (false)

#endif  // TENSORCAST_SERVER_MEMORY_CUDA_CHECK_H_
