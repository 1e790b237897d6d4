// tensorcast-bench-cast: throughput of Cast (and Gather of a transposed
// matrix) on a 64 MiB source, one thread, against single-thread memcpy of
// the same 64 MiB measured in the same run. Figures are the median of 7
// timed runs after a warm-up, over pre-faulted buffers; GB/s counts bytes
// read plus bytes written.
//
// Usage: tensorcast-bench-cast   (no flags; runs for a few seconds)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "server/core/shape.h"
#include "server/ops/cast.h"
#include "server/ops/cast_internal.h"
#include "server/ops/gather.h"

namespace tensorcast {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kSourceBytes = size_t{64} << 20;
constexpr int kRuns = 7;

struct Buffer {
  std::unique_ptr<unsigned char[]> data;
  size_t size = 0;
};

Buffer Allocate(size_t size) {
  Buffer b{std::unique_ptr<unsigned char[]>(new unsigned char[size]), size};
  std::memset(b.data.get(), 0, size);  // pre-fault every page
  return b;
}

struct Timing {
  double seconds;         // median of the case
  double memcpy_seconds;  // median of the baseline, interleaved with it
};

// Runs the case and the baseline alternately (so load on a shared machine
// hits both alike), kRuns timed rounds after one warm-up round; medians.
Timing Measure(const std::function<void()>& run,
               const std::function<void()>& baseline) {
  run();
  baseline();
  std::vector<double> times, base_times;
  auto time = [](const std::function<void()>& f) {
    const Clock::time_point t0 = Clock::now();
    f();
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  for (int i = 0; i < kRuns; ++i) {
    base_times.push_back(time(baseline));
    times.push_back(time(run));
  }
  auto median = [](std::vector<double>& v) {
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return v[v.size() / 2];
  };
  return {median(times), median(base_times)};
}

// Plausible values for the dtype (finite, in range of the targets), written
// through Cast from float32 values in [-1000, 1000).
void FillSource(Buffer& src, DType dtype) {
  const int64_t n = static_cast<int64_t>(src.size / ItemSize(dtype));
  constexpr int64_t kBlock = 4096;
  std::vector<float> values(kBlock);
  uint64_t state = 0x243f6a8885a308d3ull;
  for (int64_t done = 0; done < n; done += kBlock) {
    const int64_t m = std::min(kBlock, n - done);
    for (int64_t i = 0; i < m; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      values[i] =
          static_cast<float>(static_cast<int64_t>(state >> 40) % 2000000) /
              1000.0f -
          1000.0f;
    }
    Cast(values.data(), DType::kFloat32,
         src.data.get() + done * ItemSize(dtype), dtype, m);
  }
}

struct Case {
  const char* name;
  DType from;
  DType to;
  bool transposed_gather = false;
};

}  // namespace
}  // namespace tensorcast

int main() {
  using tensorcast::DType;
  const tensorcast::Case cases[] = {
      {"f32 -> f32 (same dtype)", DType::kFloat32, DType::kFloat32},
      {"f32 -> f16", DType::kFloat32, DType::kFloat16},
      {"f16 -> f32", DType::kFloat16, DType::kFloat32},
      {"f32 -> bf16", DType::kFloat32, DType::kBFloat16},
      {"f64 -> f32", DType::kFloat64, DType::kFloat32},
      {"f64 -> bf16 (one rounding)", DType::kFloat64, DType::kBFloat16},
      {"i64 -> bf16 (one rounding)", DType::kInt64, DType::kBFloat16},
      {"f32 -> i32", DType::kFloat32, DType::kInt32},
      {"i64 -> f64", DType::kInt64, DType::kFloat64},
      {"i32 -> i8", DType::kInt32, DType::kInt8},
      {"u8 -> f32", DType::kUInt8, DType::kFloat32},
      {"c64 -> c128", DType::kComplex64, DType::kComplex128},
      {"f32 -> bool", DType::kFloat32, DType::kBool},
      {"gather f32 4096^2 .T", DType::kFloat32, DType::kFloat32, true},
  };
  size_t max_dst = 0;
  for (const auto& c : cases) {
    max_dst = std::max(max_dst, tensorcast::kSourceBytes /
                                    tensorcast::ItemSize(c.from) *
                                    tensorcast::ItemSize(c.to));
  }
  tensorcast::Buffer src = tensorcast::Allocate(tensorcast::kSourceBytes);
  tensorcast::Buffer dst = tensorcast::Allocate(max_dst);

  auto memcpy_baseline = [&] {
    std::memcpy(dst.data.get(), src.data.get(), tensorcast::kSourceBytes);
  };
  std::printf(
      "tensorcast-bench-cast: 64 MiB source, 1 thread, median of %d runs "
      "after a warm-up, kernels: %s\n"
      "GB/s = (src + dst bytes) / time; baseline = single-thread memcpy of "
      "the 64 MiB source into the same dst buffer, timed interleaved with "
      "each case\n\n",
      tensorcast::kRuns,
      tensorcast::CastIsaAvailable(tensorcast::CastIsa::kX86_64_V3)
          ? "x86-64-v3"
          : "baseline");
  std::printf("%-26s %7s %7s %8s %7s %11s %8s\n", "case", "src MiB", "dst MiB",
              "ms", "GB/s", "memcpy GB/s", "x memcpy");
  for (const auto& c : cases) {
    const int64_t n = static_cast<int64_t>(tensorcast::kSourceBytes /
                                           tensorcast::ItemSize(c.from));
    const size_t dst_bytes = n * tensorcast::ItemSize(c.to);
    tensorcast::FillSource(src, c.from);
    tensorcast::Timing t;
    if (c.transposed_gather) {
      tensorcast::Layout layout;
      layout.shape = {4096, 4096};
      layout.strides = {1, 4096};
      t = tensorcast::Measure(
          [&] {
            tensorcast::Gather(src.data.get(), 4, layout, 0, n, dst.data.get());
          },
          memcpy_baseline);
    } else {
      t = tensorcast::Measure(
          [&] {
            tensorcast::Cast(src.data.get(), c.from, dst.data.get(), c.to, n);
          },
          memcpy_baseline);
    }
    const double bytes = static_cast<double>(tensorcast::kSourceBytes) +
                         static_cast<double>(dst_bytes);
    const double gbs = bytes / t.seconds / 1e9;
    const double memcpy_gbs =
        2.0 * tensorcast::kSourceBytes / t.memcpy_seconds / 1e9;
    std::printf("%-26s %7zu %7zu %8.2f %7.1f %11.1f %8.2f\n", c.name,
                tensorcast::kSourceBytes >> 20, dst_bytes >> 20,
                t.seconds * 1e3, gbs, memcpy_gbs, gbs / memcpy_gbs);
  }
  return 0;
}
