// Same-host shared memory (OpenSharedMemory, --shared-memory): Fetch and
// Put through a region the client lends give the bytes the socket path
// gives, and the safety rules hold -- off without the flag (said only to an
// authenticated caller); only a file named tensorcast-* under /dev/shm or a
// sealed memfd of another process, that starts with the client's token; the
// token's header is never read or written by a transfer; every refusal that
// depends on the host reads the same; a huge sparse memfd costs the server
// nothing; a region id works only on the connection that opened it, and no
// tenant reaches another's region, not even through the server's own
// descriptors; the region caps hold; every range is checked before
// anything is written; a client that shrinks its file gets an error, not a
// crashed server; a closed session's region is gone.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

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
      std::memset((*shm)->data(), 0, wire->size());
      absl::StatusOr<v1::FetchHeader> h =
          FetchToShm(ref, f, (*shm)->region(), (*shm)->offset());
      ASSERT_TRUE(h.ok()) << h.status();
      EXPECT_EQ(h->length(), static_cast<int64_t>(wire->size()));
      EXPECT_EQ(std::memcmp((*shm)->data(), wire->data(), wire->size()), 0);
    }
  }
  // Put from the region: the bytes become a tensor.
  const int64_t n = 1 << 20;
  for (int64_t i = 0; i < n; ++i) {
    (*shm)->data()[i] = static_cast<char>(i * 7);
  }
  PutOptions p;
  p.dtype = v1::DTYPE_UINT8;
  p.shape = {n};
  p.shm_region = (*shm)->region();
  p.shm_offset = (*shm)->offset();
  p.shm_bytes = n;
  absl::StatusOr<v1::TensorInfo> put = client().Put(p, nullptr, n);
  ASSERT_TRUE(put.ok()) << put.status();
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  absl::StatusOr<std::string> back = client().FetchBytes(put->handle(), raw);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, std::string((*shm)->data(), n));
}

TEST_F(ShmTest, RegionsAreCheckedAndBelongToTheirConnection) {
  for (SharedMemory::Kind kind : kKinds) {
    SCOPED_TRACE(KindName(kind));
    CheckRegionRules(kind);
  }
}

