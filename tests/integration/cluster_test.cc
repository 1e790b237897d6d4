// A cluster of three real servers on loopback (--node-id, --cluster listing
// the three, bearer tokens on all), driven by the plain generated gRPC stub:
// no client-side routing, so every call on a handle of another node goes
// through the node asked (forwarding).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tensorcast/v1/tensor_service.grpc.pb.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kTokenA[] = "tenant-a-token-0123456789abcdef";
constexpr char kTokenA2[] = "tenant-a-second-token-0123456789";
constexpr char kTokenB[] = "tenant-b-token-0123456789abcdef";
constexpr char kTokenC[] = "tenant-c-token-0123456789abcdef";  // streams=1
constexpr char kTokenD[] = "tenant-d-token-0123456789abcdef";  // quota=2MB

class ClusterTest : public ::testing::Test {
 protected:
  static constexpr int kNodes = 3;

  void SetUp() override {
    WriteFile(
        dir_.File("tokens"),
        absl::StrCat(kTokenA, " a\n", kTokenA2, " a\n", kTokenB, " b\n",
                     kTokenC, " c streams=1\n", kTokenD, " d quota=2000000\n"));
    WriteFile(dir_.File("cluster-token"), absl::StrCat(kTokenA2, "\n"));
    ClientOptions options;
    options.token = kTokenA;
    cluster_ = std::make_unique<LocalCluster>(
        kNodes, dir_.path(),
        std::vector<std::string>{
            "--auth-tokens=" + dir_.File("tokens"),
            "--cluster-token-file=" + dir_.File("cluster-token")},
        options);
    ASSERT_TRUE(cluster_->ready());
    for (const std::string& address : cluster_->addresses) {
      stubs_.push_back(v1::TensorService::NewStub(
          grpc::CreateChannel(address, grpc::InsecureChannelCredentials())));
    }
    // Every node sees every other one healthy, with its id (the raw view).
    for (int i = 0; i < kNodes; ++i) {
      ASSERT_EQ(HealthyMembers(i), kNodes) << cluster_->servers[i]->Log();
    }
  }

  int HealthyMembers(int node) {
    v1::ClusterResponse r;
    if (!Cluster(node, &r, kTokenA).ok()) return 0;
    int n = 0;
    for (const auto& m : r.members()) n += m.healthy() && !m.node_id().empty();
    return n;
  }

  std::unique_ptr<grpc::ClientContext> Ctx(const char* token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(20));
    if (token != nullptr) {
      ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    }
    return ctx;
  }

  grpc::Status Cluster(int node, v1::ClusterResponse* r, const char* token) {
    v1::ClusterRequest req;
    return stubs_[node]->Cluster(Ctx(token).get(), req, r);
  }

  // A float32 tensor of `n` elements i * 0.5 put on `node`.
  v1::TensorInfo Put(int node, int n, const char* token,
                     const std::string& name = "") {
    auto ctx = Ctx(token);
    v1::PutResponse response;
    auto writer = stubs_[node]->Put(ctx.get(), &response);
    v1::PutRequest header;
    header.mutable_header()->set_dtype(v1::DTYPE_FLOAT32);
    header.mutable_header()->add_shape(n);
    header.mutable_header()->set_format(v1::FORMAT_RAW);
    header.mutable_header()->set_name(name);
    EXPECT_TRUE(writer->Write(header));
    const std::string bytes = Bytes(n);
    for (size_t at = 0; at < bytes.size(); at += 1 << 20) {
      v1::PutRequest data;
      data.set_data(bytes.substr(at, 1 << 20));
      EXPECT_TRUE(writer->Write(data));
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.tensor();
  }

  static std::string Bytes(int n) {
    std::string out(static_cast<size_t>(n) * 4, '\0');
    for (int i = 0; i < n; ++i) {
      float v = static_cast<float>(i) * 0.5f;
      std::memcpy(&out[static_cast<size_t>(i) * 4], &v, 4);
    }
    return out;
  }

  grpc::Status Fetch(int node, const std::string& ref, std::string* out,
                     const char* token = kTokenA) {
    auto ctx = Ctx(token);
    v1::FetchRequest req;
    req.set_ref(ref);
    req.set_format(v1::FORMAT_RAW);
    req.set_chunk_bytes(4096);
    auto reader = stubs_[node]->Fetch(ctx.get(), req);
    v1::FetchResponse msg;
    out->clear();
    while (reader->Read(&msg)) *out += msg.data();
    return reader->Finish();
  }

  grpc::Status Info(int node, const std::string& ref, v1::InfoResponse* r,
                    const char* token = kTokenA) {
    v1::InfoRequest req;
    req.set_ref(ref);
    return stubs_[node]->Info(Ctx(token).get(), req, r);
  }

  std::string Scrape(int node) { return cluster_->Scrape(node); }

  TempDir dir_;
  std::unique_ptr<LocalCluster> cluster_;
  std::vector<std::unique_ptr<v1::TensorService::Stub>> stubs_;
};

