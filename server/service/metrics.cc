#include "server/service/metrics.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/service/head_limited_server.h"

namespace tensorcast {
namespace {

// The HTTP endpoint's workers (each serves one connection at a time), and
// how long it waits on a client that sends or reads nothing.
constexpr size_t kWorkers = 16;
constexpr time_t kIoTimeoutSeconds = 2;
// A scrape's request line and headers, at most (head_limited_server.h).
constexpr int64_t kMaxHeadBytes = 16 << 10;

// A label value as the exposition format quotes it.
std::string LabelValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatDouble(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

// Appends "# HELP" and "# TYPE" for one metric family.
void Family(std::string* out, absl::string_view name, absl::string_view type,
            absl::string_view help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type,
                  "\n");
}

// Appends one family with a sample per device: value(device snapshot).
template <typename Value>
void PerDevice(std::string* out, const ServiceSnapshot& snapshot,
               absl::string_view name, absl::string_view type,
               absl::string_view help, Value value) {
  Family(out, name, type, help);
  for (const DeviceSnapshot& d : snapshot.devices) {
    absl::StrAppend(out, name, "{device=\"", LabelValue(d.name), "\"} ",
                    value(d), "\n");
  }
}

}  // namespace

Metrics::Metrics(std::vector<std::string> methods) {
  for (std::string& m : methods) {
    methods_.push_back(std::make_unique<Method>(std::move(m)));
  }
  methods_.push_back(std::make_unique<Method>("other"));
}

Metrics::Method* Metrics::Find(absl::string_view method) {
  for (size_t i = 0; i + 1 < methods_.size(); ++i) {
    if (methods_[i]->name == method) return methods_[i].get();
  }
  return methods_.back().get();
}

void Metrics::RecordRpc(absl::string_view method, absl::StatusCode code,
                        double seconds) {
  Method* m = Find(method);
  int c = static_cast<int>(code);
  if (c < 0 || c >= kNumCodes) c = static_cast<int>(absl::StatusCode::kUnknown);
  m->codes[c].fetch_add(1, std::memory_order_relaxed);
  if (!(seconds >= 0)) seconds = 0;  // and NaN
  const double* bound = std::lower_bound(std::begin(kLatencyBuckets),
                                         std::end(kLatencyBuckets), seconds);
  m->buckets[bound - std::begin(kLatencyBuckets)].fetch_add(
      1, std::memory_order_relaxed);
  m->sum_ns.fetch_add(static_cast<uint64_t>(std::llround(seconds * 1e9)),
                      std::memory_order_relaxed);
}

std::string Metrics::Render(const ServiceSnapshot& snapshot) const {
  std::string out;
  out.reserve(16 << 10);

  PerDevice(&out, snapshot, "tensorcast_pool_allocated_bytes", "gauge",
            "Bytes in pool blocks handed out (tensors and streams in flight).",
            [](const DeviceSnapshot& d) { return d.pool.allocated_bytes; });
  PerDevice(&out, snapshot, "tensorcast_pool_reserved_bytes", "gauge",
            "Bytes the pool holds from the system: allocated plus cached.",
            [](const DeviceSnapshot& d) { return d.pool.reserved_bytes; });
  PerDevice(
      &out, snapshot, "tensorcast_pool_peak_allocated_bytes", "gauge",
      "Highest allocated bytes since the server started.",
      [](const DeviceSnapshot& d) { return d.pool.peak_allocated_bytes; });
  PerDevice(&out, snapshot, "tensorcast_pool_peak_reserved_bytes", "gauge",
            "Highest reserved bytes since the server started.",
            [](const DeviceSnapshot& d) { return d.pool.peak_reserved_bytes; });
  PerDevice(&out, snapshot, "tensorcast_pool_limit_bytes", "gauge",
            "The pool's cap (--memory-limit); 0 = none.",
            [](const DeviceSnapshot& d) { return d.pool.limit_bytes; });
  PerDevice(&out, snapshot, "tensorcast_pool_segment_count", "gauge",
            "Segments the pool holds from the system.",
            [](const DeviceSnapshot& d) { return d.pool.segment_count; });
  PerDevice(&out, snapshot, "tensorcast_pool_alloc_count_total", "counter",
            "Successful pool allocations.",
            [](const DeviceSnapshot& d) { return d.pool.alloc_count; });
  PerDevice(&out, snapshot, "tensorcast_pool_free_count_total", "counter",
            "Blocks returned to the pool.",
            [](const DeviceSnapshot& d) { return d.pool.free_count; });
  PerDevice(&out, snapshot, "tensorcast_pool_cache_hits_total", "counter",
            "Allocations served from cached blocks.",
            [](const DeviceSnapshot& d) { return d.pool.cache_hits; });
  PerDevice(&out, snapshot, "tensorcast_pool_cache_misses_total", "counter",
            "Allocations that needed a new segment.",
            [](const DeviceSnapshot& d) { return d.pool.cache_misses; });
  PerDevice(&out, snapshot, "tensorcast_tensors_held", "gauge",
            "Tensors (handles) the server holds.",
            [](const DeviceSnapshot& d) { return d.tensors; });
  PerDevice(&out, snapshot, "tensorcast_tensor_bytes_held", "gauge",
            "Bytes of the tensors held (each view counts its own bytes; "
            "storage shared by views is counted once in the pool figures).",
            [](const DeviceSnapshot& d) { return d.tensor_bytes; });

  Family(&out, "tensorcast_rpcs_total", "counter",
         "RPCs finished, by method and gRPC status code.");
  for (const auto& m : methods_) {
    for (int c = 0; c < kNumCodes; ++c) {
      const uint64_t n = m->codes[c].load(std::memory_order_relaxed);
      // OK is always there, so every method has a series from the start.
      if (n == 0 && (c != 0 || m == methods_.back())) continue;
      absl::StrAppend(
          &out, "tensorcast_rpcs_total{method=\"", LabelValue(m->name),
          "\",code=\"",
          absl::StatusCodeToString(static_cast<absl::StatusCode>(c)), "\"} ", n,
          "\n");
    }
  }

  Family(&out, "tensorcast_rpc_duration_seconds", "histogram",
         "Time from an RPC's start to its status, by method.");
  for (const auto& m : methods_) {
    uint64_t cumulative = 0;
    uint64_t counts[kNumBuckets];
    for (size_t b = 0; b < kNumBuckets; ++b) {
      counts[b] = m->buckets[b].load(std::memory_order_relaxed);
      cumulative += counts[b];
    }
    if (m == methods_.back() && cumulative == 0) continue;
    const std::string method = LabelValue(m->name);
    cumulative = 0;
    for (size_t b = 0; b < kNumBuckets; ++b) {
      cumulative += counts[b];
      char le[32];
      if (b + 1 < kNumBuckets) {
        std::snprintf(le, sizeof(le), "%g", kLatencyBuckets[b]);
      } else {
        std::snprintf(le, sizeof(le), "+Inf");
      }
      absl::StrAppend(&out, "tensorcast_rpc_duration_seconds_bucket{method=\"",
                      method, "\",le=\"", le, "\"} ", cumulative, "\n");
    }
    absl::StrAppend(
        &out, "tensorcast_rpc_duration_seconds_sum{method=\"", method, "\"} ",
        FormatDouble(
            static_cast<double>(m->sum_ns.load(std::memory_order_relaxed)) /
            1e9),
        "\n");
    absl::StrAppend(&out, "tensorcast_rpc_duration_seconds_count{method=\"",
                    method, "\"} ", cumulative, "\n");
  }

  Family(&out, "tensorcast_put_bytes_total", "counter",
         "Tensor bytes received by Put (streamed, or read from shared "
         "memory).");
  absl::StrAppend(&out, "tensorcast_put_bytes_total ",
                  put_bytes_.load(std::memory_order_relaxed), "\n");
  Family(&out, "tensorcast_fetch_bytes_total", "counter",
         "Bytes sent by Fetch (.npy headers included; streamed, or written "
         "to shared memory).");
  absl::StrAppend(&out, "tensorcast_fetch_bytes_total ",
                  fetch_bytes_.load(std::memory_order_relaxed), "\n");
  Family(&out, "tensorcast_active_streams", "gauge",
         "Put and Fetch calls running now.");
  absl::StrAppend(&out, "tensorcast_active_streams ", snapshot.active_streams,
                  "\n");
  Family(&out, "tensorcast_build_info", "gauge",
         "Always 1; the server's version as a label.");
  absl::StrAppend(&out, "tensorcast_build_info{version=\"",
                  LabelValue(snapshot.version), "\"} 1\n");
  return out;
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    absl::string_view listen, std::function<std::string()> render) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics-listen=", listen, ": expected HOST:PORT"));
  }
  std::string host(listen.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "0.0.0.0";

  std::unique_ptr<MetricsEndpoint> e(new MetricsEndpoint());
  e->server_ = NewHeadLimitedServer(kMaxHeadBytes, kIoTimeoutSeconds);
  // A connection holds a worker for as long as it lasts, so idle and slow
  // clients must not hold them all: enough workers, short read and write
  // timeouts (a client that stops sending is dropped), and a short,
  // bounded keep-alive. Scrapes go on while up to kWorkers - 1 clients
  // dawdle; past that, new connections wait their turn.
  e->server_->new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
  e->server_->set_read_timeout(kIoTimeoutSeconds);
  e->server_->set_write_timeout(kIoTimeoutSeconds);
  e->server_->set_keep_alive_timeout(kIoTimeoutSeconds);
  e->server_->set_keep_alive_max_count(16);
  e->server_->set_payload_max_length(4096);  // GET /metrics has no body
  // SO_REUSEADDR alone: httplib's default adds SO_REUSEPORT, with which a
  // second server on the same port would bind too and share the scrapes.
  e->server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  e->server_->Get("/metrics",
                  [render = std::move(render)](const httplib::Request&,
                                               httplib::Response& res) {
                    res.set_content(render(), Metrics::kContentType);
                  });
  if (port == 0) {
    port = e->server_->bind_to_any_port(host);
  } else if (!e->server_->bind_to_port(host, port)) {
    port = -1;
  }
  if (port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on --metrics-listen=", listen,
                     " (address in use, or not a HOST:PORT this host has?)"));
  }
  e->port_ = port;
  httplib::Server* server = e->server_.get();
  auto finished = std::make_shared<std::atomic<bool>>(false);
  e->thread_ = std::thread([server, finished] {
    server->listen_after_bind();
    finished->store(true);
  });
  // stop() only stops a server that is running: wait until it is (or has
  // already given up), so the destructor cannot miss it.
  while (!server->is_running() && !finished->load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!server->is_running()) {
    e->thread_.join();
    return absl::UnavailableError(
        absl::StrCat("cannot serve --metrics-listen=", listen));
  }
  return e;
}

MetricsEndpoint::~MetricsEndpoint() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace tensorcast
