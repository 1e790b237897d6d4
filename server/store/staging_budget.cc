#include "server/store/staging_budget.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/size.h"
#include "server/core/caller_message.h"

namespace tensorcast {

StagingBudget::Reservation& StagingBudget::Reservation::operator=(
    Reservation&& other) noexcept {
  if (this != &other) {
    Release();
    budget_ = other.budget_;
    bytes_ = other.bytes_;
    other.budget_ = nullptr;
    other.bytes_ = 0;
  }
  return *this;
}

void StagingBudget::Reservation::Release() {
  if (budget_ != nullptr) budget_->Give(bytes_);
  budget_ = nullptr;
  bytes_ = 0;
}

absl::Status StagingBudget::Reserve(int64_t bytes, absl::Duration wait,
                                    Reservation* out) {
  out->Release();
  if (bytes < 0) return absl::InvalidArgumentError("negative reservation");
  // What other streams hold is the server's business: tenants without
  // admin rights are told only what this one needs.
  auto exhausted = [&](int64_t held) {
    return WithCallerMessage(
        absl::ResourceExhaustedError(absl::StrCat(
            "the server's pinned staging for GPU reads is at its limit "
            "(--max-staging-bytes=",
            FormatSize(limit_), "): other streams hold ", FormatSize(held),
            " and this one needs ", FormatSize(bytes),
            "; retry later, or fetch with a smaller chunk_bytes")),
        absl::StrCat("the server's pinned staging for GPU reads is at its "
                     "limit: this stream needs ",
                     FormatSize(bytes),
                     "; retry later, or fetch with a smaller chunk_bytes"));
  };
  if (limit_ > 0 && bytes > limit_) {
    MutexLock lock(&mu_);
    return exhausted(reserved_);
  }
  MutexLock lock(&mu_);
  auto fits = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return limit_ == 0 || reserved_ <= limit_ - bytes;
  };
  if (!fits() && !mu_.AwaitWithTimeout(fits, wait)) {
    return exhausted(reserved_);
  }
  reserved_ += bytes;
  out->budget_ = this;
  out->bytes_ = bytes;
  return absl::OkStatus();
}

int64_t StagingBudget::reserved() const {
  MutexLock lock(&mu_);
  return reserved_;
}

void StagingBudget::Give(int64_t bytes) {
  MutexLock lock(&mu_);
  reserved_ -= bytes;
}

}  // namespace tensorcast
