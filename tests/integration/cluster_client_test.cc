// Client-side routing against three real servers on loopback (--node-id,
// --cluster listing the three): the C++ Client and the CLI place new
// tensors by free memory, send calls on a handle to the node it names (no
// forwarding on the others), and fail fast, naming the node, when a node
// is SIGKILLed while the others keep serving.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/cpp/client.h"
#include "client/cpp/cluster.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

using Clock = std::chrono::steady_clock;

class ClusterClientTest : public ::testing::Test {
 protected:
  static constexpr int kNodes = 3;

  void SetUp() override {
    ClientOptions options;
    options.timeout = std::chrono::seconds(20);
    cluster_ = std::make_unique<LocalCluster>(
        kNodes, dir_.path(), std::vector<std::string>{}, options);
    ASSERT_TRUE(cluster_->ready());
    client_ = Client::Connect(cluster_->Servers(), options);
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    while (client_->HealthyNodes().size() < kNodes && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_EQ(client_->HealthyNodes().size(), kNodes);
  }

  std::string Scrape(int node) { return cluster_->Scrape(node); }

  static std::string Bytes(int n, int seed) {
    std::string out(static_cast<size_t>(n), '\0');
    for (int i = 0; i < n; ++i) out[i] = static_cast<char>(i * 7 + seed);
    return out;
  }

  absl::StatusOr<v1::TensorInfo> Put(int n, int seed,
                                     const std::string& node = "") {
    PutOptions o;
    o.dtype = v1::DTYPE_UINT8;
    o.shape = {n};
    o.node = node;
    return client_->PutBuffer(o, Bytes(n, seed));
  }

  static absl::StatusOr<std::string> Raw(Client& c, const std::string& ref) {
    FetchOptions f;
    f.format = v1::FORMAT_RAW;
    return c.FetchBytes(ref, f);
  }

  TempDir dir_;
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClusterClientTest, PlacementSpreadsAndCallsGoToTheOwner) {
  std::map<std::string, int> per_node;
  std::vector<v1::TensorInfo> made;
  for (int i = 0; i < 30; ++i) {
    absl::StatusOr<v1::TensorInfo> t = Put(4096, i);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(HandleNode(t->handle()), t->node());
    per_node[t->node()]++;
    made.push_back(*t);
  }
  // Equal nodes share new tensors: each gets a good part.
  ASSERT_EQ(per_node.size(), 3u);
  for (const auto& [node, n] : per_node) EXPECT_GE(n, 5) << node;
  // Each node's own Stats counts what was placed there.
  for (int i = 0; i < kNodes; ++i) {
    const std::string node = absl::StrCat("n", i);
    absl::StatusOr<v1::StatsResponse> stats = client_->Stats(node);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->tensors(), per_node[node]) << node;
  }
  for (size_t i = 0; i < made.size(); ++i) {
    absl::StatusOr<std::string> got = Raw(*client_, made[i].handle());
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, Bytes(4096, static_cast<int>(i)));
    ASSERT_TRUE(client_->Info(made[i].handle()).ok());
  }
  // Every call went to the owner: no node forwarded anything, and each
  // node served the Fetch and Info calls of its own tensors.
  for (int i = 0; i < kNodes; ++i) {
    const std::string metrics = Scrape(i);
    ASSERT_FALSE(metrics.empty());
    EXPECT_EQ(SumMetric(metrics, "tensorcast_cluster_forwarded_total"), 0) << i;
    const std::string node = absl::StrCat("n", i);
    EXPECT_EQ(SumMetric(metrics, "tensorcast_rpcs_total", "method=\"Fetch\""),
              per_node[node])
        << node;
    EXPECT_EQ(SumMetric(metrics, "tensorcast_rpcs_total", "method=\"Info\""),
              per_node[node])
        << node;
  }
  // List covers every node; Delete splits by node.
  absl::StatusOr<std::vector<v1::TensorInfo>> all = client_->List();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->size(), made.size());
  std::vector<std::string> handles;
  for (const auto& t : made) handles.push_back(t.handle());
  absl::StatusOr<int> deleted = client_->Delete(handles);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(*deleted, 30);
}

