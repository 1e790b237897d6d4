#include "server/cluster/forward.h"

#include <grpcpp/generic/generic_stub.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "proto/wire.h"
#include "server/service/request_limits.h"
#include "server/service/service_context.h"
#include "server/service/status.h"
#include "server/store/handle.h"
#include "server/store/tenant.h"
#include "tensorcast/v1/tensor_service.grpc.pb.h"

namespace tensorcast {
namespace {

constexpr char kMethodPrefix[] = "/tensorcast.v1.TensorService/";

bool ReadVarint(absl::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64 && !in->empty(); shift += 7) {
    const uint8_t b = static_cast<uint8_t>(in->front());
    in->remove_prefix(1);
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

// Field 1 (every request's `ref`, Delete's `refs`) of an encoded request;
// false when the bytes are not a message (the local path says so).
bool Refs(const grpc::ByteBuffer& raw, std::vector<std::string>* refs) {
  std::vector<grpc::Slice> slices;
  if (raw.Length() > static_cast<size_t>(kMaxReceiveMessageBytes) ||
      !raw.Dump(&slices).ok()) {
    return false;
  }
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  absl::string_view in = bytes;
  while (!in.empty()) {
    uint64_t tag, n;
    if (!ReadVarint(&in, &tag)) return false;
    switch (tag & 7) {
      case wire::kVarint:
        if (!ReadVarint(&in, &n)) return false;
        break;
      case wire::kFixed64:
      case wire::kFixed32: {
        const size_t w = (tag & 7) == wire::kFixed64 ? 8 : 4;
        if (in.size() < w) return false;
        in.remove_prefix(w);
        break;
      }
      case wire::kLengthDelimited:
        if (!ReadVarint(&in, &n) || n > in.size()) return false;
        if ((tag >> 3) == 1) {
          if (refs->size() > static_cast<size_t>(kMaxDeleteRefs)) return false;
          refs->emplace_back(in.substr(0, n));
        }
        in.remove_prefix(n);
        break;
      default:
        return false;
    }
  }
  return true;
}

bool LocalOnly(grpc::CallbackServerContext* ctx) {
  return ctx->client_metadata().count(kLocalOnlyKey) > 0;
}

// Where a call goes: null peer = serve it here; else the status to fail
// with, or the peer.
struct Route {
  bool local = true;
  absl::Status status;
  Peer peer;
  // A single name not held here: look it up on the other members (`peer`
  // unset). `missing` is this node's own answer (NOT_FOUND), given when no
  // member holds it either.
  bool lookup = false;
  std::string name;
  Caller caller;
  absl::Status missing;
};

Route RouteFor(ServiceContext* service, grpc::CallbackServerContext* ctx,
               const grpc::ByteBuffer& request, bool single_ref) {
  Route route;
  ClusterNode* cluster = service->cluster();
  if (cluster == nullptr || !cluster->clustered() || LocalOnly(ctx)) {
    return route;
  }
  std::vector<std::string> refs;
  if (!Refs(request, &refs) || refs.empty()) return route;
  std::set<std::string> owners;
  bool here = false;
  for (const std::string& ref : refs) {
    std::string owner = cluster->RemoteOwner(ref);
    if (owner.empty()) {
      here = true;
    } else {
      owners.insert(std::move(owner));
    }
  }
  absl::StatusOr<Caller> caller = service->Admit(ctx);
  if (!caller.ok()) return route;  // the local path refuses it the same way
  route.local = false;
  if (owners.size() > 1 || (here && !owners.empty())) {
    std::vector<std::string> nodes(owners.begin(), owners.end());
    if (here) nodes.push_back(cluster->node_id());
    route.status = absl::FailedPreconditionError(absl::StrCat(
        "these refs are held on several nodes (", absl::StrJoin(nodes, ", "),
        "); all or nothing holds on one node only: send one Delete per node"));
    return route;
  }
  if (!owners.empty()) {
    absl::StatusOr<Peer> peer = cluster->PeerFor(*owners.begin());
    if (!peer.ok()) {
      route.status = peer.status();
    } else {
      route.peer = *std::move(peer);
    }
    return route;
  }
  // Refs of this node's own: a handle, or a name held here, is served here;
  // a single name not held here is looked up on the other members.
  if (!single_ref || refs.size() != 1 || ParseHandle(refs[0]).has_value()) {
    route.local = true;
    return route;
  }
  absl::StatusOr<TensorPtr> held =
      service->store()->Get(refs[0], caller->tenant.get());
  if (held.ok() || !absl::IsNotFound(held.status())) {
    route.local = true;
    return route;
  }
  route.lookup = true;
  route.name = refs[0];
  route.missing = ServiceContext::ForCaller(held.status(), *caller);
  route.caller = *std::move(caller);
  return route;
}

// The end of a name lookup for `route`: the peer to forward to, or the
// status to finish with (this node's NOT_FOUND when no member holds it).
absl::StatusOr<Peer> LookupOutcome(const Route& route,
                                   absl::StatusOr<Peer> found) {
  if (absl::IsNotFound(found.status())) return route.missing;
  return found;
}

// A forwarded unary call: the request bytes to the owner, its reply (or
// status) back as it came.
struct UnaryForward {
  ServiceContext* service;
  grpc::CallbackServerContext* ctx;
  std::string method;
  Peer peer;
  std::unique_ptr<grpc::ClientContext> client;
  std::unique_ptr<grpc::GenericStub> stub;
  std::chrono::steady_clock::time_point start;
};

}  // namespace

std::unique_ptr<grpc::ClientContext> ContextFor(
    grpc::CallbackServerContext* ctx, std::chrono::milliseconds cap) {
  std::unique_ptr<grpc::ClientContext> client =
      grpc::ClientContext::FromCallbackServerContext(*ctx);
  if (cap.count() > 0) {
    auto deadline = std::chrono::system_clock::now() + cap;
    if (ctx->deadline() < deadline) deadline = ctx->deadline();
    client->set_deadline(deadline);
  }
  auto token = ctx->client_metadata().find("authorization");
  if (token != ctx->client_metadata().end()) {
    client->AddMetadata("authorization", std::string(token->second.data(),
                                                     token->second.size()));
  }
  client->AddMetadata(kLocalOnlyKey, "1");
  return client;
}

namespace {

// One lookup's state: an Info per peer, answered in any order; the last
// answer decides and calls `done`.
struct NameLookup {
  struct Ask {
    std::unique_ptr<grpc::ClientContext> client;
    std::unique_ptr<v1::TensorService::Stub> stub;
    v1::InfoRequest request;
    v1::InfoResponse response;
    grpc::Status status;
  };
  std::vector<Peer> peers;
  std::vector<Ask> asks;
  // One per ask, plus one held while the asks are being started.
  std::atomic<size_t> pending{0};
  std::function<void(absl::StatusOr<Peer>)> done;

