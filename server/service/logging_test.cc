#include "server/service/logging.h"

#include <gtest/gtest.h>
#include <spdlog/details/log_msg.h>

#include <chrono>
#include <string>

namespace tensorcast {
namespace {

std::string Json(absl::string_view text) {
  std::string out;
  AppendJsonString(text, &out);
  return out;
}

TEST(LoggingTest, JsonStringsAreEscaped) {
  EXPECT_EQ(Json("plain"), "\"plain\"");
  EXPECT_EQ(Json("say \"hi\"\\now"), R"("say \"hi\"\\now")");
  EXPECT_EQ(Json("a\nb\rc\td"), R"("a\nb\rc\td")");
  EXPECT_EQ(Json(absl::string_view("\x01\x1f\0", 3)),
            R"("\u0001\u001f\u0000")");
  EXPECT_EQ(Json("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");  // valid UTF-8
  // Not UTF-8: a stray continuation, a truncated sequence, an overlong
  // encoding, a surrogate, and 0xff.
  EXPECT_EQ(Json("\x80"), R"("\ufffd")");
  EXPECT_EQ(Json("\xe2\x82"), R"("\ufffd\ufffd")");
  EXPECT_EQ(Json("\xc0\xaf"), R"("\ufffd\ufffd")");
  EXPECT_EQ(Json("\xed\xa0\x80"), R"("\ufffd\ufffd\ufffd")");
  EXPECT_EQ(Json("a\xff"), R"("a\ufffd")");
}

std::string Format(spdlog::formatter& formatter,
                   spdlog::level::level_enum level, absl::string_view text) {
  spdlog::details::log_msg msg("tensorcast", level,
                               spdlog::string_view_t(text.data(), text.size()));
  // 2026-01-02T03:04:05.678Z
  msg.time = spdlog::log_clock::time_point(
      std::chrono::milliseconds(int64_t{1767323045678}));
  spdlog::memory_buf_t buf;
  formatter.format(msg, buf);
  return std::string(buf.data(), buf.size());
}

TEST(LoggingTest, JsonLinesCarryTimeLevelMessageAndFields) {
  std::unique_ptr<spdlog::formatter> json = NewJsonLogFormatter();
  EXPECT_EQ(Format(*json, spdlog::level::info, "hello \"there\"\n"),
            "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"info\","
            "\"msg\":\"hello \\\"there\\\"\\n\"}\n");
  {
    ScopedLogFields fields(
        {{"method", "Put"}, {"code", "OK"}, {"ms", "1.250", /*number=*/true}});
    EXPECT_EQ(Format(*json, spdlog::level::debug, "rpc"),
              "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"debug\","
              "\"msg\":\"rpc\",\"method\":\"Put\",\"code\":\"OK\","
              "\"ms\":1.250}\n");
    {
      ScopedLogFields inner(std::vector<LogField>{{"peer", "ipv4:1.2.3.4:5"}});
      EXPECT_NE(Format(*json, spdlog::level::warn, "x")
                    .find("\"level\":\"warning\",\"msg\":\"x\",\"peer\":"),
                std::string::npos);
    }
    EXPECT_NE(Format(*json, spdlog::level::info, "x").find("\"method\""),
              std::string::npos);
  }
  EXPECT_EQ(Format(*json, spdlog::level::info, "x").find("\"method\""),
            std::string::npos);
}

TEST(LoggingTest, TextLinesStayOneLine) {
  std::unique_ptr<spdlog::formatter> text = NewTextLogFormatter();
  std::string line = Format(*text, spdlog::level::info, "a\nb\x01");
  EXPECT_NE(line.find(" info a\\nb\\x01\n"), std::string::npos) << line;
  EXPECT_EQ(line.find('\n'), line.size() - 1);
}

TEST(LoggingTest, ConfigureLoggingTakesTextOrJson) {
  EXPECT_TRUE(ConfigureLogging("text").ok());
  EXPECT_TRUE(ConfigureLogging("json").ok());
  EXPECT_EQ(ConfigureLogging("xml").code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tensorcast
