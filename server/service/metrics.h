// Prometheus metrics: the counters and histograms the service updates as
// RPCs run (lock-free atomics), the figures gathered at scrape time (pool
// stats, tensors held: a ServiceSnapshot, the same figures the Stats RPC
// returns), their text exposition (format 0.0.4), and the HTTP endpoint
// that serves it on GET /metrics (--metrics-listen).
//
// Every name starts tensorcast_. Per device (label device="cpu", "cuda:0"):
// tensorcast_pool_{allocated,reserved,peak_allocated,peak_reserved,limit}_
// bytes, tensorcast_pool_segment_count (gauges),
// tensorcast_pool_{alloc_count,free_count,cache_hits,cache_misses}_total
// (counters; the pool's stats under PyTorch's names),
// tensorcast_tensors_held and tensorcast_tensor_bytes_held (gauges). Per
// RPC: tensorcast_rpcs_total{method,code} and the histogram
// tensorcast_rpc_duration_seconds{method}. Then tensorcast_put_bytes_total,
// tensorcast_fetch_bytes_total, tensorcast_active_streams and
// tensorcast_build_info{version}.
#ifndef TENSORCAST_SERVER_SERVICE_METRICS_H_
#define TENSORCAST_SERVER_SERVICE_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/memory/caching_pool.h"

namespace httplib {
class Server;
}

namespace tensorcast {

// One device's figures at a point in time.
struct DeviceSnapshot {
  std::string name;  // "cpu", "cuda:0"
  std::string description;
  PoolStats pool;
  int64_t tensors = 0;       // tensors held on the device
  int64_t tensor_bytes = 0;  // their bytes (a view counts its own)
};

// The service's figures at a point in time (ServiceContext::Snapshot).
struct ServiceSnapshot {
  std::vector<DeviceSnapshot> devices;
  int64_t tensors = 0;
  int64_t active_streams = 0;  // Put and Fetch calls running
  std::string version;
};

// Thread-safe. Recording is a few relaxed atomic additions; Render reads
// them without stopping writers (a scrape may see one RPC in the counter
// and not yet in the histogram).
class Metrics {
 public:
  // Upper bounds of the latency histogram's buckets, in seconds (+Inf
  // follows).
  static constexpr double kLatencyBuckets[] = {
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
      0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
  static constexpr size_t kNumBuckets = std::size(kLatencyBuckets) + 1;

  // `methods`: the RPC names reported (each with its series from the
  // start). A name not in the list is counted as method="other".
  explicit Metrics(std::vector<std::string> methods);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // An RPC finished with `code` after `seconds`.
  void RecordRpc(absl::string_view method, absl::StatusCode code,
                 double seconds);
  // Tensor bytes received by Put, sent by Fetch.
  void AddPutBytes(int64_t n) {
    put_bytes_.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
  }
  void AddFetchBytes(int64_t n) {
    fetch_bytes_.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
  }

  // The text exposition of everything, with the gauges from `snapshot`.
  std::string Render(const ServiceSnapshot& snapshot) const;

  // The content type Render's text is served with.
  static constexpr char kContentType[] =
      "text/plain; version=0.0.4; charset=utf-8";

 private:
  static constexpr int kNumCodes = 17;  // OK .. UNAUTHENTICATED
  struct Method {
    explicit Method(std::string n) : name(std::move(n)) {}
    const std::string name;
    std::atomic<uint64_t> codes[kNumCodes] = {};
    std::atomic<uint64_t> buckets[kNumBuckets] = {};  // not cumulative
    std::atomic<uint64_t> sum_ns{0};
  };
  Method* Find(absl::string_view method);

  std::vector<std::unique_ptr<Method>> methods_;  // the last is "other"
  std::atomic<uint64_t> put_bytes_{0};
  std::atomic<uint64_t> fetch_bytes_{0};
};

// Serves GET /metrics over HTTP (cpp-httplib) on its own threads, with the
// text `render` returns at each scrape. Other paths are 404. Idle or slow
// clients are dropped after 2 s without progress, and a handful of them
// leave workers for the scrapes (16 in all).
class MetricsEndpoint {
 public:
  // `listen` is HOST:PORT ("0.0.0.0:9090", "[::]:9090", "127.0.0.1:0"; port
  // 0 picks a free one). INVALID_ARGUMENT for a malformed address,
  // UNAVAILABLE when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      absl::string_view listen, std::function<std::string()> render);
  // Stops serving and waits for the thread.
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  int port() const { return port_; }

 private:
  MetricsEndpoint() = default;

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_METRICS_H_
