#include "server/service/request_limits.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "proto/wire.h"
#include "server/core/shape.h"

namespace tensorcast {
namespace {

constexpr int kMaxLiteralFields = (1 << 17) + 32;  // every value unpacked

bool ReadVarint(absl::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    const uint8_t b = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

absl::Status Malformed(const char* method) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed ", method, " request"));
}

// Walks an encoded message's fields, calling field(number, payload) for
// each (payload: a length-delimited field's bytes, else empty) until it
// returns an error. INVALID_ARGUMENT when the bytes are not a message, or
// hold groups (which no request has).
template <typename F>
absl::Status ForEachField(absl::string_view in, const char* method, F field) {
  while (!in.empty()) {
    uint64_t tag, n;
    if (!ReadVarint(&in, &tag) || (tag >> 3) == 0) return Malformed(method);
    absl::string_view payload;
    switch (tag & 7) {
      case wire::kVarint:
        if (!ReadVarint(&in, &n)) return Malformed(method);
        break;
      case wire::kFixed64:
      case wire::kFixed32: {
        const size_t width = (tag & 7) == wire::kFixed64 ? 8 : 4;
        if (in.size() < width) return Malformed(method);
        in.remove_prefix(width);
        break;
      }
      case wire::kLengthDelimited:
        if (!ReadVarint(&in, &n) || n > in.size()) return Malformed(method);
        payload = in.substr(0, n);
        in.remove_prefix(n);
        break;
      default:
        return Malformed(method);
    }
    if (absl::Status s = field(tag >> 3, payload); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status TooManyFields(const char* method, int max) {
  return absl::InvalidArgumentError(absl::StrCat(
      "a ", method, " request (or a message in it) holds more than ", max,
      " fields"));
}

// Refuses the encoded request past `limits`: too many fields of its own,
// of the counted field, or in all the occurrences of each nested message
// field (INVALID_ARGUMENT); bytes that are not a message.
absl::Status ScanFields(absl::string_view in, const char* method,
                        const RequestLimits& limits) {
  int fields = 0;
  int counted = 0;
  std::vector<int> nested_fields(limits.nested.size(), 0);
  return ForEachField(
      in, method, [&](uint64_t number, absl::string_view payload) {
        if (++fields > limits.max_fields) {
          return TooManyFields(method, limits.max_fields);
        }
        if (number == static_cast<uint64_t>(limits.counted_field) &&
            ++counted > limits.max_counted) {
          return absl::InvalidArgumentError(absl::StrCat(
              method, " takes at most ", limits.max_counted, " ",
              limits.counted_what, " per call; split the request"));
        }
        for (size_t i = 0; i < limits.nested.size(); ++i) {
          if (number != static_cast<uint64_t>(limits.nested[i].field)) continue;
          const int max = limits.nested[i].max_fields;
          int& seen = nested_fields[i];
          if (absl::Status s = ForEachField(
                  payload, method,
                  [&](uint64_t, absl::string_view) {
                    return ++seen > max ? TooManyFields(method, max)
                                        : absl::OkStatus();
                  });
              !s.ok()) {
            return s;
          }
        }
        return absl::OkStatus();
      });
}

absl::Status TooBig(const char* method, size_t max, size_t bytes) {
  return absl::ResourceExhaustedError(
      absl::StrCat("a ", method, " request is at most ", max,
                   " bytes; this one has ", bytes));
}

}  // namespace

// Create's literal values come unpacked in up to kMaxLiteralFields fields;
// its other messages (arange, the empty ones) are small.
const RequestLimits kCreateLimits = {
    static_cast<size_t>(kMaxReceiveMessageBytes),
    32 + static_cast<int>(kMaxRank),  // unpacked shape dims
    {{16, kMaxLiteralFields}, {13, 32}, {10, 32}, {11, 32}, {14, 32}}};
const RequestLimits kDeleteLimits = {
    static_cast<size_t>(kMaxReceiveMessageBytes),
    kMaxDeleteRefs + 32,
    {},
    1,
    kMaxDeleteRefs,
    "refs"};
const RequestLimits kSmallLimits = {};
const RequestLimits kStreamLimits = {
    64 << 10, 32 + static_cast<int>(kMaxRank), {}, 0, 0, ""};

absl::Status ParseRequest(absl::string_view bytes, const char* method,
                          const RequestLimits& limits,
                          google::protobuf::MessageLite* request) {
  if (bytes.size() > limits.max_bytes) {
    return TooBig(method, limits.max_bytes, bytes.size());
  }
  if (absl::Status s = ScanFields(bytes, method, limits); !s.ok()) return s;
  if (!request->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Malformed(method);
  }
  return absl::OkStatus();
}

absl::Status ParseRequest(const grpc::ByteBuffer& raw, const char* method,
                          const RequestLimits& limits,
                          google::protobuf::MessageLite* request) {
  // Refused before the bytes are even gathered.
  if (raw.Length() > limits.max_bytes) {
    return TooBig(method, limits.max_bytes, raw.Length());
  }
  std::vector<grpc::Slice> slices;
  if (!raw.Dump(&slices).ok()) return Malformed(method);
  std::string bytes;
  bytes.reserve(raw.Length());
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return ParseRequest(bytes, method, limits, request);
}

absl::Status ParseStreamRequest(const grpc::ByteBuffer& bytes, const char* what,
                                google::protobuf::MessageLite* message) {
  return ParseRequest(bytes, what, kStreamLimits, message);
}

absl::Status ParseStreamRequest(absl::string_view bytes, const char* what,
                                google::protobuf::MessageLite* message) {
  return ParseRequest(bytes, what, kStreamLimits, message);
}

}  // namespace tensorcast
