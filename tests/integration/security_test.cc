// Security against the real server: TLS (and mutual TLS) with certificates
// made by the openssl command for each test, bearer tokens (--auth-tokens)
// on unary and streaming calls, tenants that cannot see each other's
// tensors, admin-only EmptyCache and server-wide Stats, tenant quotas and
// tensor and stream limits, token reload on SIGHUP, the refusal to listen
// beyond loopback without tokens, deadlines on a slow Fetch, and shared
// memory regions that belong to one tenant, stream buffers charged to the
// quota (12 unread casting Fetches), and a SIGHUP that ends the streams of
// the tokens it removes. The CLI and tensorcast-load with --token and
// --tls-ca too.
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/cpp/shared_memory.h"
#include "tensorcast/v1/tensor_service.grpc.pb.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::steady_clock;

// Tokens are at least 16 characters.
const std::string kAlice = "alice-token-0123456789abcdef";
const std::string kBob = "bob-token-0123456789abcdef";
const std::string kAdmin = "admin-token-0123456789abcdef";

std::string BinDir() {
  const char* env = std::getenv("TENSORCAST_BIN_DIR");
  return env != nullptr && *env != '\0' ? env : TENSORCAST_BIN_DIR;
}

ClientOptions WithToken(const std::string& token) {
  ClientOptions o;
  o.token = token;
  return o;
}

double SecondsSince(steady_clock::time_point start) {
  return std::chrono::duration<double>(steady_clock::now() - start).count();
}

v1::CreateRequest Zeros(int64_t elements, const std::string& name = "") {
  v1::CreateRequest r;
  r.set_dtype(v1::DTYPE_FLOAT32);
  r.add_shape(elements);
  r.mutable_zeros();
  r.set_name(name);
  return r;
}

absl::Status NoBytes(absl::string_view) { return absl::OkStatus(); }

absl::Status FetchStatus(Client& c, const std::string& ref) {
  FetchOptions f;
  f.format = v1::FORMAT_RAW;
  return c.Fetch(ref, f, NoBytes).status();
}

absl::Status PutStatus(Client& c, int64_t bytes = 1024) {
  PutOptions p;
  p.dtype = v1::DTYPE_UINT8;
  p.shape = {bytes};
  return c.PutBuffer(p, std::string(static_cast<size_t>(bytes), '\x07'))
      .status();
}

// The tenant's figures from its own Stats.
v1::TenantStats Own(Client& c) {
  absl::StatusOr<v1::StatsResponse> s = c.Stats();
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? s->tenant() : v1::TenantStats();
}

// --- TLS -------------------------------------------------------------------

class TlsTest : public ::testing::Test {
 protected:
  ClientOptions Trusting(const std::string& ca_path) const {
    ClientOptions o;
    o.tls_root_certs = certs_.Pem(ca_path);
    return o;
  }
  std::vector<std::string> TlsFlags() const {
    return {"--tls-cert=" + certs_.server_cert,
            "--tls-key=" + certs_.server_key};
  }

  TempDir dir_;
  TestCertificates certs_ = MakeTestCertificates(dir_.path());
};

TEST_F(TlsTest, RoundTripOverTls) {
  ServerProcess server(TlsFlags(), Trusting(certs_.ca));
  Client& c = server.client();
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  PutOptions p;
  p.dtype = v1::DTYPE_UINT8;
  p.shape = {static_cast<int64_t>(data.size())};
  absl::StatusOr<v1::TensorInfo> t = c.PutBuffer(p, data);
  ASSERT_TRUE(t.ok()) << t.status();
  FetchOptions f;
  f.format = v1::FORMAT_RAW;
  absl::StatusOr<std::string> back = c.FetchBytes(t->handle(), f);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(*back == data);
  EXPECT_TRUE(c.Health().ok());
  EXPECT_TRUE(absl::StrContains(server.Log(), "TLS; no authentication"))
      << server.Log();
}

