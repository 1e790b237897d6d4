#include "server/service/proto_convert.h"

#include "absl/strings/str_cat.h"
#include "server/store/handle.h"

namespace tensorcast {

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

}  // namespace tensorcast
