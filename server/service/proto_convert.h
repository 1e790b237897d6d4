// Conversions between the wire contract (tensorcast.v1) and the core types.
// Pure functions, thread-safe.
#ifndef TENSORCAST_SERVER_SERVICE_PROTO_CONVERT_H_
#define TENSORCAST_SERVER_SERVICE_PROTO_CONVERT_H_

#include <optional>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "server/store/fetch_source.h"
#include "server/store/put_sink.h"
#include "server/store/tensor_store.h"
#include "tensorcast/v1/tensor_service.pb.h"

namespace tensorcast {

// INVALID_ARGUMENT for an unknown value; nullopt for DTYPE_UNSPECIFIED.
absl::StatusOr<std::optional<DType>> FromProto(v1::DType dtype);
v1::DType ToProto(DType dtype);
absl::StatusOr<WireFormat> FromProto(v1::Format format, WireFormat unset);

// The PutSink spec a Put's header asks for (PutSink::Start validates the
// rest); INVALID_ARGUMENT for an unknown dtype or format. The shm_* fields
// are not part of it.
absl::StatusOr<PutSpec> PutSpecFromProto(const v1::PutHeader& header);

void FillTensorInfo(const Tensor& tensor, v1::TensorInfo* info);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_PROTO_CONVERT_H_