TEST_F(ClusterTest, ClusterListsEveryMemberWithDevices) {
  for (int i = 0; i < kNodes; ++i) {
    v1::ClusterResponse r;
    ASSERT_TRUE(Cluster(i, &r, kTokenB).ok());
    EXPECT_EQ(r.node_id(), absl::StrCat("n", i));
    ASSERT_EQ(r.members_size(), kNodes);
    int selves = 0;
    for (const auto& m : r.members()) {
      EXPECT_TRUE(m.healthy()) << m.node_id() << ": " << m.error();
      selves += m.self();
      if (m.self()) {
        EXPECT_EQ(m.node_id(), r.node_id());
      }
      ASSERT_FALSE(m.devices().empty()) << m.node_id();
      EXPECT_EQ(m.devices(0).device(), "cpu");
      EXPECT_GT(m.devices(0).free_bytes(), 0);
      EXPECT_FALSE(m.version().empty());
    }
    EXPECT_EQ(selves, 1);
  }
  // Without a token: the node's identity alone.
  v1::ClusterResponse anon;
  ASSERT_TRUE(Cluster(1, &anon, nullptr).ok());
  ASSERT_EQ(anon.members_size(), 1);
  EXPECT_EQ(anon.members(0).node_id(), "n1");
  EXPECT_TRUE(anon.members(0).devices().empty());
}

