#include "client/load/report.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/dtype.h"

namespace tensorcast::load {

namespace {

constexpr double kNsPerUs = 1e3;

// Pads to `width` terminal columns: "µs" is two bytes but one column.
std::string Pad(const std::string& s, int width, bool left_align = false) {
  int columns = 0;
  for (char c : s) columns += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  const std::string fill(static_cast<size_t>(std::max(width - columns, 0)),
                         ' ');
  return left_align ? s + fill : fill + s;
}

double Seconds(int64_t ns) { return static_cast<double>(ns) / 1e9; }
double Us(int64_t ns) { return static_cast<double>(ns) / kNsPerUs; }

std::string CodeName(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

std::string DTypeText(v1::DType d) {
  return std::string(DTypeName(static_cast<DType>(d - 1)));
}

// A minimal pretty-printing JSON writer.
class JsonWriter {
 public:
  void BeginObject() { Open('{'); }
  void EndObject() { Close('}'); }
  void BeginArray() { Open('['); }
  void EndArray() { Close(']'); }
  void Key(absl::string_view key) {
    Separate();
    Quote(key);
    out_ += ": ";
    after_key_ = true;
  }
  void String(absl::string_view s) {
    Separate();
    Quote(s);
  }
  void Int(int64_t v) { Raw(absl::StrCat(v)); }
  void Uint(uint64_t v) { Raw(absl::StrCat(v)); }
  void Double(double v, int decimals = 3) {
    Raw(std::isfinite(v) ? absl::StrFormat("%.*f", decimals, v)
                         : std::string("null"));
  }
  void Bool(bool v) { Raw(v ? "true" : "false"); }
  void Null() { Raw("null"); }
  std::string Take() { return out_ + "\n"; }

 private:
  void Raw(absl::string_view text) {
    Separate();
    out_.append(text.data(), text.size());
  }
  void Open(char c) {
    Separate();
    out_ += c;
    first_.push_back(true);
  }
  void Close(char c) {
    const bool empty = first_.back();
    first_.pop_back();
    if (!empty) Newline();
    out_ += c;
  }
  void Separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (first_.empty()) return;
    if (!first_.back()) out_ += ',';
    first_.back() = false;
    Newline();
  }
  void Newline() {
    out_ += '\n';
    out_.append(2 * first_.size(), ' ');
  }
  void Quote(absl::string_view s) {
    out_ += '"';
    for (char c : s) {
      switch (c) {
        case '"':
          out_ += "\\\"";
          break;
        case '\\':
          out_ += "\\\\";
          break;
        case '\n':
          out_ += "\\n";
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            out_ += absl::StrFormat("\\u%04x", c);
          } else {
            out_ += c;
          }
      }
    }
    out_ += '"';
  }

