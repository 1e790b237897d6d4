// ProtoJson: a protobuf message as the JSON that the CLI's --json prints,
// for scripts. It follows protobuf's JSON mapping (field names as in the
// .proto, every singular scalar printed even at its default, enums by name,
// an unset message field or oneof member left out, bytes as base64) with
// one change: 64-bit integers are JSON numbers, not strings. The mapping
// quotes them for JavaScript's doubles; a script comparing
// `.allocated_bytes > 1000` needs a number (a string compares as greater
// than any number in jq). The digits are written in full, so a parser with
// 64-bit integers (Python's json, jq 1.7) reads them exactly. Bools are
// true/false. Well-known types (Timestamp, Struct...) get no special form:
// the CLI's messages have none. Thread-safe (a pure function).
#ifndef TENSORCAST_PROTO_PROTO_JSON_H_
#define TENSORCAST_PROTO_PROTO_JSON_H_

#include <string>

#include "google/protobuf/message.h"

namespace tensorcast {

// Indented by two spaces, ending with a newline.
std::string ProtoJson(const google::protobuf::Message& message);

}  // namespace tensorcast

#endif  // TENSORCAST_PROTO_PROTO_JSON_H_