TEST_F(ClusterTest, PlainClientThroughANonOwnerGetsTheSameAnswers) {
  v1::TensorInfo t = Put(0, 1000, kTokenA, "weights");
  EXPECT_TRUE(absl::EndsWith(t.handle(), ".n0")) << t.handle();
  EXPECT_EQ(t.node(), "n0");

  v1::InfoResponse here, there;
  ASSERT_TRUE(Info(0, t.handle(), &here).ok());
  grpc::Status s = Info(1, t.handle(), &there);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(here.SerializeAsString(), there.SerializeAsString());

  std::string bytes;
  s = Fetch(2, t.handle(), &bytes);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(bytes, Bytes(1000));

  // A name held on another node is found there.
  v1::InfoResponse by_name;
  s = Info(2, "weights", &by_name);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(by_name.tensor().handle(), t.handle());

  v1::ToRequest to;
  to.set_ref(t.handle());
  to.set_dtype(v1::DTYPE_FLOAT64);
  v1::ToResponse cast;
  s = stubs_[1]->To(Ctx(kTokenA).get(), to, &cast);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(cast.tensor().node(), "n0");
  EXPECT_EQ(cast.tensor().dtype(), v1::DTYPE_FLOAT64);

  v1::DetachRequest detach;
  detach.set_ref(t.handle());
  v1::DetachResponse detached;
  s = stubs_[2]->Detach(Ctx(kTokenA).get(), detach, &detached);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(absl::EndsWith(detached.tensor().handle(), ".n0"));

  // The forwarder counts what it forwarded, per peer; the owner served it.
  const std::string m1 = Scrape(1);
  EXPECT_TRUE(absl::StrContains(
      m1,
      "tensorcast_cluster_forwarded_total{peer=\"n0\",method=\"Info\","
      "code=\"OK\"} 1"))
      << m1;
  EXPECT_TRUE(
      absl::StrContains(Scrape(2),
                        "tensorcast_cluster_forwarded_total{peer=\"n0\",method="
                        "\"Fetch\",code=\"OK\"} 1"));

  // Fetch by a name held on another node: looked up, then relayed; a name
  // held nowhere is NOT_FOUND, from Info and Fetch alike.
  s = Fetch(1, "weights", &bytes);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(bytes, Bytes(1000));
  s = Fetch(1, "no-such-name", &bytes);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "no-such-name"));
  s = Info(1, "no-such-name", &by_name);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();

  // Delete: refs on one other node go there; refs on two are refused.
  v1::DeleteRequest mixed;
  mixed.add_refs(cast.tensor().handle());
  mixed.add_refs(Put(1, 4, kTokenA).handle());
  v1::DeleteResponse deleted;
  s = stubs_[2]->Delete(Ctx(kTokenA).get(), mixed, &deleted);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  v1::DeleteRequest del;
  del.add_refs(t.handle());
  del.add_refs(cast.tensor().handle());
  s = stubs_[1]->Delete(Ctx(kTokenA).get(), del, &deleted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(deleted.deleted(), 2);
  EXPECT_EQ(Info(0, t.handle(), &here).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ClusterTest, CopyIsByteExactAndChargesTheTargetTenant) {
  v1::TensorInfo t = Put(0, 300000, kTokenA);  // 1.2 MB: two chunks
  v1::CopyRequest copy;
  copy.set_ref(t.handle());
  copy.set_node("n2");
  copy.set_name("copied");
  v1::CopyResponse copied;
  // Asked of n1, which holds nothing: forwarded to n0, which sends to n2.
  grpc::Status s = stubs_[1]->Copy(Ctx(kTokenA).get(), copy, &copied);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(absl::EndsWith(copied.tensor().handle(), ".n2"));
  EXPECT_EQ(copied.tensor().name(), "copied");
  std::string bytes;
  ASSERT_TRUE(Fetch(2, copied.tensor().handle(), &bytes).ok());
  EXPECT_EQ(bytes, Bytes(300000));

  v1::StatsResponse stats;
  ASSERT_TRUE(
      stubs_[2]->Stats(Ctx(kTokenA).get(), v1::StatsRequest(), &stats).ok());
  EXPECT_EQ(stats.tenant().tenant(), "a");
  EXPECT_EQ(stats.tenant().bytes(), 1200000);
  EXPECT_TRUE(absl::StrContains(
      Scrape(0), "tensorcast_cluster_copy_bytes_total{peer=\"n2\"} 1200000"));

  // Another tenant cannot copy it (NOT_FOUND, as locally).
  s = stubs_[1]->Copy(Ctx(kTokenB).get(), copy, &copied);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ClusterTest, ACopyTheTargetRefusesFailsWithItsReasonAndStoresNothing) {
  // 1.2 MB on n0 and 1.2 MB on n2: a copy to n2 would put 2.4 MB there,
  // over tenant d's 2 MB quota on that node.
  v1::TensorInfo t = Put(0, 300000, kTokenD);
  Put(2, 300000, kTokenD);
  v1::CopyRequest copy;
  copy.set_ref(t.handle());
  copy.set_node("n2");
  v1::CopyResponse copied;
  grpc::Status s = stubs_[0]->Copy(Ctx(kTokenD).get(), copy, &copied);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "quota"))
      << s.error_message();
  v1::StatsResponse stats;
  ASSERT_TRUE(
      stubs_[2]->Stats(Ctx(kTokenD).get(), v1::StatsRequest(), &stats).ok());
  EXPECT_EQ(stats.tenant().bytes(), 1200000);
  EXPECT_EQ(stats.tenant().tensors(), 1);
}

