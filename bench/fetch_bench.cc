// tensorcast-bench-fetch: Fetch throughput (RAW float32, 16 MiB and
// 256 MiB, several chunk sizes) through the real server binary and the C++
// client, against a baseline measured in the same run: a plain TCP transfer
// of the same byte count over loopback (a sender thread writing 1 MiB
// writes, a receiver reading into a preallocated buffer). Each figure is the
// median GB/s (1e9 bytes/s) of kRuns runs after one warm-up; the client's
// sink copies every byte into a preallocated, pre-faulted buffer, as a real
// consumer would.
//
// The server is tensorcast-server from the directory of this executable,
// started on 127.0.0.1:0 and stopped with SIGTERM at the end.
//
// Usage: tensorcast-bench-fetch   (no flags; well under a minute)
#include <grpc/impl/codegen/grpc_types.h>
#include <grpcpp/create_channel.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

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
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "bench/bench_util.h"
#include "client/cpp/client.h"
#include "client/cpp/shared_memory.h"
#include "common/size.h"

namespace tensorcast {
namespace {

using Clock = std::chrono::steady_clock;
using bench::BinDir;
using bench::Median;
using bench::PrefaultedBuffer;
using bench::SecondsSince;
using bench::ServerProcess;

constexpr int kRuns = 11;
constexpr int64_t kMiB = int64_t{1} << 20;
// Past this, the remaining configurations run once each so the whole bench
// stays within about a minute on a slow or busy machine.
constexpr double kSoftBudgetSeconds = 60;

// One Fetch of `ref` as RAW into `dst`; returns the seconds it took.
absl::StatusOr<double> TimeFetch(Client& client, const std::string& ref,
                                 int64_t bytes, int64_t chunk_bytes,
                                 char* dst) {
  FetchOptions options;
  options.format = v1::FORMAT_RAW;
  options.chunk_bytes = chunk_bytes;
  int64_t received = 0;
  const Clock::time_point t0 = Clock::now();
  absl::StatusOr<v1::FetchHeader> header =
      client.Fetch(ref, options, [&](absl::string_view data) -> absl::Status {
        if (received + static_cast<int64_t>(data.size()) > bytes) {
          return absl::DataLossError("more bytes than the tensor holds");
        }
        std::memcpy(dst + received, data.data(), data.size());
        received += static_cast<int64_t>(data.size());
        return absl::OkStatus();
      });
  const double seconds = SecondsSince(t0);
  if (!header.ok()) return header.status();
  if (received != bytes) {
    return absl::DataLossError(
        absl::StrCat("received ", received, " of ", bytes, " bytes"));
  }
  return seconds;
}

// One plain TCP transfer of `bytes` from `src` to `dst`; returns seconds.
absl::StatusOr<double> TimeTcp(const char* src, char* dst, int64_t bytes) {
  absl::StatusOr<double> seconds = bench::TimeLoopbackTcp(src, dst, bytes);
  if (!seconds.ok()) {
    return absl::DataLossError("the TCP baseline transfer fell short");
  }
  return seconds;
}

struct Medians {
  double fetch_gbps;
  double tcp_gbps;
};

// Median GB/s of `runs` timed calls of each, after one warm-up of each. The
// two alternate (TCP, then Fetch), so that both see the same load on a
// shared machine, and the last call is a Fetch.
absl::StatusOr<Medians> MeasurePair(
    int64_t bytes, int runs,
    const std::function<absl::StatusOr<double>()>& fetch_once,
    const std::function<absl::StatusOr<double>()>& tcp_once) {
  std::vector<double> fetch_rates;
  std::vector<double> tcp_rates;
  for (int i = 0; i <= runs; ++i) {  // i == 0 is the warm-up
    absl::StatusOr<double> tcp = tcp_once();
    if (!tcp.ok()) return tcp.status();
    absl::StatusOr<double> fetch = fetch_once();
    if (!fetch.ok()) return fetch.status();
    if (i == 0) continue;
    tcp_rates.push_back(static_cast<double>(bytes) / *tcp / 1e9);
    fetch_rates.push_back(static_cast<double>(bytes) / *fetch / 1e9);
  }
  return Medians{Median(fetch_rates), Median(tcp_rates)};
}

// A client on its own channel with extra channel arguments over the
// defaults (for the knob rows).
std::unique_ptr<Client> ClientWith(
    int port, const std::vector<std::pair<std::string, int>>& int_args) {
  grpc::ChannelArguments args = DefaultChannelArguments();
  for (const auto& [name, value] : int_args) args.SetInt(name, value);
  return std::make_unique<Client>(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                grpc::InsecureChannelCredentials(), args));
}

int Run() {
  const Clock::time_point start = Clock::now();
  absl::StatusOr<std::unique_ptr<bench::ScratchDir>> scratch =
      bench::ScratchDir::Make("tensorcast_bench_fetch");
  if (!scratch.ok()) {
    std::fprintf(stderr, "%s\n", scratch.status().ToString().c_str());
    return 1;
  }
  const std::string dir = (*scratch)->path();

  ServerProcess server;
  if (absl::Status s = server.Start(BinDir() + "/tensorcast-server", dir,
                                    {"--shared-memory"});
      !s.ok()) {
    std::fprintf(stderr, "tensorcast-bench-fetch: %s\n",
                 std::string(s.message()).c_str());
    return 1;
  }
  std::unique_ptr<Client> client =
      Client::Connect(absl::StrCat("127.0.0.1:", server.port()));
  if (absl::Status s = client->Health(); !s.ok()) {
    std::fprintf(stderr, "server not healthy: %s\n", s.ToString().c_str());
    return 1;
  }

  const std::vector<int64_t> sizes = {16 * kMiB, 256 * kMiB};
  const int64_t max_bytes = sizes.back();
  std::unique_ptr<char[]> dst = PrefaultedBuffer(max_bytes);
  std::unique_ptr<char[]> tcp_src = PrefaultedBuffer(max_bytes);

  struct Row {
    int64_t bytes;
    int64_t chunk;  // 0 = the server's default (--chunk-bytes, 1 MiB)
  };
  std::vector<Row> rows;
  for (int64_t bytes : sizes) rows.push_back({bytes, 0});
  for (int64_t chunk : {kMiB / 4, kMiB, 4 * kMiB, 16 * kMiB}) {
    rows.push_back({max_bytes, chunk});
  }

  std::printf(
      "tensorcast-bench-fetch: RAW float32 Fetch vs plain TCP over "
      "loopback, alternating; medians of %d runs after a warm-up; GB/s = 1e9 "
      "B/s\n",
      kRuns);
  std::printf("%-10s %-10s %8s %8s %9s\n", "size", "chunk", "GB/s", "TCP GB/s",
              "vs TCP");
  int failures = 0;
  for (const Row& row : rows) {
    const int runs = SecondsSince(start) < kSoftBudgetSeconds ? kRuns : 1;
    // The tensor, made on the server for this size.
    v1::CreateRequest create;
    create.set_dtype(v1::DTYPE_FLOAT32);
    create.add_shape(row.bytes / 4);
    create.mutable_arange()->set_step(1);
    absl::StatusOr<v1::TensorInfo> info = client->Create(create);
    if (!info.ok()) {
      std::fprintf(stderr, "Create: %s\n", info.status().ToString().c_str());
      return 1;
    }
    absl::StatusOr<Medians> rate = MeasurePair(
        row.bytes, runs,
        [&] {
          return TimeFetch(*client, info->handle(), row.bytes, row.chunk,
                           dst.get());
        },
        [&] { return TimeTcp(tcp_src.get(), dst.get(), row.bytes); });
    // Spot-check what arrived: element i is float(i).
    float first = -1, last = -1;
    std::memcpy(&first, dst.get(), 4);
    std::memcpy(&last, dst.get() + row.bytes - 4, 4);
    const std::string size = FormatSize(row.bytes);
    const std::string chunk =
        row.chunk == 0 ? "default" : FormatSize(row.chunk);
    if (!rate.ok()) {
      ++failures;
      std::printf("%-10s %-10s FAILED: %s\n", size.c_str(), chunk.c_str(),
                  rate.status().ToString().c_str());
    } else if (first != 0.0f || last != static_cast<float>(row.bytes / 4 - 1)) {
      ++failures;
      std::printf("%-10s %-10s FAILED: wrong data (%g ... %g)\n", size.c_str(),
                  chunk.c_str(), first, last);
    } else {
      std::printf("%-10s %-10s %8.2f %8.2f %8.2fx\n", size.c_str(),
                  chunk.c_str(), rate->fetch_gbps, rate->tcp_gbps,
                  rate->fetch_gbps / rate->tcp_gbps);
    }
    std::fflush(stdout);
    if (absl::StatusOr<int> n = client->Delete({info->handle()}); !n.ok()) {
      std::fprintf(stderr, "Delete: %s\n", n.status().ToString().c_str());
    }
  }
  // The knobs, one at a time, on 256 MiB with 1 MiB chunks against the
  // same TCP baseline (bench/FETCH.md says what each did and why).
  {
    v1::CreateRequest create;
    create.set_dtype(v1::DTYPE_FLOAT32);
    create.add_shape(max_bytes / 4);
    create.mutable_arange()->set_step(1);
    absl::StatusOr<v1::TensorInfo> info = client->Create(create);
    if (!info.ok()) {
      std::fprintf(stderr, "Create: %s\n", info.status().ToString().c_str());
      return 1;
    }
    const std::string ref = info->handle();
    std::unique_ptr<Client> big_frames =
        ClientWith(server.port(), {{GRPC_ARG_HTTP2_MAX_FRAME_SIZE, 16 << 20}});
    std::unique_ptr<Client> big_window = ClientWith(
        server.port(), {{GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 << 20},
                        {GRPC_ARG_HTTP2_BDP_PROBE, 0}});
    std::unique_ptr<Client> second = ClientWith(server.port(), {});
    struct Knob {
      const char* name;
      std::function<absl::StatusOr<double>()> fetch_once;
    };
    const std::vector<Knob> knobs = {
        {"(as above)",
         [&] { return TimeFetch(*client, ref, max_bytes, kMiB, dst.get()); }},
        {"fresh dst",  // a new, untouched buffer per fetch: page faults
         [&] {
           std::unique_ptr<char[]> fresh(new char[max_bytes]);
           return TimeFetch(*client, ref, max_bytes, kMiB, fresh.get());
         }},
        {"frames 16M",
         [&] {
           return TimeFetch(*big_frames, ref, max_bytes, kMiB, dst.get());
         }},
        {"window 64M",
         [&] {
           return TimeFetch(*big_window, ref, max_bytes, kMiB, dst.get());
         }},
        {"2 channels",  // each fetches one half, concurrently
         [&]() -> absl::StatusOr<double> {
           const int64_t half = max_bytes / 2;
           auto fetch_half = [&](Client& c, int64_t offset) {
             FetchOptions o;
             o.format = v1::FORMAT_RAW;
             o.offset = offset;
             o.length = half;
             return c.FetchInto(ref, o, dst.get() + offset, half).status();
           };
           absl::Status other;
           const Clock::time_point t0 = Clock::now();
           std::thread t([&] { other = fetch_half(*second, half); });
           absl::Status mine = fetch_half(*client, 0);
           t.join();
           if (!mine.ok()) return mine;
           if (!other.ok()) return other;
           return SecondsSince(t0);
         }},
    };
    std::printf("knobs, %s in 1 MiB chunks:\n", FormatSize(max_bytes).c_str());
    for (const Knob& knob : knobs) {
      const int runs = SecondsSince(start) < kSoftBudgetSeconds ? kRuns : 1;
      absl::StatusOr<Medians> rate = MeasurePair(
          max_bytes, runs, knob.fetch_once,
          [&] { return TimeTcp(tcp_src.get(), dst.get(), max_bytes); });
      if (!rate.ok()) {
        ++failures;
        std::printf("%-21s FAILED: %s\n", knob.name,
                    rate.status().ToString().c_str());
        continue;
      }
      std::printf("%-21s %8.2f %8.2f %8.2fx\n", knob.name, rate->fetch_gbps,
                  rate->tcp_gbps, rate->fetch_gbps / rate->tcp_gbps);
      std::fflush(stdout);
    }

    // Same host, shared memory: the server writes the tensor's bytes into a
    // region this client lent it (one copy); the baseline is one
    // single-thread memcpy of the same bytes between pre-faulted buffers.
    // Both kinds of region: a sealed memfd the server maps, and a /dev/shm
    // file it writes with pwrite.
    for (SharedMemory::Kind kind :
         {SharedMemory::Kind::kMemfd, SharedMemory::Kind::kFile}) {
      const char* kind_name = kind == SharedMemory::Kind::kMemfd
                                  ? "memfd, mapped"
                                  : "/dev/shm file, pwrite";
      absl::StatusOr<std::unique_ptr<SharedMemory>> shm =
          SharedMemory::Open(*client, max_bytes, kind);
      if (!shm.ok()) {
        ++failures;
        std::printf("shared memory (%s): FAILED: %s\n", kind_name,
                    shm.status().ToString().c_str());
        continue;
      }
      std::vector<double> shm_rates, memcpy_rates;
      const int runs = SecondsSince(start) < kSoftBudgetSeconds ? kRuns : 1;
      absl::Status failed;
      for (int i = 0; i <= runs && failed.ok(); ++i) {
        Clock::time_point t0 = Clock::now();
        std::memcpy(dst.get(), tcp_src.get(), max_bytes);
        const double copy_s = SecondsSince(t0);
        FetchOptions o;
        o.format = v1::FORMAT_RAW;
        o.chunk_bytes = 4 * kMiB;
        o.shm_region = (*shm)->region();
        o.shm_offset = (*shm)->offset();
        t0 = Clock::now();
        failed = client
                     ->Fetch(ref, o,
                             [](absl::string_view) { return absl::OkStatus(); })
                     .status();
        const double shm_s = SecondsSince(t0);
        if (i == 0) continue;  // warm-up
        memcpy_rates.push_back(max_bytes / copy_s / 1e9);
        shm_rates.push_back(max_bytes / shm_s / 1e9);
      }
      float last = -1;
      std::memcpy(&last, (*shm)->data() + max_bytes - 4, 4);
      if (!failed.ok() || last != static_cast<float>(max_bytes / 4 - 1)) {
        ++failures;
        std::printf("shared memory (%s): FAILED: %s\n", kind_name,
                    failed.ok() ? "wrong data" : failed.ToString().c_str());
      } else {
        std::printf(
            "shared memory (%s), %s (4 MiB pieces): %.2f GB/s vs "
            "memcpy %.2f GB/s = %.2fx\n",
            kind_name, FormatSize(max_bytes).c_str(), Median(shm_rates),
            Median(memcpy_rates), Median(shm_rates) / Median(memcpy_rates));
      }
      std::fflush(stdout);
    }
    (void)client->Delete({ref});
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
