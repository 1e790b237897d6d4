// gpu.h where tensorcast-load is built with CUDA.
#include <cuda_runtime_api.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "client/load/gpu.h"

namespace tensorcast::load {
namespace {

std::string CudaText(cudaError_t error) {
  return absl::StrCat(cudaGetErrorName(error), ": ", cudaGetErrorString(error));
}

}  // namespace

absl::Status CheckGpu(int device) {
  int count = 0;
  if (cudaError_t e = cudaGetDeviceCount(&count); e != cudaSuccess) {
    (void)cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(
        "no GPU is visible to this process (cudaGetDeviceCount: ", CudaText(e),
        ")"));
  }
  if (device >= count) {
    return absl::FailedPreconditionError(
        absl::StrCat("GPU ", device,
                     " is not visible to this process (it "
                     "sees ",
                     count, " GPU", count == 1 ? "" : "s", ")"));
  }
  return absl::OkStatus();
}

absl::Status CopyToGpu(int device, void* dst, const void* src, int64_t n) {
  int previous = -1;
  if (cudaGetDevice(&previous) != cudaSuccess) previous = -1;
  cudaError_t e = cudaSetDevice(device);
  if (e == cudaSuccess) {
    e = cudaMemcpy(dst, src, static_cast<size_t>(n), cudaMemcpyHostToDevice);
  }
  // A pageable cudaMemcpy may return before the device has the bytes.
  if (e == cudaSuccess) e = cudaDeviceSynchronize();
  if (previous >= 0) (void)cudaSetDevice(previous);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return absl::FailedPreconditionError(absl::StrCat(
        "copying the put payload to GPU ", device, ": ", CudaText(e)));
  }
  return absl::OkStatus();
}

}  // namespace tensorcast::load
