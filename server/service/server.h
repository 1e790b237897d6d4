// TensorcastServer: builds the gRPC server around the service — devices,
// store, health (grpc.health.v1), reflection, the TTL reaper, the optional
// Prometheus endpoint (/metrics) — and shuts it
// down gracefully. Start() and Shutdown() are called from one thread; the
// running server is thread-safe.
#ifndef TENSORCAST_SERVER_SERVICE_SERVER_H_
#define TENSORCAST_SERVER_SERVICE_SERVER_H_

#include <grpcpp/server.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "server/core/mutex.h"
#include "server/service/auth.h"
#include "server/service/metrics.h"
#include "server/service/tensor_service.h"
#include "server/store/device.h"
#include "server/store/tensor_store.h"

namespace tensorcast {

class ClusterNode;

// --tenant-max-streams's default: enough for a client's pipelines, few
// enough that one tenant's open calls (and the buffers they hold) stay
// bounded without an explicit limit.
inline constexpr int64_t kDefaultTenantMaxStreams = 64;

struct ServerOptions {
  std::string listen = "127.0.0.1:50051";
  DeviceOptions devices;
  ServiceOptions service;
  int64_t default_ttl_seconds = 0;  // 0 = tensors never expire
  // HOST:PORT for Prometheus metrics over HTTP (GET /metrics); port 0 picks
  // a free one; empty = off.
  std::string metrics_listen;

  // TLS: PEM files. cert and key together turn TLS on; client_ca then also
  // requires and verifies client certificates (mutual TLS).
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  // Bearer tokens (server/service/auth.h); empty = authentication off, and
  // then only a loopback listen address is accepted unless
  // allow_insecure_remote.
  std::string auth_tokens;
  bool allow_insecure_remote = false;
  // Limits for tenants whose token line does not give its own (0 = none).
  TenantLimits tenant_defaults = {0, 0, kDefaultTenantMaxStreams};

  // Cluster (docs/cluster-internals.md). node_id: carried in every handle
  // when non-empty. cluster: the members' target ("dns:///HOST:PORT" or
  // "HOST:PORT,..."); empty = a single node. advertise: HOST:PORT others
  // reach this node at. cluster_token_file: a token (from the
  // --auth-tokens files of the members) that probes carry. cluster_ca: PEM
  // roots that peers' TLS certificates are checked against (empty: the
  // system's), for a server with TLS.
  std::string node_id;
  std::string cluster;
  std::string advertise;
  std::string cluster_token_file;
  std::string cluster_ca;
  std::chrono::milliseconds cluster_probe_interval{2000};
};

class TensorcastServer {
 public:
  // INVALID_ARGUMENT / FAILED_PRECONDITION for bad options; UNAVAILABLE when
  // an address cannot be bound. Health says NOT_SERVING until everything
  // (the metrics endpoint included) is up.
  static absl::StatusOr<std::unique_ptr<TensorcastServer>> Start(
      const ServerOptions& options);
  ~TensorcastServer();

  int port() const { return port_; }
  // Re-reads --auth-tokens (SIGHUP); the old tokens stay on error.
  absl::StatusOr<int> ReloadTokens() { return auth_->Reload(); }
  bool auth_enabled() const { return auth_->enabled(); }
  // The metrics endpoint's port; 0 when it is off.
  int metrics_port() const { return metrics_ ? metrics_->port() : 0; }
  const DeviceRegistry& devices() const { return *devices_; }

  // Health goes NOT_SERVING, new calls are refused, and running calls get
  // until `grace` to finish before they are cancelled. Idempotent.
  void Shutdown(std::chrono::milliseconds grace) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  TensorcastServer() = default;
  void ReapLoop() ABSL_LOCKS_EXCLUDED(mu_);

  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<DeviceRegistry> devices_;
  std::unique_ptr<TensorStore> store_;
  std::unique_ptr<TensorServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsEndpoint> metrics_;
  // Reset after server_ (its calls use it), before service_.
  std::unique_ptr<ClusterNode> cluster_;
  int port_ = 0;

  Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reaper_;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_SERVER_H_
