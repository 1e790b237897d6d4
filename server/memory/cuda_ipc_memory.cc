#include "server/memory/cuda_ipc_memory.h"

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "server/memory/cuda_check.h"

namespace tensorcast {
namespace {

// The driver's cuMemGetAddressRange, found through the runtime (linking
// libcuda would make every binary need the driver, even on machines without
// a GPU); null when the driver has none.
using MemGetAddressRange = CUresult (*)(CUdeviceptr*, size_t*, CUdeviceptr);
MemGetAddressRange AddressRangeFunction() {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
#if CUDART_VERSION >= 12050
  const cudaError_t error = cudaGetDriverEntryPointByVersion(
      "cuMemGetAddressRange", &fn, 3020, cudaEnableDefault, &found);
#else
  const cudaError_t error = cudaGetDriverEntryPoint("cuMemGetAddressRange", &fn,
                                                    cudaEnableDefault, &found);
#endif
  if (error != cudaSuccess || found != cudaDriverEntryPointSuccess) {
    (void)cudaGetLastError();
    return nullptr;
  }
  return reinterpret_cast<MemGetAddressRange>(fn);
}

// Makes `device` current for its scope, then restores the one before.
class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    ok_ = cudaSetDevice(device) == cudaSuccess;
  }
  ~DeviceScope() {
    if (previous_ >= 0) (void)cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  bool ok() const { return ok_; }

 private:
  int previous_ = -1;
  bool ok_ = false;
};

class CudaIpcRegion final : public IpcDeviceRegion {
 public:
  // `stream`: its own, on `device`, which it destroys.
  CudaIpcRegion(int device, void* ptr, int64_t size, cudaStream_t stream)
      : device_(device),
        ptr_(static_cast<char*>(ptr)),
        size_(size),
        stream_(stream) {}
  ~CudaIpcRegion() override {
    DeviceScope scope(device_);
    (void)cudaStreamDestroy(stream_);
    (void)cudaIpcCloseMemHandle(ptr_);
  }
  CudaIpcRegion(const CudaIpcRegion&) = delete;
  CudaIpcRegion& operator=(const CudaIpcRegion&) = delete;

  int device() const override { return device_; }
  uintptr_t address() const override {
    return reinterpret_cast<uintptr_t>(ptr_);
  }
  int64_t size() const override { return size_; }

  absl::Status CopyToHost(int64_t offset, void* dst, int64_t n) const override {
    if (n <= 0) return absl::OkStatus();
    DeviceScope scope(device_);
    TC_CUDA_TRY(cudaMemcpyAsync(dst, ptr_ + offset, static_cast<size_t>(n),
                                cudaMemcpyDeviceToHost, stream_));
    TC_CUDA_TRY(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }
  absl::Status CopyFromHost(int64_t offset, const void* src,
                            int64_t n) const override {
    if (n <= 0) return absl::OkStatus();
    DeviceScope scope(device_);
    // Synchronised: a copy from pageable memory may return before the
    // device has the bytes, and the client reads them once Fetch returns.
    TC_CUDA_TRY(cudaMemcpyAsync(ptr_ + offset, src, static_cast<size_t>(n),
                                cudaMemcpyHostToDevice, stream_));
    TC_CUDA_TRY(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }

 private:
  const int device_;
  char* const ptr_;
  const int64_t size_;
  const cudaStream_t stream_;  // the copies'; serialised per region
};

class CudaIpcOpener final : public IpcMemoryOpener {
 public:
  explicit CudaIpcOpener(std::vector<int> served)
      : served_(std::move(served)) {}

  std::unique_ptr<IpcDeviceRegion> Open(absl::string_view handle,
                                        absl::string_view pci_bus_id,
                                        int64_t size,
                                        std::string* why) const override {
    auto refuse = [&](absl::string_view what, cudaError_t error) {
      if (why != nullptr) {
        *why = absl::StrCat(what,
                            error == cudaSuccess
                                ? std::string()
                                : absl::StrCat(": ", cudaGetErrorName(error)));
      }
      (void)cudaGetLastError();  // not sticky: clear it for the next call
      return nullptr;
    };
    if (handle.size() != sizeof(cudaIpcMemHandle_t)) {
      return refuse("not a cudaIpcMemHandle_t", cudaSuccess);
    }
    int device = -1;
    const std::string bus(pci_bus_id);
    cudaError_t error = cudaDeviceGetByPCIBusId(&device, bus.c_str());
    if (error != cudaSuccess) {
      return refuse(absl::StrCat("no GPU at PCI bus id ", bus), error);
    }
    if (std::find(served_.begin(), served_.end(), device) == served_.end()) {
      return refuse(absl::StrCat("cuda:", device, " (", bus,
                                 ") is not a GPU this server serves"),
                    cudaSuccess);
    }
    DeviceScope scope(device);
    if (!scope.ok()) return refuse("cudaSetDevice", cudaGetLastError());
    cudaIpcMemHandle_t h;
    std::memcpy(&h, handle.data(), sizeof(h));
    void* ptr = nullptr;
    error = cudaIpcOpenMemHandle(&ptr, h, cudaIpcMemLazyEnablePeerAccess);
    if (error != cudaSuccess) return refuse("cudaIpcOpenMemHandle", error);
    // The allocation must hold `size` bytes from the handle's address.
    CUdeviceptr base = 0;
    size_t bytes = 0;
    static const MemGetAddressRange address_range = AddressRangeFunction();
    const CUresult r =
        address_range == nullptr
            ? CUDA_ERROR_NOT_SUPPORTED
            : address_range(
                  &base, &bytes,
                  static_cast<CUdeviceptr>(reinterpret_cast<uintptr_t>(ptr)));
    const uintptr_t at = reinterpret_cast<uintptr_t>(ptr);
    if (r != CUDA_SUCCESS || base > at ||
        static_cast<uint64_t>(base + bytes - at) <
            static_cast<uint64_t>(size)) {
      (void)cudaIpcCloseMemHandle(ptr);
      return refuse(
          r != CUDA_SUCCESS
              ? std::string("cuMemGetAddressRange failed")
              : absl::StrCat("the allocation holds ", base + bytes - at,
                             " bytes, fewer than ", size),
          cudaSuccess);
    }
    cudaStream_t stream = nullptr;
    error = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    if (error != cudaSuccess) {
      (void)cudaIpcCloseMemHandle(ptr);
      return refuse("cudaStreamCreateWithFlags", error);
    }
    return std::make_unique<CudaIpcRegion>(device, ptr, size, stream);
  }

 private:
  const std::vector<int> served_;
};

}  // namespace

std::unique_ptr<IpcMemoryOpener> NewCudaIpcMemoryOpener(
    std::vector<int> served) {
  return std::make_unique<CudaIpcOpener>(std::move(served));
}

}  // namespace tensorcast
