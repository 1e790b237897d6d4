#include "server/service/head_limited_server.h"

#include <httplib.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>

namespace tensorcast {
namespace {

using Clock = std::chrono::steady_clock;

// The connection's socket as httplib's Stream, buffered, with the head of
// each request bounded (bytes, deadline): past either, a read fails, and
// httplib drops the connection.
class HeadLimitedStream final : public httplib::Stream {
 public:
  HeadLimitedStream(socket_t sock, time_t read_timeout_s,
                    time_t write_timeout_s, int64_t max_head_bytes,
                    int head_seconds)
      : sock_(sock),
        max_head_bytes_(max_head_bytes),
        head_seconds_(head_seconds),
        read_timeout_ms_(static_cast<int>(read_timeout_s * 1000)),
        write_timeout_ms_(static_cast<int>(write_timeout_s * 1000)) {}

  // A request's head begins (before each request) and ends (once httplib
  // has read its headers).
  void BeginHead() {
    in_head_ = true;
    head_bytes_ = 0;
    head_deadline_ = Clock::now() + std::chrono::seconds(head_seconds_);
  }
  void EndHead() { in_head_ = false; }
  bool in_head() const { return in_head_; }
  bool buffered() const { return pos_ < len_; }

  bool is_readable() const override {
    return buffered() || Wait(POLLIN, ReadTimeoutMs());
  }
  bool is_writable() const override { return Wait(POLLOUT, write_timeout_ms_); }

  ssize_t read(char* ptr, size_t size) override {
    if (in_head_ &&
        (head_bytes_ >= max_head_bytes_ || Clock::now() >= head_deadline_)) {
      return -1;
    }
    if (!buffered()) {
      if (!Wait(POLLIN, ReadTimeoutMs())) return -1;
      if (!in_head_ && size >= sizeof(buffer_)) {
        return Retry([&] { return recv(sock_, ptr, size, 0); });  // no copy
      }
      const ssize_t n =
          Retry([&] { return recv(sock_, buffer_, sizeof(buffer_), 0); });
      if (n <= 0) return n;
      pos_ = 0;
      len_ = static_cast<size_t>(n);
    }
    size_t n = std::min(size, len_ - pos_);
    if (in_head_) {
      n = std::min(n, static_cast<size_t>(max_head_bytes_ - head_bytes_));
      head_bytes_ += static_cast<int64_t>(n);
    }
    std::memcpy(ptr, buffer_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!is_writable()) return -1;
    return Retry([&] { return send(sock_, ptr, size, MSG_NOSIGNAL); });
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    Address(&getpeername, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    Address(&getsockname, ip, port);
  }
  socket_t socket() const override { return sock_; }

 private:
  // The read timeout, shortened to the head's deadline while in a head.
  int ReadTimeoutMs() const {
    if (!in_head_) return read_timeout_ms_;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        head_deadline_ - Clock::now());
    return static_cast<int>(
        std::clamp<int64_t>(left.count(), 0, read_timeout_ms_));
  }

  // A system call, again while a signal interrupts it.
  template <typename F>
  static ssize_t Retry(F call) {
    ssize_t r;
    do {
      r = call();
    } while (r < 0 && errno == EINTR);
    return r;
  }

  bool Wait(short events, int timeout_ms) const {
    pollfd p{sock_, events, 0};
    int r;
    do {
      r = poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    return r > 0;
  }

  void Address(int (*get)(int, sockaddr*, socklen_t*), std::string& ip,
               int& port) const {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    char host[NI_MAXHOST];
    char serv[NI_MAXSERV];
    if (get(sock_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
        getnameinfo(reinterpret_cast<sockaddr*>(&addr), len, host, sizeof(host),
                    serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
      return;
    }
    ip = host;
    port = std::atoi(serv);
  }

  const socket_t sock_;
  const int64_t max_head_bytes_;
  const int head_seconds_;
  const int read_timeout_ms_;
  const int write_timeout_ms_;
  bool in_head_ = false;
  int64_t head_bytes_ = 0;
  Clock::time_point head_deadline_;
  char buffer_[4096];
  size_t pos_ = 0;
  size_t len_ = 0;
};

// Its connections read through a HeadLimitedStream, in httplib's own loop:
// requests kept alive up to keep_alive_max_count_, each awaited for
// keep_alive_timeout_sec_. (A private virtual of httplib's, overridden;
// process_request is protected.)
class HeadLimitedServer final : public httplib::Server {
 public:
  HeadLimitedServer(int64_t max_head_bytes, int head_seconds)
      : max_head_bytes_(max_head_bytes), head_seconds_(head_seconds) {}

 private:
  bool process_and_close_socket(socket_t sock) override {
    HeadLimitedStream stream(sock, read_timeout_sec_, write_timeout_sec_,
                             max_head_bytes_, head_seconds_);
    bool ret = false;
    for (size_t left = keep_alive_max_count_;
         left > 0 && svr_sock_ != INVALID_SOCKET; --left) {
      if (!stream.buffered()) {
        pollfd p{sock, POLLIN, 0};
        if (poll(&p, 1, static_cast<int>(keep_alive_timeout_sec_ * 1000)) <=
            0) {
          break;
        }
      }
      stream.BeginHead();
      bool closed = false;
      ret = process_request(stream, /*close_connection=*/left == 1, closed,
                            [&stream](httplib::Request&) { stream.EndHead(); });
      // A head httplib could not read whole (a malformed request line or
      // header, which it answers with 400): what follows on the
      // connection is the rest of that request, not the next one.
      if (!ret || closed || stream.in_head()) break;
    }
    shutdown(sock, SHUT_RDWR);
    close(sock);
    return ret;
  }

  const int64_t max_head_bytes_;
  const int head_seconds_;
};

}  // namespace

std::unique_ptr<httplib::Server> NewHeadLimitedServer(int64_t max_head_bytes,
                                                      int head_seconds) {
  return std::make_unique<HeadLimitedServer>(max_head_bytes, head_seconds);
}

}  // namespace tensorcast