  std::string out_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

struct Quantiles {
  int64_t min, p50, p90, p95, p99, p999, max;
  double mean;
};

Quantiles QuantilesOf(const Histogram& h) {
  return {h.min(),          h.Percentile(50), h.Percentile(90),
          h.Percentile(95), h.Percentile(99), h.Percentile(99.9),
          h.max(),          h.mean()};
}

void WriteLatency(JsonWriter& j, absl::string_view key, const Histogram& h) {
  const Quantiles q = QuantilesOf(h);
  j.Key(key);
  j.BeginObject();
  j.Key("count");
  j.Uint(h.count());
  j.Key("min");
  j.Double(Us(q.min));
  j.Key("mean");
  j.Double(q.mean / kNsPerUs);
  j.Key("p50");
  j.Double(Us(q.p50));
  j.Key("p90");
  j.Double(Us(q.p90));
  j.Key("p95");
  j.Double(Us(q.p95));
  j.Key("p99");
  j.Double(Us(q.p99));
  j.Key("p999");
  j.Double(Us(q.p999));
  j.Key("max");
  j.Double(Us(q.max));
  j.EndObject();
}

struct ChartBin {
  int64_t from, to;
  uint64_t count;
};

std::vector<ChartBin> ChartBins(const Histogram& h, int rows) {
  std::vector<ChartBin> bins;
  if (h.count() == 0) return bins;
  const double lo = static_cast<double>(std::max<int64_t>(h.min(), 1));
  const double hi = static_cast<double>(std::max<int64_t>(h.max(), 1));
  const int n = hi / lo < 1.05 ? 1 : rows;
  for (int i = 0; i < n; ++i) {
    bins.push_back(
        {static_cast<int64_t>(lo * std::pow(hi / lo, double(i) / n)),
         static_cast<int64_t>(lo * std::pow(hi / lo, double(i + 1) / n)), 0});
  }
  bins.front().from = h.min();
  bins.back().to = h.max();
  h.ForEachBucket([&](int64_t low, int64_t high, uint64_t count) {
    const double mid = std::clamp(
        (static_cast<double>(low) + static_cast<double>(high)) / 2, lo, hi);
    int i = n == 1
                ? 0
                : static_cast<int>(std::log(mid / lo) / std::log(hi / lo) * n);
    bins[std::clamp(i, 0, n - 1)].count += count;
  });
  return bins;
}

std::string Rate(double per_s) {
  if (per_s >= 100) return absl::StrFormat("%.0f", per_s);
  return absl::StrFormat("%.1f", per_s);
}

double PerSecond(double count, int64_t ns) {
  return ns > 0 ? count / Seconds(ns) : 0;
}

double CpuSeconds(const RunResult& r) { return r.cpu_user_s + r.cpu_sys_s; }

std::string LoadText(const LoadOptions& o, const RunResult& r) {
  std::string length = o.requests > 0
                           ? absl::StrCat(o.requests, " requests")
                           : absl::StrFormat("%.3g s", Seconds(o.duration_ns));
  std::string shape =
      o.open_loop()
          ? absl::StrFormat(
                "open loop, %s req/s %s, up to %d in flight (%d "
                "threads used) on %d connection%s",
                Rate(o.rate),
                o.arrival == Arrival::kPoisson ? "poisson" : "constant",
                o.max_inflight, r.workers, o.connections,
                o.connections == 1 ? "" : "s")
          : absl::StrFormat("closed loop, %d worker%s on %d connection%s",
                            o.concurrency, o.concurrency == 1 ? "" : "s",
                            o.connections, o.connections == 1 ? "" : "s");
  if (!r.nodes.empty()) shape += " to each node";
  return absl::StrFormat("%s; %s after %.3g s warm-up", shape, length,
                         Seconds(o.warmup_ns));
}

}  // namespace

std::string FormatLatency(int64_t ns) {
  if (ns < 1000) return absl::StrFormat("%d ns", ns);
  if (ns < 1'000'000) {
    return ns < 100'000 ? absl::StrFormat("%.1f µs", Us(ns))
                        : absl::StrFormat("%.0f µs", Us(ns));
  }
  if (ns < 1'000'000'000) {
    const double ms = static_cast<double>(ns) / 1e6;
    return ns < 100'000'000 ? absl::StrFormat("%.2f ms", ms)
                            : absl::StrFormat("%.1f ms", ms);
  }
  return absl::StrFormat("%.3f s", Seconds(ns));
}

std::string LatencyChart(const Histogram& h, int rows, int width) {
  std::vector<ChartBin> bins = ChartBins(h, rows);
  uint64_t peak = 0;
  for (const ChartBin& b : bins) peak = std::max(peak, b.count);
  std::string out;
  for (const ChartBin& b : bins) {
    const int bar = peak == 0
                        ? 0
                        : static_cast<int>(std::lround(
                              static_cast<double>(b.count) * width / peak));
    absl::StrAppendFormat(
        &out, "  %s .. %s |%-*s %9d %5.1f%%\n", Pad(FormatLatency(b.from), 9),
        Pad(FormatLatency(b.to), 9, true), width,
        std::string(static_cast<size_t>(bar), '#'), b.count,
        100.0 * static_cast<double>(b.count) / static_cast<double>(h.count()));
  }
  return out;
}

double ErrorRate(const RunResult& r) {
  const Totals& t = r.totals;
  return t.requests == 0 ? 0
                         : static_cast<double>(t.error_count()) /
                               static_cast<double>(t.requests);
}

bool TooManyErrors(const LoadOptions& o, const RunResult& r) {
  return ErrorRate(r) > o.max_error_rate;
}

std::string DominantErrorText(const RunResult& r) {
  const Totals& t = r.totals;
  const int code = t.dominant_error();
  if (code == 0) return "";
  return absl::StrCat(CodeName(code), " (", t.errors[code], " of ", t.requests,
                      " requests): ", t.error_messages[code]);
}

std::string SummaryText(const LoadOptions& o, const std::string& description,
                        const RunResult& r) {
  const Totals& t = r.totals;
  std::string out;
  if (TooManyErrors(o, r)) {
    absl::StrAppendFormat(&out,
                          "NOT A MEASUREMENT: %d of %d requests failed "
                          "(%.1f%%, more than --max-error-rate=%g)\n",
                          t.error_count(), t.requests, 100 * ErrorRate(r),
                          o.max_error_rate);
  }
  if (t.error_count() > 0) {
    absl::StrAppend(&out, "dominant error: ", DominantErrorText(r), "\n");
  }
  absl::StrAppend(&out, "tensorcast-load: ", description, "\n");
  if (r.nodes.empty()) {
    absl::StrAppend(&out, "  server ", o.server, "; ", LoadText(o, r), "\n");
  } else {
    absl::StrAppend(&out, "  cluster ", o.server, " (", r.nodes.size(),
                    r.nodes.size() == 1 ? " node: " : " nodes: ",
                    absl::StrJoin(r.nodes, ", "), "); ", LoadText(o, r), "\n");
  }
  if (r.interrupted) absl::StrAppend(&out, "  (interrupted)\n");
  absl::StrAppendFormat(
      &out,
      "requests     %d in %.2f s: %s req/s; payload %.3f GB/s (%.3f GB)\n",
      t.requests, Seconds(r.duration_ns),
      Rate(PerSecond(static_cast<double>(t.requests), r.duration_ns)),
      PerSecond(static_cast<double>(t.bytes), r.duration_ns) / 1e9,
      static_cast<double>(t.bytes) / 1e9);
  std::vector<std::string> errors;
  for (int c = 1; c < kNumStatusCodes; ++c) {
    if (t.errors[c] > 0)
      errors.push_back(absl::StrCat(CodeName(c), " ", t.errors[c]));
  }
  absl::StrAppend(&out, "errors       ",
                  errors.empty() ? "none" : absl::StrJoin(errors, ", "), "\n");
  absl::StrAppendFormat(&out, "%-26s %9s %9s %9s %9s %9s %9s %9s\n",
                        "latency (ok requests)", "min", "p50", "p90", "p95",
                        "p99", "p99.9", "max");
  auto row = [&](absl::string_view label, const Histogram& h) {
    const Quantiles q = QuantilesOf(h);
    absl::StrAppendFormat(&out, "  %-24s", label);
    for (int64_t v : {q.min, q.p50, q.p90, q.p95, q.p99, q.p999, q.max}) {
      absl::StrAppend(&out, " ", Pad(FormatLatency(v), 9));
    }
    absl::StrAppend(&out, "\n");
  };
  if (o.open_loop()) {
    row("from scheduled send", t.latency);
    row("service time", t.service);
    row("send lag", t.send_lag);
  } else {
    row("all", t.latency);
  }
  int kinds = 0;
  for (int k = 0; k < kNumRequestKinds; ++k) kinds += o.mix[k] > 0;
  if (kinds > 1) {
    for (int k = 0; k < kNumRequestKinds; ++k) {
      if (o.mix[k] == 0) continue;
      const KindTotals& kt = t.kinds[k];
      row(absl::StrFormat("%s (%d, %d err)",
                          RequestKindName(static_cast<RequestKind>(k)),
                          kt.requests, kt.errors),
          kt.latency);
    }
  }
  if (!r.nodes.empty()) {
    absl::StrAppendFormat(&out, "%-18s %9s %9s %9s %9s %9s %9s\n", "per node",
                          "requests", "errors", "req/s", "GB/s", "p50", "p99");
    const KindTotals none{};
    for (size_t n = 0; n < r.nodes.size(); ++n) {
      const KindTotals& nt = n < t.nodes.size() ? t.nodes[n] : none;
      absl::StrAppendFormat(
          &out, "  %-16s %9d %9d %9s %9.3f %s %s\n", r.nodes[n], nt.requests,
          nt.errors,
          Rate(PerSecond(static_cast<double>(nt.requests), r.duration_ns)),
          PerSecond(static_cast<double>(nt.bytes), r.duration_ns) / 1e9,
          Pad(FormatLatency(nt.latency.Percentile(50)), 9),
          Pad(FormatLatency(nt.latency.Percentile(99)), 9));
    }
  }
  if (o.open_loop()) {
    absl::StrAppendFormat(
        &out,
        "late sends   %d of %d sent more than 1 ms after "
        "their scheduled time (worst %s)\n",
        t.late_sends, t.requests,
        FormatLatency(std::max<int64_t>(t.max_send_lag_ns, 0)));
  }
  const double cpu = CpuSeconds(r);
  if (t.requests > 0 && r.cpu_window_ns > 0) {
    const double us_per_request = cpu * 1e6 / static_cast<double>(t.requests);
    absl::StrAppendFormat(
        &out,
        "client CPU   %.1f µs/request (user %.2f s + sys %.2f s, %.2f cores); "
        "one client core drives ~%s req/s\n",
        us_per_request, r.cpu_user_s, r.cpu_sys_s,
        cpu / Seconds(r.cpu_window_ns),
        us_per_request > 0 ? Rate(1e6 / us_per_request) : std::string("?"));
  }
  if (t.latency.count() > 0) {
    absl::StrAppend(&out, "latency distribution",
                    o.open_loop() ? " (from scheduled send)" : "", ":\n",
                    LatencyChart(t.latency));
  }
  return out;
}

std::string ResultJson(const LoadOptions& o, const std::string& description,
                       const RunResult& r) {
  const Totals& t = r.totals;
  JsonWriter j;
  j.BeginObject();
  j.Key("tool");
  j.String("tensorcast-load");
  j.Key("description");
  j.String(description);
  // First, so that a failed run says why before its figures.
  j.Key("dominant_error");
  if (const int code = t.dominant_error(); code != 0) {
    j.BeginObject();
    j.Key("code");
    j.String(CodeName(code));
    j.Key("count");
    j.Uint(t.errors[code]);
    j.Key("message");
    j.String(t.error_messages[code]);
    j.EndObject();
  } else {
    j.Null();
  }
  j.Key("error_rate");
  j.Double(ErrorRate(r), 6);
  j.Key("too_many_errors");
  j.Bool(TooManyErrors(o, r));
  j.Key("config");
  j.BeginObject();
  j.Key("server");
  j.String(o.server);
  j.Key("scenario");
  j.String(o.scenario);
  j.Key("mix");
  j.BeginObject();
  for (int k = 0; k < kNumRequestKinds; ++k) {
    if (o.mix[k] == 0) continue;
    j.Key(RequestKindName(static_cast<RequestKind>(k)));
    j.Int(o.mix[k]);
  }
  j.EndObject();
  j.Key("size_bytes");
  j.Int(o.size_bytes);
  j.Key("dtype");
  j.String(DTypeText(o.dtype));
  j.Key("to_dtype");
  if (o.to_dtype == v1::DTYPE_UNSPECIFIED) {
    j.Null();
  } else {
    j.String(DTypeText(o.to_dtype));
  }
  j.Key("format");
  j.String(o.format == v1::FORMAT_RAW ? "raw" : "npy");
  j.Key("device");
  j.String(o.device);
  j.Key("transport");
  j.String(o.transport());
  j.Key("cuda_ipc_device");
  if (o.cuda_ipc()) {
    j.Int(o.cuda_ipc_device);
  } else {
    j.Null();
  }
  j.Key("requires_grad");
  j.Bool(o.requires_grad);
  j.Key("fetch_as_is");
  j.Bool(o.fetch_as_is);
  j.Key("max_error_rate");
  j.Double(o.max_error_rate, 6);
  j.Key("loop");
  j.String(o.open_loop() ? "open" : "closed");
  if (o.open_loop()) {
    j.Key("rate");
    j.Double(o.rate);
    j.Key("arrival");
    j.String(o.arrival == Arrival::kPoisson ? "poisson" : "constant");
    j.Key("max_inflight");
    j.Int(o.max_inflight);
  } else {
    j.Key("concurrency");
    j.Int(o.concurrency);
  }
  j.Key("connections");
  j.Int(o.connections);
  j.Key("duration_s");
  if (o.requests > 0) {
    j.Null();
  } else {
    j.Double(Seconds(o.duration_ns));
  }
  j.Key("requests");
  if (o.requests > 0) {
    j.Int(o.requests);
  } else {
    j.Null();
  }
  j.Key("warmup_s");
  j.Double(Seconds(o.warmup_ns));
  j.Key("seed");
  j.Uint(o.seed);
  if (!r.nodes.empty()) {
    j.Key("nodes");
    j.BeginArray();
    for (const std::string& node : r.nodes) j.String(node);
    j.EndArray();
  }
  j.EndObject();

  j.Key("interrupted");
  j.Bool(r.interrupted);
  j.Key("requests");
  j.Uint(t.requests);
  j.Key("ok");
  j.Uint(t.requests - t.error_count());
  j.Key("errors");
  j.BeginObject();
  for (int c = 1; c < kNumStatusCodes; ++c) {
    if (t.errors[c] == 0) continue;
    j.Key(CodeName(c));
    j.Uint(t.errors[c]);
  }
  j.EndObject();
  j.Key("duration_s");
  j.Double(Seconds(r.duration_ns), 6);
  j.Key("requests_per_s");
  j.Double(PerSecond(static_cast<double>(t.requests), r.duration_ns));
  j.Key("bytes");
  j.Int(t.bytes);
  j.Key("bytes_per_s");
  j.Double(PerSecond(static_cast<double>(t.bytes), r.duration_ns));
  WriteLatency(j, "latency_us", t.latency);
  WriteLatency(j, "service_time_us", t.service);
  WriteLatency(j, "send_lag_us", t.send_lag);
  j.Key("late_sends");
  j.Uint(t.late_sends);
  j.Key("max_send_lag_us");
  j.Double(Us(std::max<int64_t>(t.max_send_lag_ns, 0)));
  j.Key("client");
  j.BeginObject();
  const double cpu = CpuSeconds(r);
  j.Key("cpu_user_s");
  j.Double(r.cpu_user_s, 6);
  j.Key("cpu_sys_s");
  j.Double(r.cpu_sys_s, 6);
  j.Key("cpu_window_s");
  j.Double(Seconds(r.cpu_window_ns), 6);
  j.Key("cpu_cores");
  j.Double(r.cpu_window_ns > 0 ? cpu / Seconds(r.cpu_window_ns) : 0);
  j.Key("cpu_us_per_request");
  j.Double(t.requests > 0 ? cpu * 1e6 / static_cast<double>(t.requests) : 0);
  j.Key("requests_per_cpu_s");
  j.Double(cpu > 0 ? static_cast<double>(t.requests) / cpu : 0);
  j.Key("threads");
  j.Int(r.workers);
  j.EndObject();

  j.Key("by_kind");
  j.BeginObject();
  for (int k = 0; k < kNumRequestKinds; ++k) {
    if (o.mix[k] == 0) continue;
    const KindTotals& kt = t.kinds[k];
    j.Key(RequestKindName(static_cast<RequestKind>(k)));
    j.BeginObject();
    j.Key("requests");
    j.Uint(kt.requests);
    j.Key("errors");
    j.Uint(kt.errors);
    j.Key("bytes");
    j.Int(kt.bytes);
    WriteLatency(j, "latency_us", kt.latency);
    j.EndObject();
  }
  j.EndObject();

  if (!r.nodes.empty()) {
    j.Key("nodes");
    j.BeginObject();
    const KindTotals none{};
    for (size_t n = 0; n < r.nodes.size(); ++n) {
      const KindTotals& nt = n < t.nodes.size() ? t.nodes[n] : none;
      j.Key(r.nodes[n]);
      j.BeginObject();
      j.Key("requests");
      j.Uint(nt.requests);
      j.Key("errors");
      j.Uint(nt.errors);
      j.Key("bytes");
      j.Int(nt.bytes);
      j.Key("requests_per_s");
      j.Double(PerSecond(static_cast<double>(nt.requests), r.duration_ns));
      j.Key("bytes_per_s");
      j.Double(PerSecond(static_cast<double>(nt.bytes), r.duration_ns));
      WriteLatency(j, "latency_us", nt.latency);
      j.EndObject();
    }
    j.EndObject();
  }

  j.Key("latency_distribution");
  j.BeginArray();
  for (const ChartBin& b : ChartBins(t.latency, 12)) {
    j.BeginObject();
    j.Key("from_us");
    j.Double(Us(b.from));
    j.Key("to_us");
    j.Double(Us(b.to));
    j.Key("count");
    j.Uint(b.count);
    j.EndObject();
  }
  j.EndArray();

  j.Key("percentiles");
  j.BeginArray();
  for (double p : {0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9,
                   99.95, 99.99, 99.999, 100.0}) {
    j.BeginObject();
    j.Key("p");
    j.Double(p);
    j.Key("latency_us");
    j.Double(Us(t.latency.Percentile(p)));
    j.Key("service_time_us");
    j.Double(Us(t.service.Percentile(p)));
    j.EndObject();
  }
  j.EndArray();

  j.Key("series");
  j.BeginArray();
  for (size_t i = 0; i < r.series.size(); ++i) {
    const SecondStats& s = r.series[i];
    const int64_t interval = s.interval_ns;
    j.BeginObject();
    j.Key("t_s");
    j.Int(static_cast<int64_t>(i));
    j.Key("interval_s");
    j.Double(Seconds(interval), 6);
    j.Key("requests");
    j.Uint(s.requests);
    j.Key("errors");
    j.Uint(s.errors);
    j.Key("bytes");
    j.Int(s.bytes);
    j.Key("requests_per_s");
    j.Double(PerSecond(static_cast<double>(s.requests), interval));
    j.Key("bytes_per_s");
    j.Double(PerSecond(static_cast<double>(s.bytes), interval));
    j.Key("p50_us");
    j.Double(Us(s.latency.Percentile(50)));
    j.Key("p90_us");
    j.Double(Us(s.latency.Percentile(90)));
    j.Key("p99_us");
    j.Double(Us(s.latency.Percentile(99)));
    j.Key("max_us");
    j.Double(Us(s.latency.max()));
    j.EndObject();
  }
  j.EndArray();
  j.EndObject();
  return j.Take();
}

std::string SeriesCsv(const RunResult& r) {
  std::string out =
      "second,interval_s,requests,errors,bytes,requests_per_s,bytes_per_s,"
      "p50_us,p90_us,p99_us,max_us\n";
  for (size_t i = 0; i < r.series.size(); ++i) {
    const SecondStats& s = r.series[i];
    const int64_t interval = s.interval_ns;
    absl::StrAppendFormat(
        &out, "%d,%.3f,%d,%d,%d,%.3f,%.3f,%.3f,%.3f,%.3f,%.3f\n", i,
        Seconds(interval), s.requests, s.errors, s.bytes,
        PerSecond(static_cast<double>(s.requests), interval),
        PerSecond(static_cast<double>(s.bytes), interval),
        Us(s.latency.Percentile(50)), Us(s.latency.Percentile(90)),
        Us(s.latency.Percentile(99)), Us(s.latency.max()));
  }
  return out;
}

}  // namespace tensorcast::load
