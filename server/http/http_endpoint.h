// HttpEndpoint: the HTTP data plane (--http-listen), for clients without a
// gRPC stack -- curl, a browser's fetch(), R, Julia, a data tool that reads
// URLs. It serves the same store under the same rules as the gRPC service:
//
//   GET  /v1/tensors/{ref}       the tensor as .npy (or raw), streamed;
//                                ?dtype= cast, ?format=npy|raw, ?cpu,
//                                ?detach, ?force as Fetch has them; ETag,
//                                Range: bytes= -> 206; HEAD: headers alone
//   PUT  /v1/tensors?name=&device=&requires_grad=&ttl=   (or POST)
//                                a .npy body, streamed into a PutSink:
//                                stored only once complete -> 201 + info
//   GET  /v1/tensors             list (?prefix=, ?page_size=, ?page_token=)
//   GET  /v1/tensors/{ref}/info  one tensor's info
//   DELETE /v1/tensors/{ref}
//   GET  /v1/stats
//
// JSON bodies are the CLI's --json (proto/proto_json.h) of the gRPC
// responses. Errors are {"code":"NOT_FOUND","message":"..."} with the HTTP
// status of http::HttpStatus (http_parse.h). Tokens (Authorization: Bearer),
// tenants, quotas, streams per tenant, the .numpy() refusals, TLS with the
// server's certificates, drain on shutdown: as for gRPC. A download holds
// one chunk (--chunk-bytes) at a time whatever the tensor size; a client
// that stalls mid-request for kIoTimeoutSeconds is dropped, as is one whose
// request head passes 64 KiB or takes longer than that (plain HTTP; over
// TLS httplib's own stream reads the head); an idle connection is closed
// after kKeepAliveSeconds.
// docs/http.md has the whole picture.
#ifndef TENSORCAST_SERVER_HTTP_HTTP_ENDPOINT_H_
#define TENSORCAST_SERVER_HTTP_HTTP_ENDPOINT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/service/auth.h"
#include "server/service/service_context.h"

namespace httplib {
class Server;
}

namespace tensorcast {

struct HttpOptions {
  std::string listen;  // HOST:PORT; port 0 picks a free one
  // Empty: no CORS headers (browsers refuse cross-origin reads). Otherwise
  // the one origin ("https://app.example", or "*") let to call the API.
  std::string cors_origin;
  // TLS as for gRPC: cert and key turn it on; client_ca requires client
  // certificates it signed.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_client_ca;
  // As for --listen: a non-loopback address needs tokens, or this.
  bool allow_insecure_remote = false;
};

class HttpEndpoint {
 public:
  // Connections served at once (each holds a worker while it lasts; more
  // wait in the accept queue).
  static constexpr int kWorkers = 64;
  // A request whose client sends nothing more (mid-headers, mid-body), or
  // a download it reads nothing of, for this long is dropped.
  static constexpr int kIoTimeoutSeconds = 10;
  // A connection with no request under way (before its first, between
  // keep-alive requests) is closed after this long.
  static constexpr int kKeepAliveSeconds = 5;
  // A request's head (its line and headers) is at most this many bytes,
  // in within kIoTimeoutSeconds of its start; past either the client is
  // dropped (plain HTTP: service/head_limited_server.h).
  static constexpr int64_t kMaxHeadBytes = 64 << 10;

  // `service` and `auth` must outlive the endpoint. INVALID_ARGUMENT for a
  // bad address or TLS files, FAILED_PRECONDITION for a remote address
  // without tokens, UNAVAILABLE when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Start(
      const HttpOptions& options, ServiceContext* service,
      const Authenticator* auth);
  // Stops listening, cuts the running transfers short (a download before
  // its next chunk, an upload at its next piece of body: 503, nothing
  // stored) and waits for the connections' workers. The server calls it
  // once the drain's grace period is over.
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  int port() const { return port_; }

  class Api;  // the handlers (http_endpoint.cc)

 private:
  HttpEndpoint() = default;

  std::unique_ptr<Api> api_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_HTTP_HTTP_ENDPOINT_H_
