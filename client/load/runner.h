// RunLoad: drives a Workload against the server and measures it.
//
// Closed loop (options.rate == 0): `concurrency` threads, each sending its
// next request when the last completes; with T = workload.targets() (the
// cluster's nodes; 1 for one server) thread i works on target i mod T, on
// clients[(i / T) mod clients.size()] (so a node's workers spread over the
// clients as one server's do). Open loop: requests are scheduled at
// constant or Poisson (seeded) intervals from the start, request j for
// target j mod T; a pool of threads, grown on demand up to max_inflight
// whenever a send would be late, sends each at its time.
// Latency is measured from the scheduled time (wrk2's correction for
// coordinated omission), service time from the actual send.
//
// What is measured (warm-up never is):
//  - closed loop, --duration: requests completing in [t0, t0 + duration);
//  - open loop, --duration: requests scheduled in [t0, t0 + duration), each
//    followed to its completion (so the slow tail is never cut off);
//  - --requests=N: the first N requests sent (scheduled) at or after t0.
// A StopFlag (SIGINT) stops sending; requests completing after it are not
// measured. Blocks until every worker has finished.
#ifndef TENSORCAST_CLIENT_LOAD_RUNNER_H_
#define TENSORCAST_CLIENT_LOAD_RUNNER_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "client/cpp/client.h"
#include "client/load/options.h"
#include "client/load/recorder.h"
#include "client/load/workload.h"

namespace tensorcast::load {

// Steady-clock nanoseconds.
int64_t NowNs();

// Set once, from any thread (the signal watcher); read by the workers.
class StopFlag {
 public:
  void Request();
  bool requested() const { return flag_.load(std::memory_order_relaxed); }
  const std::atomic<bool>& flag() const { return flag_; }
  // When it was requested; INT64_MAX if not.
  int64_t at_ns() const { return at_ns_.load(); }

 private:
  std::atomic<bool> flag_{false};
  std::atomic<int64_t> at_ns_{INT64_MAX};
};

struct RunResult {
  Totals totals;
  std::vector<SecondStats> series;  // by completion second from t0
  int64_t duration_ns = 0;          // the measured window
  // Client CPU (user, sys) over `cpu_window_ns` of the measured window.
  double cpu_user_s = 0;
  double cpu_sys_s = 0;
  int64_t cpu_window_ns = 0;
  int64_t workers = 0;  // threads that sent requests
  bool interrupted = false;
  // Cluster runs: the node id of each target, the index of totals.nodes
  // ({} against one server).
  std::vector<std::string> nodes;
};

RunResult RunLoad(const LoadOptions& options, Workload& workload,
                  const std::vector<Client*>& clients, StopFlag& stop,
                  bool show_progress);

}  // namespace tensorcast::load

#endif  // TENSORCAST_CLIENT_LOAD_RUNNER_H_
