// CudaIpcRegion: device memory lent to a tensorcast server on this host
// (which must run with --shared-memory) through CUDA IPC, for Fetch to
// write into and Put to read from -- the same-host path of SharedMemory
// (shared_memory.h) for memory on a GPU:
//
//   absl::StatusOr<std::unique_ptr<CudaIpcRegion>> r =
//       CudaIpcRegion::Allocate(client, 256 << 20, /*device=*/0);
//   FetchOptions f;
//   f.format = v1::FORMAT_RAW;
//   f.shm_region = (*r)->region();
//   f.shm_offset = (*r)->offset();   // where data() lies in the allocation
//   client.Fetch(ref, f, sink)       // bytes land in (*r)->data(), on the GPU
//
// The allocation starts with a 4096-byte header (the token this client
// writes and the server reads back -- proof it can read the memory -- and
// the server's challenge, which it writes before any transfer -- proof it
// can write it); the caller's bytes follow. The handle (cudaIpcGetMemHandle)
// and the GPU's PCI bus id go to the server, which opens the allocation on
// its own context.
//
// Streams: when a Fetch returns, the server has finished writing (its
// stream synchronised before its final message): the bytes are in place for
// any stream of this process. Before a Put, the caller must have finished
// writing the bytes it names (synchronised the stream that wrote them):
// the server reads them on its own stream once the request arrives.
//
// Allocate makes the memory (cudaMalloc, freed by the destructor); Lend lends
// an allocation of the caller's, which must be the start of a cudaMalloc
// allocation of `bytes` bytes (header included) and outlive this object.
// The region lives until this object is destroyed, which ends the session
// call (the server then closes its mapping). Not thread-safe.
//
// A library built without CUDA returns UNIMPLEMENTED from both; a machine
// without a usable GPU gets CUDA's error (FAILED_PRECONDITION). A server
// that cannot open the handle (another host's GPU as it sees them, no CUDA)
// answers NOT_FOUND: fall back to SharedMemory or the socket.
#ifndef TENSORCAST_CLIENT_CPP_CUDA_IPC_REGION_H_
#define TENSORCAST_CLIENT_CPP_CUDA_IPC_REGION_H_

#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/cpp/client.h"

namespace tensorcast {

class CudaIpcRegion {
 public:
  // `size` data bytes (the header comes on top) on GPU `device`.
  static absl::StatusOr<std::unique_ptr<CudaIpcRegion>> Allocate(
      Client& client, int64_t size, int device = 0);
  // The caller's allocation at `allocation`, `bytes` in all (more than the
  // 4096-byte header).
  static absl::StatusOr<std::unique_ptr<CudaIpcRegion>> Lend(Client& client,
                                                             void* allocation,
                                                             int64_t bytes);
  ~CudaIpcRegion();
  CudaIpcRegion(const CudaIpcRegion&) = delete;
  CudaIpcRegion& operator=(const CudaIpcRegion&) = delete;

  // The caller's bytes on the GPU (a device pointer): size() of them, at
  // shm_offset offset().
  void* data() const { return base_ + offset_; }
  int64_t size() const { return size_; }
  int64_t offset() const { return offset_; }
  // This process's ordinal of the GPU, and the server's name of it
  // ("cuda:N", SharedMemoryEvent.device).
  int device() const { return device_; }
  const std::string& server_device() const { return server_device_; }
  // The id Fetch and Put name it by.
  const std::string& region() const { return region_; }

 private:
  CudaIpcRegion() = default;
  static absl::StatusOr<std::unique_ptr<CudaIpcRegion>> Start(
      Client& client, std::unique_ptr<CudaIpcRegion> region);

  char* base_ = nullptr;  // the allocation: header, then data
  // cudaFree'd by the destructor (unused where CUDA is not built).
  [[maybe_unused]] bool owned_ = false;
  int device_ = -1;
  int64_t offset_ = 0;
  int64_t size_ = 0;
  std::string server_device_;
  std::string region_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::SharedMemoryEvent>> session_;
};

}  // namespace tensorcast

#endif  // TENSORCAST_CLIENT_CPP_CUDA_IPC_REGION_H_
