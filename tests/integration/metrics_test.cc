// What a container platform reads from the real server: Prometheus metrics
// on --metrics-listen (scraped over HTTP and checked against the exposition
// format), configuration from TENSORCAST_* variables, JSON log lines, and
// health.
#include <gtest/gtest.h>
#include <httplib.h>
#include <stdlib.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

// Sets environment variables while alive; the server processes started
// meanwhile inherit them.
class ScopedEnv {
 public:
  explicit ScopedEnv(
      std::initializer_list<std::pair<std::string, std::string>> vars)
      : vars_(vars) {
    for (const auto& [name, value] : vars_)
      setenv(name.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const auto& [name, value] : vars_) unsetenv(name.c_str());
  }

 private:
  std::vector<std::pair<std::string, std::string>> vars_;
};

int ReadPort(const std::string& path) {
  int port = 0;
  std::string text = ReadFile(path).value_or("");
  EXPECT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &port))
      << path << ": '" << text << "'";
  return port;
}

// GET /metrics; the body, or "" after a test failure.
std::string Scrape(int port) {
  httplib::Client http("127.0.0.1", port);
  httplib::Result res = http.Get("/metrics");
  if (!res) {
    ADD_FAILURE() << "GET /metrics: " << httplib::to_string(res.error());
    return "";
  }
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(absl::StartsWith(res->get_header_value("Content-Type"),
                               "text/plain; version=0.0.4"))
      << res->get_header_value("Content-Type");
  return res->body;
}

bool IsNameChar(char c, bool first, bool colon) {
  return absl::ascii_isalpha(c) || c == '_' || (colon && c == ':') ||
         (!first && absl::ascii_isdigit(c));
}

// Consumes a metric name (colon = true) or label name at the front of `s`.
bool ConsumeName(absl::string_view* s, bool colon, std::string* name) {
  size_t n = 0;
  while (n < s->size() && IsNameChar((*s)[n], n == 0, colon)) ++n;
  if (n == 0) return false;
  *name = std::string(s->substr(0, n));
  s->remove_prefix(n);
  return true;
}

// One sample line: name, then optionally {label="value",...} (values with
// only \\, \" and \n escaped), one space, and the value. Gives the name and
// the value's text.
bool ParseSample(absl::string_view s, std::string* name, std::string* value) {
  if (!ConsumeName(&s, /*colon=*/true, name)) return false;
  if (absl::ConsumePrefix(&s, "{")) {
    while (true) {
      std::string label;
      if (!ConsumeName(&s, /*colon=*/false, &label)) return false;
      if (!absl::ConsumePrefix(&s, "=\"")) return false;
      while (!s.empty() && s.front() != '"') {
        if (s.front() == '\n') return false;
        if (s.front() == '\\') {
          if (s.size() < 2 || (s[1] != '\\' && s[1] != '"' && s[1] != 'n')) {
            return false;
          }
          s.remove_prefix(1);
        }
        s.remove_prefix(1);
      }
      if (!absl::ConsumePrefix(&s, "\"")) return false;
      if (absl::ConsumePrefix(&s, "}")) break;
      if (!absl::ConsumePrefix(&s, ",")) return false;
    }
  }
  if (!absl::ConsumePrefix(&s, " ") || s.empty() ||
      s.find(' ') != absl::string_view::npos) {
    return false;
  }
  *value = std::string(s);
  return true;
}

