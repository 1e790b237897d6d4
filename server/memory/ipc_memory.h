// Device memory another process lends through CUDA IPC: the seam between
// the shared-memory registry (server/store/shared_memory.h), which knows
// the protocol's rules, and CUDA, which opens the memory. The registry
// holds an IpcMemoryOpener; the server's comes from NewIpcMemoryOpener
// (server/ops/cuda_backend.h): CUDA's where CUDA is built, one that refuses
// everything where it is not. Tests may give the registry a stand-in that
// hands out host memory as if it were a device's (never reachable from the
// server's flags).
#ifndef TENSORCAST_SERVER_MEMORY_IPC_MEMORY_H_
#define TENSORCAST_SERVER_MEMORY_IPC_MEMORY_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace tensorcast {

// The bytes of a cudaIpcMemHandle_t.
inline constexpr size_t kCudaIpcHandleBytes = 64;

// Whether `bus_id` has the form cudaDeviceGetPCIBusId writes:
// [domain:]bus:device.function, hexadecimal -- a domain of 4 or 8 digits
// (optional), 2-digit bus and device, 1-digit function ("0000:3b:00.0").
bool ValidPciBusId(absl::string_view bus_id);

// An opened allocation of another process. Destroying it closes it
// (cudaIpcCloseMemHandle); the caller keeps it alive while any copy runs.
// Thread-safe: copies may run concurrently.
class IpcDeviceRegion {
 public:
  virtual ~IpcDeviceRegion() = default;
  // The GPU it is on, as this process numbers them.
  virtual int device() const = 0;
  // Where it is mapped in this process (a device pointer, which the GPU
  // engines' kernels and device-to-device copies write and read directly),
  // and how many bytes from there are the allocation's (at least the size
  // opened with).
  virtual uintptr_t address() const = 0;
  virtual int64_t size() const = 0;
  // Copies between host memory and bytes [offset, offset + n) of the
  // region; synchronous: done when it returns. The caller checks bounds.
  // INTERNAL (or what the device said) when the copy fails.
  virtual absl::Status CopyToHost(int64_t offset, void* dst,
                                  int64_t n) const = 0;
  virtual absl::Status CopyFromHost(int64_t offset, const void* src,
                                    int64_t n) const = 0;
};

class IpcMemoryOpener {
 public:
  virtual ~IpcMemoryOpener() = default;
  // Opens `handle` (kCudaIpcHandleBytes, checked by the caller) of an
  // allocation on the GPU whose PCI bus id is `pci_bus_id` (well formed,
  // checked by the caller), of at least `size` bytes. Null when it cannot
  // (no CUDA, no such GPU, a handle that does not open, an allocation too
  // small), with the reason in `why` -- for the server's log only: the
  // caller answers every such refusal with one generic error.
  virtual std::unique_ptr<IpcDeviceRegion> Open(absl::string_view handle,
                                                absl::string_view pci_bus_id,
                                                int64_t size,
                                                std::string* why) const = 0;
};

// An opener that refuses every handle, giving `reason` as why (a server
// built without CUDA, or with no GPU).
std::unique_ptr<IpcMemoryOpener> NewRefusingIpcMemoryOpener(std::string reason);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_MEMORY_IPC_MEMORY_H_
