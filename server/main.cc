// tensorcast-server: flags (or TENSORCAST_* environment variables), logging
// (text or JSON lines on stdout), signals. SIGINT/SIGTERM shut down
// gracefully: health goes NOT_SERVING, new calls are refused, running
// streams get --shutdown-grace seconds to finish and are then cancelled.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/flags.h"
#include "common/size.h"
#include "server/http/http_endpoint.h"
#include "server/memory/malloc_tuning.h"
#include "server/service/logging.h"
#include "server/service/server.h"
#include "server/store/handle.h"

namespace {

int Fail(absl::string_view message) {
  std::fprintf(stderr, "tensorcast-server: %s\n", std::string(message).c_str());
  return 2;
}

// Writes "PORT\n" to `path` whole: a reader never sees half of it.
bool WritePortFile(const std::string& path, int port) {
  std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return false;
  std::fprintf(f, "%d\n", port);
  if (std::fclose(f) != 0) return false;
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  tensorcast::ServerOptions options;
  options.service.chunk_bytes = 1 << 20;
  std::string log_level = "info";
  std::string log_format = "text";
  std::string port_file;
  std::string metrics_port_file;
  tensorcast::HttpOptions http;
  std::string http_port_file;
  double shutdown_grace = 10;

  tensorcast::FlagSet flags(
      "tensorcast-server: holds tensors on devices and converts them for gRPC "
      "clients.\nUsage: tensorcast-server [flags]. SIZE takes bytes or "
      "KiB/MiB/GiB/TiB suffixes. Logs go to stdout, one line per event; "
      "start-up errors to stderr.");
  flags.set_env_prefix("TENSORCAST_");
  flags.String("listen", &options.listen,
               "HOST:PORT to serve on; port 0 picks a free port");
  flags.String("devices", &options.devices.devices,
               "auto, cpu, or a list such as cpu,cuda:0");
  flags.Size("memory-limit", &options.devices.memory_limit_bytes,
             "SIZE cap on each device's pool (0 = none)");
  flags.Size("max-tensor-bytes", &options.service.max_tensor_bytes,
             "SIZE of the largest tensor accepted (0 = no limit)");
  flags.Size("chunk-bytes", &options.service.chunk_bytes,
             "SIZE of each Fetch message unless the client asks otherwise");
  flags.Int("default-ttl", &options.default_ttl_seconds,
            "SECONDS after which tensors without their own ttl are "
            "reclaimed (0 = never)");
  flags.String("log-level", &log_level,
               "trace, debug (a line per RPC), info, warn, error or off");
  flags.String("log-format", &log_format,
               "text, or json: one object per line with ts, level, msg (and "
               "method, code, peer, ms for RPCs)");
  flags.Double("shutdown-grace", &shutdown_grace,
               "SECONDS running calls get to finish after SIGINT/SIGTERM");
  flags.Bool("shared-memory", &options.service.shared_memory,
             "let same-host clients move Fetch/Put bytes through shared "
             "memory they lend (OpenSharedMemory)");
  tensorcast::SharedMemoryLimits& shm = options.service.shared_memory_limits;
  flags.Size("shared-memory-max-size", &shm.max_region_bytes,
             "SIZE of the largest shared-memory region a client may lend "
             "(0 = no limit)");
  flags.Int("shared-memory-max-per-connection", &shm.max_per_owner,
            "shared-memory regions one connection may have open (0 = no "
            "per-connection limit)");
  flags.Int("shared-memory-max-per-tenant", &shm.max_per_tenant,
            "shared-memory regions one tenant may have open (0 = no "
            "per-tenant limit)");
  flags.Int("shared-memory-max-regions", &shm.max_total,
            "shared-memory regions open in all (each holds a descriptor); "
            "0 = min(1024, open-file limit / 4)");
  flags.String("port-file", &port_file,
               "write the bound port to this file once serving (for "
               "--listen=HOST:0)");
  flags.String("metrics-listen", &options.metrics_listen,
               "HOST:PORT to serve Prometheus metrics on (GET /metrics); "
               "port 0 picks a free port; empty = off");
  flags.String("metrics-port-file", &metrics_port_file,
               "write the metrics port to this file once serving (for "
               "--metrics-listen=HOST:0)");
  flags.String("http-listen", &http.listen,
               "HOST:PORT to serve the HTTP data plane on (GET/PUT "
               "/v1/tensors..., docs/http.md); port 0 picks a free port; "
               "empty = off");
  flags.String("http-port-file", &http_port_file,
               "write the HTTP port to this file once serving (for "
               "--http-listen=HOST:0)");
  flags.String("http-cors-origin", &http.cors_origin,
               "the one origin (https://app.example, or *) whose pages may "
               "call the HTTP data plane; empty = no CORS");
  flags.String("tls-cert", &options.tls_cert,
               "PEM certificate chain: serve TLS (with --tls-key)");
  flags.String("tls-key", &options.tls_key, "PEM private key for --tls-cert");
  flags.String("tls-client-ca", &options.tls_client_ca,
               "PEM CA bundle: require client certificates it signed "
               "(mutual TLS)");
  flags.String("auth-tokens", &options.auth_tokens,
               "FILE of 'TOKEN TENANT [quota=SIZE] [tensors=N] [streams=N] "
               "[admin]' lines: clients must send a bearer token; tensors "
               "belong to tenants. Re-read on SIGHUP");
  flags.Bool("allow-insecure-remote", &options.allow_insecure_remote,
             "listen on a non-loopback address without --auth-tokens");
  flags.Size("tenant-quota", &options.tenant_defaults.max_bytes,
             "SIZE a tenant may hold across devices unless its token line "
             "says (0 = none)");
  flags.Int("tenant-max-tensors", &options.tenant_defaults.max_tensors,
            "handles a tenant may hold unless its token line says (0 = none)");
  flags.Int("tenant-max-streams", &options.tenant_defaults.max_streams,
            "concurrent streams per tenant unless its token line says "
            "(0 = none)");
  flags.Size("max-staging-bytes", &options.devices.max_staging_bytes,
             "SIZE of pinned host memory the GPUs stage through, at most; "
             "GPU Fetch streams reserve theirs from 7/8 of it and wait "
             "briefly, then fail, when it is taken (0 = none)");
  flags.String("node-id", &options.node_id,
               "this node's id in a cluster, a DNS label carried in every "
               "handle (<32 hex>.<node-id>); default with --cluster: the "
               "hostname, made a DNS label; without: none (plain handles)");
  flags.String("cluster", &options.cluster,
               "the cluster's members: dns:///HOST:PORT (resolved every few "
               "seconds; a headless Service gives one address per pod) or "
               "HOST:PORT,HOST:PORT; empty = a single node");
  flags.String("advertise", &options.advertise,
               "HOST:PORT other nodes and clients reach this node at "
               "(default: --listen, with this host's name for 0.0.0.0 and "
               "the bound port for port 0)");
  flags.String("cluster-token-file", &options.cluster_token_file,
               "FILE holding a bearer token the members accept: probes "
               "carry it, so Cluster lists the other members' devices");
  flags.String("cluster-ca", &options.cluster_ca,
               "PEM roots the members' TLS certificates are checked against "
               "(with --tls-cert; default: the system's)");
  int64_t cluster_probe_ms = 2000;
  flags.Int("cluster-probe-ms", &cluster_probe_ms,
            "milliseconds between resolving --cluster and probing each "
            "member");
  std::vector<std::string> args(argv + 1, argv + argc);
  if (absl::Status s = flags.Parse(args); !s.ok()) return Fail(s.message());
  if (flags.help_requested()) {
    std::printf("%s", flags.Usage().c_str());
    return 0;
  }
  if (!flags.positional().empty()) {
    return Fail(absl::StrCat("unexpected argument '", flags.positional()[0],
                             "' (see --help)"));
  }
  auto level = spdlog::level::from_str(log_level);
  if (level == spdlog::level::off && log_level != "off") {
    return Fail("--log-level: expected trace, debug, info, warn, error, off");
  }
  if (!metrics_port_file.empty() && options.metrics_listen.empty()) {
    return Fail("--metrics-port-file needs --metrics-listen");
  }
  if (!http_port_file.empty() && http.listen.empty()) {
    return Fail("--http-port-file needs --http-listen");
  }
  if (!http.cors_origin.empty() && http.listen.empty()) {
    return Fail("--http-cors-origin needs --http-listen");
  }
  if (options.default_ttl_seconds < 0 || shutdown_grace < 0) {
    return Fail("--default-ttl and --shutdown-grace must not be negative");
  }
  if (shm.max_region_bytes < 0 || shm.max_per_owner < 0 ||
      shm.max_per_tenant < 0 || shm.max_total < 0) {
    return Fail("the --shared-memory-max-* limits must not be negative");
  }
  if (cluster_probe_ms < 100) return Fail("--cluster-probe-ms is at least 100");
  options.cluster_probe_interval = std::chrono::milliseconds(cluster_probe_ms);
  if (options.node_id.empty() && !options.cluster.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    options.node_id = tensorcast::SanitizeNodeId(host);
  }
  if (absl::Status s = tensorcast::ConfigureLogging(log_format); !s.ok()) {
    return Fail(s.message());
  }
  // Debian's abseil is built without NDEBUG, so absl::Mutex checks every
  // acquisition for lock-order cycles and aborts the process on one it
  // suspects. The server's own locks are common/mutex.h's, which it
  // does not check, but gRPC's are absl::Mutex (GPR_ABSEIL_SYNC): off here,
  // so each call's locks cost no graph update and a suspected cycle inside
  // gRPC cannot abort the server. The checks belong in tests.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  spdlog::set_level(level);
  // Before gRPC's threads allocate: its per-message receive buffers are then
  // reused rather than unmapped and faulted in again (malloc_tuning.h).
  const tensorcast::MallocTuning malloc_tuning =
      tensorcast::TuneMallocForStreaming();
  spdlog::debug("malloc: {}", malloc_tuning.detail);

  // sigwait below takes the signals: block them before gRPC starts its
  // threads, which inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  absl::StatusOr<std::unique_ptr<tensorcast::TensorcastServer>> server =
      tensorcast::TensorcastServer::Start(options);
  if (!server.ok()) return Fail(server.status().message());
  spdlog::info("tensorcast-server {} listening on {} (port {})",
               TENSORCAST_VERSION, options.listen, (*server)->port());
  // The HTTP data plane: the same store, tokens and certificates.
  std::unique_ptr<tensorcast::HttpEndpoint> http_endpoint;
  if (!http.listen.empty()) {
    http.tls_cert = options.tls_cert;
    http.tls_key = options.tls_key;
    http.tls_client_ca = options.tls_client_ca;
    http.allow_insecure_remote = options.allow_insecure_remote;
    absl::StatusOr<std::unique_ptr<tensorcast::HttpEndpoint>> endpoint =
        tensorcast::HttpEndpoint::Start(http, &(*server)->service()->context(),
                                        (*server)->authenticator());
    if (!endpoint.ok()) return Fail(endpoint.status().message());
    http_endpoint = *std::move(endpoint);
    spdlog::info("HTTP data plane on {}://{}:{}/v1/tensors",
                 options.tls_cert.empty() ? "http" : "https",
                 http.listen.substr(0, http.listen.rfind(':')),
                 http_endpoint->port());
  }
  for (const std::string& name : flags.env_flags()) {
    spdlog::info("--{} from ${}", name, flags.EnvName(name));
  }
  // The metrics port first: whoever waits for --port-file finds both.
  if (!metrics_port_file.empty() &&
      !WritePortFile(metrics_port_file, (*server)->metrics_port())) {
    return Fail(absl::StrCat("cannot write ", metrics_port_file));
  }
  if (http_endpoint != nullptr && !http_port_file.empty() &&
      !WritePortFile(http_port_file, http_endpoint->port())) {
    return Fail(absl::StrCat("cannot write ", http_port_file));
  }
  if (!port_file.empty() && !WritePortFile(port_file, (*server)->port())) {
    return Fail(absl::StrCat("cannot write ", port_file));
  }

  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP) {
    if (!(*server)->auth_enabled()) {
      spdlog::info("received SIGHUP; no --auth-tokens to re-read");
      continue;
    }
    absl::StatusOr<int> tokens = (*server)->ReloadTokens();
    if (tokens.ok()) {
      spdlog::info("received SIGHUP: {} token(s) from {}", *tokens,
                   options.auth_tokens);
    } else {
      spdlog::error("received SIGHUP: {}; the previous tokens stay in force",
                    std::string(tokens.status().message()));
    }
  }
  spdlog::info("received {}, draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
  (*server)->Shutdown(
      std::chrono::milliseconds(static_cast<int64_t>(shutdown_grace * 1000)));
  // Its downloads counted among the calls drained above; new ones were
  // refused (503) meanwhile.
  http_endpoint.reset();
  spdlog::info("stopped");
#if !defined(__SANITIZE_ADDRESS__)
  // Everything is drained and answered. A normal exit would now run gRPC's
  // global clean-up, which waits up to 10 s for connections that clients
  // still hold open; the OS reclaims all of it at once. (Sanitizer builds
  // take the normal exit so LeakSanitizer checks the whole teardown.)
  spdlog::shutdown();
  std::fflush(nullptr);
  std::_Exit(0);
#else
  return 0;
#endif
}
