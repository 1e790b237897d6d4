// Replays tests/fuzz through the fuzz targets' entry functions in the
// ordinary build: every seed in corpus/<target>/ and every input a fuzzer
// once crashed on, saved in regressions/<target>/. An entry aborts when an
// invariant fails, so a failure here is a crash of this test; the file being
// replayed is printed first.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/fuzz/fuzz_targets.h"
#include "tests/support/test_support.h"

namespace tensorcast::fuzz {
namespace {

namespace fs = std::filesystem;

struct Target {
  const char* name;
  int (*entry)(const uint8_t*, size_t);
};

const Target kTargets[] = {
    {"npy", FuzzNpy},          {"put_header", FuzzPutHeader}, {"rpc", FuzzRpc},
    {"shm", FuzzSharedMemory}, {"http", FuzzHttpRequest},
};

// The files in TENSORCAST_FUZZ_DIR/<kind>/<target>, sorted; none if the
// folder does not exist.
std::vector<fs::path> Inputs(const std::string& kind, const char* target) {
  std::vector<fs::path> out;
  const fs::path dir = fs::path(TENSORCAST_FUZZ_DIR) / kind / target;
  if (!fs::is_directory(dir)) return out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().filename().string()[0] != '.') {
      out.push_back(e.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

int Replay(const std::string& kind, const Target& target) {
  int n = 0;
  for (const fs::path& path : Inputs(kind, target.name)) {
    absl::StatusOr<std::string> bytes = testing::ReadFile(path.string());
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    if (!bytes.ok()) continue;
    std::fprintf(stderr, "replaying %s\n", path.string().c_str());
    target.entry(reinterpret_cast<const uint8_t*>(bytes->data()),
                 bytes->size());
    ++n;
  }
  return n;
}

class FuzzReplayTest : public ::testing::TestWithParam<Target> {};

TEST_P(FuzzReplayTest, SeedCorpus) {
  // Every target has seeds: an empty folder would mean a lost corpus.
  EXPECT_GT(Replay("corpus", GetParam()), 0);
}

TEST_P(FuzzReplayTest, SavedCrashes) { Replay("regressions", GetParam()); }

INSTANTIATE_TEST_SUITE_P(Targets, FuzzReplayTest, ::testing::ValuesIn(kTargets),
                         [](const ::testing::TestParamInfo<Target>& info) {
                           return std::string(info.param.name);
                         });

// The rpc target's server goes before the process's exit does.
class StopServer : public ::testing::Environment {
 public:
  void TearDown() override { ShutdownRpcFuzzer(); }
};
const ::testing::Environment* const kStopServer =
    ::testing::AddGlobalTestEnvironment(new StopServer);

}  // namespace
}  // namespace tensorcast::fuzz