TEST_F(TlsTest, PlaintextClientFailsQuicklyWithUnavailable) {
  ServerProcess server(TlsFlags(), Trusting(certs_.ca));
  std::unique_ptr<Client> plain = server.Connect({});
  auto start = steady_clock::now();
  absl::StatusOr<v1::StatsResponse> s = plain->Stats();
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
  EXPECT_EQ(FetchStatus(*plain, "x").code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(PutStatus(*plain).code(), absl::StatusCode::kUnavailable);
  EXPECT_LT(SecondsSince(start), 10.0);
  // The server is unharmed.
  EXPECT_TRUE(server.client().Stats().ok());
}

TEST_F(TlsTest, ClientTrustingAnotherCaFails) {
  ServerProcess server(TlsFlags(), Trusting(certs_.ca));
  std::unique_ptr<Client> wrong = server.Connect(Trusting(certs_.other_ca));
  auto start = steady_clock::now();
  absl::StatusOr<v1::StatsResponse> s = wrong->Stats();
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
  EXPECT_LT(SecondsSince(start), 10.0);
  EXPECT_TRUE(server.client().Stats().ok());
}

TEST_F(TlsTest, MutualTlsNeedsAClientCertificateFromItsCa) {
  std::vector<std::string> flags = TlsFlags();
  flags.push_back("--tls-client-ca=" + certs_.ca);
  ClientOptions with_cert = Trusting(certs_.ca);
  with_cert.tls_cert_chain = certs_.Pem(certs_.client_cert);
  with_cert.tls_private_key = certs_.Pem(certs_.client_key);
  ServerProcess server(flags, with_cert);
  EXPECT_TRUE(server.client().Stats().ok());
  EXPECT_TRUE(PutStatus(server.client()).ok());
  EXPECT_TRUE(absl::StrContains(server.Log(), "mutual TLS")) << server.Log();

  std::unique_ptr<Client> no_cert = server.Connect(Trusting(certs_.ca));
  EXPECT_EQ(no_cert->Stats().status().code(), absl::StatusCode::kUnavailable);
  ClientOptions stranger = Trusting(certs_.ca);
  stranger.tls_cert_chain = certs_.Pem(certs_.other_client_cert);
  stranger.tls_private_key = certs_.Pem(certs_.other_client_key);
  EXPECT_EQ(server.Connect(stranger)->Stats().status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(server.client().Stats().ok());
}

// --- tokens and tenants ----------------------------------------------------

class TokenTest : public ::testing::Test {
 protected:
  // A server with --auth-tokens=FILE holding `lines`, its client() alice.
  void Start(const std::string& lines, std::vector<std::string> flags = {},
             const std::string& client_token = kAlice) {
    WriteFile(tokens_, lines);
    flags.push_back("--auth-tokens=" + tokens_);
    server_ = std::make_unique<ServerProcess>(flags, WithToken(client_token));
  }
  std::unique_ptr<Client> As(const std::string& token) {
    return server_->Connect(WithToken(token));
  }

  TempDir dir_;
  std::string tokens_ = dir_.File("tokens");
  std::unique_ptr<ServerProcess> server_;
};

const std::string kTwoTenants = "# two tenants and an admin\n" + kAlice +
                                " alice\n" + kBob + " bob\n" + kAdmin +
                                " ops admin\n";

TEST_F(TokenTest, NoTokenOrAWrongOneIsUnauthenticated) {
  Start(kTwoTenants);
  absl::StatusOr<v1::TensorInfo> t = server_->client().Create(Zeros(256));
  ASSERT_TRUE(t.ok()) << t.status();
  for (const std::string& token :
       {std::string(), std::string("not-a-token-0123456789"), kAlice + "x"}) {
    std::unique_ptr<Client> c = As(token);
    SCOPED_TRACE("token '" + token + "'");
    absl::StatusOr<v1::TensorInfo> info = c->Info(t->handle());
    EXPECT_EQ(info.status().code(), absl::StatusCode::kUnauthenticated)
        << info.status();
    EXPECT_EQ(c->Create(Zeros(4)).status().code(),
              absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c->List().status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(c->Stats().status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(FetchStatus(*c, t->handle()).code(),
              absl::StatusCode::kUnauthenticated);
    EXPECT_EQ(PutStatus(*c).code(), absl::StatusCode::kUnauthenticated);
    absl::StatusOr<std::unique_ptr<SharedMemory>> shm =
        SharedMemory::Open(*c, 1 << 20);
    EXPECT_FALSE(shm.ok());
  }
  // Health needs no token: load balancers probe it.
  EXPECT_TRUE(As("")->Health().ok());
  // Nothing the refused calls did was kept.
  EXPECT_EQ(Own(server_->client()).tensors(), 1);
}

TEST_F(TokenTest, TenantsSeeOnlyTheirOwnTensors) {
  Start(kTwoTenants);
  Client& alice = server_->client();
  std::unique_ptr<Client> bob = As(kBob);
  absl::StatusOr<v1::TensorInfo> a = alice.Create(Zeros(1000, "weights"));
  ASSERT_TRUE(a.ok()) << a.status();
  // Names are per tenant: bob may use the same one.
  absl::StatusOr<v1::TensorInfo> b = bob->Create(Zeros(10, "weights"));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(a->handle(), b->handle());

  EXPECT_EQ(bob->Info(a->handle()).status().code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<v1::TensorInfo> by_name = bob->Info("weights");
  ASSERT_TRUE(by_name.ok());
  EXPECT_EQ(by_name->handle(), b->handle());
  EXPECT_EQ(FetchStatus(*bob, a->handle()).code(), absl::StatusCode::kNotFound);
  v1::ToRequest to;
  to.set_ref(a->handle());
  to.set_dtype(v1::DTYPE_FLOAT16);
  EXPECT_EQ(bob->To(to).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(bob->Detach(a->handle()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(bob->Delete({a->handle()}).status().code(),
            absl::StatusCode::kNotFound);

  absl::StatusOr<std::vector<v1::TensorInfo>> mine = alice.List();
  ASSERT_TRUE(mine.ok());
  ASSERT_EQ(mine->size(), 1u);
  EXPECT_EQ((*mine)[0].handle(), a->handle());
  absl::StatusOr<std::vector<v1::TensorInfo>> his = bob->List();
  ASSERT_TRUE(his.ok());
  ASSERT_EQ(his->size(), 1u);
  EXPECT_EQ((*his)[0].handle(), b->handle());

  // Alice's tensor survived bob's attempts.
  EXPECT_TRUE(alice.Info("weights").ok());
  EXPECT_EQ(FetchStatus(alice, "weights").code(), absl::StatusCode::kOk);
  absl::StatusOr<int> deleted = alice.Delete({"weights"});
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, 1);
  EXPECT_TRUE(bob->Info("weights").ok());
}

TEST_F(TokenTest, EmptyCacheAndServerWideStatsAreForAdmins) {
  Start(kTwoTenants);
  Client& alice = server_->client();
  std::unique_ptr<Client> bob = As(kBob);
  std::unique_ptr<Client> admin = As(kAdmin);
  ASSERT_TRUE(alice.Create(Zeros(1 << 10)).ok());
  ASSERT_TRUE(bob->Create(Zeros(1 << 12)).ok());
  ASSERT_TRUE(bob->Create(Zeros(1 << 12)).ok());

  absl::StatusOr<int64_t> refused = bob->EmptyCache();
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied)
      << refused.status();
  EXPECT_TRUE(admin->EmptyCache().ok());

  absl::StatusOr<v1::StatsResponse> own = bob->Stats();
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_EQ(own->tenant().tenant(), "bob");
  EXPECT_EQ(own->tenant().tensors(), 2);
  EXPECT_EQ(own->tenant().bytes(), 2 * (4 << 12));
  EXPECT_EQ(own->tensors(), 2);
  EXPECT_EQ(own->devices_size(), 0);
  EXPECT_EQ(own->tenants_size(), 0);

  absl::StatusOr<v1::StatsResponse> all = admin->Stats();
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->tenant().tenant(), "ops");
  EXPECT_GE(all->devices_size(), 1);
  EXPECT_EQ(all->tensors(), 3);
  std::map<std::string, int64_t> tensors;
  for (const v1::TenantStats& t : all->tenants())
    tensors[t.tenant()] = t.tensors();
  EXPECT_EQ(tensors["alice"], 1);
  EXPECT_EQ(tensors["bob"], 2);
}

TEST_F(TokenTest, QuotaRefusesCreateAndPutAndChargesNothing) {
  Start(kAlice + " alice quota=1MiB\n" + kBob + " bob\n");
  Client& alice = server_->client();
  // 2 MiB at once: refused, naming the quota.
  absl::StatusOr<v1::TensorInfo> big = alice.Create(Zeros(512 << 10));
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted)
      << big.status();
  EXPECT_TRUE(absl::StrContains(big.status().message(), "quota"))
      << big.status();
  absl::Status put = PutStatus(alice, 2 << 20);
  EXPECT_EQ(put.code(), absl::StatusCode::kResourceExhausted) << put;
  EXPECT_TRUE(absl::StrContains(put.message(), "quota")) << put;
  v1::TenantStats s = Own(alice);
  EXPECT_EQ(s.bytes(), 0);
  EXPECT_EQ(s.tensors(), 0);
  EXPECT_EQ(s.quota_bytes(), 1 << 20);

  // 512 KiB fits; 600 KiB more does not, by either call.
  absl::StatusOr<v1::TensorInfo> half = alice.Create(Zeros(128 << 10));
  ASSERT_TRUE(half.ok()) << half.status();
  EXPECT_EQ(alice.Create(Zeros(150 << 10)).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(PutStatus(alice, 600 << 10).code(),
            absl::StatusCode::kResourceExhausted);
  s = Own(alice);
  EXPECT_EQ(s.bytes(), 512 << 10);
  EXPECT_EQ(s.tensors(), 1);
  // Bob has no quota.
  EXPECT_TRUE(As(kBob)->Create(Zeros(512 << 10)).ok());
  // Freed bytes come back.
  ASSERT_TRUE(alice.Delete({half->handle()}).ok());
  EXPECT_TRUE(PutStatus(alice, 900 << 10).ok());
}

TEST_F(TokenTest, TensorLimit) {
  Start(kAlice + " alice tensors=2\n");
  Client& alice = server_->client();
  absl::StatusOr<v1::TensorInfo> one = alice.Create(Zeros(4));
  ASSERT_TRUE(one.ok());
  ASSERT_TRUE(PutStatus(alice).ok());
  absl::StatusOr<v1::TensorInfo> third = alice.Create(Zeros(4));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(absl::StrContains(third.status().message(), "tensor"))
      << third.status();
  EXPECT_EQ(PutStatus(alice).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Own(alice).tensors(), 2);
  ASSERT_TRUE(alice.Delete({one->handle()}).ok());
  EXPECT_TRUE(alice.Create(Zeros(4)).ok());
}

// A Fetch whose consumer blocks until released: it holds its stream.
class SlowFetch {
 public:
  SlowFetch(Client& client, const std::string& ref) {
    thread_ = std::thread([this, &client, ref] {
      FetchOptions f;
      f.format = v1::FORMAT_RAW;
      status_ = client
                    .Fetch(ref, f,
                           [this](absl::string_view) -> absl::Status {
                             started_ = true;
                             while (!release_) {
                               std::this_thread::sleep_for(milliseconds(10));
                             }
                             return absl::CancelledError("released");
                           })
                    .status();
    });
  }
  ~SlowFetch() { Finish().IgnoreError(); }
  bool WaitStarted() {
    for (int i = 0; i < 1000 && !started_; ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    return started_;
  }
  absl::Status Finish() {
    release_ = true;
    if (thread_.joinable()) thread_.join();
    return status_;
  }

 private:
  std::atomic<bool> started_{false}, release_{false};
  absl::Status status_;
  std::thread thread_;
};

// The tenant's active streams once they are `n`, or after 10 s.
int64_t StreamsWhenSettled(Client& c, int64_t n) {
  int64_t now = Own(c).active_streams();
  for (int i = 0; i < 200 && now != n; ++i) {
    std::this_thread::sleep_for(milliseconds(50));
    now = Own(c).active_streams();
  }
  return now;
}

// The tenant's charged bytes once they are `n`, or after 10 s: a cancelled
// Fetch's last chunk stays charged until gRPC lets go of it, a moment after
// the stream has ended.
int64_t BytesWhenSettled(Client& c, int64_t n) {
  int64_t now = Own(c).bytes();
  for (int i = 0; i < 200 && now != n; ++i) {
    std::this_thread::sleep_for(milliseconds(50));
    now = Own(c).bytes();
  }
  return now;
}

TEST_F(TokenTest, StreamLimit) {
  Start(kAlice + " alice streams=1\n");
  Client& alice = server_->client();
  // 128 MiB: more than the socket and HTTP/2 buffers hold.
  absl::StatusOr<v1::TensorInfo> t = alice.Create(Zeros(32 << 20));
  ASSERT_TRUE(t.ok()) << t.status();
  {
    SlowFetch first(alice, t->handle());
    ASSERT_TRUE(first.WaitStarted());
    absl::Status second = FetchStatus(alice, t->handle());
    EXPECT_EQ(second.code(), absl::StatusCode::kResourceExhausted) << second;
    EXPECT_TRUE(absl::StrContains(second.message(), "stream")) << second;
    EXPECT_EQ(PutStatus(alice).code(), absl::StatusCode::kResourceExhausted);
    // Unary calls are not streams.
    EXPECT_TRUE(alice.Info(t->handle()).ok());
    EXPECT_EQ(first.Finish().code(), absl::StatusCode::kCancelled);
  }
  EXPECT_EQ(StreamsWhenSettled(alice, 0), 0);
  absl::StatusOr<v1::TensorInfo> small = alice.Create(Zeros(16));
  ASSERT_TRUE(small.ok());
  EXPECT_TRUE(FetchStatus(alice, small->handle()).ok());
}

TEST_F(TokenTest, SighupReloadsTokensAndKeepsTensors) {
  Start(kTwoTenants);
  Client& alice = server_->client();
  absl::StatusOr<v1::TensorInfo> kept = alice.Create(Zeros(64, "kept"));
  ASSERT_TRUE(kept.ok());
  const std::string kAliceNew = "alice-rotated-0123456789abcdef";
  WriteFile(tokens_, kAliceNew + " alice\n" + kBob + " bob\n");
  ASSERT_EQ(kill(server_->pid(), SIGHUP), 0);
  // The old token stops once the file is re-read.
  absl::Status old;
  for (int i = 0; i < 200; ++i) {
    old = alice.Info("kept").status();
    if (old.code() == absl::StatusCode::kUnauthenticated) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(old.code(), absl::StatusCode::kUnauthenticated) << old;
  std::unique_ptr<Client> rotated = As(kAliceNew);
  absl::StatusOr<v1::TensorInfo> info = rotated->Info("kept");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->handle(), kept->handle());
  EXPECT_TRUE(As(kBob)->Stats().ok());
  // The admin token was removed with it.
  EXPECT_EQ(As(kAdmin)->Stats().status().code(),
            absl::StatusCode::kUnauthenticated);
  // A file that does not parse leaves the tokens in force.
  WriteFile(tokens_, "short alice\n");
  ASSERT_EQ(kill(server_->pid(), SIGHUP), 0);
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_TRUE(rotated->Info("kept").ok());
  EXPECT_TRUE(absl::StrContains(server_->Log(), "received SIGHUP"))
      << server_->Log();
}

TEST_F(TokenTest, SharedMemoryRegionsBelongToTheirTenant) {
  Start(kTwoTenants, {"--shared-memory"});
  // Two clients on one channel: one connection, two tokens.
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      server_->address(), grpc::InsecureChannelCredentials(),
      DefaultChannelArguments());
  Client alice(channel, WithToken(kAlice));
  Client bob(channel, WithToken(kBob));
  absl::StatusOr<std::unique_ptr<SharedMemory>> region =
      SharedMemory::Open(alice, 1 << 20);
  ASSERT_TRUE(region.ok()) << region.status();
  absl::StatusOr<v1::TensorInfo> a = alice.Create(Zeros(1024));
  absl::StatusOr<v1::TensorInfo> b = bob.Create(Zeros(1024));
  ASSERT_TRUE(a.ok() && b.ok());
  FetchOptions f;
  f.format = v1::FORMAT_RAW;
  f.shm_region = (*region)->region();
  f.shm_offset = (*region)->offset();
  EXPECT_TRUE(alice.Fetch(a->handle(), f, NoBytes).ok());
  absl::Status theirs = bob.Fetch(b->handle(), f, NoBytes).status();
  EXPECT_EQ(theirs.code(), absl::StatusCode::kNotFound) << theirs;
  PutOptions p;
  p.dtype = v1::DTYPE_UINT8;
  p.shape = {1024};
  p.shm_region = (*region)->region();
  p.shm_offset = (*region)->offset();
  p.shm_bytes = 1024;
  EXPECT_EQ(bob.Put(p, nullptr).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(alice.Put(p, nullptr).ok());
  // The session counts as one of alice's streams while it is open.
  EXPECT_EQ(Own(alice).active_streams(), 1);
  region->reset();
  EXPECT_EQ(StreamsWhenSettled(alice, 0), 0);
}

// --- what a tenant makes the server hold; revocation ------------------------

// A kB figure ("VmRSS", "VmHWM") from /proc/PID/status, in bytes; -1 if
// absent.
int64_t ProcStatusBytes(pid_t pid, const std::string& field) {
  std::string status =
      ReadFile(absl::StrCat("/proc/", pid, "/status")).value_or("");
  size_t at = status.find(field + ":");
  if (at == std::string::npos) return -1;
  return std::strtoll(status.c_str() + at + field.size() + 1, nullptr, 10) *
         1024;
}

std::unique_ptr<v1::TensorService::Stub> RawStub(const std::string& address) {
  return v1::TensorService::NewStub(grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), DefaultChannelArguments()));
}

void Authorize(grpc::ClientContext* ctx, const std::string& token) {
  ctx->AddMetadata("authorization", "Bearer " + token);
}

// The adversarial review's probe: a tenant with an 80 MiB quota opens 12
// Fetches that cast 8 MiB of uint8 to 64 MiB of float64 in 64 MiB chunks,
// and reads none of them. Each one's chunk buffer is charged to the quota
// before it is made, so one fits and the other 11 are RESOURCE_EXHAUSTED
// at once; the server's memory grows by that one buffer, not by 12 (it grew
// by 768 MiB before, while Stats showed 64 MiB).
TEST_F(TokenTest, UnreadCastingFetchesAreChargedToTheQuota) {
  Start(kAlice + " alice quota=80MiB\n" + kBob + " bob\n");
  Client& alice = server_->client();
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_UINT8);
  create.add_shape(8 << 20);
  create.mutable_ones();
  absl::StatusOr<v1::TensorInfo> t = alice.Create(create);
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(Own(alice).bytes(), 8 << 20);
  const int64_t rss_before = ProcStatusBytes(server_->pid(), "VmRSS");
  ASSERT_GT(rss_before, 0);

  constexpr int kCalls = 12;
  struct Call {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientAsyncReader<v1::FetchResponse>> reader;
    grpc::Status status;
    bool finished = false;
  };
  std::unique_ptr<v1::TensorService::Stub> stub = RawStub(server_->address());
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<Call>> calls;
  // Tags: 2i+1 the start of call i, 2i+2 its end.
  auto tag = [](int i, bool end) {
    return reinterpret_cast<void*>(static_cast<intptr_t>(2 * i + 1 + end));
  };
  for (int i = 0; i < kCalls; ++i) {
    calls.push_back(std::make_unique<Call>());
    Call& c = *calls.back();
    Authorize(&c.ctx, kAlice);
    v1::FetchRequest request;
    request.set_ref(t->handle());
    request.set_format(v1::FORMAT_RAW);
    request.set_dtype(v1::DTYPE_FLOAT64);
    request.set_chunk_bytes(64 << 20);
    c.reader = stub->PrepareAsyncFetch(&c.ctx, request, &cq);
    c.reader->StartCall(tag(i, false));
    c.reader->Finish(&c.status, tag(i, true));
  }
  int events = 0, finished = 0;
  // gRPC takes system_clock deadlines.
  auto next_event = [&](std::chrono::system_clock::time_point deadline) {
    void* got = nullptr;
    bool ok = false;
    if (cq.AsyncNext(&got, &ok, deadline) != grpc::CompletionQueue::GOT_EVENT) {
      return false;
    }
    ++events;
    const intptr_t n = reinterpret_cast<intptr_t>(got) - 1;
    if (n % 2 == 1) {
      calls[n / 2]->finished = true;
      ++finished;
    }
    return true;
  };
  // Every call either ends (refused) or is running on the server.
  const auto deadline = steady_clock::now() + std::chrono::seconds(20);
  while (steady_clock::now() < deadline) {
    while (next_event(std::chrono::system_clock::now() + milliseconds(50))) {
    }
    if (finished + Own(alice).active_streams() == kCalls) break;
  }
  // Then long enough for the running ones to have made their chunks.
  std::this_thread::sleep_for(milliseconds(500));
  while (next_event(std::chrono::system_clock::now() + milliseconds(50))) {
  }
  const int64_t rss_after = ProcStatusBytes(server_->pid(), "VmRSS");
  const int64_t hwm_after = ProcStatusBytes(server_->pid(), "VmHWM");
  const v1::TenantStats held = Own(alice);

  int refused = 0;
  for (const auto& c : calls) {
    if (!c->finished) continue;
    EXPECT_EQ(c->status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << c->status.error_message();
    EXPECT_TRUE(absl::StrContains(c->status.error_message(), "quota"))
        << c->status.error_message();
    ++refused;
  }
  EXPECT_EQ(refused, kCalls - 1);
  EXPECT_EQ(held.active_streams(), kCalls - refused);
  // Stats shows what the tenant makes the server hold: the tensor and the
  // one running stream's buffer.
  EXPECT_EQ(held.bytes(), (8 << 20) + (int64_t{64} << 20));
  EXPECT_LT(rss_after - rss_before, int64_t{300} << 20)
      << "RSS grew from " << rss_before << " to " << rss_after;
  EXPECT_LT(hwm_after - rss_before, int64_t{300} << 20)
      << "peak RSS " << hwm_after << " against " << rss_before;

  // Cancelled, the running ones give everything back.
  for (const auto& c : calls) {
    if (!c->finished) c->ctx.TryCancel();
  }
  while (events < 2 * kCalls && next_event(std::chrono::system_clock::now() +
                                           std::chrono::seconds(10))) {
  }
  EXPECT_EQ(events, 2 * kCalls);
  EXPECT_EQ(StreamsWhenSettled(alice, 0), 0);
  int64_t bytes = Own(alice).bytes();
  for (int i = 0; i < 100 && bytes != (8 << 20); ++i) {
    std::this_thread::sleep_for(milliseconds(50));
    bytes = Own(alice).bytes();
  }
  EXPECT_EQ(bytes, 8 << 20);
  cq.Shutdown();
  void* ignored;
  bool ignored_ok;
  while (cq.Next(&ignored, &ignored_ok)) {
  }
}

// Revocation means it: when SIGHUP removes a token, the Put, Fetch and
// shared-memory session running with it end, and the Put stores nothing;
// what the token stored before stays the tenant's.
TEST_F(TokenTest, SighupEndsTheStreamsOfARemovedToken) {
  const std::string kAlice2 = "alice-second-0123456789abcdef";
  Start(kAlice + " alice\n" + kAlice2 + " alice\n" + kBob + " bob\n",
        {"--shared-memory"});
  Client& alice = server_->client();
  std::unique_ptr<Client> alice2 = As(kAlice2);
  // 128 MiB: more than the socket and HTTP/2 buffers hold.
  absl::StatusOr<v1::TensorInfo> big = alice.Create(Zeros(32 << 20, "big"));
  ASSERT_TRUE(big.ok()) << big.status();
  std::unique_ptr<v1::TensorService::Stub> stub = RawStub(server_->address());

  // A Put with half its bytes sent.
  constexpr int64_t kPutBytes = 4 << 20;
  grpc::ClientContext put_ctx;
  Authorize(&put_ctx, kAlice);
  v1::PutResponse put_response;
  std::unique_ptr<grpc::ClientWriter<v1::PutRequest>> put =
      stub->Put(&put_ctx, &put_response);
  v1::PutRequest header;
  header.mutable_header()->set_dtype(v1::DTYPE_UINT8);
  header.mutable_header()->add_shape(kPutBytes);
  header.mutable_header()->set_name("half");
  header.mutable_header()->set_total_bytes(kPutBytes);
  ASSERT_TRUE(put->Write(header));
  v1::PutRequest data;  // two messages of 1 MiB: the most one may carry
  data.set_data(std::string(kPutBytes / 4, '\x07'));
  ASSERT_TRUE(put->Write(data));
  ASSERT_TRUE(put->Write(data));

  // A Fetch with one message read.
  grpc::ClientContext fetch_ctx;
  Authorize(&fetch_ctx, kAlice);
  v1::FetchRequest fetch_request;
  fetch_request.set_ref(big->handle());
  fetch_request.set_format(v1::FORMAT_RAW);
  fetch_request.set_chunk_bytes(1 << 20);
  std::unique_ptr<grpc::ClientReader<v1::FetchResponse>> fetch =
      stub->Fetch(&fetch_ctx, fetch_request);
  v1::FetchResponse message;
  ASSERT_TRUE(fetch->Read(&message));
  int64_t fetched = static_cast<int64_t>(message.data().size());

  // A shared-memory session.
  absl::StatusOr<std::unique_ptr<SharedMemory>> region =
      SharedMemory::Open(alice, 1 << 20);
  ASSERT_TRUE(region.ok()) << region.status();
  ASSERT_EQ(StreamsWhenSettled(*alice2, 3), 3);

  WriteFile(tokens_, kAlice2 + " alice\n" + kBob + " bob\n");
  ASSERT_EQ(kill(server_->pid(), SIGHUP), 0);
  absl::Status old;
  for (int i = 0; i < 200; ++i) {
    old = alice.Info("big").status();
    if (old.code() == absl::StatusCode::kUnauthenticated) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  ASSERT_EQ(old.code(), absl::StatusCode::kUnauthenticated) << old;

  // The Put's client goes on as if nothing happened: it is not stored.
  put->Write(data);
  put->WritesDone();
  grpc::Status put_status = put->Finish();
  EXPECT_FALSE(put_status.ok());
  EXPECT_TRUE(put_status.error_code() == grpc::StatusCode::CANCELLED ||
              put_status.error_code() == grpc::StatusCode::UNAUTHENTICATED)
      << put_status.error_code() << " " << put_status.error_message();
  // The Fetch ends before its last byte.
  while (fetch->Read(&message)) {
    fetched += static_cast<int64_t>(message.data().size());
  }
  grpc::Status fetch_status = fetch->Finish();
  EXPECT_FALSE(fetch_status.ok());
  EXPECT_LT(fetched, int64_t{128} << 20);
  // The session ended too: no stream of alice's is left.
  EXPECT_EQ(StreamsWhenSettled(*alice2, 0), 0);

  absl::StatusOr<std::vector<v1::TensorInfo>> listed = alice2->List();
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].name(), "big");
  EXPECT_EQ(alice2->Info("half").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(BytesWhenSettled(*alice2, int64_t{128} << 20), int64_t{128} << 20);
  EXPECT_TRUE(absl::StrContains(server_->Log(), "revoked")) << server_->Log();
}

// --- listening, deadlines --------------------------------------------------

TEST(ListenTest, RemoteAddressNeedsTokensOrExplicitConsent) {
  TempDir dir;
  pid_t pid = SpawnProcess(
      {BinDir() + "/tensorcast-server", "--listen=0.0.0.0:0", "--devices=cpu"},
      dir.File("out"), dir.File("err"));
  ASSERT_GT(pid, 0);
  int status = 0;
  bool exited = false;
  for (int i = 0; i < 300 && !exited; ++i) {  // 30 s under sanitizers
    exited = waitpid(pid, &status, WNOHANG) == pid;
    if (!exited) std::this_thread::sleep_for(milliseconds(100));
  }
  if (!exited) {
    kill(pid, SIGKILL);
    WaitForExit(pid);
  }
  ASSERT_TRUE(exited) << "the server kept running on 0.0.0.0 without tokens";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  std::string err = ReadFile(dir.File("err")).value_or("");
  EXPECT_TRUE(absl::StrContains(err, "--auth-tokens")) << err;
  EXPECT_TRUE(absl::StrContains(err, "--allow-insecure-remote")) << err;

  ServerProcess insecure({"--listen=0.0.0.0:0", "--allow-insecure-remote"});
  EXPECT_TRUE(insecure.client().Stats().ok());
  EXPECT_TRUE(absl::StrContains(insecure.Log(), "no authentication"));

  WriteFile(dir.File("tokens"), kAlice + " alice\n");
  ServerProcess with_tokens(
      {"--listen=0.0.0.0:0", "--auth-tokens=" + dir.File("tokens")},
      WithToken(kAlice));
  EXPECT_TRUE(with_tokens.client().Stats().ok());
}

TEST(DeadlineTest, SlowFetchEndsAtItsDeadlineAndFreesItsStream) {
  ServerProcess server;
  absl::StatusOr<v1::TensorInfo> t = server.client().Create(Zeros(32 << 20));
  ASSERT_TRUE(t.ok()) << t.status();
  ClientOptions o;
  o.timeout = milliseconds(300);
  std::unique_ptr<Client> c = server.Connect(o);
  FetchOptions f;
  f.format = v1::FORMAT_RAW;
  // Small messages: with 1 MiB ones, Debian's gRPC 1.51 client sometimes
  // noticed its own deadline only ~6 s late while a stalled message was
  // half received (the server had ended the call at 300 ms).
  f.chunk_bytes = 64 << 10;
  auto start = steady_clock::now();
  int64_t bytes = 0;
  absl::Status s = c->Fetch(t->handle(), f, [&](absl::string_view chunk) {
                      bytes += static_cast<int64_t>(chunk.size());
                      std::this_thread::sleep_for(milliseconds(50));
                      return absl::OkStatus();
                    }).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  // The deadline, plus the one chunk being consumed, plus slack.
  EXPECT_LT(SecondsSince(start), 5.0) << bytes << " bytes consumed";
  int64_t streams = -1;
  for (int i = 0; i < 200 && streams != 0; ++i) {
    absl::StatusOr<v1::StatsResponse> stats = server.client().Stats();
    ASSERT_TRUE(stats.ok());
    streams = stats->active_streams();
    if (streams != 0) std::this_thread::sleep_for(milliseconds(50));
  }
  EXPECT_EQ(streams, 0);
}

// --- the tools -------------------------------------------------------------

class ToolsTest : public TlsTest {
 protected:
  void SetUp() override {
    WriteFile(dir_.File("tokens"), kTwoTenants);
    std::vector<std::string> flags = TlsFlags();
    flags.push_back("--auth-tokens=" + dir_.File("tokens"));
    flags.push_back("--shared-memory");
    ClientOptions o = Trusting(certs_.ca);
    o.token = kAlice;
    server_ = std::make_unique<ServerProcess>(flags, o);
  }
  // `env [VAR=VALUE] tensorcast --server=... args...`.
  CommandResult Cli(const std::vector<std::string>& args,
                    const std::string& env_token = "") {
    std::vector<std::string> argv = {"/usr/bin/env"};
    if (!env_token.empty()) argv.push_back("TENSORCAST_TOKEN=" + env_token);
    argv.push_back(BinDir() + "/tensorcast");
    argv.push_back("--server=" + server_->address());
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  }

  std::unique_ptr<ServerProcess> server_;
};

TEST_F(ToolsTest, CliTokenAndTls) {
  const std::string ca = "--tls-ca=" + certs_.ca;
  // --token, and TENSORCAST_TOKEN when there is no flag.
  CommandResult made = Cli(
      {"create", "--shape=4", "--ones", "--name=c", ca, "--token=" + kAlice});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  CommandResult info = Cli({"info", "c", ca}, kAlice);
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_TRUE(absl::StrContains(info.out, "float32")) << info.out;
  // The flag wins over the environment.
  CommandResult flag_wins = Cli({"info", "c", ca, "--token=" + kBob}, kAlice);
  EXPECT_EQ(flag_wins.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(flag_wins.err, "NOT_FOUND: ")) << flag_wins.err;

  CommandResult wrong = Cli({"ls", ca, "--token=wrong-token-0123456789"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(wrong.err, "UNAUTHENTICATED: ")) << wrong.err;
  CommandResult none = Cli({"ls", ca});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(none.err, "UNAUTHENTICATED: ")) << none.err;

  // Without --tls-ca: plaintext against a TLS server.
  CommandResult plain = Cli({"ls", "--timeout=10"}, kAlice);
  EXPECT_EQ(plain.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(plain.err, "UNAVAILABLE: ")) << plain.err;
  // A CA that did not sign the server's certificate.
  CommandResult other = Cli({"ls", "--tls-ca=" + certs_.other_ca}, kAlice);
  EXPECT_EQ(other.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(other.err, "UNAVAILABLE: ")) << other.err;
  // A file that is not there, or not PEM: a usage error.
  CommandResult missing = Cli({"ls", "--tls-ca=" + dir_.File("nope.pem")});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_TRUE(absl::StrContains(missing.err, "--tls-ca")) << missing.err;
  CommandResult half = Cli({"ls", ca, "--tls-cert=" + certs_.client_cert});
  EXPECT_EQ(half.exit_code, 2);

  // stats shows the caller's tenant; an admin's shows every tenant.
  CommandResult stats = Cli({"stats", ca}, kAlice);
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_TRUE(absl::StrContains(stats.out, "TENANT")) << stats.out;
  EXPECT_TRUE(absl::StrContains(stats.out, "alice (you)")) << stats.out;
  CommandResult json = Cli({"stats", "--json", ca}, kAlice);
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_TRUE(absl::StrContains(json.out, "\"tenant\": \"alice\"")) << json.out;
  ASSERT_EQ(Cli({"create", "--shape=2", "--zeros", ca}, kBob).exit_code, 0);
  CommandResult admin = Cli({"stats", ca}, kAdmin);
  ASSERT_EQ(admin.exit_code, 0) << admin.err;
  EXPECT_TRUE(absl::StrContains(admin.out, "ops (you)")) << admin.out;
  EXPECT_TRUE(absl::StrContains(admin.out, "\nbob ")) << admin.out;
  EXPECT_TRUE(absl::StrContains(admin.out, "\nalice ")) << admin.out;
  CommandResult denied = Cli({"empty-cache", ca}, kAlice);
  EXPECT_EQ(denied.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(denied.err, "PERMISSION_DENIED: "))
      << denied.err;
  EXPECT_EQ(Cli({"empty-cache", ca}, kAdmin).exit_code, 0);
}

TEST_F(ToolsTest, CliClientCertificate) {
  std::vector<std::string> flags = TlsFlags();
  flags.push_back("--tls-client-ca=" + certs_.ca);
  ServerProcess mtls(flags, [&] {
    ClientOptions o = Trusting(certs_.ca);
    o.tls_cert_chain = certs_.Pem(certs_.client_cert);
    o.tls_private_key = certs_.Pem(certs_.client_key);
    return o;
  }());
  auto cli = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {BinDir() + "/tensorcast",
                                     "--server=" + mtls.address(),
                                     "--tls-ca=" + certs_.ca};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  };
  CommandResult without = cli({"ls"});
  EXPECT_EQ(without.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(without.err, "UNAVAILABLE: ")) << without.err;
  CommandResult with = cli({"ls", "--tls-cert=" + certs_.client_cert,
                            "--tls-key=" + certs_.client_key});
  EXPECT_EQ(with.exit_code, 0) << with.err;
}

TEST_F(ToolsTest, LoadToolTokenTlsAndSharedMemory) {
  for (bool shm : {false, true}) {
    SCOPED_TRACE(shm ? "shared memory" : "socket");
    std::vector<std::string> argv = {"/usr/bin/env",
                                     "TENSORCAST_TOKEN=" + kBob,
                                     BinDir() + "/tensorcast-load",
                                     "--server=" + server_->address(),
                                     "--tls-ca=" + certs_.ca,
                                     "--scenario=mixed",
                                     "--mix=fetch:2,put:1,to:1,info:1",
                                     "--size=2MiB",
                                     "--concurrency=2",
                                     "--connections=2",
                                     "--requests=40",
                                     "--warmup=0",
                                     "--json=" + dir_.File("load.json")};
    if (shm) argv.push_back("--shared-memory");
    CommandResult r = RunCommand(argv);
    ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
    EXPECT_TRUE(absl::StrContains(r.out, "errors       none")) << r.out;
    // The token never lands in the result.
    std::string json = ReadFile(dir_.File("load.json")).value_or("");
    EXPECT_FALSE(json.empty());
    EXPECT_FALSE(absl::StrContains(json, kBob));
  }
  // Everything it made was bob's, and it deleted it all.
  std::unique_ptr<Client> bob = server_->Connect([&] {
    ClientOptions o = Trusting(certs_.ca);
    o.token = kBob;
    return o;
  }());
  EXPECT_EQ(Own(*bob).tensors(), 0);
  CommandResult wrong = RunCommand(
      {BinDir() + "/tensorcast-load", "--server=" + server_->address(),
       "--tls-ca=" + certs_.ca, "--token=wrong-token-0123456789",
       "--scenario=info", "--requests=5", "--warmup=0"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(wrong.err, "UNAUTHENTICATED")) << wrong.err;
}

}  // namespace
}  // namespace tensorcast::testing