// Checks `text` against the text exposition format 0.0.4 and returns its
// samples keyed by "name{labels}" as written. Every sample is
// `name{label="value",...} value`; every family has HELP and TYPE before
// its samples; a histogram's samples are _bucket (with le), _sum and _count.
std::map<std::string, double> Parse(const std::string& text) {
  std::map<std::string, std::string> types;
  std::map<std::string, bool> helped;
  std::map<std::string, double> samples;
  EXPECT_TRUE(absl::EndsWith(text, "\n"));
  for (absl::string_view view : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const std::string line(view);
    std::string name, value;
    absl::string_view rest = view;
    if (absl::ConsumePrefix(&rest, "# HELP ")) {
      EXPECT_TRUE(ConsumeName(&rest, true, &name) &&
                  absl::ConsumePrefix(&rest, " ") && !rest.empty())
          << line;
      helped[name] = true;
      continue;
    }
    if (absl::ConsumePrefix(&rest, "# TYPE ")) {
      EXPECT_TRUE(ConsumeName(&rest, true, &name) &&
                  absl::ConsumePrefix(&rest, " "))
          << line;
      EXPECT_TRUE(rest == "counter" || rest == "gauge" || rest == "histogram" ||
                  rest == "summary" || rest == "untyped")
          << line;
      EXPECT_TRUE(types.emplace(name, std::string(rest)).second)
          << "TYPE twice: " << line;
      continue;
    }
    EXPECT_FALSE(absl::StartsWith(line, "#")) << "stray comment: " << line;
    if (!ParseSample(view, &name, &value)) {
      ADD_FAILURE() << "not a sample line: " << line;
      continue;
    }
    double v = 0;
    if (value == "+Inf") {
      v = HUGE_VAL;
    } else {
      EXPECT_TRUE(absl::SimpleAtod(value, &v)) << line;
    }
    // The family: the name itself, or a histogram's without its suffix.
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (absl::EndsWith(name, suffix)) {
        std::string base = name.substr(0, name.size() - strlen(suffix));
        if (types.count(base) && types[base] == "histogram") family = base;
      }
    }
    EXPECT_TRUE(types.count(family)) << "no TYPE before " << line;
    EXPECT_TRUE(helped.count(family)) << "no HELP before " << line;
    if (types[family] == "counter") {
      EXPECT_TRUE(absl::EndsWith(family, "_total")) << line;
    }
    if (types[family] == "histogram" && absl::EndsWith(name, "_bucket")) {
      EXPECT_NE(line.find("le=\""), std::string::npos) << line;
    }
    EXPECT_TRUE(absl::StartsWith(name, "tensorcast_")) << line;
    const std::string key = line.substr(0, line.rfind(' '));
    EXPECT_TRUE(samples.emplace(key, v).second) << "sample twice: " << line;
  }
  return samples;
}

// A sample's value; 0 when absent (a counter not yet incremented).
double Get(const std::map<std::string, double>& samples,
           const std::string& key) {
  auto it = samples.find(key);
  return it == samples.end() ? 0 : it->second;
}

std::string Rpcs(const std::string& method, const std::string& code) {
  return "tensorcast_rpcs_total{method=\"" + method + "\",code=\"" + code +
         "\"}";
}

class MetricsTest : public ::testing::Test {
 protected:
  std::map<std::string, double> Metrics() {
    return Parse(Scrape(ReadPort(dir_.File("metrics-port"))));
  }
  Client& client() { return server_.client(); }

  TempDir dir_;  // before server_, which writes into it
  ServerProcess server_{{"--metrics-listen=127.0.0.1:0",
                         "--metrics-port-file=" + dir_.File("metrics-port")}};
};

TEST_F(MetricsTest, ExpositionParsesAndHasEveryFamily) {
  std::string text = Scrape(ReadPort(dir_.File("metrics-port")));
  std::map<std::string, double> m = Parse(text);
  for (const char* family :
       {"tensorcast_pool_allocated_bytes gauge",
        "tensorcast_pool_reserved_bytes gauge",
        "tensorcast_pool_limit_bytes gauge",
        "tensorcast_pool_peak_allocated_bytes gauge",
        "tensorcast_pool_alloc_count_total counter",
        "tensorcast_pool_free_count_total counter",
        "tensorcast_tensors_held gauge", "tensorcast_tensor_bytes_held gauge",
        "tensorcast_rpcs_total counter",
        "tensorcast_rpc_duration_seconds histogram",
        "tensorcast_put_bytes_total counter",
        "tensorcast_fetch_bytes_total counter",
        "tensorcast_active_streams gauge"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + family), std::string::npos)
        << family;
  }
  EXPECT_EQ(Get(m, "tensorcast_tensors_held{device=\"cpu\"}"), 0);
  EXPECT_EQ(m.count(Rpcs("Put", "OK")), 1u);
  EXPECT_EQ(m.count("tensorcast_rpc_duration_seconds_bucket{method=\"Fetch\","
                    "le=\"+Inf\"}"),
            1u);
}

