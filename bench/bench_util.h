// Helpers the C++ benchmarks share (tensorcast-bench-fetch and
// tensorcast-bench-suite-client):
//
//   SecondsSince      seconds elapsed on the steady clock since a time point
//   PrefaultedBuffer  a heap buffer with every page touched, so that page
//                     faults do not land inside a timed region
//   Median            the median of a set of figures
//   Percentile        the q-quantile of an already sorted set of figures
//   LoopbackPair      a connected TCP socket pair over 127.0.0.1
//   TimeTcpTransfer   one timed plain TCP transfer over such a pair: a sender
//                     thread writing 1 MiB writes, the calling thread reading
//                     into the destination buffer
//   TimeLoopbackTcp   the same over a fresh pair, closed after
//   TimeBestTcp       the fastest of a few TCP variants (socket buffer
//                     sizes, write sizes): the best this host does
//   ServerProcess     a tensorcast-server child on 127.0.0.1:0
//   BinDir            where the tensorcast binaries are: $TENSORCAST_BIN_DIR,
//                     else this executable's directory
//   ScratchDir        a fresh directory under /tmp, removed with its contents
//                     at destruction
//
// All are thread-compatible; none keeps state between calls.
#ifndef TENSORCAST_BENCH_BENCH_UTIL_H_
#define TENSORCAST_BENCH_BENCH_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tensorcast {
namespace bench {

// Seconds from `t0` to now on the steady clock.
double SecondsSince(std::chrono::steady_clock::time_point t0);

// A buffer of `bytes` bytes whose pages are all mapped (filled with 1s)
// before any timing starts.
std::unique_ptr<char[]> PrefaultedBuffer(int64_t bytes);

// The median of `v` (the mean of the middle two for an even count); `v`
// must not be empty.
double Median(std::vector<double> v);

// The element at rank floor(q * size) of `sorted` (ascending), clamped to the
// last; 0 for an empty vector.
double Percentile(const std::vector<double>& sorted, double q);

// A connected loopback TCP pair: {sender, receiver}. The caller closes both.
// With `buffer_bytes` > 0 the sender's SO_SNDBUF and the receiver's
// SO_RCVBUF are set to it (the kernel caps it at net.core.[wr]mem_max, and a
// set size turns the kernel's autotuning off); 0 leaves the defaults.
// INTERNAL if a socket call fails.
absl::StatusOr<std::pair<int, int>> LoopbackPair(int buffer_bytes = 0);

// Sends `bytes` bytes from `src` over `sender` (from a separate thread, in
// writes of at most `write_bytes`) and reads them from `receiver` into
// `dst`; returns the seconds from the start of sending to the last byte
// read. Does not close the sockets. DATA_LOSS if the transfer falls short.
absl::StatusOr<double> TimeTcpTransfer(int sender, int receiver,
                                       const char* src, char* dst,
                                       int64_t bytes,
                                       int64_t write_bytes = int64_t{1} << 20);

// The fastest loopback TCP transfer of `bytes` from `src` to `dst` (both
// pre-faulted by the caller) over six variants: default socket buffers and
// 4 MiB ones, each with 256 KiB, 1 MiB and 4 MiB writes. Each variant gets a
// fresh pair, one untimed transfer, then `runs` timed ones; the result is
// the least seconds seen. DATA_LOSS / INTERNAL as the calls above.
absl::StatusOr<double> TimeBestTcp(const char* src, char* dst, int64_t bytes,
                                   int runs = 1);

// TimeTcpTransfer over a LoopbackPair made for it and closed after.
absl::StatusOr<double> TimeLoopbackTcp(const char* src, char* dst,
                                       int64_t bytes);

// The server process: started with Start (SIGTERM at destruction, then
// SIGKILL if it does not exit within 15 s).
class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { Stop(); }

  // Runs `binary --listen=127.0.0.1:0 --port-file=DIR/port
  // --log-level=warn FLAGS...` and waits (up to 30 s) for its port.
  absl::Status Start(const std::string& binary, const std::string& dir,
                     std::vector<std::string> flags = {});
  int port() const { return port_; }
  // The exit status (-1 if it had to be killed or was not running).
  int Stop();

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

std::string BinDir();

class ScratchDir {
 public:
  // INTERNAL if no directory could be made.
  static absl::StatusOr<std::unique_ptr<ScratchDir>> Make(
      const std::string& prefix);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  const std::string path_;
};

}  // namespace bench
}  // namespace tensorcast

#endif  // TENSORCAST_BENCH_BENCH_UTIL_H_
