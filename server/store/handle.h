// Handles and node ids. A handle is 32 lowercase hex digits (128 random
// bits), followed on a server with a node id by "." and that id:
// "8d7b0c0f5c6e4f1d2a9e77c1b3f04a21.tensorcast-1". A node id is a DNS label
// (1 to 63 of [a-z0-9-], starting and ending with a letter or digit), so it
// holds no "." and the owner of a handle is the text after its one ".".
// A name may take neither form (NameLooksLikeHandle), so a name is never
// mistaken for a handle of this node or of another. Pure functions.
#ifndef TENSORCAST_SERVER_STORE_HANDLE_H_
#define TENSORCAST_SERVER_STORE_HANDLE_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace tensorcast {

inline constexpr size_t kHandleHexDigits = 32;
inline constexpr size_t kMaxNodeIdBytes = 63;

// Whether `id` is a DNS label as above.
bool IsNodeId(absl::string_view id);

// A DNS label made from `text` (a hostname): lower case, the first
// component (up to the first "."), characters outside [a-z0-9-] as "-",
// cut to 63 and trimmed of "-" at either end; "node" if nothing is left.
std::string SanitizeNodeId(absl::string_view text);

// A handle split at its ".": the 32 hex digits, and the node id ("" for a
// handle without one). nullopt when `ref` is not a handle in either form
// (hex digits of either case are accepted, as the store always has).
struct HandleParts {
  absl::string_view random;
  absl::string_view node;
};
std::optional<HandleParts> ParseHandle(absl::string_view ref);

// The node a ref names: a handle's node id, or "" for a plain handle or a
// name (which the node asked resolves).
absl::string_view RefNode(absl::string_view ref);

// Whether a name must be refused because it could be read as a handle: 32
// hex digits, alone or followed by ".".
bool NameLooksLikeHandle(absl::string_view name);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_HANDLE_H_
