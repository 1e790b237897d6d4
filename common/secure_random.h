// Unguessable identifiers: bytes from the kernel's CSPRNG (getrandom),
// for tensor handles and shared-memory region ids.
#ifndef TENSORCAST_COMMON_SECURE_RANDOM_H_
#define TENSORCAST_COMMON_SECURE_RANDOM_H_

#include <cstddef>
#include <string>

namespace tensorcast {

// `n` random bytes.
std::string RandomBytes(size_t n);
// `n` random bytes as 2n lowercase hex digits.
std::string RandomHex(size_t n);

}  // namespace tensorcast

#endif  // TENSORCAST_COMMON_SECURE_RANDOM_H_
