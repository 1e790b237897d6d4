// CUDA's IpcMemoryOpener (server/memory/ipc_memory.h), where CUDA is built.
#ifndef TENSORCAST_SERVER_MEMORY_CUDA_IPC_MEMORY_H_
#define TENSORCAST_SERVER_MEMORY_CUDA_IPC_MEMORY_H_

#include <memory>

#include "server/memory/ipc_memory.h"

namespace tensorcast {

// Opens a handle on the GPU the bus id names (cudaDeviceGetByPCIBusId) with
// cudaIpcOpenMemHandle (cudaIpcMemLazyEnablePeerAccess), and refuses it
// unless the allocation reaches `size` bytes past the handle's address
// (cuMemGetAddressRange). Each region copies on a stream of its own on that
// GPU, synchronised before a copy returns.
std::unique_ptr<IpcMemoryOpener> NewCudaIpcMemoryOpener();

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_MEMORY_CUDA_IPC_MEMORY_H_
