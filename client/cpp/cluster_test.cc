#include "client/cpp/cluster.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "tensorcast/v1/tensor_service.pb.h"

namespace tensorcast {
namespace {

v1::ClusterResponse Response(
    const std::string& self,
    const std::vector<std::tuple<std::string, std::string, bool, int64_t>>&
        members) {
  v1::ClusterResponse r;
  r.set_node_id(self);
  for (const auto& [id, address, healthy, free] : members) {
    v1::ClusterMember* m = r.add_members();
    m->set_node_id(id);
    m->set_address(address);
    m->set_healthy(healthy);
    if (!healthy) m->set_error("connection refused");
    v1::DeviceStats* d = m->add_devices();
    d->set_device("cpu");
    d->set_free_bytes(free);
  }
  return r;
}

TEST(ClusterTest, SplitTargets) {
  EXPECT_EQ(SplitTargets("h:1"), std::vector<std::string>{"h:1"});
  EXPECT_EQ(SplitTargets("a:1, b:2,,c:3"),
            (std::vector<std::string>{"a:1", "b:2", "c:3"}));
  EXPECT_EQ(SplitTargets("dns:///tc.ns.svc:50051"),
            std::vector<std::string>{"dns:///tc.ns.svc:50051"});
}

TEST(ClusterTest, HandleNode) {
  const std::string hex = "8d7b0c0f5c6e4f1d2a9e77c1b3f04a21";
  EXPECT_EQ(HandleNode(hex + ".tensorcast-1"), "tensorcast-1");
  EXPECT_EQ(HandleNode(hex), "");            // a plain server's handle
  EXPECT_EQ(HandleNode("weights"), "");      // a name
  EXPECT_EQ(HandleNode(hex + "."), "");      // no node
  EXPECT_EQ(HandleNode(hex + ".Node"), "");  // not a DNS label
  EXPECT_EQ(HandleNode(hex + ".a.b"), "");   // one "." only
  EXPECT_EQ(HandleNode("8D7B0C0F5C6E4F1D2A9E77C1B3F04A21.n"), "");
  EXPECT_EQ(HandleNode(hex + "." + std::string(64, 'a')), "");
}

TEST(ClusterTest, PlainServerIsNotACluster) {
  MemberTable t;
  EXPECT_FALSE(t.Update(Response("", {{"", "h:1", true, 100}}), 0));
  EXPECT_TRUE(t.empty());
}

TEST(ClusterTest, PlacementTakesTheMostFreeAndSpreadsEqualNodes) {
  MemberTable t;
  ASSERT_TRUE(t.Update(Response("a", {{"a", "h:1", true, 1000},
                                      {"b", "h:2", true, 5000},
                                      {"c", "h:3", true, 4800}}),
                       0));
  // b and c are within 10% of each other: they take turns; a never.
  std::map<std::string, int> count;
  for (int i = 0; i < 10; ++i) count[*t.Place("cpu", 1)]++;
  EXPECT_EQ(count["a"], 0);
  EXPECT_EQ(count["b"], 5);
  EXPECT_EQ(count["c"], 5);
  // A big tensor on b lowers its figure until the next refresh.
  MemberTable u;
  ASSERT_TRUE(u.Update(
      Response("a", {{"a", "h:1", true, 1000}, {"b", "h:2", true, 5000}}), 0));
  EXPECT_EQ(*u.Place("", 4500), "b");
  EXPECT_EQ(*u.Place("cpu", 1), "a");
}

TEST(ClusterTest, PlacementSkipsUnhealthyAndMissingDevices) {
  MemberTable t;
  ASSERT_TRUE(t.Update(
      Response("a", {{"a", "h:1", false, 9000}, {"b", "h:2", true, 10}}), 0));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(*t.Place("cpu", 0), "b");
  absl::StatusOr<std::string> gpu = t.Place("cuda", 0);
  EXPECT_EQ(gpu.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(gpu.status().message().find("cuda:0"), std::string::npos);
}

TEST(ClusterTest, MarkDownHoldsUntilALaterRefreshSaysHealthy) {
  MemberTable t;
  auto all_up = Response("a", {{"a", "h:1", true, 10}, {"b", "h:2", true, 10}});
  ASSERT_TRUE(t.Update(all_up, 0));
  t.MarkDown("b", "connection refused", 1000);
  EXPECT_FALSE(t.Find("b")->healthy);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(*t.Place("cpu", 0), "a");
  // The nodes' own probes may not have noticed yet: still down.
  ASSERT_TRUE(t.Update(all_up, 1500));
  EXPECT_FALSE(t.Find("b")->healthy);
  EXPECT_EQ(t.Find("b")->error, "connection refused");
  ASSERT_TRUE(t.Update(all_up, 1000 + MemberTable::kDownHoldMs));
  EXPECT_TRUE(t.Find("b")->healthy);
}

TEST(ClusterTest, AnyHealthyPrefersTheFirstNode) {
  MemberTable t;
  ASSERT_TRUE(t.Update(
      Response("b", {{"a", "h:1", true, 10}, {"b", "h:2", true, 10}}), 0));
  EXPECT_EQ(*t.AnyHealthy("b"), "b");
  t.MarkDown("b", "gone", 0);
  EXPECT_EQ(*t.AnyHealthy("b"), "a");
  t.MarkDown("a", "gone", 0);
  EXPECT_EQ(t.AnyHealthy("b").status().code(), absl::StatusCode::kUnavailable);
}

TEST(ClusterTest, NodeUnavailableNamesTheNode) {
  absl::Status s = NodeUnavailable("n-1", "127.0.0.1:5", "connection refused");
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(s.message(),
            "node 'n-1' (127.0.0.1:5) is unavailable: connection refused");
}

}  // namespace
}  // namespace tensorcast
