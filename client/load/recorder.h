// What a load run measures. A Recorder belongs to one worker thread, which
// alone calls Record(); other threads may read its live counters at any
// time (relaxed atomics, for the progress line) and everything else after
// the worker has finished. Per-second figures go, a second at a time, to a
// SeriesStore shared by all recorders (thread-safe). Totals merge the
// recorders into the run's figures. Times are steady-clock nanoseconds.
#ifndef TENSORCAST_CLIENT_LOAD_RECORDER_H_
#define TENSORCAST_CLIENT_LOAD_RECORDER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "client/load/histogram.h"
#include "client/load/options.h"
#include "common/mutex.h"

namespace tensorcast::load {

// A send this much behind its scheduled time counts as late (open loop).
inline constexpr int64_t kLateSendNs = 1'000'000;
inline constexpr int kNumStatusCodes = 17;  // gRPC codes 0..16

// One measured request.
struct Sample {
  RequestKind kind = RequestKind::kInfo;
  int64_t intended_ns = 0;  // scheduled send (open loop); else = sent_ns
  int64_t sent_ns = 0;
  int64_t done_ns = 0;
  int64_t bytes = 0;  // payload moved (fetch, put); 0 on failure
  int node = 0;       // the cluster node it went to (index); 0 otherwise
  absl::StatusCode code = absl::StatusCode::kOk;
  // The failure's message (copied by Record() for the first of each code).
  absl::string_view message;
};

// One second of the measurement, by completion time. Latency is of the
// successful requests, from the intended send time.
struct SecondStats {
  int64_t interval_ns = 1'000'000'000;  // shorter for the last, partial one
  uint64_t requests = 0;                // successes and failures
  uint64_t errors = 0;
  int64_t bytes = 0;
  Histogram latency;
  void Merge(const SecondStats& other);
};

// Successful requests feed the histograms; `requests` counts failures too.
// The figures of one kind of request, or of one node's requests.
struct KindTotals {
  uint64_t requests = 0;
  uint64_t errors = 0;
  int64_t bytes = 0;
  Histogram latency;  // from the intended send time
  void Merge(const KindTotals& other);
};

struct Totals {
  uint64_t requests = 0;
  int64_t bytes = 0;
  std::array<uint64_t, kNumStatusCodes> errors{};  // by code; [0] unused
  // The first message seen with each code (by this recorder; after a merge,
  // the first recorder's that had one).
  std::array<std::string, kNumStatusCodes> error_messages;
  Histogram latency;   // from the intended send (corrected, open loop)
  Histogram service;   // from the actual send
  Histogram send_lag;  // actual send - intended send (open loop)
  std::array<KindTotals, kNumRequestKinds> kinds;
  // By Sample::node: as many as the highest node index recorded + 1.
  std::vector<KindTotals> nodes;
  uint64_t late_sends = 0;
  int64_t max_send_lag_ns = 0;
  int64_t last_done_ns = 0;  // latest completion recorded; 0 if none
  uint64_t error_count() const;
  // The code most requests failed with (the lowest on a tie); 0 (OK) when
  // none failed.
  int dominant_error() const;
  void Merge(const Totals& other);
};

// Sets each second's interval for a measurement of `duration_ns`, folding
// a last partial second shorter than 100 ms into the one before (so that a
// few stragglers do not make a spike in the per-second rates).
void FinishSeries(int64_t duration_ns, std::vector<SecondStats>* series);

class SeriesStore {
 public:
  void Add(int64_t second, const SecondStats& stats) ABSL_LOCKS_EXCLUDED(mu_);
  // Seconds 0..n-1, or further if a later one was added; missing ones are
  // empty.
  std::vector<SecondStats> Take(int64_t n) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Mutex mu_;
  std::map<int64_t, SecondStats> seconds_ ABSL_GUARDED_BY(mu_);
};

class Recorder {
 public:
  // `t0_ns`: the start of the measurement (second 0 of the series).
  Recorder(int64_t t0_ns, SeriesStore* series) : t0_(t0_ns), series_(series) {}
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // A measured request (done_ns >= t0).
  void Record(const Sample& sample);
  // Sends the unfinished second to the store; call when the worker ends.
  void Flush();

  uint64_t live_requests() const {
    return live_requests_.load(std::memory_order_relaxed);
  }
  uint64_t live_errors() const {
    return live_errors_.load(std::memory_order_relaxed);
  }
  int64_t live_bytes() const {
    return live_bytes_.load(std::memory_order_relaxed);
  }
  // Read only after the worker has finished.
  const Totals& totals() const { return totals_; }

 private:
  // Constant after construction.
  const int64_t t0_;
  SeriesStore* const series_;
  // Written by the owning worker only.
  Totals totals_;
  int64_t second_ = -1;
  SecondStats current_;
  std::atomic<uint64_t> live_requests_{0};
  std::atomic<uint64_t> live_errors_{0};
  std::atomic<int64_t> live_bytes_{0};
};

}  // namespace tensorcast::load

#endif  // TENSORCAST_CLIENT_LOAD_RECORDER_H_
