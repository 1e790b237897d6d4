#include "server/store/conversions.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/core/size.h"
#include "server/ops/cast.h"
#include "server/ops/fill.h"
#include "server/ops/gather.h"

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

absl::Status FillStorage(const CreateSpec& spec, int64_t numel, void* dst) {
  switch (spec.init) {
    case CreateSpec::Init::kZeros:
      FillValue(dst, spec.dtype, numel, 0.0);
      return absl::OkStatus();
    case CreateSpec::Init::kOnes:
      FillValue(dst, spec.dtype, numel, 1.0);
      return absl::OkStatus();
    case CreateSpec::Init::kFull:
      FillValue(dst, spec.dtype, numel, spec.value);
      return absl::OkStatus();
    case CreateSpec::Init::kArange:
      FillArange(dst, spec.dtype, numel, spec.start, spec.step);
      return absl::OkStatus();
    case CreateSpec::Init::kEye:
      if (spec.shape.size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat(
            "eye needs a 2-D shape, got ", ShapeToString(spec.shape)));
      }
      FillEye(dst, spec.dtype, spec.shape[0], spec.shape[1]);
      return absl::OkStatus();
    case CreateSpec::Init::kRand:
      return FillRand(dst, spec.dtype, numel, spec.seed);
    case CreateSpec::Init::kLiteral: {
      int64_t given = static_cast<int64_t>(spec.literal_bytes.size() /
                                           ItemSize(spec.literal_dtype));
      if (given != numel) {
        return absl::InvalidArgumentError(
            absl::StrCat("shape ", ShapeToString(spec.shape), " has ", numel,
                         " elements but ", given, " values were given"));
      }
      Cast(spec.literal_bytes.data(), spec.literal_dtype, dst, spec.dtype,
           numel);
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError("unknown fill");
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
  if (absl::Status s = ctx.store->CheckNameAvailable(spec.name); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::shared_ptr<Storage>> storage =
      Storage::Allocate(*device, *nbytes);
  if (!storage.ok()) return storage.status();
  int64_t numel = *nbytes / static_cast<int64_t>(ItemSize(spec.dtype));
  if (absl::Status s = FillStorage(spec, numel, (*storage)->data()); !s.ok()) {
    return s;
  }
  NewTensor t;
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
  if (absl::Status s = ctx.store->CheckNameAvailable(spec.name); !s.ok()) {
    return s;
  }
  absl::StatusOr<std::shared_ptr<Storage>> storage =
      Storage::Allocate(device, src->numel * ItemSize(dtype));
  if (!storage.ok()) return storage.status();
  GatherCast(src->storage_bytes(), src->dtype, src->layout, 0, src->numel,
             (*storage)->data(), dtype);
  NewTensor t;
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
  t.dtype = src->dtype;
  t.layout = src->layout;
  t.requires_grad = false;
  t.storage = src->storage;
  t.name = std::move(name);
  t.ttl_seconds = ttl_seconds;
  return ctx.store->Add(std::move(t));
}

}  // namespace tensorcast
