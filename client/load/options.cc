#include "client/load/options.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "common/dtype.h"
#include "common/flags.h"

namespace tensorcast::load {

namespace {

constexpr char kUsage[] =
    R"(tensorcast-load: load-test a tensorcast server.

Usage:
  tensorcast-load --server=HOST:PORT[,...] --scenario=fetch|put|to|info|mixed
      [--size=SIZE] [--dtype=T] [--to-dtype=T] [--format=npy|raw] [--device=D]
      (--concurrency=N | --rate=R [--arrival=constant|poisson])
      [--connections=C] (--duration=10s | --requests=N) [--warmup=2s]
      [--mix=fetch:8,info:2] [--json=FILE] [--csv=FILE] [--seed=N]
      [--shared-memory | --cuda-ipc[=DEVICE]]
      [--requires-grad] [--fetch-as-is] [--max-error-rate=0.5]
      [--token=T] [--tls | --tls-ca=FILE] [--tls-cert=FILE --tls-key=FILE]
  tensorcast-load --plot=RESULT.json --out=FILE.png

Scenarios: fetch streams a tensor of --size (cast to --to-dtype on the way
when given); put uploads one (and deletes it, unmeasured); to casts on the
server to --to-dtype (default float16, or float32 from float16) and deletes
the result, unmeasured; info is a tiny unary call; mixed draws each request
from --mix. The tool creates the tensors it needs and deletes them after.
Against a cluster (--server=HOST:PORT,HOST:PORT,... or dns:///NAME:PORT
naming members with node ids) worker i works on node i mod N: its tensors
are made on that node and its calls go to it; the summary and the JSON give
each node's figures beside the aggregate.
A fetch of a tensor on a GPU, or of one that requires grad, is sent as users
write it, with .cpu() / .detach() fused into the stream; --fetch-as-is sends
it as .numpy() would, which the server refuses (FAILED_PRECONDITION).

Closed loop (--concurrency): N workers, each sends its next request when the
last one completes. Open loop (--rate): requests are sent at scheduled times
(constant or Poisson inter-arrival, seeded) whatever the server's pace;
latency counts from the scheduled time (corrected for coordinated omission),
service time from the actual send. Exit status: 0 after a run, 1 if setting
up or cleaning up failed, 2 for bad input or an unreachable server, 3 when
more than --max-error-rate of the requests failed (the summary leads with
the most frequent error), 130 when interrupted (after the summary).)";

absl::Status Bad(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

absl::StatusOr<v1::DType> ProtoDType(absl::string_view flag,
                                     const std::string& text) {
  absl::StatusOr<DType> d = ParseDType(text);
  if (!d.ok()) {
    return Bad(absl::StrCat("--", flag, "=", text, ": ", d.status().message()));
  }
  return static_cast<v1::DType>(static_cast<int>(*d) + 1);
}

}  // namespace

absl::string_view RequestKindName(RequestKind kind) {
  switch (kind) {
    case RequestKind::kFetch:
      return "fetch";
    case RequestKind::kPut:
      return "put";
    case RequestKind::kTo:
      return "to";
    case RequestKind::kInfo:
      return "info";
  }
  return "?";
}

absl::StatusOr<Mix> ParseMix(absl::string_view text) {
  Mix mix{};
  std::array<bool, kNumRequestKinds> seen{};
  auto bad = [&](absl::string_view why) {
    return Bad(absl::StrCat("--mix=", text, ": ", why,
                            " (expected e.g. fetch:8,info:2 with kinds "
                            "fetch, put, to, info)"));
  };
  if (text.empty()) return bad("empty");
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> kv = absl::StrSplit(part, ':');
    if (kv.size() != 2) return bad(absl::StrCat("'", part, "' is not KIND:W"));
    int kind = -1;
    for (int k = 0; k < kNumRequestKinds; ++k) {
      if (absl::StripAsciiWhitespace(kv[0]) ==
          RequestKindName(static_cast<RequestKind>(k))) {
        kind = k;
      }
    }
    if (kind < 0) return bad(absl::StrCat("unknown kind '", kv[0], "'"));
    if (seen[kind]) return bad(absl::StrCat("'", kv[0], "' given twice"));
    seen[kind] = true;
    int64_t weight;
    if (!absl::SimpleAtoi(kv[1], &weight) || weight < 0) {
      return bad(
          absl::StrCat("weight '", kv[1], "' is not a non-negative integer"));
    }
    mix[kind] = weight;
  }
  int64_t total = 0;
  for (int64_t w : mix) total += w;
  if (total <= 0) return bad("every weight is 0");
  return mix;
}

