#include "bench/bench_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tensorcast {
namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::unique_ptr<char[]> PrefaultedBuffer(int64_t bytes) {
  std::unique_ptr<char[]> buf(new char[static_cast<size_t>(bytes)]);
  std::memset(buf.get(), 1, static_cast<size_t>(bytes));
  return buf;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t i = static_cast<size_t>(q * static_cast<double>(sorted.size()));
  return sorted[std::min(i, sorted.size() - 1)];
}

absl::StatusOr<std::pair<int, int>> LoopbackPair(int buffer_bytes) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) return absl::InternalError("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(listener);
    return absl::InternalError(absl::StrCat("listen: ", strerror(errno)));
  }
  int sender = socket(AF_INET, SOCK_STREAM, 0);
  if (sender < 0 ||
      connect(sender, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (sender >= 0) close(sender);
    close(listener);
    return absl::InternalError(absl::StrCat("connect: ", strerror(errno)));
  }
  int receiver = accept(listener, nullptr, nullptr);
  close(listener);
  if (receiver < 0) {
    close(sender);
    return absl::InternalError(absl::StrCat("accept: ", strerror(errno)));
  }
  if (buffer_bytes > 0 &&
      (setsockopt(sender, SOL_SOCKET, SO_SNDBUF, &buffer_bytes,
                  sizeof(buffer_bytes)) != 0 ||
       setsockopt(receiver, SOL_SOCKET, SO_RCVBUF, &buffer_bytes,
                  sizeof(buffer_bytes)) != 0)) {
    close(sender);
    close(receiver);
    return absl::InternalError(absl::StrCat("setsockopt: ", strerror(errno)));
  }
  return std::make_pair(sender, receiver);
}

absl::StatusOr<double> TimeTcpTransfer(int sender, int receiver,
                                       const char* src, char* dst,
                                       int64_t bytes, int64_t write_bytes) {
  bool send_ok = true;
  const Clock::time_point t0 = Clock::now();
  std::thread send_thread([&] {
    for (int64_t pos = 0; pos < bytes;) {
      const size_t n = static_cast<size_t>(std::min(write_bytes, bytes - pos));
      ssize_t w = write(sender, src + pos, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        send_ok = false;
        break;
      }
      pos += w;
    }
  });
  int64_t got = 0;
  while (got < bytes) {
    ssize_t r = read(receiver, dst + got, static_cast<size_t>(bytes - got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += r;
  }
  const double seconds = SecondsSince(t0);
  send_thread.join();
  if (!send_ok || got != bytes) {
    return absl::DataLossError("the TCP transfer fell short");
  }
  return seconds;
}

absl::StatusOr<double> TimeLoopbackTcp(const char* src, char* dst,
                                       int64_t bytes) {
  absl::StatusOr<std::pair<int, int>> pair = LoopbackPair();
  if (!pair.ok()) return pair.status();
  absl::StatusOr<double> seconds =
      TimeTcpTransfer(pair->first, pair->second, src, dst, bytes);
  close(pair->first);
  close(pair->second);
  return seconds;
}

absl::StatusOr<double> TimeBestTcp(const char* src, char* dst, int64_t bytes,
                                   int runs) {
  constexpr int kBuffers[] = {0, 4 << 20};
  constexpr int64_t kWrites[] = {256 << 10, 1 << 20, 4 << 20};
  double best = 0;
  for (int buffer_bytes : kBuffers) {
    for (int64_t write_bytes : kWrites) {
      absl::StatusOr<std::pair<int, int>> pair = LoopbackPair(buffer_bytes);
      if (!pair.ok()) return pair.status();
      absl::StatusOr<double> seconds;
      for (int i = 0; i <= runs; ++i) {  // i == 0: the untimed warm-up
        seconds = TimeTcpTransfer(pair->first, pair->second, src, dst, bytes,
                                  write_bytes);
        if (!seconds.ok()) break;
        if (i > 0 && (best == 0 || *seconds < best)) best = *seconds;
      }
      close(pair->first);
      close(pair->second);
      if (!seconds.ok()) return seconds.status();
    }
  }
  return best;
}

absl::Status ServerProcess::Start(const std::string& binary,
                                  const std::string& dir,
                                  std::vector<std::string> flags) {
  if (access(binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat(binary,
                     " is not executable; build the tensorcast-server target "
                     "(or set TENSORCAST_BIN_DIR)"));
  }
  const std::string port_file = dir + "/port";
  std::vector<std::string> args = {binary, "--listen=127.0.0.1:0",
                                   "--port-file=" + port_file,
                                   "--log-level=warn"};
  args.insert(args.end(), flags.begin(), flags.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = fork();
  if (pid_ < 0) return absl::InternalError("fork failed");
  if (pid_ == 0) {
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  const auto t0 = std::chrono::steady_clock::now();
  while (SecondsSince(t0) < 30) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError("tensorcast-server exited during start-up");
    }
    std::ifstream in(port_file);
    if (in >> port_ && port_ > 0) return absl::OkStatus();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError("tensorcast-server wrote no port");
}

int ServerProcess::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  while (SecondsSince(t0) < 15) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid_, SIGKILL);
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return -1;
}

std::string BinDir() {
  const char* env = std::getenv("TENSORCAST_BIN_DIR");
  if (env != nullptr && *env != '\0') return env;
  std::error_code ec;
  std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : self.parent_path().string();
}

absl::StatusOr<std::unique_ptr<ScratchDir>> ScratchDir::Make(
    const std::string& prefix) {
  std::string path = "/tmp/" + prefix + "_XXXXXX";
  if (mkdtemp(path.data()) == nullptr) {
    return absl::InternalError("cannot create a temp dir");
  }
  return std::unique_ptr<ScratchDir>(new ScratchDir(std::move(path)));
}

ScratchDir::~ScratchDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

}  // namespace bench
}  // namespace tensorcast
