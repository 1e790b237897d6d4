// The `tensorcast` CLI against a real server: handles on stdout, "CODE:
// message" on stderr with a non-zero exit, files NumPy reads back.
#include <gtest/gtest.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

std::string Handle(const CommandResult& r) {
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string h(absl::StripAsciiWhitespace(r.out));
  EXPECT_EQ(h.size(), 32u) << "stdout: " << r.out;
  return h;
}

class CliTest : public ::testing::Test {
 protected:
  CommandResult Cli(const std::vector<std::string>& args) {
    return RunCli(server_.address(), args);
  }
  ServerProcess server_;
  TempDir dir_;
};

TEST_F(CliTest, PutGetRoundTripReadByNumPy) {
  RunPython(R"(
import numpy as np, sys
np.save(sys.argv[1] + '/a.npy', np.arange(12, dtype=np.float32).reshape(3, 4) / 3)
)",
            {dir_.path()});
  std::string h = Handle(Cli({"put", dir_.File("a.npy"), "--name=a"}));
  ASSERT_EQ(Cli({"get", "a", "-o", dir_.File("b.npy")}).exit_code, 0);
  ASSERT_EQ(
      Cli({"get", h, "-o", dir_.File("c.npy"), "--dtype=float16"}).exit_code,
      0);
  CommandResult check = RunPython(R"(
import numpy as np, sys
d = sys.argv[1]
a = np.load(d + '/a.npy')
assert np.array_equal(np.load(d + '/b.npy'), a)
c = np.load(d + '/c.npy')
assert c.dtype == np.float16 and np.array_equal(c, a.astype(np.float16))
print('ok')
)",
                                  {dir_.path()});
  EXPECT_EQ(check.out, "ok\n");
  // -o - writes the .npy to stdout.
  CommandResult out = Cli({"get", "a", "-o", "-"});
  ASSERT_EQ(out.exit_code, 0);
  EXPECT_EQ(out.out, ReadFile(dir_.File("b.npy")).value_or(""));
}

TEST_F(CliTest, CreateToDetachInfoLsStatsRm) {
  std::string t = Handle(Cli({"create", "--dtype=float64", "--shape=2,3",
                              "--arange", "--requires-grad"}));
  CommandResult refused = Cli({"get", t, "-o", dir_.File("x.npy")});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_EQ(refused.err,
            "FAILED_PRECONDITION: Can't call numpy() on Tensor that requires "
            "grad. Use tensor.detach().numpy() instead.\n");
  EXPECT_EQ(Cli({"get", t, "-o", dir_.File("x.npy"), "--force"}).exit_code, 0);
  std::string d = Handle(Cli({"detach", t}));
  std::string i = Handle(Cli({"to", d, "--dtype=int32"}));
  CommandResult info = Cli({"info", i, "--json"});
  ASSERT_EQ(info.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(info.out, "\"dtype\": \"DTYPE_INT32\""))
      << info.out;
  EXPECT_TRUE(absl::StrContains(info.out, "\"requires_grad\": false"));
  CommandResult human = Cli({"info", i});
  EXPECT_TRUE(absl::StrContains(human.out, "int32")) << human.out;
  EXPECT_TRUE(absl::StrContains(human.out, "(2, 3)")) << human.out;
  CommandResult ls = Cli({"ls"});
  EXPECT_TRUE(absl::StrContains(ls.out, t) && absl::StrContains(ls.out, d) &&
              absl::StrContains(ls.out, i))
      << ls.out;
  CommandResult stats = Cli({"stats", "--json"});
  EXPECT_TRUE(absl::StrContains(stats.out, "\"allocated_bytes\"")) << stats.out;
  EXPECT_EQ(Cli({"rm", t, d, i}).exit_code, 0);
  EXPECT_EQ(Cli({"ls", "--json"}).out.find(t), std::string::npos);
  EXPECT_EQ(Cli({"health"}).exit_code, 0);
}

