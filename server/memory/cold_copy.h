// CopyToColdMemory: memcpy for a destination nobody reads soon -- a tensor
// being uploaded, filled piece by piece from a client's shared memory or
// gRPC's receive buffers. From 256 KiB up it writes with non-temporal
// (streaming) stores on x86-64: the destination's lines are not read in
// first nor kept in the cache. A 256 MiB Put from shared memory (4 MiB
// pieces) measured 9.1-9.7 GB/s against 8.5-9.0 with memcpy (three A/B
// pairs, medians of 7, on the 2-core development machine). gRPC hands a
// Put's bytes over in slices under the threshold (a profile of socket Puts
// shows no streamed copy); with it lowered to 4 KiB, three A/B pairs of
// socket Puts showed no difference beyond the noise, so those stay memcpy.
// Other architectures and smaller copies: memcpy.
//
// Like memcpy: the ranges must not overlap; thread-safe. The stores are
// fenced (sfence) before it returns, so the bytes are visible to other
// threads as after a memcpy once the caller publishes them.
#ifndef TENSORCAST_SERVER_MEMORY_COLD_COPY_H_
#define TENSORCAST_SERVER_MEMORY_COLD_COPY_H_

#include <cstddef>

namespace tensorcast {

inline constexpr size_t kColdCopyMinBytes = size_t{256} << 10;

void CopyToColdMemory(char* dst, const char* src, size_t n);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_MEMORY_COLD_COPY_H_
