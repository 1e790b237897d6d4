// SliceReader: reads a serialized protobuf message from the slices of the
// grpc::ByteBuffer it arrived in, field by field, handing length-delimited
// payloads out as views of those slices. The Fetch client and the Put
// service decode their bulk `data` fields with it, so tensor bytes go from
// gRPC's receive buffers to their destination in one copy, without passing
// through a protobuf string. Header-only; one reader per buffer, on one
// thread; the buffer must outlive it.
#ifndef TENSORCAST_PROTO_WIRE_H_
#define TENSORCAST_PROTO_WIRE_H_

#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace tensorcast::wire {

// Protobuf wire types.
inline constexpr uint64_t kVarint = 0;
inline constexpr uint64_t kFixed64 = 1;
inline constexpr uint64_t kLengthDelimited = 2;
inline constexpr uint64_t kFixed32 = 5;

class SliceReader {
 public:
  explicit SliceReader(const grpc::ByteBuffer& buffer) {
    // Dump takes references to the slices, not copies of their bytes.
    if (!buffer.Dump(&slices_).ok()) slices_.clear();
    Settle();
  }
  SliceReader(const SliceReader&) = delete;
  SliceReader& operator=(const SliceReader&) = delete;

  bool done() const { return index_ == slices_.size(); }

  // The next field's number and wire type, and for a length-delimited field
  // its length (the payload is then read with Take or Skip). Varint and
  // fixed-width fields are consumed here. False for a truncated or unknown
  // encoding.
  bool NextField(uint64_t* field, uint64_t* wire_type, uint64_t* length) {
    uint64_t tag;
    if (!ReadVarint(&tag)) return false;
    *field = tag >> 3;
    *wire_type = tag & 7;
    *length = 0;
    switch (*wire_type) {
      case kVarint: {
        uint64_t ignored;
        return ReadVarint(&ignored);
      }
      case kFixed64:
        return Skip(8);
      case kFixed32:
        return Skip(4);
      case kLengthDelimited:
        return ReadVarint(length);
      default:
        return false;
    }
  }

  // The next n bytes as views, in order: piece(absl::string_view) -> bool,
  // false to stop. False if the bytes run out or piece stopped.
  template <typename F>
  bool Take(uint64_t n, F&& piece) {
    while (n > 0) {
      if (done()) return false;
      const grpc::Slice& s = slices_[index_];
      const size_t k = static_cast<size_t>(
          std::min<uint64_t>(n, static_cast<uint64_t>(s.size() - pos_)));
      if (!piece(absl::string_view(
              reinterpret_cast<const char*>(s.begin()) + pos_, k))) {
        return false;
      }
      pos_ += k;
      n -= k;
      Settle();
    }
    return true;
  }

  bool Skip(uint64_t n) {
    return Take(n, [](absl::string_view) { return true; });
  }

  // The next n bytes copied into *out (for small embedded messages).
  bool Copy(uint64_t n, std::string* out) {
    out->clear();
    return Take(n, [out](absl::string_view piece) {
      out->append(piece.data(), piece.size());
      return true;
    });
  }

 private:
  bool ReadVarint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (done()) return false;
      const uint8_t b = slices_[index_].begin()[pos_];
      ++pos_;
      Settle();
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }

  // Past empty slices and the end of the current one.
  void Settle() {
    while (index_ < slices_.size() && pos_ == slices_[index_].size()) {
      ++index_;
      pos_ = 0;
    }
  }

  std::vector<grpc::Slice> slices_;
  size_t index_ = 0;
  size_t pos_ = 0;
};

// Appends v as a protobuf varint.
inline void AppendVarint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

// The tag of a length-delimited field.
inline char LengthDelimitedTag(int field) {
  return static_cast<char>((field << 3) | kLengthDelimited);
}

}  // namespace tensorcast::wire

#endif  // TENSORCAST_PROTO_WIRE_H_