  void Answered() {
    if (pending.fetch_sub(1) != 1) return;
    std::vector<size_t> found;
    for (size_t i = 0; i < asks.size(); ++i) {
      if (asks[i].status.ok()) found.push_back(i);
    }
    absl::StatusOr<Peer> result = absl::NotFoundError("no member holds it");
    if (found.size() > 1) {
      std::vector<std::string> nodes;
      for (size_t i : found) nodes.push_back(peers[i].node_id);
      result = absl::FailedPreconditionError(
          absl::StrCat("the name is held on several nodes (",
                       absl::StrJoin(nodes, ", "), "): use the handle"));
    } else if (found.size() == 1) {
      result = peers[found[0]];
    }
    auto callback = std::move(done);
    delete this;
    callback(std::move(result));
  }
};

}  // namespace

void LookUpName(ClusterNode* cluster, grpc::CallbackServerContext* ctx,
                absl::string_view ref,
                std::function<void(absl::StatusOr<Peer>)> done) {
  auto* lookup = new NameLookup;
  lookup->peers = cluster->HealthyPeers();
  lookup->done = std::move(done);
  const size_t n = lookup->peers.size();
  lookup->asks.resize(n);
  lookup->pending = n + 1;
  for (size_t i = 0; i < n; ++i) {
    NameLookup::Ask& a = lookup->asks[i];
    a.client = ContextFor(ctx, kNameLookupTimeout);
    a.request.set_ref(std::string(ref));
    a.stub = v1::TensorService::NewStub(lookup->peers[i].channel);
    a.stub->async()->Info(a.client.get(), &a.request, &a.response,
                          [lookup, &a](grpc::Status s) {
                            a.status = std::move(s);
                            lookup->Answered();
                          });
  }
  lookup->Answered();  // the hold: all asks are started
}

namespace {

// Forwards a unary call to `peer` and finishes `reactor` with its answer
// (UnaryStarted was counted by the caller; this ends it).
void ForwardUnary(ServiceContext* service, const char* method,
                  grpc::CallbackServerContext* ctx,
                  const grpc::ByteBuffer* request, grpc::ByteBuffer* response,
                  grpc::ServerUnaryReactor* reactor, Peer peer,
                  std::chrono::steady_clock::time_point start) {
  auto* call = new UnaryForward{
      service, ctx, method, peer,
      // A Copy moves a whole tensor: it runs to the caller's deadline, not
      // to the cap on the other calls.
      ContextFor(ctx, std::string_view(method) == "Copy"
                          ? std::chrono::milliseconds(0)
                          : service->cluster()->options().forward_timeout),
      std::make_unique<grpc::GenericStub>(peer.channel), start};
  call->stub->UnaryCall(
      call->client.get(), absl::StrCat(kMethodPrefix, method),
      grpc::StubOptions(), request, response,
      [call, reactor](grpc::Status status) {
        status = ClusterNode::FromPeer(call->peer, status);
        call->service->cluster()->CountForward(call->peer.node_id, call->method,
                                               status.error_code());
        LogRpc(call->service, call->method.c_str(), call->ctx,
               absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                            status.error_message()),
               call->start);
        ServiceContext* service = call->service;
        delete call;
        reactor->Finish(status);
        service->UnaryEnded();
      });
}

void FinishUnary(ServiceContext* service, const char* method,
                 grpc::CallbackServerContext* ctx,
                 grpc::ServerUnaryReactor* reactor, const absl::Status& status,
                 std::chrono::steady_clock::time_point start) {
  LogRpc(service, method, ctx, status, start);
  reactor->Finish(ToGrpcStatus(status));
  service->UnaryEnded();
}

}  // namespace

grpc::ServerUnaryReactor* MaybeForwardUnary(ServiceContext* service,
                                            const char* method,
                                            grpc::CallbackServerContext* ctx,
                                            const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response) {
  const auto start = std::chrono::steady_clock::now();
  Route route = RouteFor(service, ctx, *request,
                         /*single_ref=*/std::string(method) != "Delete");
  if (route.local) return nullptr;
  service->UnaryStarted();
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!route.status.ok()) {
    FinishUnary(service, method, ctx, reactor, route.status, start);
    return reactor;
  }
  if (!route.lookup) {
    ForwardUnary(service, method, ctx, request, response, reactor, route.peer,
                 start);
    return reactor;
  }
  ClusterNode* cluster = service->cluster();
  const std::string tenant = route.caller.name();
  if (absl::Status s = cluster->BeginNameLookup(tenant); !s.ok()) {
    FinishUnary(service, method, ctx, reactor, s, start);
    return reactor;
  }
  // The callback thread returns now; the last peer's answer goes on.
  const std::string name = route.name;
  LookUpName(
      cluster, ctx, name,
      [service, method, ctx, request, response, reactor, start, tenant,
       route = std::move(route)](absl::StatusOr<Peer> found) {
        service->cluster()->EndNameLookup(tenant);
        absl::StatusOr<Peer> peer = LookupOutcome(route, std::move(found));
        if (!peer.ok()) {
          FinishUnary(service, method, ctx, reactor, peer.status(), start);
        } else {
          ForwardUnary(service, method, ctx, request, response, reactor,
                       *std::move(peer), start);
        }
      });
  return reactor;
}

