// cuda_ipc_region.h where the client library is built with CUDA.
#include "client/cpp/cuda_ipc_region.h"

#include <cuda_runtime_api.h>

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/secure_random.h"

namespace tensorcast {
namespace {

constexpr size_t kTokenBytes = 32;
// As in shared_memory.cc: the header, and where the challenge goes in it.
constexpr int64_t kHeaderBytes = 4096;
constexpr int64_t kChallengeOffset = 64;
constexpr int64_t kMaxChallengeBytes = 64;

absl::Status CudaError(cudaError_t error, const char* call) {
  (void)cudaGetLastError();  // not sticky: clear it
  return absl::FailedPreconditionError(absl::StrCat(
      call, ": ", cudaGetErrorName(error), ": ", cudaGetErrorString(error)));
}

// `n` host bytes to device memory at `dst`, finished when it returns (a
// pageable cudaMemcpy may return before the device has them).
absl::Status Upload(void* dst, const void* src, size_t n) {
  if (cudaError_t e = cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice);
      e != cudaSuccess) {
    return CudaError(e, "cudaMemcpy");
  }
  if (cudaError_t e = cudaDeviceSynchronize(); e != cudaSuccess) {
    return CudaError(e, "cudaDeviceSynchronize");
  }
  return absl::OkStatus();
}

// Makes `device` current for its scope, then restores the one before.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    error_ = cudaSetDevice(device);
  }
  ~DeviceScope() {
    if (previous_ >= 0) (void)cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  cudaError_t error() const { return error_; }

 private:
  int previous_ = -1;
  cudaError_t error_ = cudaSuccess;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CudaIpcRegion>> CudaIpcRegion::Allocate(
    Client& client, int64_t size, int device) {
  if (size <= 0 || size > std::numeric_limits<int64_t>::max() - kHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a CUDA IPC region needs a size, not ", size));
  }
  DeviceScope scope(device);
  if (scope.error() != cudaSuccess) {
    return CudaError(scope.error(), "cudaSetDevice");
  }
  void* p = nullptr;
  if (cudaError_t e = cudaMalloc(&p, static_cast<size_t>(kHeaderBytes + size));
      e != cudaSuccess) {
    return CudaError(e, "cudaMalloc");
  }
  std::unique_ptr<CudaIpcRegion> region(new CudaIpcRegion());
  region->base_ = static_cast<char*>(p);
  region->owned_ = true;
  region->device_ = device;
  region->offset_ = kHeaderBytes;
  region->size_ = size;
  return Start(client, std::move(region));
}

absl::StatusOr<std::unique_ptr<CudaIpcRegion>> CudaIpcRegion::Lend(
    Client& client, void* allocation, int64_t bytes) {
  if (allocation == nullptr || bytes <= kHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a CUDA IPC region is an allocation of more than its ",
                     kHeaderBytes, "-byte header"));
  }
  cudaPointerAttributes attributes;
  if (cudaError_t e = cudaPointerGetAttributes(&attributes, allocation);
      e != cudaSuccess) {
    return CudaError(e, "cudaPointerGetAttributes");
  }
  if (attributes.type != cudaMemoryTypeDevice) {
    return absl::InvalidArgumentError(
        "a CUDA IPC region is device memory (cudaMalloc)");
  }
  std::unique_ptr<CudaIpcRegion> region(new CudaIpcRegion());
  region->base_ = static_cast<char*>(allocation);
  region->device_ = attributes.device;
  region->offset_ = kHeaderBytes;
  region->size_ = bytes - kHeaderBytes;
  return Start(client, std::move(region));
}

absl::StatusOr<std::unique_ptr<CudaIpcRegion>> CudaIpcRegion::Start(
    Client& client, std::unique_ptr<CudaIpcRegion> region) {
  DeviceScope scope(region->device_);
  if (scope.error() != cudaSuccess) {
    return CudaError(scope.error(), "cudaSetDevice");
  }
  cudaIpcMemHandle_t handle;
  if (cudaError_t e = cudaIpcGetMemHandle(&handle, region->base_);
      e != cudaSuccess) {
    return CudaError(e, "cudaIpcGetMemHandle");
  }
  char bus[32] = {0};
  if (cudaError_t e = cudaDeviceGetPCIBusId(bus, sizeof(bus), region->device_);
      e != cudaSuccess) {
    return CudaError(e, "cudaDeviceGetPCIBusId");
  }
  const std::string token = RandomBytes(kTokenBytes);
  if (absl::Status s = Upload(region->base_, token.data(), token.size());
      !s.ok()) {
    return s;
  }
  v1::OpenSharedMemoryRequest request;
  request.set_cuda_ipc_handle(
      std::string(reinterpret_cast<const char*>(&handle), sizeof(handle)));
  request.set_cuda_pci_bus_id(bus);
  request.set_size(region->offset_ + region->size_);
  request.set_token(token);
  // The session lasts as long as the region: the token, no deadline.
  client.Prepare(&region->ctx_, /*with_deadline=*/false);
  region->session_ = client.stub()->OpenSharedMemory(&region->ctx_, request);
  v1::SharedMemoryEvent event;
  if (!region->session_->Read(&event)) {
    grpc::Status status = region->session_->Finish();
    region->session_.reset();
    return FromGrpcStatus(status);
  }
  region->region_ = event.region();
  region->server_device_ = event.device();
  if (event.data_offset() > kHeaderBytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the server reserves ", event.data_offset(),
        " bytes of each region; this client leaves ", kHeaderBytes));
  }
  const std::string& challenge = event.challenge();
  if (static_cast<int64_t>(challenge.size()) > kMaxChallengeBytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("the server's challenge has ", challenge.size(),
                     " bytes; this client takes at most ", kMaxChallengeBytes));
  }
  if (absl::Status s = Upload(region->base_ + kChallengeOffset,
                              challenge.data(), challenge.size());
      !s.ok()) {
    return s;
  }
  return region;
}

CudaIpcRegion::~CudaIpcRegion() {
  if (session_ != nullptr) {
    ctx_.TryCancel();
    (void)session_->Finish();
  }
  if (owned_ && base_ != nullptr) {
    DeviceScope scope(device_);
    (void)cudaFree(base_);
  }
}

}  // namespace tensorcast
