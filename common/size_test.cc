#include "common/size.h"

#include <cstdint>
#include <string>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB = kKiB * 1024;
constexpr int64_t kGiB = kMiB * 1024;
constexpr int64_t kTiB = kGiB * 1024;

TEST(ParseSizeTest, BytesAndBinarySuffixes) {
  const std::pair<const char*, int64_t> cases[] = {
      {"0", 0},
      {"1048576", kMiB},
      {"1B", 1},
      {"64MiB", 64 * kMiB},
      {"64 MiB", 64 * kMiB},
      {"64mib", 64 * kMiB},
      {"64M", 64 * kMiB},
      {"64MB", 64 * kMiB},
      {"1.5GiB", kGiB + kGiB / 2},
      {"512k", 512 * kKiB},
      {"512K", 512 * kKiB},
      {"1kb", kKiB},
      {"2T", 2 * kTiB},
      {"3tib", 3 * kTiB},
      {" 7 ", 7},
      {"0.5KiB", 512},
  };
  for (const auto& [text, bytes] : cases) {
    absl::StatusOr<int64_t> parsed = ParseSize(text);
    ASSERT_TRUE(parsed.ok()) << text << ": " << parsed.status();
    EXPECT_EQ(*parsed, bytes) << text;
  }
}

TEST(ParseSizeTest, BadInputIsInvalidArgument) {
  for (const char* bad :
       {"", " ", "abc", "-1", "1.2.3", "12XB", "MiB", "1e3", "10000000TiB",
        "64 MiB extra", "0x10", "1,024", "+5"}) {
    absl::StatusOr<int64_t> parsed = ParseSize(bad);
    ASSERT_FALSE(parsed.ok()) << "'" << bad << "' parsed as " << *parsed;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr("cannot parse size"));
    EXPECT_THAT(parsed.status().message(), HasSubstr("64MiB"));
  }
}

TEST(FormatSizeTest, PrintsBinaryUnits) {
  EXPECT_EQ(FormatSize(0), "0 B");
  EXPECT_EQ(FormatSize(512), "512 B");
  EXPECT_EQ(FormatSize(1023), "1023 B");
  EXPECT_EQ(FormatSize(kKiB), "1.00 KiB");
  EXPECT_EQ(FormatSize(1536), "1.50 KiB");
  EXPECT_EQ(FormatSize(64 * kMiB), "64.00 MiB");
  EXPECT_EQ(FormatSize(kGiB + kGiB / 2), "1.50 GiB");
  EXPECT_EQ(FormatSize(2 * kTiB), "2.00 TiB");
  EXPECT_EQ(FormatSize(1024 * kTiB), "1024.00 TiB");
}

TEST(FormatSizeTest, RoundTripsThroughParseSize) {
  for (int64_t bytes : {int64_t{0}, int64_t{100}, kKiB, 3 * kMiB, 5 * kGiB}) {
    absl::StatusOr<int64_t> parsed = ParseSize(FormatSize(bytes));
    ASSERT_TRUE(parsed.ok()) << FormatSize(bytes);
    EXPECT_EQ(*parsed, bytes);
  }
}

}  // namespace
}  // namespace tensorcast
