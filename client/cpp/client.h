// tensorcast::Client: the C++ client library for tensorcast.v1. Each method
// is one RPC (Put and Fetch stream); errors come back as absl::Status with
// the server's code and message. A Client is thread-safe: its gRPC channels
// may carry calls from many threads at once.
//
// Clusters (docs/cluster.md#clients): a Client made by Connect learns the
// members with the Cluster RPC (at its first call, then every few seconds,
// and at once after a node fails a call), keeps one channel per member,
// places new tensors (Put, Create) on the healthy node with the most free
// memory on the device (PutOptions::node pins one) and sends every call on
// a handle to the node the handle names. A call to a node that is down
// fails at once with UNAVAILABLE "node ID (ADDRESS) is unavailable: ...".
// Against a plain server (no node id) it behaves as a one-server client.
#ifndef TENSORCAST_CLIENT_CPP_CLIENT_H_
#define TENSORCAST_CLIENT_CPP_CLIENT_H_

#include <grpcpp/channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tensorcast/v1/tensor_service.grpc.pb.h"

namespace tensorcast {

struct ClientOptions {
  // Per-call deadline; 0 = none (large transfers may take long).
  std::chrono::milliseconds timeout{0};
  // Data per Put message; at most 1 MiB are sent in one (the server refuses
  // messages over 1 MiB + 64 KiB).
  int64_t put_chunk_bytes = 1 << 20;
  // Sent as `authorization: Bearer TOKEN` on every call (a server with
  // --auth-tokens requires it); empty = none.
  std::string token;
  // TLS (Connect only): on when `tls` or any PEM below is set. Root CAs
  // empty = the system's; the chain and key are the client certificate for
  // mutual TLS.
  bool tls = false;
  std::string tls_root_certs;
  std::string tls_cert_chain;
  std::string tls_private_key;
  // Cluster: seconds between member-list refreshes.
  std::chrono::milliseconds cluster_refresh{5000};
  // Connect only: every channel this client opens (one per member of a
  // cluster) gets a TCP connection of its own. By default gRPC shares one
  // connection among all the channels of a process that have the same
  // target and arguments, so that many Clients of one server multiplex
  // their calls over a single connection; with this set, N Clients are N
  // connections to each server (what a load generator's workers want).
  bool own_connections = false;
};

struct PutOptions {
  v1::Format format = v1::FORMAT_RAW;
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;  // RAW: required
  std::vector<int64_t> shape;               // RAW: the shape
  std::string device;
  bool requires_grad = false;
  std::string name;
  int64_t ttl_seconds = 0;
  // Same-host shared memory (client/cpp/shared_memory.h): the data is read
  // by the server from this region, shm_bytes at shm_offset; no source.
  std::string shm_region;
  int64_t shm_offset = 0;
  int64_t shm_bytes = 0;
  // Cluster: the node to put it on ("" = placement chooses).
  std::string node;
};

struct FetchOptions {
  v1::Format format = v1::FORMAT_NPY;
  v1::DType dtype = v1::DTYPE_UNSPECIFIED;  // cast on the fly
  bool detach = false;
  bool cpu = false;
  bool force = false;
  int64_t offset = 0;
  int64_t length = 0;
  int64_t chunk_bytes = 0;  // 0 = the server's default
  // Same-host shared memory: the server writes the bytes into this region
  // at shm_offset and the stream carries the header alone (the sink sees
  // nothing; the header's length says how many bytes were written).
  std::string shm_region;
  int64_t shm_offset = 0;
};

// Receives a Fetch's bytes in order; a non-OK status cancels the stream.
using ByteSink = std::function<absl::Status(absl::string_view bytes)>;
// Fills `buffer` with up to its size; returns the count, 0 at the end.
using ByteSource =
    std::function<absl::StatusOr<size_t>(char* buffer, size_t size)>;

struct ClusterState;

class Client {
 public:
  // "HOST:PORT", a list "HOST:PORT,HOST:PORT,..." (members of one cluster,
  // tried in turn for the member list) or a gRPC target such as
  // "dns:///NAME:PORT". The channels connect lazily; the first call
  // reports UNAVAILABLE if no server answers.
  static std::unique_ptr<Client> Connect(const std::string& target,
                                         ClientOptions options = {});
  // One channel, one server: no cluster routing.
  explicit Client(std::shared_ptr<grpc::Channel> channel,
                  ClientOptions options = {});
  ~Client();

  // Put from a source of bytes (RAW elements, or a whole .npy file).
  absl::StatusOr<v1::TensorInfo> Put(const PutOptions& options,
                                     const ByteSource& source,
                                     int64_t total_bytes = 0);
  absl::StatusOr<v1::TensorInfo> PutBuffer(const PutOptions& options,
                                           absl::string_view bytes);
  // Uploads a .npy file as it is (format NPY): the server reads its header.
  absl::StatusOr<v1::TensorInfo> PutNpyFile(const std::string& path,
                                            PutOptions options);

  // Streams the bytes into `sink`; returns the stream's header.
  absl::StatusOr<v1::FetchHeader> Fetch(absl::string_view ref,
                                        const FetchOptions& options,
                                        const ByteSink& sink);
  // Convenience: the whole output in memory, or written to a file (written
  // to a fresh PATH.part-XXXXXX first and renamed, so a failed fetch leaves
  // no file and never touches an existing one).
  absl::StatusOr<std::string> FetchBytes(absl::string_view ref,
                                         const FetchOptions& options);
  // Into a caller's buffer of `capacity` bytes; OUT_OF_RANGE (and the
  // stream cancelled) if the output does not fit. The header's length says
  // how many bytes were written.
  absl::StatusOr<v1::FetchHeader> FetchInto(absl::string_view ref,
                                            const FetchOptions& options,
                                            char* buffer, size_t capacity);
  // The same into a span the caller owns, which must be exactly the
  // output's size: INVALID_ARGUMENT, before any data is written, when the
  // stream's header announces another length.
  absl::StatusOr<v1::FetchHeader> FetchInto(absl::string_view ref,
                                            const FetchOptions& options,
                                            absl::Span<char> out);
  absl::StatusOr<v1::FetchHeader> FetchToFile(absl::string_view ref,
                                              const FetchOptions& options,
                                              const std::string& path);

