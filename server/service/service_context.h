// ServiceContext: the state every call of the TensorService shares, and
// what the unary handlers, the stream reactors (reactors.h), the cluster's
// forwarding and the HTTP data plane work through: admission (the drain,
// the caller's token, the tenant's stream limit), the calls in flight, the
// metrics, the shared-memory regions lent by clients, and the store,
// devices and cluster the calls act on. The TensorStore, DeviceRegistry,
// Authenticator and ClusterNode are the caller's and must outlive it.
// Thread-safe.
#ifndef TENSORCAST_SERVER_SERVICE_SERVICE_CONTEXT_H_
#define TENSORCAST_SERVER_SERVICE_SERVICE_CONTEXT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/worker_pool.h"
#include "server/service/auth.h"
#include "server/service/metrics.h"
#include "server/store/conversions.h"
#include "server/store/device.h"
#include "server/store/fetch_stream.h"
#include "server/store/shared_memory.h"
#include "server/store/tenant.h"
#include "server/store/tensor_store.h"
#include "tensorcast/v1/tensor_service.pb.h"

namespace tensorcast {

class ClusterNode;  // server/cluster/cluster_node.h

struct ServiceOptions {
  int64_t max_tensor_bytes = 0;   // 0 = no limit
  int64_t chunk_bytes = 1 << 20;  // Fetch's default data per message
  // Same-host shared memory (OpenSharedMemory): off unless allowed.
  bool shared_memory = false;
  std::string shared_memory_dir = "/dev/shm";
  SharedMemoryLimits shared_memory_limits;  // region size and counts
};

// Off unless the server allows it.
inline constexpr char kSharedMemoryOff[] =
    "this server does not allow shared memory (start it with "
    "--shared-memory)";

class ServiceContext {
 public:
  // `auth` says who each caller is.
  ServiceContext(TensorStore* store, const DeviceRegistry* devices,
                 const Authenticator* auth, ServiceOptions options);
  ServiceContext(const ServiceContext&) = delete;
  ServiceContext& operator=(const ServiceContext&) = delete;

  const ServiceOptions& options() const { return options_; }
  TensorStore* store() const { return ctx_.store; }
  const DeviceRegistry* devices() const { return ctx_.devices; }
  const Authenticator* auth() const { return auth_; }
  // The cluster this node belongs to (forwarding, Cluster, Copy); null on a
  // server built without one. Set before serving.
  void set_cluster(ClusterNode* cluster) { cluster_ = cluster; }
  ClusterNode* cluster() const { return cluster_; }

  // Admission. A call may start: the server is not draining (UNAVAILABLE)
  // and the caller's token is good (UNAUTHENTICATED). With `live`, the call
  // is registered under its token, which cancels it if the token is
  // revoked. With `slot`, also one of the tenant's concurrent streams
  // (RESOURCE_EXHAUSTED at its limit).
  absl::StatusOr<Caller> Admit(grpc::CallbackServerContext* ctx,
                               StreamSlot* slot = nullptr,
                               LiveCall* live = nullptr) const;
  // Draining: calls that start from now on are refused with UNAVAILABLE;
  // running ones go on.
  void StartDraining() { draining_.store(true); }
  // The status a new call should fail with (UNAVAILABLE once draining), or
  // OK while serving. Admit checks it first.
  absl::Status CheckAccepting() const;

  // The calls running now, which a drain waits for: streams (Put, Fetch,
  // a forwarded Fetch, the HTTP plane's transfers) and unary calls, each
  // counted from its start until its reply is handed to gRPC.
  void StreamStarted() { active_streams_.fetch_add(1); }
  void StreamEnded() { active_streams_.fetch_sub(1); }
  int64_t active_streams() const { return active_streams_.load(); }
  void UnaryStarted() { unary_in_flight_.fetch_add(1); }
  void UnaryEnded() { unary_in_flight_.fetch_sub(1); }
  int64_t calls_in_flight() const {
    return active_streams_.load() + unary_in_flight_.load();
  }

  // What a Fetch of the caller's pays its buffers with: the caller's
  // tenant, and the server's pinned staging.
  StreamBudget BudgetFor(const Caller& caller) const;
  // Where the caller's new tensors go: the caller's tenant owns them.
  ConversionContext ContextFor(const Caller& caller) const;
  // `status` as this caller may see it: an error whose message gives
  // server-wide figures (server/core/caller_message.h: a pool out of
  // memory, the GPUs' staging at its limit) shows them to admins only;
  // other callers get its caller message and their tenant's own figures.
  // The log keeps the original.
  static absl::Status ForCaller(const absl::Status& status,
                                const Caller& caller);

  // The RPC and byte counters (LogRpc and the stream reactors feed them).
  Metrics& metrics() { return metrics_; }
  // The pool and store figures now, per device: what Stats returns and
  // /metrics reports.
  ServiceSnapshot Snapshot() const;
  // What Stats answers this caller (FillStatsResponse, proto_convert.h):
  // its tenant's figures, and for admins the server's (every tenant, the
  // devices' pools). The HTTP data plane's GET /v1/stats returns the same.
  void FillStats(const Caller& caller, v1::StatsResponse* response) const;

  // Shared memory. The region `id` for this connection and tenant:
  // FAILED_PRECONDITION when the server does not allow shared memory,
  // NOT_FOUND for an id this connection (as this tenant) did not open.
  absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>> FindRegion(
      grpc::CallbackServerContext* ctx, const Caller& caller,
      absl::string_view id) const;
  // Who owns a region: the connection and the tenant.
  static std::string RegionOwner(grpc::CallbackServerContext* ctx,
                                 const Caller& caller);
  SharedMemoryRegistry& shared_memory() { return shared_memory_; }
  // Where shared-memory copies run, in pieces, off gRPC's threads (and
  // where regions are let go: see SharedMemoryRegion's destructor). Null
  // without --shared-memory.
  WorkerPool* shm_workers() { return shm_workers_.get(); }

 private:
  // Constant after construction.
  const ConversionContext ctx_;  // the default tenant's; see ContextFor
  const Authenticator* const auth_;
  const ServiceOptions options_;
  ClusterNode* cluster_ = nullptr;

  SharedMemoryRegistry shared_memory_;
  // After the registry: stops (running what is queued) before it goes.
  std::unique_ptr<WorkerPool> shm_workers_;
  Metrics metrics_;
  std::atomic<int64_t> active_streams_{0};
  std::atomic<int64_t> unary_in_flight_{0};
  std::atomic<bool> draining_{false};
};

// Called once as each RPC finishes: one log line (debug when it succeeded,
// warn when it failed; JSON logs carry method, code, peer and ms as fields)
// and the RPC's count and latency in the service's metrics.
void LogRpc(ServiceContext* service, const char* method,
            grpc::CallbackServerContext* ctx, const absl::Status& status,
            std::chrono::steady_clock::time_point start);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_SERVICE_CONTEXT_H_
