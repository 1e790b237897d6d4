#include "server/service/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/server_builder.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/size.h"
#include "server/cluster/cluster_node.h"
#include "server/service/request_limits.h"
#include "server/store/handle.h"

namespace tensorcast {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": cannot read ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": ", path, " is not a PEM file"));
  }
  return text.str();
}

// The listening credentials: TLS (mutual with a client CA) or plaintext.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(
    const ServerOptions& o) {
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (o.tls_cert.empty()) {
    if (!o.tls_client_ca.empty()) {
      return absl::InvalidArgumentError(
          "--tls-client-ca needs --tls-cert and --tls-key");
    }
    return grpc::InsecureServerCredentials();
  }
  absl::StatusOr<std::string> cert = ReadPem(o.tls_cert, "tls-cert");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPem(o.tls_key, "tls-key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl;
  ssl.pem_key_cert_pairs.push_back({*key, *cert});
  if (!o.tls_client_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadPem(o.tls_client_ca, "tls-client-ca");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

// 127.0.0.0/8, ::1 and localhost: reachable from this host only.
bool IsLoopback(absl::string_view listen) {
  absl::string_view host = listen.substr(0, listen.rfind(':'));
  return absl::StartsWith(host, "127.") || host == "localhost" ||
         host == "[::1]" || host == "::1";
}

// The cluster part of the options, checked.
absl::StatusOr<std::unique_ptr<ClusterNode>> MakeCluster(
    const ServerOptions& options) {
  ClusterOptions c;
  c.node_id = options.node_id;
  c.target = options.cluster;
  c.probe_interval = options.cluster_probe_interval;
  if (!c.target.empty() && c.node_id.empty()) {
    return absl::InvalidArgumentError("--cluster needs a --node-id");
  }
  if (!c.node_id.empty() && !IsNodeId(c.node_id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--node-id '", c.node_id,
        "' is not a DNS label (1 to 63 of a-z, 0-9 and '-', starting and "
        "ending with a letter or digit)"));
  }
  c.advertise = options.advertise;
  if (c.advertise.empty()) {
    // The listen address, with this host's name for a wildcard host.
    std::string host = options.listen.substr(0, options.listen.rfind(':'));
    std::string port = options.listen.substr(options.listen.rfind(':') + 1);
    if (host == "0.0.0.0" || host == "[::]" || host.empty()) {
      char name[256] = {};
      gethostname(name, sizeof(name) - 1);
      host = name;
    }
    c.advertise = absl::StrCat(host, ":", port);
  }
  if (!options.cluster_token_file.empty()) {
    std::ifstream in(options.cluster_token_file);
    if (!in || !(in >> c.token)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--cluster-token-file: cannot read a token from ",
                       options.cluster_token_file));
    }
  }
  if (!options.tls_cert.empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!options.cluster_ca.empty()) {
      absl::StatusOr<std::string> ca =
          ReadPem(options.cluster_ca, "cluster-ca");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (!options.tls_client_ca.empty()) {
      // Peers require client certificates too: present this node's own.
      absl::StatusOr<std::string> cert = ReadPem(options.tls_cert, "tls-cert");
      absl::StatusOr<std::string> key = ReadPem(options.tls_key, "tls-key");
      if (!cert.ok()) return cert.status();
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    c.credentials = grpc::SslCredentials(ssl);
  }
  return std::make_unique<ClusterNode>(std::move(c));
}

}  // namespace

// Sent: bigger than the largest Fetch chunk a client may ask for.
// Received: small (tensor_service.h), refused by gRPC before any parse.
constexpr int kMaxSendMessageBytes =
    static_cast<int>(kMaxChunkBytes + (1 << 20));

