// tensorcast-bench-cuda-fetch: Fetch throughput of a 1 GiB cuda:0 tensor
// (float32 ones, RAW, force; as is and cast to float16 in the stream)
// through the real server binary and the C++ client, against the two
// ceilings measured in the same run: one cudaMemcpy device-to-host of 1 GiB
// into pinned memory (cudaMalloc source, cudaHostAlloc destination), and a
// plain TCP transfer of 1 GiB over loopback. The GPU's copy and the socket
// run at the same time in a pipelined Fetch, so the slower of the two is
// the ceiling; "vs ceiling" divides by it. The TCP transfer alternates with
// the Fetch runs of each row, so both see the same machine. Also the same Fetch
// of a 1 GiB cpu tensor (the host-to-client path alone), so the table splits
// the cost between the GPU copy and the stream. Each figure is the median GB/s
// (1e9 bytes/s, bytes delivered) of kRuns runs after one warm-up; Fetch lands
// in a preallocated, pre-faulted host buffer (FetchInto), as a real consumer's
// would.
//
// The server is tensorcast-server from $TENSORCAST_BIN_DIR when set, else
// from the directory of this executable, started with --devices=auto on
// 127.0.0.1:0 and stopped with SIGTERM at the end. Without a CUDA device
// (in this process) it says so and exits 0; with one that the server does
// not serve, it exits 1.
//
// Usage: tensorcast-bench-cuda-fetch   (no flags; well under a minute on an
// H100)
#include <cuda_runtime_api.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "client/cpp/client.h"
#include "common/size.h"

namespace tensorcast {
namespace {

using Clock = std::chrono::steady_clock;
using bench::BinDir;
using bench::Median;
using bench::PrefaultedBuffer;
using bench::SecondsSince;
using bench::ServerProcess;

constexpr int kRuns = 7;
constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kBytes = int64_t{1} << 30;
// Past this, the remaining rows run once each so that the whole bench stays
// under a minute on a slow machine.
constexpr double kSoftBudgetSeconds = 60;

absl::Status Cuda(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorName(error),
                                          ": ", cudaGetErrorString(error)));
}

// Median GB/s of kRuns timed calls of `once` (seconds per call) after one
// warm-up; a single timed call once past the soft budget.
// `bytes` is what one call moves.
absl::StatusOr<double> MedianGbps(
    Clock::time_point start, int64_t bytes,
    const std::function<absl::StatusOr<double>()>& once) {
  const int runs = SecondsSince(start) < kSoftBudgetSeconds ? kRuns : 1;
  std::vector<double> rates;
  for (int i = 0; i <= runs; ++i) {  // i == 0 is the warm-up
    absl::StatusOr<double> seconds = once();
    if (!seconds.ok()) return seconds.status();
    if (i > 0) rates.push_back(static_cast<double>(bytes) / *seconds / 1e9);
  }
  return Median(rates);
}

