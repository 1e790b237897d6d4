// The bulk RPCs' wire codec, shared by the C++ client (fetch_decoder.h,
// client.cc) and the Python client's native extension
// (client/python/tensorcast/_native.cc): Put framing (the bytes that go
// before a slice of tensor data in a v1.PutRequest) and Fetch decoding (a
// v1.FetchResponse read from the pieces it arrived in, the data field handed
// out as views of those pieces). It knows no gRPC and no protobuf types: a
// message is a sequence of byte spans (the slices of a grpc::ByteBuffer, for
// the callers), and the header crosses as its serialized bytes. Header-only,
// C++17, the standard library alone, so the Python extension builds it with
// nothing more than its compiler.
#ifndef TENSORCAST_CLIENT_CPP_CODEC_H_
#define TENSORCAST_CLIENT_CPP_CODEC_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace tensorcast::codec {

// Protobuf wire types.
inline constexpr uint64_t kVarint = 0;
inline constexpr uint64_t kFixed64 = 1;
inline constexpr uint64_t kLengthDelimited = 2;
inline constexpr uint64_t kFixed32 = 5;

// v1.FetchResponse: data = 1, header = 2. v1.PutRequest: data = 2.
inline constexpr uint64_t kFetchResponseData = 1;
inline constexpr uint64_t kFetchResponseHeader = 2;
inline constexpr uint64_t kPutRequestData = 2;

// The most tensor bytes one PutRequest may carry: the server refuses
// messages over 1 MiB + 64 KiB (the header and framing fit in the rest).
inline constexpr int64_t kMaxPutChunkBytes = int64_t{1} << 20;

// The longest varint (a uint64_t in 7-bit groups) and Put data prefix.
inline constexpr size_t kMaxVarintBytes = 10;
inline constexpr size_t kMaxPutDataPrefixBytes = 1 + kMaxVarintBytes;

// Writes v as a protobuf varint at out (kMaxVarintBytes at most); returns
// the count written.
inline size_t EncodeVarint(uint64_t v, char* out) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out[n++] = static_cast<char>(v);
  return n;
}

// Put framing: the bytes of a v1.PutRequest that go before `length` bytes
// of tensor data -- the data field's tag and length -- written at out
// (kMaxPutDataPrefixBytes at most); returns their count. The prefix and the
// data together are one serialized PutRequest, so the data can be sent as a
// slice of the caller's memory, never copied into a message.
inline size_t PutDataPrefix(uint64_t length, char* out) {
  out[0] = static_cast<char>((kPutRequestData << 3) | kLengthDelimited);
  return 1 + EncodeVarint(length, out + 1);
}

// Reads a serialized protobuf message from the pieces it is held in, field
// by field, handing length-delimited payloads out as views of those pieces.
// The pieces must outlive the reader; one reader per message, one thread.
class PieceReader {
 public:
  PieceReader(const std::string_view* pieces, size_t count)
      : pieces_(pieces), count_(count) {
    Settle();
  }
  PieceReader(const PieceReader&) = delete;
  PieceReader& operator=(const PieceReader&) = delete;

  bool done() const { return index_ == count_; }

  // The next field's number and wire type, and for a length-delimited field
  // its length (its payload is then read with Take, Skip or Copy). Varint
  // and fixed-width fields are consumed here. False for a truncated or
  // unknown encoding.
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

  // The next n bytes as views, in order: piece(std::string_view) -> bool,
  // false to stop. False if the bytes run out or piece stopped.
  template <typename F>
  bool Take(uint64_t n, F&& piece) {
    while (n > 0) {
      if (done()) return false;
      const std::string_view s = pieces_[index_];
      const size_t k = static_cast<size_t>(
          std::min<uint64_t>(n, static_cast<uint64_t>(s.size() - pos_)));
      if (!piece(s.substr(pos_, k))) return false;
      pos_ += k;
      n -= k;
      Settle();
    }
    return true;
  }

