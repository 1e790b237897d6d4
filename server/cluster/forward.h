// Forwarding: how a node serves a ref it does not hold (see
// docs/cluster-internals.md). The service calls these first in Info,
// Detach, To, Delete and Fetch; each returns null when the call is this
// node's to serve (no cluster, a local handle, a name held here or
// nowhere), or the reactor that serves it by forwarding:
//  - a handle of another node goes to that node;
//  - a name not held here (by the caller's tenant) is looked up on the
//    healthy members in parallel (Info, the caller's token, a deadline of
//    kNameLookupTimeout at most): one holder -> forwarded there; several ->
//    FAILED_PRECONDITION naming them (use the handle); none -> null, and
//    this node answers NOT_FOUND as it always has;
//  - Delete whose refs name several nodes (or this one and another) is
//    refused (FAILED_PRECONDITION): all-or-nothing holds per node only.
// The caller is admitted here first (a stranger gets UNAUTHENTICATED and
// costs no peer call); the request bytes go to the owner unchanged, with
// the caller's `authorization` metadata, its deadline (capped for unary
// calls at ClusterOptions::forward_timeout) and its cancellation, and the
// metadata kLocalOnlyKey so that the owner never forwards again. The
// owner unknown or unhealthy: UNAVAILABLE naming the node, at once.
#ifndef TENSORCAST_SERVER_CLUSTER_FORWARD_H_
#define TENSORCAST_SERVER_CLUSTER_FORWARD_H_

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "server/cluster/cluster_node.h"
#include "server/service/metrics.h"

namespace tensorcast {

class TensorServiceImpl;

// Set on every call a node makes to another on a caller's behalf: the node
// receiving it serves it locally (no forwarding, no name lookup).
inline constexpr char kLocalOnlyKey[] = "x-tensorcast-local-only";
inline constexpr std::chrono::milliseconds kNameLookupTimeout{1000};

grpc::ServerUnaryReactor* MaybeForwardUnary(TensorServiceImpl* service,
                                            const char* method,
                                            grpc::CallbackServerContext* ctx,
                                            const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response);
grpc::ServerWriteReactor<grpc::ByteBuffer>* MaybeForwardFetch(
    TensorServiceImpl* service, grpc::CallbackServerContext* ctx,
    const grpc::ByteBuffer* request);

// The peer that holds the name `ref` for the caller (whose metadata `ctx`
// carries), found by asking every healthy member: NOT_FOUND when none does,
// FAILED_PRECONDITION naming them when several do. Blocks up to
// kNameLookupTimeout.
absl::StatusOr<Peer> LookUpName(ClusterNode* cluster,
                                grpc::CallbackServerContext* ctx,
                                absl::string_view ref);

// A client context for a call on the caller's behalf: its token, deadline
// (capped at `cap` from now when cap > 0) and cancellation, and
// kLocalOnlyKey.
std::unique_ptr<grpc::ClientContext> ContextFor(
    grpc::CallbackServerContext* ctx, std::chrono::milliseconds cap);

// What placement compares (DeviceStats.free_bytes): PoolStats::free_bytes,
// the pool's cached bytes plus what its memory has free (the host's
// MemAvailable for "cpu", cudaMemGetInfo's free for a GPU), bounded by the
// limit minus what is allocated.
int64_t FreeBytes(const DeviceSnapshot& device);
void FillDeviceStats(const DeviceSnapshot& device, v1::DeviceStats* out);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_CLUSTER_FORWARD_H_
