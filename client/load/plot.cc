#include "client/load/plot.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

extern char** environ;

namespace tensorcast::load {

namespace {

std::string FindScript() {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path() / "../../bench/plot_load.py");
    candidates.push_back(exe.parent_path() /
                         "../share/tensorcast/plot_load.py");
  }
#ifdef TENSORCAST_LOAD_SOURCE_DIR
  candidates.insert(
      candidates.begin() + (candidates.empty() ? 0 : 1),
      fs::path(TENSORCAST_LOAD_SOURCE_DIR) / "bench/plot_load.py");
#endif
  for (const fs::path& p : candidates) {
    if (fs::is_regular_file(p, ec)) return fs::weakly_canonical(p, ec).string();
  }
  return "";
}

std::string FindPython() {
  const char* env = std::getenv("TENSORCAST_PYTHON");
  if (env != nullptr && *env != '\0') return env;
#ifdef TENSORCAST_LOAD_PYTHON
  if (access(TENSORCAST_LOAD_PYTHON, X_OK) == 0) return TENSORCAST_LOAD_PYTHON;
#endif
  return "python3";
}

}  // namespace

int RunPlot(const std::string& json_path, const std::string& out_path) {
  if (access(json_path.c_str(), R_OK) != 0) {
    std::fprintf(stderr, "tensorcast-load: cannot read %s: %s\n",
                 json_path.c_str(), std::strerror(errno));
    return 2;
  }
  const std::string script = FindScript();
  if (script.empty()) {
    std::fprintf(stderr,
                 "tensorcast-load: bench/plot_load.py not found beside this "
                 "binary or in its source tree\n");
    return 2;
  }
  const std::string python = FindPython();
  std::vector<std::string> args = {python, script, json_path, "--out",
                                   out_path};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  const int rc = posix_spawnp(&pid, python.c_str(), nullptr, nullptr,
                              argv.data(), environ);
  if (rc != 0) {
    std::fprintf(stderr, "tensorcast-load: cannot run %s: %s\n", python.c_str(),
                 std::strerror(rc));
    return 2;
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  std::fprintf(stderr, "tensorcast-load: %s was killed by signal %d\n",
               script.c_str(), WTERMSIG(status));
  return 1;
}

}  // namespace tensorcast::load
