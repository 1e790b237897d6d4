#include "server/store/handle.h"

#include "absl/strings/ascii.h"

namespace tensorcast {
namespace {

bool AllHex(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isxdigit(c)) return false;
  }
  return true;
}

bool LabelChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

}  // namespace

bool IsNodeId(absl::string_view id) {
  if (id.empty() || id.size() > kMaxNodeIdBytes) return false;
  if (id.front() == '-' || id.back() == '-') return false;
  for (char c : id) {
    if (!LabelChar(c)) return false;
  }
  return true;
}

std::string SanitizeNodeId(absl::string_view text) {
  text = text.substr(0, text.find('.'));
  std::string out;
  for (char c : text) {
    c = absl::ascii_tolower(static_cast<unsigned char>(c));
    out.push_back(LabelChar(c) ? c : '-');
  }
  if (out.size() > kMaxNodeIdBytes) out.resize(kMaxNodeIdBytes);
  size_t start = out.find_first_not_of('-');
  if (start == std::string::npos) return "node";
  out = out.substr(start, out.find_last_not_of('-') - start + 1);
  return out;
}

std::optional<HandleParts> ParseHandle(absl::string_view ref) {
  if (ref.size() < kHandleHexDigits) return std::nullopt;
  absl::string_view random = ref.substr(0, kHandleHexDigits);
  if (!AllHex(random)) return std::nullopt;
  if (ref.size() == kHandleHexDigits) return HandleParts{random, {}};
  if (ref[kHandleHexDigits] != '.') return std::nullopt;
  absl::string_view node = ref.substr(kHandleHexDigits + 1);
  if (!IsNodeId(node)) return std::nullopt;
  return HandleParts{random, node};
}

absl::string_view RefNode(absl::string_view ref) {
  std::optional<HandleParts> parts = ParseHandle(ref);
  return parts.has_value() ? parts->node : absl::string_view();
}

bool NameLooksLikeHandle(absl::string_view name) {
  if (name.size() < kHandleHexDigits) return false;
  if (!AllHex(name.substr(0, kHandleHexDigits))) return false;
  return name.size() == kHandleHexDigits || name[kHandleHexDigits] == '.';
}

}  // namespace tensorcast
