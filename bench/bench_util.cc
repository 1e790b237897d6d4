#include "bench/bench_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace tensorcast {
namespace bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kTcpWriteBytes = int64_t{1} << 20;

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

absl::StatusOr<std::pair<int, int>> LoopbackPair() {
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
  return std::make_pair(sender, receiver);
}

absl::StatusOr<double> TimeTcpTransfer(int sender, int receiver,
                                       const char* src, char* dst,
                                       int64_t bytes) {
  bool send_ok = true;
  const Clock::time_point t0 = Clock::now();
  std::thread send_thread([&] {
    for (int64_t pos = 0; pos < bytes;) {
      const size_t n =
          static_cast<size_t>(std::min(kTcpWriteBytes, bytes - pos));
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

}  // namespace bench
}  // namespace tensorcast
