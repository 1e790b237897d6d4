// Runs the real tensorcast-load against a real tensorcast-server: a short
// closed-loop fetch, an open-loop info at 200 req/s, --requests runs of put
// and mixed, an interrupted run, and the exit-2 cases. Checks that the JSON
// is complete, that its counts add up, and that no tensor is left behind.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

// Beside the server: $TENSORCAST_BIN_DIR when set (the GPU bundle that
// tests/gpu/run.sh runs), else the build's bin directory.
std::string LoadBinary() {
  const char* env = std::getenv("TENSORCAST_BIN_DIR");
  return std::string(env != nullptr && *env != '\0' ? env
                                                    : TENSORCAST_BIN_DIR) +
         "/tensorcast-load";
}

CommandResult RunLoad(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {LoadBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

Struct ReadJson(const std::string& path) {
  Struct doc;
  absl::StatusOr<std::string> text = ReadFile(path);
  EXPECT_TRUE(text.ok()) << path;
  if (!text.ok()) return doc;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(*text, &doc).ok())
      << *text;
  return doc;
}

double Num(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  EXPECT_TRUE(it != s.fields().end()) << "missing key " << key;
  return it == s.fields().end() ? -1 : it->second.number_value();
}

const Struct& Obj(const Struct& s, const std::string& key) {
  static const Struct* empty = new Struct;
  auto it = s.fields().find(key);
  EXPECT_TRUE(it != s.fields().end()) << "missing key " << key;
  return it == s.fields().end() ? *empty : it->second.struct_value();
}

// The checks every result must pass.
void ExpectConsistent(const Struct& doc) {
  const double requests = Num(doc, "requests");
  const double duration = Num(doc, "duration_s");
  EXPECT_GT(requests, 0);
  EXPECT_GT(duration, 0);
  EXPECT_TRUE(Obj(doc, "errors").fields().empty())
      << "errors: " << Obj(doc, "errors").DebugString();
  EXPECT_NEAR(Num(doc, "requests_per_s"), requests / duration,
              0.001 * requests / duration + 0.01);
  EXPECT_NEAR(Num(doc, "bytes_per_s"), Num(doc, "bytes") / duration,
              0.001 * Num(doc, "bytes") / duration + 0.01);
  const Struct& latency = Obj(doc, "latency_us");
  for (const char* key : {"min", "p50", "p90", "p95", "p99", "p999", "max"}) {
    EXPECT_GT(Num(latency, key), 0) << key;
  }
  EXPECT_LE(Num(latency, "min"), Num(latency, "p50"));
  EXPECT_LE(Num(latency, "p50"), Num(latency, "p90"));
  EXPECT_LE(Num(latency, "p90"), Num(latency, "p95"));
  EXPECT_LE(Num(latency, "p95"), Num(latency, "p99"));
  EXPECT_LE(Num(latency, "p99"), Num(latency, "p999"));
  EXPECT_LE(Num(latency, "p999"), Num(latency, "max"));
  EXPECT_EQ(Num(latency, "count"), requests);
  auto series_it = doc.fields().find("series");
  ASSERT_TRUE(series_it != doc.fields().end());
  const auto& series = series_it->second.list_value().values();
  // duration_s is rounded to the millisecond; the series covers it.
  EXPECT_GE(static_cast<double>(series.size()), std::floor(duration - 1e-3));
  EXPECT_LE(static_cast<double>(series.size()), std::ceil(duration) + 1);
  double sum = 0, bytes = 0;
  for (const Value& point : series) {
    sum += Num(point.struct_value(), "requests");
    bytes += Num(point.struct_value(), "bytes");
    EXPECT_LE(Num(point.struct_value(), "p50_us"),
              Num(point.struct_value(), "p99_us"));
  }
  EXPECT_EQ(sum, requests);
  EXPECT_EQ(bytes, Num(doc, "bytes"));
  EXPECT_GT(Num(Obj(doc, "client"), "cpu_us_per_request"), 0);
}

void ExpectNothingLeft(ServerProcess& server) {
  absl::StatusOr<std::vector<v1::TensorInfo>> all = server.client().List();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_TRUE(all->empty())
      << all->size() << " tensor(s) left, first " << (*all)[0].name();
  EXPECT_EQ(CpuAllocatedWhenSettled(server.client()), 0);
}

TEST(LoadToolTest, FetchClosedLoop) {
  ServerProcess server;
  TempDir dir;
  CommandResult r = RunLoad(
      {"--server=" + server.address(), "--scenario=fetch", "--size=256KiB",
       "--concurrency=4", "--connections=2", "--duration=2s", "--warmup=0.5s",
       "--json=" + dir.File("r.json"), "--csv=" + dir.File("r.csv")});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("latency distribution"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("client CPU"), std::string::npos) << r.out;
  Struct doc = ReadJson(dir.File("r.json"));
  ExpectConsistent(doc);
  EXPECT_NEAR(Num(doc, "duration_s"), 2.0, 1e-3);
  // Every fetch moved the same .npy: 256 KiB and its 128-byte header.
  EXPECT_EQ(Num(doc, "bytes"), Num(doc, "requests") * (256 * 1024 + 128));
  std::vector<std::string> rows = absl::StrSplit(
      ReadFile(dir.File("r.csv")).value_or(""), '\n', absl::SkipEmpty());
  EXPECT_EQ(rows.size(), 3u);  // header and two seconds
  ExpectNothingLeft(server);
}

TEST(LoadToolTest, InfoOpenLoop) {
  ServerProcess server;
  TempDir dir;
  CommandResult r = RunLoad({"--server=" + server.address(), "--scenario=info",
                             "--size=4KiB", "--rate=200", "--duration=2s",
                             "--warmup=0.5s", "--json=" + dir.File("r.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("service time"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("late sends"), std::string::npos) << r.out;
  Struct doc = ReadJson(dir.File("r.json"));
  ExpectConsistent(doc);
  // Constant arrivals: exactly rate x duration scheduled in the window.
  EXPECT_EQ(Num(doc, "requests"), 400);
  EXPECT_GE(Num(doc, "duration_s"), 2.0);
  EXPECT_GE(Num(doc, "late_sends"), 0);
  // From the scheduled time is never shorter than from the actual send.
  EXPECT_GE(Num(Obj(doc, "latency_us"), "max"),
            Num(Obj(doc, "service_time_us"), "max"));
  ExpectNothingLeft(server);
}

TEST(LoadToolTest, PutAndMixedByCount) {
  ServerProcess server;
  TempDir dir;
  CommandResult r = RunLoad({"--server=" + server.address(), "--scenario=put",
                             "--size=64KiB", "--concurrency=2", "--requests=50",
                             "--warmup=0", "--json=" + dir.File("put.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  Struct put = ReadJson(dir.File("put.json"));
  ExpectConsistent(put);
  EXPECT_EQ(Num(put, "requests"), 50);
  EXPECT_EQ(Num(put, "bytes"), 50 * 64 * 1024);
  ExpectNothingLeft(server);

  r = RunLoad({"--server=" + server.address(), "--scenario=mixed",
               "--mix=fetch:2,put:1,to:1,info:4", "--size=16KiB",
               "--concurrency=3", "--requests=120", "--warmup=0.2s",
               "--json=" + dir.File("mixed.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  Struct mixed = ReadJson(dir.File("mixed.json"));
  ExpectConsistent(mixed);
  EXPECT_EQ(Num(mixed, "requests"), 120);
  double by_kind = 0;
  for (const auto& [kind, stats] : Obj(mixed, "by_kind").fields()) {
    by_kind += Num(stats.struct_value(), "requests");
    EXPECT_GT(Num(stats.struct_value(), "requests"), 0) << kind;
  }
  EXPECT_EQ(by_kind, 120);
  ExpectNothingLeft(server);
}

TEST(LoadToolTest, SharedMemoryFetchAndPut) {
  ServerProcess server({"--shared-memory"});
  TempDir dir;
  CommandResult r = RunLoad(
      {"--server=" + server.address(), "--scenario=fetch", "--size=1MiB",
       "--shared-memory", "--concurrency=3", "--connections=2", "--requests=60",
       "--warmup=0", "--json=" + dir.File("fetch.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("via shared memory"), std::string::npos) << r.out;
  Struct fetch = ReadJson(dir.File("fetch.json"));
  ExpectConsistent(fetch);
  // Each fetch delivered the whole .npy into a region: 1 MiB and its header.
  EXPECT_EQ(Num(fetch, "bytes"), 60 * ((1 << 20) + 128));
  EXPECT_EQ(Obj(fetch, "config").fields().at("transport").string_value(),
            "shared-memory");

  r = RunLoad({"--server=" + server.address(), "--scenario=mixed",
               "--mix=fetch:1,put:1", "--to-dtype=float64", "--size=256KiB",
               "--shared-memory", "--concurrency=2", "--requests=40",
               "--warmup=0", "--json=" + dir.File("mixed.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  ExpectConsistent(ReadJson(dir.File("mixed.json")));
  ExpectNothingLeft(server);

  // A server that does not allow it: refused before the run, saying why.
  ServerProcess plain;
  r = RunLoad({"--server=" + plain.address(), "--scenario=fetch",
               "--shared-memory", "--requests=5", "--warmup=0"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--shared-memory"), std::string::npos) << r.err;
  ExpectNothingLeft(plain);
}

// --cuda-ipc on this machine: where the tool was built without CUDA or no
// GPU is visible (CI), one clear line and exit 1 before anything is made on
// the server -- not a run of failed requests. Where a GPU is there, a fetch
// and a put run moves every byte through the lent device memory.
TEST(LoadToolTest, CudaIpcRunsOrRefusesBeforeTheLoad) {
  ServerProcess server({"--shared-memory"});
  TempDir dir;
  CommandResult r =
      RunLoad({"--server=" + server.address(), "--scenario=fetch",
               "--size=1MiB", "--cuda-ipc", "--concurrency=2", "--requests=20",
               "--warmup=0", "--json=" + dir.File("fetch.json")});
  const bool no_gpu =
      r.err.find("built without CUDA") != std::string::npos ||
      r.err.find("visible to this process") != std::string::npos;
  if (no_gpu) {
    EXPECT_EQ(r.exit_code, 1) << r.err;
    // One line, naming the flag and the GPU, and no run: no summary.
    EXPECT_EQ(r.err.rfind("tensorcast-load: setting up: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find("--cuda-ipc=0: "), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.out, "");
    ExpectNothingLeft(server);
    // The same for a put, and against a server without --shared-memory:
    // the GPU is checked first, whatever the server allows.
    ServerProcess plain;
    r = RunLoad({"--server=" + plain.address(), "--scenario=put",
                 "--cuda-ipc=cuda:0", "--requests=5", "--warmup=0"});
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("--cuda-ipc=0: "), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
    ExpectNothingLeft(plain);
    return;
  }
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("via CUDA IPC (GPU 0)"), std::string::npos) << r.out;
  Struct fetch = ReadJson(dir.File("fetch.json"));
  ExpectConsistent(fetch);
  EXPECT_EQ(Num(fetch, "bytes"), 20 * ((1 << 20) + 128));
  EXPECT_EQ(Obj(fetch, "config").fields().at("transport").string_value(),
            "cuda-ipc");
  r = RunLoad({"--server=" + server.address(), "--scenario=mixed",
               "--mix=fetch:1,put:1", "--to-dtype=float16", "--size=256KiB",
               "--cuda-ipc=0", "--concurrency=2", "--requests=40", "--warmup=0",
               "--json=" + dir.File("mixed.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  ExpectConsistent(ReadJson(dir.File("mixed.json")));
  ExpectNothingLeft(server);
}

std::string Str(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  EXPECT_TRUE(it != s.fields().end()) << "missing key " << key;
  return it == s.fields().end() ? "" : it->second.string_value();
}

constexpr char kGradRefusal[] =
    "Can't call numpy() on Tensor that requires grad. Use "
    "tensor.detach().numpy() instead.";

// A tensor that requires grad is fetched as users fetch it, with .detach()
// in the stream; --fetch-as-is sends what .numpy() would, which the server
// refuses: the run says so first and exits 3 rather than report 0 B/s.
TEST(LoadToolTest, RefusedFetchesAreNotAMeasurement) {
  ServerProcess server;
  TempDir dir;
  const std::string s = "--server=" + server.address();
  CommandResult r = RunLoad({s, "--scenario=fetch", "--requires-grad",
                             "--size=64KiB", "--concurrency=2", "--requests=40",
                             "--warmup=0", "--json=" + dir.File("ok.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(r.out.rfind("tensorcast-load: fetch as npy after .detach() -- ", 0),
            0u)
      << r.out;
  Struct ok = ReadJson(dir.File("ok.json"));
  ExpectConsistent(ok);
  EXPECT_EQ(Num(ok, "requests"), 40);
  EXPECT_EQ(Num(ok, "bytes"), 40 * (64 * 1024 + 128));
  EXPECT_EQ(ok.fields().at("dominant_error").kind_case(), Value::kNullValue);
  EXPECT_FALSE(ok.fields().at("too_many_errors").bool_value());
  EXPECT_TRUE(Obj(ok, "config").fields().at("requires_grad").bool_value());
  ExpectNothingLeft(server);

  r = RunLoad({s, "--scenario=fetch", "--requires-grad", "--fetch-as-is",
               "--size=64KiB", "--concurrency=2", "--requests=40", "--warmup=0",
               "--json=" + dir.File("refused.json")});
  EXPECT_EQ(r.exit_code, 3) << r.err << r.out;
  EXPECT_EQ(
      r.out.rfind(absl::StrCat("NOT A MEASUREMENT: 40 of 40 requests failed "
                               "(100.0%, more than --max-error-rate=0.5)\n"
                               "dominant error: FAILED_PRECONDITION (40 of 40 "
                               "requests): ",
                               kGradRefusal, "\n"),
                  0),
      0u)
      << r.out;
  EXPECT_NE(r.out.find("as-is"), std::string::npos) << r.out;
  // One line on stderr too, for a run whose stdout goes to a file.
  EXPECT_NE(r.err.find(absl::StrCat("FAILED_PRECONDITION (40 of 40 requests): ",
                                    kGradRefusal)),
            std::string::npos)
      << r.err;
  Struct refused = ReadJson(dir.File("refused.json"));
  const Struct& dominant = Obj(refused, "dominant_error");
  EXPECT_EQ(Str(dominant, "code"), "FAILED_PRECONDITION");
  EXPECT_EQ(Num(dominant, "count"), 40);
  EXPECT_EQ(Str(dominant, "message"), kGradRefusal);
  EXPECT_EQ(Num(Obj(refused, "errors"), "FAILED_PRECONDITION"), 40);
  EXPECT_EQ(Num(refused, "ok"), 0);
  EXPECT_EQ(Num(refused, "bytes"), 0);
  EXPECT_EQ(Num(refused, "error_rate"), 1);
  EXPECT_TRUE(refused.fields().at("too_many_errors").bool_value());
  ExpectNothingLeft(server);

  // A threshold the run stays within: exit 0, the error still reported.
  // mixed: half its requests are info, which the server answers.
  r = RunLoad({s, "--scenario=mixed", "--mix=fetch:1,info:1", "--requires-grad",
               "--fetch-as-is", "--size=16KiB", "--requests=40", "--warmup=0",
               "--seed=3", "--max-error-rate=0.9",
               "--json=" + dir.File("mixed.json")});
  EXPECT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_EQ(r.out.rfind("dominant error: FAILED_PRECONDITION (", 0), 0u)
      << r.out;
  Struct mixed = ReadJson(dir.File("mixed.json"));
  EXPECT_EQ(Str(Obj(mixed, "dominant_error"), "message"), kGradRefusal);
  const double fetches = Num(Obj(Obj(mixed, "by_kind"), "fetch"), "requests");
  EXPECT_GT(fetches, 0);
  EXPECT_LT(fetches, 40);
  EXPECT_EQ(Num(Obj(mixed, "errors"), "FAILED_PRECONDITION"), fetches);
  EXPECT_FALSE(mixed.fields().at("too_many_errors").bool_value());
  ExpectNothingLeft(server);
}

// Every kind on tensors that require grad: put makes them so, to keeps it,
// fetch detaches in the stream; nothing fails.
TEST(LoadToolTest, MixedOnTensorsThatRequireGrad) {
  ServerProcess server;
  TempDir dir;
  CommandResult r =
      RunLoad({"--server=" + server.address(), "--scenario=mixed",
               "--mix=fetch:2,put:1,to:1,info:1", "--requires-grad",
               "--size=16KiB", "--concurrency=2", "--requests=60", "--warmup=0",
               "--json=" + dir.File("r.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  Struct doc = ReadJson(dir.File("r.json"));
  ExpectConsistent(doc);
  EXPECT_GT(Num(Obj(Obj(doc, "by_kind"), "fetch"), "bytes"), 0);
  ExpectNothingLeft(server);
}

TEST(LoadToolTest, InterruptStillReportsAndCleansUp) {
  ServerProcess server;
  TempDir dir;
  pid_t pid = SpawnProcess(
      {LoadBinary(), "--server=" + server.address(), "--scenario=fetch",
       "--size=64KiB", "--concurrency=2", "--duration=60s", "--warmup=0",
       "--json=" + dir.File("r.json")},
      dir.File("out"), dir.File("err"));
  ASSERT_GT(pid, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  kill(pid, SIGINT);
  EXPECT_EQ(WaitForExit(pid), 130) << ReadFile(dir.File("err")).value_or("");
  Struct doc = ReadJson(dir.File("r.json"));
  EXPECT_TRUE(doc.fields().at("interrupted").bool_value());
  EXPECT_GT(Num(doc, "requests"), 0);
  EXPECT_LT(Num(doc, "duration_s"), 10);
  ExpectNothingLeft(server);
}

TEST(LoadToolTest, BadInputExitsTwoWithOneLine) {
  ServerProcess server;
  const std::string s = "--server=" + server.address();
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {s, "--scenario=download"},
           {s, "--rate=10", "--concurrency=2"},
           {s, "--size=12XB"},
           {s, "--duration=soon"},
           {s, "--dtype=float128"},
           {s, "--scenario=mixed", "--mix=fetch:x"},
           {s, "--max-error-rate=2"},
           {s, "--scenario=info", "--fetch-as-is"},
           {s, "--requires-grad", "--dtype=int32"},
           {s, "--cuda-ipc", "--shared-memory"},
           {s, "--cuda-ipc=gpu1"},
           {s, "--scenario=info", "--cuda-ipc"},
           {"--server=127.0.0.1:1", "--scenario=info", "--duration=1s"},
           {"--plot=/nonexistent/r.json", "--out=/tmp/x.png"},
       }) {
    CommandResult r = RunLoad(args);
    EXPECT_EQ(r.exit_code, 2) << args.back() << "\n" << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
    ASSERT_FALSE(r.err.empty()) << args.back();
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  }
  ExpectNothingLeft(server);
}

}  // namespace
}  // namespace tensorcast::testing
