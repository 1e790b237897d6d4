#include "server/store/fetch_stream.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace tensorcast {

// Chunk buffers of one stream, recycled: a fresh buffer per chunk would pay
// the page faults of new memory on every chunk. A buffer goes back when the
// transport releases its chunk, which may be after the stream is gone, so
// buffers hold the pool.
class FetchStream::BufferPool
    : public std::enable_shared_from_this<FetchStream::BufferPool> {
 public:
  explicit BufferPool(int64_t capacity) : capacity_(capacity) {}

  std::shared_ptr<char> Take() {
    char* p = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (!free_.empty()) {
        p = free_.back().release();
        free_.pop_back();
      }
    }
    if (p == nullptr) p = new char[static_cast<size_t>(capacity_)];
    return std::shared_ptr<char>(
        p, [pool = shared_from_this()](char* q) { pool->Give(q); });
  }

 private:
  // Enough for the chunk being sent, the one being produced and one spare.
  static constexpr size_t kKeep = 3;

  void Give(char* p) {
    std::unique_ptr<char[]> owned(p);
    absl::MutexLock lock(&mu_);
    if (free_.size() < kKeep) free_.push_back(std::move(owned));
  }

  const int64_t capacity_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<char[]>> free_ ABSL_GUARDED_BY(mu_);
};

FetchStream::FetchStream(FetchSource source, int64_t chunk_bytes)
    : source_(std::move(source)), chunk_bytes_(chunk_bytes) {
  const Tensor& t = *source_.tensor();
  by_reference_ = t.storage->device()->engine().is_host() &&
                  t.layout.IsContiguous() && source_.out_dtype() == t.dtype;
  if (!by_reference_) {
    buffers_ = std::make_shared<BufferPool>(
        std::min(chunk_bytes_, source_.end() - source_.begin()));
  }
}

absl::StatusOr<std::unique_ptr<FetchStream>> FetchStream::Open(
    FetchSource source, int64_t chunk_bytes) {
  if (chunk_bytes <= 0) {
    return absl::InvalidArgumentError("chunk size must be positive");
  }
  std::unique_ptr<FetchStream> stream(
      new FetchStream(std::move(source), chunk_bytes));
  stream->pos_ = stream->source_.begin();
  const Tensor& t = *stream->source_.tensor();
  Engine& engine = t.storage->device()->engine();
  if (engine.is_host()) return stream;
  // A chunk's bytes may cut an element at either end: two spare elements.
  // A small range gets slots its size, not the chunk size.
  const int64_t item =
      static_cast<int64_t>(ItemSize(stream->source_.out_dtype()));
  const int64_t range = stream->source_.end() - stream->source_.begin();
  absl::StatusOr<std::unique_ptr<ChunkReader>> reader = engine.NewReader(
      t.storage->data(), t.dtype, t.layout, stream->source_.out_dtype(),
      std::min(chunk_bytes, range) / item + 2, kSlots);
  if (!reader.ok()) return reader.status();
  stream->reader_ = *std::move(reader);
  for (int64_t k = 0; k < kSlots; ++k) {
    if (absl::Status s = stream->StartChunk(k); !s.ok()) return s;
  }
  return stream;
}

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

}  // namespace

absl::Status FetchStream::StartChunk(int64_t k) {
  const int64_t lo = source_.begin() + k * chunk_bytes_;
  if (lo >= source_.end()) return absl::OkStatus();
  const int64_t hi = std::min(source_.end(), lo + chunk_bytes_);
  DataRange d = DataOf(lo, hi, static_cast<int64_t>(source_.header().size()));
  if (d.empty()) return absl::OkStatus();
  const int64_t item = static_cast<int64_t>(ItemSize(source_.out_dtype()));
  const int64_t e0 = d.d0 / item;
  const int64_t e1 = (d.d1 + item - 1) / item;
  return reader_->Start(static_cast<int>(k % kSlots), e0, e1 - e0);
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
    } else {
      std::shared_ptr<char> buffer = buffers_->Take();
      if (reader_ == nullptr) {
        source_.Read(header_size + d.d0, out->size, buffer.get());
      } else {
        absl::StatusOr<const char*> host =
            reader_->Wait(static_cast<int>(next_chunk_ % kSlots));
        if (!host.ok()) return host.status();
        std::memcpy(buffer.get(), *host + (d.d0 - d.d0 / item * item),
                    out->size);
      }
      out->data = buffer.get();
      out->keepalive = std::move(buffer);
    }
  }
  if (reader_ != nullptr) {
    // The slot is free again: queue the chunk kSlots ahead into it.
    if (absl::Status s = StartChunk(next_chunk_ + kSlots); !s.ok()) return s;
  }
  pos_ = hi;
  ++next_chunk_;
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
