#include "server/store/tenant.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/size.h"

namespace tensorcast {

Tenant::Tenant(std::string name, TenantLimits limits)
    : name_(std::move(name)),
      max_bytes_(limits.max_bytes),
      max_tensors_(limits.max_tensors),
      max_streams_(limits.max_streams) {}

TenantLimits Tenant::limits() const {
  return {max_bytes_.load(std::memory_order_relaxed),
          max_tensors_.load(std::memory_order_relaxed),
          max_streams_.load(std::memory_order_relaxed)};
}

void Tenant::Update(TenantLimits limits) {
  max_bytes_.store(limits.max_bytes, std::memory_order_relaxed);
  max_tensors_.store(limits.max_tensors, std::memory_order_relaxed);
  max_streams_.store(limits.max_streams, std::memory_order_relaxed);
}

absl::Status Tenant::Take(std::atomic<int64_t>& counter, int64_t n,
                          int64_t limit, const char* what) {
  int64_t held = counter.load(std::memory_order_relaxed);
  do {
    if (limit > 0 && (n > limit || held > limit - n)) {
      const bool bytes = &counter == &bytes_;
      return absl::ResourceExhaustedError(absl::StrCat(
          "tenant '", name_, "' is at its ", what, " limit of ",
          bytes ? FormatSize(limit) : absl::StrCat(limit), ": it holds ",
          bytes ? FormatSize(held) : absl::StrCat(held), " and this needs ",
          bytes ? FormatSize(n) : absl::StrCat(n), " more"));
    }
  } while (!counter.compare_exchange_weak(held, held + n,
                                          std::memory_order_relaxed));
  return absl::OkStatus();
}

absl::Status Tenant::ChargeBytes(int64_t n) {
  return Take(bytes_, n, max_bytes_.load(std::memory_order_relaxed),
              "memory quota");
}
void Tenant::ReleaseBytes(int64_t n) {
  bytes_.fetch_sub(n, std::memory_order_relaxed);
}
absl::Status Tenant::AddTensor() {
  return Take(tensors_, 1, max_tensors_.load(std::memory_order_relaxed),
              "tensor count");
}
void Tenant::RemoveTensor() {
  tensors_.fetch_sub(1, std::memory_order_relaxed);
}
absl::Status Tenant::StartStream() {
  return Take(streams_, 1, max_streams_.load(std::memory_order_relaxed),
              "concurrent stream");
}
void Tenant::EndStream() { streams_.fetch_sub(1, std::memory_order_relaxed); }

absl::Status StreamSlot::Take(const TenantPtr& tenant, StreamSlot* slot) {
  slot->Release();
  if (tenant == nullptr) return absl::OkStatus();
  if (absl::Status s = tenant->StartStream(); !s.ok()) return s;
  slot->tenant_ = tenant;
  return absl::OkStatus();
}

StreamSlot& StreamSlot::operator=(StreamSlot&& other) noexcept {
  if (this != &other) {
    Release();
    tenant_ = std::move(other.tenant_);
    other.tenant_ = nullptr;
  }
  return *this;
}

void StreamSlot::Release() {
  if (tenant_ != nullptr) tenant_->EndStream();
  tenant_ = nullptr;
}

absl::Status ByteCharge::Take(const TenantPtr& tenant, int64_t n,
                              const char* what, ByteCharge* charge) {
  charge->Release();
  if (tenant == nullptr || n <= 0) return absl::OkStatus();
  if (absl::Status s = tenant->ChargeBytes(n); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), " (for ", what,
                                               ", which count against it)"));
  }
  charge->tenant_ = tenant;
  charge->bytes_ = n;
  return absl::OkStatus();
}

ByteCharge& ByteCharge::operator=(ByteCharge&& other) noexcept {
  if (this != &other) {
    Release();
    tenant_ = std::move(other.tenant_);
    bytes_ = other.bytes_;
    other.tenant_ = nullptr;
    other.bytes_ = 0;
  }
  return *this;
}

void ByteCharge::Release() {
  if (tenant_ != nullptr) tenant_->ReleaseBytes(bytes_);
  tenant_ = nullptr;
  bytes_ = 0;
}

}  // namespace tensorcast
