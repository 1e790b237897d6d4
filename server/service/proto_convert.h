// Every conversion between the wire contract (tensorcast.v1) and the types
// beneath the service: the requests into the store's specs (Put's header,
// Fetch's options, Create, To), tensors into TensorInfo, and the Stats
// response. The RPC handlers and reactors call these and hold no field
// mapping of their own. Pure functions (FillStatsResponse reads the
// tenants' counters), thread-safe.
#ifndef TENSORCAST_SERVER_SERVICE_PROTO_CONVERT_H_
#define TENSORCAST_SERVER_SERVICE_PROTO_CONVERT_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "server/service/auth.h"
#include "server/service/metrics.h"
#include "server/store/conversions.h"
#include "server/store/fetch_source.h"
#include "server/store/put_sink.h"
#include "server/store/tenant.h"
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

// The FetchSource spec a FetchRequest asks for (FetchSource::Open
// validates the rest; NPY when the format is unset); INVALID_ARGUMENT for
// an unknown dtype or format. The ref, chunk_bytes and shm_* fields are not
// part of it.
absl::StatusOr<FetchSpec> FetchSpecFromProto(const v1::FetchRequest& request);

// The CreateTensor spec a CreateRequest asks for: zeros when no init is
// set; a Literal's one list packed as contiguous elements (int64, uint64,
// bool, float64 or complex128); with no dtype, the one InferCreateDType
// (server/store/dtype_inference.h) gives. INVALID_ARGUMENT for an unknown
// dtype, a literal with values in more than one list, or complex values of
// odd length. CreateTensor validates the rest.
absl::StatusOr<CreateSpec> CreateSpecFromProto(
    const v1::CreateRequest& request);

// The ToTensor spec a ToRequest asks for (its ref is not part of it);
// INVALID_ARGUMENT for an unknown dtype.
absl::StatusOr<ToSpec> ToSpecFromProto(const v1::ToRequest& request);

void FillTensorInfo(const Tensor& tensor, v1::TensorInfo* info);

// The FetchHeader a Fetch of `source` sends first: the tensor as it
// arrives -- cast, contiguous, on the host, detached (what .numpy()
// returns), its handle and name the source's -- in `format` (NPY unless
// RAW), and the range sent.
void FillFetchHeader(const FetchSource& source, v1::Format format,
                     v1::FetchHeader* header);

// A tenant's figures and limits.
void FillTenantStats(const Tenant& tenant, v1::TenantStats* out);

// The server-wide figures a Stats response gives admins.
struct ServerStats {
  std::vector<TenantPtr> tenants;
  ServiceSnapshot snapshot;
  bool cuda_available = false;
  std::string cuda_status;
};

// What Stats answers `caller`: the server's version and the caller's
// tenant's figures; `server` (admins only; null for everyone else) adds
// every tenant's, the devices' and the server's totals, else the totals
// are the tenant's own.
void FillStatsResponse(const Caller& caller, const ServerStats* server,
                       v1::StatsResponse* response);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_PROTO_CONVERT_H_