namespace {

// A forwarded Fetch: the owner's stream relayed message by message. One
// message is in flight at a time (read from the owner, then written to the
// caller, then the next read), so a slow caller paces the owner and the
// proxy holds one message at most. The caller going away cancels the
// owner's call; the owner's status ends the caller's. Made before the owner
// is known when a name is looked up first: Start(peer) then, or Fail.
class FetchProxy final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  // `slot` is one of the caller's streams on this node, held for as long
  // as the proxy relays (it holds up to two of the owner's messages).
  // `charge` is what those two messages may hold, charged to the caller's
  // tenant on this node.
  FetchProxy(ServiceContext* service, grpc::CallbackServerContext* ctx,
             const grpc::ByteBuffer& request,
             std::chrono::steady_clock::time_point start, StreamSlot slot,
             ByteCharge charge)
      : service_(service),
        ctx_(ctx),
        client_(this),
        start_(start),
        slot_(std::move(slot)),
        charge_(std::move(charge)) {
    service_->StreamStarted();
    request_ = request;
  }

  // Calls `peer` and relays its stream.
  void Start(Peer peer) {
    {
      // Not held past here: once the call starts, both sides may end and
      // delete this before Start returns.
      std::lock_guard<std::mutex> lock(mu_);
      peer_ = std::move(peer);
      context_ = ContextFor(ctx_, std::chrono::milliseconds(0));
    }
    stub_ = std::make_unique<grpc::GenericStub>(peer_.channel);
    stub_->PrepareBidiStreamingCall(context_.get(),
                                    absl::StrCat(kMethodPrefix, "Fetch"),
                                    grpc::StubOptions(), &client_);
    client_.StartWriteLast(&request_, grpc::WriteOptions());
    client_.StartRead(&in_);
    client_.StartCall();
  }

