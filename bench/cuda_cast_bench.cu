// CastOnDevice throughput against the device's own copy: on a 256 MiB
// source, the median of 20 timed runs (CUDA events, after warm-up) of a
// device-to-device cudaMemcpyAsync of those bytes and of CastOnDevice for a
// few common pairs. GB/s counts bytes read plus bytes written, for the copy
// too, so the ratio says how close a cast comes to the memory system's
// limit. Without a GPU it says so and exits 0.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "server/core/dtype.h"
#include "server/memory/cuda_check.h"
#include "server/memory/cuda_memory_resource.h"
#include "server/ops/cast_cuda.h"

namespace tensorcast {
namespace {

constexpr size_t kSourceBytes = size_t{256} << 20;
constexpr int kWarmupRuns = 3;
constexpr int kTimedRuns = 20;

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
absl::Status MedianMs(cudaStream_t stream, Run run, double* median_ms) {
  EventPair events;
  if (absl::Status st = events.Create(); !st.ok()) return st;
  for (int i = 0; i < kWarmupRuns; ++i) {
    if (absl::Status st = run(); !st.ok()) return st;
  }
  TC_CUDA_TRY(cudaStreamSynchronize(stream));
  std::vector<float> times;
  for (int i = 0; i < kTimedRuns; ++i) {
    TC_CUDA_TRY(cudaEventRecord(events.start(), stream));
    if (absl::Status st = run(); !st.ok()) return st;
    TC_CUDA_TRY(cudaEventRecord(events.stop(), stream));
    TC_CUDA_TRY(cudaEventSynchronize(events.stop()));
    float ms = 0;
    TC_CUDA_TRY(cudaEventElapsedTime(&ms, events.start(), events.stop()));
    times.push_back(ms);
  }
  std::sort(times.begin(), times.end());
  *median_ms = (times[kTimedRuns / 2 - 1] + times[kTimedRuns / 2]) / 2.0;
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
  };
  size_t max_dst_bytes = kSourceBytes;
  for (const auto& [s, d] : pairs) {
    max_dst_bytes =
        std::max(max_dst_bytes, kSourceBytes / ItemSize(s) * ItemSize(d));
  }
  DeviceBuffer src;
  DeviceBuffer dst;
  if (absl::Status st = src.Allocate(kSourceBytes); !st.ok()) return st;
  if (absl::Status st = dst.Allocate(max_dst_bytes); !st.ok()) return st;
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
  for (const auto& [s, d] : pairs) {
    const int64_t n = static_cast<int64_t>(kSourceBytes / ItemSize(s));
    double ms = 0;
    if (absl::Status st = MedianMs(
            stream.get(),
            [&, s = s, d = d]() {
              return CastOnDevice(src.get(), s, dst.get(), d, n, stream.get());
            },
            &ms);
        !st.ok()) {
      return st;
    }
    const double gbps = GBPerS(kSourceBytes + n * ItemSize(d), ms);
    char name[64];
    std::snprintf(name, sizeof(name), "%s->%s",
                  std::string(DTypeName(s)).c_str(),
                  std::string(DTypeName(d)).c_str());
    std::printf("%-22s %9.3f ms %8.1f GB/s  %.2fx\n", name, ms, gbps,
                gbps / copy_gbps);
  }
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
