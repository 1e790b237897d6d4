// Test-only helpers for ops tests that use NumPy as the reference: a scratch
// directory, running a Python script with TENSORCAST_PYTHON, reading the raw
// files it writes. Not thread-safe; for gtest bodies only.
#ifndef TENSORCAST_SERVER_OPS_PYTHON_TEST_UTIL_H_
#define TENSORCAST_SERVER_OPS_PYTHON_TEST_UTIL_H_

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace tensorcast::testing_util {

// A fresh directory under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "tensorcast_ops_XXXXXX")
            .string();
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Empty if the directory could not be made.
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

inline std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// Writes `script` to dir/name and runs it with TENSORCAST_PYTHON, passing
// dir as its only argument. Any failure -- no such python, a missing
// module, a non-zero exit -- is an error that says how to fix it: the
// reference is required, so tests FAIL rather than skip without it.
inline absl::Status RunPythonScript(const std::string& dir,
                                    const std::string& name,
                                    const std::string& script) {
  const std::string python = TENSORCAST_PYTHON;
  const std::string hint = absl::StrCat(
      "the NumPy reference needs TENSORCAST_PYTHON (", python,
      ") with numpy 2.x and ml_dtypes: run `make setup`, or configure with "
      "-DTENSORCAST_PYTHON=/path/to/python");
  if (dir.empty()) return absl::InternalError("no temp directory");
  if (!std::filesystem::exists(python)) {
    return absl::FailedPreconditionError(
        absl::StrCat(python, " does not exist; ", hint));
  }
  const std::string path = dir + "/" + name;
  {
    std::ofstream f(path);
    f << script;
    if (!f) return absl::InternalError("cannot write " + path);
  }
  const std::string command =
      absl::StrCat(Quote(python), " ", Quote(path), " ", Quote(dir), " 2>&1");
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return absl::InternalError("popen failed: " + command);
  std::string output;
  char buf[4096];
  size_t got;
  while ((got = fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, got);
  const int rc = pclose(pipe);
  if (rc != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        command, " failed (status ", rc, "): ", output, "\n", hint));
  }
  return absl::OkStatus();
}

inline absl::StatusOr<std::vector<unsigned char>> ReadBytes(
    const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return absl::NotFoundError("cannot read " + path);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(f), {});
}

}  // namespace tensorcast::testing_util

#endif  // TENSORCAST_SERVER_OPS_PYTHON_TEST_UTIL_H_
