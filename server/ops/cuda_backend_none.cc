// cuda_backend.h for a build without the CUDA toolkit: no GPUs, ever.
#include <cstdlib>

#include "server/ops/cuda_backend.h"

namespace tensorcast {

CudaProbe ProbeCuda() {
  CudaProbe probe;
  probe.status = "this server was built without CUDA, so it serves cpu only";
  return probe;
}

// Unreachable: the registry creates CUDA devices only from a probe's list.
std::unique_ptr<MemoryResource> NewCudaDeviceResource(int) { std::abort(); }
std::unique_ptr<MemoryResource> NewPinnedResource() { std::abort(); }
std::unique_ptr<Engine> NewCudaEngine(int, CachingPool*, CachingPool*) {
  std::abort();
}

std::unique_ptr<IpcMemoryOpener> NewIpcMemoryOpener(std::vector<int>) {
  return NewRefusingIpcMemoryOpener("this server was built without CUDA");
}

}  // namespace tensorcast
