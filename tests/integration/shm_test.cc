// Same-host shared memory (OpenSharedMemory, --shared-memory): Fetch and
// Put through a region the client lends give the bytes the socket path
// gives, and the safety rules hold -- off without the flag; only a file
// named tensorcast-* under /dev/shm that starts with the client's token;
// a region id works only on the connection that opened it; every range is
// checked before anything is written; a client that shrinks its file gets
// an error, not a crashed server; a closed session's region is gone.
#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "absl/strings/match.h"
#include "client/cpp/shared_memory.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

absl::Status NoBytes(absl::string_view) { return absl::OkStatus(); }

class ShmTest : public ::testing::Test {
 protected:
  Client& client() { return server_.client(); }

  // A float32 arange tensor of n elements.
  std::string Arange(int64_t n) {
    v1::CreateRequest create;
    create.set_dtype(v1::DTYPE_FLOAT32);
    create.add_shape(n);
    create.mutable_arange()->set_step(1);
    absl::StatusOr<v1::TensorInfo> t = client().Create(create);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? t->handle() : "";
  }

  absl::StatusOr<v1::FetchHeader> FetchToShm(const std::string& ref,
                                             FetchOptions options,
                                             const std::string& region,
                                             int64_t offset) {
    options.shm_region = region;
    options.shm_offset = offset;
    return client().Fetch(ref, options, NoBytes);
  }

  void CheckFetchAndPut(SharedMemory::Kind kind);
  void CheckRegionRules(SharedMemory::Kind kind);

  ServerProcess server_{{"--shared-memory"}};
};

// Both kinds of region: a sealed memfd (mapped by the server) and a
// /dev/shm file (pread/pwrite).
const SharedMemory::Kind kKinds[] = {SharedMemory::Kind::kMemfd,
                                     SharedMemory::Kind::kFile};

std::string KindName(SharedMemory::Kind kind) {
  return kind == SharedMemory::Kind::kMemfd ? "memfd" : "file";
}

TEST_F(ShmTest, FetchAndPutThroughSharedMemoryMatchTheSocket) {
  for (SharedMemory::Kind kind : kKinds) {
    SCOPED_TRACE(KindName(kind));
    CheckFetchAndPut(kind);
  }
}

TEST_F(ShmTest, AutoPrefersAMappedMemfd) {
  absl::StatusOr<std::unique_ptr<SharedMemory>> shm =
      SharedMemory::Open(client(), 1 << 20);
  ASSERT_TRUE(shm.ok()) << shm.status();
  EXPECT_TRUE((*shm)->mapped());
  EXPECT_TRUE((*shm)->name().empty());
}

void ShmTest::CheckFetchAndPut(SharedMemory::Kind kind) {
  absl::StatusOr<std::unique_ptr<SharedMemory>> shm =
      SharedMemory::Open(client(), 8 << 20, kind);
  ASSERT_TRUE(shm.ok()) << shm.status();
  EXPECT_EQ((*shm)->mapped(), kind == SharedMemory::Kind::kMemfd);
  const std::string ref = Arange((3 << 20) / 4);  // 3 MiB: several chunks
  for (v1::Format format : {v1::FORMAT_RAW, v1::FORMAT_NPY}) {
    for (v1::DType dtype : {v1::DTYPE_UNSPECIFIED, v1::DTYPE_FLOAT16}) {
      FetchOptions f;
      f.format = format;
      f.dtype = dtype;
      f.offset = 3;  // a range that cuts an element
      absl::StatusOr<std::string> wire = client().FetchBytes(ref, f);
      ASSERT_TRUE(wire.ok()) << wire.status();
      std::memset((*shm)->data() + 4096, 0, wire->size());
      absl::StatusOr<v1::FetchHeader> h =
          FetchToShm(ref, f, (*shm)->region(), 4096);
      ASSERT_TRUE(h.ok()) << h.status();
      EXPECT_EQ(h->length(), static_cast<int64_t>(wire->size()));
      EXPECT_EQ(std::memcmp((*shm)->data() + 4096, wire->data(), wire->size()),
                0);
    }
  }
  // Put from the region: the bytes become a tensor.
  const int64_t n = 1 << 20;
  for (int64_t i = 0; i < n; ++i) {
    (*shm)->data()[4096 + i] = static_cast<char>(i * 7);
  }
  PutOptions p;
  p.dtype = v1::DTYPE_UINT8;
  p.shape = {n};
  p.shm_region = (*shm)->region();
  p.shm_offset = 4096;
  p.shm_bytes = n;
  absl::StatusOr<v1::TensorInfo> put = client().Put(p, nullptr, n);
  ASSERT_TRUE(put.ok()) << put.status();
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  absl::StatusOr<std::string> back = client().FetchBytes(put->handle(), raw);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, std::string((*shm)->data() + 4096, n));
}

