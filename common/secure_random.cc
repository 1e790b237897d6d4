#include "common/secure_random.h"

#include <sys/random.h>

#include "absl/strings/escaping.h"

namespace tensorcast {

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t r = getrandom(out.data() + got, n - got, 0);
    if (r > 0) got += static_cast<size_t>(r);
  }
  return out;
}

std::string RandomHex(size_t n) {
  return absl::BytesToHexString(RandomBytes(n));
}

}  // namespace tensorcast
