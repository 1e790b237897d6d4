// TensorServiceImpl: the tensorcast.v1.TensorService on gRPC's callback API.
// Unary RPCs finish through DefaultReactor(); Put, Fetch and
// OpenSharedMemory are reactor classes (put_reactor.cc, fetch_reactor.cc,
// shm_session.cc) that delete themselves in OnDone. Tensors and memory live
// in the TensorStore and DeviceRegistry, which the caller owns and which
// must outlive the service (as must the Authenticator); the service itself
// holds only the shared-memory regions, the metrics, the call counts and
// the draining flag. Thread-safe.
#ifndef TENSORCAST_SERVER_SERVICE_TENSOR_SERVICE_H_
#define TENSORCAST_SERVER_SERVICE_TENSOR_SERVICE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "server/core/worker_pool.h"
#include "server/service/auth.h"
#include "server/service/metrics.h"
#include "server/store/conversions.h"
#include "server/store/device.h"
#include "server/store/fetch_stream.h"
#include "server/store/shared_memory.h"
#include "server/store/tensor_store.h"
#include "tensorcast/v1/tensor_service.grpc.pb.h"

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

inline constexpr int64_t kMinChunkBytes = 4 << 10;
inline constexpr int64_t kMaxChunkBytes = 64 << 20;  // Fetch's, sent

// What a client may send. gRPC refuses any message longer than
// kMaxReceiveMessageBytes (RESOURCE_EXHAUSTED) before it is parsed, for
// every method; so Put's data messages carry at most kMaxPutChunkBytes
// each (the clients cut them so). The unary methods check more on the
// encoded bytes, after the token and before parsing them (tensor_service.cc):
// a size per method, the number of fields (each unknown field would cost
// protobuf an allocation), and Delete's refs (kMaxDeleteRefs).
inline constexpr int64_t kMaxPutChunkBytes = 1 << 20;
inline constexpr int64_t kMaxReceiveMessageBytes =
    kMaxPutChunkBytes + (64 << 10);
inline constexpr int kMaxDeleteRefs = 1000;

// Every method but OpenSharedMemory is registered raw: its messages are
// grpc::ByteBuffers the service decodes and encodes itself. Put and Fetch
// do it field by field (proto/wire.h), so tensor bytes are read from and
// sent as gRPC's own slices, without a copy into a protobuf string; the
// unary methods check the caller's token and the request's size and fields
// before they parse it (so a stranger's request costs no parse at all, and
// anyone's a bounded one). The wire format is the ordinary v1 messages.
namespace internal {
using V1 = v1::TensorService;
using RawService = V1::WithRawCallbackMethod_Put<
    V1::WithRawCallbackMethod_Fetch<V1::WithRawCallbackMethod_Create<
        V1::WithRawCallbackMethod_Info<V1::WithRawCallbackMethod_List<
            V1::WithRawCallbackMethod_Delete<V1::WithRawCallbackMethod_Detach<
                V1::WithRawCallbackMethod_To<V1::WithRawCallbackMethod_Stats<
                    V1::WithRawCallbackMethod_EmptyCache<
                        V1::WithRawCallbackMethod_Copy<
                            V1::CallbackService>>>>>>>>>>>;
}  // namespace internal

class TensorServiceImpl final : public internal::RawService {
 public:
  // `auth` (which must outlive the service) says who each caller is.
  TensorServiceImpl(TensorStore* store, const DeviceRegistry* devices,
                    const Authenticator* auth, ServiceOptions options);

