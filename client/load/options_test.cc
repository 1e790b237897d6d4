#include "client/load/options.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tensorcast::load {
namespace {

absl::StatusOr<LoadOptions> Parse(std::vector<std::string> args) {
  absl::StatusOr<ParsedArgs> p = ParseArgs(args);
  if (!p.ok()) return p.status();
  EXPECT_EQ(p->mode, ParsedArgs::Mode::kRun);
  return p->options;
}

// The message of a failed parse ("" if it succeeded).
std::string Error(std::vector<std::string> args) {
  absl::StatusOr<ParsedArgs> p = ParseArgs(args);
  if (p.ok()) return "";
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(p.status().message()).find('\n'), std::string::npos);
  return std::string(p.status().message());
}

TEST(ParseDurationTest, AcceptsUnitsAndPlainSeconds) {
  EXPECT_EQ(*ParseDurationNs("10s"), 10'000'000'000);
  EXPECT_EQ(*ParseDurationNs("500ms"), 500'000'000);
  EXPECT_EQ(*ParseDurationNs("2m"), 120'000'000'000);
  EXPECT_EQ(*ParseDurationNs("1h"), 3'600'000'000'000);
  EXPECT_EQ(*ParseDurationNs("1.5s"), 1'500'000'000);
  EXPECT_EQ(*ParseDurationNs("3"), 3'000'000'000);
  EXPECT_EQ(*ParseDurationNs("0.25"), 250'000'000);
  EXPECT_EQ(*ParseDurationNs("0"), 0);
  for (const char* bad : {"", "abc", "10x", "-1s", "-2", "inf", "1e300"}) {
    EXPECT_FALSE(ParseDurationNs(bad).ok()) << bad;
  }
}

TEST(ParseMixTest, WeightsByKind) {
  absl::StatusOr<Mix> m = ParseMix("fetch:8,info:2");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)[static_cast<int>(RequestKind::kFetch)], 8);
  EXPECT_EQ((*m)[static_cast<int>(RequestKind::kInfo)], 2);
  EXPECT_EQ((*m)[static_cast<int>(RequestKind::kPut)], 0);
  EXPECT_EQ(MixText(*m), "fetch:8,info:2");
  m = ParseMix("put:1,to:0,info:3,fetch:1");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(MixText(*m), "fetch:1,put:1,info:3");
}

TEST(ParseMixTest, RejectsBadMixes) {
  for (const char* bad :
       {"", "fetch", "fetch:", "fetch:x", "fetch:-1", "fetch:1,fetch:2",
        "mixed:1", "get:1", "fetch:0,info:0", "fetch:1,", "fetch:1:2"}) {
    EXPECT_FALSE(ParseMix(bad).ok()) << bad;
  }
}

TEST(ParseArgsTest, Defaults) {
  absl::StatusOr<LoadOptions> o = Parse({"--server=h:1"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->server, "h:1");
  EXPECT_EQ(o->scenario, "fetch");
  EXPECT_EQ(o->mix[static_cast<int>(RequestKind::kFetch)], 1);
  EXPECT_EQ(o->size_bytes, 1 << 20);
  EXPECT_EQ(o->dtype, v1::DTYPE_FLOAT32);
  EXPECT_EQ(o->elements(), (1 << 20) / 4);
  EXPECT_FALSE(o->open_loop());
  EXPECT_EQ(o->concurrency, 1);
  EXPECT_EQ(o->connections, 1);
  EXPECT_EQ(o->duration_ns, 10'000'000'000);
  EXPECT_EQ(o->requests, 0);
  EXPECT_EQ(o->warmup_ns, 2'000'000'000);
  EXPECT_EQ(ParseArgs({}, "env:7")->options.server, "env:7");
}

TEST(ParseArgsTest, FullClosedLoop) {
  absl::StatusOr<LoadOptions> o = Parse(
      {"--server=h:1", "--scenario=fetch", "--size=16MiB", "--dtype=float64",
       "--to-dtype=half", "--format=raw", "--device=cpu", "--concurrency=8",
       "--connections=4", "--requests=100", "--warmup=500ms", "--json=r.json",
       "--csv=r.csv", "--seed=9"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->size_bytes, 16 << 20);
  EXPECT_EQ(o->dtype, v1::DTYPE_FLOAT64);
  EXPECT_EQ(o->to_dtype, v1::DTYPE_FLOAT16);
  EXPECT_EQ(o->format, v1::FORMAT_RAW);
  EXPECT_EQ(o->concurrency, 8);
  EXPECT_EQ(o->connections, 4);
  EXPECT_EQ(o->requests, 100);
  EXPECT_EQ(o->duration_ns, 0);
  EXPECT_EQ(o->warmup_ns, 500'000'000);
  EXPECT_EQ(o->json_path, "r.json");
  EXPECT_EQ(o->csv_path, "r.csv");
  EXPECT_EQ(o->seed, 9u);
}

TEST(ParseArgsTest, OpenLoopAndMixed) {
  absl::StatusOr<LoadOptions> o =
      Parse({"--scenario=mixed", "--mix=fetch:3,put:1", "--rate=250.5",
             "--arrival=poisson", "--duration=1m", "--connections=3"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->open_loop());
  EXPECT_DOUBLE_EQ(o->rate, 250.5);
  EXPECT_EQ(o->arrival, Arrival::kPoisson);
  EXPECT_EQ(o->duration_ns, 60'000'000'000);
  EXPECT_EQ(MixText(o->mix), "fetch:3,put:1");
  o = Parse({"--scenario=mixed"});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(MixText(o->mix), "fetch:8,info:2");
}

TEST(ParseArgsTest, BadInputIsOneLineError) {
  EXPECT_NE(Error({"--scenario=download"}).find("unknown scenario"),
            std::string::npos);
  EXPECT_NE(Error({"--rate=10", "--concurrency=2"}).find("exclude"),
            std::string::npos);
  EXPECT_NE(Error({"--size=12XB"}).find("--size"), std::string::npos);
  EXPECT_NE(Error({"--duration=soon"}).find("--duration"), std::string::npos);
  EXPECT_NE(Error({"--warmup=x"}).find("--warmup"), std::string::npos);
  EXPECT_NE(Error({"--dtype=float128"}).find("--dtype"), std::string::npos);
  EXPECT_NE(Error({"--to-dtype=nope"}).find("--to-dtype"), std::string::npos);
  EXPECT_NE(Error({"--scenario=mixed", "--mix=fetch:x"}).find("--mix"),
            std::string::npos);
  EXPECT_NE(Error({"--mix=fetch:1"}).find("mixed"), std::string::npos);
  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"--format=hdf5"},
           {"--concurrency=0"},
           {"--rate=0"},
           {"--rate=-5"},
           {"--arrival=poisson"},
           {"--rate=10", "--arrival=bursty"},
           {"--connections=0"},
           {"--concurrency=2", "--connections=3"},
           {"--duration=1s", "--requests=10"},
           {"--requests=0"},
           {"--duration=0s"},
           {"--size=0"},
           {"--size=6", "--dtype=float32"},
           {"--max-inflight=10"},
           {"--rate=1", "--max-inflight=0"},
           {"--unknown=1"},
           {"stray"},
           {"--plot=r.json"},
           {"--plot=r.json", "--out=r.png", "--rate=1"},
       }) {
    EXPECT_NE(Error(bad), "") << bad[0];
  }
}

TEST(ParseArgsTest, GradFetchAsIsAndErrorRate) {
  absl::StatusOr<LoadOptions> o = Parse({});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->requires_grad);
  EXPECT_FALSE(o->fetch_as_is);
  EXPECT_DOUBLE_EQ(o->max_error_rate, 0.5);
  o = Parse({"--requires-grad", "--fetch-as-is", "--max-error-rate=0.01",
             "--dtype=bfloat16"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->requires_grad);
  EXPECT_TRUE(o->fetch_as_is);
  EXPECT_DOUBLE_EQ(o->max_error_rate, 0.01);
  // The bounds are allowed: 0 (any error fails the run), 1 (none does).
  EXPECT_EQ(Error({"--max-error-rate=0"}), "");
  EXPECT_EQ(Error({"--max-error-rate=1"}), "");
  EXPECT_EQ(
      Error({"--scenario=mixed", "--mix=info:1,fetch:1", "--fetch-as-is"}), "");
  EXPECT_EQ(Error({"--scenario=put", "--requires-grad", "--dtype=complex64"}),
            "");
  EXPECT_NE(Error({"--max-error-rate=1.5"}).find("--max-error-rate"),
            std::string::npos);
  EXPECT_NE(Error({"--max-error-rate=-0.1"}).find("--max-error-rate"),
            std::string::npos);
  EXPECT_NE(Error({"--max-error-rate=nan"}), "");
  EXPECT_NE(Error({"--max-error-rate=half"}), "");
  // requires_grad is for floating and complex dtypes only, as in PyTorch.
  EXPECT_NE(Error({"--requires-grad", "--dtype=int64"}).find("--requires-grad"),
            std::string::npos);
  // --fetch-as-is needs a fetch to apply to.
  EXPECT_NE(Error({"--scenario=info", "--fetch-as-is"}).find("--fetch-as-is"),
            std::string::npos);
  EXPECT_NE(Error({"--scenario=mixed", "--mix=fetch:0,put:1", "--fetch-as-is"})
                .find("--fetch-as-is"),
            std::string::npos);
}

TEST(ParseArgsTest, TokenAndTls) {
  absl::StatusOr<ParsedArgs> p =
      ParseArgs({"--tls-ca=ca.pem", "--tls-cert=c.pem", "--tls-key=k.pem"},
                "h:1", "from-env-0123456789");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->options.token, "from-env-0123456789");
  EXPECT_EQ(p->options.tls_ca, "ca.pem");
  EXPECT_EQ(p->options.tls_cert, "c.pem");
  EXPECT_EQ(p->options.tls_key, "k.pem");
  EXPECT_FALSE(p->options.tls);
  // The flag wins over the environment's token, which the usage never shows.
  p = ParseArgs({"--token=from-flag-0123456789", "--tls"}, "h:1",
                "from-env-0123456789");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->options.token, "from-flag-0123456789");
  EXPECT_TRUE(p->options.tls);
  EXPECT_EQ(p->usage.find("from-env"), std::string::npos);
  EXPECT_NE(p->usage.find("--tls-ca"), std::string::npos);
  EXPECT_NE(Error({"--tls-cert=c.pem"}).find("--tls-key"), std::string::npos);
}

TEST(ParseArgsTest, ServerListsAndDnsTargets) {
  absl::StatusOr<LoadOptions> o =
      Parse({"--server=127.0.0.1:1,127.0.0.1:2, 127.0.0.1:3"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->server, "127.0.0.1:1,127.0.0.1:2, 127.0.0.1:3");
  o = Parse({"--server=dns:///tensorcast:50051"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->server, "dns:///tensorcast:50051");
  // One server: shared memory as before.
  EXPECT_TRUE(Parse({"--server=127.0.0.1:1", "--shared-memory"}).ok());
  EXPECT_NE(Error({"--server=a:1,,b:2"}).find("empty entry"),
            std::string::npos);
  EXPECT_NE(Error({"--server=a:1,"}).find("empty entry"), std::string::npos);
  EXPECT_NE(Error({"--server=a:1,b:2", "--shared-memory"}).find("one server"),
            std::string::npos);
}

TEST(ParseArgsTest, CudaIpc) {
  absl::StatusOr<LoadOptions> o = Parse({"--server=h:1"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_FALSE(o->cuda_ipc());
  EXPECT_STREQ(o->transport(), "socket");
  // Alone it means GPU 0, and never takes the next argument as its value.
  o = Parse({"--server=h:1", "--cuda-ipc", "--scenario=put"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->cuda_ipc_device, 0);
  EXPECT_EQ(o->scenario, "put");
  EXPECT_STREQ(o->transport(), "cuda-ipc");
  o = Parse({"--server=h:1", "--cuda-ipc=3"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->cuda_ipc_device, 3);
  o = Parse({"--server=h:1", "--cuda-ipc=cuda:1", "--scenario=mixed",
             "--mix=put:1,info:1"});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->cuda_ipc_device, 1);
  EXPECT_STREQ(Parse({"--server=h:1", "--shared-memory"})->transport(),
               "shared-memory");
  for (const char* bad : {"--cuda-ipc=", "--cuda-ipc=-1", "--cuda-ipc=gpu0",
                          "--cuda-ipc=cuda:", "--cuda-ipc=cpu",
                          "--cuda-ipc=1.5", "--cuda-ipc=4096"}) {
    EXPECT_NE(Error({"--server=h:1", bad}).find("expected a GPU"),
              std::string::npos)
        << bad;
  }
  // Host or device memory, not both.
  EXPECT_NE(Error({"--server=h:1", "--cuda-ipc", "--shared-memory"})
                .find("exclude each other"),
            std::string::npos);
  EXPECT_NE(Error({"--server=h:1", "--shared-memory", "--cuda-ipc=1"})
                .find("exclude each other"),
            std::string::npos);
  // One server: regions belong to one connection.
  EXPECT_NE(Error({"--server=a:1,b:2", "--cuda-ipc"}).find("one server"),
            std::string::npos);
  // Only fetch and put move bytes through it.
  for (const char* scenario : {"--scenario=info", "--scenario=to"}) {
    EXPECT_NE(
        Error({"--server=h:1", "--cuda-ipc", scenario}).find("fetch or put"),
        std::string::npos)
        << scenario;
  }
  EXPECT_NE(Error({"--server=h:1", "--cuda-ipc", "--scenario=mixed",
                   "--mix=to:1,info:1"})
                .find("fetch or put"),
            std::string::npos);
  // Listed in the usage.
  absl::StatusOr<ParsedArgs> p = ParseArgs({"--help"});
  ASSERT_TRUE(p.ok());
  EXPECT_NE(p->usage.find("--cuda-ipc"), std::string::npos);
}

TEST(ParseArgsTest, PlotAndHelpModes) {
  absl::StatusOr<ParsedArgs> p = ParseArgs({"--plot=r.json", "--out=r.png"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->mode, ParsedArgs::Mode::kPlot);
  EXPECT_EQ(p->plot_json, "r.json");
  EXPECT_EQ(p->plot_out, "r.png");
  p = ParseArgs({"--help"});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->mode, ParsedArgs::Mode::kHelp);
  EXPECT_NE(p->usage.find("--scenario"), std::string::npos);
}

}  // namespace
}  // namespace tensorcast::load