  bool Skip(uint64_t n) {
    return Take(n, [](std::string_view) { return true; });
  }

  // The next n bytes copied into *out (for small embedded messages).
  bool Copy(uint64_t n, std::string* out) {
    out->clear();
    return Take(n, [out](std::string_view piece) {
      out->append(piece.data(), piece.size());
      return true;
    });
  }

 private:
  bool ReadVarint(uint64_t* v) {
    *v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (done()) return false;
      const uint8_t b = static_cast<uint8_t>(pieces_[index_][pos_]);
      ++pos_;
      Settle();
      *v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return true;
    }
    return false;
  }

  // Past empty pieces and the end of the current one.
  void Settle() {
    while (index_ < count_ && pos_ == pieces_[index_].size()) {
      ++index_;
      pos_ = 0;
    }
  }

  const std::string_view* pieces_;
  size_t count_;
  size_t index_ = 0;
  size_t pos_ = 0;
};

// What went wrong decoding a Fetch stream (FetchDecoder::Next).
enum class FetchError {
  kNone = 0,
  kStopped,           // a callback returned false (its own error stands)
  kMalformed,         // a truncated or garbled message
  kSecondHeader,      // a second header in the stream
  kDataBeforeHeader,  // data before any header
};

inline const char* Describe(FetchError e) {
  switch (e) {
    case FetchError::kNone:
      return "ok";
    case FetchError::kStopped:
      return "stopped by the receiver";
    case FetchError::kMalformed:
      return "malformed FetchResponse from the server";
    case FetchError::kSecondHeader:
      return "the Fetch stream sent a second header";
    case FetchError::kDataBeforeHeader:
      return "the Fetch stream sent data before its header";
  }
  return "unknown";
}

// Decodes a Fetch stream, one v1.FetchResponse at a time. In each message
// the header is handled first, wherever the fields sit (on_header gets its
// serialized v1.FetchHeader bytes, once per stream), then the data fields
// in order (on_data gets views of the pieces, never copies). Fields other
// than data and header are skipped, as a protobuf parser skips fields it
// does not know. Callbacks return false to stop (kStopped).
class FetchDecoder {
 public:
  template <typename OnHeader, typename OnData>
  FetchError Next(const std::string_view* pieces, size_t count,
                  OnHeader&& on_header, OnData&& on_data) {
    // Pass 0: the header (if any); pass 1: the data.
    for (int pass = 0; pass < 2; ++pass) {
      PieceReader in(pieces, count);
      while (!in.done()) {
        uint64_t field, wire_type, n;
        if (!in.NextField(&field, &wire_type, &n)) {
          return FetchError::kMalformed;
        }
        if (wire_type != kLengthDelimited) continue;
        if (pass == 0 && field == kFetchResponseHeader) {
          std::string header;
          if (!in.Copy(n, &header)) return FetchError::kMalformed;
          if (has_header_) return FetchError::kSecondHeader;
          has_header_ = true;
          if (!on_header(std::string_view(header))) return FetchError::kStopped;
        } else if (pass == 1 && field == kFetchResponseData) {
          if (!has_header_) return FetchError::kDataBeforeHeader;
          bool stopped = false;
          const bool ok = in.Take(n, [&](std::string_view piece) {
            if (!on_data(piece)) {
              stopped = true;
              return false;
            }
            data_bytes_ += static_cast<int64_t>(piece.size());
            return true;
          });
          if (stopped) return FetchError::kStopped;
          if (!ok) return FetchError::kMalformed;
        } else if (!in.Skip(n)) {
          return FetchError::kMalformed;
        }
      }
    }
    return FetchError::kNone;
  }

  bool has_header() const { return has_header_; }
  // The data bytes handed to on_data so far.
  int64_t data_bytes() const { return data_bytes_; }

 private:
  bool has_header_ = false;
  int64_t data_bytes_ = 0;
};

}  // namespace tensorcast::codec

#endif  // TENSORCAST_CLIENT_CPP_CODEC_H_
