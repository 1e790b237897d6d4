#include "server/store/conversions.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/size.h"
#include "server/ops/cast.h"
#include "server/ops/fill.h"
#include "server/store/transfer.h"

namespace tensorcast {

absl::Status CheckTensorSize(int64_t nbytes, int64_t max_tensor_bytes) {
  if (max_tensor_bytes > 0 && nbytes > max_tensor_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tensor of ", FormatSize(nbytes), " exceeds this server's maximum of ",
        FormatSize(max_tensor_bytes), " (--max-tensor-bytes)"));
  }
  return absl::OkStatus();
}

namespace {

absl::Status FillStorage(const CreateSpec& spec, int64_t numel, Device* device,
                         void* dst) {
  FillOp op;
  switch (spec.init) {
    case CreateSpec::Init::kZeros:
      op.value = 0;
      break;
    case CreateSpec::Init::kOnes:
      op.value = 1;
      break;
    case CreateSpec::Init::kFull:
      op.value = spec.value;
      break;
    case CreateSpec::Init::kArange:
      op.kind = FillOp::Kind::kArange;
      op.start = spec.start;
      op.step = spec.step;
      break;
    case CreateSpec::Init::kEye:
      op.kind = FillOp::Kind::kEye;
      op.rows = spec.shape[0];
      op.cols = spec.shape[1];
      break;
    case CreateSpec::Init::kRand:
      op.kind = FillOp::Kind::kRand;
      op.seed = spec.seed;
      break;
    case CreateSpec::Init::kLiteral: {
      // Cast on the host, into the device's memory or its upload staging.
      const int64_t in = static_cast<int64_t>(ItemSize(spec.literal_dtype));
      const int64_t out = static_cast<int64_t>(ItemSize(spec.dtype));
      return device->engine().Upload(
          dst, numel * out, out,
          [&](int64_t offset, int64_t len, char* staging) {
            Cast(spec.literal_bytes.data() + offset / out * in,
                 spec.literal_dtype, staging, spec.dtype, len / out);
          });
    }
  }
  return device->engine().Fill(op, dst, spec.dtype, numel);
}

// The argument checks of each fill, before any memory is taken.
absl::Status CheckFill(const CreateSpec& spec, int64_t numel) {
  if (spec.init == CreateSpec::Init::kEye && spec.shape.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("eye needs a 2-D shape, got ", ShapeToString(spec.shape)));
  }
  if (spec.init == CreateSpec::Init::kRand &&
      !IsFloatingOrComplex(spec.dtype)) {
    // FillRand's own message, for a tensor on any device.
    return FillRand(nullptr, spec.dtype, 0, spec.seed);
  }
  if (spec.init == CreateSpec::Init::kLiteral) {
    int64_t given = static_cast<int64_t>(spec.literal_bytes.size() /
                                         ItemSize(spec.literal_dtype));
    if (given != numel) {
      return absl::InvalidArgumentError(
          absl::StrCat("shape ", ShapeToString(spec.shape), " has ", numel,
                       " elements but ", given, " values were given"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TensorPtr> CreateTensor(const ConversionContext& ctx,
                                       CreateSpec spec) {
  absl::StatusOr<Device*> device = ctx.devices->Get(spec.device);
  if (!device.ok()) return device.status();
  if (absl::Status s = CheckRequiresGrad(spec.dtype, spec.requires_grad);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<int64_t> nbytes = NumBytes(spec.shape, spec.dtype);
  if (!nbytes.ok()) return nbytes.status();
  if (absl::Status s = CheckTensorSize(*nbytes, ctx.max_tensor_bytes);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          ctx.store->CheckNameAvailable(spec.name, ctx.tenant.get());
      !s.ok()) {
    return s;
  }
  int64_t numel = *nbytes / static_cast<int64_t>(ItemSize(spec.dtype));
  if (absl::Status s = CheckFill(spec, numel); !s.ok()) return s;
  absl::StatusOr<std::shared_ptr<Storage>> storage =
      Storage::Allocate(*device, *nbytes, ctx.tenant);
  if (!storage.ok()) return storage.status();
  if (absl::Status s = FillStorage(spec, numel, *device, (*storage)->data());
      !s.ok()) {
    return s;
  }
  NewTensor t;
  t.tenant = ctx.tenant;
  t.dtype = spec.dtype;
  t.layout = Layout::Contiguous(std::move(spec.shape));
  t.requires_grad = spec.requires_grad;
  t.storage = *std::move(storage);
  t.name = std::move(spec.name);
  t.ttl_seconds = spec.ttl_seconds;
  return ctx.store->Add(std::move(t));
}

absl::StatusOr<TensorPtr> ToTensor(const ConversionContext& ctx,
                                   const TensorPtr& src, const ToSpec& spec) {
  Device* device = src->storage->device();
  if (!spec.device.empty()) {
    absl::StatusOr<Device*> d = ctx.devices->Get(spec.device);
    if (!d.ok()) return d.status();
    device = *d;
  }
  DType dtype = spec.dtype.value_or(src->dtype);
  if (device == src->storage->device() && dtype == src->dtype && !spec.copy) {
    return src;
  }
  if (absl::Status s =
          CheckTensorSize(src->numel * ItemSize(dtype), ctx.max_tensor_bytes);
      !s.ok()) {
    return s;
  }
  if (absl::Status s =
          ctx.store->CheckNameAvailable(spec.name, ctx.tenant.get());
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::shared_ptr<Storage>> storage =
      Storage::Allocate(device, src->numel * ItemSize(dtype), ctx.tenant);
  if (!storage.ok()) return storage.status();
  if (absl::Status s = CopyView(*src, dtype, device, (*storage)->data());
      !s.ok()) {
    return s;
  }
  NewTensor t;
  t.tenant = ctx.tenant;
  t.dtype = dtype;
  t.layout = Layout::Contiguous(src->layout.shape);
  // PyTorch keeps requires_grad through .to() unless the result cannot have
  // it (an integer or bool dtype).
  t.requires_grad = src->requires_grad && IsFloatingOrComplex(dtype);
  t.storage = *std::move(storage);
  t.name = spec.name;
  t.ttl_seconds = spec.ttl_seconds;
  return ctx.store->Add(std::move(t));
}

absl::StatusOr<TensorPtr> DetachTensor(const ConversionContext& ctx,
                                       const TensorPtr& src, std::string name,
                                       int64_t ttl_seconds) {
  NewTensor t;
  t.tenant = ctx.tenant;
  t.dtype = src->dtype;
  t.layout = src->layout;
  t.requires_grad = false;
  t.storage = src->storage;
  t.name = std::move(name);
  t.ttl_seconds = ttl_seconds;
  return ctx.store->Add(std::move(t));
}

}  // namespace tensorcast
