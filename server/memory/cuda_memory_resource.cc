#include "server/memory/cuda_memory_resource.h"

#include <cuda_runtime_api.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/size.h"
#include "server/memory/cuda_check.h"

namespace tensorcast {
namespace {

absl::Status Malloc(size_t bytes, void** p) {
  TC_CUDA_TRY(cudaMalloc(p, bytes));
  return absl::OkStatus();
}

}  // namespace

ScopedDevice::~ScopedDevice() {
  if (previous_ >= 0) {
    const absl::Status status =
        CudaStatus(cudaSetDevice(previous_), "cudaSetDevice (restore)");
    if (!status.ok()) spdlog::error("{}", status.ToString());
  }
}

absl::Status ScopedDevice::Enter(int device) {
  int current = 0;
  TC_CUDA_TRY(cudaGetDevice(&current));
  if (current == device) return absl::OkStatus();
  TC_CUDA_TRY(cudaSetDevice(device));
  previous_ = current;
  return absl::OkStatus();
}

namespace cuda_internal {

absl::Status AllocationFailure(const absl::Status& cuda_error,
                               absl::string_view resource, size_t bytes) {
  (void)cudaGetLastError();
  const int64_t shown = bytes > static_cast<size_t>(INT64_MAX)
                            ? INT64_MAX
                            : static_cast<int64_t>(bytes);
  return absl::Status(
      cuda_error.code(),
      absl::StrCat(resource, ": cannot allocate ", FormatSize(shown), ": ",
                   cuda_error.message()));
}

}  // namespace cuda_internal

absl::StatusOr<int> CudaDeviceCount() {
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error == cudaErrorNoDevice || error == cudaErrorInsufficientDriver) {
    (void)cudaGetLastError();
    return 0;
  }
  TC_CUDA_TRY(error);
  return count;
}

absl::StatusOr<std::shared_ptr<CudaEventFence>> CudaEventFence::Make(
    cudaStream_t stream) {
  cudaEvent_t event = nullptr;
  TC_CUDA_TRY(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  // Owned from here on, so that a failed record destroys it.
  std::shared_ptr<CudaEventFence> fence(new CudaEventFence(event));
  TC_CUDA_TRY(cudaEventRecord(event, stream));
  return fence;
}

CudaEventFence::~CudaEventFence() {
  const absl::Status status =
      CudaStatus(cudaEventDestroy(event_), "cudaEventDestroy");
  if (!status.ok()) spdlog::error("CudaEventFence: {}", status.ToString());
}

bool CudaEventFence::Passed() const {
  const cudaError_t error = cudaEventQuery(event_);
  if (error == cudaSuccess) return true;
  if (error != cudaErrorNotReady) {
    (void)cudaGetLastError();
    if (!error_logged_.exchange(true)) {
      spdlog::error("CudaEventFence: {}",
                    CudaStatus(error, "cudaEventQuery").ToString());
    }
  }
  return false;
}

CudaDeviceMemoryResource::CudaDeviceMemoryResource(int device)
    : device_(device), name_(absl::StrCat("cuda:", device)) {}

absl::StatusOr<void*> CudaDeviceMemoryResource::DoAllocate(size_t bytes) {
  // cudaMalloc rounds up to its own granularity; past this it would wrap.
  if (bytes > SIZE_MAX - (size_t{2} << 20)) {
    return cuda_internal::AllocationFailure(
        absl::ResourceExhaustedError("size too large"), name_, bytes);
  }
  ScopedDevice scoped;
  absl::Status status = scoped.Enter(device_);
  void* p = nullptr;
  // cudaMalloc(0) succeeds with nullptr: take a byte for a unique pointer.
  if (status.ok()) status = Malloc(bytes == 0 ? 1 : bytes, &p);
  if (!status.ok()) {
    return cuda_internal::AllocationFailure(status, name_, bytes);
  }
  return p;
}

void CudaDeviceMemoryResource::DoDeallocate(void* p, size_t bytes) noexcept {
  ScopedDevice scoped;
  absl::Status status = scoped.Enter(device_);
  if (status.ok()) status = CudaStatus(cudaFree(p), "cudaFree");
  if (!status.ok()) {
    spdlog::error("{}: Deallocate({}, {} bytes): {}", name_, p, bytes,
                  status.ToString());
  }
}

std::optional<int64_t> CudaDeviceMemoryResource::AvailableBytes() const {
  ScopedDevice scoped;
  size_t free = 0;
  size_t total = 0;
  absl::Status status = scoped.Enter(device_);
  if (status.ok()) {
    status = CudaStatus(cudaMemGetInfo(&free, &total), "cudaMemGetInfo");
  }
  if (!status.ok()) {
    // Not sticky: clear the last-error slot so that a later launch check
    // does not report it.
    cudaGetLastError();
    return std::nullopt;
  }
  return static_cast<int64_t>(free);
}

}  // namespace tensorcast
