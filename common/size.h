// Parsing and printing byte sizes as flags take them: "1048576", "64MiB",
// "1.5GiB", "512k". Pure functions, thread-safe.
#ifndef TENSORCAST_COMMON_SIZE_H_
#define TENSORCAST_COMMON_SIZE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tensorcast {

// Plain bytes or a binary suffix: B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB
// (all powers of 1024, case-insensitive). INVALID_ARGUMENT otherwise.
absl::StatusOr<int64_t> ParseSize(absl::string_view text);

// "1.5 GiB", "512 B": for messages and logs.
std::string FormatSize(int64_t bytes);

}  // namespace tensorcast

#endif  // TENSORCAST_COMMON_SIZE_H_
