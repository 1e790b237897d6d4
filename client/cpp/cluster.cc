#include "client/cpp/cluster.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tensorcast {

std::vector<std::string> SplitTargets(absl::string_view target) {
  std::vector<std::string> out;
  if (absl::StartsWith(target, "dns:") || target.find(',') == target.npos) {
    out.emplace_back(absl::StripAsciiWhitespace(target));
    return out;
  }
  for (absl::string_view part : absl::StrSplit(target, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  return out;
}

std::string HandleNode(absl::string_view ref) {
  if (ref.size() < 34 || ref[32] != '.') return "";
  for (size_t i = 0; i < 32; ++i) {
    char c = ref[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return "";
  }
  absl::string_view node = ref.substr(33);
  if (node.size() > 63) return "";
  for (char c : node) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
      return "";
    }
  }
  return std::string(node);
}

std::string NormalizeDevice(absl::string_view device) {
  if (device.empty()) return "cpu";
  if (device == "cuda") return "cuda:0";
  return std::string(device);
}

absl::Status NodeUnavailable(const std::string& node,
                             const std::string& address,
                             const std::string& why) {
  return absl::UnavailableError(
      absl::StrCat("node '", node, "'", address.empty() ? "" : " (", address,
                   address.empty() ? "" : ")", " is unavailable: ", why));
}

bool MemberTable::Update(const v1::ClusterResponse& response, int64_t now_ms) {
  if (response.node_id().empty()) return false;
  std::vector<Member> next;
  for (const v1::ClusterMember& m : response.members()) {
    if (m.node_id().empty()) continue;
    Member member;
    member.node_id = m.node_id();
    member.address = m.address();
    member.healthy = m.healthy();
    member.error = m.error();
    for (const v1::DeviceStats& d : m.devices()) {
      member.free_bytes[NormalizeDevice(d.device())] = d.free_bytes();
    }
    auto down = down_.find(member.node_id);
    if (down != down_.end()) {
      if (member.healthy && now_ms - down->second.first >= kDownHoldMs) {
        down_.erase(down);
      } else if (member.healthy) {
        member.healthy = false;
        member.error = down->second.second;
      }
    }
    next.push_back(std::move(member));
  }
  members_ = std::move(next);
  return true;
}

void MemberTable::MarkDown(const std::string& node, const std::string& error,
                           int64_t now_ms) {
  down_[node] = {now_ms, error};
  for (Member& m : members_) {
    if (m.node_id == node) {
      m.healthy = false;
      m.error = error;
    }
  }
}

const Member* MemberTable::Find(const std::string& node) const {
  for (const Member& m : members_) {
    if (m.node_id == node) return &m;
  }
  return nullptr;
}

absl::StatusOr<std::string> MemberTable::Place(absl::string_view device,
                                               int64_t bytes) {
  const std::string dev = NormalizeDevice(device);
  std::vector<Member*> candidates;
  int64_t best = 0;
  for (Member& m : members_) {
    if (!m.healthy || !m.free_bytes.contains(dev)) continue;
    candidates.push_back(&m);
    best = std::max(best, m.free_bytes[dev]);
  }
  if (candidates.empty()) {
    return absl::UnavailableError(
        absl::StrCat("no healthy node has device ", dev));
  }
  std::vector<Member*> eligible;
  for (Member* m : candidates) {
    if (m->free_bytes[dev] >= best - best / 10) eligible.push_back(m);
  }
  Member* chosen = eligible[turn_++ % eligible.size()];
  int64_t& free = chosen->free_bytes[dev];
  free = std::max<int64_t>(0, free - std::max<int64_t>(0, bytes));
  return chosen->node_id;
}

absl::StatusOr<std::string> MemberTable::AnyHealthy(
    const std::string& preferred) const {
  const Member* p = Find(preferred);
  if (p != nullptr && p->healthy) return preferred;
  for (const Member& m : members_) {
    if (m.healthy) return m.node_id;
  }
  return absl::UnavailableError("no healthy tensorcast node");
}

}  // namespace tensorcast
