// What a client may send, and the parse of a request within it. gRPC
// refuses any message longer than kMaxReceiveMessageBytes
// (RESOURCE_EXHAUSTED) before it is parsed, for every method; so Put's data
// messages carry at most kMaxPutChunkBytes each (the clients cut them so).
// The unary methods and the streams' first messages check more on the
// encoded bytes, after the token and before parsing them: a size per
// method, the number of fields (each unknown field would cost protobuf an
// allocation), and Delete's refs (kMaxDeleteRefs). Pure functions,
// thread-safe.
#ifndef TENSORCAST_SERVER_SERVICE_REQUEST_LIMITS_H_
#define TENSORCAST_SERVER_SERVICE_REQUEST_LIMITS_H_

#include <grpcpp/support/byte_buffer.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message_lite.h"

namespace tensorcast {

inline constexpr int64_t kMaxPutChunkBytes = 1 << 20;
inline constexpr int64_t kMaxReceiveMessageBytes =
    kMaxPutChunkBytes + (64 << 10);
inline constexpr int kMaxDeleteRefs = 1000;

// Fetch's data per message, sent: what --chunk-bytes and a request's
// chunk_bytes are held to.
inline constexpr int64_t kMinChunkBytes = 4 << 10;
inline constexpr int64_t kMaxChunkBytes = 64 << 20;

// What a request may hold, checked on its encoded bytes before protobuf
// parses it. Parsing costs memory per field (an unknown or repeated string
// field of two bytes becomes a heap string of tens), so a request's fields
// are counted, not only its bytes: its own, those of the embedded messages
// named in `nested`, and one repeated field's entries.
struct RequestLimits {
  size_t max_bytes = 64 << 10;
  int max_fields = 32;
  struct Nested {
    int field;
    int max_fields;
  };
  std::vector<Nested> nested;
  int counted_field = 0;  // 0: none
  int max_counted = 0;
  const char* counted_what = "";
};

// Create's: its literal values come unpacked, one field each.
extern const RequestLimits kCreateLimits;
// Delete's: up to kMaxDeleteRefs refs.
extern const RequestLimits kDeleteLimits;
// The other unary requests': small.
extern const RequestLimits kSmallLimits;
// Fetch's request and Put's header (and Copy's request): small, with an
// unpacked shape at most.
extern const RequestLimits kStreamLimits;

// The request, parsed once its size (RESOURCE_EXHAUSTED past
// limits.max_bytes) and fields (INVALID_ARGUMENT, as for bytes that are
// not a message) are within `limits`. `method` names it in the messages.
absl::Status ParseRequest(absl::string_view bytes, const char* method,
                          const RequestLimits& limits,
                          google::protobuf::MessageLite* request);
// The same from gRPC's buffer: one too long is refused before its bytes
// are gathered.
absl::Status ParseRequest(const grpc::ByteBuffer& raw, const char* method,
                          const RequestLimits& limits,
                          google::protobuf::MessageLite* request);

// A streaming method's request message (Fetch's FetchRequest, Put's
// header) parsed within kStreamLimits. `what` names it in the messages.
absl::Status ParseStreamRequest(const grpc::ByteBuffer& bytes, const char* what,
                                google::protobuf::MessageLite* message);
absl::Status ParseStreamRequest(absl::string_view bytes, const char* what,
                                google::protobuf::MessageLite* message);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_REQUEST_LIMITS_H_
