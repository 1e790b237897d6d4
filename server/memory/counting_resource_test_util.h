// Test-only: CountingResource, an adaptor that forwards to an upstream
// MemoryResource and records every call, so tests can assert how often and
// with what a pool went upstream. It can also pretend to run out of memory
// (a capacity, or failing the next N calls). Thread-safe. Does not own the
// upstream.
#ifndef TENSORCAST_SERVER_MEMORY_COUNTING_RESOURCE_TEST_UTIL_H_
#define TENSORCAST_SERVER_MEMORY_COUNTING_RESOURCE_TEST_UTIL_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/mutex.h"
#include "server/memory/host_memory_resource.h"
#include "server/memory/memory_resource.h"

namespace tensorcast::testing {

inline HostMemoryResource& SharedHostResource() {
  static HostMemoryResource* host = new HostMemoryResource();
  return *host;
}

class CountingResource : public MemoryResource {
 public:
  explicit CountingResource(MemoryResource* upstream = &SharedHostResource())
      : upstream_(upstream),
        name_(absl::StrCat("counting(", upstream->Name(), ")")) {}

  absl::string_view Name() const override { return name_; }

  // Allocations that would take the outstanding bytes past this fail with
  // RESOURCE_EXHAUSTED (0 = no capacity).
  void set_capacity(int64_t bytes) {
    MutexLock lock(&mu_);
    capacity_ = bytes;
  }
  void FailNext(int calls) {
    MutexLock lock(&mu_);
    fail_next_ = calls;
  }

  int64_t allocations() const {
    MutexLock lock(&mu_);
    return allocations_;
  }
  int64_t deallocations() const {
    MutexLock lock(&mu_);
    return deallocations_;
  }
  int64_t failures() const {
    MutexLock lock(&mu_);
    return failures_;
  }
  int64_t outstanding_bytes() const {
    MutexLock lock(&mu_);
    return outstanding_bytes_;
  }
  int64_t outstanding_blocks() const {
    MutexLock lock(&mu_);
    return static_cast<int64_t>(live_.size());
  }
  // Deallocate calls whose pointer or size did not match an allocation.
  int64_t mismatches() const {
    MutexLock lock(&mu_);
    return mismatches_;
  }

 private:
  absl::StatusOr<void*> DoAllocate(size_t bytes) override {
    {
      MutexLock lock(&mu_);
      if (fail_next_ > 0 ||
          (capacity_ > 0 &&
           outstanding_bytes_ + static_cast<int64_t>(bytes) > capacity_)) {
        if (fail_next_ > 0) --fail_next_;
        ++failures_;
        return absl::ResourceExhaustedError(
            absl::StrCat("test capacity reached asking for ", bytes));
      }
    }
    absl::StatusOr<void*> p = upstream_->Allocate(bytes);
    MutexLock lock(&mu_);
    if (!p.ok()) {
      ++failures_;
      return p;
    }
    ++allocations_;
    outstanding_bytes_ += static_cast<int64_t>(bytes);
    live_[*p] = bytes;
    return p;
  }

  void DoDeallocate(void* p, size_t bytes) noexcept override {
    {
      MutexLock lock(&mu_);
      ++deallocations_;
      auto it = live_.find(p);
      if (it == live_.end() || it->second != bytes) {
        ++mismatches_;
        return;  // never hand upstream something it did not give
      }
      live_.erase(it);
      outstanding_bytes_ -= static_cast<int64_t>(bytes);
    }
    upstream_->Deallocate(p, bytes);
  }

  MemoryResource* const upstream_;
  const std::string name_;
  mutable Mutex mu_;
  int64_t capacity_ ABSL_GUARDED_BY(mu_) = 0;
  int fail_next_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t allocations_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t deallocations_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t mismatches_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t outstanding_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<void*, size_t> live_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tensorcast::testing

#endif  // TENSORCAST_SERVER_MEMORY_COUNTING_RESOURCE_TEST_UTIL_H_