TEST_F(ClusterTest, ARelayedFetchChargesItsMessagesToTheCallerOnTheProxy) {
  auto tenant_bytes = [&](int node, const char* token) {
    v1::StatsResponse stats;
    EXPECT_TRUE(
        stubs_[node]->Stats(Ctx(token).get(), v1::StatsRequest(), &stats).ok());
    return stats.tenant().bytes();
  };
  // 32 MiB on n1, far more than the transports' windows take in unread,
  // so the relay stays open while the caller reads nothing.
  const v1::TensorInfo on1 = Put(1, 8 << 20, kTokenA);
  const int64_t before = tenant_bytes(0, kTokenA);
  // Held open through n0 after its first message: n0 holds up to two
  // messages of 256 KiB (and their framing) for tenant a.
  auto held_ctx = Ctx(kTokenA);
  v1::FetchRequest req;
  req.set_ref(on1.handle());
  req.set_format(v1::FORMAT_RAW);
  req.set_chunk_bytes(256 << 10);
  auto held = stubs_[0]->Fetch(held_ctx.get(), req);
  v1::FetchResponse msg;
  ASSERT_TRUE(held->Read(&msg));
  EXPECT_EQ(tenant_bytes(0, kTokenA), before + 2 * ((256 << 10) + (64 << 10)));
  held_ctx->TryCancel();
  held->Finish();
  // The charge goes with the relay.
  int64_t left = tenant_bytes(0, kTokenA);
  for (int i = 0; i < 100 && left != before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    left = tenant_bytes(0, kTokenA);
  }
  EXPECT_EQ(left, before);

  // 64 MiB messages would pass tenant d's 2 MB quota on n0: refused there,
  // before n1 is asked, naming what the bytes are for; nothing stays
  // charged.
  const v1::TensorInfo small = Put(1, 1000, kTokenD);
  req.set_ref(small.handle());
  req.set_chunk_bytes(64 << 20);
  auto big_ctx = Ctx(kTokenD);
  auto big = stubs_[0]->Fetch(big_ctx.get(), req);
  EXPECT_FALSE(big->Read(&msg));
  grpc::Status refused = big->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(absl::StrContains(refused.error_message(), "relayed"))
      << refused.error_message();
  EXPECT_EQ(tenant_bytes(0, kTokenD), 0);
  // With 64 KiB messages it fits, and is relayed.
  req.set_chunk_bytes(64 << 10);
  auto fits_ctx = Ctx(kTokenD);
  auto fits = stubs_[0]->Fetch(fits_ctx.get(), req);
  std::string bytes;
  while (fits->Read(&msg)) bytes += msg.data();
  grpc::Status relayed = fits->Finish();
  EXPECT_TRUE(relayed.ok()) << relayed.error_message();
  EXPECT_EQ(bytes, Bytes(1000));
}

