// tensorcast-bench-cuda-pool: median nanoseconds per allocate+free pair of
// device memory, for the CachingPool over CudaDeviceMemoryResource (warm:
// every pair is a cache hit) against cudaMalloc/cudaFree called directly,
// measured in the same run, with the ratio. Memory is not touched: this
// times the allocators. Without a CUDA device it says so and exits 0.
//
// Usage: tensorcast-bench-cuda-pool   (no flags; runs for a few seconds)
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/size.h"
#include "server/memory/caching_pool.h"
#include "server/memory/cuda_memory_resource.h"

namespace tensorcast {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxBatches = 41;
constexpr double kBatchSeconds = 0.002;
// Per contender and size: cudaMalloc/cudaFree of 1 GiB takes milliseconds,
// so the slow ones stop early on time rather than on batches.
constexpr double kBudgetSeconds = 0.5;

// Median over batches of the mean ns per call of `pair`; each batch is
// sized to take about kBatchSeconds (at least one call).
double MedianNs(const std::function<void()>& pair) {
  auto time_batch = [&](int64_t n) {
    auto start = Clock::now();
    for (int64_t i = 0; i < n; ++i) pair();
    return std::chrono::duration<double, std::nano>(Clock::now() - start)
        .count();
  };
  int64_t per_batch = 1;
  double ns = time_batch(per_batch);
  while (ns * 1e-9 < kBatchSeconds / 4 && per_batch < (int64_t{1} << 22)) {
    per_batch *= 4;
    ns = time_batch(per_batch);
  }
  per_batch = std::max<int64_t>(
      1, static_cast<int64_t>(per_batch * kBatchSeconds / (ns * 1e-9)));
  std::vector<double> samples;
  const auto started = Clock::now();
  while (static_cast<int>(samples.size()) < kMaxBatches &&
         (samples.size() < 5 ||
          std::chrono::duration<double>(Clock::now() - started).count() <
              kBudgetSeconds)) {
    samples.push_back(time_batch(per_batch) / static_cast<double>(per_batch));
  }
  std::nth_element(samples.begin(), samples.begin() + samples.size() / 2,
                   samples.end());
  return samples[samples.size() / 2];
}

int Run() {
  absl::StatusOr<int> count = CudaDeviceCount();
  if (!count.ok()) {
    std::fprintf(stderr, "%s\n", count.status().ToString().c_str());
    return 1;
  }
  if (*count == 0) {
    std::printf("tensorcast-bench-cuda-pool: no CUDA device here; skipped\n");
    return 0;
  }
  // As tensorcast-server does (server/main.cc). The pool's own lock is
  // common/mutex.h's, which the check does not see (pool_bench.cc), so
  // this only keeps the process as the server runs it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  CudaDeviceMemoryResource device(0);
  CachingPool pool("cuda:0", &device, 0);
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    std::printf("device 0: %s\n", prop.name);
  }
  const size_t kSizes[] = {size_t{4} << 10, size_t{1} << 20, size_t{64} << 20,
                           size_t{1} << 30};
  const auto started = Clock::now();
  std::printf("median ns per allocate+free pair (batches of ~%.0f ms)\n",
              kBatchSeconds * 1e3);
  std::printf("%-10s %12s %14s %14s\n", "size", "pool", "cudaMalloc",
              "cudaMalloc/pool");
  for (size_t size : kSizes) {
    // Warm the pool: the first call makes the segment, later ones reuse it.
    absl::StatusOr<void*> warm = pool.Allocate(size);
    if (!warm.ok()) {
      std::fprintf(stderr, "%s\n", warm.status().ToString().c_str());
      return 1;
    }
    pool.Free(*warm);

    bool failed = false;
    const double pool_ns = MedianNs([&] {
      absl::StatusOr<void*> p = pool.Allocate(size);
      if (!p.ok()) {
        failed = true;
        return;
      }
      pool.Free(*p);
    });
    const double raw_ns = MedianNs([&] {
      void* p = nullptr;
      if (cudaMalloc(&p, size) != cudaSuccess) {
        failed = true;
        return;
      }
      if (cudaFree(p) != cudaSuccess) failed = true;
    });
    if (failed) {
      std::fprintf(stderr, "an allocation of %zu bytes failed\n", size);
      return 1;
    }
    std::printf("%-10s %12.1f %14.1f %14.1fx\n",
                FormatSize(static_cast<int64_t>(size)).c_str(), pool_ns, raw_ns,
                raw_ns / pool_ns);
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