  grpc::ServerReadReactor<grpc::ByteBuffer>* Put(
      grpc::CallbackServerContext* ctx, grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Create(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Info(grpc::CallbackServerContext* ctx,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Detach(grpc::CallbackServerContext* ctx,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* To(grpc::CallbackServerContext* ctx,
                               const grpc::ByteBuffer* request,
                               grpc::ByteBuffer* response) override;
  // A v1.FetchRequest in, a stream of v1.FetchResponse messages out, each
  // encoded by hand around a slice that references the chunk's bytes.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Fetch(
      grpc::CallbackServerContext* ctx,
      const grpc::ByteBuffer* request) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* ctx,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* EmptyCache(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<v1::SharedMemoryEvent>* OpenSharedMemory(
      grpc::CallbackServerContext* ctx,
      const v1::OpenSharedMemoryRequest* request) override;
  // server/cluster/cluster_rpcs.cc.
  grpc::ServerUnaryReactor* Cluster(grpc::CallbackServerContext* ctx,
                                    const v1::ClusterRequest* request,
                                    v1::ClusterResponse* response) override;
  grpc::ServerUnaryReactor* Copy(grpc::CallbackServerContext* ctx,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  // The cluster this node belongs to (forwarding, Cluster, Copy); null on a
  // server built without one. Set before serving; must outlive the calls.
  void set_cluster(ClusterNode* cluster) { cluster_ = cluster; }
  ClusterNode* cluster() const { return cluster_; }

  // For the stream reactors.
  // A call may start: the server is not draining (UNAVAILABLE) and the
  // caller's token is good (UNAUTHENTICATED). With `live`, the call is
  // registered under its token, which cancels it if the token is revoked.
  // With `slot`, also one of the tenant's concurrent streams
  // (RESOURCE_EXHAUSTED at its limit).
  absl::StatusOr<Caller> Admit(grpc::CallbackServerContext* ctx,
                               StreamSlot* slot = nullptr,
                               LiveCall* live = nullptr) const;
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
  const ServiceOptions& options() const { return options_; }
  TensorStore* store() const { return ctx_.store; }
  // The region `id` for this connection and tenant: FAILED_PRECONDITION
  // when the server does not allow shared memory, NOT_FOUND for an id this
  // connection (as this tenant) did not open.
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
  void StreamStarted() { active_streams_.fetch_add(1); }
  void StreamEnded() { active_streams_.fetch_sub(1); }
  int64_t active_streams() const { return active_streams_.load(); }
  // The RPC and byte counters (LogRpc and the stream reactors feed them).
  Metrics& metrics() { return metrics_; }
  // The pool and store figures now, per device: what Stats returns and
  // /metrics reports.
  ServiceSnapshot Snapshot() const;

  // Draining: calls that start from now on are refused with UNAVAILABLE;
  // running ones go on.
  void StartDraining() { draining_.store(true); }
  // The status a new call should fail with (UNAVAILABLE once draining), or
  // OK while serving. Admit checks it first.
  absl::Status CheckAccepting() const;
  // Calls (unary or streaming) that are running now.
  int64_t calls_in_flight() const {
    return active_streams_.load() + unary_in_flight_.load();
  }
  void UnaryStarted() { unary_in_flight_.fetch_add(1); }
  void UnaryEnded() { unary_in_flight_.fetch_sub(1); }

 private:
  // Constant after construction.
  const ConversionContext ctx_;  // the default tenant's; see ContextFor
  const Authenticator* const auth_;
  const ServiceOptions options_;

  SharedMemoryRegistry shared_memory_;
  // After the registry: stops (running what is queued) before it goes.
  std::unique_ptr<WorkerPool> shm_workers_;
  Metrics metrics_;
  std::atomic<int64_t> active_streams_{0};
  std::atomic<int64_t> unary_in_flight_{0};
  std::atomic<bool> draining_{false};
  ClusterNode* cluster_ = nullptr;
};

// A streaming method's request message (Fetch's FetchRequest, Put's
// header) parsed within the limits the small unary requests get, checked
// on its bytes first: at most 64 KiB (RESOURCE_EXHAUSTED) and a bounded
// number of fields (INVALID_ARGUMENT, as for bytes that are not a message).
// `what` names it in the messages.
absl::Status ParseStreamRequest(const grpc::ByteBuffer& bytes, const char* what,
                                google::protobuf::MessageLite* message);
absl::Status ParseStreamRequest(absl::string_view bytes, const char* what,
                                google::protobuf::MessageLite* message);

// Called once as each RPC finishes: one log line (debug when it succeeded,
// warn when it failed; JSON logs carry method, code, peer and ms as fields)
// and the RPC's count and latency in the service's metrics.
void LogRpc(TensorServiceImpl* service, const char* method,
            grpc::CallbackServerContext* ctx, const absl::Status& status,
            std::chrono::steady_clock::time_point start);

// The reactors behind Put and Fetch (put_reactor.cc, fetch_reactor.cc).
grpc::ServerReadReactor<grpc::ByteBuffer>* NewPutReactor(
    TensorServiceImpl* service, grpc::CallbackServerContext* ctx,
    grpc::ByteBuffer* response);
grpc::ServerWriteReactor<grpc::ByteBuffer>* NewFetchReactor(
    TensorServiceImpl* service, grpc::CallbackServerContext* ctx,
    const grpc::ByteBuffer* request);
grpc::ServerWriteReactor<v1::SharedMemoryEvent>* NewSharedMemorySession(
    TensorServiceImpl* service, grpc::CallbackServerContext* ctx,
    const v1::OpenSharedMemoryRequest* request);

// Off unless the server allows it.
inline constexpr char kSharedMemoryOff[] =
    "this server does not allow shared memory (start it with "
    "--shared-memory)";

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_TENSOR_SERVICE_H_
