// Test-only support shared by the unit and integration tests: a scratch
// directory, whole-file reads and writes, running a command (no shell) and
// running Python with the NumPy that the build found (TENSORCAST_PYTHON, a
// venv with numpy 2.x and ml_dtypes), so tests compare against NumPy itself
// instead of committed blobs.
//
// For gtest bodies: helpers that cannot do their job record a non-fatal
// failure (ADD_FAILURE) on the running test. Not thread-safe.
#ifndef TENSORCAST_TESTS_SUPPORT_TEST_SUPPORT_H_
#define TENSORCAST_TESTS_SUPPORT_TEST_SUPPORT_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tensorcast::testing {

// A fresh directory under the system temp dir (TMPDIR or /tmp), removed with
// its contents on destruction. Fails the test if it cannot be made; path()
// is empty then.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path()/name.
  std::string File(const std::string& name) const;

 private:
  std::string path_;
};

// The whole file; NOT_FOUND if it cannot be opened.
absl::StatusOr<std::string> ReadFile(const std::string& path);
// The whole file as bytes, e.g. a raw array written by NumPy's tofile.
absl::StatusOr<std::vector<unsigned char>> ReadBytes(const std::string& path);
// Creates or truncates `path` and writes `bytes` to it.
void WriteFile(const std::string& path, const std::string& bytes);

// Starts argv[0] (a path; no shell, no PATH lookup) with stdin from
// `stdin_path` (/dev/null if empty) and stdout and stderr to the given files.
// Returns the pid, or -1 after failing the test.
pid_t SpawnProcess(const std::vector<std::string>& argv,
                   const std::string& stdout_path,
                   const std::string& stderr_path,
                   const std::string& stdin_path = "");
// Waits for `pid`; its exit code, -signal if a signal killed it, else -1.
int WaitForExit(pid_t pid);

struct CommandResult {
  int exit_code = -1;  // -signal if killed; -1 if it could not start
  std::string out;
  std::string err;
};
// Runs argv (as SpawnProcess) to completion with `stdin_text` as its input;
// captures stdout and stderr.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::string& stdin_text = "");

// Runs `TENSORCAST_PYTHON -c script args...`. Fails the test, saying how to
// fix it, when that interpreter is missing (exit_code is -1 then; the
// reference is required, so tests fail rather than skip) or when the script
// exits non-zero (with its stderr).
CommandResult RunPython(const std::string& script,
                        const std::vector<std::string>& args = {});

}  // namespace tensorcast::testing

#endif  // TENSORCAST_TESTS_SUPPORT_TEST_SUPPORT_H_
