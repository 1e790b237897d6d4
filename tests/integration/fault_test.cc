// Faults against the real server: clients killed mid-Put and mid-Fetch (the
// real CLI, SIGKILL), SIGTERM during 16 streams, memory exhausted by 32
// concurrent Puts, and 1,000 connections opened and dropped. After each:
// the server is alive and holds nothing it should not. (A handle deleted
// while it is being fetched: rpc_test's DeleteWhileFetchingCompletesTheStream.)
#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

using Clock = std::chrono::steady_clock;

const std::string kCli = std::string(TENSORCAST_BIN_DIR) + "/tensorcast";

// A .npy v1.0 header for a 1-D uint8 array of n elements.
std::string NpyHeader(int64_t n) {
  std::string dict = absl::StrCat(
      "{'descr': '|u1', 'fortran_order': False, 'shape': (", n, ",), }");
  const size_t total = (10 + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - 10 - dict.size() - 1, ' ');
  dict.push_back('\n');
  std::string h = "\x93NUMPY";
  h.push_back('\x01');
  h.push_back('\x00');
  h.push_back(static_cast<char>(dict.size() & 0xff));
  h.push_back(static_cast<char>(dict.size() >> 8));
  return h + dict;
}

// Waits up to 10 s for `done` to hold.
template <typename Pred>
bool Eventually(Pred done) {
  for (int i = 0; i < 500; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

int64_t ActiveStreams(Client& client) {
  absl::StatusOr<v1::StatsResponse> s = client.Stats();
  return s.ok() ? s->active_streams() : -1;
}

int OpenFds(pid_t pid) {
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(
           "/proc/" + std::to_string(pid) + "/fd")) {
    ++n;
  }
  return n;
}

TEST(FaultTest, ClientKilledMidPutLeavesNoTensor) {
  ServerProcess server;
  TempDir dir;
  const std::string fifo = dir.File("in.npy");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const pid_t cli =
      SpawnProcess({kCli, "--server=" + server.address(), "put", fifo},
                   dir.File("out"), dir.File("err"));
  ASSERT_GT(cli, 0);
  const int fd = open(fifo.c_str(), O_WRONLY);  // the CLI opens it to read
  ASSERT_GE(fd, 0);
  const int64_t n = 32 << 20;
  const std::string header = NpyHeader(n);
  ASSERT_EQ(write(fd, header.data(), header.size()),
            static_cast<ssize_t>(header.size()));
  const std::string piece(1 << 20, '\x5a');
  for (int i = 0; i < 8; ++i) {  // a quarter of the data
    ASSERT_EQ(write(fd, piece.data(), piece.size()),
              static_cast<ssize_t>(piece.size()));
  }
  // The upload is under way on the server.
  EXPECT_TRUE(Eventually([&] { return ActiveStreams(server.client()) == 1; }));
  kill(cli, SIGKILL);
  EXPECT_EQ(WaitForExit(cli), -SIGKILL);
  close(fd);

  EXPECT_TRUE(Eventually([&] { return ActiveStreams(server.client()) == 0; }));
  absl::StatusOr<std::vector<v1::TensorInfo>> all = server.client().List();
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty()) << "a half-uploaded tensor was stored";
  EXPECT_EQ(CpuAllocatedWhenSettled(server.client()), 0);
  EXPECT_TRUE(server.client().Health().ok());
}

TEST(FaultTest, ClientKilledMidFetchEndsTheStream) {
  ServerProcess server;
  TempDir dir;
  const int64_t n = 64 << 20;
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_UINT8);
  create.add_shape(n);
  create.set_full(7);
  absl::StatusOr<v1::TensorInfo> t = server.client().Create(create);
  ASSERT_TRUE(t.ok()) << t.status();

  // The CLI writes the .npy to a pipe that is read a little, then not at
  // all: it blocks mid-stream, and is killed there.
  const std::string fifo = dir.File("out.npy");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int rd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(rd, 0);
  const pid_t cli = SpawnProcess(
      {kCli, "--server=" + server.address(), "get", t->handle(), "-o", "-"},
      fifo, dir.File("err"));
  ASSERT_GT(cli, 0);
  int64_t got = 0;
  std::vector<char> buf(1 << 16);
  const Clock::time_point until = Clock::now() + std::chrono::seconds(20);
  while (got < (1 << 20) && Clock::now() < until) {
    pollfd p{rd, POLLIN, 0};
    poll(&p, 1, 100);
    const ssize_t r = read(rd, buf.data(), buf.size());
    if (r > 0) got += r;
  }
  ASSERT_GE(got, 1 << 20) << "the CLI's fetch did not start";
  EXPECT_TRUE(Eventually([&] { return ActiveStreams(server.client()) == 1; }));
  kill(cli, SIGKILL);
  EXPECT_EQ(WaitForExit(cli), -SIGKILL);
  close(rd);

  EXPECT_TRUE(Eventually([&] { return ActiveStreams(server.client()) == 0; }));
  EXPECT_TRUE(server.client().Health().ok());
  // The tensor is intact, and only it is held.
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  absl::StatusOr<std::string> bytes =
      server.client().FetchBytes(t->handle(), raw);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_EQ(*bytes, std::string(n, '\x07'));
  EXPECT_EQ(CpuAllocatedWhenSettled(server.client(), n), n);
}

