#include "server/core/flags.h"

#include <gtest/gtest.h>

namespace tensorcast {
namespace {

TEST(FlagSetTest, ParsesEveryKindAndPositionals) {
  std::string listen = "127.0.0.1:50051";
  int64_t ttl = 0, limit = 0;
  double grace = 10;
  bool force = false;
  FlagSet flags("usage");
  flags.String("listen", &listen, "where");
  flags.Int("default-ttl", &ttl, "ttl");
  flags.Size("memory-limit", &limit, "limit");
  flags.Double("grace", &grace, "grace");
  flags.Bool("force", &force, "force");
  ASSERT_TRUE(flags
                  .Parse({"get", "--listen=0.0.0.0:1", "--default-ttl", "30",
                          "--memory-limit=2GiB", "--grace=0.5", "--force",
                          "ref", "--", "--not-a-flag"})
                  .ok());
  EXPECT_EQ(listen, "0.0.0.0:1");
  EXPECT_EQ(ttl, 30);
  EXPECT_EQ(limit, int64_t{2} << 30);
  EXPECT_DOUBLE_EQ(grace, 0.5);
  EXPECT_TRUE(force);
  EXPECT_EQ(flags.positional(),
            (std::vector<std::string>{"get", "ref", "--not-a-flag"}));
  EXPECT_FALSE(flags.help_requested());
}

TEST(FlagSetTest, RejectsUnknownFlagsAndBadValues) {
  int64_t n = 0;
  bool b = false;
  FlagSet flags("usage");
  flags.Int("n", &n, "n");
  flags.Bool("b", &b, "b");
  EXPECT_EQ(flags.Parse({"--nope=1"}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(flags.Parse({"--n=abc"}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(flags.Parse({"--n"}).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(flags.Parse({"--b=maybe"}).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_NE(flags.Parse({"--nope"}).message().find("--nope"),
            absl::string_view::npos);
}

TEST(FlagSetTest, HelpAndUsage) {
  int64_t n = 7;
  FlagSet flags("tool: does things");
  flags.Int("count", &n, "how many");
  ASSERT_TRUE(flags.Parse({"--help"}).ok());
  EXPECT_TRUE(flags.help_requested());
  std::string usage = flags.Usage();
  EXPECT_NE(usage.find("tool: does things"), std::string::npos);
  EXPECT_NE(usage.find("--count=VALUE"), std::string::npos);
  EXPECT_NE(usage.find("(default 7)"), std::string::npos);
}

}  // namespace
}  // namespace tensorcast
