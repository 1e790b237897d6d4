#include "server/store/fetch_stream.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/mutex.h"

namespace tensorcast {

namespace {

// Output chunk k's bytes that are tensor data, as data offsets [d0, d1).
struct DataRange {
  int64_t d0 = 0;
  int64_t d1 = 0;
  bool empty() const { return d1 <= d0; }
};

DataRange DataOf(int64_t lo, int64_t hi, int64_t header_size) {
  return {std::max(lo, header_size) - header_size,
          std::max(hi, header_size) - header_size};
}

// The data bytes of chunk k; empty past the end.
DataRange ChunkData(const FetchSource& source, int64_t chunk_bytes, int64_t k) {
  const int64_t lo = source.begin() + k * chunk_bytes;
  if (lo >= source.end()) return {};
  const int64_t hi = std::min(source.end(), lo + chunk_bytes);
  return DataOf(lo, hi, static_cast<int64_t>(source.header().size()));
}

}  // namespace

// Chunk buffers of one stream, recycled: a fresh buffer per chunk would pay
// the page faults of new memory on every chunk. A buffer goes back when the
// transport releases its chunk, which may be after the stream is gone, so
// buffers hold the pool. At most kHostBuffers are made, each charged to the
// tenant as it is made; all of them, and their charges, go when the pool
// does.
class FetchStream::BufferPool
    : public std::enable_shared_from_this<FetchStream::BufferPool> {
 public:
  BufferPool(int64_t capacity, TenantPtr tenant)
      : capacity_(capacity), tenant_(std::move(tenant)) {}

  // A free buffer, or a new one if the tenant's quota allows; otherwise
  // waits for one of ours to come back.
  absl::StatusOr<std::shared_ptr<char>> Take() {
    char* p = nullptr;
    {
      MutexLock lock(&mu_);
      auto available = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return !free_.empty();
      };
      absl::Status refused;
      if (free_.empty() && made_ < kHostBuffers) {
        ByteCharge charge;
        refused = ByteCharge::Take(tenant_, capacity_,
                                   "the chunk buffers of a Fetch that casts "
                                   "or gathers",
                                   &charge);
        if (refused.ok()) {
          free_.emplace_back(new char[static_cast<size_t>(capacity_)]);
          charges_.push_back(std::move(charge));
          ++made_;
        } else if (made_ == 0) {
          return refused;  // none of ours to wait for
        }
      }
      if (!available() && !mu_.AwaitWithTimeout(available, absl::Seconds(5))) {
        return refused.ok() ? absl::ResourceExhaustedError(absl::StrCat(
                                  "Fetch: the consumer still holds all ", made_,
                                  " chunk buffers of this stream after 5 s"))
                            : refused;
      }
      p = free_.back().release();
      free_.pop_back();
    }
    return std::shared_ptr<char>(
        p, [pool = shared_from_this()](char* q) { pool->Give(q); });
  }

 private:
  void Give(char* p) {
    std::unique_ptr<char[]> owned(p);
    MutexLock lock(&mu_);
    free_.push_back(std::move(owned));
  }

  const int64_t capacity_;
  const TenantPtr tenant_;
  Mutex mu_;
  std::vector<std::unique_ptr<char[]>> free_ ABSL_GUARDED_BY(mu_);
  int made_ ABSL_GUARDED_BY(mu_) = 0;
  // One per buffer made; released when the pool goes.
  std::vector<ByteCharge> charges_ ABSL_GUARDED_BY(mu_);
};

