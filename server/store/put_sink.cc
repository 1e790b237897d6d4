#include "server/store/put_sink.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/memory/cold_copy.h"
#include "server/store/device.h"

namespace tensorcast {

absl::StatusOr<std::unique_ptr<PutSink>> PutSink::Start(
    const ConversionContext& ctx, PutSpec spec) {
  absl::StatusOr<Device*> device = ctx.devices->Get(spec.device);
  if (!device.ok()) return device.status();
  if (spec.total_bytes < 0 || spec.ttl_seconds < 0) {
    return absl::InvalidArgumentError(
        "total_bytes and ttl_seconds must not be negative");
  }
  if (absl::Status s =
          ctx.store->CheckNameAvailable(spec.name, ctx.tenant.get());
      !s.ok()) {
    return s;
  }
  std::unique_ptr<PutSink> sink(new PutSink(ctx, std::move(spec), *device));
  if (!(*device)->engine().is_host()) {
    absl::StatusOr<DeviceName> name = ParseDeviceName((*device)->name());
    if (name.ok() && name->is_cuda) sink->gpu_ = name->index;
  }
  if (sink->spec_.format == WireFormat::kRaw) {
    if (!sink->spec_.dtype.has_value()) {
      return absl::InvalidArgumentError(
          "a RAW upload needs a dtype in its header");
    }
    if (absl::Status s = sink->Reserve(*sink->spec_.dtype, sink->spec_.shape);
        !s.ok()) {
      return s;
    }
  }
  return sink;
}

absl::Status PutSink::Reserve(DType dtype, const Shape& shape) {
  if (absl::Status s = CheckRequiresGrad(dtype, spec_.requires_grad); !s.ok()) {
    return s;
  }
  absl::StatusOr<int64_t> nbytes = NumBytes(shape, dtype);
  if (!nbytes.ok()) return nbytes.status();
  if (absl::Status s = CheckTensorSize(*nbytes, ctx_.max_tensor_bytes);
      !s.ok()) {
    return s;
  }
  int64_t header = npy_.has_value() ? npy_->header_bytes : 0;
  if (spec_.total_bytes > 0 && spec_.total_bytes != header + *nbytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "byte count mismatch: the header announces ", spec_.total_bytes,
        " bytes but a ", DTypeName(dtype), " tensor of shape ",
        ShapeToString(shape), " needs ", header + *nbytes));
  }
  absl::StatusOr<std::shared_ptr<Storage>> storage =
      Storage::Allocate(device_, *nbytes, ctx_.tenant);
  if (!storage.ok()) return storage.status();
  storage_ = *std::move(storage);
  if (!device_->engine().is_host()) {
    // The host staging a GPU upload gathers pieces in: charged, then made.
    const int64_t staging = std::min(kDeviceStagingBytes, *nbytes);
    if (absl::Status s = ByteCharge::Take(ctx_.tenant, staging,
                                          "the host staging of a GPU upload",
                                          &staging_charge_);
        !s.ok()) {
      storage_.reset();
      return s;
    }
    staging_.reserve(static_cast<size_t>(staging));
    staging_capacity_ = staging;
  }
  dtype_ = dtype;
  shape_ = shape;
  expected_data_ = *nbytes;
  return absl::OkStatus();
}

absl::Status PutSink::ParseHeader() {
  absl::StatusOr<std::optional<NpyHeader>> parsed =
      ParseNpyHeader(header_buffer_);
  if (!parsed.ok()) return parsed.status();
  if (!parsed->has_value()) return absl::OkStatus();  // need more bytes
  npy_ = **parsed;
  if (spec_.dtype.has_value() &&
      (*spec_.dtype != npy_->dtype || spec_.shape != npy_->shape)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the header says ", DTypeName(*spec_.dtype),
                     ShapeToString(spec_.shape), " but the .npy file holds ",
                     DTypeName(npy_->dtype), ShapeToString(npy_->shape)));
  }
  if (absl::Status s = Reserve(npy_->dtype, npy_->shape); !s.ok()) return s;
  // Whatever followed the header in the buffer is data.
  absl::string_view rest =
      absl::string_view(header_buffer_).substr(npy_->header_bytes);
  std::string leftover(rest);
  header_buffer_.clear();
  header_buffer_.shrink_to_fit();
  received_ -= static_cast<int64_t>(leftover.size());
  return Write(leftover);
}

absl::Status PutSink::CountReceived(int64_t n) {
  received_ += n;
  if (spec_.total_bytes > 0 && received_ > spec_.total_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("byte count mismatch: received more than the ",
                     spec_.total_bytes, " bytes the header announced"));
  }
  return absl::OkStatus();
}

absl::Status PutSink::CountData(int64_t n) {
  if (data_written_ + n > expected_data_) {
    return absl::InvalidArgumentError(
        absl::StrCat("byte count mismatch: a ", DTypeName(dtype_),
                     " tensor of shape ", ShapeToString(shape_), " has ",
                     expected_data_, " data bytes, but more arrived"));
  }
  data_written_ += n;
  return absl::OkStatus();
}

absl::Status PutSink::WriteFrom(
    int64_t n, const std::function<absl::Status(char*)>& read) {
  if (n < 0) return absl::InvalidArgumentError("a negative byte count");
  if (storage_ == nullptr || !device_->engine().is_host()) {
    read_buffer_.resize(static_cast<size_t>(n));
    if (absl::Status s = read(read_buffer_.data()); !s.ok()) return s;
    absl::Status s = Write(read_buffer_);
    if (storage_ != nullptr && device_->engine().is_host()) {
      std::string().swap(read_buffer_);  // not needed again
    }
    return s;
  }
  if (absl::Status s = CountReceived(n); !s.ok()) return s;
  char* dst = storage_->bytes() + data_written_;
  if (absl::Status s = CountData(n); !s.ok()) return s;
  absl::Status s = read(dst);
  // The bytes are counted, not all written: Finish must not store them.
  if (!s.ok()) read_failed_ = true;
  return s;
}

