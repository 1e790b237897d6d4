// Mutex, MutexLock, ReaderMutexLock: the locks of the store and the pools.
//
// The interface is absl::Mutex's (the subset used here, with the same
// thread-safety annotations, so clang's -Wthread-safety still checks
// ABSL_GUARDED_BY: every clang build of our targets does, and `make
// test-thread-safety` is one), but the implementation is std::shared_mutex
// and std::condition_variable_any. The reason is ThreadSanitizer: Debian's
// Abseil is built without it, so TSan cannot see absl::Mutex's lock and
// unlock and reports every access it guards as a race, while pthread
// locks, which the standard library's use, are intercepted. With this,
// `make test-tsan` checks the store, pool and streaming code for real.
//
// Thread-safe.
#ifndef TENSORCAST_COMMON_MUTEX_H_
#define TENSORCAST_COMMON_MUTEX_H_

#include <atomic>
#include <condition_variable>
#include <shared_mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace tensorcast {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    // A waiter counted itself with the lock held, before this unlock's
    // matching lock: the relaxed load sees it.
    const bool wake = waiters_.load(std::memory_order_relaxed) > 0;
    mu_.unlock();
    if (wake) changed_.notify_all();  // a waiter's condition may hold now
  }
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() { mu_.lock_shared(); }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(); }

  // With the lock held: releases it until `cond()` holds (checked with the
  // lock held, after every exclusive unlock by anyone) or `timeout` has
  // passed; returns whether it holds. Holds the lock again on return.
  template <typename Cond>
  bool AwaitWithTimeout(Cond cond, absl::Duration timeout)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::shared_mutex> lock(mu_, std::adopt_lock);
    waiters_.fetch_add(1, std::memory_order_relaxed);
    // wait_for calls the predicate with mu_ held, as `cond` requires. The
    // analysis cannot see that: it knows the lock `cond` names by the
    // caller's expression (their member mu_, say), not as this Mutex. The
    // caller's side is checked: it must hold this lock to call here.
    auto holds = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return cond(); };
    const bool held =
        changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout), holds);
    waiters_.fetch_sub(1, std::memory_order_relaxed);
    lock.release();  // still held; the caller's MutexLock unlocks it
    return held;
  }

 private:
  std::shared_mutex mu_;
  std::condition_variable_any changed_;
  std::atomic<int> waiters_{0};  // threads in AwaitWithTimeout
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }

 private:
  Mutex* const mu_;
};

class ABSL_SCOPED_LOCKABLE ReaderMutexLock {
 public:
  explicit ReaderMutexLock(Mutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
  }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;
  ~ReaderMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }

 private:
  Mutex* const mu_;
};

}  // namespace tensorcast

#endif  // TENSORCAST_COMMON_MUTEX_H_
