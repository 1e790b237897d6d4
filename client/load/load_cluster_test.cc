// Runs the real tensorcast-load against three real servers on loopback
// (--node-id, --cluster listing the three): the workers are spread over the
// nodes, each node's figures in the JSON match what that node's metrics
// counted (exact bytes, no call forwarded), nothing is left on any node
// afterwards; ClientOptions::own_connections gives each client its own
// connection to each node; and against one plain server the run is as
// before (no node figures), while a list of plain servers is refused.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cpp/client.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

using google::protobuf::Struct;
using Clock = std::chrono::steady_clock;

const std::string kLoad = std::string(TENSORCAST_BIN_DIR) + "/tensorcast-load";

CommandResult RunLoad(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {kLoad};
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

class LoadClusterTest : public ::testing::Test {
 protected:
  static constexpr int kNodes = 3;

  void SetUp() override {
    ClientOptions options;
    options.timeout = std::chrono::seconds(20);
    // Every node's own view is complete: a run through one address sees
    // that node's.
    cluster_ = std::make_unique<LocalCluster>(
        kNodes, dir_.path(), std::vector<std::string>{}, options);
    ASSERT_TRUE(cluster_->ready());
    client_ = Client::Connect(Servers(), options);
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    while (client_->HealthyNodes().size() < kNodes && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_EQ(client_->HealthyNodes().size(), kNodes);
  }

  std::string Servers() const { return cluster_->Servers(); }

  std::string Scrape(int node) { return cluster_->Scrape(node); }

  // A counter of node `node` once it reaches `expected` (a stream's last
  // bytes are counted a moment after the client has them), or after 5 s.
  double SettledSum(int node, const std::string& family, double expected,
                    const std::string& match = "") {
    double v = SumMetric(Scrape(node), family, match);
    for (int i = 0; i < 100 && v != expected; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      v = SumMetric(Scrape(node), family, match);
    }
    return v;
  }

  // No tensor on any node, and no pool bytes in use.
  void ExpectNothingLeft() {
    absl::StatusOr<std::vector<v1::TensorInfo>> all = client_->List();
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_TRUE(all->empty())
        << all->size() << " tensor(s) left, first " << (*all)[0].handle();
    for (int i = 0; i < kNodes; ++i) {
      const std::string node = absl::StrCat("n", i);
      int64_t allocated = -1;
      for (int attempt = 0; attempt < 100 && allocated != 0; ++attempt) {
        if (attempt > 0) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        absl::StatusOr<v1::StatsResponse> stats = client_->Stats(node);
        ASSERT_TRUE(stats.ok()) << stats.status();
        EXPECT_EQ(stats->tensors(), 0) << node;
        for (const v1::DeviceStats& d : stats->devices()) {
          if (d.device() == "cpu") allocated = d.allocated_bytes();
        }
      }
      EXPECT_EQ(allocated, 0) << node;
    }
  }

  TempDir dir_;
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<Client> client_;
};

// Fetches by count, no warm-up: every request the tool sent was measured,
// so each node's metrics must equal its figures in the JSON exactly.
TEST_F(LoadClusterTest, FetchSpreadsOverTheNodesAndCountsExactly) {
  constexpr int kSize = 64 * 1024;
  constexpr int kRequests = 150;
  const std::string json = dir_.File("fetch.json");
  CommandResult r = RunLoad(
      {"--server=" + Servers(), "--scenario=fetch", "--size=64KiB",
       "--format=raw", "--concurrency=6", "--connections=2",
       absl::StrCat("--requests=", kRequests), "--warmup=0", "--json=" + json});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("3 nodes: n0, n1, n2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("per node"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("on each of 3 nodes"), std::string::npos) << r.out;

  Struct doc = ReadJson(json);
  EXPECT_EQ(Num(doc, "requests"), kRequests);
  EXPECT_EQ(Num(doc, "bytes"), double{kRequests} * kSize);
  EXPECT_TRUE(Obj(doc, "errors").fields().empty());
  const Struct& nodes = Obj(doc, "nodes");
  ASSERT_EQ(nodes.fields().size(), 3u) << doc.DebugString();
  double requests = 0, bytes = 0;
  for (int i = 0; i < kNodes; ++i) {
    const std::string node = absl::StrCat("n", i);
    const Struct& n = Obj(nodes, node);
    const double node_requests = Num(n, "requests");
    // Two workers on each node: every node got work.
    EXPECT_GT(node_requests, 0) << node;
    EXPECT_EQ(Num(n, "errors"), 0) << node;
    EXPECT_EQ(Num(n, "bytes"), node_requests * kSize) << node;
    EXPECT_NEAR(Num(n, "bytes_per_s"), Num(n, "bytes") / Num(doc, "duration_s"),
                1e-3 * Num(n, "bytes_per_s") + 0.01)
        << node;
    const Struct& latency = Obj(n, "latency_us");
    EXPECT_EQ(Num(latency, "count"), node_requests) << node;
    EXPECT_GT(Num(latency, "p50"), 0) << node;
    EXPECT_LE(Num(latency, "p50"), Num(latency, "p99")) << node;
    requests += node_requests;
    bytes += Num(n, "bytes");

    // The node's own count: the same fetches, the same bytes, every one
    // sent to the owner (nothing forwarded).
    EXPECT_EQ(SettledSum(i, "tensorcast_fetch_bytes_total", Num(n, "bytes")),
              Num(n, "bytes"))
        << node;
    const std::string metrics = Scrape(i);
    EXPECT_EQ(SumMetric(metrics, "tensorcast_rpcs_total", "method=\"Fetch\""),
              node_requests)
        << node;
    EXPECT_EQ(SumMetric(metrics, "tensorcast_cluster_forwarded_total"), 0)
        << node;
    // Its source tensor was made there, by node pinning.
    EXPECT_EQ(SumMetric(metrics, "tensorcast_rpcs_total",
                        "method=\"Create\",code=\"OK\""),
              1)
        << node;
  }
  EXPECT_EQ(requests, kRequests);
  EXPECT_EQ(bytes, Num(doc, "bytes"));
  ExpectNothingLeft();
}

// Open loop: request j goes to node j mod 3, so each node gets exactly a
// third of the requests.
TEST_F(LoadClusterTest, OpenLoopSharesRequestsEqually) {
  const std::string json = dir_.File("info.json");
  CommandResult r =
      RunLoad({"--server=" + Servers(), "--scenario=info", "--rate=300",
               "--requests=90", "--warmup=0", "--json=" + json});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  Struct doc = ReadJson(json);
  EXPECT_EQ(Num(doc, "requests"), 90);
  for (int i = 0; i < kNodes; ++i) {
    const std::string node = absl::StrCat("n", i);
    EXPECT_EQ(Num(Obj(Obj(doc, "nodes"), node), "requests"), 30) << node;
    EXPECT_EQ(SettledSum(i, "tensorcast_rpcs_total", 30, "method=\"Info\""), 30)
        << node;
  }
  ExpectNothingLeft();
}

// Puts (pinned to the worker's node) and fetches in a timed run, through a
// single member's address: the tool learns the others from it.
TEST_F(LoadClusterTest, MixedRunThroughOneAddressCoversEveryNode) {
  const std::string json = dir_.File("mixed.json");
  CommandResult r =
      RunLoad({"--server=" + cluster_->addresses[1], "--scenario=mixed",
               "--mix=fetch:1,put:1", "--size=32KiB", "--concurrency=3",
               "--duration=1.5s", "--warmup=0.2s", "--json=" + json});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  Struct doc = ReadJson(json);
  EXPECT_TRUE(Obj(doc, "errors").fields().empty());
  double requests = 0;
  for (int i = 0; i < kNodes; ++i) {
    const std::string node = absl::StrCat("n", i);
    const Struct& n = Obj(Obj(doc, "nodes"), node);
    EXPECT_GT(Num(n, "requests"), 0) << node;
    requests += Num(n, "requests");
    // The warm-up's puts count too, so at least the measured ones.
    const std::string metrics = Scrape(i);
    EXPECT_GT(SumMetric(metrics, "tensorcast_put_bytes_total"), 0) << node;
    EXPECT_EQ(SumMetric(metrics, "tensorcast_cluster_forwarded_total"), 0)
        << node;
  }
  EXPECT_EQ(requests, Num(doc, "requests"));
  ExpectNothingLeft();
}

// This process's open sockets.
int Sockets() {
  int n = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    const std::filesystem::path target =
        std::filesystem::read_symlink(entry.path(), error);
    if (!error && absl::StartsWith(target.string(), "socket:")) ++n;
  }
  return n;
}

// The tool's clients each need connections of their own: Clients made by
// Connect share one TCP connection per server unless own_connections is
// set, with which each has its own to every node.
TEST_F(LoadClusterTest, OwnConnectionsOpensAConnectionPerClientAndNode) {
  const auto call_every_node = [](Client& c) {
    for (int i = 0; i < kNodes; ++i) {
      absl::StatusOr<v1::StatsResponse> stats = c.Stats(absl::StrCat("n", i));
      ASSERT_TRUE(stats.ok()) << stats.status();
    }
  };
  call_every_node(*client_);
  const int before = Sockets();
  std::vector<std::unique_ptr<Client>> shared;
  for (int k = 0; k < 2; ++k) {
    shared.push_back(Client::Connect(Servers()));
    call_every_node(*shared.back());
  }
  const int after_shared = Sockets();
  EXPECT_EQ(after_shared, before) << "Clients without own_connections opened "
                                  << after_shared - before << " sockets";
  ClientOptions own;
  own.own_connections = true;
  std::vector<std::unique_ptr<Client>> owning;
  for (int k = 0; k < 2; ++k) {
    owning.push_back(Client::Connect(Servers(), own));
    call_every_node(*owning.back());
  }
  EXPECT_EQ(Sockets() - after_shared, 2 * kNodes);
}

// One plain server: no node figures, the summary as before. Two plain
// servers in a list are not a cluster: exit 2, saying so.
TEST(LoadOneServerTest, PlainServerUnchangedAndAListOfThemRefused) {
  ServerProcess a;
  ServerProcess b;
  TempDir dir;
  const std::string json = dir.File("r.json");
  CommandResult r = RunLoad({"--server=" + a.address(), "--scenario=fetch",
                             "--size=16KiB", "--format=raw", "--requests=20",
                             "--warmup=0", "--json=" + json});
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  EXPECT_NE(r.out.find("  server " + a.address() + "; "), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("per node"), std::string::npos) << r.out;
  Struct doc = ReadJson(json);
  EXPECT_EQ(Num(doc, "bytes"), 20 * 16 * 1024);
  EXPECT_FALSE(doc.fields().contains("nodes"));
  EXPECT_FALSE(Obj(doc, "config").fields().contains("nodes"));

  r = RunLoad({"--server=" + a.address() + "," + b.address(), "--requests=5",
               "--warmup=0"});
  EXPECT_EQ(r.exit_code, 2) << r.err << r.out;
  EXPECT_NE(r.err.find("not a member of a cluster"), std::string::npos)
      << r.err;
  for (ServerProcess* s : {&a, &b}) {
    absl::StatusOr<std::vector<v1::TensorInfo>> all = s->client().List();
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_TRUE(all->empty());
  }
}

}  // namespace
}  // namespace tensorcast::testing
