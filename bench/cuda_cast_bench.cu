// CastOnDevice throughput against the device's own copy: on a 256 MiB
// source, the median of 20 timed runs (CUDA events, after warm-up) of a
// device-to-device cudaMemcpyAsync of those bytes and of CastOnDevice for a
// few common pairs; then every one of the 210 pairs of distinct dtypes (5
// timed runs each, at most 1 GiB of output), summarised as the lowest and
// median ratio, the pairs under 0.8x counted and the slowest named (six,
// and every one under 0.85x). GB/s counts bytes read plus bytes
// written, for the copy too, so the ratio says how close a cast comes to
// the memory system's limit. Without a GPU it says so and exits 0.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/dtype.h"
#include "server/memory/cuda_check.h"
#include "server/memory/cuda_memory_resource.h"
#include "server/ops/cast_cuda.h"

namespace tensorcast {
namespace {

constexpr size_t kSourceBytes = size_t{256} << 20;
constexpr size_t kMaxDstBytes = size_t{1} << 30;
constexpr int kWarmupRuns = 3;
constexpr int kTimedRuns = 20;
constexpr int kSweepRuns = 5;

// Events for one timed region; destroyed on scope exit.
class EventPair {
 public:
  EventPair() = default;
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
  ~EventPair() {
    if (start_ != nullptr) {
      CudaStatus(cudaEventDestroy(start_), "cudaEventDestroy").IgnoreError();
    }
    if (stop_ != nullptr) {
      CudaStatus(cudaEventDestroy(stop_), "cudaEventDestroy").IgnoreError();
    }
  }
  absl::Status Create() {
    TC_CUDA_TRY(cudaEventCreate(&start_));
    TC_CUDA_TRY(cudaEventCreate(&stop_));
    return absl::OkStatus();
  }
  cudaEvent_t start() const { return start_; }
  cudaEvent_t stop() const { return stop_; }

