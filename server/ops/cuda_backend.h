// What the device registry needs from CUDA, in a header that names no CUDA
// type: a probe of the GPUs, their memory resources and their engines.
// Implemented by cuda_engine.cc where CUDA is built and by
// cuda_backend_none.cc where it is not (the probe then says so and nothing
// else may be called).
#ifndef TENSORCAST_SERVER_OPS_CUDA_BACKEND_H_
#define TENSORCAST_SERVER_OPS_CUDA_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "server/memory/caching_pool.h"
#include "server/memory/ipc_memory.h"
#include "server/memory/memory_resource.h"
#include "server/ops/engine.h"

namespace tensorcast {

struct CudaDeviceInfo {
  int index = 0;
  std::string description;  // "NVIDIA H100 80GB HBM3, 79.1 GiB, sm_90"
};

struct CudaProbe {
  bool built = false;  // this binary carries CUDA code
  std::vector<CudaDeviceInfo> devices;
  // One line for logs and Stats: the runtime and driver, or why no GPU.
  std::string status;
};

// Never fails: a missing driver or GPU is a probe with no devices.
CudaProbe ProbeCuda();

// Device memory of GPU `index` (cudaMalloc) and pinned host memory
// (cudaHostAlloc), for the per-device CachingPools.
std::unique_ptr<MemoryResource> NewCudaDeviceResource(int index);
std::unique_ptr<MemoryResource> NewPinnedResource();

// The engine of GPU `index`. It takes scratch from device_pool (that GPU's
// pool) and staging from pinned_pool; both must outlive it.
std::unique_ptr<Engine> NewCudaEngine(int index, CachingPool* device_pool,
                                      CachingPool* pinned_pool);

// What opens the device memory same-host clients lend through CUDA IPC
// (server/memory/ipc_memory.h): CUDA's where it is built, which refuses a
// bus id that names no GPU of this machine or one whose ordinal is not in
// `served` (the GPUs this server serves); else one that refuses all.
std::unique_ptr<IpcMemoryOpener> NewIpcMemoryOpener(std::vector<int> served);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_OPS_CUDA_BACKEND_H_
