// Test-only helpers: run a Python script with the NumPy that the build found
// (TENSORCAST_PYTHON, a venv with numpy 2.x and ml_dtypes) in a scratch
// directory, so tests compare against NumPy itself instead of committed
// blobs. Header-only; include it from *_test.cc files only.
//
// Not thread-safe (runs a child process with std::system); each TempDir
// owns its directory and removes it on destruction.
#ifndef TENSORCAST_SERVER_CORE_NUMPY_TEST_UTIL_H_
#define TENSORCAST_SERVER_CORE_NUMPY_TEST_UTIL_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#ifndef TENSORCAST_PYTHON
#error "TENSORCAST_PYTHON must be defined (tensorcast_add_test does it)"
#endif

namespace tensorcast::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents.
class TempDir {
 public:
  TempDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp",
                     "/tensorcast_test_XXXXXX");
    std::vector<char> buf(pattern.begin(), pattern.end());
    buf.push_back('\0');
    if (mkdtemp(buf.data()) != nullptr) path_ = buf.data();
  }
  ~TempDir() {
    if (!path_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(path_, ignored);
    }
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const {
    return absl::StrCat(path_, "/", name);
  }

 private:
  std::string path_;
};

inline absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Runs `script` with TENSORCAST_PYTHON, working directory `dir`; returns
// its stdout. FAILED_PRECONDITION, with what to do, when the interpreter or
// NumPy is missing; INTERNAL with the script's stderr when it fails.
inline absl::StatusOr<std::string> RunNumPyScript(const std::string& script,
                                                  const TempDir& dir) {
  const std::string python = TENSORCAST_PYTHON;
  if (!dir.ok()) return absl::InternalError("could not create a temp dir");
  if (access(python.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the Python with NumPy that tests compare against is missing: ", python,
        " is not executable. Run `make setup` (it creates .venv with numpy "
        "and ml_dtypes) or configure with "
        "-DTENSORCAST_PYTHON=/path/to/python"));
  }
  {
    std::ofstream out(dir.File("script.py"), std::ios::binary);
    out << script;
  }
  std::string command = absl::StrCat("cd '", dir.path(), "' && '", python,
                                     "' script.py > stdout.txt 2> stderr.txt");
  int rc = std::system(command.c_str());
  if (rc != 0) {
    absl::StatusOr<std::string> err = ReadFile(dir.File("stderr.txt"));
    std::string text = err.ok() ? *err : "";
    if (text.find("No module named") != std::string::npos) {
      return absl::FailedPreconditionError(absl::StrCat(
          python, " lacks a module the tests need (numpy 2.x, ml_dtypes); ",
          "run `make setup`. Python said: ", text));
    }
    return absl::InternalError(
        absl::StrCat("python script failed (rc ", rc, "): ", text));
  }
  return ReadFile(dir.File("stdout.txt"));
}

}  // namespace tensorcast::testing

#endif  // TENSORCAST_SERVER_CORE_NUMPY_TEST_UTIL_H_