 private:
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
};

// A stream of our own, destroyed on scope exit.
class Stream {
 public:
  Stream() = default;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() {
    if (stream_ != nullptr) {
      CudaStatus(cudaStreamDestroy(stream_), "cudaStreamDestroy").IgnoreError();
    }
  }
  absl::Status Create() {
    TC_CUDA_TRY(cudaStreamCreate(&stream_));
    return absl::OkStatus();
  }
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

// Median milliseconds of `run` (which queues work on `stream`).
template <typename Run>
absl::Status MedianMs(cudaStream_t stream, Run run, double* median_ms,
                      int timed_runs = kTimedRuns) {
  EventPair events;
  if (absl::Status st = events.Create(); !st.ok()) return st;
  for (int i = 0; i < kWarmupRuns; ++i) {
    if (absl::Status st = run(); !st.ok()) return st;
  }
  TC_CUDA_TRY(cudaStreamSynchronize(stream));
  std::vector<float> times;
  for (int i = 0; i < timed_runs; ++i) {
    TC_CUDA_TRY(cudaEventRecord(events.start(), stream));
    if (absl::Status st = run(); !st.ok()) return st;
    TC_CUDA_TRY(cudaEventRecord(events.stop(), stream));
    TC_CUDA_TRY(cudaEventSynchronize(events.stop()));
    float ms = 0;
    TC_CUDA_TRY(cudaEventElapsedTime(&ms, events.start(), events.stop()));
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  const size_t mid = times.size() / 2;
  *median_ms =
      times.size() % 2 == 1 ? times[mid] : (times[mid - 1] + times[mid]) / 2.0;
  return absl::OkStatus();
}

double GBPerS(size_t bytes, double ms) { return bytes / (ms * 1e6); }

absl::Status Bench() {
  const std::pair<DType, DType> pairs[] = {
      {DType::kFloat32, DType::kFloat16},
      {DType::kFloat16, DType::kFloat32},
      {DType::kFloat32, DType::kBFloat16},
      {DType::kFloat64, DType::kFloat32},
      {DType::kFloat32, DType::kInt32},
      {DType::kInt32, DType::kInt8},
      {DType::kUInt8, DType::kFloat32},
      {DType::kComplex64, DType::kComplex128},
      // The pairs an H200 ran under 0.8x (bench/GPU.md).
      {DType::kFloat16, DType::kInt8},
      {DType::kFloat16, DType::kUInt8},
      {DType::kUInt8, DType::kFloat16},
      {DType::kInt8, DType::kFloat16},
      {DType::kFloat16, DType::kBFloat16},
      {DType::kFloat16, DType::kInt16},
      {DType::kFloat16, DType::kUInt16},
  };
  DeviceBuffer src;
  DeviceBuffer dst;
  if (absl::Status st = src.Allocate(kSourceBytes); !st.ok()) return st;
  if (absl::Status st = dst.Allocate(kMaxDstBytes); !st.ok()) return st;
  // 0x3c3c3c3c: a small finite value in every float width, any integer.
  TC_CUDA_TRY(cudaMemset(src.get(), 0x3c, kSourceBytes));
  Stream stream;
  if (absl::Status st = stream.Create(); !st.ok()) return st;

  double copy_ms = 0;
  if (absl::Status st = MedianMs(
          stream.get(),
          [&]() -> absl::Status {
            TC_CUDA_TRY(cudaMemcpyAsync(dst.get(), src.get(), kSourceBytes,
                                        cudaMemcpyDeviceToDevice,
                                        stream.get()));
            return absl::OkStatus();
          },
          &copy_ms);
      !st.ok()) {
    return st;
  }
  const double copy_gbps = GBPerS(2 * kSourceBytes, copy_ms);
  std::printf("%-22s %9.3f ms %8.1f GB/s  1.00x\n", "d2d memcpy (256 MiB)",
              copy_ms, copy_gbps);
  // The ratio of one cast of as much of the source as fits kMaxDstBytes.
  auto ratio_of = [&](DType s, DType d, int runs, double* ms,
                      double* ratio) -> absl::Status {
    const int64_t n = static_cast<int64_t>(
        std::min(kSourceBytes / ItemSize(s), kMaxDstBytes / ItemSize(d)));
    if (absl::Status st = MedianMs(
            stream.get(),
            [&]() {
              return CastOnDevice(src.get(), s, dst.get(), d, n, stream.get());
            },
            ms, runs);
        !st.ok()) {
      return st;
    }
    *ratio = GBPerS(n * (ItemSize(s) + ItemSize(d)), *ms) / copy_gbps;
    return absl::OkStatus();
  };
  auto name_of = [](DType s, DType d) {
    return std::string(DTypeName(s)) + "->" + std::string(DTypeName(d));
  };
  for (const auto& [s, d] : pairs) {
    double ms = 0;
    double ratio = 0;
    if (absl::Status st = ratio_of(s, d, kTimedRuns, &ms, &ratio); !st.ok()) {
      return st;
    }
    std::printf("%-22s %9.3f ms %8.1f GB/s  %.2fx\n", name_of(s, d).c_str(), ms,
                ratio * copy_gbps, ratio);
  }
  // Every pair of distinct dtypes.
  std::vector<std::pair<double, std::string>> all;
  for (int i = 0; i < kNumDTypes; ++i) {
    for (int j = 0; j < kNumDTypes; ++j) {
      if (i == j) continue;
      const DType s = static_cast<DType>(i);
      const DType d = static_cast<DType>(j);
      double ms = 0;
      double ratio = 0;
      if (absl::Status st = ratio_of(s, d, kSweepRuns, &ms, &ratio); !st.ok()) {
        return st;
      }
      all.emplace_back(ratio, name_of(s, d));
    }
  }
  std::sort(all.begin(), all.end());
  int under = 0;
  for (const auto& [ratio, name] : all) under += ratio < 0.8 ? 1 : 0;
  std::printf(
      "all %zu casts vs the copy: lowest %.2fx (%s), median %.2fx, "
      "%d under 0.80x\n",
      all.size(), all.front().first, all.front().second.c_str(),
      all[all.size() / 2].first, under);
  std::string slowest;
  // The six slowest, and every pair under 0.85x.
  for (size_t k = 0; k < all.size() && (k < 6 || all[k].first < 0.85); ++k) {
    slowest += absl::StrFormat("%s%s %.2fx", k == 0 ? "" : ", ", all[k].second,
                               all[k].first);
  }
  std::printf("slowest: %s\n", slowest.c_str());
  return absl::OkStatus();
}

}  // namespace
}  // namespace tensorcast

int main() {
  absl::StatusOr<int> devices = tensorcast::CudaDeviceCount();
  if (!devices.ok()) {
    std::fprintf(stderr, "cuda_cast_bench: %s\n",
                 devices.status().ToString().c_str());
    return 1;
  }
  if (*devices == 0) {
    std::printf("cuda_cast_bench: no CUDA device here, nothing measured\n");
    return 0;
  }
  if (absl::Status st = tensorcast::Bench(); !st.ok()) {
    std::fprintf(stderr, "cuda_cast_bench: %s\n", st.ToString().c_str());
    return 1;
  }
  return 0;
}
