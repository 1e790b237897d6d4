// FetchStream: one Fetch's output, chunk by chunk, in order -- what the
// Fetch reactor sends. A host tensor's chunks are produced on demand
// (FetchSource::Read). A GPU tensor's come through a pipeline: a
// ChunkReader on the GPU's engine gathers and casts the elements of the
// next chunks on the device and copies them into a ring of pinned host
// slots on a CUDA stream of this Fetch's own, so while gRPC sends chunk k
// the GPU is already producing the next ones, and the memory a stream holds
// stays a few chunks whatever the tensor size. The chunks it hands out are
// those pinned slots themselves: a slot is refilled only once the consumer
// has released the chunk in it.
//
// What a stream holds beyond the tensor is paid for before any of it is
// allocated (StreamBudget): a host stream's chunk buffers (at most
// kHostBuffers, each the chunk size) are charged to the tenant's quota as
// each is made, the first when the stream opens; a GPU stream's slots --
// pinned host memory, and as much device scratch when it gathers or casts
// -- are charged whole when it opens, and its pinned bytes are reserved
// from the server's staging budget too. Both go back when the last chunk
// handed out is released.
//
// Not thread-safe: one stream belongs to one Fetch (chunks may be released
// on any thread). Keeps the source (and so the tensor's storage) alive;
// destroying it waits for the GPU's work in flight.
#ifndef TENSORCAST_SERVER_STORE_FETCH_STREAM_H_
#define TENSORCAST_SERVER_STORE_FETCH_STREAM_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/ops/engine.h"
#include "server/store/fetch_source.h"
#include "server/store/staging_budget.h"
#include "server/store/tenant.h"

namespace tensorcast {

// One chunk of a Fetch's output as the transport sends it: the .npy header
// bytes the chunk covers (copied; a few hundred at most), then `size` data
// bytes at `data`, valid while `keepalive` is held. For a host tensor that
// is contiguous and needs no cast, `data` points into the tensor's storage
// and keepalive holds the tensor: the bytes go out without a copy. A GPU
// tensor's chunk is the pinned slot the device copied it into, reused once
// the keepalive is released. Anything else (a cast or gather on the host)
// is produced into a buffer the stream recycles once the last keepalive is
// released.
//
// A consumer may hold up to kSlots - 1 of a GPU stream's chunks at once, or
// kHostBuffers of a host stream's produced ones (gRPC holds one or two);
// past that, NextChunk waits for a release, and fails with
// RESOURCE_EXHAUSTED if none comes within a few seconds.
struct FetchChunk {
  std::string header;
  const char* data = nullptr;
  int64_t size = 0;
  std::shared_ptr<const void> keepalive;
};

// Who pays for what a stream holds: the tenant's quota (null: the default
// tenant, which has none) and, for a tensor on a GPU, the server's pinned
// staging (null: no bound, for tests and embedders).
struct StreamBudget {
  TenantPtr tenant;
  StagingBudget* staging = nullptr;
};

class FetchStream {
 public:
  // Pinned slots of a GPU stream: chunks in flight on the device plus
  // those the consumer still holds.
  static constexpr int kSlots = 4;
  // The most chunk buffers a host stream that casts or gathers makes: the
  // chunk being sent, the one being produced and one spare.
  static constexpr int kHostBuffers = 3;
  // How long a GPU stream waits for room in the staging budget.
  static constexpr absl::Duration kStagingWait = absl::Milliseconds(500);

  // chunk_bytes > 0: the size of every chunk but the last.
  // RESOURCE_EXHAUSTED, before any work, when the tenant's quota cannot
  // take the stream's first buffer (host) or its slots (GPU), or when the
  // staging budget stays full for kStagingWait.
  static absl::StatusOr<std::unique_ptr<FetchStream>> Open(
      FetchSource source, int64_t chunk_bytes, StreamBudget budget = {});

  FetchStream(const FetchStream&) = delete;
  FetchStream& operator=(const FetchStream&) = delete;
  ~FetchStream();

  const FetchSource& source() const { return source_; }
  bool done() const { return pos_ == source_.end(); }
  // The next chunk; the stream may be destroyed while chunks are held.
  absl::Status NextChunk(FetchChunk* out);
  // The next chunk's bytes, copied into *out (its capacity is reused).
  absl::Status Next(std::string* out);

 private:
  class BufferPool;
  class SlotRing;
  FetchStream(FetchSource source, int64_t chunk_bytes, TenantPtr tenant);
  // Queues the chunks after the last one queued whose slots are free, up to
  // `last`; a chunk goes into slot k % kSlots.
  absl::Status StartChunks(int64_t last);

  const FetchSource source_;
  const int64_t chunk_bytes_;
  int64_t pos_ = 0;
  int64_t next_chunk_ = 0;    // the chunk Next() returns
  int64_t next_started_ = 0;  // GPU: the first chunk not yet queued
  // Host, contiguous, no cast: chunks reference the storage.
  bool by_reference_ = false;
  std::shared_ptr<BufferPool> buffers_;  // chunks that are produced
  std::shared_ptr<SlotRing> ring_;       // GPU tensors only
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_FETCH_STREAM_H_
