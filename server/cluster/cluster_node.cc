#include "server/cluster/cluster_node.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "server/store/handle.h"
#include "tensorcast/v1/tensor_service.grpc.pb.h"

namespace tensorcast {
namespace {

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// HOST and PORT of "HOST:PORT" or "[V6]:PORT".
bool SplitHostPort(absl::string_view hp, std::string* host, std::string* port) {
  size_t colon = hp.rfind(':');
  if (colon == absl::string_view::npos || colon + 1 == hp.size()) return false;
  absl::string_view h = hp.substr(0, colon);
  if (absl::ConsumePrefix(&h, "[")) {
    if (!absl::ConsumeSuffix(&h, "]")) return false;
  }
  *host = std::string(h);
  *port = std::string(hp.substr(colon + 1));
  return !host->empty();
}

std::string EscapeLabel(absl::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string WithBoundPort(absl::string_view address, int port) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || address.substr(colon + 1) != "0") {
    return std::string(address);
  }
  return absl::StrCat(address.substr(0, colon + 1), port);
}

ClusterNode::ClusterNode(ClusterOptions options)
    : options_(std::move(options)),
      advertise_(options_.advertise),
      copy_workers_(std::make_unique<WorkerPool>(kCopyThreads)) {}

std::string ClusterNode::advertise() const {
  std::lock_guard<std::mutex> lock(mu_);
  return advertise_;
}

void ClusterNode::SetBoundPort(int port) {
  std::lock_guard<std::mutex> lock(mu_);
  advertise_ = WithBoundPort(advertise_, port);
}

ClusterNode::~ClusterNode() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  copy_workers_.reset();
}

void ClusterNode::Start() {
  if (!clustered()) return;
  ProbeAll();
  thread_ = std::thread([this] { Loop(); });
}

void ClusterNode::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, options_.probe_interval);
    if (stopping_) break;
    lock.unlock();
    ProbeAll();
    lock.lock();
  }
}