// 16 streams in flight when SIGTERM arrives: 8 that finish within the grace
// period do, 8 that would not are cancelled; the server exits 0 within the
// grace period (plus start-up slack), and no Put reports success for a
// tensor it did not store whole.
TEST(FaultTest, SigtermDuringSixteenStreamsDrainsWithinTheGrace) {
  ServerProcess server({"--shutdown-grace=2"});
  // Quick fetches read 16 MiB; slow ones 128 MiB, more than the socket and
  // HTTP/2 buffers can hold, so the server cannot finish them early.
  auto make = [&](int64_t n) {
    v1::CreateRequest create;
    create.set_dtype(v1::DTYPE_UINT8);
    create.add_shape(n);
    create.set_full(3);
    return server.client().Create(create);
  };
  absl::StatusOr<v1::TensorInfo> quick_src = make(16 << 20);
  absl::StatusOr<v1::TensorInfo> slow_src = make(128 << 20);
  ASSERT_TRUE(quick_src.ok() && slow_src.ok());

  std::atomic<int> started{0};
  std::atomic<bool> signalled{false};
  std::atomic<bool> exited{false};  // then the clients stop pacing
  struct Result {
    absl::Status status;
    int64_t bytes = 0;
    bool quick = false;
  };
  std::vector<Result> results(16);
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&, i] {
      std::unique_ptr<Client> client = Client::Connect(server.address());
      Result& r = results[i];
      r.quick = i % 2 == 0;
      // Quick streams pause 1 ms per piece once the signal is sent (~0.3 s
      // in all); slow ones 200 ms (minutes in all).
      const auto pace = [&] {
        if (exited.load()) return;
        if (signalled.load()) {
          std::this_thread::sleep_for(
              std::chrono::milliseconds(r.quick ? 1 : 200));
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      };
      if (i < 8) {
        FetchOptions raw;
        raw.format = v1::FORMAT_RAW;
        raw.chunk_bytes = 64 << 10;
        bool counted = false;
        const std::string& ref =
            r.quick ? quick_src->handle() : slow_src->handle();
        absl::StatusOr<v1::FetchHeader> h =
            client->Fetch(ref, raw, [&](absl::string_view b) {
              if (!counted) {
                counted = true;
                ++started;
              }
              r.bytes += static_cast<int64_t>(b.size());
              pace();
              return absl::OkStatus();
            });
        r.status = h.status();
      } else {
        const int64_t n = 16 << 20;
        PutOptions put;
        put.format = v1::FORMAT_RAW;
        put.dtype = v1::DTYPE_UINT8;
        put.shape = {n};
        int64_t sent = 0;
        absl::StatusOr<v1::TensorInfo> info = client->Put(
            put,
            [&](char* buffer, size_t size) -> absl::StatusOr<size_t> {
              if (sent == 0) ++started;
              const size_t k = std::min<size_t>(
                  {size, size_t{64} << 10, static_cast<size_t>(n - sent)});
              std::memset(buffer, 9, k);
              sent += static_cast<int64_t>(k);
              pace();
              return k;
            },
            n);
        r.status = info.status();
        if (info.ok()) {
          r.bytes = info->nbytes();
          EXPECT_EQ(info->nbytes(), n) << "a Put succeeded with a part";
        }
      }
    });
  }
  ASSERT_TRUE(Eventually([&] { return started.load() == 16; }));
  // A client's first bytes can be on their way before the server has
  // admitted its call: wait until the server counts all 16.
  ASSERT_TRUE(Eventually([&] { return ActiveStreams(server.client()) == 16; }));
  const Clock::time_point t0 = Clock::now();
  signalled = true;
  kill(server.pid(), SIGTERM);
  const int code = WaitForExit(server.pid());
  const double seconds =
      std::chrono::duration<double>(Clock::now() - t0).count();
  exited = true;
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(code, 0);
  EXPECT_LT(seconds, 2 + 6) << "did not drain within the grace period";
  for (int i = 0; i < 16; ++i) {
    const Result& r = results[i];
    SCOPED_TRACE(absl::StrCat(i < 8 ? "fetch " : "put ", i,
                              r.quick ? " (quick)" : " (slow)"));
    if (r.quick) {
      EXPECT_TRUE(r.status.ok()) << r.status;
      EXPECT_EQ(r.bytes, 16 << 20);
    } else {
      EXPECT_FALSE(r.status.ok()) << "a slow stream outlived the grace";
      EXPECT_TRUE(r.status.code() == absl::StatusCode::kCancelled ||
                  r.status.code() == absl::StatusCode::kUnavailable)
          << r.status;
    }
  }
  // The harness's own Stop() must not signal a recycled pid.
  server.Forget();
}