TEST_F(ShmTest, RegionsAreCheckedAndBelongToTheirConnection) {
  for (SharedMemory::Kind kind : kKinds) {
    SCOPED_TRACE(KindName(kind));
    CheckRegionRules(kind);
  }
}

void ShmTest::CheckRegionRules(SharedMemory::Kind kind) {
  absl::StatusOr<std::unique_ptr<SharedMemory>> shm =
      SharedMemory::Open(client(), 1 << 20, kind);
  ASSERT_TRUE(shm.ok()) << shm.status();
  const std::string ref = Arange(1024);  // 4 KiB RAW
  std::memset((*shm)->data() + 64, 0xab, (1 << 20) - 64);
  auto untouched = [&] {
    for (int64_t i = 64; i < (1 << 20); ++i) {
      if (static_cast<unsigned char>((*shm)->data()[i]) != 0xab) return false;
    }
    return true;
  };
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  // A forged id; a range past the end or negative: nothing written.
  EXPECT_EQ(FetchToShm(ref, raw, "0123456789abcdef0123456789abcdef", 0)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(
      FetchToShm(ref, raw, (*shm)->region(), (1 << 20) - 4095).status().code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FetchToShm(ref, raw, (*shm)->region(), -1).status().code(),
            absl::StatusCode::kInvalidArgument);
  PutOptions p;
  p.dtype = v1::DTYPE_UINT8;
  p.shape = {100};
  p.shm_region = (*shm)->region();
  p.shm_offset = (1 << 20) - 50;
  p.shm_bytes = 100;
  EXPECT_EQ(client().Put(p, nullptr, 100).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(untouched());

  // Another connection cannot use it. (Channels of one process may share a
  // connection; a local subchannel pool gives this one its own, as another
  // process would have.)
  grpc::ChannelArguments args = DefaultChannelArguments();
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto other = std::make_unique<Client>(grpc::CreateCustomChannel(
      server_.address(), grpc::InsecureChannelCredentials(), args));
  FetchOptions f = raw;
  f.shm_region = (*shm)->region();
  f.shm_offset = 64;
  EXPECT_EQ(other->Fetch(ref, f, NoBytes).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(untouched());

  if (kind == SharedMemory::Kind::kFile) {
    // A client that shrinks its file under the server: a Put from it comes
    // up short (DATA_LOSS, nothing stored); the server, which never maps
    // the file, lives on.
    int fd = shm_open(("/" + (*shm)->name()).c_str(), O_RDWR, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, 100), 0);
    close(fd);
    p.shm_offset = 64;
    EXPECT_EQ(client().Put(p, nullptr, 100).status().code(),
              absl::StatusCode::kDataLoss);
  } else {
    // A memfd the server maps cannot be shrunk at all: the seal refuses.
    int fd = -1;
    for (int candidate = 3; candidate < 1024 && fd < 0; ++candidate) {
      char link[64] = {0};
      std::string path = "/proc/self/fd/" + std::to_string(candidate);
      if (readlink(path.c_str(), link, sizeof(link) - 1) > 0 &&
          absl::StartsWith(link, "/memfd:tensorcast")) {
        fd = candidate;
      }
    }
    ASSERT_GE(fd, 0) << "the client's memfd";
    EXPECT_NE(ftruncate(fd, 100), 0);
    EXPECT_EQ(errno, EPERM);
  }
  EXPECT_TRUE(client().Health().ok());

  // Closing the session forgets the region.
  const std::string id = (*shm)->region();
  shm->reset();
  absl::Status gone;
  for (int i = 0; i < 100; ++i) {
    gone = FetchToShm(ref, raw, id, 0).status();
    if (gone.code() == absl::StatusCode::kNotFound) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(gone.code(), absl::StatusCode::kNotFound) << gone;
}

// Opens a session by hand with the request as given.
grpc::Status RawOpen(Client& client,
                     const v1::OpenSharedMemoryRequest& request) {
  grpc::ClientContext ctx;
  auto session = client.stub()->OpenSharedMemory(&ctx, request);
  v1::SharedMemoryEvent event;
  if (session->Read(&event)) {
    ctx.TryCancel();
    (void)session->Finish();
    return grpc::Status::OK;
  }
  return session->Finish();
}

grpc::Status RawOpen(Client& client, const std::string& name, int64_t size,
                     const std::string& token) {
  v1::OpenSharedMemoryRequest request;
  request.set_name(name);
  request.set_size(size);
  request.set_token(token);
  return RawOpen(client, request);
}

grpc::Status RawOpenMemfd(Client& client, int pid, int fd, int64_t size,
                          const std::string& token) {
  v1::OpenSharedMemoryRequest request;
  request.set_memfd_pid(pid);
  request.set_memfd_fd(fd);
  request.set_size(size);
  request.set_token(token);
  return RawOpen(client, request);
}

TEST_F(ShmTest, OpenRefusesForeignOrMalformedRegions) {
  // A file this test makes, with known contents.
  const std::string name = "tensorcast-shm-test-" + std::to_string(getpid());
  int fd = shm_open(("/" + name).c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  const std::string token(32, 'k');
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  ASSERT_EQ(pwrite(fd, token.data(), token.size(), 0),
            static_cast<ssize_t>(token.size()));
  close(fd);
  EXPECT_TRUE(RawOpen(client(), name, 4096, token).ok());
  EXPECT_EQ(RawOpen(client(), name, 4096, std::string(32, 'x')).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);  // not this client's
  EXPECT_EQ(RawOpen(client(), name, 8192, token).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // bigger than the file
  EXPECT_EQ(RawOpen(client(), name, 4096, "short").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  for (const std::string& bad :
       {std::string("passwd"), std::string("../tensorcast-x"),
        std::string("tensorcast-a/b"), std::string("tensorcast-..x"),
        std::string("tensorcast-")}) {
    EXPECT_EQ(RawOpen(client(), bad, 4096, token).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << bad;
  }
  EXPECT_EQ(
      RawOpen(client(), "tensorcast-does-not-exist", 4096, token).error_code(),
      grpc::StatusCode::NOT_FOUND);
  shm_unlink(("/" + name).c_str());
}

TEST_F(ShmTest, OpenRefusesForeignUnsealedOrMalformedMemfds) {
  const std::string token(32, 'k');
  auto make = [&](unsigned seals) {
    int fd = memfd_create("tensorcast-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(ftruncate(fd, 4096), 0);
    EXPECT_EQ(pwrite(fd, token.data(), token.size(), 0),
              static_cast<ssize_t>(token.size()));
    if (seals != 0) {
      EXPECT_EQ(fcntl(fd, F_ADD_SEALS, seals), 0);
    }
    return fd;
  };
  const int pid = getpid();
  const int sealed = make(F_SEAL_SHRINK | F_SEAL_GROW);
  const int unsealed = make(0);
  EXPECT_TRUE(RawOpenMemfd(client(), pid, sealed, 4096, token).ok());
  EXPECT_EQ(RawOpenMemfd(client(), pid, unsealed, 4096, token).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);  // could shrink: unmapped
  EXPECT_EQ(RawOpenMemfd(client(), pid, sealed, 4096, std::string(32, 'x'))
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);  // not this client's
  EXPECT_EQ(RawOpenMemfd(client(), pid, sealed, 8192, token).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // bigger than the memfd
  EXPECT_EQ(RawOpenMemfd(client(), pid, 100000, 4096, token).error_code(),
            grpc::StatusCode::NOT_FOUND);  // no such descriptor
  EXPECT_EQ(RawOpenMemfd(client(), -1, sealed, 4096, token).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // A descriptor that is no memfd: a regular file cannot be sealed.
  const std::string path =
      ::testing::TempDir() + "/shm-test-" + std::to_string(pid);
  int plain = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(plain, 0);
  ASSERT_EQ(ftruncate(plain, 4096), 0);
  ASSERT_EQ(pwrite(plain, token.data(), token.size(), 0),
            static_cast<ssize_t>(token.size()));
  EXPECT_EQ(RawOpenMemfd(client(), pid, plain, 4096, token).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  close(plain);
  unlink(path.c_str());
  close(sealed);
  close(unsealed);
}

TEST(ShmOffTest, ServersRefuseSharedMemoryUnlessAllowed) {
  ServerProcess server;
  absl::StatusOr<std::unique_ptr<SharedMemory>> shm =
      SharedMemory::Open(server.client(), 1 << 20);
  EXPECT_EQ(shm.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(shm.status().message().find("--shared-memory"),
            absl::string_view::npos);
  FetchOptions f;
  f.shm_region = "0123456789abcdef0123456789abcdef";
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_UINT8);
  create.add_shape(4);
  create.mutable_zeros();
  absl::StatusOr<v1::TensorInfo> t = server.client().Create(create);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(server.client().Fetch(t->handle(), f, NoBytes).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace tensorcast::testing
