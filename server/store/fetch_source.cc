#include "server/store/fetch_source.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/core/npy.h"
#include "server/ops/gather.h"

namespace tensorcast {

absl::StatusOr<FetchSource> FetchSource::Open(TensorPtr tensor,
                                              const FetchSpec& spec) {
  // Tensor.numpy() checks the device first, then grad: keep that order so
  // the same tensor gives the same error as in PyTorch.
  if (!tensor->storage->device()->is_host() && !spec.cpu && !spec.force) {
    return absl::FailedPreconditionError(absl::StrCat(
        "can't convert ", tensor->device(),
        " device type tensor to numpy. Use Tensor.cpu() to copy the tensor "
        "to host memory first."));
  }
  if (tensor->requires_grad && !spec.detach && !spec.force) {
    return absl::FailedPreconditionError(kRequiresGradMessage);
  }
  FetchSource src;
  src.out_dtype_ = spec.dtype.value_or(tensor->dtype);
  if (spec.format == WireFormat::kNpy) {
    if (src.out_dtype_ == DType::kBFloat16) {
      return absl::InvalidArgumentError(
          "bfloat16 has no NumPy dtype, so it cannot be sent as .npy: fetch "
          "with dtype float32, or in RAW format (the Python client views RAW "
          "bfloat16 with ml_dtypes when it is installed)");
    }
    absl::StatusOr<std::string> header =
        EncodeNpyHeader(src.out_dtype_, tensor->layout.shape);
    if (!header.ok()) return header.status();
    src.header_ = *std::move(header);
  }
  int64_t data_bytes = tensor->numel * ItemSize(src.out_dtype_);
  src.total_bytes_ = static_cast<int64_t>(src.header_.size()) + data_bytes;
  if (spec.offset < 0 || spec.length < 0) {
    return absl::InvalidArgumentError("offset and length must not be negative");
  }
  if (spec.offset > src.total_bytes_) {
    return absl::OutOfRangeError(
        absl::StrCat("offset ", spec.offset, " is past the end of the ",
                     src.total_bytes_, "-byte output"));
  }
  src.begin_ = spec.offset;
  int64_t rest = src.total_bytes_ - spec.offset;
  src.end_ =
      src.begin_ + (spec.length > 0 ? std::min(spec.length, rest) : rest);
  src.plain_copy_ =
      src.out_dtype_ == tensor->dtype && tensor->layout.IsContiguous();
  src.tensor_ = std::move(tensor);
  return src;
}

void FetchSource::ReadElements(int64_t first, int64_t count, char* dst) const {
  if (count <= 0) return;
  if (plain_copy_) {
    size_t item = ItemSize(out_dtype_);
    std::memcpy(
        dst, tensor_->storage_bytes() + (tensor_->layout.offset + first) * item,
        count * item);
    return;
  }
  GatherCast(tensor_->storage_bytes(), tensor_->dtype, tensor_->layout, first,
             count, dst, out_dtype_);
}

void FetchSource::Read(int64_t pos, int64_t n, char* dst) const {
  const int64_t header_size = static_cast<int64_t>(header_.size());
  if (pos < header_size) {
    int64_t k = std::min(n, header_size - pos);
    std::memcpy(dst, header_.data() + pos, k);
    pos += k;
    dst += k;
    n -= k;
  }
  if (n <= 0) return;
  const int64_t item = static_cast<int64_t>(ItemSize(out_dtype_));
  int64_t byte = pos - header_size;  // into the data
  // A range may start or end inside an element (a resumed download):
  // produce those edge elements into a scratch element and copy the part.
  char element[16];
  if (int64_t skew = byte % item; skew != 0) {
    ReadElements(byte / item, 1, element);
    int64_t k = std::min(n, item - skew);
    std::memcpy(dst, element + skew, k);
    byte += k;
    dst += k;
    n -= k;
  }
  int64_t whole = n / item;
  ReadElements(byte / item, whole, dst);
  byte += whole * item;
  dst += whole * item;
  n -= whole * item;
  if (n > 0) {
    ReadElements(byte / item, 1, element);
    std::memcpy(dst, element, n);
  }
}

}  // namespace tensorcast
