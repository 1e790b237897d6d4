#include "server/store/device_fetch.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "server/store/device.h"

namespace tensorcast {
namespace {

// The CUDA ordinal of a GPU device ("cuda:N"); -1 for anything else.
int GpuIndexOf(const Device& device) {
  if (device.engine().is_host()) return -1;
  absl::StatusOr<DeviceName> name = ParseDeviceName(device.name());
  return name.ok() && name->is_cuda ? name->index : -1;
}

}  // namespace

bool DeviceFetch::Applies(const FetchSource& source,
                          const SharedMemoryRegion& region) {
  return region.device() >= 0 &&
         GpuIndexOf(*source.tensor()->storage->device()) >= 0;
}

absl::StatusOr<std::unique_ptr<DeviceFetch>> DeviceFetch::Open(
    FetchSource source, std::shared_ptr<const SharedMemoryRegion> region,
    int64_t offset, const TenantPtr& tenant, int64_t max_temporary) {
  if (region == nullptr || !Applies(source, *region)) {
    return absl::FailedPreconditionError(
        "a device Fetch needs a tensor on a GPU and a CUDA IPC region");
  }
  Device* device = source.tensor()->storage->device();
  const int tensor_device = GpuIndexOf(*device);
  std::unique_ptr<DeviceFetch> fetch(new DeviceFetch(
      std::move(source), std::move(region), offset, tensor_device));
  const FetchSource& out = fetch->source_;
  const int64_t item = static_cast<int64_t>(ItemSize(out.out_dtype()));
  const int64_t header = static_cast<int64_t>(out.header().size());
  const int64_t d0 = std::max(out.begin(), header) - header;
  const int64_t d1 = std::max(out.end(), header) - header;
  if (d1 <= d0) return fetch;  // header bytes only
  // Where data byte d0 goes in the region.
  const int64_t data_at =
      offset + (std::max(out.begin(), header) - out.begin());
  const auto address =
      reinterpret_cast<uintptr_t>(fetch->region_->device_data(data_at));
  const bool direct = fetch->region_->device() == tensor_device &&
                      d0 % item == 0 && d1 % item == 0 &&
                      address % static_cast<uintptr_t>(item) == 0;
  if (direct) return fetch;
  // The elements the range touches, two more if it cuts one at each end,
  // up to max_temporary (at least one element).
  const int64_t elements = (d1 - d0) / item + 2;
  const int64_t bytes =
      std::min(elements, std::max<int64_t>(1, max_temporary / item)) * item;
  absl::StatusOr<std::shared_ptr<Storage>> temporary =
      Storage::Allocate(device, bytes, tenant);
  if (!temporary.ok()) return temporary.status();
  fetch->temporary_ = *std::move(temporary);
  return fetch;
}

absl::Status DeviceFetch::CopyNext(int64_t max_bytes, int64_t* moved) {
  *moved = 0;
  const std::string& header = source_.header();
  const int64_t header_size = static_cast<int64_t>(header.size());
  if (pos_ < header_size && pos_ < source_.end()) {
    const int64_t n = std::min(source_.end(), header_size) - pos_;
    if (absl::Status s = region_->Write(at_, header.data() + pos_, n);
        !s.ok()) {
      return s;
    }
    at_ += n;
    pos_ += n;
    *moved += n;
  }
  if (done()) return absl::OkStatus();
  const Tensor& t = *source_.tensor();
  Engine& engine = t.storage->device()->engine();
  const DType out = source_.out_dtype();
  const int64_t item = static_cast<int64_t>(ItemSize(out));
  const int64_t d0 = pos_ - header_size;
  // The direct way moves whole elements only (Open checked the ends).
  const int64_t piece = temporary_ == nullptr
                            ? std::max<int64_t>(1, max_bytes / item) * item
                            : std::max(max_bytes, int64_t{1});
  const int64_t d1 = std::min(source_.end() - header_size, d0 + piece);
  if (absl::Status s = region_->CheckRange(at_, d1 - d0); !s.ok()) return s;
  if (temporary_ == nullptr) {
    // Straight into the region.
    const int64_t count = (d1 - d0) / item;
    if (absl::Status s =
            engine.GatherCast(t.storage->data(), t.dtype, t.layout, d0 / item,
                              count, region_->device_data(at_), out);
        !s.ok()) {
      return s;
    }
    at_ += count * item;
    pos_ += count * item;
    *moved += count * item;
    return absl::OkStatus();
  }
  const int64_t capacity = temporary_->nbytes() / item;
  for (int64_t d = d0; d < d1;) {
    const int64_t e0 = d / item;
    const int64_t e1 = std::min((d1 + item - 1) / item, e0 + capacity);
    const int64_t skip = d - e0 * item;
    const int64_t n = std::min(d1, e1 * item) - d;
    if (absl::Status s =
            engine.GatherCast(t.storage->data(), t.dtype, t.layout, e0, e1 - e0,
                              temporary_->data(), out);
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            engine.CopyDevice(region_->device_data(at_), region_->device(),
                              temporary_->bytes() + skip, tensor_device_, n);
        !s.ok()) {
      return s;
    }
    d += n;
    at_ += n;
    pos_ += n;
    *moved += n;
  }
  return absl::OkStatus();
}

}  // namespace tensorcast
