#include "client/load/runner.h"

#include <sys/prctl.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "common/mutex.h"

namespace tensorcast::load {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void StopFlag::Request() {
  int64_t none = INT64_MAX;
  at_ns_.compare_exchange_strong(none, NowNs());
  flag_.store(true);
}

namespace {

constexpr int64_t kSecondNs = 1'000'000'000;
// Open loop: threads started before the first send; more join when late.
constexpr int64_t kInitialOpenWorkers = 8;

void SleepUntilNs(int64_t t) {
  std::this_thread::sleep_until(
      std::chrono::steady_clock::time_point(std::chrono::nanoseconds(t)));
}

struct CpuTimes {
  double user = 0, sys = 0;
};

CpuTimes ProcessCpu() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return {s(u.ru_utime), s(u.ru_stime)};
}

// Draws request kinds by weight.
class KindPicker {
 public:
  explicit KindPicker(const Mix& mix) {
    int64_t total = 0;
    for (int k = 0; k < kNumRequestKinds; ++k) {
      total += mix[k];
      cumulative_[k] = total;
      if (mix[k] > 0) {
        only_ = only_ == -2 ? k : -1;  // -2: none yet, -1: several
      }
    }
    total_ = total;
  }
  template <typename Rng>
  RequestKind Pick(Rng& rng) const {
    if (only_ >= 0) return static_cast<RequestKind>(only_);
    const int64_t r =
        static_cast<int64_t>(rng() % static_cast<uint64_t>(total_));
    for (int k = 0; k < kNumRequestKinds; ++k) {
      if (r < cumulative_[k]) return static_cast<RequestKind>(k);
    }
    return RequestKind::kInfo;
  }

 private:
  std::array<int64_t, kNumRequestKinds> cumulative_{};
  int64_t total_ = 0;
  int only_ = -2;
};

// The open loop's send times and kinds, handed out in order.
class Schedule {
 public:
  struct Slot {
    int64_t at_ns = 0;
    RequestKind kind = RequestKind::kInfo;
    int target = 0;
    bool measured = false;
  };

  Schedule(const LoadOptions& o, int targets, int64_t start, int64_t t0,
           int64_t t_end)
      : options_(o),
        targets_(targets),
        start_(start),
        t0_(t0),
        t_end_(t_end),
        picker_(o.mix),
        rng_(o.seed),
        gap_(o.rate) {}

  // False when no requests are left.
  bool Next(Slot* slot) {
    MutexLock lock(&mu_);
    if (done_) return false;
    const double offset =
        options_.arrival == Arrival::kConstant
            ? static_cast<double>(index_) * 1e9 / options_.rate
            : offset_ns_;
    slot->at_ns = start_ + static_cast<int64_t>(offset);
    if (slot->at_ns >= t_end_) {
      done_ = true;
      return false;
    }
    slot->measured = slot->at_ns >= t0_;
    if (options_.requests > 0 && slot->measured) {
      if (measured_ >= options_.requests) {
        done_ = true;
        return false;
      }
      ++measured_;
    }
    slot->kind = picker_.Pick(rng_);
    slot->target = static_cast<int>(index_ % targets_);
    ++index_;
    if (options_.arrival == Arrival::kPoisson) offset_ns_ += gap_(rng_) * 1e9;
    return true;
  }

 private:
  const LoadOptions& options_;
  const int targets_;
  const int64_t start_, t0_, t_end_;
  const KindPicker picker_;
  Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::exponential_distribution<double> gap_ ABSL_GUARDED_BY(mu_);
  int64_t index_ ABSL_GUARDED_BY(mu_) = 0;
  double offset_ns_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t measured_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

// Threads with a Recorder each; may grow while running.
class WorkerPool {
 public:
  WorkerPool(int64_t t0, SeriesStore* series, int64_t cap)
      : t0_(t0), series_(series), cap_(cap) {}

  // Runs fn on a new thread with a fresh Recorder; false at the cap.
  bool Spawn(const std::function<void(Recorder&)>& fn) {
    MutexLock lock(&mu_);
    if (static_cast<int64_t>(threads_.size()) >= cap_) return false;
    recorders_.push_back(std::make_unique<Recorder>(t0_, series_));
    Recorder* rec = recorders_.back().get();
    ++active_;
    threads_.emplace_back([this, fn, rec] {
      fn(*rec);
      MutexLock lock(&mu_);
      --active_;  // the unlock wakes WaitUntil
    });
    return true;
  }

  // True once every worker has returned (or at the deadline, false).
  bool WaitUntil(int64_t deadline_ns) {
    MutexLock lock(&mu_);
    auto done = [this]()
                    ABSL_SHARED_LOCKS_REQUIRED(mu_) { return active_ == 0; };
    return mu_.AwaitWithTimeout(done, absl::Nanoseconds(deadline_ns - NowNs()));
  }

