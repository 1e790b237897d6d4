#include "client/load/report.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"

namespace tensorcast::load {
namespace {

RunResult Synthetic() {
  RunResult r;
  SeriesStore store;
  Recorder rec(0, &store);
  // 3.5 s: 100 requests a second, 1 KiB each, 100..199 µs; 2 errors.
  for (int i = 0; i < 350; ++i) {
    const int64_t done = static_cast<int64_t>(i) * 10'000'000 + 5'000'000;
    Sample s;
    s.kind = i % 5 == 0 ? RequestKind::kInfo : RequestKind::kFetch;
    s.done_ns = done;
    s.sent_ns = done - (100'000 + (i % 100) * 1000);
    s.intended_ns = s.sent_ns - (i == 7 ? 3'000'000 : 0);
    s.code = i == 10 || i == 20 ? absl::StatusCode::kUnavailable
                                : absl::StatusCode::kOk;
    s.bytes = s.code == absl::StatusCode::kOk ? 1024 : 0;
    rec.Record(s);
  }
  rec.Flush();
  r.totals = rec.totals();
  r.duration_ns = 3'500'000'000;
  r.series = store.Take(4);
  FinishSeries(r.duration_ns, &r.series);
  r.cpu_user_s = 0.02;
  r.cpu_sys_s = 0.01;
  r.cpu_window_ns = 3'500'000'000;
  r.workers = 3;
  return r;
}

LoadOptions Options() {
  absl::StatusOr<ParsedArgs> p =
      ParseArgs({"--scenario=mixed", "--mix=fetch:4,info:1", "--rate=100",
                 "--duration=3.5s"});
  EXPECT_TRUE(p.ok()) << p.status();
  return p->options;
}

TEST(ReportTest, FormatLatency) {
  EXPECT_EQ(FormatLatency(812), "812 ns");
  EXPECT_EQ(FormatLatency(15'300), "15.3 µs");
  EXPECT_EQ(FormatLatency(153'000), "153 µs");
  EXPECT_EQ(FormatLatency(1'240'000), "1.24 ms");
  EXPECT_EQ(FormatLatency(2'500'000'000), "2.500 s");
}

TEST(ReportTest, JsonHasTheContractKeysAndAddsUp) {
  const RunResult r = Synthetic();
  const std::string text = ResultJson(Options(), "test workload", r);
  google::protobuf::Struct doc;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(text, &doc).ok())
      << text;
  const auto& f = doc.fields();
  for (const char* key :
       {"requests", "errors", "duration_s", "requests_per_s", "bytes_per_s",
        "latency_us", "service_time_us", "late_sends", "client", "series",
        "by_kind", "percentiles", "latency_distribution", "config"}) {
    EXPECT_TRUE(f.contains(key)) << key;
  }
  EXPECT_EQ(f.at("requests").number_value(), 350);
  EXPECT_EQ(
      f.at("errors").struct_value().fields().at("UNAVAILABLE").number_value(),
      2);
  EXPECT_EQ(f.at("late_sends").number_value(), 1);
  EXPECT_NEAR(f.at("requests_per_s").number_value(), 100, 1e-3);
  // The transport: the socket unless a region is lent.
  const auto& config = f.at("config").struct_value().fields();
  EXPECT_EQ(config.at("transport").string_value(), "socket");
  EXPECT_TRUE(config.at("cuda_ipc_device").has_null_value());
  LoadOptions ipc = Options();
  ipc.cuda_ipc_device = 1;
  google::protobuf::Struct ipc_doc;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  ResultJson(ipc, "test workload", r), &ipc_doc)
                  .ok());
  const auto& ipc_config =
      ipc_doc.fields().at("config").struct_value().fields();
  EXPECT_EQ(ipc_config.at("transport").string_value(), "cuda-ipc");
  EXPECT_EQ(ipc_config.at("cuda_ipc_device").number_value(), 1);
  const auto& lat = f.at("latency_us").struct_value().fields();
  for (const char* key : {"min", "p50", "p90", "p95", "p99", "p999", "max"}) {
    EXPECT_TRUE(lat.contains(key)) << key;
  }
  EXPECT_LE(lat.at("min").number_value(), lat.at("p50").number_value());
  EXPECT_LE(lat.at("p50").number_value(), lat.at("p99").number_value());
  EXPECT_LE(lat.at("p99").number_value(), lat.at("max").number_value());
  double series_requests = 0;
  const auto& series = f.at("series").list_value().values();
  ASSERT_EQ(series.size(), 4);
  for (const auto& point : series) {
    series_requests +=
        point.struct_value().fields().at("requests").number_value();
  }
  EXPECT_EQ(series_requests, 350);
  EXPECT_NEAR(series[3].struct_value().fields().at("interval_s").number_value(),
              0.5, 1e-9);
  const auto& kinds = f.at("by_kind").struct_value().fields();
  EXPECT_EQ(
      kinds.at("fetch").struct_value().fields().at("requests").number_value() +
          kinds.at("info")
              .struct_value()
              .fields()
              .at("requests")
              .number_value(),
      350);
  double histogram_total = 0;
  for (const auto& bin : f.at("latency_distribution").list_value().values()) {
    histogram_total += bin.struct_value().fields().at("count").number_value();
  }
  EXPECT_EQ(histogram_total, 348);  // the successful requests
}

TEST(ReportTest, CsvHasARowPerSecond) {
  const std::string csv = SeriesCsv(Synthetic());
  std::vector<std::string> lines = absl::StrSplit(csv, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u);
  EXPECT_EQ(lines[0].rfind("second,interval_s,requests,", 0), 0u);
  EXPECT_EQ(lines[1].rfind("0,1.000,100,", 0), 0u) << lines[1];
  EXPECT_EQ(lines[4].rfind("3,0.500,50,", 0), 0u) << lines[4];
}

TEST(ReportTest, SummaryNamesTheFigures) {
  const std::string text = SummaryText(Options(), "test workload", Synthetic());
  for (const char* want :
       {"requests     350", "UNAVAILABLE 2", "from scheduled send",
        "service time", "late sends   1 of 350", "client CPU",
        "latency distribution", "fetch (", "info ("}) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
}

// Two workers' recorders: 3 DEADLINE_EXCEEDED and 1 success on one, 5
// FAILED_PRECONDITION (two messages) and 1 DEADLINE_EXCEEDED on the other.
RunResult MostlyFailed() {
  SeriesStore store;
  Recorder a(0, &store), b(0, &store);
  auto record = [](Recorder& rec, absl::StatusCode code,
                   absl::string_view message) {
    Sample s;
    s.kind = RequestKind::kFetch;
    s.sent_ns = s.intended_ns = 1000;
    s.done_ns = 2000;
    s.code = code;
    s.message = message;
    rec.Record(s);
  };
  for (int i = 0; i < 3; ++i) {
    record(a, absl::StatusCode::kDeadlineExceeded, "slow");
  }
  record(a, absl::StatusCode::kOk, "");
  record(b, absl::StatusCode::kDeadlineExceeded, "slower");
  record(b, absl::StatusCode::kFailedPrecondition, "refused, first");
  for (int i = 0; i < 4; ++i) {
    record(b, absl::StatusCode::kFailedPrecondition, "refused, later");
  }
  a.Flush();
  b.Flush();
  RunResult r;
  r.totals = a.totals();
  r.totals.Merge(b.totals());
  r.duration_ns = 1'000'000'000;
  r.series = store.Take(1);
  return r;
}

TEST(ReportTest, DominantErrorLeadsAFailedRun) {
  const RunResult r = MostlyFailed();
  EXPECT_EQ(r.totals.error_count(), 9u);
  EXPECT_EQ(r.totals.dominant_error(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(r.totals.error_messages[static_cast<int>(
                absl::StatusCode::kDeadlineExceeded)],
            "slow");
  EXPECT_DOUBLE_EQ(ErrorRate(r), 0.9);
  EXPECT_EQ(DominantErrorText(r),
            "FAILED_PRECONDITION (5 of 10 requests): refused, first");
  LoadOptions o = Options();
  EXPECT_TRUE(TooManyErrors(o, r));  // 0.9 > the default 0.5

  std::string text = SummaryText(o, "test workload", r);
  EXPECT_EQ(text.rfind("NOT A MEASUREMENT: 9 of 10 requests failed (90.0%, "
                       "more than --max-error-rate=0.5)\n"
                       "dominant error: FAILED_PRECONDITION (5 of 10 "
                       "requests): refused, first\n"
                       "tensorcast-load: test workload\n",
                       0),
            0u)
      << text;
  // The errors line still names every code.
  EXPECT_NE(text.find("DEADLINE_EXCEEDED 4, FAILED_PRECONDITION 5"),
            std::string::npos)
      << text;

  google::protobuf::Struct doc;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  ResultJson(o, "test workload", r), &doc)
                  .ok());
  const auto& f = doc.fields();
  const auto& dominant = f.at("dominant_error").struct_value().fields();
  EXPECT_EQ(dominant.at("code").string_value(), "FAILED_PRECONDITION");
  EXPECT_EQ(dominant.at("count").number_value(), 5);
  EXPECT_EQ(dominant.at("message").string_value(), "refused, first");
  EXPECT_DOUBLE_EQ(f.at("error_rate").number_value(), 0.9);
  EXPECT_TRUE(f.at("too_many_errors").bool_value());
  EXPECT_EQ(f.at("errors").struct_value().fields().size(), 2u);
  EXPECT_DOUBLE_EQ(f.at("config")
                       .struct_value()
                       .fields()
                       .at("max_error_rate")
                       .number_value(),
                   0.5);

  // Under the threshold: the dominant error still leads, without the verdict.
  o.max_error_rate = 0.9;
  EXPECT_FALSE(TooManyErrors(o, r));
  text = SummaryText(o, "test workload", r);
  EXPECT_EQ(text.rfind("dominant error: FAILED_PRECONDITION", 0), 0u) << text;
  EXPECT_EQ(text.find("NOT A MEASUREMENT"), std::string::npos);
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  ResultJson(o, "test workload", r), &doc)
                  .ok());
  EXPECT_FALSE(doc.fields().at("too_many_errors").bool_value());
}

TEST(ReportTest, NoErrorsNoDominantError) {
  RunResult r;
  EXPECT_EQ(r.totals.dominant_error(), 0);
  EXPECT_EQ(ErrorRate(r), 0);  // nothing measured is not an error rate
  EXPECT_FALSE(TooManyErrors(Options(), r));
  EXPECT_EQ(DominantErrorText(r), "");
  const std::string text = SummaryText(Options(), "test workload", r);
  EXPECT_EQ(text.rfind("tensorcast-load: test workload\n", 0), 0u) << text;
  google::protobuf::Struct doc;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  ResultJson(Options(), "test workload", r), &doc)
                  .ok());
  EXPECT_EQ(doc.fields().at("dominant_error").kind_case(),
            google::protobuf::Value::kNullValue);
}

TEST(ReportTest, ShortLastSecondFoldsIntoThePreviousOne) {
  std::vector<SecondStats> series(4);
  for (int i = 0; i < 4; ++i) series[i].requests = 10 + i;
  FinishSeries(3'000'300'000, &series);
  ASSERT_EQ(series.size(), 3u);
  EXPECT_EQ(series[2].requests, 12u + 13u);
  EXPECT_EQ(series[2].interval_ns, 1'000'300'000);
  std::vector<SecondStats> partial(2);
  FinishSeries(1'500'000'000, &partial);
  ASSERT_EQ(partial.size(), 2u);
  EXPECT_EQ(partial[1].interval_ns, 500'000'000);
}

// Three nodes: node i gets (i + 1) * 10 fetches of 1000 bytes, i ms each;
// node 1 also has one failure.
RunResult ClusterResult() {
  RunResult r;
  SeriesStore store;
  std::vector<std::unique_ptr<Recorder>> recs;
  for (int node = 0; node < 3; ++node) {
    recs.push_back(std::make_unique<Recorder>(0, &store));
    for (int i = 0; i < (node + 1) * 10; ++i) {
      Sample s;
      s.kind = RequestKind::kFetch;
      s.node = node;
      s.sent_ns = s.intended_ns = i * 1'000'000;
      s.done_ns = s.sent_ns + (node + 1) * 1'000'000;
      s.bytes = 1000;
      recs.back()->Record(s);
    }
  }
  Sample failed;
  failed.node = 1;
  failed.done_ns = 1000;
  failed.code = absl::StatusCode::kUnavailable;
  failed.message = "node 'b' (127.0.0.1:2) is unavailable: down";
  recs[1]->Record(failed);
  for (auto& rec : recs) {
    rec->Flush();
    r.totals.Merge(rec->totals());
  }
  r.duration_ns = 2'000'000'000;
  r.series = store.Take(2);
  FinishSeries(r.duration_ns, &r.series);
  r.nodes = {"a", "b", "c"};
  r.workers = 3;
  return r;
}

TEST(ReportTest, TotalsMergePerNode) {
  const RunResult r = ClusterResult();
  ASSERT_EQ(r.totals.nodes.size(), 3u);
  EXPECT_EQ(r.totals.requests, 61u);
  for (int n = 0; n < 3; ++n) {
    const KindTotals& nt = r.totals.nodes[n];
    EXPECT_EQ(nt.bytes, (n + 1) * 10 * 1000) << n;
    EXPECT_EQ(nt.latency.count(), static_cast<uint64_t>((n + 1) * 10)) << n;
    EXPECT_NEAR(static_cast<double>(nt.latency.Percentile(50)), (n + 1) * 1e6,
                0.005 * (n + 1) * 1e6);
  }
  EXPECT_EQ(r.totals.nodes[1].requests, 21u);
  EXPECT_EQ(r.totals.nodes[1].errors, 1u);
  // A recorder that saw only node 0 merges into a longer list.
  Totals t;
  t.Merge(r.totals);
  Totals one;
  one.nodes.resize(1);
  one.nodes[0].requests = 5;
  t.Merge(one);
  ASSERT_EQ(t.nodes.size(), 3u);
  EXPECT_EQ(t.nodes[0].requests, 15u);
}

TEST(ReportTest, ClusterRunsReportEachNode) {
  const RunResult r = ClusterResult();
  absl::StatusOr<ParsedArgs> p =
      ParseArgs({"--server=127.0.0.1:1,127.0.0.1:2,127.0.0.1:3",
                 "--concurrency=3", "--duration=2s"});
  ASSERT_TRUE(p.ok()) << p.status();
  const std::string json = ResultJson(p->options, "fetch", r);
  google::protobuf::Struct doc;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &doc).ok())
      << json;
  const auto& f = doc.fields();
  ASSERT_TRUE(f.contains("nodes")) << json;
  const auto& nodes = f.at("nodes").struct_value().fields();
  ASSERT_EQ(nodes.size(), 3u);
  double bytes = 0, requests = 0;
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_TRUE(nodes.contains(id)) << id;
    const auto& n = nodes.at(id).struct_value().fields();
    bytes += n.at("bytes").number_value();
    requests += n.at("requests").number_value();
    EXPECT_NEAR(n.at("bytes_per_s").number_value(),
                n.at("bytes").number_value() / 2, 1e-3);
    EXPECT_NEAR(n.at("requests_per_s").number_value(),
                n.at("requests").number_value() / 2, 1e-3);
    const auto& lat = n.at("latency_us").struct_value().fields();
    EXPECT_LE(lat.at("p50").number_value(), lat.at("p99").number_value());
  }
  EXPECT_EQ(bytes, f.at("bytes").number_value());
  EXPECT_EQ(requests, f.at("requests").number_value());
  EXPECT_EQ(nodes.at("b").struct_value().fields().at("errors").number_value(),
            1);
  EXPECT_NEAR(nodes.at("c")
                  .struct_value()
                  .fields()
                  .at("latency_us")
                  .struct_value()
                  .fields()
                  .at("p50")
                  .number_value(),
              3000, 15);
  const auto& config_nodes =
      f.at("config").struct_value().fields().at("nodes").list_value().values();
  ASSERT_EQ(config_nodes.size(), 3);
  EXPECT_EQ(config_nodes[2].string_value(), "c");

  const std::string text = SummaryText(p->options, "fetch", r);
  EXPECT_NE(text.find("cluster 127.0.0.1:1,127.0.0.1:2,127.0.0.1:3 (3 nodes: "
                      "a, b, c)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("per node"), std::string::npos) << text;
  // Node c: 30 requests, 15 req/s, 30 kB in 2 s, p50 3 ms.
  bool found = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, "  c ")) continue;
    found = true;
    std::vector<absl::string_view> cols =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    ASSERT_GE(cols.size(), 8u) << line;
    EXPECT_EQ(cols[1], "30") << line;
    EXPECT_EQ(cols[2], "0") << line;
    EXPECT_EQ(cols[3], "15.0") << line;
    EXPECT_EQ(cols[4], "0.000") << line;
    EXPECT_EQ(cols[5], "3.00") << line;
  }
  EXPECT_TRUE(found) << text;
}

TEST(ReportTest, OneServerHasNoNodeFigures) {
  const RunResult r = Synthetic();
  const std::string json = ResultJson(Options(), "test workload", r);
  EXPECT_EQ(json.find("\"nodes\""), std::string::npos);
  EXPECT_EQ(SummaryText(Options(), "w", r).find("per node"), std::string::npos);
}

TEST(ReportTest, ChartCountsEveryRequest) {
  Histogram h;
  for (int i = 1; i <= 1000; ++i) h.Record(i * 1000);
  const std::string chart = LatencyChart(h, 10, 20);
  std::vector<std::string> rows =
      absl::StrSplit(chart, '\n', absl::SkipEmpty());
  EXPECT_EQ(rows.size(), 10u);
  Histogram one;
  one.Record(5000);
  EXPECT_EQ(std::vector<std::string>(
                absl::StrSplit(LatencyChart(one), '\n', absl::SkipEmpty()))
                .size(),
            1u);
}

}  // namespace
}  // namespace tensorcast::load
