#include "client/cpp/fetch_decoder.h"

#include <string>

#include "proto/wire.h"

namespace tensorcast {
namespace {

absl::Status Malformed(const char* what) {
  return absl::DataLossError(
      std::string("malformed FetchResponse from the server: ") + what);
}

// v1.FetchResponse's fields.
constexpr uint64_t kDataField = 1;
constexpr uint64_t kHeaderField = 2;

}  // namespace

absl::Status DecodeFetchResponse(
    const grpc::ByteBuffer& buffer,
    absl::FunctionRef<absl::Status(absl::string_view)> sink,
    DecodedFetchResponse* out) {
  *out = DecodedFetchResponse();
  wire::SliceReader in(buffer);
  absl::Status sink_status;
  while (!in.done()) {
    uint64_t field, wire_type, n;
    if (!in.NextField(&field, &wire_type, &n)) {
      return Malformed("truncated or unknown field encoding");
    }
    if (wire_type != wire::kLengthDelimited) continue;
    if (field == kDataField) {
      const bool ok = in.Take(n, [&](absl::string_view piece) {
        sink_status = sink(piece);
        out->data_bytes += static_cast<int64_t>(piece.size());
        return sink_status.ok();
      });
      if (!sink_status.ok()) return sink_status;
      if (!ok) return Malformed("truncated data");
    } else if (field == kHeaderField) {
      std::string bytes;
      if (!in.Copy(n, &bytes)) return Malformed("truncated header");
      if (!out->header.ParseFromString(bytes)) return Malformed("bad header");
      out->has_header = true;
    } else if (!in.Skip(n)) {
      return Malformed("truncated field");
    }
  }
  return absl::OkStatus();
}

}  // namespace tensorcast
