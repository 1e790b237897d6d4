// CopyView: a tensor's elements, cast, from the device they live on into
// contiguous memory of any device -- the data movement of To(), which is
// where host and GPU meet. Host to host is GatherCast; within a GPU its
// gather kernel; host to GPU casts on the host into pinned staging that the
// copy engine uploads; GPU to anywhere reads through a ChunkReader
// (gather/cast on the GPU, copies to pinned host chunks, a few in flight).
// Between two GPUs the chunks pass through pinned host memory: correct on
// any topology, if not at peer-to-peer speed.
//
// Thread-safe; synchronous (the copy is complete when it returns).
#ifndef TENSORCAST_SERVER_STORE_TRANSFER_H_
#define TENSORCAST_SERVER_STORE_TRANSFER_H_

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "common/dtype.h"
#include "server/ops/engine.h"
#include "server/store/device.h"
#include "server/store/tensor_store.h"

namespace tensorcast {

// Bytes per chunk when a copy goes in pieces.
inline constexpr int64_t kTransferChunkBytes = 4 << 20;
// Chunks in flight in a ChunkReader pipeline.
inline constexpr int kTransferSlots = 3;

// dst (on dst_device) has room for src.numel elements of out_dtype.
absl::Status CopyView(const Tensor& src, DType out_dtype, Device* dst_device,
                      void* dst);

// Runs `reader` over elements [0, total) in chunks of its slot size with all
// its slots in flight, calling consume(first, count, host_bytes) in order.
absl::Status PumpChunks(ChunkReader& reader, int64_t total,
                        absl::FunctionRef<absl::Status(
                            int64_t first, int64_t count, const char* host)>
                            consume);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_TRANSFER_H_