  // `node` pins the node in a cluster ("" = placement chooses).
  absl::StatusOr<v1::TensorInfo> Create(const v1::CreateRequest& request,
                                        const std::string& node = "");
  absl::StatusOr<v1::TensorInfo> Info(absl::string_view ref);
  // Every page, in creation order; in a cluster, every healthy node's
  // tensors, node after node.
  absl::StatusOr<std::vector<v1::TensorInfo>> List(
      absl::string_view name_prefix = "");
  // In a cluster, one Delete per node that holds some of `refs` (all or
  // nothing per node, not across nodes).
  absl::StatusOr<int> Delete(const std::vector<std::string>& refs);
  absl::StatusOr<v1::TensorInfo> Detach(absl::string_view ref);
  absl::StatusOr<v1::TensorInfo> To(const v1::ToRequest& request);
  // One node's own figures: `node`, or ("") the node first asked.
  absl::StatusOr<v1::StatsResponse> Stats(const std::string& node = "");
  // The members as a node knows them (a fresh Cluster call; the client's
  // table is refreshed from it).
  absl::StatusOr<v1::ClusterResponse> Cluster();
  // Server-to-server copy of `request.ref` to node `request.node`, sent to
  // the node that holds the tensor.
  absl::StatusOr<v1::TensorInfo> Copy(const v1::CopyRequest& request);
  // The node ids of the healthy members after a refresh ({} when the
  // server is not a cluster).
  std::vector<std::string> HealthyNodes();
  absl::StatusOr<int64_t> EmptyCache(absl::string_view device = "");
  // grpc.health.v1 Check of the whole server: OK when SERVING, UNAVAILABLE
  // with the status otherwise.
  absl::Status Health();

  // The first server's stub (one server: the only one).
  v1::TensorService::Stub* stub() { return stub_.get(); }
  // The client's deadline (unless with_deadline is false: a session that
  // lasts) and token on a call's context, for calls made through stub().
  void Prepare(grpc::ClientContext* ctx, bool with_deadline = true) const;

 private:
  // Fetch, with `check` (when set) run on the header before any data.
  absl::StatusOr<v1::FetchHeader> FetchChecked(
      absl::string_view ref, const FetchOptions& options,
      const std::function<absl::Status(const v1::FetchHeader&)>& check,
      const ByteSink& sink);

  // Where a call goes: a channel and stub, and the node ("" = not a
  // cluster) for errors.
  struct Route {
    std::shared_ptr<grpc::Channel> channel;
    v1::TensorService::Stub* stub = nullptr;
    std::string node;
    std::string address;
  };
  // By the node a ref's handle names; names (and plain handles) to any
  // healthy node.
  absl::StatusOr<Route> RouteRef(absl::string_view ref);
  // A new tensor: the pinned node, or placement's choice.
  absl::StatusOr<Route> RouteNew(const std::string& node,
                                 absl::string_view device, int64_t bytes);
  absl::StatusOr<Route> RouteNode(const std::string& node);
  // Refreshes the member list when due (or `force`).
  void MaybeRefresh(bool force);
  // A call's status; UNAVAILABLE from a node marks it down and names it.
  absl::Status Finish(const Route& route, absl::Status status);
  // One unary call with the client's deadline.
  absl::Status Call(const Route& route,
                    const std::function<grpc::Status(
                        v1::TensorService::Stub*, grpc::ClientContext*)>& rpc);

  const ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::TensorService::Stub> stub_;
  std::unique_ptr<ClusterState> cluster_;  // null: one fixed channel
};

// The channel arguments every tensorcast client needs (message sizes large
// enough for the biggest chunk a server sends); callers add their own.
grpc::ChannelArguments DefaultChannelArguments();

// A failed system call as a status: ENOENT is NOT_FOUND, EACCES
// PERMISSION_DENIED, ENOSPC RESOURCE_EXHAUSTED...; the message is
// "WHAT: strerror".
absl::Status ErrnoStatus(int error, absl::string_view what);

// Plaintext, or TLS when `options` asks for it (see ClientOptions): what
// Connect uses, for callers that make their own channels.
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(
    const ClientOptions& options);

// The connection flags the command-line tools share (--tls-ca, --tls-cert,
// --tls-key), PEM file paths ("" = not given), read into `options`: a CA
// turns TLS on (it replaces the system's roots), the certificate and key go
// together (mutual TLS). INVALID_ARGUMENT naming the flag when a file cannot
// be read or is not PEM.
absl::Status ReadTlsFiles(const std::string& ca_file,
                          const std::string& cert_file,
                          const std::string& key_file, ClientOptions* options);

// gRPC status -> absl::Status (same codes, same message).
absl::Status FromGrpcStatus(const grpc::Status& status);
// The name gRPC uses for a code, e.g. "FAILED_PRECONDITION".
std::string StatusCodeName(absl::StatusCode code);

}  // namespace tensorcast

#endif  // TENSORCAST_CLIENT_CPP_CLIENT_H_
