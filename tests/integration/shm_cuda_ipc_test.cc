// CUDA IPC regions (OpenSharedMemory with cuda_ipc_handle and
// cuda_pci_bus_id) against the real server, on any machine: the caller is
// authenticated first, then --shared-memory is checked, then malformed
// requests are INVALID_ARGUMENT and oversized ones RESOURCE_EXHAUSTED --
// all before anything is opened --, and a handle the server cannot open
// (no CUDA, no GPU, no such GPU, a handle that is not one: this test's
// handles are random bytes, so this holds on a GPU machine too) is the very
// NOT_FOUND a host region's refusal is. tests/gpu runs real handles.
#include <grpcpp/client_context.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

constexpr int64_t kSize = 8192;

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  std::FILE* f = std::fopen("/dev/urandom", "rb");
  EXPECT_NE(f, nullptr);
  if (f != nullptr) {
    EXPECT_EQ(std::fread(out.data(), 1, out.size(), f), out.size());
    std::fclose(f);
  }
  return out;
}

v1::OpenSharedMemoryRequest CudaRequest() {
  v1::OpenSharedMemoryRequest request;
  request.set_cuda_ipc_handle(RandomBytes(64));
  request.set_cuda_pci_bus_id("0000:3b:00.0");
  request.set_size(kSize);
  request.set_token(RandomBytes(32));
  return request;
}

// The open's status: OK once the server's event arrives (then the session
// is closed again).
grpc::Status Open(Client& client, const v1::OpenSharedMemoryRequest& request,
                  v1::SharedMemoryEvent* event = nullptr) {
  grpc::ClientContext ctx;
  client.Prepare(&ctx, /*with_deadline=*/false);
  auto session = client.stub()->OpenSharedMemory(&ctx, request);
  v1::SharedMemoryEvent got;
  if (session->Read(&got)) {
    if (event != nullptr) *event = got;
    ctx.TryCancel();
    (void)session->Finish();
    return grpc::Status::OK;
  }
  return session->Finish();
}

// What a host region that does not exist gets.
grpc::Status HostRefusal(Client& client) {
  v1::OpenSharedMemoryRequest request;
  request.set_name("tensorcast-cuda-ipc-test-does-not-exist");
  request.set_size(kSize);
  request.set_token(RandomBytes(32));
  return Open(client, request);
}

TEST(CudaIpcOpenTest, AnUnopenableHandleIsTheHostRegionsNotFound) {
  ServerProcess server({"--shared-memory"});
  const grpc::Status host = HostRefusal(server.client());
  ASSERT_EQ(host.error_code(), grpc::StatusCode::NOT_FOUND);
  const grpc::Status cuda = Open(server.client(), CudaRequest());
  EXPECT_EQ(cuda.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(cuda.error_message(), host.error_message());
  // Another bus id form, and a short domain-less one: the same.
  v1::OpenSharedMemoryRequest request = CudaRequest();
  request.set_cuda_pci_bus_id("3b:00.0");
  EXPECT_EQ(Open(server.client(), request).error_message(),
            host.error_message());
  // The server is still well.
  EXPECT_TRUE(server.client().Stats().ok());
}

TEST(CudaIpcOpenTest, MalformedRequestsAreInvalidArguments) {
  ServerProcess server({"--shared-memory", "--shared-memory-max-size=1MiB"});
  Client& client = server.client();
  struct Case {
    const char* what;
    void (*change)(v1::OpenSharedMemoryRequest*);
    grpc::StatusCode code;
  };
  const std::vector<Case> cases = {
      {"a 63-byte handle",
       [](v1::OpenSharedMemoryRequest* r) {
         r->set_cuda_ipc_handle(std::string(63, 'h'));
       },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"a 65-byte handle",
       [](v1::OpenSharedMemoryRequest* r) {
         r->set_cuda_ipc_handle(std::string(65, 'h'));
       },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"a bus id but no handle",
       [](v1::OpenSharedMemoryRequest* r) { r->clear_cuda_ipc_handle(); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"a handle but no bus id",
       [](v1::OpenSharedMemoryRequest* r) { r->clear_cuda_pci_bus_id(); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"a path for a bus id",
       [](v1::OpenSharedMemoryRequest* r) {
         r->set_cuda_pci_bus_id("/dev/nvidia0");
       },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"a bus id with a newline",
       [](v1::OpenSharedMemoryRequest* r) {
         r->set_cuda_pci_bus_id("0000:3b:00.0\n");
       },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"a name too",
       [](v1::OpenSharedMemoryRequest* r) { r->set_name("tensorcast-x"); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"a memfd too",
       [](v1::OpenSharedMemoryRequest* r) {
         r->set_memfd_pid(1);
         r->set_memfd_fd(3);
       },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"no data after the header",
       [](v1::OpenSharedMemoryRequest* r) { r->set_size(4096); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"a short token",
       [](v1::OpenSharedMemoryRequest* r) { r->set_token("short"); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"a token of one byte repeated",
       [](v1::OpenSharedMemoryRequest* r) {
         r->set_token(std::string(32, 't'));
       },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"over --shared-memory-max-size",
       [](v1::OpenSharedMemoryRequest* r) { r->set_size((1 << 20) + 1); },
       grpc::StatusCode::RESOURCE_EXHAUSTED},
  };
  for (const Case& c : cases) {
    v1::OpenSharedMemoryRequest request = CudaRequest();
    c.change(&request);
    const grpc::Status status = Open(client, request);
    EXPECT_EQ(status.error_code(), c.code)
        << c.what << ": " << status.error_message();
  }
}

const std::string kAliceToken = "alice-token-0123456789abcdef";
const std::string kBobToken = "bob-token-0123456789abcdef";

ClientOptions As(const std::string& token) {
  ClientOptions options;
  options.token = token;
  options.timeout = std::chrono::seconds(10);
  return options;
}

class CudaIpcTenantTest : public ::testing::Test {
 protected:
  void Start(std::vector<std::string> flags, const std::string& bob = "") {
    WriteFile(dir_.File("tokens"),
              kAliceToken + " alice\n" + kBobToken + " bob " + bob + "\n");
    flags.push_back("--auth-tokens=" + dir_.File("tokens"));
    server_ = std::make_unique<ServerProcess>(flags, As(kAliceToken));
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(CudaIpcTenantTest, AuthenticationComesFirstThenSharedMemoryIsOn) {
  Start({});  // shared memory off
  std::unique_ptr<Client> stranger = server_->Connect({});
  // Even a malformed request: who asks comes first.
  v1::OpenSharedMemoryRequest bad = CudaRequest();
  bad.set_cuda_ipc_handle("short");
  EXPECT_EQ(Open(*stranger, bad).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Open(*stranger, CudaRequest()).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Open(server_->client(), bad).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(Open(server_->client(), CudaRequest()).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(CudaIpcTenantTest, TheQuotaIsCheckedBeforeTheHandleIsOpened) {
  Start({"--shared-memory"}, "quota=1MiB");
  std::unique_ptr<Client> bob = server_->Connect(As(kBobToken));
  v1::OpenSharedMemoryRequest request = CudaRequest();
  request.set_size(4096 + (2 << 20));
  const grpc::Status over = Open(*bob, request);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << over.error_message();
  // Within it: refused as unopenable, and nothing stays charged.
  request.set_size(kSize);
  EXPECT_EQ(Open(*bob, request).error_code(), grpc::StatusCode::NOT_FOUND);
  absl::StatusOr<v1::StatsResponse> stats = bob->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->tenant().bytes(), 0);
}

}  // namespace
}  // namespace tensorcast::testing