TEST_F(MetricsTest, CountsFollowPutCreateFetchDeleteAndErrors) {
  std::map<std::string, double> before = Metrics();
  const std::string held = "tensorcast_tensors_held{device=\"cpu\"}";
  const std::string allocated =
      "tensorcast_pool_allocated_bytes{device=\"cpu\"}";

  constexpr int64_t kPutBytes = 3 << 20;  // several Put messages
  PutOptions put;
  put.dtype = v1::DTYPE_UINT8;
  put.shape = {kPutBytes};
  absl::StatusOr<v1::TensorInfo> a =
      client().PutBuffer(put, std::string(kPutBytes, '\x07'));
  ASSERT_TRUE(a.ok()) << a.status();
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(256);
  create.add_shape(256);
  create.mutable_zeros();
  absl::StatusOr<v1::TensorInfo> b = client().Create(create);
  ASSERT_TRUE(b.ok()) << b.status();

  std::map<std::string, double> after = Metrics();
  EXPECT_EQ(Get(after, held), Get(before, held) + 2);
  EXPECT_GE(Get(after, allocated),
            Get(before, allocated) + kPutBytes + 256 * 256 * 4);
  EXPECT_EQ(Get(after, "tensorcast_tensor_bytes_held{device=\"cpu\"}"),
            Get(before, "tensorcast_tensor_bytes_held{device=\"cpu\"}") +
                kPutBytes + 256 * 256 * 4);
  EXPECT_GE(Get(after, "tensorcast_put_bytes_total"),
            Get(before, "tensorcast_put_bytes_total") + kPutBytes);
  EXPECT_EQ(Get(after, Rpcs("Put", "OK")), Get(before, Rpcs("Put", "OK")) + 1);
  EXPECT_EQ(Get(after, Rpcs("Create", "OK")),
            Get(before, Rpcs("Create", "OK")) + 1);
  EXPECT_EQ(
      Get(after, "tensorcast_rpc_duration_seconds_count{method=\"Put\"}"),
      Get(before, "tensorcast_rpc_duration_seconds_count{method=\"Put\"}") + 1);
  EXPECT_GT(Get(after, "tensorcast_pool_alloc_count_total{device=\"cpu\"}"),
            Get(before, "tensorcast_pool_alloc_count_total{device=\"cpu\"}"));

  FetchOptions fetch;
  fetch.format = v1::FORMAT_RAW;
  absl::StatusOr<std::string> bytes = client().FetchBytes(a->handle(), fetch);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  std::map<std::string, double> fetched = Metrics();
  EXPECT_GE(Get(fetched, "tensorcast_fetch_bytes_total"),
            Get(after, "tensorcast_fetch_bytes_total") + kPutBytes);
  EXPECT_EQ(Get(fetched, Rpcs("Fetch", "OK")),
            Get(after, Rpcs("Fetch", "OK")) + 1);

  ASSERT_TRUE(client().Delete({a->handle(), b->handle()}).ok());
  absl::StatusOr<std::string> missing =
      client().FetchBytes("0123456789abcdef0123456789abcdef", fetch);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  std::map<std::string, double> end = Metrics();
  EXPECT_EQ(Get(end, held), Get(before, held));
  EXPECT_EQ(Get(end, Rpcs("Delete", "OK")),
            Get(before, Rpcs("Delete", "OK")) + 1);
  EXPECT_EQ(Get(end, Rpcs("Fetch", "NOT_FOUND")),
            Get(before, Rpcs("Fetch", "NOT_FOUND")) + 1);
  // Scrapes do not count as RPCs, and the Stats RPC does.
  ASSERT_TRUE(client().Stats().ok());
  EXPECT_EQ(Get(Metrics(), Rpcs("Stats", "OK")),
            Get(end, Rpcs("Stats", "OK")) + 1);
}

