#include "server/memory/ipc_memory.h"

#include <utility>

#include "absl/strings/ascii.h"

namespace tensorcast {
namespace {

bool HexDigits(absl::string_view s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(c)) return false;
  }
  return true;
}

class RefusingOpener final : public IpcMemoryOpener {
 public:
  explicit RefusingOpener(std::string reason) : reason_(std::move(reason)) {}
  std::unique_ptr<IpcDeviceRegion> Open(absl::string_view /*handle*/,
                                        absl::string_view /*pci_bus_id*/,
                                        int64_t /*size*/,
                                        std::string* why) const override {
    if (why != nullptr) *why = reason_;
    return nullptr;
  }

 private:
  const std::string reason_;
};

}  // namespace

bool ValidPciBusId(absl::string_view bus_id) {
  // Bus, device and function: "BB:DD.F", after an optional domain.
  const size_t colon = bus_id.rfind(':');
  if (colon == absl::string_view::npos) return false;
  absl::string_view head = bus_id.substr(0, colon);
  const absl::string_view tail = bus_id.substr(colon + 1);
  if (tail.size() != 4 || tail[2] != '.' || !HexDigits(tail.substr(0, 2), 2) ||
      !HexDigits(tail.substr(3), 1)) {
    return false;
  }
  const size_t domain_end = head.find(':');
  if (domain_end != absl::string_view::npos) {
    const absl::string_view domain = head.substr(0, domain_end);
    if (!HexDigits(domain, 4) && !HexDigits(domain, 8)) return false;
    head = head.substr(domain_end + 1);
  }
  return HexDigits(head, 2);
}

std::unique_ptr<IpcMemoryOpener> NewRefusingIpcMemoryOpener(
    std::string reason) {
  return std::make_unique<RefusingOpener>(std::move(reason));
}

}  // namespace tensorcast