  // Ends the call with `status`, no peer called.
  void Fail(const absl::Status& status) {
    LogRpc(service_, "Fetch", ctx_, status, start_);
    Finish(ToGrpcStatus(status));
    Release();  // the client side, never started
  }

  // The hold OnReadDone took keeps the owner's call open (its OnDone
  // waits) until the next read is started here, or the call is cancelled:
  // without it the owner's stream could end in between, and StartRead
  // would reach a call gRPC had already freed.
  void OnWriteDone(bool ok) override {
    if (ok) {
      client_.StartRead(&in_);
    } else {
      context_->TryCancel();
    }
    client_.RemoveHold();
  }
  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    // Before Start, the lookup's calls carry the cancellation themselves.
    if (context_ != nullptr) context_->TryCancel();
  }
  void OnDone() override { Release(); }

 private:
  class Client final
      : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    explicit Client(FetchProxy* proxy) : proxy_(proxy) {}
    void OnReadDone(bool ok) override {
      if (!ok) return;  // OnDone brings the status
      AddHold();        // until the proxy's OnWriteDone (see there)
      proxy_->out_ = std::move(proxy_->in_);
      proxy_->in_.Clear();
      proxy_->StartWrite(&proxy_->out_);
    }
    void OnDone(const grpc::Status& status) override {
      grpc::Status s = ClusterNode::FromPeer(proxy_->peer_, status);
      proxy_->service_->cluster()->CountForward(proxy_->peer_.node_id, "Fetch",
                                                s.error_code());
      LogRpc(proxy_->service_, "Fetch", proxy_->ctx_,
             absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                          s.error_message()),
             proxy_->start_);
      proxy_->Finish(s);
      proxy_->Release();
    }

   private:
    FetchProxy* const proxy_;
  };

  // Both sides done: the server's OnDone and the client's.
  void Release() {
    if (refs_.fetch_sub(1) == 1) {
      ServiceContext* service = service_;
      delete this;
      service->StreamEnded();
    }
  }

  ServiceContext* const service_;
  grpc::CallbackServerContext* const ctx_;
  Client client_;
  const std::chrono::steady_clock::time_point start_;
  StreamSlot slot_;    // the caller's stream on this node
  ByteCharge charge_;  // the two messages' bytes, on the caller's quota
  std::mutex mu_;      // Start against OnCancel
  Peer peer_;          // set by Start
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::GenericStub> stub_;
  grpc::ByteBuffer request_;
  grpc::ByteBuffer in_;
  grpc::ByteBuffer out_;
  std::atomic<int> refs_{2};
};