std::string MixText(const Mix& mix) {
  std::vector<std::string> parts;
  for (int k = 0; k < kNumRequestKinds; ++k) {
    if (mix[k] > 0) {
      parts.push_back(absl::StrCat(RequestKindName(static_cast<RequestKind>(k)),
                                   ":", mix[k]));
    }
  }
  return absl::StrJoin(parts, ",");
}

absl::StatusOr<int64_t> ParseDurationNs(absl::string_view text) {
  double seconds;
  absl::Duration d;
  if (absl::SimpleAtod(text, &seconds)) {
    if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e9) {
      return Bad(absl::StrCat("'", text, "' is not a duration"));
    }
    return static_cast<int64_t>(std::llround(seconds * 1e9));
  }
  if (!absl::ParseDuration(std::string(text), &d) ||
      d == absl::InfiniteDuration() || d < absl::ZeroDuration()) {
    return Bad(
        absl::StrCat("'", text, "' is not a duration (e.g. 10s, 500ms, 2m)"));
  }
  return absl::ToInt64Nanoseconds(d);
}

const char* LoadOptions::transport() const {
  if (cuda_ipc()) return "cuda-ipc";
  return shared_memory ? "shared-memory" : "socket";
}

int64_t LoadOptions::elements() const {
  const int64_t item =
      static_cast<int64_t>(ItemSize(static_cast<DType>(dtype - 1)));
  return size_bytes / item;
}

absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::string& default_server,
                                     const std::string& default_token) {
  ParsedArgs parsed;
  LoadOptions& o = parsed.options;
  // --cuda-ipc takes an optional value: alone it means GPU 0, so that it
  // never takes the next argument as its value.
  std::vector<std::string> argv = args;
  for (std::string& arg : argv) {
    if (arg == "--") break;
    if (arg == "--cuda-ipc") arg = "--cuda-ipc=0";
  }
  std::string cuda_ipc;
  o.server = default_server;
  std::string dtype = "float32", to_dtype, format = "npy", arrival = "constant";
  std::string duration = "10s", warmup = "2s", mix;
  int64_t seed = 1;
  FlagSet flags(kUsage);
  flags.String("server", &o.server,
               "HOST:PORT of the server, a cluster's HOST:PORT,HOST:PORT,... "
               "or dns:///NAME:PORT");
  flags.String("scenario", &o.scenario, "fetch, put, to, info or mixed");
  flags.Size("size", &o.size_bytes, "bytes of the tensor (64KiB, 16MiB...)");
  flags.String("dtype", &dtype, "element type of the tensor");
  flags.String("to-dtype", &to_dtype,
               "fetch: cast in the stream; to: the target dtype");
  flags.String("format", &format, "fetch: npy or raw");
  flags.String("device", &o.device, "where the tensors live (cpu, cuda:0)");
  flags.Bool("requires-grad", &o.requires_grad,
             "the tensors the run makes require grad (floating dtypes)");
  flags.Bool("fetch-as-is", &o.fetch_as_is,
             "fetch as .numpy() does, without .cpu()/.detach() (refused for "
             "a GPU tensor or one that requires grad)");
  flags.Double("max-error-rate", &o.max_error_rate,
               "exit 3 when more than this fraction of the requests failed");
  flags.Int("concurrency", &o.concurrency, "closed loop: workers");
  flags.Double("rate", &o.rate, "open loop: requests per second");
  flags.String("arrival", &arrival, "open loop: constant or poisson");
  flags.Int("max-inflight", &o.max_inflight,
            "open loop: most requests outstanding (worker threads)");
  flags.Int("connections", &o.connections,
            "gRPC channels (TCP connections) the workers share; in a "
            "cluster, to each node");
  flags.String("duration", &duration, "measured time (10s, 1m, 500ms)");
  flags.Int("requests", &o.requests, "measured requests, instead of duration");
  flags.String("warmup", &warmup, "unmeasured time before the measurement");
  flags.String("mix", &mix, "mixed: weights, e.g. fetch:8,info:2");
  flags.String("json", &o.json_path, "write the full result as JSON here");
  flags.String("csv", &o.csv_path, "write the per-second series as CSV here");
  flags.Int("seed", &seed, "seed for arrivals and the mix");
  flags.Bool("progress", &o.progress,
             "live progress on stderr when it is a terminal");
  flags.Bool("shared-memory", &o.shared_memory,
             "fetch and put through same-host shared memory (the server "
             "must run with --shared-memory)");
  flags.String("cuda-ipc", &cuda_ipc,
               "fetch and put through memory on this GPU of this process "
               "(N or cuda:N; --cuda-ipc alone: 0), lent to the server "
               "through CUDA IPC (it must run with --shared-memory)");
  flags.String("token", &o.token,
               "bearer token for a server with --auth-tokens (default "
               "$TENSORCAST_TOKEN)");
  flags.Bool("tls", &o.tls, "TLS with the system's root CAs");
  flags.String("tls-ca", &o.tls_ca, "PEM root CAs: TLS trusting these");
  flags.String("tls-cert", &o.tls_cert,
               "PEM client certificate (mutual TLS; with --tls-key)");
  flags.String("tls-key", &o.tls_key, "PEM key of --tls-cert");
  flags.String("plot", &parsed.plot_json, "draw RESULT.json (needs --out)");
  flags.String("out", &parsed.plot_out, "--plot: the PNG to write");
  if (absl::Status s = flags.Parse(argv); !s.ok()) return s;
  parsed.usage = flags.Usage();
  if (!flags.WasSet("token")) o.token = default_token;
  if (flags.help_requested()) {
    parsed.mode = ParsedArgs::Mode::kHelp;
    return parsed;
  }
  if (!flags.positional().empty()) {
    return Bad(absl::StrCat("unexpected argument '", flags.positional()[0],
                            "' (flags are --name=value)"));
  }
  if (flags.WasSet("plot") || flags.WasSet("out")) {
    if (parsed.plot_json.empty() || parsed.plot_out.empty()) {
      return Bad("--plot=RESULT.json and --out=FILE.png go together");
    }
    for (const std::string& f : flags.set_flags()) {
      if (f != "plot" && f != "out") {
        return Bad(absl::StrCat("--", f, " does not apply to --plot"));
      }
    }
    parsed.mode = ParsedArgs::Mode::kPlot;
    return parsed;
  }

  if (o.server.empty()) return Bad("--server=HOST:PORT is empty");
  if (!absl::StartsWith(o.server, "dns:") &&
      o.server.find(',') != std::string::npos) {
    for (absl::string_view part : absl::StrSplit(o.server, ',')) {
      if (absl::StripAsciiWhitespace(part).empty()) {
        return Bad(absl::StrCat("--server=", o.server,
                                ": an empty entry in the list"));
      }
    }
    if (o.shared_memory || flags.WasSet("cuda-ipc")) {
      return Bad(
          absl::StrCat(o.shared_memory ? "--shared-memory" : "--cuda-ipc",
                       " works with one server, not a list of "
                       "cluster members"));
    }
  }
  if (flags.WasSet("cuda-ipc")) {
    absl::string_view text = cuda_ipc;
    absl::ConsumePrefix(&text, "cuda:");
    int64_t device;
    if (!absl::SimpleAtoi(text, &device) || device < 0 || device > 1023) {
      return Bad(absl::StrCat("--cuda-ipc=", cuda_ipc,
                              ": expected a GPU of this process, N or "
                              "cuda:N"));
    }
    if (o.shared_memory) {
      return Bad(
          "--cuda-ipc and --shared-memory exclude each other (device or "
          "host memory lent to the server)");
    }
    o.cuda_ipc_device = static_cast<int>(device);
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return Bad("--tls-cert and --tls-key go together");
  }
  const std::vector<std::string> scenarios = {"fetch", "put", "to", "info",
                                              "mixed"};
  bool known = false;
  for (int k = 0; k < kNumRequestKinds; ++k) {
    if (o.scenario == RequestKindName(static_cast<RequestKind>(k))) {
      o.mix[k] = 1;
      known = true;
    }
  }
  if (o.scenario == "mixed") {
    known = true;
    absl::StatusOr<Mix> m = ParseMix(mix.empty() ? "fetch:8,info:2" : mix);
    if (!m.ok()) return m.status();
    o.mix = *m;
  } else if (flags.WasSet("mix")) {
    return Bad("--mix applies to --scenario=mixed only");
  }
  if (!known) {
    return Bad(absl::StrCat("unknown scenario '", o.scenario, "' (",
                            absl::StrJoin(scenarios, ", "), ")"));
  }

  absl::StatusOr<v1::DType> d = ProtoDType("dtype", dtype);
  if (!d.ok()) return d.status();
  o.dtype = *d;
  if (!to_dtype.empty()) {
    absl::StatusOr<v1::DType> t = ProtoDType("to-dtype", to_dtype);
    if (!t.ok()) return t.status();
    o.to_dtype = *t;
  }
  if (format == "npy") {
    o.format = v1::FORMAT_NPY;
  } else if (format == "raw") {
    o.format = v1::FORMAT_RAW;
  } else {
    return Bad(absl::StrCat("--format=", format, ": expected npy or raw"));
  }
  if (o.device.empty()) return Bad("--device is empty");
  if (o.requires_grad &&
      !IsFloatingOrComplex(static_cast<DType>(o.dtype - 1))) {
    return Bad(
        absl::StrCat("--requires-grad needs a floating or complex "
                     "--dtype, not ",
                     dtype));
  }
  if (o.fetch_as_is && o.mix[static_cast<int>(RequestKind::kFetch)] == 0) {
    return Bad(
        "--fetch-as-is applies to runs that fetch (--scenario=fetch, "
        "or mixed with a fetch weight)");
  }
  if (o.cuda_ipc() && o.mix[static_cast<int>(RequestKind::kFetch)] == 0 &&
      o.mix[static_cast<int>(RequestKind::kPut)] == 0) {
    return Bad(
        "--cuda-ipc applies to runs that fetch or put (--scenario=fetch, "
        "put, or mixed with a fetch or put weight)");
  }
  if (!(o.max_error_rate >= 0 && o.max_error_rate <= 1)) {
    return Bad(absl::StrCat("--max-error-rate=", o.max_error_rate,
                            ": must be a fraction from 0 to 1"));
  }
  const int64_t item =
      static_cast<int64_t>(ItemSize(static_cast<DType>(o.dtype - 1)));
  if (o.size_bytes <= 0 || o.size_bytes % item != 0) {
    return Bad(absl::StrCat("--size=", o.size_bytes, ": must be a positive ",
                            "multiple of the ", dtype, " item size (", item,
                            " bytes)"));
  }

  if (flags.WasSet("rate") && flags.WasSet("concurrency")) {
    return Bad(
        "--rate (open loop) and --concurrency (closed loop) exclude each "
        "other");
  }
  if (flags.WasSet("rate")) {
    if (!(o.rate > 0) || !std::isfinite(o.rate)) {
      return Bad(absl::StrCat("--rate=", o.rate, ": must be > 0"));
    }
    if (arrival == "constant") {
      o.arrival = Arrival::kConstant;
    } else if (arrival == "poisson") {
      o.arrival = Arrival::kPoisson;
    } else {
      return Bad(absl::StrCat("--arrival=", arrival,
                              ": expected constant or poisson"));
    }
    if (o.max_inflight < 1) return Bad("--max-inflight must be >= 1");
  } else {
    o.rate = 0;
    if (flags.WasSet("arrival")) return Bad("--arrival needs --rate");
    if (flags.WasSet("max-inflight")) return Bad("--max-inflight needs --rate");
    if (o.concurrency < 1) {
      return Bad(
          absl::StrCat("--concurrency=", o.concurrency, ": must be >= 1"));
    }
    if (o.connections > o.concurrency) {
      return Bad(absl::StrCat("--connections=", o.connections,
                              " exceeds --concurrency=", o.concurrency,
                              ": each connection needs a worker"));
    }
  }
  if (o.connections < 1) {
    return Bad(absl::StrCat("--connections=", o.connections, ": must be >= 1"));
  }

  if (flags.WasSet("duration") && flags.WasSet("requests")) {
    return Bad("--duration and --requests exclude each other");
  }
  if (flags.WasSet("requests")) {
    if (o.requests < 1) return Bad("--requests must be >= 1");
    o.duration_ns = 0;
  } else {
    o.requests = 0;
    absl::StatusOr<int64_t> ns = ParseDurationNs(duration);
    if (!ns.ok())
      return Bad(absl::StrCat("--duration: ", ns.status().message()));
    if (*ns <= 0) return Bad("--duration must be > 0");
    o.duration_ns = *ns;
  }
  absl::StatusOr<int64_t> w = ParseDurationNs(warmup);
  if (!w.ok()) return Bad(absl::StrCat("--warmup: ", w.status().message()));
  o.warmup_ns = *w;
  o.seed = static_cast<uint64_t>(seed);
  return parsed;
}

}  // namespace tensorcast::load
