// cuda_ipc_region.h for a client library built without CUDA.
#include "client/cpp/cuda_ipc_region.h"

namespace tensorcast {
namespace {

absl::Status NoCuda() {
  return absl::UnimplementedError(
      "this tensorcast client library was built without CUDA: lend host "
      "memory (SharedMemory) or use the socket");
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaIpcRegion>> CudaIpcRegion::Allocate(Client&,
                                                                       int64_t,
                                                                       int) {
  return NoCuda();
}

absl::StatusOr<std::unique_ptr<CudaIpcRegion>> CudaIpcRegion::Lend(Client&,
                                                                   void*,
                                                                   int64_t) {
  return NoCuda();
}

absl::StatusOr<std::unique_ptr<CudaIpcRegion>> CudaIpcRegion::Start(
    Client&, std::unique_ptr<CudaIpcRegion>) {
  return NoCuda();
}

CudaIpcRegion::~CudaIpcRegion() = default;

}  // namespace tensorcast