TEST(FaultTest, ThirtyTwoPutsExhaustMemoryAndTheRestAreIntact) {
  ServerProcess server({"--memory-limit=64MiB"});
  const int64_t n = 4 << 20;  // 32 x 4 MiB = twice the limit
  std::vector<absl::StatusOr<v1::TensorInfo>> results(
      32, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&, i] {
      std::unique_ptr<Client> client = Client::Connect(server.address());
      std::string data(static_cast<size_t>(n), static_cast<char>(i));
      ++ready;
      while (ready.load() < 32) std::this_thread::yield();
      PutOptions put;
      put.format = v1::FORMAT_RAW;
      put.dtype = v1::DTYPE_UINT8;
      put.shape = {n};
      results[i] = client->PutBuffer(put, data);
    });
  }
  for (std::thread& t : threads) t.join();
  int ok = 0;
  int exhausted = 0;
  std::vector<std::string> handles;
  for (int i = 0; i < 32; ++i) {
    if (results[i].ok()) {
      ++ok;
      handles.push_back(results[i]->handle());
      FetchOptions raw;
      raw.format = v1::FORMAT_RAW;
      absl::StatusOr<std::string> back =
          server.client().FetchBytes(results[i]->handle(), raw);
      ASSERT_TRUE(back.ok()) << back.status();
      EXPECT_EQ(*back,
                std::string(static_cast<size_t>(n), static_cast<char>(i)))
          << "put " << i << " came back changed";
    } else {
      EXPECT_EQ(results[i].status().code(),
                absl::StatusCode::kResourceExhausted)
          << results[i].status();
      ++exhausted;
    }
  }
  EXPECT_GT(ok, 0);
  EXPECT_LE(ok, 16);
  EXPECT_GE(exhausted, 16);
  EXPECT_TRUE(server.client().Health().ok());
  absl::StatusOr<int> deleted = server.client().Delete(handles);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(*deleted, ok);
  EXPECT_EQ(CpuAllocatedWhenSettled(server.client()), 0);
  // Room again for what was refused.
  PutOptions put;
  put.format = v1::FORMAT_RAW;
  put.dtype = v1::DTYPE_UINT8;
  put.shape = {n};
  EXPECT_TRUE(server.client()
                  .PutBuffer(put, std::string(static_cast<size_t>(n), 'x'))
                  .ok());
}

TEST(FaultTest, AThousandConnectionsOpenedAndDropped) {
  ServerProcess server;
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      server.address().substr(server.address().rfind(':') + 1), &port));
  // Let the server settle, then count its descriptors.
  ASSERT_TRUE(server.client().Health().ok());
  const int baseline = OpenFds(server.pid());
  // 500 raw TCP connections, in batches of 100: half closed at once, half
  // after sending bytes that are not HTTP/2.
  for (int batch = 0; batch < 5; ++batch) {
    std::vector<int> fds;
    for (int i = 0; i < 100; ++i) {
      int s = socket(AF_INET, SOCK_STREAM, 0);
      ASSERT_GE(s, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(port));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ASSERT_EQ(connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
                0);
      if (i % 2 == 1) {
        const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        (void)send(s, junk, sizeof(junk) - 1, MSG_NOSIGNAL);
      }
      fds.push_back(s);
    }
    for (int s : fds) close(s);
  }
  // 500 gRPC connections (each its own), in batches of 100: one call each,
  // then dropped.
  for (int batch = 0; batch < 5; ++batch) {
    std::vector<std::unique_ptr<Client>> clients;
    for (int i = 0; i < 100; ++i) {
      grpc::ChannelArguments args = DefaultChannelArguments();
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      clients.push_back(std::make_unique<Client>(grpc::CreateCustomChannel(
          server.address(), grpc::InsecureChannelCredentials(), args)));
      EXPECT_TRUE(clients.back()->Health().ok());
    }
  }
  EXPECT_TRUE(server.client().Health().ok());
  // The server let go of every connection.
  EXPECT_TRUE(Eventually([&] { return OpenFds(server.pid()) <= baseline + 4; }))
      << OpenFds(server.pid()) << " descriptors open, " << baseline
      << " before";
}

}  // namespace
}  // namespace tensorcast::testing
