// The client side of a tensorcast cluster (docs/cluster.md#clients): the
// member table a Client keeps, the placement of new tensors and the routing
// of calls by handle. Pure logic over protos, no channels: Client
// (client.cc) feeds it Cluster answers and call failures and asks it where
// each call goes, so it is tested without a server (cluster_test.cc).
#ifndef TENSORCAST_CLIENT_CPP_CLUSTER_H_
#define TENSORCAST_CLIENT_CPP_CLUSTER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tensorcast/v1/tensor_service.pb.h"

namespace tensorcast {

// The addresses a target names: "dns:///name:port" and "host:port" are one
// target each (gRPC resolves the first); "a:1,b:2" is a list.
std::vector<std::string> SplitTargets(absl::string_view target);

// The node id a handle names ("<32 hex>.<node-id>"), or "" for a name or a
// plain 32-hex handle of a server without a node id.
std::string HandleNode(absl::string_view ref);

// "cpu" for "", "cuda:0" for "cuda"; otherwise as given.
std::string NormalizeDevice(absl::string_view device);

struct Member {
  std::string node_id;
  std::string address;
  bool healthy = false;
  std::string error;
  // Device name ("cpu", "cuda:0") -> free_bytes.
  std::map<std::string, int64_t> free_bytes;
};

// The member table. Not thread-safe: Client holds it under its lock.
class MemberTable {
 public:
  // Replaces the table with what `response` lists (members without a node
  // id are left out: they never answered), at `now_ms`. A member this
  // client saw fail stays down until an answer kDownHoldMs or more after
  // the failure calls it healthy (the nodes' own probes may not have seen
  // it yet). Returns false when the response names no node id: a plain
  // server, not a cluster.
  bool Update(const v1::ClusterResponse& response, int64_t now_ms);

  static constexpr int64_t kDownHoldMs = 3000;

  // A call to `node` failed at the transport: down (see Update).
  void MarkDown(const std::string& node, const std::string& error,
                int64_t now_ms);

  const Member* Find(const std::string& node) const;
  const std::vector<Member>& members() const { return members_; }
  bool empty() const { return members_.empty(); }

  // The node a new tensor of `bytes` on `device` goes to: among the healthy
  // members that have the device, those whose free_bytes are within 10% of
  // the most, taken in turn (so equal nodes share the load); `bytes` is
  // then taken off the chosen node's figure until the next Update.
  // UNAVAILABLE when no healthy member has the device.
  absl::StatusOr<std::string> Place(absl::string_view device, int64_t bytes);

  // The node to send a call that names no node (a name, Stats...): the
  // preferred one when healthy, else the first healthy member.
  absl::StatusOr<std::string> AnyHealthy(const std::string& preferred) const;

 private:
  std::vector<Member> members_;
  // node -> (time marked down, why), for failures seen by this client.
  std::map<std::string, std::pair<int64_t, std::string>> down_;
  uint64_t turn_ = 0;
};

// UNAVAILABLE "node 'NODE' (ADDRESS) is unavailable: WHY" (the servers'
// wording for the same failure).
absl::Status NodeUnavailable(const std::string& node,
                             const std::string& address,
                             const std::string& why);

}  // namespace tensorcast

#endif  // TENSORCAST_CLIENT_CPP_CLUSTER_H_
