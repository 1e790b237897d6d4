// ClusterNode: what one server knows of the cluster it belongs to
// (--cluster), and what it needs to reach the other members.
//
// Membership: the target (--cluster) is resolved every probe interval --
// "dns:///HOST:PORT" through getaddrinfo (a Kubernetes headless Service
// answers one A record per ready pod), or a comma list "HOST:PORT,..." taken
// as given -- and every address found is probed with a Cluster call under a
// short deadline. The probe's answer names the member's node id (so a node
// learns the others' ids from them, and recognises itself by its own), its
// devices and version; a probe that fails marks the member unhealthy, with
// the reason, until one succeeds. Nothing is stored anywhere else: a node
// that leaves DNS leaves the list at the next resolution.
//
// Peers are called over one channel per address, with the server's own
// transport security (plaintext, or TLS trusting --cluster-ca), and the
// caller's bearer token where the call is the caller's (forwarding, Copy);
// probes carry the cluster token (--cluster-token-file) when one is given.
//
// Thread-safe. Start() once; the destructor stops the probe thread.
#ifndef TENSORCAST_SERVER_CLUSTER_CLUSTER_NODE_H_
#define TENSORCAST_SERVER_CLUSTER_CLUSTER_NODE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/worker_pool.h"
#include "tensorcast/v1/tensor_service.pb.h"

namespace tensorcast {

struct ClusterOptions {
  // This node's id (a DNS label); handles carry it.
  std::string node_id;
  // The members: "dns:///HOST:PORT" or "HOST:PORT,HOST:PORT"; empty = a
  // single node.
  std::string target;
  // HOST:PORT others reach this node at. Port 0 (from --listen=HOST:0)
  // stands for the port the server binds: SetBoundPort fills it in.
  std::string advertise;
  // A bearer token for probes (the contents of --cluster-token-file).
  std::string token;
  // Channel credentials for calls to peers; null = plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::chrono::milliseconds probe_interval{2000};
  std::chrono::milliseconds probe_timeout{1000};
  // The longest a forwarded unary call may take (the caller's deadline, if
  // sooner, wins); not a Copy, which moves a whole tensor and runs to the
  // caller's deadline.
  std::chrono::milliseconds forward_timeout{30000};
  // Name lookups (forward.h) in flight at once: for one tenant, and on
  // this node in all. Beyond either, a call on a name not held here is
  // refused (RESOURCE_EXHAUSTED) before any peer is asked.
  int name_lookups_per_tenant = 8;
  int name_lookups = 64;
};

// A member another node may be reached at.
struct Peer {
  std::string node_id;
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
};

// `address` ("HOST:PORT") with a port of 0 replaced by `port`; any other
// address as given.
std::string WithBoundPort(absl::string_view address, int port);

class ClusterNode {
 public:
  explicit ClusterNode(ClusterOptions options);
  ~ClusterNode();
  ClusterNode(const ClusterNode&) = delete;
  ClusterNode& operator=(const ClusterNode&) = delete;

  // Resolves and probes once, then every probe interval on a thread of its
  // own. Nothing to do without a target.
  void Start();

  const ClusterOptions& options() const { return options_; }
  // The address others reach this node at: options().advertise, its port
  // 0 replaced by the bound one once SetBoundPort has run.
  std::string advertise() const;
  // Once the server has bound its port: an advertised port 0 becomes
  // `port`. Before Start.
  void SetBoundPort(int port);
  const std::string& node_id() const { return options_.node_id; }
  bool clustered() const { return !options_.target.empty(); }

  // The node that holds `ref` when it is another node's handle; "" when it
  // is this node's (or a plain handle, or a name).
  std::string RemoteOwner(absl::string_view ref) const;
  // The member with id `node`: UNAVAILABLE naming it when no member has
  // that id, or when it failed its last probe (with why).
  absl::StatusOr<Peer> PeerFor(absl::string_view node) const;
  // The other members that answered their last probe.
  std::vector<Peer> HealthyPeers() const;

  // Every member, this node first filled by the caller (`self`), sorted by
  // address.
  void Describe(const v1::ClusterMember& self,
                v1::ClusterResponse* response) const;

  // A slot for one name lookup by `tenant`: RESOURCE_EXHAUSTED (saying
  // which bound) when the tenant has name_lookups_per_tenant in flight or
  // the node name_lookups. Every OK is paired with one EndNameLookup.
  absl::Status BeginNameLookup(const std::string& tenant);
  void EndNameLookup(const std::string& tenant);

  // Counters for /metrics: calls forwarded to a peer (per method and
  // code), copies sent to a peer (per code) and their bytes.
  void CountForward(absl::string_view peer, absl::string_view method,
                    grpc::StatusCode code);
  void CountCopy(absl::string_view peer, grpc::StatusCode code, int64_t bytes);
  std::string RenderMetrics() const;

  // A status from a call to `peer` as the caller should see it: transport
  // failures (UNAVAILABLE, DEADLINE_EXCEEDED the peer did not itself
  // report) name the node.
  static grpc::Status FromPeer(const Peer& peer, const grpc::Status& status);

  // Where Copy's puts run (blocking, one chunk in flight each): at most
  // kCopyThreads at once, the rest queue. The destructor waits for them.
  static constexpr int kCopyThreads = 8;
  WorkerPool& copy_workers() { return *copy_workers_; }

 private:
  struct Member {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::string node_id;
    bool healthy = false;
    bool self = false;
    std::string error = "not probed yet";
    int64_t last_seen_unix_ms = 0;
    std::string version;
    std::vector<v1::DeviceStats> devices;
  };
  void Loop();
  // The addresses the target names now.
  std::vector<std::string> Resolve() const;
  void ProbeAll();

  const ClusterOptions options_;

  mutable std::mutex mu_;
  std::map<std::string, Member> members_;  // by address; guarded by mu_
  std::string advertise_;                  // guarded by mu_
  bool stopping_ = false;                  // guarded by mu_
  std::condition_variable wake_;
  std::thread thread_;

  mutable std::mutex lookups_mu_;
  std::map<std::string, int> lookups_;  // by tenant; guarded by lookups_mu_
  int lookups_total_ = 0;               // guarded by lookups_mu_
  uint64_t lookups_refused_ = 0;        // guarded by lookups_mu_

  mutable std::mutex metrics_mu_;
  // (peer, method, code) -> calls; (peer, code) -> copies; peer -> bytes.
  std::map<std::tuple<std::string, std::string, int>, uint64_t> forwards_;
  std::map<std::pair<std::string, int>, uint64_t> copies_;
  std::map<std::string, uint64_t> copy_bytes_;

  // Last: its threads stop (finishing the copies queued) first.
  std::unique_ptr<WorkerPool> copy_workers_;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_CLUSTER_CLUSTER_NODE_H_