absl::StatusOr<std::unique_ptr<TensorcastServer>> TensorcastServer::Start(
    const ServerOptions& options) {
  std::unique_ptr<TensorcastServer> s(new TensorcastServer());
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      Credentials(options);
  if (!credentials.ok()) return credentials.status();
  absl::StatusOr<std::unique_ptr<Authenticator>> auth =
      Authenticator::Create(options.auth_tokens, options.tenant_defaults);
  if (!auth.ok()) {
    return absl::Status(
        auth.status().code(),
        absl::StrCat("--auth-tokens: ", auth.status().message()));
  }
  s->auth_ = *std::move(auth);
  if (!s->auth_->enabled() && !IsLoopback(options.listen)) {
    if (!options.allow_insecure_remote) {
      return absl::FailedPreconditionError(absl::StrCat(
          "refusing to listen on ", options.listen,
          " without --auth-tokens: anyone who can reach it could read and "
          "delete every tensor. Give --auth-tokens=FILE, listen on "
          "127.0.0.1, or accept that with --allow-insecure-remote"));
    }
    spdlog::warn(
        "listening on {} with no authentication (--allow-insecure-remote): "
        "anyone who can reach this port can read and delete every tensor",
        options.listen);
  }
  absl::StatusOr<std::unique_ptr<DeviceRegistry>> devices =
      DeviceRegistry::Create(options.devices);
  if (!devices.ok()) return devices.status();
  s->devices_ = *std::move(devices);
  if (options.service.chunk_bytes < kMinChunkBytes ||
      options.service.chunk_bytes > kMaxChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--chunk-bytes must be between ", FormatSize(kMinChunkBytes), " and ",
        FormatSize(kMaxChunkBytes)));
  }
  s->store_ = std::make_unique<TensorStore>(options.default_ttl_seconds,
                                            nullptr, options.node_id);
  s->service_ = std::make_unique<TensorServiceImpl>(
      s->store_.get(), s->devices_.get(), s->auth_.get(), options.service);
  absl::StatusOr<std::unique_ptr<ClusterNode>> cluster = MakeCluster(options);
  if (!cluster.ok()) return cluster.status();
  s->cluster_ = *std::move(cluster);
  s->service_->context().set_cluster(s->cluster_.get());

  // The metrics endpoint first: if its address is bad, nothing has
  // started.
  if (!options.metrics_listen.empty()) {
    ServiceContext* service = &s->service_->context();
    absl::StatusOr<std::unique_ptr<MetricsEndpoint>> metrics =
        MetricsEndpoint::Start(options.metrics_listen, [service] {
          return service->metrics().Render(service->Snapshot()) +
                 service->cluster()->RenderMetrics();
        });
    if (!metrics.ok()) return metrics.status();
    s->metrics_ = *std::move(metrics);
    const std::string& listen = options.metrics_listen;
    spdlog::info("metrics on http://{}:{}/metrics",
                 listen.substr(0, listen.rfind(':')), s->metrics_->port());
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, *credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(kMaxReceiveMessageBytes));
  builder.SetMaxSendMessageSize(kMaxSendMessageBytes);
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen,
                     " (address in use, or not a HOST:PORT this host has?)"));
  }
  s->cluster_->SetBoundPort(s->port_);  // --listen=HOST:0
  // gRPC's default health service reports SERVING as soon as it is built;
  // hold it at NOT_SERVING until the start-up below is done.
  s->server_->GetHealthCheckService()->SetServingStatus(false);
  s->reaper_ = std::thread([srv = s.get()] { srv->ReapLoop(); });

  for (const auto& d : s->devices_->all()) {
    PoolStats stats = d->pool().Stats();
    spdlog::info("device {} ({}), memory limit {}", d->name(), d->description(),
                 stats.limit_bytes > 0 ? FormatSize(stats.limit_bytes)
                                       : std::string("none"));
  }
  if (!s->devices_->cuda_available()) {
    spdlog::info("{}", s->devices_->cuda_status());
  }
  spdlog::info("{}; {}",
               options.tls_cert.empty()        ? "plaintext (no TLS)"
               : options.tls_client_ca.empty() ? "TLS"
                                               : "mutual TLS",
               s->auth_->enabled()
                   ? absl::StrCat("bearer tokens from ", options.auth_tokens)
                   : std::string("no authentication"));
  if (options.service.shared_memory) {
    spdlog::info(
        "shared memory allowed: same-host clients may lend files {}/"
        "tensorcast-*",
        options.service.shared_memory_dir);
  }
  if (s->cluster_->clustered()) {
    s->cluster_->Start();
    spdlog::info("node {} of cluster {}, advertised as {}", options.node_id,
                 options.cluster, s->cluster_->advertise());
  }
  s->server_->GetHealthCheckService()->SetServingStatus(true);
  return s;
}

void TensorcastServer::ReapLoop() {
  auto stopping = [this]()
                      ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
  for (;;) {
    {
      MutexLock lock(&mu_);
      // Shutdown's unlock wakes this wait at once.
      if (mu_.AwaitWithTimeout(stopping, absl::Seconds(1))) return;
    }
    int reaped = store_->ReapExpired();
    if (reaped > 0) spdlog::info("reclaimed {} expired tensor(s)", reaped);
  }
}

void TensorcastServer::Shutdown(std::chrono::milliseconds grace) {
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (reaper_.joinable()) reaper_.join();
  if (server_ == nullptr) return;
  // Drain: health says NOT_SERVING, new calls are refused, running calls
  // get until the deadline. gRPC's own Shutdown(deadline) would also wait
  // out the whole deadline while any idle client stays connected, so wait
  // for our calls ourselves and then shut down at once.
  server_->GetHealthCheckService()->SetServingStatus(false);
  service_->context().StartDraining();
  auto deadline = std::chrono::steady_clock::now() + grace;
  spdlog::info("draining: {} call(s) running, {} ms to finish",
               service_->context().calls_in_flight(), grace.count());
  while (service_->context().calls_in_flight() > 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (int64_t left = service_->context().calls_in_flight(); left > 0) {
    spdlog::warn("cancelling {} call(s) still running after the grace period",
                 left);
  }
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  metrics_.reset();  // scrapes go on while draining; its render reads service_
}

TensorcastServer::~TensorcastServer() {
  Shutdown(std::chrono::milliseconds(0));
  metrics_.reset();
  // Fetch chunks sent by reference keep their tensor's storage alive until
  // gRPC releases them, which can be a moment after the server is gone; the
  // storage must go back to its pool before the pools go.
  server_.reset();
  cluster_.reset();
  service_.reset();
  store_.reset();
  // Start() may have failed before making the devices (bad flags).
  if (devices_ == nullptr) return;
  auto in_use = [this] {
    int64_t bytes = 0;
    for (const auto& d : devices_->all())
      bytes += d->pool().Stats().allocated_bytes;
    return bytes;
  };
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (in_use() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (in_use() > 0) {
    // Still referenced: leave the devices (and their memory) to the
    // process's exit rather than free pools something may yet use.
    spdlog::warn("{} bytes still referenced at exit; not freeing the pools",
                 in_use());
    (void)devices_.release();
  }
}

}  // namespace tensorcast
