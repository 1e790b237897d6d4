// FuzzInput: reads typed values from the front of a fuzz input, yielding
// zeros once it runs out, so that every input decodes to something. Small
// numbers take one byte (varints), which keeps seeds short and lets the
// fuzzer reach them by flipping a byte. Header-only.
#ifndef TENSORCAST_TESTS_FUZZ_FUZZ_INPUT_H_
#define TENSORCAST_TESTS_FUZZ_FUZZ_INPUT_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace tensorcast::fuzz {

class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size)
      : data_(reinterpret_cast<const char*>(data), size) {}

  bool empty() const { return data_.empty(); }
  size_t remaining() const { return data_.size(); }

  uint8_t Byte() {
    if (data_.empty()) return 0;
    uint8_t b = static_cast<uint8_t>(data_[0]);
    data_.remove_prefix(1);
    return b;
  }

  // A protobuf-style varint (up to 10 bytes).
  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && !data_.empty(); shift += 7) {
      uint8_t b = Byte();
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) break;
    }
    return v;
  }

  // A zigzag varint: 0, -1, 1, -2, ... for 0, 1, 2, 3, ...
  int64_t Signed() {
    uint64_t v = Varint();
    return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1));
  }

  // Up to `n` bytes.
  absl::string_view Bytes(size_t n) {
    absl::string_view out = data_.substr(0, std::min(n, data_.size()));
    data_.remove_prefix(out.size());
    return out;
  }

  // A varint length, then that many bytes (fewer if the input ends).
  absl::string_view LengthPrefixed() { return Bytes(Varint()); }

  absl::string_view Rest() { return Bytes(data_.size()); }

 private:
  absl::string_view data_;
};

}  // namespace tensorcast::fuzz

#endif  // TENSORCAST_TESTS_FUZZ_FUZZ_INPUT_H_
