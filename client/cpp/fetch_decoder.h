// DecodeFetchResponse: a v1.FetchResponse read straight from the slices of
// the grpc::ByteBuffer it arrived in. The data field is handed to the sink
// as views of those slices -- no copy into a protobuf string first -- so a
// Fetch into a caller's buffer costs one copy, from gRPC's receive buffers
// to the destination. Fields other than data and header are skipped, as a
// protobuf parser would skip fields it does not know.
#ifndef TENSORCAST_CLIENT_CPP_FETCH_DECODER_H_
#define TENSORCAST_CLIENT_CPP_FETCH_DECODER_H_

#include <grpcpp/support/byte_buffer.h>

#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "tensorcast/v1/tensor_service.pb.h"

namespace tensorcast {

struct DecodedFetchResponse {
  bool has_header = false;
  v1::FetchHeader header;  // when has_header
  int64_t data_bytes = 0;  // bytes given to the sink
};

// DATA_LOSS for a malformed message; a sink error is returned as it is.
absl::Status DecodeFetchResponse(
    const grpc::ByteBuffer& buffer,
    absl::FunctionRef<absl::Status(absl::string_view)> sink,
    DecodedFetchResponse* out);

}  // namespace tensorcast

#endif  // TENSORCAST_CLIENT_CPP_FETCH_DECODER_H_
