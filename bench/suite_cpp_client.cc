// tensorcast-bench-suite-client: the C++ side of the benchmark suite
// (bench/suite.py runs it; not meant to be run by hand). Each invocation
// makes one measurement, after one unmeasured warm-up, and prints it as one
// line of JSON on stdout:
//
//   versions                      {"grpc": "...", "protobuf": "..."}
//   memcpy --bytes=N              {"seconds": S}  single-thread std::memcpy
//                                 between two pre-faulted buffers (the mean
//                                 of enough copies to move ~256 MiB)
//   tcp --bytes=N [--runs=R]      {"seconds": S}  the fastest plain TCP
//                                 transfer over loopback in this process
//                                 (bench::TimeBestTcp: a sender thread, the
//                                 receiver reading into a pre-faulted
//                                 buffer; default and 4 MiB socket buffers
//                                 times 256 KiB / 1 MiB / 4 MiB writes, each
//                                 warmed up on its connection, R timed runs
//                                 of each, default 1)
//   fetch --target=T --server=A --name=REF --bytes=N [--dtype=float16]
//         [--unary]               {"seconds": S}  one Fetch into a
//                                 pre-faulted buffer of N bytes (the bytes
//                                 expected); T is tensorcast (RAW, the
//                                 server's default chunk) or peer
//                                 (tensorcast.bench.Peer, 4 MiB chunks)
//   latency --target=T --server=A --name=REF --concurrency=C --duration=S
//         [--warmup=S] [--unary]  {"p50_us", "p99_us", "requests",
//                                 "requests_per_s", "errors"}  closed loop: C
//                                 threads over one channel, each fetching REF
//                                 again as soon as the last one is done
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "bench/bench_util.h"
#include "bench/peers/peer.grpc.pb.h"
#include "client/cpp/client.h"

namespace tensorcast {
namespace {

using Clock = std::chrono::steady_clock;
using bench::Percentile;
using bench::PrefaultedBuffer;
using bench::SecondsSince;
using bench::TimeBestTcp;
constexpr int64_t kMiB = int64_t{1} << 20;

// --key=value flags after the mode.
struct Flags {
  std::map<std::string, std::string> values;