// Every --json prints integers as JSON numbers and bools as bools (not the
// strings protobuf's JSON mapping makes of 64-bit integers), so that a
// script's `.allocated_bytes > 1000` compares numbers. Read by Python's json.
TEST_F(CliTest, JsonNumbersAreNumbers) {
  std::string t = Handle(Cli({"create", "--dtype=float32", "--shape=512,3",
                              "--ones", "--requires-grad", "--name=j"}));
  CommandResult info = Cli({"info", "j", "--json"});
  CommandResult ls = Cli({"ls", "--json"});
  CommandResult stats = Cli({"stats", "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  ASSERT_EQ(ls.exit_code, 0) << ls.err;
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  CommandResult check = RunPython(R"(
import json, sys
info, ls, stats = (json.loads(a) for a in sys.argv[1:4])
handle = sys.argv[4]

def no_quoted_numbers(value, where):
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in ('handle', 'name', 'version', 'description'):
                no_quoted_numbers(v, where + '.' + k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            no_quoted_numbers(v, '%s[%d]' % (where, i))
    else:
        assert not (isinstance(value, str) and value.lstrip('-').isdigit()),             (where, value)

for name, doc in (('info', info), ('ls', ls), ('stats', stats)):
    no_quoted_numbers(doc, name)

assert info['handle'] == handle and info['name'] == 'j', info
for key in ('nbytes', 'numel', 'storage_offset', 'storage_bytes',
            'expires_at_unix_s', 'created_at_unix_s'):
    assert type(info[key]) is int, (key, info[key])
assert info['nbytes'] == 512 * 3 * 4 and info['numel'] == 1536, info
assert info['shape'] == [512, 3] and info['strides'] == [3, 1], info
assert info['created_at_unix_s'] > 1_600_000_000, info
assert info['requires_grad'] is True and info['is_contiguous'] is True, info
assert info['dtype'] == 'DTYPE_FLOAT32', info

assert [t for t in ls['tensors'] if t['handle'] == handle] == [info], ls

assert type(stats['tensors']) is int and stats['tensors'] == 1, stats
assert type(stats['active_streams']) is int, stats
assert type(stats['cuda_available']) is bool, stats
[cpu] = [d for d in stats['devices'] if d['device'] == 'cpu']
for key, value in cpu.items():
    if key not in ('device', 'description'):
        assert type(value) is int, (key, value)
# What a script does with it: numbers compare as numbers.
assert cpu['allocated_bytes'] >= info['nbytes'] > 1000, cpu
assert cpu['peak_allocated_bytes'] >= cpu['allocated_bytes'], cpu
print('ok')
)",
                                  {info.out, ls.out, stats.out, t});
  EXPECT_EQ(check.out, "ok\n") << info.out << ls.out << stats.out;
  EXPECT_EQ(Cli({"rm", t}).exit_code, 0);
}

TEST_F(CliTest, ErrorsAreCodeColonMessage) {
  CommandResult r = Cli({"info", "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "NOT_FOUND: no tensor 'nope'\n");
  r = Cli({"create", "--shape=2", "--zeros", "--device=cuda"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(r.err, "FAILED_PRECONDITION: ")) << r.err;
  r = Cli({"put", dir_.File("missing.npy")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(r.err, "NOT_FOUND: cannot open")) << r.err;
  // Usage errors exit 2.
  EXPECT_EQ(Cli({"frobnicate"}).exit_code, 2);
  EXPECT_EQ(Cli({"create", "--shape=2"}).exit_code, 2);
  EXPECT_EQ(Cli({"info", "x", "--zeros"}).exit_code, 2);
  EXPECT_EQ(Cli({"create", "--dtype=float33", "--zeros"}).exit_code, 2);
  // Nothing left behind by the failures, and no stray .part file.
  EXPECT_EQ(Cli({"get", "nope", "-o", dir_.File("n.npy")}).exit_code, 1);
  // An existing file named like a temporary is not touched either.
  WriteFile(dir_.File("m.npy.part"), "mine");
  EXPECT_EQ(Cli({"get", "nope", "-o", dir_.File("m.npy")}).exit_code, 1);
  EXPECT_EQ(ReadFile(dir_.File("m.npy.part")).value_or(""), "mine");
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
    names.push_back(e.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"m.npy.part"});
  EXPECT_EQ(CpuAllocatedWhenSettled(server_.client()), 0);
}

TEST(CliNoServerTest, UnreachableServerIsUnavailable) {
  CommandResult r = RunCli("127.0.0.1:1", {"--timeout=5", "health"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StartsWith(r.err, "UNAVAILABLE: ")) << r.err;
}

}  // namespace
}  // namespace tensorcast::testing
