#include "tests/support/test_support.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

#ifndef TENSORCAST_PYTHON
#error "TENSORCAST_PYTHON must be defined (tensorcast_test_support does it)"
#endif

extern char** environ;

namespace tensorcast::testing {

TempDir::TempDir() {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "tensorcast-test-XXXXXX")
          .string();
  if (mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp(" << pattern
                  << ") failed: " << std::strerror(errno);
    return;
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

std::string TempDir::File(const std::string& name) const {
  return absl::StrCat(path_, "/", name);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

absl::StatusOr<std::vector<unsigned char>> ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

pid_t SpawnProcess(const std::vector<std::string>& argv,
                   const std::string& stdout_path,
                   const std::string& stderr_path,
                   const std::string& stdin_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(
      &actions, 0, stdin_path.empty() ? "/dev/null" : stdin_path.c_str(),
      O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, stdout_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, stderr_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const std::string& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    ADD_FAILURE() << "cannot start " << argv[0] << ": " << std::strerror(rc);
    return -1;
  }
  return pid;
}

int WaitForExit(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::string& stdin_text) {
  TempDir dir;
  std::string in_path;
  if (!stdin_text.empty()) {
    in_path = dir.File("stdin");
    WriteFile(in_path, stdin_text);
  }
  CommandResult result;
  pid_t pid = SpawnProcess(argv, dir.File("out"), dir.File("err"), in_path);
  if (pid < 0) return result;
  result.exit_code = WaitForExit(pid);
  result.out = ReadFile(dir.File("out")).value_or("");
  result.err = ReadFile(dir.File("err")).value_or("");
  return result;
}

CommandResult RunPython(const std::string& script,
                        const std::vector<std::string>& args) {
  const std::string python = TENSORCAST_PYTHON;
  const std::string fix =
      "The tests compare against NumPy: run `make setup` (it makes .venv with "
      "numpy 2.x and ml_dtypes) or configure with "
      "-DTENSORCAST_PYTHON=/path/to/python.";
  if (access(python.c_str(), X_OK) != 0) {
    ADD_FAILURE() << "TENSORCAST_PYTHON (" << python
                  << ") is not an executable file. " << fix;
    return {};
  }
  std::vector<std::string> argv = {python, "-c", script};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult result = RunCommand(argv);
  if (result.exit_code != 0) {
    const bool missing_module =
        result.err.find("No module named") != std::string::npos;
    ADD_FAILURE() << "python script failed (exit " << result.exit_code << "):\n"
                  << result.err << (missing_module ? fix : "");
  }
  return result;
}

}  // namespace tensorcast::testing
