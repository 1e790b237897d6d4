// Client-supplied text (a ref, a name, a page token, a device string, a
// .npy header's bytes) as it may be quoted in a status message or a log
// line: short, on one line, and unable to close the quotes around it.
#ifndef TENSORCAST_COMMON_ECHO_H_
#define TENSORCAST_COMMON_ECHO_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace tensorcast {

// How much of a client's string a message quotes, in output characters.
inline constexpr size_t kMaxEchoChars = 96;

// `text` escaped -- printable ASCII as it is except \ ' " (backslashed),
// \n \r \t, every other byte as \xNN -- and cut once the escaped text
// reaches `max_chars`, followed by "...(N bytes)" giving the whole input's
// length. The result is at most max_chars + 3 characters before that
// suffix. Every place that quotes client input in a message uses this.
std::string EchoInput(absl::string_view text, size_t max_chars = kMaxEchoChars);

}  // namespace tensorcast

#endif  // TENSORCAST_COMMON_ECHO_H_