  std::string Get(const std::string& key, const std::string& def = "") const {
    auto it = values.find(key);
    return it == values.end() ? def : it->second;
  }
  int64_t Int(const std::string& key, int64_t def) const {
    int64_t v = def;
    auto it = values.find(key);
    if (it != values.end() && !absl::SimpleAtoi(it->second, &v)) v = def;
    return v;
  }
  double Double(const std::string& key, double def) const {
    double v = def;
    auto it = values.find(key);
    if (it != values.end() && !absl::SimpleAtod(it->second, &v)) v = def;
    return v;
  }
  bool Has(const std::string& key) const { return values.contains(key); }
};

// One fetch of the whole tensor into `dst` (capacity `bytes`); returns the
// byte count received.
using FetchFn = std::function<absl::StatusOr<int64_t>(char* dst, int64_t)>;

// The fetch for --target, bound to a channel that lives as long as it.
absl::StatusOr<FetchFn> MakeFetch(const Flags& flags) {
  const std::string target = flags.Get("target");
  const std::string server = flags.Get("server");
  const std::string name = flags.Get("name");
  const std::string dtype = flags.Get("dtype");
  if (target == "tensorcast") {
    std::shared_ptr<Client> client = Client::Connect(server);
    FetchOptions options;
    options.format = v1::FORMAT_RAW;
    if (dtype == "float16") {
      options.dtype = v1::DTYPE_FLOAT16;
    } else if (!dtype.empty() && dtype != "float32") {
      return absl::InvalidArgumentError("--dtype: float32 or float16");
    }
    return FetchFn([client, options, name](
                       char* dst, int64_t cap) -> absl::StatusOr<int64_t> {
      absl::StatusOr<v1::FetchHeader> header =
          client->FetchInto(name, options, dst, static_cast<size_t>(cap));
      if (!header.ok()) return header.status();
      return header->total_bytes();
    });
  }
  if (target == "peer") {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    std::shared_ptr<bench::Peer::Stub> stub =
        bench::Peer::NewStub(grpc::CreateCustomChannel(
            server, grpc::InsecureChannelCredentials(), args));
    bench::FetchRequest request;
    request.set_name(name);
    request.set_dtype(dtype);
    const bool unary = flags.Has("unary");
    return FetchFn([stub, request, unary](
                       char* dst, int64_t cap) -> absl::StatusOr<int64_t> {
      grpc::ClientContext context;
      bench::Chunk chunk;
      int64_t pos = 0;
      auto take = [&]() -> absl::Status {
        const std::string& data = chunk.data();
        if (static_cast<int64_t>(data.size()) > cap - pos) {
          return absl::OutOfRangeError("more bytes than expected");
        }
        std::memcpy(dst + pos, data.data(), data.size());
        pos += static_cast<int64_t>(data.size());
        return absl::OkStatus();
      };
      if (unary) {
        grpc::Status s = stub->FetchUnary(&context, request, &chunk);
        if (!s.ok()) return FromGrpcStatus(s);
        if (absl::Status t = take(); !t.ok()) return t;
        return pos;
      }
      std::unique_ptr<grpc::ClientReader<bench::Chunk>> reader =
          stub->Fetch(&context, request);
      absl::Status sink = absl::OkStatus();
      while (reader->Read(&chunk)) {
        if (sink.ok()) sink = take();
        if (!sink.ok()) context.TryCancel();
      }
      grpc::Status s = reader->Finish();
      if (!sink.ok()) return sink;
      if (!s.ok()) return FromGrpcStatus(s);
      return pos;
    });
  }
  return absl::InvalidArgumentError("--target: tensorcast or peer");
}

absl::StatusOr<double> TimeFetch(const Flags& flags) {
  const int64_t bytes = flags.Int("bytes", 0);
  if (bytes <= 0) return absl::InvalidArgumentError("--bytes");
  absl::StatusOr<FetchFn> fetch = MakeFetch(flags);
  if (!fetch.ok()) return fetch.status();
  std::unique_ptr<char[]> dst = PrefaultedBuffer(bytes);
  double seconds = 0;
  for (int i = 0; i < 2; ++i) {  // i == 0: the warm-up
    const Clock::time_point t0 = Clock::now();
    absl::StatusOr<int64_t> got = (*fetch)(dst.get(), bytes);
    seconds = SecondsSince(t0);
    if (!got.ok()) return got.status();
    if (*got != bytes) {
      return absl::DataLossError(
          absl::StrCat("received ", *got, " of ", bytes, " bytes"));
    }
  }
  return seconds;
}

// The mean of enough copies to move about 256 MiB (one copy is too short
// to time on a busy machine), after one warm-up copy.
absl::StatusOr<double> TimeMemcpy(const Flags& flags) {
  const int64_t bytes = flags.Int("bytes", 0);
  if (bytes <= 0) return absl::InvalidArgumentError("--bytes");
  std::unique_ptr<char[]> src = PrefaultedBuffer(bytes);
  std::unique_ptr<char[]> dst = PrefaultedBuffer(bytes);
  std::memcpy(dst.get(), src.get(), static_cast<size_t>(bytes));
  const int64_t copies = std::max<int64_t>(1, 256 * kMiB / bytes);
  const Clock::time_point t0 = Clock::now();
  for (int64_t i = 0; i < copies; ++i) {
    std::memcpy(dst.get(), src.get(), static_cast<size_t>(bytes));
    // Keep the compiler from merging the copies.
    asm volatile("" : : "r"(dst.get()) : "memory");
  }
  return SecondsSince(t0) / static_cast<double>(copies);
}

// Each variant's warm-up and timed transfers share one connection, as the
// gRPC fetches share their channel's.
absl::StatusOr<double> TimeTcp(const Flags& flags) {
  const int64_t bytes = flags.Int("bytes", 0);
  const int runs = static_cast<int>(flags.Int("runs", 1));
  if (bytes <= 0) return absl::InvalidArgumentError("--bytes");
  if (runs < 1) return absl::InvalidArgumentError("--runs");
  std::unique_ptr<char[]> src = PrefaultedBuffer(bytes);
  std::unique_ptr<char[]> dst = PrefaultedBuffer(bytes);
  return TimeBestTcp(src.get(), dst.get(), bytes, runs);
}

absl::StatusOr<std::string> Latency(const Flags& flags) {
  const int concurrency = static_cast<int>(flags.Int("concurrency", 1));
  const double duration = flags.Double("duration", 1.0);
  const double warmup = flags.Double("warmup", 0.2);
  constexpr int64_t kCapacity = 4096;  // tiny tensors only
  if (concurrency < 1) return absl::InvalidArgumentError("--concurrency");
  absl::StatusOr<FetchFn> fetch = MakeFetch(flags);
  if (!fetch.ok()) return fetch.status();
  // One call first, so a wrong name fails loudly rather than as errors.
  {
    char buf[kCapacity];
    absl::StatusOr<int64_t> got = (*fetch)(buf, kCapacity);
    if (!got.ok()) return got.status();
  }
  std::vector<std::vector<double>> per_thread(concurrency);
  std::atomic<int64_t> errors{0};
  const Clock::time_point start = Clock::now();
  const Clock::time_point measure_from =
      start + std::chrono::duration_cast<Clock::duration>(
                  std::chrono::duration<double>(warmup));
  const Clock::time_point end =
      measure_from + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(duration));
  std::vector<std::thread> threads;
  for (int t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      char buf[kCapacity];
      std::vector<double>& out = per_thread[t];
      out.reserve(1 << 16);
      while (true) {
        const Clock::time_point t0 = Clock::now();
        if (t0 >= end) break;
        absl::StatusOr<int64_t> got = (*fetch)(buf, kCapacity);
        const Clock::time_point t1 = Clock::now();
        if (t0 < measure_from) continue;
        if (!got.ok()) {
          errors.fetch_add(1);
          continue;
        }
        out.push_back(
            std::chrono::duration<double, std::micro>(t1 - t0).count());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const double measured = SecondsSince(measure_from);
  std::vector<double> all;
  for (const std::vector<double>& v : per_thread) {
    all.insert(all.end(), v.begin(), v.end());
  }
  std::sort(all.begin(), all.end());
  return absl::StrCat(
      "{\"p50_us\": ", Percentile(all, 0.50),
      ", \"p99_us\": ", Percentile(all, 0.99), ", \"requests\": ", all.size(),
      ", \"requests_per_s\": ", static_cast<double>(all.size()) / measured,
      ", \"errors\": ", errors.load(), "}");
}

int Run(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: tensorcast-bench-suite-client "
                 "versions|memcpy|tcp|fetch|latency --key=value...\n");
    return 2;
  }
  const std::string mode = argv[1];
  Flags flags;
  for (int i = 2; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (!absl::ConsumePrefix(&arg, "--")) {
      std::fprintf(stderr, "unexpected argument %s\n", argv[i]);
      return 2;
    }
    const size_t eq = arg.find('=');
    flags.values[std::string(arg.substr(0, eq))] =
        eq == absl::string_view::npos ? "" : std::string(arg.substr(eq + 1));
  }
  absl::StatusOr<std::string> out;
  if (mode == "versions") {
    out = absl::StrCat("{\"grpc\": \"", grpc::Version(), "\", \"protobuf\": \"",
                       GOOGLE_PROTOBUF_VERSION / 1000000, ".",
                       GOOGLE_PROTOBUF_VERSION / 1000 % 1000, ".",
                       GOOGLE_PROTOBUF_VERSION % 1000, "\"}");
  } else if (mode == "latency") {
    out = Latency(flags);
  } else {
    absl::StatusOr<double> seconds;
    if (mode == "memcpy") {
      seconds = TimeMemcpy(flags);
    } else if (mode == "tcp") {
      seconds = TimeTcp(flags);
    } else if (mode == "fetch") {
      seconds = TimeFetch(flags);
    } else {
      std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
      return 2;
    }
    if (seconds.ok()) {
      out = absl::StrCat("{\"seconds\": ", *seconds, "}");
    } else {
      out = seconds.status();
    }
  }
  if (!out.ok()) {
    std::fprintf(stderr, "tensorcast-bench-suite-client %s: %s\n", mode.c_str(),
                 out.status().ToString().c_str());
    return 1;
  }
  std::printf("%s\n", out->c_str());
  return 0;
}

}  // namespace
}  // namespace tensorcast

int main(int argc, char** argv) { return tensorcast::Run(argc, argv); }
