// tensorcast-bench-pool: median nanoseconds per allocate+free pair for the
// CachingPool (warm) against malloc/free and against HostMemoryResource
// (the pool's upstream) called directly, measured in the same run, with the
// ratios. Memory is not touched: this times the allocators, not page faults.
//
// The pool's lock is common/mutex.h's (std::shared_mutex), which
// Debian abseil's absl::Mutex deadlock detection (on by default there,
// ~20-40 ns per pair when the pool's lock was an absl::Mutex) does not
// check.
//
// Usage: tensorcast-bench-pool   (no flags; runs for a few seconds)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/size.h"
#include "server/memory/caching_pool.h"
#include "server/memory/host_memory_resource.h"

namespace tensorcast {
namespace {

using Clock = std::chrono::steady_clock;

// Keeps the compiler from eliding a malloc/free pair whose result is unused.
inline void DoNotOptimize(void* p) { asm volatile("" : : "r"(p) : "memory"); }

constexpr int kBatches = 41;
constexpr double kBatchSeconds = 0.002;

// One contender: a callable doing one allocate+free pair, and its samples.
struct Contender {
  explicit Contender(std::function<void()> f) : pair(std::move(f)) {}

  std::function<void()> pair;
  int64_t per_batch = 1;
  std::vector<double> ns;  // mean ns per pair, one sample per batch

  // Sizes the batch so that it takes about kBatchSeconds.
  void Calibrate() {
    per_batch = 1;
    while (true) {
      double seconds = RunBatch() * 1e-9 * static_cast<double>(per_batch);
      if (seconds >= kBatchSeconds / 4 || per_batch >= (int64_t{1} << 24)) {
        per_batch = std::max<int64_t>(
            1, static_cast<int64_t>(per_batch * kBatchSeconds / seconds));
        return;
      }
      per_batch *= 4;
    }
  }
  double RunBatch() {
    auto start = Clock::now();
    for (int64_t i = 0; i < per_batch; ++i) pair();
    return std::chrono::duration<double, std::nano>(Clock::now() - start)
               .count() /
           static_cast<double>(per_batch);
  }
  double Median() {
    std::nth_element(ns.begin(), ns.begin() + ns.size() / 2, ns.end());
    return ns[ns.size() / 2];
  }
};

// Medians over kBatches batches per contender; batches of the contenders
// take turns, so that load from other processes hits them alike.
void Measure(std::vector<Contender*> contenders) {
  for (Contender* c : contenders) c->Calibrate();
  for (int b = 0; b < kBatches; ++b) {
    for (Contender* c : contenders) c->ns.push_back(c->RunBatch());
  }
}

int Run() {
  HostMemoryResource host;
  CachingPool pool("cpu", &host, 0);
  const size_t kSizes[] = {size_t{4} << 10, size_t{64} << 10, size_t{1} << 20,
                           size_t{16} << 20, size_t{256} << 20};
  auto started = Clock::now();
  std::printf("median ns per allocate+free pair (%d batches of ~%.0f ms)\n",
              kBatches, kBatchSeconds * 1e3);
  std::printf("%-10s %10s %10s %10s %12s %12s\n", "size", "pool", "malloc",
              "host", "malloc/pool", "host/pool");
  for (size_t size : kSizes) {
    // Warm the pool: the first call makes the segment, later ones reuse it.
    absl::StatusOr<void*> warm = pool.Allocate(size);
    if (!warm.ok()) {
      std::fprintf(stderr, "%s\n", warm.status().ToString().c_str());
      return 1;
    }
    pool.Free(*warm);

    bool failed = false;
    Contender pool_pair{[&] {
      absl::StatusOr<void*> p = pool.Allocate(size);
      if (!p.ok()) failed = true;
      DoNotOptimize(p.ok() ? *p : nullptr);
      if (p.ok()) pool.Free(*p);
    }};
    Contender malloc_pair{[&] {
      void* p = std::malloc(size);
      if (p == nullptr) failed = true;
      DoNotOptimize(p);
      std::free(p);
    }};
    Contender host_pair{[&] {
      absl::StatusOr<void*> p = host.Allocate(size);
      if (!p.ok()) failed = true;
      DoNotOptimize(p.ok() ? *p : nullptr);
      if (p.ok()) host.Deallocate(*p, size);
    }};
    Measure({&pool_pair, &malloc_pair, &host_pair});
    const double pool_ns = pool_pair.Median();
    const double malloc_ns = malloc_pair.Median();
    const double host_ns = host_pair.Median();
    if (failed) {
      std::fprintf(stderr, "an allocation of %zu bytes failed\n", size);
      return 1;
    }
    std::printf("%-10s %10.1f %10.1f %10.1f %11.2fx %11.2fx\n",
                FormatSize(static_cast<int64_t>(size)).c_str(), pool_ns,
                malloc_ns, host_ns, malloc_ns / pool_ns, host_ns / pool_ns);
  }
  PoolStats s = pool.Stats();
  std::printf(
      "pool: %lld allocs, %lld cache hits, %lld misses, reserved %s; "
      "total %.1f s\n",
      static_cast<long long>(s.alloc_count),
      static_cast<long long>(s.cache_hits),
      static_cast<long long>(s.cache_misses),
      FormatSize(s.reserved_bytes).c_str(),
      std::chrono::duration<double>(Clock::now() - started).count());
  return 0;
}

}  // namespace
}  // namespace tensorcast

int main() { return tensorcast::Run(); }