// A GPU stream's reader and which of its pinned slots the consumer holds.
// Each chunk handed out holds the ring, so the slots stay valid while gRPC
// still sends from one after the stream is gone.
class FetchStream::SlotRing
    : public std::enable_shared_from_this<FetchStream::SlotRing> {
 public:
  // The charge and the reservation pay for the reader's memory: they go
  // after it does.
  SlotRing(std::unique_ptr<ChunkReader> reader, ByteCharge charge,
           StagingBudget::Reservation staging)
      : charge_(std::move(charge)),
        staging_(std::move(staging)),
        reader_(std::move(reader)),
        held_(static_cast<size_t>(reader_->slots()), false) {}

  ChunkReader& reader() { return *reader_; }

  // The keepalive of a chunk in `slot`: the slot is free again when the
  // last copy is released.
  std::shared_ptr<const void> Hold(int slot) {
    {
      MutexLock lock(&mu_);
      held_[slot] = true;
    }
    return std::shared_ptr<const void>(
        reader_.get(),
        [ring = shared_from_this(), slot](const void*) { ring->Free(slot); });
  }

  bool held(int slot) {
    MutexLock lock(&mu_);
    return held_[slot];
  }

  // False if the slot is still held after `timeout`.
  bool AwaitFree(int slot, absl::Duration timeout) {
    MutexLock lock(&mu_);
    auto free = [this, slot]()
                    ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !held_[slot]; };
    return mu_.AwaitWithTimeout(free, timeout);
  }

 private:
  void Free(int slot) {
    MutexLock lock(&mu_);
    held_[slot] = false;
  }

  ByteCharge charge_;
  StagingBudget::Reservation staging_;
  const std::unique_ptr<ChunkReader> reader_;
  Mutex mu_;
  std::vector<bool> held_ ABSL_GUARDED_BY(mu_);
};

FetchStream::FetchStream(FetchSource source, int64_t chunk_bytes,
                         TenantPtr tenant)
    : source_(std::move(source)), chunk_bytes_(chunk_bytes) {
  const Tensor& t = *source_.tensor();
  by_reference_ = t.storage->device()->engine().is_host() &&
                  t.layout.IsContiguous() && source_.out_dtype() == t.dtype;
  if (!by_reference_ && t.storage->device()->engine().is_host()) {
    buffers_ = std::make_shared<BufferPool>(
        std::min(chunk_bytes_, source_.end() - source_.begin()),
        std::move(tenant));
  }
}

absl::StatusOr<std::unique_ptr<FetchStream>> FetchStream::Open(
    FetchSource source, int64_t chunk_bytes, StreamBudget budget) {
  if (chunk_bytes <= 0) {
    return absl::InvalidArgumentError("chunk size must be positive");
  }
  std::unique_ptr<FetchStream> stream(
      new FetchStream(std::move(source), chunk_bytes, budget.tenant));
  stream->pos_ = stream->source_.begin();
  const Tensor& t = *stream->source_.tensor();
  Engine& engine = t.storage->device()->engine();
  if (engine.is_host()) {
    // The first buffer now, so that a tenant over its quota is refused
    // before anything is produced (it is the one the first chunk takes).
    if (stream->buffers_ != nullptr) {
      absl::StatusOr<std::shared_ptr<char>> first = stream->buffers_->Take();
      if (!first.ok()) return first.status();
    }
    return stream;
  }
  // A chunk's bytes may cut an element at either end: two spare elements.
  // A small range gets slots its size, not the chunk size.
  const DType out = stream->source_.out_dtype();
  const int64_t item = static_cast<int64_t>(ItemSize(out));
  const int64_t range = stream->source_.end() - stream->source_.begin();
  const int64_t slot_elements = std::min(chunk_bytes, range) / item + 2;
  // What the reader will hold (engine.h): its pinned slots, and as much
  // device scratch unless it copies the storage as it lies.
  const int64_t pinned = kSlots * slot_elements * item;
  const bool plain = out == t.dtype && t.layout.IsContiguous();
  ByteCharge charge;
  if (absl::Status s = ByteCharge::Take(
          budget.tenant, plain ? pinned : 2 * pinned,
          "the pinned slots and device scratch of a GPU Fetch", &charge);
      !s.ok()) {
    return s;
  }
  StagingBudget::Reservation staging;
  if (budget.staging != nullptr) {
    if (absl::Status s =
            budget.staging->Reserve(pinned, kStagingWait, &staging);
        !s.ok()) {
      return s;
    }
  }
  absl::StatusOr<std::unique_ptr<ChunkReader>> reader = engine.NewReader(
      t.storage->data(), t.dtype, t.layout, out, slot_elements, kSlots);
  if (!reader.ok()) return reader.status();
  stream->ring_ = std::make_shared<SlotRing>(
      *std::move(reader), std::move(charge), std::move(staging));
  if (absl::Status s = stream->StartChunks(kSlots - 1); !s.ok()) return s;
  return stream;
}

