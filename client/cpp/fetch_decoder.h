// FetchStreamDecoder: a Fetch stream's v1.FetchResponse messages read
// straight from the slices of the grpc::ByteBuffers they arrived in, with
// the shared codec (codec.h, which the Python extension uses too). The data
// field is handed to the sink as views of those slices -- no copy into a
// protobuf string first -- so a Fetch into a caller's buffer costs one
// copy, from gRPC's receive buffers to the destination. In each message the
// header is read before the data, wherever it sits; a stream must send its
// header once, before any data. Fields other than data and header are
// skipped, as a protobuf parser would skip fields it does not know.
#ifndef TENSORCAST_CLIENT_CPP_FETCH_DECODER_H_
#define TENSORCAST_CLIENT_CPP_FETCH_DECODER_H_

#include <grpcpp/support/byte_buffer.h>

#include <cstdint>
#include <functional>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "client/cpp/codec.h"
#include "tensorcast/v1/tensor_service.pb.h"

namespace tensorcast {

class FetchStreamDecoder {
 public:
  // Decodes the stream's next message. DATA_LOSS for a malformed message, a
  // second header or data before the header; a sink error is returned as it
  // is (and the rest of the message is not read).
  absl::Status Next(const grpc::ByteBuffer& buffer,
                    absl::FunctionRef<absl::Status(absl::string_view)> sink);

  // Called with the header when it comes, before any data is given to the
  // sink; an error it returns stops the stream, returned as it is.
  void set_header_check(
      std::function<absl::Status(const v1::FetchHeader&)> check) {
    check_ = std::move(check);
  }

  bool has_header() const { return codec_.has_header(); }
  const v1::FetchHeader& header() const { return header_; }
  // The data bytes given to the sink so far.
  int64_t data_bytes() const { return codec_.data_bytes(); }

 private:
  codec::FetchDecoder codec_;
  v1::FetchHeader header_;
  std::function<absl::Status(const v1::FetchHeader&)> check_;
};

}  // namespace tensorcast

#endif  // TENSORCAST_CLIENT_CPP_FETCH_DECODER_H_
