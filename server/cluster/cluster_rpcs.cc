// The Cluster and Copy RPCs of TensorServiceImpl (see
// docs/cluster-internals.md).
//
// Copy, on the node that holds the tensor: the tensor is read as a Fetch
// reads it (FetchStream: a host tensor that is contiguous and needs no cast
// goes out as slices over its storage, without a copy; a GPU tensor through
// the staging pipeline; a cast on the way), and each chunk is sent to the
// target as a Put data message made of a small prefix slice and that chunk
// slice, under the caller's token, deadline and cancellation. The put runs
// on the cluster's copy workers (a blocking, flow-controlled stream: one
// chunk in flight), never on gRPC's callback threads, and holds one of the
// caller's tenant's streams here, as the target's Put holds one there.
#include <grpcpp/support/byte_buffer.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/echo.h"
#include "common/generic_call.h"
#include "proto/wire.h"
#include "server/cluster/cluster_node.h"
#include "server/cluster/forward.h"
#include "server/service/proto_convert.h"
#include "server/service/request_limits.h"
#include "server/service/status.h"
#include "server/service/tensor_service.h"
#include "server/store/fetch_source.h"
#include "server/store/fetch_stream.h"
#include "server/store/handle.h"

namespace tensorcast {
namespace {

constexpr int kPutDataField = 2;  // PutRequest.data

void ReleaseChunk(void* keepalive) {
  delete static_cast<std::shared_ptr<const void>*>(keepalive);
}

// The state of one Copy while its put runs.
struct CopyCall {
  ServiceContext* service;
  grpc::CallbackServerContext* ctx;
  grpc::ServerUnaryReactor* reactor;
  grpc::ByteBuffer* raw_response;
  Caller caller;
  StreamSlot slot;
  v1::CopyRequest request;
  TensorPtr src;
  Peer peer;
  std::chrono::steady_clock::time_point start;
};

// Sends the tensor to the target as a Put; the target's reply or error.
absl::StatusOr<v1::TensorInfo> PutOnPeer(CopyCall* call, int64_t* sent) {
  FetchSpec spec;
  spec.format = WireFormat::kRaw;
  absl::StatusOr<std::optional<DType>> dtype = FromProto(call->request.dtype());
  if (!dtype.ok()) return dtype.status();
  spec.dtype = *dtype;
  spec.force = true;  // the bytes, wherever they are
  absl::StatusOr<FetchSource> source = FetchSource::Open(call->src, spec);
  if (!source.ok()) return source.status();
  absl::StatusOr<std::unique_ptr<FetchStream>> stream =
      FetchStream::Open(*std::move(source), kMaxPutChunkBytes,
                        call->service->BudgetFor(call->caller));
  if (!stream.ok()) return stream.status();
  const FetchSource& out = (*stream)->source();

  v1::PutRequest first;
  v1::PutHeader* header = first.mutable_header();
  header->set_dtype(ToProto(out.out_dtype()));
  for (int64_t d : call->src->layout.shape) header->add_shape(d);
  header->set_device(call->request.device());
  header->set_requires_grad(call->src->requires_grad &&
                            IsFloatingOrComplex(out.out_dtype()));
  header->set_name(call->request.name());
  header->set_ttl_seconds(call->request.ttl_seconds());
  header->set_format(v1::FORMAT_RAW);
  header->set_total_bytes(out.total_bytes());

  std::unique_ptr<grpc::ClientContext> client =
      ContextFor(call->ctx, std::chrono::milliseconds(0));
  // A client-streaming Put of raw messages through the generic stub, so
  // that each chunk goes out as the stream's own bytes (no copy into a
  // PutRequest).
  GenericCall writer(call->peer.channel, "/tensorcast.v1.TensorService/Put",
                     client.get());
  grpc::ByteBuffer reply;
  std::string header_bytes = first.SerializeAsString();
  grpc::Slice header_slice(header_bytes);
  grpc::ByteBuffer header_buffer(&header_slice, 1);
  bool ok = writer.Write(header_buffer);
  absl::Status local;
  while (ok && !(*stream)->done()) {
    FetchChunk chunk;
    if (local = (*stream)->NextChunk(&chunk); !local.ok()) break;
    std::string prefix;
    prefix.push_back(wire::LengthDelimitedTag(kPutDataField));
    wire::AppendVarint(&prefix, static_cast<uint64_t>(chunk.size));
    grpc::Slice slices[2] = {
        grpc::Slice(prefix),
        grpc::Slice(
            const_cast<char*>(chunk.data), static_cast<size_t>(chunk.size),
            &ReleaseChunk,
            new std::shared_ptr<const void>(std::move(chunk.keepalive)))};
    ok = writer.Write(grpc::ByteBuffer(slices, 2));
    if (ok) *sent += chunk.size;
  }
  if (!local.ok()) {
    client->TryCancel();
    writer.Finish();
    return local;
  }
  // The one reply comes before the status; a broken stream has none, and
  // Finish says why.
  const bool replied = writer.WritesDone() && writer.Read(&reply);
  grpc::Status status = writer.Finish();
  if (!status.ok()) {
    status = ClusterNode::FromPeer(call->peer, status);
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  if (!replied) {
    return absl::InternalError(
        absl::StrCat("node '", call->peer.node_id,
                     "' ended the copy's Put without a reply"));
  }
  v1::PutResponse response;
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (reply.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  if (!response.ParseFromString(bytes)) {
    return absl::InternalError(absl::StrCat("node '", call->peer.node_id,
                                            "' sent a malformed Put reply"));
  }
  return response.tensor();
}

void FinishCopy(CopyCall* call, const absl::Status& status) {
  LogRpc(call->service, "Copy", call->ctx, status, call->start);
  ServiceContext* service = call->service;
  grpc::ServerUnaryReactor* reactor = call->reactor;
  grpc::Status out =
      ToGrpcStatus(ServiceContext::ForCaller(status, call->caller));
  delete call;
  reactor->Finish(out);
  service->UnaryEnded();
}

}  // namespace

int64_t FreeBytes(const DeviceSnapshot& device) {
  return device.pool.free_bytes;
}

void FillDeviceStats(const DeviceSnapshot& device, v1::DeviceStats* d) {
  const PoolStats& s = device.pool;
  d->set_device(device.name);
  d->set_description(device.description);
  d->set_allocated_bytes(s.allocated_bytes);
  d->set_reserved_bytes(s.reserved_bytes);
  d->set_peak_allocated_bytes(s.peak_allocated_bytes);
  d->set_peak_reserved_bytes(s.peak_reserved_bytes);
  d->set_limit_bytes(s.limit_bytes);
  d->set_alloc_count(s.alloc_count);
  d->set_free_count(s.free_count);
  d->set_cache_hits(s.cache_hits);
  d->set_cache_misses(s.cache_misses);
  d->set_segment_count(s.segment_count);
  d->set_tensors(device.tensors);
  d->set_free_bytes(FreeBytes(device));
}

grpc::ServerUnaryReactor* TensorServiceImpl::Cluster(
    grpc::CallbackServerContext* ctx, const v1::ClusterRequest* /*request*/,
    v1::ClusterResponse* response) {
  const auto start = std::chrono::steady_clock::now();
  ClusterNode* const cluster = context_.cluster();
  context_.UnaryStarted();
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<Caller> caller = context_.Admit(ctx);
  absl::Status status;
  const std::string node_id = cluster != nullptr ? cluster->node_id() : "";
  v1::ClusterMember self;
  self.set_node_id(node_id);
  self.set_address(cluster != nullptr ? cluster->advertise() : "");
  self.set_healthy(true);
  self.set_self(true);
  self.set_last_seen_unix_ms(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  if (absl::IsUnauthenticated(caller.status())) {
    // A stranger (a peer probing without a cluster token) learns the
    // node's identity alone.
    response->set_node_id(node_id);
    *response->add_members() = self;
  } else if (!caller.ok()) {
    status = caller.status();
  } else {
    self.set_version(TENSORCAST_VERSION);
    for (const DeviceSnapshot& d : context_.Snapshot().devices) {
      FillDeviceStats(d, self.add_devices());
    }
    if (cluster != nullptr) {
      cluster->Describe(self, response);
    } else {
      response->set_node_id(node_id);
      *response->add_members() = self;
    }
  }
  LogRpc(&context_, "Cluster", ctx, status, start);
  reactor->Finish(ToGrpcStatus(status));
  context_.UnaryEnded();
  return reactor;
}

grpc::ServerUnaryReactor* TensorServiceImpl::Copy(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* raw_request,
    grpc::ByteBuffer* raw_response) {
  if (grpc::ServerUnaryReactor* r = MaybeForwardUnary(
          &context_, "Copy", ctx, raw_request, raw_response)) {
    return r;
  }
  context_.UnaryStarted();
  ClusterNode* const cluster = context_.cluster();
  auto* call = new CopyCall{};
  call->service = &context_;
  call->ctx = ctx;
  call->reactor = ctx->DefaultReactor();
  call->raw_response = raw_response;
  call->start = std::chrono::steady_clock::now();
  absl::StatusOr<Caller> caller = context_.Admit(ctx, &call->slot);
  if (!caller.ok()) {
    FinishCopy(call, caller.status());
    return call->reactor;
  }
  call->caller = *std::move(caller);
  grpc::ServerUnaryReactor* reactor = call->reactor;
  auto fail = [&](const absl::Status& s) {
    FinishCopy(call, s);
    return reactor;
  };
  if (absl::Status s = ParseStreamRequest(*raw_request, "Copy", &call->request);
      !s.ok()) {
    return fail(s);
  }
  const v1::CopyRequest& request = call->request;
  if (!IsNodeId(request.node())) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("Copy needs the target node's id (a DNS label), not '",
                     EchoInput(request.node()), "'")));
  }
  absl::StatusOr<TensorPtr> src =
      context_.store()->Get(request.ref(), call->caller.tenant.get());
  if (!src.ok()) return fail(src.status());
  call->src = *std::move(src);
  const std::string self = cluster != nullptr ? cluster->node_id() : "";
  if (request.node() == self) {
    // A copy onto this node: To with copy=true.
    absl::StatusOr<std::optional<DType>> dtype = FromProto(request.dtype());
    if (!dtype.ok()) return fail(dtype.status());
    ToSpec spec;
    spec.device = request.device().empty() ? "cpu" : request.device();
    spec.dtype = *dtype;
    spec.copy = true;
    spec.name = request.name();
    spec.ttl_seconds = request.ttl_seconds();
    absl::StatusOr<TensorPtr> t =
        ToTensor(context_.ContextFor(call->caller), call->src, spec);
    if (!t.ok()) return fail(t.status());
    v1::CopyResponse response;
    FillTensorInfo(**t, response.mutable_tensor());
    bool own;
    if (!grpc::SerializationTraits<v1::CopyResponse>::Serialize(
             response, raw_response, &own)
             .ok()) {
      return fail(absl::InternalError("cannot encode the Copy response"));
    }
    return fail(absl::OkStatus());
  }
  if (cluster == nullptr || !cluster->clustered()) {
    return fail(absl::UnavailableError(
        absl::StrCat("node '", request.node(),
                     "' is not a member this node knows: it is "
                     "not in a cluster (--cluster)")));
  }
  absl::StatusOr<Peer> peer = cluster->PeerFor(request.node());
  if (!peer.ok()) return fail(peer.status());
  call->peer = *std::move(peer);
  cluster->copy_workers().Run([call] {
    int64_t sent = 0;
    absl::StatusOr<v1::TensorInfo> info = PutOnPeer(call, &sent);
    call->service->cluster()->CountCopy(
        call->peer.node_id, static_cast<grpc::StatusCode>(info.status().code()),
        sent);
    absl::Status status = info.status();
    if (info.ok()) {
      v1::CopyResponse response;
      *response.mutable_tensor() = *std::move(info);
      bool own;
      if (!grpc::SerializationTraits<v1::CopyResponse>::Serialize(
               response, call->raw_response, &own)
               .ok()) {
        status = absl::InternalError("cannot encode the Copy response");
      }
    }
    FinishCopy(call, status);
  });
  return reactor;
}

}  // namespace tensorcast
