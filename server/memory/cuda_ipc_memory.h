// CUDA's IpcMemoryOpener (server/memory/ipc_memory.h), where CUDA is built.
#ifndef TENSORCAST_SERVER_MEMORY_CUDA_IPC_MEMORY_H_
#define TENSORCAST_SERVER_MEMORY_CUDA_IPC_MEMORY_H_

#include <memory>
#include <vector>

#include "server/memory/ipc_memory.h"

namespace tensorcast {

// Opens a handle on the GPU the bus id names (cudaDeviceGetByPCIBusId) with
// cudaIpcOpenMemHandle (cudaIpcMemLazyEnablePeerAccess), and refuses it
// unless the allocation reaches `size` bytes past the handle's address
// (cuMemGetAddressRange). Each region copies on a stream of its own on that
// GPU, synchronised before a copy returns.
// Only GPUs whose ordinals are in `served` (the ones the server serves):
// any other is refused before it is touched.
std::unique_ptr<IpcMemoryOpener> NewCudaIpcMemoryOpener(
    std::vector<int> served);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_MEMORY_CUDA_IPC_MEMORY_H_
