// OpenSharedMemory: the call a same-host client holds open while it lends
// the server a shared-memory region. It answers with one event naming the
// region (and its challenge) and then stays open; when it ends -- the client
// closes it or goes away (a cancellation), or the server shuts down (which
// cancels it) -- the region is forgotten. Sessions are not counted as
// running streams, so an idle session does not hold up a drain. Only a peer
// on this host (loopback, a unix socket) may lend memory.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "server/service/reactors.h"
#include "server/service/status.h"

namespace tensorcast {
namespace {

// Whether a gRPC peer ("ipv4:127.0.0.1:5000", "ipv6:%5B::1%5D:5000" -- the
// brackets percent-encoded, or not --, "unix:/path") is on this host: a
// unix socket, or a loopback address (127/8, ::1, ::ffff:127/104).
bool OnThisHost(absl::string_view peer) {
  if (absl::StartsWith(peer, "unix:") ||
      absl::StartsWith(peer, "unix-abstract:")) {
    return true;
  }
  if (absl::ConsumePrefix(&peer, "ipv4:")) {
    const std::string host(peer.substr(0, peer.rfind(':')));
    struct in_addr v4;
    return inet_pton(AF_INET, host.c_str(), &v4) == 1 &&
           (ntohl(v4.s_addr) >> 24) == 127;
  }
  if (absl::ConsumePrefix(&peer, "ipv6:")) {
    const std::string text = absl::StrReplaceAll(
        peer, {{"%5B", "["}, {"%5b", "["}, {"%5D", "]"}, {"%5d", "]"}});
    const size_t end = text.find(']');
    if (text.empty() || text[0] != '[' || end == std::string::npos) {
      return false;
    }
    std::string host = text.substr(1, end - 1);
    host = host.substr(0, host.find('%'));  // a zone, "%25eth0"
    struct in6_addr v6;
    if (inet_pton(AF_INET6, host.c_str(), &v6) != 1) return false;
    return IN6_IS_ADDR_LOOPBACK(&v6) ||
           (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
  }
  return false;
}

class SharedMemorySession final
    : public grpc::ServerWriteReactor<v1::SharedMemoryEvent> {
 public:
  SharedMemorySession(ServiceContext* service, grpc::CallbackServerContext* ctx,
                      const v1::OpenSharedMemoryRequest* request)
      : service_(service), ctx_(ctx) {
    // Who is calling comes first: a caller without a good token learns
    // nothing, not even whether shared memory is on.
    absl::StatusOr<Caller> caller = service_->Admit(ctx_, &slot_, &live_);
    if (!caller.ok()) {
      End(caller.status());
      return;
    }
    if (!service_->options().shared_memory) {
      End(absl::FailedPreconditionError(kSharedMemoryOff));
      return;
    }
    if (!OnThisHost(ctx_->peer())) {
      End(absl::FailedPreconditionError(
          "shared memory is for clients on the server's host, connected "
          "over loopback or a unix socket"));
      return;
    }
    const bool cuda = !request->cuda_ipc_handle().empty() ||
                      !request->cuda_pci_bus_id().empty();
    const bool memfd = request->name().empty() && request->memfd_pid() != 0;
    if (cuda && (!request->name().empty() || request->memfd_pid() != 0 ||
                 request->memfd_fd() != 0)) {
      End(absl::InvalidArgumentError(
          "a shared-memory region is a name, a memfd or a CUDA IPC handle, "
          "one of them"));
      return;
    }
    if (!request->name().empty() &&
        (request->memfd_pid() != 0 || request->memfd_fd() != 0)) {
      End(absl::InvalidArgumentError(
          "a shared-memory region is a name or a memfd, not both"));
      return;
    }
    // Regions belong to this connection and this tenant.
    const std::string owner = ServiceContext::RegionOwner(ctx_, *caller);
    SharedMemoryRegistry& registry = service_->shared_memory();
    std::string why;  // a refusal's reason: the log's, never the caller's
    // The tenant's quota is charged the region's data bytes.
    absl::StatusOr<SharedMemoryGrant> grant =
        cuda    ? registry.OpenCudaIpc(request->cuda_ipc_handle(),
                                       request->cuda_pci_bus_id(), request->size(),
                                       request->token(), owner, caller->tenant,
                                       &why)
        : memfd ? registry.OpenMemfd(request->memfd_pid(), request->memfd_fd(),
                                     request->size(), request->token(), owner,
                                     caller->tenant, &why)
                : registry.Open(request->name(), request->size(),
                                request->token(), owner, caller->tenant, &why);
    if (!grant.ok()) {
      if (!why.empty()) {
        spdlog::debug("OpenSharedMemory from {} refused: {}", ctx_->peer(),
                      why);
      }
      End(grant.status());
      return;
    }
    region_ = grant->id;
    event_.set_region(region_);
    event_.set_size(request->size());
    event_.set_mapped(memfd);
    event_.set_data_offset(kSharedMemoryHeaderBytes);
    event_.set_challenge(grant->challenge);
    if (grant->device >= 0) {
      event_.set_device(absl::StrCat("cuda:", grant->device));
    }
    LogRpc(service_, "OpenSharedMemory", ctx_, absl::OkStatus(), start_);
    StartWrite(&event_);
  }

  void OnWriteDone(bool ok) override {
    // Then nothing more to send: the call stays open until it is cancelled.
    if (!ok) End(absl::CancelledError("the client went away"));
  }

  void OnCancel() override {
    End(absl::CancelledError("the shared-memory session ended"));
  }

  void OnDone() override {
    if (!region_.empty()) {
      // Let go on the workers: the last reference punches the data out.
      std::shared_ptr<const SharedMemoryRegion> region =
          service_->shared_memory().Close(region_);
      if (region != nullptr) {
        service_->shm_workers()->Run(
            [region = std::move(region)]() mutable { region.reset(); });
      }
    }
    delete this;
  }

 private:
  void End(const absl::Status& status) {
    bool expected = false;
    if (!finished_.compare_exchange_strong(expected, true)) return;
    if (!status.ok() && region_.empty()) {
      LogRpc(service_, "OpenSharedMemory", ctx_, status, start_);
    }
    Finish(ToGrpcStatus(status));
  }

  ServiceContext* const service_;
  grpc::CallbackServerContext* const ctx_;
  const std::chrono::steady_clock::time_point start_ =
      std::chrono::steady_clock::now();
  LiveCall live_;    // a revoked token cancels the session (OnCancel)
  StreamSlot slot_;  // a session counts as one of the tenant's streams
  std::string region_;
  v1::SharedMemoryEvent event_;
  std::atomic<bool> finished_{false};
};

}  // namespace

grpc::ServerWriteReactor<v1::SharedMemoryEvent>* NewSharedMemorySession(
    ServiceContext* service, grpc::CallbackServerContext* ctx,
    const v1::OpenSharedMemoryRequest* request) {
  return new SharedMemorySession(service, ctx, request);
}

}  // namespace tensorcast
