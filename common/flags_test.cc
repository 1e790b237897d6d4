#include "common/flags.h"

#include <gtest/gtest.h>
#include <stdlib.h>

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

// Sets environment variables for one test and removes them after. The
// prefix is this test's own, so nothing else in the environment interferes.
class ScopedEnv {
 public:
  ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> vars) {
    for (const auto& [name, value] : vars) {
      setenv(name, value, 1);
      names_.push_back(name);
    }
  }
  ~ScopedEnv() {
    for (const std::string& name : names_) unsetenv(name.c_str());
  }

 private:
  std::vector<std::string> names_;
};

TEST(FlagSetTest, EnvironmentSetsFlagsAndTheCommandLineWins) {
  ScopedEnv env({{"TCFLAGTEST_LISTEN", "0.0.0.0:7"},
                 {"TCFLAGTEST_MEMORY_LIMIT", "1MiB"},
                 {"TCFLAGTEST_SHARED_MEMORY", "true"},
                 {"TCFLAGTEST_GRACE", "2.5"},
                 {"TCFLAGTEST_DEFAULT_TTL", "9"}});
  std::string listen = "127.0.0.1:50051";
  int64_t ttl = 0, limit = 0;
  double grace = 10;
  bool shm = false;
  FlagSet flags("usage");
  flags.set_env_prefix("TCFLAGTEST_");
  flags.String("listen", &listen, "where");
  flags.Int("default-ttl", &ttl, "ttl");
  flags.Size("memory-limit", &limit, "limit");
  flags.Double("grace", &grace, "grace");
  flags.Bool("shared-memory", &shm, "shm");
  ASSERT_TRUE(flags.Parse({"--default-ttl=3", "pos"}).ok());
  EXPECT_EQ(listen, "0.0.0.0:7");
  EXPECT_EQ(limit, 1 << 20);
  EXPECT_TRUE(shm);
  EXPECT_DOUBLE_EQ(grace, 2.5);
  EXPECT_EQ(ttl, 3);  // the flag, not TCFLAGTEST_DEFAULT_TTL
  EXPECT_EQ(flags.positional(), std::vector<std::string>{"pos"});
  EXPECT_EQ(flags.set_flags(), std::vector<std::string>{"default-ttl"});
  EXPECT_EQ(flags.env_flags(),
            (std::vector<std::string>{"listen", "memory-limit", "grace",
                                      "shared-memory"}));
  EXPECT_FALSE(flags.WasSet("listen"));
}

TEST(FlagSetTest, EnvironmentIsIgnoredWithoutAPrefixAndWhenEmpty) {
  ScopedEnv env({{"TCFLAGTEST_COUNT", "5"}, {"TCFLAGTEST_NAME", ""}});
  int64_t count = 1;
  std::string name = "default";
  FlagSet plain("usage");
  plain.Int("count", &count, "how many");
  ASSERT_TRUE(plain.Parse({}).ok());
  EXPECT_EQ(count, 1);
  EXPECT_EQ(plain.EnvName("count"), "");

  FlagSet prefixed("usage");
  prefixed.set_env_prefix("TCFLAGTEST_");
  prefixed.String("name", &name, "a name");
  ASSERT_TRUE(prefixed.Parse({}).ok());
  EXPECT_EQ(name, "default");  // empty counts as unset
  EXPECT_TRUE(prefixed.env_flags().empty());
}

TEST(FlagSetTest, BadEnvironmentValuesNameTheVariable) {
  ScopedEnv env({{"TCFLAGTEST_COUNT", "many"}, {"TCFLAGTEST_ON", "maybe"}});
  int64_t count = 0;
  bool on = false;
  FlagSet flags("usage");
  flags.set_env_prefix("TCFLAGTEST_");
  flags.Int("count", &count, "how many");
  absl::Status s = flags.Parse({});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("TCFLAGTEST_COUNT=many"), absl::string_view::npos)
      << s;
  // A good flag on the command line means the bad variable is never read.
  EXPECT_TRUE(flags.Parse({"--count=4"}).ok());
  EXPECT_EQ(count, 4);

  FlagSet bools("usage");
  bools.set_env_prefix("TCFLAGTEST_");
  bools.Bool("on", &on, "switch");
  EXPECT_EQ(bools.Parse({}).code(), absl::StatusCode::kInvalidArgument);
}

TEST(FlagSetTest, UsageNamesTheVariables) {
  int64_t limit = 0;
  FlagSet flags("tool");
  flags.set_env_prefix("TENSORCAST_");
  flags.Size("memory-limit", &limit, "cap");
  EXPECT_EQ(flags.EnvName("memory-limit"), "TENSORCAST_MEMORY_LIMIT");
  std::string usage = flags.Usage();
  EXPECT_NE(usage.find("[$TENSORCAST_MEMORY_LIMIT]"), std::string::npos)
      << usage;
  EXPECT_NE(usage.find("command line wins"), std::string::npos) << usage;
}

}  // namespace
}  // namespace tensorcast