void ShmTest::CheckRegionRules(SharedMemory::Kind kind) {
  constexpr int64_t kSize = 1 << 20;
  absl::StatusOr<std::unique_ptr<SharedMemory>> shm =
      SharedMemory::Open(client(), kSize, kind);
  ASSERT_TRUE(shm.ok()) << shm.status();
  const int64_t base = (*shm)->offset();  // the region's first data byte
  ASSERT_EQ(base, 4096);
  const std::string ref = Arange(1024);  // 4 KiB RAW
  std::memset((*shm)->data(), 0xab, kSize);
  // The header, token and all, as this client wrote it.
  const char* header = (*shm)->data() - base;
  const std::string token(header, base);
  auto untouched = [&] {
    if (std::string(header, base) != token) return false;
    for (int64_t i = 0; i < kSize; ++i) {
      if (static_cast<unsigned char>((*shm)->data()[i]) != 0xab) return false;
    }
    return true;
  };
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  // A forged id; a range past the end, negative or inside the header (the
  // token's): nothing written.
  EXPECT_EQ(FetchToShm(ref, raw, "0123456789abcdef0123456789abcdef", base)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(FetchToShm(ref, raw, (*shm)->region(), base + kSize - 4095)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  for (int64_t at : {int64_t{-1}, int64_t{0}, int64_t{100}, base - 1}) {
    absl::Status s = FetchToShm(ref, raw, (*shm)->region(), at).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << at << ": " << s;
  }
  PutOptions p;
  p.dtype = v1::DTYPE_UINT8;
  p.shape = {100};
  p.shm_region = (*shm)->region();
  p.shm_bytes = 100;
  for (int64_t at : {base + kSize - 50, int64_t{0}, base - 50}) {
    // Past the end, or reading the token back out of the header.
    p.shm_offset = at;
    EXPECT_EQ(client().Put(p, nullptr, 100).status().code(),
              absl::StatusCode::kInvalidArgument)
        << at;
  }
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
  f.shm_offset = base;
  EXPECT_EQ(other->Fetch(ref, f, NoBytes).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(untouched());

  if (kind == SharedMemory::Kind::kFile) {
    // A client that shrinks its file under the server: a Put from it comes
    // up short (DATA_LOSS, nothing stored); the server, which never maps
    // the file, lives on.
    int fd = shm_open(("/" + (*shm)->name()).c_str(), O_RDWR, 0);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, base + 50), 0);
    close(fd);
    p.shm_offset = base;
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
    gone = FetchToShm(ref, raw, id, base).status();
    if (gone.code() == absl::StatusCode::kNotFound) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(gone.code(), absl::StatusCode::kNotFound) << gone;
}

// Opens a session by hand with the request as given.
grpc::Status RawOpen(Client& client,
                     const v1::OpenSharedMemoryRequest& request) {
  grpc::ClientContext ctx;
  client.Prepare(&ctx, /*with_deadline=*/false);
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

// 32 random bytes.
std::string NewToken() {
  std::string token(32, '\0');
  std::FILE* f = std::fopen("/dev/urandom", "rb");
  EXPECT_NE(f, nullptr);
  if (f != nullptr) {
    EXPECT_EQ(std::fread(token.data(), 1, token.size(), f), token.size());
    std::fclose(f);
  }
  return token;
}

// A memfd of `size` bytes starting with `token`, with `seals` added.
int MakeMemfd(int64_t size, const std::string& token, unsigned seals) {
  int fd = memfd_create("tensorcast-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(ftruncate(fd, size), 0);
  EXPECT_EQ(pwrite(fd, token.data(), token.size(), 0),
            static_cast<ssize_t>(token.size()));
  if (seals != 0) {
    EXPECT_EQ(fcntl(fd, F_ADD_SEALS, seals), 0);
  }
  return fd;
}

// Every refusal that depends on what the host holds reads the same.
void ExpectUnusable(const grpc::Status& status, int64_t size,
                    const std::string& what) {
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << what;
  EXPECT_EQ(status.error_message(),
            "shared memory region not usable: it must exist, be the caller's "
            "own memory (a sealed memfd of another process, or a "
            "tensorcast-* file in /dev/shm; lent once at a time) of at least " +
                std::to_string(size) +
                " bytes, start with the token and, from its first transfer "
                "on, hold the session's challenge")
      << what;
}

TEST_F(ShmTest, OpenRefusesForeignOrMalformedRegions) {
  // A file this test makes, with known contents.
  const std::string name = "tensorcast-shm-test-" + std::to_string(getpid());
  int fd = shm_open(("/" + name).c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_GE(fd, 0);
  const std::string token = NewToken();
  ASSERT_EQ(ftruncate(fd, 8192), 0);
  ASSERT_EQ(pwrite(fd, token.data(), token.size(), 0),
            static_cast<ssize_t>(token.size()));
  close(fd);
  EXPECT_TRUE(RawOpen(client(), name, 8192, token).ok());
  // Not this client's, bigger than the file, not there: one answer.
  ExpectUnusable(RawOpen(client(), name, 8192, NewToken()), 8192, "token");
  ExpectUnusable(RawOpen(client(), name, 8193, token), 8193, "too small");
  ExpectUnusable(RawOpen(client(), "tensorcast-does-not-exist", 8192, token),
                 8192, "missing");
  // Input errors say what is wrong with the request.
  EXPECT_EQ(RawOpen(client(), name, 8192, "short").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(RawOpen(client(), name, 8192, std::string(32, 'k')).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // one byte repeated
  EXPECT_EQ(RawOpen(client(), name, 4096, token).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // no room after the header
  v1::OpenSharedMemoryRequest both;
  both.set_name(name);
  both.set_memfd_pid(getpid());
  both.set_memfd_fd(3);
  both.set_size(8192);
  both.set_token(token);
  EXPECT_EQ(RawOpen(client(), both).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  for (const std::string& bad :
       {std::string("passwd"), std::string("../tensorcast-x"),
        std::string("tensorcast-a/b"), std::string("tensorcast-..x"),
        std::string("tensorcast-")}) {
    EXPECT_EQ(RawOpen(client(), bad, 8192, token).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT)
        << bad;
  }
  shm_unlink(("/" + name).c_str());
}

TEST_F(ShmTest, OpenRefusesForeignUnsealedOrMalformedMemfdsAlike) {
  const std::string token = NewToken();
  const int pid = getpid();
  const int sealed =
      MakeMemfd(8192, token, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  const int unsealed = MakeMemfd(8192, token, 0);
  EXPECT_TRUE(RawOpenMemfd(client(), pid, sealed, 8192, token).ok());
  // Whatever the reason, the same code and text: the answers cannot be
  // used to probe which pids and descriptors exist on the host.
  ExpectUnusable(RawOpenMemfd(client(), pid, unsealed, 8192, token), 8192,
                 "unsealed: could shrink under the mapping");
  // Sealed against shrinking, but open to more seals: F_SEAL_FUTURE_WRITE,
  // added later, would stop the server punching out the pages it wrote.
  const int open_to_seals = MakeMemfd(8192, token, F_SEAL_SHRINK | F_SEAL_GROW);
  ExpectUnusable(RawOpenMemfd(client(), pid, open_to_seals, 8192, token), 8192,
                 "open to further seals");
  close(open_to_seals);
  ExpectUnusable(RawOpenMemfd(client(), pid, sealed, 8192, NewToken()), 8192,
                 "not this client's");
  ExpectUnusable(RawOpenMemfd(client(), pid, sealed, 8193, token), 8193,
                 "bigger than the memfd");
  ExpectUnusable(RawOpenMemfd(client(), pid, 100000, 8192, token), 8192,
                 "no such descriptor");
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  ExpectUnusable(RawOpenMemfd(client(), pid, pipe_fds[0], 8192, token), 8192,
                 "a pipe");
  close(pipe_fds[0]);
  close(pipe_fds[1]);
  // A pid that no longer exists: a child that has been reaped.
  const pid_t child = fork();
  if (child == 0) _exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(WaitForExit(child), 0);
  ExpectUnusable(RawOpenMemfd(client(), child, sealed, 8192, token), 8192,
                 "no such process");
  ExpectUnusable(RawOpenMemfd(client(), server_.pid(), 0, 8192, token), 8192,
                 "the server's own descriptors");
  EXPECT_EQ(RawOpenMemfd(client(), -1, sealed, 8192, token).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // A descriptor that is no memfd: a regular file cannot be sealed.
  const std::string path =
      ::testing::TempDir() + "/shm-test-" + std::to_string(pid);
  int plain = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(plain, 0);
  ASSERT_EQ(ftruncate(plain, 8192), 0);
  ASSERT_EQ(pwrite(plain, token.data(), token.size(), 0),
            static_cast<ssize_t>(token.size()));
  ExpectUnusable(RawOpenMemfd(client(), pid, plain, 8192, token), 8192,
                 "a plain file");
  close(plain);
  unlink(path.c_str());
  close(sealed);
  close(unsealed);
}

// The token is checked with a read of its bytes before anything is mapped,
// and opening faults none of the client's pages in: a huge sparse memfd
// costs the server nothing until a transfer uses it, whether the token is
// right or wrong.
TEST_F(ShmTest, AHugeSparseMemfdIsNeitherMappedNorFaultedIn) {
  constexpr int64_t kSize = int64_t{2} << 30;
  const std::string token = NewToken();
  const int fd =
      MakeMemfd(kSize, token, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  auto resident = [&] {
    struct stat st;
    EXPECT_EQ(fstat(fd, &st), 0);
    return static_cast<int64_t>(st.st_blocks) * 512;
  };
  ASSERT_LE(resident(), 64 << 10);  // the token's page
  auto start = std::chrono::steady_clock::now();
  ExpectUnusable(RawOpenMemfd(client(), getpid(), fd, kSize, NewToken()), kSize,
                 "wrong token");
  const double wrong_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  EXPECT_LT(wrong_s, 1.0);
  EXPECT_LE(resident(), 64 << 10);
  // Right token: accepted, still nothing faulted in until a transfer uses
  // the pages.
  start = std::chrono::steady_clock::now();
  EXPECT_TRUE(RawOpenMemfd(client(), getpid(), fd, kSize, token).ok());
  EXPECT_LT(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count(),
      1.0);
  EXPECT_LE(resident(), 64 << 10);
  close(fd);
}

// One session held open (as SharedMemory holds it), by hand.
struct HeldSession {
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<v1::SharedMemoryEvent>> reader;
  v1::SharedMemoryEvent event;
  grpc::Status status;  // when it was refused
  ~HeldSession() {
    if (reader != nullptr && status.ok()) {
      ctx.TryCancel();
      (void)reader->Finish();
    }
  }
};

std::unique_ptr<HeldSession> Hold(Client& client,
                                  const v1::OpenSharedMemoryRequest& request) {
  auto s = std::make_unique<HeldSession>();
  client.Prepare(&s->ctx, /*with_deadline=*/false);
  s->reader = client.stub()->OpenSharedMemory(&s->ctx, request);
  if (!s->reader->Read(&s->event)) {
    s->status = s->reader->Finish();
    if (s->status.ok()) s->status = grpc::Status(grpc::UNKNOWN, "no event");
  }
  return s;
}

// A memfd of this process, held open.
std::unique_ptr<HeldSession> Hold(Client& client, int fd, int64_t size,
                                  const std::string& token) {
  v1::OpenSharedMemoryRequest request;
  request.set_memfd_pid(getpid());
  request.set_memfd_fd(fd);
  request.set_size(size);
  request.set_token(token);
  return Hold(client, request);
}

// Writes the session's challenge into the region's header, as a client
// does before its first transfer.
void Answer(int fd, const HeldSession& session) {
  const std::string& challenge = session.event.challenge();
  EXPECT_EQ(pwrite(fd, challenge.data(), challenge.size(), 64),
            static_cast<ssize_t>(challenge.size()));
}

// A client on a connection of its own.
std::unique_ptr<Client> OwnConnection(const std::string& address,
                                      ClientOptions options) {
  grpc::ChannelArguments args = DefaultChannelArguments();
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return std::make_unique<Client>(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(),
                                args),
      std::move(options));
}

TEST_F(ShmTest, OneConnectionHoldsAtMostSixtyFourRegions) {
  const std::string token = NewToken();
  std::vector<int> fds;
  std::vector<std::unique_ptr<HeldSession>> held;
  for (int i = 0; i < 65; ++i) {
    fds.push_back(MakeMemfd(8192, token, F_SEAL_SHRINK | F_SEAL_SEAL));
    held.push_back(Hold(client(), fds.back(), 8192, token));
  }
  for (int i = 0; i < 64; ++i) EXPECT_TRUE(held[i]->status.ok()) << i;
  EXPECT_EQ(held[64]->status.error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(held[64]->status.error_message().find("per connection"),
            std::string::npos)
      << held[64]->status.error_message();
  // Another connection has its own allowance; one closed session frees one.
  std::unique_ptr<Client> other = OwnConnection(server_.address(), {});
  EXPECT_TRUE(Hold(*other, fds[64], 8192, token)->status.ok());
  held[0].reset();
  grpc::Status again;
  for (int i = 0; i < 100; ++i) {  // the server ends the call a moment later
    again = Hold(client(), fds[0], 8192, token)->status;
    if (again.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(again.ok()) << again.error_message();
  held.clear();
  for (int fd : fds) close(fd);
}

// A client that holds a lease (F_SETLEASE) on the memory it names cannot
// make the server wait for the lease to break (fs.lease-break-time, 45 s by
// default) on one of gRPC's threads: the open is refused at once, with the
// answer any unusable region gets, and other calls are served meanwhile.
TEST_F(ShmTest, ALeasedRegionIsRefusedAtOnce) {
  // The kernel tells a lease holder with SIGIO that someone wants the file.
  struct sigaction ignore = {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction saved = {};
  ASSERT_EQ(sigaction(SIGIO, &ignore, &saved), 0);
  const std::string token = NewToken();
  // A /dev/shm file and a sealed memfd, each open here read-only only, under
  // a read lease.
  const std::string name = "tensorcast-leased-" + std::to_string(getpid());
  const int rw =
      shm_open(("/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(rw, 0);
  ASSERT_EQ(ftruncate(rw, 8192), 0);
  ASSERT_EQ(pwrite(rw, token.data(), token.size(), 0), 32);
  close(rw);
  const int leased_file =
      open(("/dev/shm/" + name).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(leased_file, 0);
  ASSERT_EQ(fcntl(leased_file, F_SETLEASE, F_RDLCK), 0) << strerror(errno);
  const int memfd =
      MakeMemfd(8192, token, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  const int leased_memfd = open(
      ("/proc/self/fd/" + std::to_string(memfd)).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(leased_memfd, 0);
  close(memfd);
  ASSERT_EQ(fcntl(leased_memfd, F_SETLEASE, F_RDLCK), 0) << strerror(errno);

  // Both at once, as two clients on connections of their own.
  struct Timed {
    grpc::Status status;
    double seconds = 0;
  };
  auto timed = [](const std::function<grpc::Status()>& call, Timed* out) {
    const auto start = std::chrono::steady_clock::now();
    out->status = call();
    out->seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
  };
  std::unique_ptr<Client> a = OwnConnection(server_.address(), {});
  std::unique_ptr<Client> b = OwnConnection(server_.address(), {});
  Timed file, memfd_open;
  std::thread file_thread(
      [&] { timed([&] { return RawOpen(*a, name, 8192, token); }, &file); });
  std::thread memfd_thread([&] {
    timed([&] { return RawOpenMemfd(*b, getpid(), leased_memfd, 8192, token); },
          &memfd_open);
  });
  // Meanwhile, another call of the service is served.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Timed stats;
  timed(
      [&] {
        absl::Status s = client().Stats().status();
        return s.ok() ? grpc::Status::OK
                      : grpc::Status(grpc::UNKNOWN, std::string(s.message()));
      },
      &stats);
  file_thread.join();
  memfd_thread.join();
  EXPECT_TRUE(stats.status.ok()) << stats.status.error_message();
  EXPECT_LT(stats.seconds, 2.0);
  ExpectUnusable(file.status, 8192, "a leased file");
  EXPECT_LT(file.seconds, 2.0);
  ExpectUnusable(memfd_open.status, 8192, "a leased memfd");
  EXPECT_LT(memfd_open.seconds, 2.0);
  close(leased_file);
  close(leased_memfd);
  shm_unlink(("/" + name).c_str());
  sigaction(SIGIO, &saved, nullptr);
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

// --- tenants -----------------------------------------------------------

const std::string kAliceToken = "alice-token-0123456789abcdef";
const std::string kBobToken = "bob-token-0123456789abcdef";

ClientOptions As(const std::string& token) {
  ClientOptions options;
  options.token = token;
  options.timeout = std::chrono::seconds(10);
  return options;
}

// A server with --auth-tokens (tenants alice and bob) and `flags`; its
// client() is alice.
class ShmTenantTest : public ::testing::Test {
 protected:
  // `bob`: the rest of bob's token line (his limits).
  void Start(std::vector<std::string> flags, const std::string& bob = "") {
    WriteFile(dir_.File("tokens"),
              kAliceToken + " alice\n" + kBobToken + " bob " + bob + "\n");
    flags.push_back("--auth-tokens=" + dir_.File("tokens"));
    server_ = std::make_unique<ServerProcess>(flags, As(kAliceToken));
  }
  std::unique_ptr<Client> Bob() {
    return OwnConnection(server_->address(), As(kBobToken));
  }

  TempDir dir_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(ShmTenantTest, AuthenticationComesBeforeEverything) {
  Start({});  // shared memory off
  const std::string token = NewToken();
  const int fd = MakeMemfd(8192, token, F_SEAL_SHRINK | F_SEAL_SEAL);
  std::unique_ptr<Client> stranger = server_->Connect({});
  EXPECT_EQ(RawOpenMemfd(*stranger, getpid(), fd, 8192, token).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(
      RawOpenMemfd(server_->client(), getpid(), fd, 8192, token).error_code(),
      grpc::StatusCode::FAILED_PRECONDITION);
  close(fd);
}

// The /proc/PID/fd/N links of `pid` that are memfds a client made.
std::vector<int> MemfdsOf(int pid) {
  std::vector<int> out;
  const std::string dir = "/proc/" + std::to_string(pid) + "/fd/";
  for (int fd = 0; fd < 4096; ++fd) {
    char link[128] = {0};
    if (readlink((dir + std::to_string(fd)).c_str(), link, sizeof(link) - 1) >
            0 &&
        absl::StartsWith(link, "/memfd:tensorcast")) {
      out.push_back(fd);
    }
  }
  return out;
}

// A tenant cannot reach another tenant's region through the server's own
// descriptor for it (/proc/<server>/fd/N, or a thread's /proc/<tid>/fd/N),
// nor through the lending process's descriptor: not with a guessed token,
// and not even with the right one (as if the token were predictable). Every
// attempt gets the answer a missing descriptor gets.
TEST_F(ShmTenantTest, ATenantCannotOpenAnotherTenantsRegion) {
  Start({"--shared-memory"});
  absl::StatusOr<std::unique_ptr<SharedMemory>> alice = SharedMemory::Open(
      server_->client(), 1 << 20, SharedMemory::Kind::kMemfd);
  ASSERT_TRUE(alice.ok()) << alice.status();
  const int64_t total = (*alice)->offset() + (*alice)->size();
  // Alice's tensor, fetched into her region.
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_UINT8);
  create.add_shape(1 << 20);
  create.mutable_arange()->set_step(1);
  absl::StatusOr<v1::TensorInfo> secret = server_->client().Create(create);
  ASSERT_TRUE(secret.ok()) << secret.status();
  FetchOptions f;
  f.format = v1::FORMAT_RAW;
  f.shm_region = (*alice)->region();
  f.shm_offset = (*alice)->offset();
  ASSERT_TRUE(server_->client().Fetch(secret->handle(), f, NoBytes).ok());
  const std::string before((*alice)->data() - (*alice)->offset(), total);
  // What an attacker who could read the header would send.
  const std::string right(before.data(), 32);

  std::unique_ptr<Client> bob = Bob();
  const std::vector<int> server_fds = MemfdsOf(server_->pid());
  ASSERT_FALSE(server_fds.empty()) << "the server's descriptor for alice's";
  std::vector<int> tids;  // the server's threads other than its main one
  {
    const std::string task =
        "/proc/" + std::to_string(server_->pid()) + "/task";
    if (DIR* d = opendir(task.c_str()); d != nullptr) {
      while (dirent* e = readdir(d)) {
        const int tid = std::atoi(e->d_name);
        if (tid > 0 && tid != server_->pid()) tids.push_back(tid);
      }
      closedir(d);
    }
  }
  ASSERT_FALSE(tids.empty());
  for (const std::string& token :
       {right, NewToken(), std::string(31, '\0') + "\x01"}) {
    for (int fd : server_fds) {
      ExpectUnusable(RawOpenMemfd(*bob, server_->pid(), fd, total, token),
                     total, "through the server's pid");
      ExpectUnusable(RawOpenMemfd(*bob, tids[0], fd, total, token), total,
                     "through a thread of the server");
    }
    for (int fd : MemfdsOf(getpid())) {  // alice's own process
      ExpectUnusable(RawOpenMemfd(*bob, getpid(), fd, total, token), total,
                     "through alice's process");
    }
  }
  // An all-zero token (what a header overwritten by data used to hold) is
  // no token at all.
  EXPECT_EQ(RawOpenMemfd(*bob, server_->pid(), server_fds[0], total,
                         std::string(16, '\0'))
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Alice's bytes and token are as they were, and her region still works.
  EXPECT_EQ(std::string((*alice)->data() - (*alice)->offset(), total), before);
  EXPECT_TRUE(server_->client().Fetch(secret->handle(), f, NoBytes).ok());

  if (geteuid() == 0) {
    // As root the server can open any user's /dev/shm file: the token is
    // what keeps another user's file out.
    const std::string name =
        "tensorcast-other-user-" + std::to_string(getpid());
    int fd = shm_open(("/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    ASSERT_GE(fd, 0);
    const std::string token = NewToken();
    ASSERT_EQ(ftruncate(fd, 8192), 0);
    ASSERT_EQ(pwrite(fd, token.data(), token.size(), 0), 32);
    ASSERT_EQ(fchown(fd, 65534, 65534), 0);
    close(fd);
    ExpectUnusable(RawOpen(*bob, name, 8192, NewToken()), 8192,
                   "another user's file");
    shm_unlink(("/" + name).c_str());
  }
}

// One tenant opening session after session cannot use up the server's
// descriptors: past its caps it is refused, and another tenant is served.
TEST_F(ShmTenantTest, ATenantCannotExhaustTheServersDescriptors) {
  // The server runs with an open-file limit of 256, as in the report:
  // min(1024, 256 / 4) = 64 regions in all (below the 256 per tenant), 64 per
  // connection.
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  struct rlimit low = saved;
  low.rlim_cur = 256;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  Start({"--shared-memory"});  // inherits the limit
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);

  const std::string token = NewToken();
  std::vector<std::unique_ptr<Client>> connections;
  std::vector<std::unique_ptr<HeldSession>> held;
  std::vector<int> fds;
  int opened = 0, refused = 0;
  for (int i = 0; i < 300; ++i) {
    if (i % 15 == 0) {
      connections.push_back(OwnConnection(server_->address(), As(kAliceToken)));
    }
    fds.push_back(MakeMemfd(8192, token, F_SEAL_SHRINK | F_SEAL_SEAL));
    held.push_back(Hold(*connections.back(), fds.back(), 8192, token));
    if (held.back()->status.ok()) {
      ++opened;
    } else {
      EXPECT_EQ(held.back()->status.error_code(),
                grpc::StatusCode::RESOURCE_EXHAUSTED)
          << held.back()->status.error_message();
      ++refused;
    }
  }
  EXPECT_EQ(opened, 64);
  EXPECT_EQ(refused, 300 - 64);
  // Bob: a new connection, and calls on it, are served.
  std::unique_ptr<Client> bob = Bob();
  EXPECT_TRUE(bob->Health().ok());
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_UINT8);
  create.add_shape(1024);
  create.mutable_zeros();
  absl::StatusOr<v1::TensorInfo> t = bob->Create(create);
  ASSERT_TRUE(t.ok()) << t.status();
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  absl::StatusOr<std::string> bytes = bob->FetchBytes(t->handle(), raw);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, std::string(1024, '\0'));
  // The server's regions are all in use: bob's own is refused, naming the
  // cap, until alice's sessions end.
  const int bobs = MakeMemfd(8192, token, F_SEAL_SHRINK | F_SEAL_SEAL);
  grpc::Status full = Hold(*bob, bobs, 8192, token)->status;
  // It names the cap, not how many regions the server has open (which would
  // tell bob about alice).
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(full.error_message(),
            "the server's limit of shared-memory regions in all is reached "
            "(--shared-memory-max-regions)");
  held.clear();
  grpc::Status mine;
  for (int i = 0; i < 100; ++i) {
    mine = Hold(*bob, bobs, 8192, token)->status;
    if (mine.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(mine.ok()) << mine.error_message();
  close(bobs);
  for (int fd : fds) close(fd);
}

// A tenant's lent memory counts against its quota. A page of a sparse
// region that the server writes first is charged by the kernel to the
// server (its memory cgroup), so the region's data bytes are charged to the
// tenant while it is lent (Stats shows them), a region past the quota is
// refused, naming it, before anything is opened, and when the session ends
// the charge goes back and the server frees the pages it wrote (it punches
// the data out).
TEST_F(ShmTenantTest, LentMemoryCountsAgainstTheTenantsQuota) {
  Start({"--shared-memory"}, "quota=64MiB");
  std::unique_ptr<Client> bob = Bob();
  auto held_bytes = [&]() -> int64_t {
    absl::StatusOr<v1::StatsResponse> stats = bob->Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? stats->tenant().bytes() : -1;
  };
  constexpr int64_t kHeader = 4096;
  constexpr int64_t kData = int64_t{32} << 20;
  const std::string token = NewToken();
  // Sparse: only the token's page exists.
  const int fd = MakeMemfd(kHeader + kData, token,
                           F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  auto resident = [&] {
    struct stat st;
    EXPECT_EQ(fstat(fd, &st), 0);
    return static_cast<int64_t>(st.st_blocks) * 512;
  };
  ASSERT_LE(resident(), 64 << 10);
  {
    std::unique_ptr<HeldSession> held = Hold(*bob, fd, kHeader + kData, token);
    ASSERT_TRUE(held->status.ok()) << held->status.error_message();
    EXPECT_EQ(held_bytes(), kData);
    // 40 MiB more would pass the 64 MiB quota.
    const std::string other_token = NewToken();
    const int more = MakeMemfd(kHeader + (40 << 20), other_token,
                               F_SEAL_SHRINK | F_SEAL_SEAL);
    grpc::Status over =
        Hold(*bob, more, kHeader + (40 << 20), other_token)->status;
    EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_NE(over.error_message().find("memory quota"), std::string::npos)
        << over.error_message();
    close(more);
    EXPECT_EQ(held_bytes(), kData);
    // Bob's 16 MiB tensor, fetched into the sparse region: the server is
    // the first to write those pages.
    v1::CreateRequest create;
    create.set_dtype(v1::DTYPE_UINT8);
    create.add_shape(16 << 20);
    create.mutable_ones();
    absl::StatusOr<v1::TensorInfo> t = bob->Create(create);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(held_bytes(), kData + (16 << 20));
    Answer(fd, *held);
    FetchOptions f;
    f.format = v1::FORMAT_RAW;
    f.shm_region = held->event.region();
    f.shm_offset = kHeader;
    ASSERT_TRUE(bob->Fetch(t->handle(), f, NoBytes).ok());
    EXPECT_GE(resident(), 16 << 20);
    char byte = 0;
    ASSERT_EQ(pread(fd, &byte, 1, kHeader + (16 << 20) - 1), 1);
    EXPECT_EQ(byte, 1);
  }
  // The session is over: the charge goes back (the tensor's stays), and the
  // pages the server wrote are freed.
  for (int i = 0;
       i < 200 && (held_bytes() != (16 << 20) || resident() > (64 << 10));
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(held_bytes(), 16 << 20);
  EXPECT_LE(resident(), 64 << 10);
  close(fd);
}

// The token proves only that the caller can read the memory it names.
// Memory it cannot write -- another user's 0644 file, whose token a process
// of uid 65534 can read; a memfd whose first bytes are predictable (an ELF
// header) -- can be named, but no transfer ever touches it: the caller
// cannot write the session's challenge into the header, and until it is
// there every Fetch and Put naming the region is refused, with the answer
// any unusable region gets, and nothing is read or written.
TEST_F(ShmTenantTest, MemoryTheCallerCannotWriteIsNeverTouched) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root, to make another user's file";
  Start({"--shared-memory"});
  constexpr int64_t kSize = 8192;
  const std::string name = "tensorcast-other-user-" + std::to_string(getpid());
  const std::string path = "/dev/shm/" + name;
  std::string contents(kSize, 'o');
  contents.replace(0, 32, NewToken());
  int fd = shm_open(("/" + name).c_str(), O_RDWR | O_CREAT | O_EXCL, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, contents.data(), kSize, 0), kSize);
  ASSERT_EQ(fchown(fd, 1000, 1000), 0);
  ASSERT_EQ(fchmod(fd, 0644), 0);
  close(fd);
  // What bob's process, as uid 65534, can do with it: read, not write.
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t child = fork();
  if (child == 0) {  // system calls only: no gRPC in the child
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    if (open(path.c_str(), O_RDWR) >= 0 || errno != EACCES) _exit(3);
    char token[32];
    const int ro = open(path.c_str(), O_RDONLY);
    if (ro < 0 || pread(ro, token, sizeof(token), 0) != 32) _exit(4);
    if (write(pipe_fds[1], token, sizeof(token)) != 32) _exit(5);
    _exit(0);
  }
  ASSERT_GT(child, 0);
  close(pipe_fds[1]);
  std::string token(32, '\0');
  EXPECT_EQ(read(pipe_fds[0], token.data(), token.size()), 32);
  close(pipe_fds[0]);
  ASSERT_EQ(WaitForExit(child), 0);
  ASSERT_EQ(token, contents.substr(0, 32));

  // A sealed memfd (here standing for a root process's) that starts like
  // any x86-64 ELF file: its first 16 bytes are known without reading it.
  const std::string ident(
      "\x7f"
      "ELF\x02\x01\x01" +
      std::string(9, '\0'));
  std::string elf(kSize, 'e');
  elf.replace(0, ident.size(), ident);
  const int memfd = memfd_create("victim", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  ASSERT_GE(memfd, 0);
  ASSERT_EQ(pwrite(memfd, elf.data(), kSize, 0), kSize);
  ASSERT_EQ(
      fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);

  std::unique_ptr<Client> bob = Bob();
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(4);
  create.set_full(2.5);
  absl::StatusOr<v1::TensorInfo> t = bob->Create(create);
  ASSERT_TRUE(t.ok()) << t.status();
  v1::OpenSharedMemoryRequest by_name;
  by_name.set_name(name);
  by_name.set_size(kSize);
  by_name.set_token(token);
  v1::OpenSharedMemoryRequest by_memfd;
  by_memfd.set_memfd_pid(getpid());
  by_memfd.set_memfd_fd(memfd);
  by_memfd.set_size(kSize);
  by_memfd.set_token(ident);
  for (const v1::OpenSharedMemoryRequest& request : {by_name, by_memfd}) {
    SCOPED_TRACE(request.name().empty() ? "memfd" : "file");
    // Opening reads the token alone; bob never writes the challenge.
    std::unique_ptr<HeldSession> held = Hold(*bob, request);
    ASSERT_TRUE(held->status.ok()) << held->status.error_message();
    EXPECT_EQ(held->event.challenge().size(), 16u);
    FetchOptions f;
    f.format = v1::FORMAT_RAW;
    f.shm_region = held->event.region();
    f.shm_offset = 4096;
    absl::Status fetch = bob->Fetch(t->handle(), f, NoBytes).status();
    ExpectUnusable(grpc::Status(static_cast<grpc::StatusCode>(fetch.code()),
                                std::string(fetch.message())),
                   kSize, "a Fetch into memory bob cannot write");
    PutOptions p;
    p.dtype = v1::DTYPE_UINT8;
    p.shape = {100};
    p.shm_region = held->event.region();
    p.shm_offset = 4096;
    p.shm_bytes = 100;
    absl::Status put = bob->Put(p, nullptr, 100).status();
    ExpectUnusable(grpc::Status(static_cast<grpc::StatusCode>(put.code()),
                                std::string(put.message())),
                   kSize, "a Put out of memory bob cannot write");
  }
  // Neither was written.
  std::string now(kSize, '\0');
  fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pread(fd, now.data(), kSize, 0), kSize);
  close(fd);
  EXPECT_EQ(now, contents);
  ASSERT_EQ(pread(memfd, now.data(), kSize, 0), kSize);
  EXPECT_EQ(now, elf);
  close(memfd);
  shm_unlink(("/" + name).c_str());
}

// This host's first IPv4 address that is not loopback; empty if none.
std::string NonLoopbackAddress() {
  struct ifaddrs* all = nullptr;
  if (getifaddrs(&all) != 0) return "";
  std::string found;
  for (struct ifaddrs* i = all; i != nullptr && found.empty();
       i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != AF_INET ||
        (i->ifa_flags & IFF_UP) == 0 || (i->ifa_flags & IFF_LOOPBACK) != 0) {
      continue;
    }
    char text[INET_ADDRSTRLEN] = {0};
    const auto* in = reinterpret_cast<const struct sockaddr_in*>(i->ifa_addr);
    if (inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) != nullptr) {
      found = text;
    }
  }
  freeifaddrs(all);
  return found;
}

// Whether this host has IPv6 loopback (a socket can bind [::1]).
bool HasIpv6Loopback() {
  const int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  struct sockaddr_in6 address = {};
  address.sin6_family = AF_INET6;
  address.sin6_addr = in6addr_loopback;
  const bool ok = bind(fd, reinterpret_cast<struct sockaddr*>(&address),
                       sizeof(address)) == 0;
  close(fd);
  return ok;
}

// Shared memory is same-host only: a client connected over a network
// address is refused (FAILED_PRECONDITION) before anything is opened, even
// when it names memory that is really its own; over loopback (IPv4 or
// IPv6) it is served.
TEST_F(ShmTenantTest, OnlyClientsOnThisHostMayLendMemory) {
  const std::string ip = NonLoopbackAddress();
  if (ip.empty()) GTEST_SKIP() << "no network address but loopback";
  const bool ipv6 = HasIpv6Loopback();
  // [::] takes IPv4 connections too.
  Start({"--shared-memory", ipv6 ? "--listen=[::]:0" : "--listen=0.0.0.0:0"});
  const std::string& local = server_->address();  // 127.0.0.1:PORT
  const std::string port = local.substr(local.rfind(':'));
  std::unique_ptr<Client> remote = Client::Connect(ip + port, As(kBobToken));
  const std::string token = NewToken();
  const int fd = MakeMemfd(8192, token, F_SEAL_SHRINK | F_SEAL_SEAL);
  const grpc::Status far = RawOpenMemfd(*remote, getpid(), fd, 8192, token);
  EXPECT_EQ(far.error_code(), grpc::StatusCode::FAILED_PRECONDITION)
      << far.error_message();
  EXPECT_NE(far.error_message().find("host"), std::string::npos)
      << far.error_message();
  EXPECT_TRUE(remote->Stats().ok());  // other calls are served from there
  // The same memory, over loopback.
  EXPECT_TRUE(RawOpenMemfd(*Bob(), getpid(), fd, 8192, token).ok());
  if (ipv6) {
    // Memory of its own: the region above is lent until the server has
    // seen that session end, a moment after the call returns.
    const int fd6 = MakeMemfd(8192, token, F_SEAL_SHRINK | F_SEAL_SEAL);
    std::unique_ptr<Client> v6 = Client::Connect("[::1]" + port, As(kBobToken));
    const grpc::Status near = RawOpenMemfd(*v6, getpid(), fd6, 8192, token);
    EXPECT_TRUE(near.ok()) << near.error_message();
    close(fd6);
  }
  close(fd);
}

}  // namespace
}  // namespace tensorcast::testing