FetchStream::~FetchStream() {
  if (ring_ == nullptr) return;
  // The chunks queued and not yet taken: the device may still be reading
  // the tensor for them.
  for (int64_t k = next_chunk_; k < next_started_; ++k) {
    if (ChunkData(source_, chunk_bytes_, k).empty()) continue;
    ring_->reader().Wait(static_cast<int>(k % kSlots)).status().IgnoreError();
  }
}

absl::Status FetchStream::StartChunks(int64_t last) {
  const int64_t item = static_cast<int64_t>(ItemSize(source_.out_dtype()));
  for (; next_started_ <= last; ++next_started_) {
    const int64_t k = next_started_;
    if (source_.begin() + k * chunk_bytes_ >= source_.end()) break;
    const DataRange d = ChunkData(source_, chunk_bytes_, k);
    if (d.empty()) continue;  // header bytes only: no slot
    const int slot = static_cast<int>(k % kSlots);
    if (ring_->held(slot)) break;  // queued once the consumer lets go
    const int64_t e0 = d.d0 / item;
    const int64_t e1 = (d.d1 + item - 1) / item;
    if (absl::Status s = ring_->reader().Start(slot, e0, e1 - e0); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status FetchStream::NextChunk(FetchChunk* out) {
  const int64_t lo = pos_;
  const int64_t hi = std::min(source_.end(), lo + chunk_bytes_);
  const std::string& header = source_.header();
  const int64_t header_size = static_cast<int64_t>(header.size());
  out->header.clear();
  if (lo < header_size) {
    out->header.assign(header, lo, std::min(hi, header_size) - lo);
  }
  out->data = nullptr;
  out->size = 0;
  out->keepalive.reset();
  DataRange d = DataOf(lo, hi, header_size);
  const int64_t item = static_cast<int64_t>(ItemSize(source_.out_dtype()));
  if (!d.empty()) {
    out->size = d.d1 - d.d0;
    if (by_reference_) {
      const Tensor& t = *source_.tensor();
      out->data = t.storage_bytes() + t.layout.offset * item + d.d0;
      out->keepalive = source_.tensor();
    } else if (ring_ == nullptr) {
      absl::StatusOr<std::shared_ptr<char>> buffer = buffers_->Take();
      if (!buffer.ok()) return buffer.status();
      source_.Read(header_size + d.d0, out->size, buffer->get());
      out->data = buffer->get();
      out->keepalive = *std::move(buffer);
    } else {
      const int slot = static_cast<int>(next_chunk_ % kSlots);
      // Not queued yet: its slot was still held when it could have been.
      while (next_started_ <= next_chunk_) {
        const int blocking = static_cast<int>(next_started_ % kSlots);
        if (!ring_->AwaitFree(blocking, absl::Seconds(5))) {
          return absl::ResourceExhaustedError(
              absl::StrCat("Fetch: the consumer still holds all ", kSlots,
                           " chunk slots of this GPU stream after 5 s"));
        }
        if (absl::Status s = StartChunks(next_chunk_); !s.ok()) return s;
      }
      absl::StatusOr<const char*> host = ring_->reader().Wait(slot);
      if (!host.ok()) return host.status();
      out->data = *host + (d.d0 - d.d0 / item * item);
      out->keepalive = ring_->Hold(slot);
    }
  }
  pos_ = hi;
  ++next_chunk_;
  if (ring_ != nullptr) {
    if (absl::Status s = StartChunks(next_chunk_ + kSlots - 1); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status FetchStream::Next(std::string* out) {
  FetchChunk chunk;
  if (absl::Status s = NextChunk(&chunk); !s.ok()) return s;
  out->assign(chunk.header);
  out->append(chunk.data == nullptr ? "" : chunk.data,
              static_cast<size_t>(chunk.size));
  return absl::OkStatus();
}

}  // namespace tensorcast
