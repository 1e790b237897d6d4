// Fence and StreamId: how CachingPool learns, without depending on CUDA,
// when work queued on a stream has passed a point. A Fence marks a point in
// some stream's work (the CUDA backend's is CudaEventFence, an event
// recorded on the stream); Passed() says, without blocking, whether the
// stream has got past it. StreamId names a stream for the pool's
// same-stream reuse rule; kNoStream (0) means "no stream / the host".
//
// Thread safety: Passed() may be called from any thread, concurrently with
// itself, and must not throw. A Fence is immutable once made and is shared
// (std::shared_ptr<const Fence>) by every block freed behind it.
#ifndef TENSORCAST_SERVER_MEMORY_FENCE_H_
#define TENSORCAST_SERVER_MEMORY_FENCE_H_

#include <cstdint>

namespace tensorcast {

// An opaque stream identity (for CUDA, the cudaStream_t's bits; see
// StreamIdOf in cuda_memory_resource.h). Only compared for equality.
using StreamId = uintptr_t;
inline constexpr StreamId kNoStream = 0;

class Fence {
 public:
  virtual ~Fence() = default;
  // True once the stream has passed the fence; stays true afterwards.
  // Non-blocking; never throws.
  virtual bool Passed() const = 0;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_MEMORY_FENCE_H_
