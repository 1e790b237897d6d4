// gpu.h where tensorcast-load is built without CUDA.
#include "client/load/gpu.h"

namespace tensorcast::load {
namespace {

absl::Status NoCuda() {
  return absl::UnimplementedError(
      "this tensorcast-load was built without CUDA, so it cannot lend GPU "
      "memory: build it with CUDA (TENSORCAST_CUDA=ON), or use "
      "--shared-memory (host memory) or the socket");
}

}  // namespace

absl::Status CheckGpu(int) { return NoCuda(); }

absl::Status CopyToGpu(int, void*, const void*, int64_t) { return NoCuda(); }

}  // namespace tensorcast::load