// One cudaMemcpy of kBytes device-to-host; seconds.
absl::StatusOr<double> TimeMemcpy(void* dst, const void* src) {
  const Clock::time_point t0 = Clock::now();
  absl::Status s =
      Cuda(cudaMemcpy(dst, src, kBytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
  const double seconds = SecondsSince(t0);
  if (!s.ok()) return s;
  return seconds;
}

// One Fetch(force, RAW) of `ref` into `dst`, as float32 or cast to
// float16 in the stream (`bytes` of output); seconds. Checks that every
// byte arrived and samples that the values are ones.
absl::StatusOr<double> TimeFetch(Client& client, const std::string& ref,
                                 bool to_half, int64_t chunk_bytes, char* dst) {
  FetchOptions options;
  options.format = v1::FORMAT_RAW;
  options.force = true;
  options.chunk_bytes = chunk_bytes;
  if (to_half) options.dtype = v1::DTYPE_FLOAT16;
  const int64_t bytes = to_half ? kBytes / 2 : kBytes;
  const int64_t item = to_half ? 2 : 4;
  std::memset(dst, 0, 4);
  std::memset(dst + bytes - 4, 0, 4);
  const Clock::time_point t0 = Clock::now();
  absl::StatusOr<v1::FetchHeader> header =
      client.FetchInto(ref, options, dst, bytes);
  const double seconds = SecondsSince(t0);
  if (!header.ok()) return header.status();
  if (header->length() != bytes) {
    return absl::DataLossError(
        absl::StrCat("received ", header->length(), " of ", bytes, " bytes"));
  }
  for (int64_t at : {int64_t{0}, bytes / 2 + item, bytes - item}) {
    uint32_t bits = 0;
    std::memcpy(&bits, dst + at, static_cast<size_t>(item));
    const uint32_t one = to_half ? 0x3c00u : 0x3f800000u;
    if (bits != one) {
      return absl::DataLossError(
          absl::StrCat("wrong data: element at byte ", at, " has bits ", bits));
    }
  }
  return seconds;
}

int Run() {
  const Clock::time_point start = Clock::now();
  int devices = 0;
  if (cudaError_t e = cudaGetDeviceCount(&devices);
      e != cudaSuccess || devices == 0) {
    std::printf(
        "tensorcast-bench-cuda-fetch: no CUDA device here (%s); skipped\n",
        e != cudaSuccess ? cudaGetErrorString(e) : "no devices");
    return 0;
  }
  cudaDeviceProp prop;
  std::string gpu = "cuda:0";
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) gpu = prop.name;

  absl::StatusOr<std::unique_ptr<bench::ScratchDir>> scratch =
      bench::ScratchDir::Make("tensorcast_bench_cuda_fetch");
  if (!scratch.ok()) {
    std::fprintf(stderr, "%s\n", scratch.status().ToString().c_str());
    return 1;
  }
  const std::string dir = (*scratch)->path();

  // (a) The ceiling: one pinned cudaMemcpy D2H of 1 GiB.
  void* device_src = nullptr;
  void* pinned_dst = nullptr;
  absl::Status s = Cuda(cudaMalloc(&device_src, kBytes), "cudaMalloc");
  if (s.ok()) s = Cuda(cudaMemset(device_src, 1, kBytes), "cudaMemset");
  if (s.ok()) s = Cuda(cudaHostAlloc(&pinned_dst, kBytes, 0), "cudaHostAlloc");
  if (s.ok()) s = Cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
  absl::StatusOr<double> memcpy_gbps =
      s.ok() ? MedianGbps(start, kBytes,
                          [&] { return TimeMemcpy(pinned_dst, device_src); })
             : absl::StatusOr<double>(s);
  if (memcpy_gbps.ok() &&
      static_cast<unsigned char*>(pinned_dst)[kBytes - 1] != 1) {
    memcpy_gbps = absl::DataLossError("cudaMemcpy copied the wrong bytes");
  }
  // Give the GPU's memory back before the server wants it.
  if (pinned_dst != nullptr) cudaFreeHost(pinned_dst);
  if (device_src != nullptr) cudaFree(device_src);
  if (!memcpy_gbps.ok()) {
    std::fprintf(stderr, "tensorcast-bench-cuda-fetch: %s\n",
                 memcpy_gbps.status().ToString().c_str());
    return 1;
  }

  ServerProcess server;
  const std::string binary = BinDir() + "/tensorcast-server";
  if (absl::Status st = server.Start(binary, dir, {"--devices=auto"});
      !st.ok()) {
    std::fprintf(stderr, "tensorcast-bench-cuda-fetch: %s\n",
                 std::string(st.message()).c_str());
    return 1;
  }
  std::unique_ptr<Client> client =
      Client::Connect(absl::StrCat("127.0.0.1:", server.port()));
  absl::StatusOr<v1::StatsResponse> stats = client->Stats();
  if (!stats.ok()) {
    std::fprintf(stderr, "Stats: %s\n", stats.status().ToString().c_str());
    return 1;
  }
  if (!stats->cuda_available()) {
    std::fprintf(stderr,
                 "tensorcast-bench-cuda-fetch: this machine has %s but the "
                 "server does not serve cuda:0: %s\n",
                 gpu.c_str(), stats->cuda_status().c_str());
    return 1;
  }

  // The two tensors: 1 GiB of float32 ones on cuda:0 and on cpu.
  std::string handles[2];
  const char* const devices_of[2] = {"cuda:0", "cpu"};
  for (int i = 0; i < 2; ++i) {
    v1::CreateRequest create;
    create.set_dtype(v1::DTYPE_FLOAT32);
    create.add_shape(kBytes / 4);
    create.set_device(devices_of[i]);
    create.mutable_ones();
    absl::StatusOr<v1::TensorInfo> info = client->Create(create);
    if (!info.ok()) {
      std::fprintf(stderr, "Create on %s: %s\n", devices_of[i],
                   info.status().ToString().c_str());
      return 1;
    }
    handles[i] = info->handle();
  }
  std::unique_ptr<char[]> dst = PrefaultedBuffer(kBytes);

  std::unique_ptr<char[]> tcp_src = PrefaultedBuffer(kBytes);

  std::printf(
      "tensorcast-bench-cuda-fetch: %s; 1 GiB float32, Fetch RAW force into "
      "a host buffer vs one pinned cudaMemcpy D2H and a loopback TCP "
      "transfer of the same bytes (alternating with the Fetch runs); "
      "ceiling = the slower of the two; medians of %d runs after a warm-up; "
      "GB/s = 1e9 B/s delivered\n",
      gpu.c_str(), kRuns);
  std::printf("(a) cudaMemcpy D2H, pinned: %.2f GB/s\n", *memcpy_gbps);
  std::printf("%-36s %-8s %8s %8s %11s\n", "path", "chunk", "GB/s", "TCP GB/s",
              "vs ceiling");
  std::fflush(stdout);

  struct Row {
    const char* label;
    int tensor;     // index into handles
    bool to_half;   // cast float32 -> float16 in the stream
    int64_t chunk;  // 0 = the server's default (--chunk-bytes, 1 MiB)
  };
  const Row rows[] = {
      {"(b) Fetch cuda:0 tensor", 0, false, 0},
      {"(b) Fetch cuda:0 tensor", 0, false, 4 * kMiB},
      {"(b) Fetch cuda:0 tensor -> float16", 0, true, 0},
      {"(b) Fetch cuda:0 tensor -> float16", 0, true, 4 * kMiB},
      {"(c) Fetch cpu tensor", 1, false, 0},
      {"(c) Fetch cpu tensor", 1, false, 4 * kMiB},
  };
  int failures = 0;
  for (const Row& row : rows) {
    const int64_t bytes = row.to_half ? kBytes / 2 : kBytes;
    const int runs = SecondsSince(start) < kSoftBudgetSeconds ? kRuns : 1;
    std::vector<double> fetch_rates, tcp_rates;
    absl::Status failed;
    for (int i = 0; i <= runs && failed.ok(); ++i) {  // i == 0: warm-up
      absl::StatusOr<double> tcp =
          bench::TimeLoopbackTcp(tcp_src.get(), dst.get(), bytes);
      absl::StatusOr<double> fetch = TimeFetch(
          *client, handles[row.tensor], row.to_half, row.chunk, dst.get());
      if (!tcp.ok()) failed = tcp.status();
      if (!fetch.ok()) failed = fetch.status();
      if (failed.ok() && i > 0) {
        tcp_rates.push_back(static_cast<double>(bytes) / *tcp / 1e9);
        fetch_rates.push_back(static_cast<double>(bytes) / *fetch / 1e9);
      }
    }
    const std::string chunk =
        row.chunk == 0 ? "default" : FormatSize(row.chunk);
    if (!failed.ok()) {
      ++failures;
      std::printf("%-36s %-8s FAILED: %s\n", row.label, chunk.c_str(),
                  failed.ToString().c_str());
    } else {
      const double fetch_gbps = Median(fetch_rates);
      const double tcp_gbps = Median(tcp_rates);
      std::printf("%-36s %-8s %8.2f %8.2f %10.2fx\n", row.label, chunk.c_str(),
                  fetch_gbps, tcp_gbps,
                  fetch_gbps / std::min(tcp_gbps, *memcpy_gbps));
    }
    std::fflush(stdout);
  }
  if (absl::StatusOr<int> n = client->Delete({handles[0], handles[1]});
      !n.ok()) {
    std::fprintf(stderr, "Delete: %s\n", n.status().ToString().c_str());
    ++failures;
  }
  client.reset();
  const int rc = server.Stop();
  std::printf("(%.1f s in all; server exited with %d)\n", SecondsSince(start),
              rc);
  return failures == 0 && rc == 0 ? 0 : 1;
}

}  // namespace
}  // namespace tensorcast

int main() { return tensorcast::Run(); }
