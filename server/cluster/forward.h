// Forwarding: how a node serves a ref it does not hold (see
// docs/cluster-internals.md). The service calls these first in Info,
// Detach, To, Delete and Fetch; each returns null when the call is this
// node's to serve (no cluster, a local handle, a name held here or
// nowhere), or the reactor that serves it by forwarding:
//  - a handle of another node goes to that node;
//  - a name not held here (by the caller's tenant) is looked up on the
//    healthy members in parallel (Info, the caller's token, a deadline of
//    kNameLookupTimeout at most): one holder -> forwarded there; several ->
//    FAILED_PRECONDITION naming them (use the handle); none -> this node's
//    NOT_FOUND, as on a single node. The lookup never blocks a gRPC thread:
//    the call returns its reactor at once and finishes when the last peer
//    has answered. Each lookup takes a slot first
//    (ClusterNode::BeginNameLookup: ClusterOptions::name_lookups_per_tenant
//    for the caller's tenant, name_lookups for the node): none free ->
//    RESOURCE_EXHAUSTED before any peer is asked, so a tenant asking for
//    missing names costs the cluster a bounded number of calls and other
//    tenants' lookups keep their slots;
//  - Delete whose refs name several nodes (or this one and another) is
//    refused (FAILED_PRECONDITION): all-or-nothing holds per node only.
// The caller is admitted here first (a stranger gets UNAUTHENTICATED and
// costs no peer call); the request bytes go to the owner unchanged, with
// the caller's `authorization` metadata, its deadline (capped for unary
// calls but Copy at ClusterOptions::forward_timeout) and its cancellation, and
// the metadata kLocalOnlyKey so that the owner never forwards again. The owner
// unknown or unhealthy: UNAVAILABLE naming the node, at once.
#ifndef TENSORCAST_SERVER_CLUSTER_FORWARD_H_
#define TENSORCAST_SERVER_CLUSTER_FORWARD_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "server/cluster/cluster_node.h"
#include "server/service/metrics.h"

namespace tensorcast {

class ServiceContext;  // server/service/service_context.h

// Set on every call a node makes to another on a caller's behalf: the node
// receiving it serves it locally (no forwarding, no name lookup).
inline constexpr char kLocalOnlyKey[] = "x-tensorcast-local-only";
inline constexpr std::chrono::milliseconds kNameLookupTimeout{1000};

grpc::ServerUnaryReactor* MaybeForwardUnary(ServiceContext* service,
                                            const char* method,
                                            grpc::CallbackServerContext* ctx,
                                            const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response);
grpc::ServerWriteReactor<grpc::ByteBuffer>* MaybeForwardFetch(
    ServiceContext* service, grpc::CallbackServerContext* ctx,
    const grpc::ByteBuffer* request);

// Looks the name `ref` up for the caller (whose metadata `ctx` carries) on
// every healthy member and calls `done` once: with the peer that holds it,
// NOT_FOUND when none does, FAILED_PRECONDITION naming them when several
// do. Never blocks: `done` runs on a gRPC callback thread within
// kNameLookupTimeout (or on this thread, before LookUpName returns, when no
// member is healthy). Takes no slot itself: the caller holds one.
void LookUpName(ClusterNode* cluster, grpc::CallbackServerContext* ctx,
                absl::string_view ref,
                std::function<void(absl::StatusOr<Peer>)> done);

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