bool PutSink::TakesDeviceBytes() const {
  return storage_ != nullptr && gpu_ >= 0 &&
         !(npy_.has_value() && npy_->byteswap);
}

absl::Status PutSink::WriteFromDevice(int64_t n, int src_device,
                                      const void* src) {
  if (!TakesDeviceBytes()) {
    return absl::FailedPreconditionError(
        "this upload cannot take bytes from device memory now");
  }
  if (n < 0) return absl::InvalidArgumentError("a negative byte count");
  if (absl::Status s = CountReceived(n); !s.ok()) return s;
  if (absl::Status s = CountData(n); !s.ok()) return s;
  // Counted from here on: a failure leaves the upload unusable (Finish
  // must not store a tensor with bytes missing).
  if (!staging_.empty()) {
    // What followed the .npy header: no byte swap, so all of it, whole
    // elements or not, before the bytes that come after it.
    const int64_t staged = static_cast<int64_t>(staging_.size());
    if (absl::Status s = device_->engine().Upload(
            storage_->bytes() + uploaded_, staged, 1,
            [&](int64_t offset, int64_t len, char* staging) {
              std::memcpy(staging, staging_.data() + offset, len);
            });
        !s.ok()) {
      read_failed_ = true;
      return s;
    }
    uploaded_ += staged;
    staging_.clear();
  }
  absl::Status s = device_->engine().CopyDevice(storage_->bytes() + uploaded_,
                                                gpu_, src, src_device, n);
  if (!s.ok()) {
    read_failed_ = true;  // counted, not all written: never stored
    return s;
  }
  uploaded_ += n;
  return absl::OkStatus();
}

absl::Status PutSink::Write(absl::string_view data) {
  if (absl::Status s = CountReceived(static_cast<int64_t>(data.size()));
      !s.ok()) {
    return s;
  }
  if (storage_ == nullptr) {  // NPY header still incomplete
    header_buffer_.append(data.data(), data.size());
    return ParseHeader();
  }
  if (absl::Status s = CountData(static_cast<int64_t>(data.size())); !s.ok()) {
    return s;
  }
  if (device_->engine().is_host()) {
    // The tensor is not read until the upload ends: streamed, not cached.
    CopyToColdMemory(storage_->bytes() + data_written_ - data.size(),
                     data.data(), data.size());
    return absl::OkStatus();
  }
  // Never more than the staging charged: a full buffer is a whole number of
  // elements (4 MiB, or the whole tensor), uploaded before more is taken.
  while (!data.empty()) {
    const size_t n = std::min(
        data.size(), static_cast<size_t>(staging_capacity_) - staging_.size());
    staging_.append(data.data(), n);
    data.remove_prefix(n);
    if (static_cast<int64_t>(staging_.size()) == staging_capacity_) {
      if (absl::Status s = FlushToDevice(); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status PutSink::FlushToDevice() {
  // Whole elements only, so that a byte swap sees complete ones; the rest
  // waits for the next piece (Finish flushes after the count checks).
  const int64_t item = static_cast<int64_t>(ItemSize(dtype_));
  const int64_t n = static_cast<int64_t>(staging_.size()) / item * item;
  if (n == 0) return absl::OkStatus();
  if (npy_.has_value() && npy_->byteswap) {
    ByteSwapElements(staging_.data(), n / item, dtype_);
  }
  absl::Status s = device_->engine().Upload(
      storage_->bytes() + uploaded_, n, item,
      [&](int64_t offset, int64_t len, char* staging) {
        std::memcpy(staging, staging_.data() + offset, len);
      });
  if (!s.ok()) return s;
  uploaded_ += n;
  staging_.erase(0, n);
  return absl::OkStatus();
}

absl::StatusOr<TensorPtr> PutSink::Finish() {
  if (read_failed_) {
    return absl::FailedPreconditionError(
        "the upload's bytes could not all be read: nothing was stored");
  }
  if (storage_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("truncated .npy: the upload ended after ", received_,
                     " bytes, inside the header"));
  }
  if (data_written_ != expected_data_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "byte count mismatch: a ", DTypeName(dtype_), " tensor of shape ",
        ShapeToString(shape_), " needs ", expected_data_, " data bytes, but ",
        data_written_, " arrived"));
  }
  if (!device_->engine().is_host()) {
    if (absl::Status s = FlushToDevice(); !s.ok()) return s;
    staging_ = std::string();
    staging_charge_.Release();
  }
  NewTensor t;
  t.tenant = ctx_.tenant;
  t.dtype = dtype_;
  t.layout.shape = shape_;
  if (npy_.has_value()) {
    if (npy_->byteswap && device_->engine().is_host()) {
      ByteSwapElements(storage_->data(), expected_data_ / ItemSize(dtype_),
                       dtype_);
    }
    // A Fortran-order file is stored as it came, as a view with Fortran
    // strides: no copy now, and Fetch gathers it into C order.
    t.layout.strides = npy_->fortran_order ? FortranStrides(shape_)
                                           : ContiguousStrides(shape_);
  } else {
    t.layout.strides = ContiguousStrides(shape_);
  }
  t.requires_grad = spec_.requires_grad;
  t.storage = std::move(storage_);
  t.name = spec_.name;
  t.ttl_seconds = spec_.ttl_seconds;
  return ctx_.store->Add(std::move(t));
}

}  // namespace tensorcast
