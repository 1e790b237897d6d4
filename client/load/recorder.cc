#include "client/load/recorder.h"

#include <algorithm>

namespace tensorcast::load {

void SecondStats::Merge(const SecondStats& other) {
  requests += other.requests;
  errors += other.errors;
  bytes += other.bytes;
  latency.Merge(other.latency);
}

void FinishSeries(int64_t duration_ns, std::vector<SecondStats>* series) {
  constexpr int64_t kSecond = 1'000'000'000;
  for (size_t i = 0; i < series->size(); ++i) {
    const int64_t from = static_cast<int64_t>(i) * kSecond;
    (*series)[i].interval_ns =
        std::clamp<int64_t>(duration_ns - from, 1, kSecond);
  }
  if (series->size() >= 2 && series->back().interval_ns < kSecond / 10) {
    SecondStats last = std::move(series->back());
    series->pop_back();
    series->back().Merge(last);
    series->back().interval_ns += last.interval_ns;
  }
}

void KindTotals::Merge(const KindTotals& other) {
  requests += other.requests;
  errors += other.errors;
  bytes += other.bytes;
  latency.Merge(other.latency);
}

uint64_t Totals::error_count() const {
  uint64_t n = 0;
  for (uint64_t e : errors) n += e;
  return n;
}

int Totals::dominant_error() const {
  int code = 0;  // errors[0] stays 0
  for (int c = 1; c < kNumStatusCodes; ++c) {
    if (errors[c] > errors[code]) code = c;
  }
  return code;
}

void Totals::Merge(const Totals& other) {
  requests += other.requests;
  bytes += other.bytes;
  for (int i = 0; i < kNumStatusCodes; ++i) {
    errors[i] += other.errors[i];
    if (error_messages[i].empty()) error_messages[i] = other.error_messages[i];
  }
  latency.Merge(other.latency);
  service.Merge(other.service);
  send_lag.Merge(other.send_lag);
  for (int k = 0; k < kNumRequestKinds; ++k) kinds[k].Merge(other.kinds[k]);
  if (nodes.size() < other.nodes.size()) nodes.resize(other.nodes.size());
  for (size_t n = 0; n < other.nodes.size(); ++n)
    nodes[n].Merge(other.nodes[n]);
  late_sends += other.late_sends;
  max_send_lag_ns = std::max(max_send_lag_ns, other.max_send_lag_ns);
  last_done_ns = std::max(last_done_ns, other.last_done_ns);
}

void SeriesStore::Add(int64_t second, const SecondStats& stats) {
  MutexLock lock(&mu_);
  seconds_[second].Merge(stats);
}

std::vector<SecondStats> SeriesStore::Take(int64_t n) {
  MutexLock lock(&mu_);
  if (!seconds_.empty()) n = std::max(n, seconds_.rbegin()->first + 1);
  std::vector<SecondStats> out(static_cast<size_t>(std::max<int64_t>(n, 0)));
  for (auto& [second, stats] : seconds_) {
    if (second >= 0) out[second] = std::move(stats);
  }
  seconds_.clear();
  return out;
}

void Recorder::Record(const Sample& s) {
  const int64_t second = (s.done_ns - t0_) / 1'000'000'000;
  if (second != second_) {
    Flush();
    second_ = second;
  }
  const bool ok = s.code == absl::StatusCode::kOk;
  const int code = static_cast<int>(s.code);
  KindTotals& kind = totals_.kinds[static_cast<int>(s.kind)];
  const size_t n = static_cast<size_t>(std::max(s.node, 0));
  if (totals_.nodes.size() <= n) totals_.nodes.resize(n + 1);
  KindTotals& node = totals_.nodes[n];
  ++totals_.requests;
  ++kind.requests;
  ++node.requests;
  ++current_.requests;
  if (ok) {
    const int64_t latency = s.done_ns - s.intended_ns;
    totals_.latency.Record(latency);
    totals_.service.Record(s.done_ns - s.sent_ns);
    kind.latency.Record(latency);
    node.latency.Record(latency);
    current_.latency.Record(latency);
    totals_.bytes += s.bytes;
    kind.bytes += s.bytes;
    node.bytes += s.bytes;
    current_.bytes += s.bytes;
    live_bytes_.store(totals_.bytes, std::memory_order_relaxed);
  } else {
    const int slot = code >= 0 && code < kNumStatusCodes ? code : 2;
    if (totals_.errors[slot]++ == 0) {
      totals_.error_messages[slot] = std::string(s.message);
    }
    ++kind.errors;
    ++node.errors;
    ++current_.errors;
    live_errors_.store(live_errors_.load(std::memory_order_relaxed) + 1,
                       std::memory_order_relaxed);
  }
  const int64_t lag = s.sent_ns - s.intended_ns;
  totals_.send_lag.Record(lag);
  if (lag > kLateSendNs) ++totals_.late_sends;
  totals_.max_send_lag_ns = std::max(totals_.max_send_lag_ns, lag);
  totals_.last_done_ns = std::max(totals_.last_done_ns, s.done_ns);
  live_requests_.store(totals_.requests, std::memory_order_relaxed);
}

void Recorder::Flush() {
  if (second_ >= 0 && current_.requests > 0) {
    series_->Add(second_, current_);
  }
  current_ = SecondStats();
  second_ = -1;
}

}  // namespace tensorcast::load