int64_t CpuLimit(Client& client) {
  absl::StatusOr<v1::StatsResponse> stats = client.Stats();
  EXPECT_TRUE(stats.ok()) << stats.status();
  if (!stats.ok()) return -1;
  for (const v1::DeviceStats& d : stats->devices()) {
    if (d.device() == "cpu") return d.limit_bytes();
  }
  return -1;
}

TEST(EnvironmentTest, TensorcastVariablesConfigureTheServerAndFlagsWin) {
  TempDir dir;
  ScopedEnv env({{"TENSORCAST_MEMORY_LIMIT", "64MiB"},
                 {"TENSORCAST_METRICS_LISTEN", "127.0.0.1:0"},
                 {"TENSORCAST_METRICS_PORT_FILE", dir.File("metrics-port")}});
  {
    ServerProcess server;
    EXPECT_EQ(CpuLimit(server.client()), 64 << 20);
    std::map<std::string, double> m =
        Parse(Scrape(ReadPort(dir.File("metrics-port"))));
    EXPECT_EQ(Get(m, "tensorcast_pool_limit_bytes{device=\"cpu\"}"), 64 << 20);
    EXPECT_NE(server.Log().find("from $TENSORCAST_MEMORY_LIMIT"),
              std::string::npos)
        << server.Log();
  }
  {
    ServerProcess server({"--memory-limit=32MiB"});
    EXPECT_EQ(CpuLimit(server.client()), 32 << 20);
  }
  // A bad value is refused at start, naming the variable.
  ScopedEnv bad({{"TENSORCAST_CHUNK_BYTES", "lots"}});
  // (--help: were the variable ignored, it would exit at once all the same)
  CommandResult r =
      RunCommand({std::string(TENSORCAST_BIN_DIR) + "/tensorcast-server",
                  "--devices=cpu", "--help"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("TENSORCAST_CHUNK_BYTES=lots"), std::string::npos)
      << r.err;
}

TEST(LogFormatTest, JsonLinesEachParse) {
  ServerProcess server({"--log-format=json"});
  ASSERT_TRUE(server.client().Stats().ok());
  // A failed RPC whose message quotes the ref: quotes, a backslash, a
  // newline, a tab.
  EXPECT_EQ(server.client().Info("we\"ird\\ref\nx\ty").status().code(),
            absl::StatusCode::kNotFound);
  // One that tries to forge fields in the message and the line, and one
  // far too long to quote whole.
  EXPECT_EQ(server.client()
                .Detach("x\" code=OK\", \"code\":\"OK\", \"level\":\"info")
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  absl::Status long_ref = server.client()
                              .To([] {
                                v1::ToRequest r;
                                r.set_ref(std::string(60000, 'r') + "\"\n");
                                return r;
                              }())
                              .status();
  EXPECT_EQ(long_ref.code(), absl::StatusCode::kNotFound);
  EXPECT_LT(long_ref.message().size(), 200u) << long_ref.message();
  EXPECT_NE(long_ref.message().find("...(60002 bytes)"), std::string::npos)
      << long_ref.message();
  TempDir dir;
  // Stop first: every line is written and flushed.
  EXPECT_EQ(server.Stop(), 0);
  WriteFile(dir.File("log"), server.Stdout());
  CommandResult check = RunPython(R"(
import json, re, sys
lines = open(sys.argv[1], encoding='utf-8').read().split('\n')
assert lines[-1] == '', 'the last line ends with a newline'
events = [json.loads(l) for l in lines[:-1]]
ts = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')
for e in events:
    assert ts.match(e['ts']), e
    assert e['level'] in ('trace', 'debug', 'info', 'warning', 'error'), e
    assert isinstance(e['msg'], str), e
assert any('listening on' in e['msg'] for e in events)
stats = [e for e in events if e.get('method') == 'Stats']
assert stats and stats[0]['code'] == 'OK' and stats[0]['level'] == 'debug'
assert isinstance(stats[0]['ms'], float) and stats[0]['peer']
info = [e for e in events if e.get('method') == 'Info']
assert info and info[0]['code'] == 'NOT_FOUND', info
# The ref is escaped where the message quotes it, and the message once more
# in msg's message="..." (so no quote in it ends that field).
assert r"""no tensor 'we\"ird\\ref\nx\ty'""" in info[0]['error'], info
logged = r"""no tensor 'we\\\"ird\\\\ref\\nx\\ty'"""
assert 'message="' + logged + '"' in info[0]['msg'], info
line = re.compile(r'rpc=(\w+) peer=\S+ code=([A-Z_]+) ms=[0-9.]+ '
                  r'message="(?:[^"\\]|\\.)*"')
for e in events:
    if e['level'] == 'warning' and 'method' in e:
        m = line.fullmatch(e['msg'])
        assert m and m.groups() == (e['method'], e['code']), e
forged = [e for e in events if e.get('method') == 'Detach']
assert forged and forged[0]['code'] == 'NOT_FOUND', forged
long = [e for e in events if e.get('method') == 'To']
assert long and '...(60002 bytes)' in long[0]['error'], long
assert len(json.dumps(long[0])) < 1500, len(json.dumps(long[0]))
print(len(events))
)",
                                  {dir.File("log")});
  EXPECT_EQ(check.exit_code, 0) << check.err << "\n" << server.Stdout();
}

// "... rpc=Info peer=P code=NOT_FOUND ms=T message="M"" to the end of the
// line, where M is escaped: no bare quote, every backslash escapes one
// character. (By hand: GCC 12 warns inside <regex> under ASan.)
bool IsNotFoundInfoLine(absl::string_view line) {
  const size_t at = line.find(" rpc=Info peer=");
  if (at == absl::string_view::npos) return false;
  line.remove_prefix(at + 15);
  const size_t space = line.find(' ');
  if (space == 0 || space == absl::string_view::npos) return false;
  line.remove_prefix(space);
  if (!absl::ConsumePrefix(&line, " code=NOT_FOUND ms=")) return false;
  const size_t digits = line.find_first_not_of("0123456789.");
  if (digits == 0 || digits == absl::string_view::npos) return false;
  line.remove_prefix(digits);
  if (!absl::ConsumePrefix(&line, " message=\"")) return false;
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\\') {
      ++i;  // the escaped character, whatever it is
    } else if (line[i] == '"') {
      return i + 1 == line.size();
    }
  }
  return false;
}