TEST_F(ClusterClientTest, PinnedPutAndCopy) {
  absl::StatusOr<v1::TensorInfo> t = Put(100000, 3, "n2");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->node(), "n2");
  EXPECT_TRUE(absl::EndsWith(t->handle(), ".n2"));
  v1::CopyRequest copy;
  copy.set_ref(t->handle());
  copy.set_node("n0");
  absl::StatusOr<v1::TensorInfo> c = client_->Copy(copy);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->node(), "n0");
  absl::StatusOr<std::string> got = Raw(*client_, c->handle());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, Bytes(100000, 3));
  // A node that is not a member: UNAVAILABLE naming it, no call made.
  absl::StatusOr<v1::TensorInfo> bad = Put(10, 0, "n9");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "'n9'"));
  // A name goes to any node; the server looks it up across the cluster.
  PutOptions named;
  named.dtype = v1::DTYPE_UINT8;
  named.shape = {5};
  named.name = "weights";
  named.node = "n1";
  ASSERT_TRUE(client_->PutBuffer(named, "abcde").ok());
  absl::StatusOr<std::string> by_name = Raw(*client_, "weights");
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(*by_name, "abcde");
}

TEST_F(ClusterClientTest, NodeKilledFailsFastOthersKeepServing) {
  std::map<std::string, std::vector<v1::TensorInfo>> by_node;
  for (int i = 0; i < 12; ++i) {
    absl::StatusOr<v1::TensorInfo> t = Put(1000, i);
    ASSERT_TRUE(t.ok()) << t.status();
    by_node[t->node()].push_back(*t);
  }
  ASSERT_FALSE(by_node["n1"].empty());
  ASSERT_EQ(kill(cluster_->servers[1]->pid(), SIGKILL), 0);
  waitpid(cluster_->servers[1]->pid(), nullptr, 0);
  cluster_->servers[1]->Forget();
  for (const v1::TensorInfo& t : by_node["n1"]) {
    const auto start = Clock::now();
    absl::StatusOr<std::string> got = Raw(*client_, t.handle());
    const double s =
        std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_LT(s, 2.0);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable);
    EXPECT_TRUE(absl::StrContains(got.status().message(), "node 'n1'"))
        << got.status();
  }
  for (const std::string node : {"n0", "n2"}) {
    for (const v1::TensorInfo& t : by_node[node]) {
      absl::StatusOr<std::string> got = Raw(*client_, t.handle());
      EXPECT_TRUE(got.ok()) << got.status();
    }
  }
  for (int i = 0; i < 12; ++i) {
    const auto start = Clock::now();
    absl::StatusOr<v1::TensorInfo> t = Put(1000, i);
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - start).count(), 2.0);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_NE(t->node(), "n1");
  }
}

TEST_F(ClusterClientTest, Cli) {
  const std::string list = cluster_->Servers();
  CommandResult members = RunCli(list, {"cluster", "--json"});
  ASSERT_EQ(members.exit_code, 0) << members.err;
  for (int i = 0; i < kNodes; ++i) {
    EXPECT_TRUE(absl::StrContains(members.out, absl::StrCat("\"n", i, "\"")))
        << members.out;
  }
  CommandResult table = RunCli(list, {"cluster"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_TRUE(absl::StrContains(table.out, "HEALTHY"));
  CommandResult made = RunCli(
      list, {"create", "--dtype=int32", "--shape=4", "--arange", "--node=n1"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  std::string handle(absl::StripAsciiWhitespace(made.out));
  EXPECT_TRUE(absl::EndsWith(handle, ".n1")) << handle;
  CommandResult copied = RunCli(list, {"cp", handle, "n2"});
  ASSERT_EQ(copied.exit_code, 0) << copied.err;
  std::string copy(absl::StripAsciiWhitespace(copied.out));
  EXPECT_TRUE(absl::EndsWith(copy, ".n2")) << copy;
  absl::StatusOr<std::string> got = Raw(*client_, copy);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), 16u);
  CommandResult bad = RunCli(list, {"cp", handle, "nope"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(bad.err, "UNAVAILABLE")) << bad.err;
}

}  // namespace
}  // namespace tensorcast::testing