class FailedFetch final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  FailedFetch(ServiceContext* service, const grpc::Status& status)
      : service_(service) {
    service_->StreamStarted();
    Finish(status);
  }
  void OnDone() override {
    ServiceContext* service = service_;
    delete this;
    service->StreamEnded();
  }

 private:
  ServiceContext* const service_;
};

// The bytes a relayed Fetch may hold on this node: two of the owner's
// messages (one read, one being written), each the chunk the request asks
// for (the server's default when none), as the owner clamps it, plus the
// message's own framing. A request that does not parse gets the default:
// the owner refuses it anyway.
int64_t RelayBytes(const grpc::ByteBuffer& raw, int64_t default_chunk) {
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (raw.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  v1::FetchRequest request;
  int64_t chunk = default_chunk;
  if (request.ParseFromString(bytes) && request.chunk_bytes() > 0) {
    chunk = request.chunk_bytes();
  }
  constexpr int64_t kFraming = 64 << 10;
  return 2 * (std::clamp(chunk, kMinChunkBytes, kMaxChunkBytes) + kFraming);
}

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* MaybeForwardFetch(
    ServiceContext* service, grpc::CallbackServerContext* ctx,
    const grpc::ByteBuffer* request) {
  const auto start = std::chrono::steady_clock::now();
  Route route = RouteFor(service, ctx, *request, /*single_ref=*/true);
  if (route.local) return nullptr;
  if (!route.status.ok()) {
    LogRpc(service, "Fetch", ctx, route.status, start);
    return new FailedFetch(service, ToGrpcStatus(route.status));
  }
  // The relay holds memory here: it takes one of the caller's streams on
  // this node, as a local Fetch would, before anything is asked of a peer.
  // And the messages it holds are charged to the caller's tenant here
  // (the owner charges its own buffers there).
  StreamSlot slot;
  absl::StatusOr<Caller> caller = service->Admit(ctx, &slot);
  ByteCharge charge;
  absl::Status admitted =
      caller.ok() ? ByteCharge::Take(
                        caller->tenant,
                        RelayBytes(*request, service->options().chunk_bytes),
                        "the messages a Fetch relayed through this node holds "
                        "(chunk_bytes; fetch from the owning node to avoid it)",
                        &charge)
                  : caller.status();
  if (!admitted.ok()) {
    LogRpc(service, "Fetch", ctx, admitted, start);
    return new FailedFetch(service, ToGrpcStatus(admitted));
  }
  if (!route.lookup) {
    auto* proxy = new FetchProxy(service, ctx, *request, start, std::move(slot),
                                 std::move(charge));
    proxy->Start(route.peer);
    return proxy;
  }
  ClusterNode* cluster = service->cluster();
  const std::string tenant = route.caller.name();
  if (absl::Status s = cluster->BeginNameLookup(tenant); !s.ok()) {
    LogRpc(service, "Fetch", ctx, s, start);
    return new FailedFetch(service, ToGrpcStatus(s));
  }
  auto* proxy = new FetchProxy(service, ctx, *request, start, std::move(slot),
                               std::move(charge));
  const std::string name = route.name;
  LookUpName(cluster, ctx, name,
             [proxy, cluster, tenant,
              route = std::move(route)](absl::StatusOr<Peer> found) {
               cluster->EndNameLookup(tenant);
               absl::StatusOr<Peer> peer =
                   LookupOutcome(route, std::move(found));
               if (peer.ok()) {
                 proxy->Start(*std::move(peer));
               } else {
                 proxy->Fail(peer.status());
               }
             });
  return proxy;
}

}  // namespace tensorcast
