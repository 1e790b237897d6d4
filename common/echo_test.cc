#include "common/echo.h"

#include <string>

#include "gtest/gtest.h"

namespace tensorcast {
namespace {

TEST(EchoInputTest, PlainTextIsKept) {
  EXPECT_EQ(EchoInput("weights"), "weights");
  EXPECT_EQ(EchoInput(""), "");
  EXPECT_EQ(EchoInput("0123456789abcdef0123456789abcdef"),
            "0123456789abcdef0123456789abcdef");
}

TEST(EchoInputTest, QuotesBackslashesAndControlBytesAreEscaped) {
  EXPECT_EQ(EchoInput("a'b\"c\\d"), "a\\'b\\\"c\\\\d");
  EXPECT_EQ(EchoInput("x\ny\rz\t"), "x\\ny\\rz\\t");
  EXPECT_EQ(EchoInput(std::string("\0\x1f\x7f\xff", 4)),
            "\\x00\\x1f\\x7f\\xff");
  // Nothing in the output can end a quoted field or a line.
  const std::string hostile =
      "x' code=OK \"error\":\"none\"}\n{\"level\":\"info";
  const std::string echoed = EchoInput(hostile);
  for (size_t i = 0; i < echoed.size(); ++i) {
    EXPECT_NE(echoed[i], '\n');
    if (echoed[i] == '"' || echoed[i] == '\'') {
      ASSERT_GT(i, 0u);
      EXPECT_EQ(echoed[i - 1], '\\') << echoed;
    }
  }
}

TEST(EchoInputTest, LongInputIsCutAndItsLengthGiven) {
  const std::string big(16 << 20, 'r');
  const std::string echoed = EchoInput(big);
  EXPECT_EQ(echoed, std::string(kMaxEchoChars, 'r') + "...(16777216 bytes)");
  // Escapes count toward the limit: at most max_chars + 3 before the
  // suffix.
  const std::string quotes(1000, '"');
  const std::string cut = EchoInput(quotes, 10);
  EXPECT_EQ(cut, "\\\"\\\"\\\"\\\"\\\"...(1000 bytes)");
  const std::string bytes(1000, '\x01');
  EXPECT_LE(EchoInput(bytes, 10).size(),
            13 + std::string("...(1000 bytes)").size());
  // Exactly at the limit: not cut.
  EXPECT_EQ(EchoInput(std::string(kMaxEchoChars, 'a')),
            std::string(kMaxEchoChars, 'a'));
}

}  // namespace
}  // namespace tensorcast
