#include "server/store/fetch_stream.h"

#include <algorithm>
#include <cstring>

namespace tensorcast {

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

absl::Status FetchStream::Next(std::string* out) {
  const int64_t lo = pos_;
  const int64_t hi = std::min(source_.end(), lo + chunk_bytes_);
  out->resize(hi - lo);  // same size as last time: no new allocation
  if (reader_ == nullptr) {
    source_.Read(lo, hi - lo, out->data());
  } else {
    const std::string& header = source_.header();
    const int64_t header_size = static_cast<int64_t>(header.size());
    if (lo < header_size) {
      std::memcpy(out->data(), header.data() + lo,
                  std::min(hi, header_size) - lo);
    }
    DataRange d = DataOf(lo, hi, header_size);
    if (!d.empty()) {
      absl::StatusOr<const char*> host =
          reader_->Wait(static_cast<int>(next_chunk_ % kSlots));
      if (!host.ok()) return host.status();
      const int64_t item = static_cast<int64_t>(ItemSize(source_.out_dtype()));
      std::memcpy(out->data() + (std::max(lo, header_size) - lo),
                  *host + (d.d0 - d.d0 / item * item), d.d1 - d.d0);
    }
    // The slot is free again: queue the chunk kSlots ahead into it.
    if (absl::Status s = StartChunk(next_chunk_ + kSlots); !s.ok()) return s;
  }
  pos_ = hi;
  ++next_chunk_;
  return absl::OkStatus();
}

}  // namespace tensorcast