std::vector<std::string> ClusterNode::Resolve() const {
  std::vector<std::string> out;
  absl::string_view target = options_.target;
  absl::string_view dns = target;
  if (absl::ConsumePrefix(&dns, "dns:///") ||
      absl::ConsumePrefix(&dns, "dns:")) {
    std::string host, port;
    if (!SplitHostPort(dns, &host, &port)) return out;
    addrinfo hints = {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (getaddrinfo(host.c_str(), port.c_str(), &hints, &res) != 0) return out;
    for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
      char ip[INET6_ADDRSTRLEN] = {};
      if (a->ai_family == AF_INET) {
        inet_ntop(AF_INET,
                  &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, ip,
                  sizeof(ip));
        out.push_back(absl::StrCat(ip, ":", port));
      } else if (a->ai_family == AF_INET6) {
        inet_ntop(AF_INET6,
                  &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, ip,
                  sizeof(ip));
        out.push_back(absl::StrCat("[", ip, "]:", port));
      }
    }
    freeaddrinfo(res);
  } else {
    for (absl::string_view a :
         absl::StrSplit(target, ',', absl::SkipWhitespace())) {
      out.push_back(std::string(absl::StripAsciiWhitespace(a)));
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void ClusterNode::ProbeAll() {
  const std::vector<std::string> addresses = Resolve();
  struct Probe {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    grpc::ClientContext ctx;
    v1::ClusterRequest request;
    v1::ClusterResponse response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Probe>> probes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Members that left the target's answer leave the list.
    std::set<std::string> now(addresses.begin(), addresses.end());
    for (auto it = members_.begin(); it != members_.end();) {
      it = now.count(it->first) ? std::next(it) : members_.erase(it);
    }
    for (const std::string& a : addresses) {
      Member& m = members_[a];
      if (m.channel == nullptr) {
        m.address = a;
        grpc::ChannelArguments args;
        args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
        args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
        args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
        args.SetMaxReceiveMessageSize(-1);
        m.channel =
            grpc::CreateCustomChannel(a,
                                      options_.credentials != nullptr
                                          ? options_.credentials
                                          : grpc::InsecureChannelCredentials(),
                                      args);
      }
      auto p = std::make_unique<Probe>();
      p->address = a;
      p->channel = m.channel;
      probes.push_back(std::move(p));
    }
  }
  std::mutex done_mu;
  std::condition_variable done_cv;
  size_t pending = probes.size();
  for (auto& p : probes) {
    p->ctx.set_deadline(std::chrono::system_clock::now() +
                        options_.probe_timeout);
    if (!options_.token.empty()) {
      p->ctx.AddMetadata("authorization", "Bearer " + options_.token);
    }
    v1::TensorService::Stub stub(p->channel);
    Probe* raw = p.get();
    stub.async()->Cluster(&raw->ctx, &raw->request, &raw->response,
                          [raw, &done_mu, &done_cv, &pending](grpc::Status s) {
                            std::lock_guard<std::mutex> lock(done_mu);
                            raw->status = std::move(s);
                            if (--pending == 0) done_cv.notify_all();
                          });
  }
  {
    std::unique_lock<std::mutex> lock(done_mu);
    done_cv.wait(lock, [&] { return pending == 0; });
  }
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = NowUnixMs();
  for (const auto& p : probes) {
    auto it = members_.find(p->address);
    if (it == members_.end()) continue;
    Member& m = it->second;
    if (!p->status.ok()) {
      m.healthy = false;
      m.error = p->status.error_message().empty()
                    ? absl::StatusCodeToString(
                          static_cast<absl::StatusCode>(p->status.error_code()))
                    : p->status.error_message();
      continue;
    }
    m.healthy = true;
    m.error.clear();
    m.last_seen_unix_ms = now;
    m.node_id = p->response.node_id();
    m.self = m.node_id == options_.node_id;
    m.devices.clear();
    m.version.clear();
    for (const v1::ClusterMember& cm : p->response.members()) {
      if (!cm.self()) continue;
      m.version = cm.version();
      m.devices.assign(cm.devices().begin(), cm.devices().end());
    }
  }
}

std::string ClusterNode::RemoteOwner(absl::string_view ref) const {
  absl::string_view node = RefNode(ref);
  if (node.empty() || node == options_.node_id) return "";
  return std::string(node);
}

absl::StatusOr<Peer> ClusterNode::PeerFor(absl::string_view node) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> known;
  for (const auto& [address, m] : members_) {
    if (m.node_id != node) {
      if (!m.node_id.empty()) known.push_back(m.node_id);
      continue;
    }
    if (!m.healthy) {
      return absl::UnavailableError(absl::StrCat(
          "node '", node, "' (", address, ") is unavailable: ", m.error,
          "; the tensors it holds cannot be reached"));
    }
    return Peer{m.node_id, m.address, m.channel};
  }
  return absl::UnavailableError(
      absl::StrCat("node '", node.substr(0, kMaxNodeIdBytes),
                   "' is not a member this node knows (members: ",
                   known.empty() ? std::string("none answering")
                                 : absl::StrJoin(known, ", "),
                   "); the tensors it held cannot be reached"));
}

std::vector<Peer> ClusterNode::HealthyPeers() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Peer> out;
  for (const auto& [address, m] : members_) {
    if (m.healthy && !m.self && !m.node_id.empty()) {
      out.push_back(Peer{m.node_id, m.address, m.channel});
    }
  }
  return out;
}

void ClusterNode::Describe(const v1::ClusterMember& self,
                           v1::ClusterResponse* response) const {
  response->set_node_id(options_.node_id);
  std::vector<v1::ClusterMember> out;
  out.push_back(self);
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [address, m] : members_) {
      if (m.self || address == advertise_) continue;
      v1::ClusterMember& cm = out.emplace_back();
      cm.set_node_id(m.node_id);
      cm.set_address(m.address);
      for (const v1::DeviceStats& d : m.devices) *cm.add_devices() = d;
      cm.set_healthy(m.healthy);
      cm.set_error(m.error);
      cm.set_last_seen_unix_ms(m.last_seen_unix_ms);
      cm.set_version(m.version);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const v1::ClusterMember& a, const v1::ClusterMember& b) {
              return a.address() < b.address();
            });
  for (v1::ClusterMember& m : out) *response->add_members() = std::move(m);
}

