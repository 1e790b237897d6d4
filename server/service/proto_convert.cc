#include "server/service/proto_convert.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/cluster/forward.h"
#include "server/store/dtype_inference.h"
#include "server/store/handle.h"

namespace tensorcast {
namespace {

// Packs a Literal's one non-empty list as contiguous elements.
absl::Status LiteralToSpec(const v1::Literal& literal, CreateSpec* spec) {
  int lists =
      (literal.float_values_size() > 0) + (literal.int_values_size() > 0) +
      (literal.uint_values_size() > 0) + (literal.bool_values_size() > 0) +
      (literal.complex_values_size() > 0);
  if (lists > 1) {
    return absl::InvalidArgumentError(
        "a literal gives values in exactly one of its lists");
  }
  auto pack = [spec](DType dtype, const auto& values) {
    spec->literal_dtype = dtype;
    spec->literal_bytes.resize(values.size() * ItemSize(dtype));
    char* out = spec->literal_bytes.data();
    for (auto v : values) {
      std::memcpy(out, &v, sizeof(v));
      out += sizeof(v);
    }
  };
  if (literal.int_values_size() > 0) {
    pack(DType::kInt64, literal.int_values());
  } else if (literal.uint_values_size() > 0) {
    pack(DType::kUInt64, literal.uint_values());
  } else if (literal.bool_values_size() > 0) {
    std::vector<uint8_t> bools(literal.bool_values().begin(),
                               literal.bool_values().end());
    pack(DType::kBool, bools);
  } else if (literal.complex_values_size() > 0) {
    if (literal.complex_values_size() % 2 != 0) {
      return absl::InvalidArgumentError(
          "complex_values holds (real, imaginary) pairs: its length must be "
          "even");
    }
    pack(DType::kFloat64, literal.complex_values());
    spec->literal_dtype = DType::kComplex128;
  } else {
    pack(DType::kFloat64, literal.float_values());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::optional<DType>> FromProto(v1::DType dtype) {
  int value = static_cast<int>(dtype);
  if (value == 0) return std::optional<DType>();
  if (value < 0 || value > kNumDTypes) {
    return absl::InvalidArgumentError(absl::StrCat("unknown dtype enum value ",
                                                   value, "; expected 1..",
                                                   kNumDTypes, " (see DType)"));
  }
  return std::optional<DType>(static_cast<DType>(value - 1));
}

v1::DType ToProto(DType dtype) {
  return static_cast<v1::DType>(static_cast<int>(dtype) + 1);
}

absl::StatusOr<WireFormat> FromProto(v1::Format format, WireFormat unset) {
  switch (format) {
    case v1::FORMAT_UNSPECIFIED:
      return unset;
    case v1::FORMAT_NPY:
      return WireFormat::kNpy;
    case v1::FORMAT_RAW:
      return WireFormat::kRaw;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown format enum value ", static_cast<int>(format)));
  }
}

absl::StatusOr<PutSpec> PutSpecFromProto(const v1::PutHeader& header) {
  absl::StatusOr<std::optional<DType>> dtype = FromProto(header.dtype());
  if (!dtype.ok()) return dtype.status();
  absl::StatusOr<WireFormat> format =
      FromProto(header.format(), WireFormat::kRaw);
  if (!format.ok()) return format.status();
  PutSpec spec;
  spec.format = *format;
  spec.dtype = *dtype;
  spec.shape.assign(header.shape().begin(), header.shape().end());
  spec.device = header.device();
  spec.requires_grad = header.requires_grad();
  spec.name = header.name();
  spec.ttl_seconds = header.ttl_seconds();
  spec.total_bytes = header.total_bytes();
  return spec;
}

absl::StatusOr<FetchSpec> FetchSpecFromProto(const v1::FetchRequest& request) {
  FetchSpec spec;
  absl::StatusOr<WireFormat> format =
      FromProto(request.format(), WireFormat::kNpy);
  if (!format.ok()) return format.status();
  absl::StatusOr<std::optional<DType>> dtype = FromProto(request.dtype());
  if (!dtype.ok()) return dtype.status();
  spec.format = *format;
  spec.dtype = *dtype;
  spec.detach = request.detach();
  spec.cpu = request.cpu();
  spec.force = request.force();
  spec.offset = request.offset();
  spec.length = request.length();
  return spec;
}

absl::StatusOr<CreateSpec> CreateSpecFromProto(
    const v1::CreateRequest& request) {
  absl::StatusOr<std::optional<DType>> dtype = FromProto(request.dtype());
  if (!dtype.ok()) return dtype.status();
  CreateSpec spec;
  spec.shape.assign(request.shape().begin(), request.shape().end());
  spec.device = request.device();
  spec.requires_grad = request.requires_grad();
  spec.name = request.name();
  spec.ttl_seconds = request.ttl_seconds();
  switch (request.init_case()) {
    case v1::CreateRequest::kZeros:
    case v1::CreateRequest::INIT_NOT_SET:
      spec.init = CreateSpec::Init::kZeros;
      break;
    case v1::CreateRequest::kOnes:
      spec.init = CreateSpec::Init::kOnes;
      break;
    case v1::CreateRequest::kFull:
      spec.init = CreateSpec::Init::kFull;
      spec.value = request.full();
      break;
    case v1::CreateRequest::kArange:
      spec.init = CreateSpec::Init::kArange;
      spec.start = request.arange().start();
      spec.step = request.arange().step();
      break;
    case v1::CreateRequest::kEye:
      spec.init = CreateSpec::Init::kEye;
      break;
    case v1::CreateRequest::kRandSeed:
      spec.init = CreateSpec::Init::kRand;
      spec.seed = request.rand_seed();
      break;
    case v1::CreateRequest::kValues:
      spec.init = CreateSpec::Init::kLiteral;
      if (absl::Status s = LiteralToSpec(request.values(), &spec); !s.ok()) {
        return s;
      }
      break;
  }
  spec.dtype = dtype->has_value() ? **dtype : InferCreateDType(spec);
  return spec;
}

absl::StatusOr<ToSpec> ToSpecFromProto(const v1::ToRequest& request) {
  absl::StatusOr<std::optional<DType>> dtype = FromProto(request.dtype());
  if (!dtype.ok()) return dtype.status();
  ToSpec spec;
  spec.device = request.device();
  spec.dtype = *dtype;
  spec.copy = request.copy();
  spec.name = request.name();
  spec.ttl_seconds = request.ttl_seconds();
  return spec;
}

void FillTensorInfo(const Tensor& t, v1::TensorInfo* info) {
  info->set_handle(t.handle);
  info->set_node(std::string(RefNode(t.handle)));
  info->set_name(t.name);
  info->set_dtype(ToProto(t.dtype));
  for (int64_t d : t.layout.shape) info->add_shape(d);
  for (int64_t s : t.layout.strides) info->add_strides(s);
  info->set_storage_offset(t.layout.offset);
  info->set_device(t.device());
  info->set_requires_grad(t.requires_grad);
  info->set_nbytes(t.nbytes());
  info->set_numel(t.numel);
  info->set_is_contiguous(t.layout.IsContiguous());
  info->set_storage_bytes(t.storage->nbytes());
  info->set_expires_at_unix_s(t.expires_unix_s);
  info->set_created_at_unix_s(t.created_unix_s);
}

void FillFetchHeader(const FetchSource& source, v1::Format format,
                     v1::FetchHeader* header) {
  v1::TensorInfo* info = header->mutable_tensor();
  FillTensorInfo(*source.tensor(), info);
  info->set_dtype(ToProto(source.out_dtype()));
  info->clear_strides();
  for (int64_t s : ContiguousStrides(source.tensor()->layout.shape)) {
    info->add_strides(s);
  }
  info->set_storage_offset(0);
  info->set_is_contiguous(true);
  info->set_requires_grad(false);
  info->set_device("cpu");
  info->set_nbytes(source.tensor()->numel * ItemSize(source.out_dtype()));
  info->set_storage_bytes(info->nbytes());
  header->set_format(format == v1::FORMAT_RAW ? v1::FORMAT_RAW
                                              : v1::FORMAT_NPY);
  header->set_total_bytes(source.total_bytes());
  header->set_offset(source.begin());
  header->set_length(source.end() - source.begin());
}

void FillTenantStats(const Tenant& tenant, v1::TenantStats* out) {
  const TenantLimits limits = tenant.limits();
  out->set_tenant(tenant.name());
  out->set_bytes(tenant.bytes());
  out->set_tensors(tenant.tensors());
  out->set_active_streams(tenant.streams());
  out->set_quota_bytes(limits.max_bytes);
  out->set_max_tensors(limits.max_tensors);
  out->set_max_streams(limits.max_streams);
}

void FillStatsResponse(const Caller& caller, const ServerStats* server,
                       v1::StatsResponse* response) {
  if (caller.tenant != nullptr) {
    FillTenantStats(*caller.tenant, response->mutable_tenant());
  }
  response->set_version(TENSORCAST_VERSION);
  if (server == nullptr) {
    // One's own figures only: the server's are admin's.
    response->set_tensors(caller.tenant->tensors());
    response->set_active_streams(caller.tenant->streams());
    return;
  }
  for (const TenantPtr& t : server->tenants) {
    FillTenantStats(*t, response->add_tenants());
  }
  for (const DeviceSnapshot& device : server->snapshot.devices) {
    FillDeviceStats(device, response->add_devices());
  }
  response->set_tensors(server->snapshot.tensors);
  response->set_active_streams(server->snapshot.active_streams);
  response->set_cuda_available(server->cuda_available);
  response->set_cuda_status(server->cuda_status);
}

}  // namespace tensorcast
