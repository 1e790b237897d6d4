#include "server/memory/cold_copy.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tensorcast {
namespace {

// Every byte lands, none outside the range, at any size around the
// streaming threshold and any misalignment of either side.
TEST(ColdCopyTest, CopiesExactlyTheRange) {
  const size_t sizes[] = {0,
                          1,
                          63,
                          64,
                          4096,
                          kColdCopyMinBytes - 1,
                          kColdCopyMinBytes,
                          kColdCopyMinBytes + 1,
                          kColdCopyMinBytes + 63,
                          size_t{3} << 20};
  std::string src(size_t{3} << 20 | 200, '\0');
  for (size_t i = 0; i < src.size(); ++i) {
    src[i] = static_cast<char>(i * 131 + (i >> 11));
  }
  std::vector<char> dst(src.size() + 256);
  for (size_t n : sizes) {
    for (size_t dst_off : {size_t{0}, size_t{1}, size_t{17}, size_t{64}}) {
      for (size_t src_off : {size_t{0}, size_t{3}, size_t{64}}) {
        std::fill(dst.begin(), dst.end(), '\x5a');
        CopyToColdMemory(dst.data() + dst_off, src.data() + src_off, n);
        ASSERT_EQ(std::string(dst.data() + dst_off, n), src.substr(src_off, n))
            << "n=" << n << " dst_off=" << dst_off << " src_off=" << src_off;
        for (size_t i = 0; i < dst_off; ++i) ASSERT_EQ(dst[i], '\x5a');
        for (size_t i = dst_off + n; i < dst.size(); ++i) {
          ASSERT_EQ(dst[i], '\x5a') << "n=" << n << " wrote past the end";
        }
      }
    }
  }
}

}  // namespace
}  // namespace tensorcast
