// StagingBudget: the server-wide bound on the pinned host memory that GPU
// Fetch streams hold (--max-staging-bytes). A Fetch of a tensor on a GPU
// reads it through a ring of pinned slots that stays allocated while the
// client is slow to read -- or never reads -- so every such stream reserves
// its slots here before its reader is made, and gives them back once the
// last chunk it handed out is released. When the budget is taken, a new
// stream waits a moment for room and then fails with RESOURCE_EXHAUSTED
// naming the limit: the memory never grows past it.
//
// Thread-safe. A Reservation must not outlive its budget.
#ifndef TENSORCAST_SERVER_STORE_STAGING_BUDGET_H_
#define TENSORCAST_SERVER_STORE_STAGING_BUDGET_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/mutex.h"

namespace tensorcast {

class StagingBudget {
 public:
  // Bytes reserved from a budget until released or destroyed.
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& other) noexcept { *this = std::move(other); }
    Reservation& operator=(Reservation&& other) noexcept;
    Reservation(const Reservation&) = delete;
    Reservation& operator=(const Reservation&) = delete;
    ~Reservation() { Release(); }
    void Release();
    int64_t bytes() const { return bytes_; }

   private:
    friend class StagingBudget;
    StagingBudget* budget_ = nullptr;
    int64_t bytes_ = 0;
  };

  // limit_bytes 0 = no limit (reservations are still counted).
  explicit StagingBudget(int64_t limit_bytes) : limit_(limit_bytes) {}
  StagingBudget(const StagingBudget&) = delete;
  StagingBudget& operator=(const StagingBudget&) = delete;

  // Reserves `bytes`, waiting up to `wait` for others to release enough.
  // RESOURCE_EXHAUSTED naming the limit (nothing reserved) when they do not,
  // or at once when `bytes` alone is more than the limit.
  absl::Status Reserve(int64_t bytes, absl::Duration wait, Reservation* out)
      ABSL_LOCKS_EXCLUDED(mu_);

  int64_t limit() const { return limit_; }
  int64_t reserved() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Give(int64_t bytes) ABSL_LOCKS_EXCLUDED(mu_);

  const int64_t limit_;
  mutable Mutex mu_;
  int64_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_STAGING_BUDGET_H_
