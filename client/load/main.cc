// tensorcast-load: the load-testing tool (DESIGN.md §11, "Load tool"). Checks
// the server answers, makes the tensors the scenario needs, runs the load,
// deletes the tensors (on errors and SIGINT too), prints the summary and
// writes --json/--csv. Exit status: 0 after a run, 1 when setting up or
// cleaning up failed, 2 for bad input or an unreachable server, 3 when more
// than --max-error-rate of the requests failed (not a measurement; the
// summary leads with the dominant error), 130 when interrupted (after the
// summary of what was measured).
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/cpp/client.h"
#include "client/cpp/cluster.h"
#include "client/load/options.h"
#include "client/load/plot.h"
#include "client/load/report.h"
#include "client/load/runner.h"
#include "client/load/workload.h"

namespace tensorcast::load {
namespace {

constexpr auto kHealthTimeout = std::chrono::seconds(3);
constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr auto kControlTimeout = std::chrono::seconds(120);

int UsageError(absl::string_view message) {
  std::fprintf(stderr, "tensorcast-load: %s\n", std::string(message).c_str());
  return 2;
}

int Fail(absl::string_view what, const absl::Status& status) {
  std::fprintf(stderr, "tensorcast-load: %s: %s: %s\n",
               std::string(what).c_str(), StatusCodeName(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

// A channel of its own: the local subchannel pool and a distinct argument
// keep gRPC from sharing one TCP connection among channels.
std::shared_ptr<grpc::Channel> MakeChannel(
    const std::string& target, int index,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  grpc::ChannelArguments args = DefaultChannelArguments();
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("tensorcast.load.connection", index);
  return grpc::CreateCustomChannel(target, credentials, args);
}

// Opened before the run so that a bad path fails before any load is sent.
struct OutputFile {
  std::string path;
  std::FILE* file = nullptr;
  ~OutputFile() {
    if (file != nullptr) std::fclose(file);
  }
  bool Write(const std::string& text) {
    if (file == nullptr) return true;
    const bool ok =
        std::fwrite(text.data(), 1, text.size(), file) == text.size() &&
        std::fclose(file) == 0;
    file = nullptr;
    if (!ok)
      std::fprintf(stderr, "tensorcast-load: error writing %s\n", path.c_str());
    return ok;
  }
};

// SIGINT/SIGTERM are blocked in every thread and taken here: the first stops
// the run (the tool still cleans up); a second exits at once.
void WatchSignals(sigset_t set, StopFlag* stop) {
  int sig;
  if (sigwait(&set, &sig) != 0) return;
  if (isatty(STDERR_FILENO)) std::fprintf(stderr, "\r\033[K");
  std::fprintf(stderr,
               "tensorcast-load: interrupted; finishing and deleting the "
               "tensors (again to quit now)\n");
  stop->Request();
  if (sigwait(&set, &sig) != 0) return;
  std::fprintf(stderr,
               "tensorcast-load: interrupted again; tensors are left to "
               "their TTL\n");
  std::_Exit(130);
}

int Run(const LoadOptions& o) {
  OutputFile json{o.json_path}, csv{o.csv_path};
  for (OutputFile* f : {&json, &csv}) {
    if (f->path.empty()) continue;
    f->file = std::fopen(f->path.c_str(), "w");
    if (f->file == nullptr) {
      return UsageError(
          absl::StrCat("cannot write ", f->path, ": ", std::strerror(errno)));
    }
  }

  // Before gRPC starts its threads, so that they inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // Static: the detached watcher may outlive this function.
  static StopFlag stop;
  std::thread(WatchSignals, signals, &stop).detach();

  // Every client carries the token; every channel the TLS settings.
  ClientOptions base;
  base.token = o.token;
  base.tls = o.tls;
  if (absl::Status s = ReadTlsFiles(o.tls_ca, o.tls_cert, o.tls_key, &base);
      !s.ok()) {
    return UsageError(s.message());
  }
  const std::shared_ptr<grpc::ChannelCredentials> credentials =
      ChannelCredentials(base);
  const std::vector<std::string> targets = SplitTargets(o.server);
  const std::string first = targets.empty() ? o.server : targets[0];
  ClientOptions health_options = base;
  health_options.timeout = kHealthTimeout;
  if (absl::Status s =
          Client(MakeChannel(first, -1, credentials), health_options).Health();
      !s.ok()) {
    return UsageError(
        absl::StrCat("cannot reach a serving tensorcast server at ", first,
                     ": ", StatusCodeName(s.code()), ": ", s.message()));
  }

  // A cluster when the server answers with node ids: then every client
  // routes by handle and the workers are spread over the healthy nodes.
  ClientOptions control_options = base;
  control_options.timeout = kControlTimeout;
  std::unique_ptr<Client> control = Client::Connect(o.server, control_options);
  std::vector<std::string> nodes = control->HealthyNodes();
  std::sort(nodes.begin(), nodes.end());
  if (nodes.empty() && targets.size() > 1) {
    return UsageError(absl::StrCat(
        "--server lists ", targets.size(), " servers, but ", first,
        " is not a member of a cluster (no node id); give one server, or "
        "start them with --node-id and --cluster"));
  }
  if (!nodes.empty()) {
    // Say so when members are left out: the run covers the healthy ones.
    absl::StatusOr<v1::ClusterResponse> members = control->Cluster();
    if (members.ok()) {
      std::vector<std::string> down;
      for (const v1::ClusterMember& m : members->members()) {
        if (!m.healthy()) {
          down.push_back(absl::StrCat(
              m.node_id().empty() ? "?" : m.node_id(), " (", m.address(),
              m.error().empty() ? "" : ": ", m.error(), ")"));
        }
      }
      if (!down.empty()) {
        std::fprintf(stderr,
                     "tensorcast-load: running on the %zu healthy node(s) "
                     "%s; not healthy: %s\n",
                     nodes.size(), absl::StrJoin(nodes, ", ").c_str(),
                     absl::StrJoin(down, ", ").c_str());
      }
    }
  }
  if (!nodes.empty() && o.shared_memory) {
    return UsageError(
        "--shared-memory works with one server; this one is a cluster "
        "member");
  }
  std::vector<std::unique_ptr<Client>> clients;
  std::vector<Client*> client_ptrs;
  if (nodes.empty()) {
    control = std::make_unique<Client>(MakeChannel(first, -1, credentials),
                                       control_options);
    for (int i = 0; i < o.connections; ++i) {
      std::shared_ptr<grpc::Channel> channel =
          MakeChannel(first, i, credentials);
      if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                     kConnectTimeout)) {
        return UsageError(absl::StrCat("connection ", i + 1, " of ",
                                       o.connections, " to ", first,
                                       " did not open"));
      }
      clients.push_back(std::make_unique<Client>(channel, base));
      client_ptrs.push_back(clients.back().get());
    }
  } else {
    // Each client a connection of its own to every node; each learns the
    // members now, before the run.
    ClientOptions own = base;
    own.own_connections = true;
    for (int i = 0; i < o.connections; ++i) {
      clients.push_back(Client::Connect(o.server, own));
      client_ptrs.push_back(clients.back().get());
      if (clients.back()->HealthyNodes().empty()) {
        return UsageError(absl::StrCat("connection ", i + 1, " of ",
                                       o.connections, " to the cluster at ",
                                       o.server, " found no healthy node"));
      }
    }
  }

  absl::StatusOr<std::unique_ptr<Workload>> workload =
      Workload::Setup(*control, o, nodes);
  if (!workload.ok()) return Fail("setting up", workload.status());

  const bool progress = o.progress && isatty(STDERR_FILENO);
  RunResult result = RunLoad(o, **workload, client_ptrs, stop, progress);

  const bool too_many_errors = TooManyErrors(o, result);
  int code = result.interrupted ? 130 : too_many_errors ? 3 : 0;
  if (absl::Status s = (*workload)->Teardown(*control); !s.ok()) {
    Fail(absl::StrCat("deleting ", (*workload)->source_handles()), s);
    code = code == 0 ? 1 : code;
  }
  if ((*workload)->orphans() > 0) {
    std::fprintf(stderr,
                 "tensorcast-load: %lld tensor(s) made by put/to could not "
                 "be deleted; they are left to their TTL\n",
                 static_cast<long long>((*workload)->orphans()));
  }
  const std::string description = (*workload)->Describe();
  std::fputs(SummaryText(o, description, result).c_str(), stdout);
  std::fflush(stdout);
  if (!json.Write(ResultJson(o, description, result))) code = 1;
  if (!csv.Write(SeriesCsv(result))) code = 1;
  if (too_many_errors) {
    std::fprintf(stderr,
                 "tensorcast-load: %.1f%% of the requests failed (more than "
                 "--max-error-rate=%g); the dominant error: %s\n",
                 100 * ErrorRate(result), o.max_error_rate,
                 DominantErrorText(result).c_str());
  }
  return code;
}

int Main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const char* env = std::getenv("TENSORCAST_SERVER");
  const char* token = std::getenv("TENSORCAST_TOKEN");
  absl::StatusOr<ParsedArgs> parsed =
      ParseArgs(args, env != nullptr && *env != '\0' ? env : "127.0.0.1:50051",
                token != nullptr ? token : "");
  if (!parsed.ok()) {
    return UsageError(absl::StrCat(parsed.status().message(),
                                   " (see tensorcast-load --help)"));
  }
  if (args.empty()) {
    std::fprintf(stderr, "%s\n", parsed->usage.c_str());
    return 2;
  }
  switch (parsed->mode) {
    case ParsedArgs::Mode::kHelp:
      std::printf("%s", parsed->usage.c_str());
      return 0;
    case ParsedArgs::Mode::kPlot:
      return RunPlot(parsed->plot_json, parsed->plot_out);
    case ParsedArgs::Mode::kRun:
      break;
  }
  return Run(parsed->options);
}

}  // namespace
}  // namespace tensorcast::load

int main(int argc, char** argv) { return tensorcast::load::Main(argc, argv); }