absl::Status ClusterNode::BeginNameLookup(const std::string& tenant) {
  std::lock_guard<std::mutex> lock(lookups_mu_);
  int& mine = lookups_[tenant];
  if (mine >= options_.name_lookups_per_tenant) {
    ++lookups_refused_;
    return absl::ResourceExhaustedError(absl::StrCat(
        "this tenant already has ", mine,
        " name lookups running across the cluster (the most at once); a "
        "name not held on the node asked is looked up on every member: "
        "use the handle, or ask the node that holds it"));
  }
  if (lookups_total_ >= options_.name_lookups) {
    ++lookups_refused_;
    if (mine == 0) lookups_.erase(tenant);
    return absl::ResourceExhaustedError(absl::StrCat(
        "node '", options_.node_id, "' already has ", lookups_total_,
        " name lookups running across the cluster (the most at once); use "
        "the handle, or ask the node that holds the name"));
  }
  ++mine;
  ++lookups_total_;
  return absl::OkStatus();
}

void ClusterNode::EndNameLookup(const std::string& tenant) {
  std::lock_guard<std::mutex> lock(lookups_mu_);
  auto it = lookups_.find(tenant);
  if (it == lookups_.end()) return;
  if (--it->second <= 0) lookups_.erase(it);
  --lookups_total_;
}

void ClusterNode::CountForward(absl::string_view peer, absl::string_view method,
                               grpc::StatusCode code) {
  std::lock_guard<std::mutex> lock(metrics_mu_);
  ++forwards_[{std::string(peer), std::string(method), static_cast<int>(code)}];
}

void ClusterNode::CountCopy(absl::string_view peer, grpc::StatusCode code,
                            int64_t bytes) {
  std::lock_guard<std::mutex> lock(metrics_mu_);
  ++copies_[{std::string(peer), static_cast<int>(code)}];
  copy_bytes_[std::string(peer)] += static_cast<uint64_t>(bytes);
}

std::string ClusterNode::RenderMetrics() const {
  std::string out;
  auto code_name = [](int code) {
    return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
  };
  {
    std::lock_guard<std::mutex> lock(lookups_mu_);
    absl::StrAppend(
        &out,
        "# HELP tensorcast_cluster_name_lookups Name lookups on the other "
        "members running now.\n"
        "# TYPE tensorcast_cluster_name_lookups gauge\n"
        "tensorcast_cluster_name_lookups ",
        lookups_total_,
        "\n"
        "# HELP tensorcast_cluster_name_lookups_refused_total Name lookups "
        "refused (RESOURCE_EXHAUSTED) for too many running.\n"
        "# TYPE tensorcast_cluster_name_lookups_refused_total counter\n"
        "tensorcast_cluster_name_lookups_refused_total ",
        lookups_refused_, "\n");
  }
  std::lock_guard<std::mutex> lock(metrics_mu_);
  out +=
      "# HELP tensorcast_cluster_forwarded_total Calls this node forwarded "
      "to the member that holds the tensor.\n"
      "# TYPE tensorcast_cluster_forwarded_total counter\n";
  for (const auto& [key, n] : forwards_) {
    absl::StrAppend(&out, "tensorcast_cluster_forwarded_total{peer=\"",
                    EscapeLabel(std::get<0>(key)), "\",method=\"",
                    EscapeLabel(std::get<1>(key)), "\",code=\"",
                    code_name(std::get<2>(key)), "\"} ", n, "\n");
  }
  out +=
      "# HELP tensorcast_cluster_copies_total Copies this node sent to "
      "another member.\n"
      "# TYPE tensorcast_cluster_copies_total counter\n";
  for (const auto& [key, n] : copies_) {
    absl::StrAppend(&out, "tensorcast_cluster_copies_total{peer=\"",
                    EscapeLabel(key.first), "\",code=\"", code_name(key.second),
                    "\"} ", n, "\n");
  }
  out +=
      "# HELP tensorcast_cluster_copy_bytes_total Tensor bytes this node "
      "sent to other members in copies.\n"
      "# TYPE tensorcast_cluster_copy_bytes_total counter\n";
  for (const auto& [peer, n] : copy_bytes_) {
    absl::StrAppend(&out, "tensorcast_cluster_copy_bytes_total{peer=\"",
                    EscapeLabel(peer), "\"} ", n, "\n");
  }
  return out;
}

grpc::Status ClusterNode::FromPeer(const Peer& peer,
                                   const grpc::Status& status) {
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE) return status;
  if (absl::StrContains(status.error_message(), "node '")) return status;
  return grpc::Status(status.error_code(),
                      absl::StrCat("node '", peer.node_id, "' (", peer.address,
                                   ") is unavailable: ", status.error_message(),
                                   "; the tensors it holds cannot be reached"));
}

}  // namespace tensorcast