  void JoinAll() {
    for (size_t i = 0;; ++i) {
      std::thread* t;
      {
        MutexLock lock(&mu_);
        if (i >= threads_.size()) return;
        t = &threads_[i];  // deque: stable while others are added
      }
      t->join();
    }
  }

  struct Live {
    uint64_t requests = 0, errors = 0;
    int64_t bytes = 0;
  };
  Live live() {
    MutexLock lock(&mu_);
    Live l;
    for (const auto& r : recorders_) {
      l.requests += r->live_requests();
      l.errors += r->live_errors();
      l.bytes += r->live_bytes();
    }
    return l;
  }

  // After JoinAll().
  Totals Merged() {
    MutexLock lock(&mu_);
    Totals t;
    for (const auto& r : recorders_) t.Merge(r->totals());
    return t;
  }
  int64_t size() {
    MutexLock lock(&mu_);
    return static_cast<int64_t>(threads_.size());
  }

 private:
  const int64_t t0_;
  SeriesStore* const series_;
  const int64_t cap_;
  Mutex mu_;
  std::deque<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Recorder>> recorders_ ABSL_GUARDED_BY(mu_);
  int64_t active_ ABSL_GUARDED_BY(mu_) = 0;
};

void PrintProgress(int64_t now, int64_t start, int64_t t0, int64_t warmup_ns,
                   const WorkerPool::Live& live, const WorkerPool::Live& last,
                   int64_t interval_ns) {
  if (now < t0) {
    std::fprintf(stderr, "\r\033[K[warm-up %.0f/%.0f s]",
                 static_cast<double>(now - start) / 1e9,
                 static_cast<double>(warmup_ns) / 1e9);
  } else {
    const double dt = static_cast<double>(interval_ns) / 1e9;
    std::fprintf(
        stderr,
        "\r\033[K[%5.0f s] %llu requests  %.0f req/s  %.3f GB/s  %llu errors",
        static_cast<double>(now - t0) / 1e9,
        static_cast<unsigned long long>(live.requests),
        dt > 0 ? static_cast<double>(live.requests - last.requests) / dt : 0.0,
        dt > 0 ? static_cast<double>(live.bytes - last.bytes) / dt / 1e9 : 0.0,
        static_cast<unsigned long long>(live.errors));
  }
  std::fflush(stderr);
}

}  // namespace

RunResult RunLoad(const LoadOptions& o, Workload& workload,
                  const std::vector<Client*>& clients, StopFlag& stop,
                  bool show_progress) {
  const bool by_count = o.requests > 0;
  const int64_t start = NowNs();
  const int64_t t0 = start + o.warmup_ns;
  const int64_t t_end = by_count ? INT64_MAX : t0 + o.duration_ns;
  SeriesStore series;
  WorkerPool pool(t0, &series, o.open_loop() ? o.max_inflight : o.concurrency);
  const KindPicker picker(o.mix);
  const int targets = workload.targets();
  std::atomic<int64_t> tickets{0};
  std::atomic<int64_t> next_worker{0};
  std::atomic<int64_t> busy{0};  // open loop: workers between send and done

  std::function<void(Recorder&)> closed_worker = [&](Recorder& rec) {
    const int64_t w = next_worker.fetch_add(1);
    const int target = static_cast<int>(w % targets);
    Client& client = *clients[(w / targets) % clients.size()];
    std::mt19937_64 rng(o.seed + 0x9E3779B97F4A7C15ULL * (w + 1));
    while (!stop.requested()) {
      const int64_t sent = NowNs();
      if (sent >= t_end) break;
      bool ticket = false;
      if (by_count && sent >= t0) {
        if (tickets.fetch_add(1) >= o.requests) break;
        ticket = true;
      }
      const RequestKind kind = picker.Pick(rng);
      Outcome out = workload.Issue(kind, client, target, stop.flag());
      const int64_t done = NowNs();
      workload.Discard(client, out);
      const bool measured = by_count ? ticket : (done >= t0 && done < t_end);
      if (measured && done <= stop.at_ns()) {
        rec.Record({kind, sent, sent, done, out.bytes, target,
                    out.status.code(), out.status.message()});
      }
    }
    rec.Flush();
  };

  Schedule schedule(o, targets, start, t0, t_end);
  std::function<void(Recorder&)> open_worker = [&](Recorder& rec) {
    const int64_t w = next_worker.fetch_add(1);
    Client& client = *clients[w % clients.size()];
    // Linux lets a sleep overrun by 50 µs by default; sends are timed.
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    Schedule::Slot slot;
    while (!stop.requested() && schedule.Next(&slot)) {
      // Sleep in slices so that an interrupt is seen within 50 ms.
      while (!stop.requested() && NowNs() < slot.at_ns - 50'000'000) {
        SleepUntilNs(NowNs() + 50'000'000);
      }
      if (stop.requested()) break;
      SleepUntilNs(slot.at_ns);
      const int64_t sent = NowNs();
      // Late with every other worker busy: the pool is too small. (Late
      // with some idle is the client's CPU, which more threads won't fix.)
      const int64_t others_busy = busy.fetch_add(1);
      if (sent - slot.at_ns > kLateSendNs && others_busy >= pool.size() - 1) {
        pool.Spawn(open_worker);
      }
      Outcome out = workload.Issue(slot.kind, client, slot.target, stop.flag());
      const int64_t done = NowNs();
      workload.Discard(client, out);
      busy.fetch_sub(1);
      if (slot.measured && done <= stop.at_ns()) {
        rec.Record({slot.kind, slot.at_ns, sent, done, out.bytes, slot.target,
                    out.status.code(), out.status.message()});
      }
    }
    rec.Flush();
  };

  if (o.open_loop()) {
    for (int64_t i = 0; i < std::min(o.max_inflight, kInitialOpenWorkers);
         ++i) {
      pool.Spawn(open_worker);
    }
  } else {
    for (int64_t i = 0; i < o.concurrency; ++i) pool.Spawn(closed_worker);
  }

  // Watch: CPU snapshots at the window's edges, progress once a second.
  CpuTimes cpu0, cpu1;
  int64_t cpu0_at = 0, cpu1_at = 0;
  bool started = false, ended = false;
  const bool cpu_ends_at_t_end = !o.open_loop() && !by_count;
  // Ticks each second of the warm-up, then each second from t0.
  auto after = [&](int64_t tick) {
    tick += kSecondNs;
    return tick > t0 - kSecondNs / 10 && tick < t0 + kSecondNs ? t0 + kSecondNs
                                                               : tick;
  };
  int64_t next_tick = after(start);
  WorkerPool::Live last;
  int64_t last_at = t0;
  while (true) {
    const int64_t now = NowNs();
    if (!started && now >= t0) {
      cpu0 = ProcessCpu();
      cpu0_at = now;
      started = true;
      last_at = now;
    }
    if (cpu_ends_at_t_end && !ended && now >= t_end) {
      cpu1 = ProcessCpu();
      cpu1_at = now;
      ended = true;
    }
    if (now >= next_tick) {
      if (show_progress) {
        WorkerPool::Live live = pool.live();
        PrintProgress(now, start, t0, o.warmup_ns, live, last, now - last_at);
        if (now >= t0) {
          last = live;
          last_at = now;
        }
      }
      next_tick = after(next_tick);
    }
    int64_t wake = next_tick;
    if (!started) wake = std::min(wake, t0);
    if (cpu_ends_at_t_end && !ended) wake = std::min(wake, t_end);
    if (pool.WaitUntil(wake)) break;
  }
  const int64_t finished = NowNs();
  if (!started) {
    cpu0 = ProcessCpu();
    cpu0_at = finished;
  }
  if (!ended) {
    cpu1 = ProcessCpu();
    cpu1_at = finished;
  }
  pool.JoinAll();
  if (show_progress) std::fprintf(stderr, "\r\033[K");

  RunResult r;
  r.totals = pool.Merged();
  r.workers = pool.size();
  r.interrupted = stop.requested();
  if (targets > 1 || !workload.node(0).empty()) {
    for (int i = 0; i < targets; ++i) r.nodes.push_back(workload.node(i));
    r.totals.nodes.resize(static_cast<size_t>(targets));
  }
  const int64_t stop_at = stop.at_ns();
  int64_t end;
  if (by_count) {
    end = r.totals.requests > 0 ? r.totals.last_done_ns : t0;
  } else if (o.open_loop()) {
    end = std::min(std::max(t_end, r.totals.last_done_ns), stop_at);
  } else {
    end = std::min(t_end, stop_at);
  }
  r.duration_ns = std::max<int64_t>(end - t0, 0);
  r.series = series.Take((r.duration_ns + kSecondNs - 1) / kSecondNs);
  FinishSeries(r.duration_ns, &r.series);
  r.cpu_user_s = cpu1.user - cpu0.user;
  r.cpu_sys_s = cpu1.sys - cpu0.sys;
  r.cpu_window_ns = std::max<int64_t>(cpu1_at - cpu0_at, 0);
  return r;
}

}  // namespace tensorcast::load
