// Fuzzes ParseNpyHeader (server/core/npy.h) with whole inputs, prefixes of
// them and its own encoder's output. Beyond "no crash, no sanitizer report":
// a complete header is consistent (sizes, version), every shorter prefix of
// it asks for more bytes, the bytes after it do not change it, the encoder
// round-trips it, and byte swapping twice is the identity.
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/npy.h"
#include "server/core/shape.h"
#include "tests/fuzz/fuzz_targets.h"

namespace tensorcast::fuzz {
namespace {

absl::StatusOr<std::optional<NpyHeader>> Parse(absl::string_view bytes) {
  return ParseNpyHeader(bytes);
}

bool SameHeader(const NpyHeader& a, const NpyHeader& b) {
  return a.dtype == b.dtype && a.fortran_order == b.fortran_order &&
         a.byteswap == b.byteswap && a.shape == b.shape &&
         a.header_bytes == b.header_bytes && a.data_bytes == b.data_bytes &&
         a.version_major == b.version_major;
}

void CheckComplete(absl::string_view input, const NpyHeader& h) {
  FUZZ_CHECK(h.version_major >= 1 && h.version_major <= 3);
  FUZZ_CHECK(h.header_bytes > 0);
  FUZZ_CHECK(h.header_bytes <= static_cast<int64_t>(input.size()));
  FUZZ_CHECK(h.header_bytes <= kMaxNpyHeaderBytes + 12);
  FUZZ_CHECK(h.shape.size() <= kMaxRank);
  absl::StatusOr<int64_t> nbytes = NumBytes(h.shape, h.dtype);
  FUZZ_CHECK(nbytes.ok());
  FUZZ_CHECK(*nbytes == h.data_bytes);
  if (ItemSize(h.dtype) == 1) FUZZ_CHECK(!h.byteswap);

  // The header alone parses to the same header: data after it is not read.
  absl::string_view header = input.substr(0, h.header_bytes);
  auto alone = Parse(header);
  FUZZ_CHECK(alone.ok() && alone->has_value());
  FUZZ_CHECK(SameHeader(**alone, h));

  // Every prefix of a valid header may still become it: "read more".
  const int64_t cuts[] = {0,
                          1,
                          5,
                          6,
                          7,
                          8,
                          9,
                          10,
                          11,
                          12,
                          13,
                          h.header_bytes / 2,
                          h.header_bytes - 1};
  for (int64_t cut : cuts) {
    if (cut < 0 || cut >= h.header_bytes) continue;
    auto partial = Parse(header.substr(0, cut));
    FUZZ_CHECK(partial.ok());
    FUZZ_CHECK(!partial->has_value());
  }

  // What np.save would write for this array parses back to it.
  absl::StatusOr<std::string> encoded =
      EncodeNpyHeader(h.dtype, h.shape, h.fortran_order);
  FUZZ_CHECK(encoded.ok());
  FUZZ_CHECK(encoded->size() % 64 == 0);
  auto again = Parse(*encoded);
  FUZZ_CHECK(again.ok() && again->has_value());
  const NpyHeader& r = **again;
  FUZZ_CHECK(r.dtype == h.dtype && r.shape == h.shape &&
             r.fortran_order == h.fortran_order && !r.byteswap);
  FUZZ_CHECK(r.header_bytes == static_cast<int64_t>(encoded->size()));
  FUZZ_CHECK(r.data_bytes == h.data_bytes);

  // Whatever data follows: swapping twice gives it back.
  absl::string_view data = input.substr(h.header_bytes);
  const size_t item = ItemSize(h.dtype);
  const size_t n = std::min<size_t>(data.size() / item, 4096);
  if (n > 0) {
    std::string copy(data.substr(0, n * item));
    ByteSwapElements(copy.data(), static_cast<int64_t>(n), h.dtype);
    if (item == 1) FUZZ_CHECK(copy == data.substr(0, n));
    ByteSwapElements(copy.data(), static_cast<int64_t>(n), h.dtype);
    FUZZ_CHECK(copy == data.substr(0, n * item));
  }
}

}  // namespace

int FuzzNpy(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  auto parsed = Parse(input);
  if (parsed.ok() && parsed->has_value()) CheckComplete(input, **parsed);
  return 0;
}

}  // namespace tensorcast::fuzz