TEST_F(ClusterTest, AForwardedFetchTakesOneOfTheCallersStreamsOnTheProxy) {
  // Tenant c may hold one stream at a time on each node.
  const v1::TensorInfo on1 = Put(1, 8 << 20, kTokenC);
  const v1::TensorInfo on2 = Put(2, 8 << 20, kTokenC);
  // A Fetch forwarded through n0 to n1, held open after its first message.
  auto held_ctx = Ctx(kTokenC);
  v1::FetchRequest req;
  req.set_ref(on1.handle());
  req.set_format(v1::FORMAT_RAW);
  req.set_chunk_bytes(4096);
  auto held = stubs_[0]->Fetch(held_ctx.get(), req);
  v1::FetchResponse msg;
  ASSERT_TRUE(held->Read(&msg));
  // A second through n0, to n2, where c holds no stream: n0 refuses it.
  std::string out;
  grpc::Status second = Fetch(0, on2.handle(), &out, kTokenC);
  EXPECT_EQ(second.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << second.error_message();
  // Straight to n2 it is served.
  grpc::Status direct = Fetch(2, on2.handle(), &out, kTokenC);
  EXPECT_TRUE(direct.ok()) << direct.error_message();
  EXPECT_EQ(out.size(), size_t{32} << 20);
  held_ctx->TryCancel();
  held->Finish();
  // The slot came back with the relay: through n0 again, served.
  grpc::Status again = Fetch(0, on2.handle(), &out, kTokenC);
  for (int i = 0;
       i < 100 && again.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    again = Fetch(0, on2.handle(), &out, kTokenC);
  }
  EXPECT_TRUE(again.ok()) << again.error_message();
}

TEST_F(ClusterTest, TenantsHoldAcrossNodes) {
  v1::TensorInfo t = Put(0, 10, kTokenA);
  v1::InfoResponse r;
  grpc::Status local = Info(0, t.handle(), &r, kTokenB);
  grpc::Status forwarded = Info(1, t.handle(), &r, kTokenB);
  EXPECT_EQ(local.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(forwarded.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(forwarded.error_message(), local.error_message());
  std::string bytes;
  EXPECT_EQ(Fetch(1, t.handle(), &bytes, kTokenB).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(bytes.empty());
  // No token: refused by the node asked.
  EXPECT_EQ(Info(1, t.handle(), &r, nullptr).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(ClusterTest, AKilledNodesHandlesFailFastAndTheOthersServe) {
  v1::TensorInfo on0 = Put(0, 100, kTokenA);
  v1::TensorInfo on2 = Put(2, 100, kTokenA);
  kill(cluster_->servers[2]->pid(), SIGKILL);
  int status;
  waitpid(cluster_->servers[2]->pid(), &status, 0);
  cluster_->servers[2]->Forget();

  // Right away (before any probe noticed) and after the probes did.
  for (int round = 0; round < 2; ++round) {
    v1::InfoResponse r;
    auto start = Clock::now();
    grpc::Status s = Info(1, on2.handle(), &r);
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_TRUE(absl::StrContains(s.error_message(), "'n2'"))
        << s.error_message();
    std::string bytes;
    start = Clock::now();
    s = Fetch(0, on2.handle(), &bytes);
    EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_TRUE(absl::StrContains(s.error_message(), "'n2'"));
    // The others keep serving, through each other too.
    ASSERT_TRUE(Fetch(1, on0.handle(), &bytes).ok());
    EXPECT_EQ(bytes, Bytes(100));
    std::this_thread::sleep_for(std::chrono::milliseconds(800));
  }
  v1::ClusterResponse c;
  ASSERT_TRUE(Cluster(0, &c, kTokenA).ok());
  for (const auto& m : c.members()) {
    if (m.node_id() == "n2") {
      EXPECT_FALSE(m.healthy());
      EXPECT_FALSE(m.error().empty());
    }
  }
}

// --listen=HOST:0: the node advertises the port it bound, not 0.
TEST(ClusterAdvertiseTest, AListenPortOfZeroAdvertisesTheBoundPort) {
  // The harness listens on 127.0.0.1:0; the one other member is down.
  ServerProcess server(
      {"--node-id=solo",
       absl::StrCat("--cluster=127.0.0.1:", FreeLoopbackPort()),
       "--cluster-probe-ms=200"});
  auto stub = v1::TensorService::NewStub(grpc::CreateChannel(
      server.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::ClusterResponse r;
  ASSERT_TRUE(stub->Cluster(&ctx, v1::ClusterRequest(), &r).ok());
  ASSERT_FALSE(absl::EndsWith(server.address(), ":0"));
  int selves = 0;
  for (const auto& m : r.members()) {
    if (!m.self()) continue;
    ++selves;
    EXPECT_EQ(m.address(), server.address());
  }
  EXPECT_EQ(selves, 1);
  EXPECT_TRUE(absl::StrContains(
      server.Log(), absl::StrCat("advertised as ", server.address())))
      << server.Log();
}

// A member of the cluster played by this test: it answers probes (node id
// "slow") and holds every Info until the caller's deadline, then says
// NOT_FOUND, so each name lookup that asks it lasts the full lookup
// timeout. It records the most Info calls it held at once per token.
class SlowMember final : public v1::TensorService::Service {
 public:
  grpc::Status Cluster(grpc::ServerContext*, const v1::ClusterRequest*,
                       v1::ClusterResponse* response) override {
    response->set_node_id("slow");
    v1::ClusterMember* self = response->add_members();
    self->set_node_id("slow");
    self->set_self(true);
    self->set_healthy(true);
    return grpc::Status::OK;
  }
  grpc::Status Info(grpc::ServerContext* ctx, const v1::InfoRequest*,
                    v1::InfoResponse*) override {
    auto auth = ctx->client_metadata().find("authorization");
    const std::string token =
        auth == ctx->client_metadata().end()
            ? ""
            : std::string(auth->second.data(), auth->second.size());
    const auto start = std::chrono::system_clock::now();
    const auto until =
        std::min(ctx->deadline(), start + std::chrono::seconds(5));
    {
      // The call is the node's until its deadline (the node answers its
      // caller then and may start another); a little less, for the
      // deadline's rounding on the wire.
      std::lock_guard<std::mutex> lock(mu_);
      held_[token].emplace_back(start, until - std::chrono::milliseconds(50));
    }
    while (std::chrono::system_clock::now() < until && !ctx->IsCancelled()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "not here");
  }
  // The most calls with `token` held at once.
  int MaxHeld(const std::string& token) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::pair<std::chrono::system_clock::time_point, int>> edges;
    for (const auto& [from, to] : held_[token]) {
      edges.emplace_back(from, 1);
      edges.emplace_back(to, -1);
    }
    std::sort(edges.begin(), edges.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : a.second < b.second;
    });
    int now = 0, most = 0;
    for (const auto& e : edges) most = std::max(most, now += e.second);
    return most;
  }
  int Calls(const std::string& token) {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(held_[token].size());
  }

 private:
  std::mutex mu_;
  std::map<std::string,
           std::vector<std::pair<std::chrono::system_clock::time_point,
                                 std::chrono::system_clock::time_point>>>
      held_;
};

TEST(ClusterNameLookupTest,
     ATenantHammeringMissingNamesIsCappedAndOthersServe) {
  SlowMember slow;
  grpc::ServerBuilder builder;
  int slow_port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &slow_port);
  builder.RegisterService(&slow);
  std::unique_ptr<grpc::Server> slow_server = builder.BuildAndStart();
  ASSERT_NE(slow_server, nullptr);
  ASSERT_NE(slow_port, 0);

  TempDir dir;
  WriteFile(dir.File("tokens"), absl::StrCat(kTokenA, " a\n", kTokenB, " b\n"));
  ServerProcess node(
      {"--node-id=n0", absl::StrCat("--cluster=127.0.0.1:", slow_port),
       "--cluster-probe-ms=200", "--auth-tokens=" + dir.File("tokens")});
  auto stub = v1::TensorService::NewStub(
      grpc::CreateChannel(node.address(), grpc::InsecureChannelCredentials()));
  auto ctx_for = [](const char* token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(30));
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    return ctx;
  };
  // Wait for the slow member to be healthy (names are looked up there).
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  bool healthy = false;
  while (!healthy && Clock::now() < deadline) {
    v1::ClusterResponse r;
    if (stub->Cluster(ctx_for(kTokenA).get(), v1::ClusterRequest(), &r).ok()) {
      for (const auto& m : r.members())
        healthy |= m.node_id() == "slow" && m.healthy();
    }
    if (!healthy) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(healthy) << node.Log();

  // Tenant b holds a tensor here.
  {
    auto ctx = ctx_for(kTokenB);
    v1::PutResponse response;
    auto writer = stub->Put(ctx.get(), &response);
    v1::PutRequest header;
    header.mutable_header()->set_dtype(v1::DTYPE_FLOAT32);
    header.mutable_header()->add_shape(1);
    header.mutable_header()->set_format(v1::FORMAT_RAW);
    header.mutable_header()->set_name("b-here");
    ASSERT_TRUE(writer->Write(header));
    v1::PutRequest data;
    data.set_data(std::string(4, '\0'));
    ASSERT_TRUE(writer->Write(data));
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
  }

  // Tenant a asks for many missing names at once.
  constexpr int kCalls = 64;
  struct Call {
    std::unique_ptr<grpc::ClientContext> ctx;
    v1::InfoRequest request;
    v1::InfoResponse response;
    grpc::Status status;
  };
  std::vector<Call> calls(kCalls);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  for (int i = 0; i < kCalls; ++i) {
    Call& c = calls[i];
    c.ctx = ctx_for(kTokenA);
    c.request.set_ref(absl::StrCat("missing-", i));
    stub->async()->Info(c.ctx.get(), &c.request, &c.response,
                        [&c, &mu, &cv, &done](grpc::Status s) {
                          std::lock_guard<std::mutex> lock(mu);
                          c.status = std::move(s);
                          ++done;
                          cv.notify_all();
                        });
  }
  // Meanwhile tenant b is served: its own tensor at once, and its own
  // lookup of a missing name is admitted (NOT_FOUND, not refused).
  v1::InfoRequest here;
  here.set_ref("b-here");
  v1::InfoResponse info;
  grpc::Status s = stub->Info(ctx_for(kTokenB).get(), here, &info);
  EXPECT_TRUE(s.ok()) << s.error_message();
  v1::InfoRequest missing;
  missing.set_ref("b-missing");
  s = stub->Info(ctx_for(kTokenB).get(), missing, &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  {
    v1::FetchRequest fetch;
    fetch.set_ref("b-missing-too");
    auto ctx = ctx_for(kTokenB);
    auto reader = stub->Fetch(ctx.get(), fetch);
    v1::FetchResponse msg;
    while (reader->Read(&msg)) {
    }
    s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60),
                            [&] { return done == kCalls; }));
  }
  int refused = 0, not_found = 0;
  for (const Call& c : calls) {
    if (c.status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED) {
      ++refused;
      EXPECT_TRUE(absl::StrContains(c.status.error_message(), "name lookups"))
          << c.status.error_message();
    } else {
      EXPECT_EQ(c.status.error_code(), grpc::StatusCode::NOT_FOUND)
          << c.status.error_message();
      ++not_found;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(not_found, 0);
  // Never more of a's lookups at the member at once than the cap (8), and
  // one member call per admitted lookup; b's two lookups were asked too.
  const std::string a = absl::StrCat("Bearer ", kTokenA);
  EXPECT_LE(slow.MaxHeld(a), 8);
  EXPECT_GE(slow.MaxHeld(a), 1);
  EXPECT_EQ(slow.Calls(a), not_found);
  EXPECT_EQ(slow.Calls(absl::StrCat("Bearer ", kTokenB)), 2);
  slow_server->Shutdown();
}

// Lookups whose callers cancel them midway give their slots back: the
// tenant's cap is full (Info and Fetch lookups held at the member), every
// caller cancels, the node's lookup gauge returns to 0 and the tenant's
// next lookups are all admitted (none RESOURCE_EXHAUSTED).
TEST(ClusterNameLookupTest, CancelledLookupsGiveTheirSlotsBack) {
  SlowMember slow;
  grpc::ServerBuilder builder;
  int slow_port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &slow_port);
  builder.RegisterService(&slow);
  std::unique_ptr<grpc::Server> slow_server = builder.BuildAndStart();
  ASSERT_NE(slow_server, nullptr);

  TempDir dir;
  WriteFile(dir.File("tokens"), absl::StrCat(kTokenA, " a\n"));
  const int metrics_port = FreeLoopbackPort();
  ServerProcess node(
      {"--node-id=n0", absl::StrCat("--cluster=127.0.0.1:", slow_port),
       "--cluster-probe-ms=200", "--auth-tokens=" + dir.File("tokens"),
       absl::StrCat("--metrics-listen=127.0.0.1:", metrics_port)});
  auto stub = v1::TensorService::NewStub(
      grpc::CreateChannel(node.address(), grpc::InsecureChannelCredentials()));
  auto ctx_for = [] {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(30));
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", kTokenA));
    return ctx;
  };
  auto lookups_running = [&] {
    httplib::Client http("127.0.0.1", metrics_port);
    httplib::Result res = http.Get("/metrics");
    return res ? SumMetric(res->body, "tensorcast_cluster_name_lookups") : -1;
  };
  const auto deadline = Clock::now() + std::chrono::seconds(15);
  bool healthy = false;
  while (!healthy && Clock::now() < deadline) {
    v1::ClusterResponse r;
    if (stub->Cluster(ctx_for().get(), v1::ClusterRequest(), &r).ok()) {
      for (const auto& m : r.members())
        healthy |= m.node_id() == "slow" && m.healthy();
    }
    if (!healthy) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(healthy) << node.Log();

  // The cap (8): six Info lookups and two Fetch lookups, then all cancelled.
  constexpr int kInfos = 6;
  constexpr int kFetches = 2;
  struct Call {
    std::unique_ptr<grpc::ClientContext> ctx;
    v1::InfoRequest request;
    v1::InfoResponse response;
  };
  std::vector<Call> infos(kInfos);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  for (int i = 0; i < kInfos; ++i) {
    Call& c = infos[i];
    c.ctx = ctx_for();
    c.request.set_ref(absl::StrCat("gone-", i));
    stub->async()->Info(c.ctx.get(), &c.request, &c.response,
                        [&mu, &cv, &done](grpc::Status) {
                          std::lock_guard<std::mutex> lock(mu);
                          ++done;
                          cv.notify_all();
                        });
  }
  std::vector<std::unique_ptr<grpc::ClientContext>> fetch_ctx;
  std::vector<std::thread> fetches;
  for (int i = 0; i < kFetches; ++i) {
    fetch_ctx.push_back(ctx_for());
    fetches.emplace_back([&, ctx = fetch_ctx.back().get(), i] {
      v1::FetchRequest fetch;
      fetch.set_ref(absl::StrCat("gone-fetch-", i));
      auto reader = stub->Fetch(ctx, fetch);
      v1::FetchResponse msg;
      while (reader->Read(&msg)) {
      }
      reader->Finish();
      std::lock_guard<std::mutex> lock(mu);
      ++done;
      cv.notify_all();
    });
  }
  // Cancelled while the member holds them (or after, if this machine is
  // slow: the slots must come back either way).
  const auto held_by = Clock::now() + std::chrono::seconds(10);
  while (slow.Calls(absl::StrCat("Bearer ", kTokenA)) < kInfos + kFetches &&
         Clock::now() < held_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (Call& c : infos) c.ctx->TryCancel();
  for (auto& ctx : fetch_ctx) ctx->TryCancel();
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60),
                            [&] { return done == kInfos + kFetches; }));
  }
  for (std::thread& t : fetches) t.join();
  const auto settled_by = Clock::now() + std::chrono::seconds(30);
  double running = lookups_running();
  while (running != 0 && Clock::now() < settled_by) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    running = lookups_running();
  }
  EXPECT_EQ(running, 0) << node.Log();

  // The tenant's slots are all free again: eight more lookups at once are
  // each admitted and end NOT_FOUND.
  std::vector<Call> again(8);
  std::vector<grpc::Status> statuses(again.size());
  done = 0;
  for (size_t i = 0; i < again.size(); ++i) {
    Call& c = again[i];
    c.ctx = ctx_for();
    c.request.set_ref(absl::StrCat("gone-again-", i));
    stub->async()->Info(c.ctx.get(), &c.request, &c.response,
                        [&, i](grpc::Status s) {
                          std::lock_guard<std::mutex> lock(mu);
                          statuses[i] = std::move(s);
                          ++done;
                          cv.notify_all();
                        });
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] {
      return done == static_cast<int>(again.size());
    }));
  }
  for (const grpc::Status& s : statuses) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  }
  slow_server->Shutdown();
}

}  // namespace
}  // namespace tensorcast::testing
