#include "client/cpp/fetch_decoder.h"

#include <grpcpp/support/slice.h>

#include <string>
#include <string_view>
#include <vector>

namespace tensorcast {

absl::Status FetchStreamDecoder::Next(
    const grpc::ByteBuffer& buffer,
    absl::FunctionRef<absl::Status(absl::string_view)> sink) {
  // Dump takes references to the slices, not copies of their bytes.
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) slices.clear();
  std::vector<std::string_view> pieces;
  pieces.reserve(slices.size());
  for (const grpc::Slice& s : slices) {
    pieces.emplace_back(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  bool bad_header = false;
  absl::Status sink_status;  // the sink's or the header check's
  const codec::FetchError e = codec_.Next(
      pieces.data(), pieces.size(),
      [&](std::string_view bytes) {
        bad_header = !header_.ParseFromArray(bytes.data(),
                                             static_cast<int>(bytes.size()));
        if (bad_header) return false;
        if (check_) sink_status = check_(header_);
        return sink_status.ok();
      },
      [&](std::string_view piece) {
        sink_status = sink(absl::string_view(piece.data(), piece.size()));
        return sink_status.ok();
      });
  if (e == codec::FetchError::kNone) return absl::OkStatus();
  if (e == codec::FetchError::kStopped) {
    if (bad_header) {
      return absl::DataLossError(
          "malformed FetchResponse from the server: bad header");
    }
    return sink_status;
  }
  return absl::DataLossError(codec::Describe(e));
}

}  // namespace tensorcast