TEST(LogFormatTest, TextLinesAreOneEventEach) {
  ServerProcess server;
  EXPECT_EQ(server.client().Info("two\nlines").status().code(),
            absl::StatusCode::kNotFound);
  // A ref that would close the message="..." field and add its own.
  EXPECT_EQ(
      server.client().Info("x\" code=OK message=\"forged").status().code(),
      absl::StatusCode::kNotFound);
  EXPECT_EQ(server.client().Info(std::string(60000, 'r')).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(server.Stop(), 0);
  const std::string out = server.Stdout();
  // Escaped where the message quotes the ref, then once more on the line.
  EXPECT_NE(out.find("message=\"no tensor 'two\\\\nlines'\""),
            std::string::npos)
      << out;
  int rpc_lines = 0;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    // Each starts with its timestamp: 2026-11-26T14:11:33.062+00:00.
    EXPECT_TRUE(line.size() > 23 && absl::ascii_isdigit(line[0]) &&
                line[4] == '-' && line[10] == 'T' && line[19] == '.')
        << line;
    EXPECT_LT(line.size(), 1500u) << line.substr(0, 200);
    if (absl::StrContains(line, "rpc=Info")) {
      ++rpc_lines;
      EXPECT_TRUE(IsNotFoundInfoLine(line)) << line;
      EXPECT_EQ(line.find("code="), line.rfind(" code=NOT_FOUND") + 1) << line;
    }
  }
  EXPECT_EQ(rpc_lines, 3);
}

TEST(HealthTest, ServingOnceStarted) {
  ServerProcess server({"--metrics-listen=127.0.0.1:0"});
  EXPECT_TRUE(server.client().Health().ok());
  EXPECT_EQ(server.Stop(), 0);
}

}  // namespace
}  // namespace tensorcast::testing
