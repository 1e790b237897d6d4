// Test harness for integration tests: starts the real tensorcast-server as a
// child process on a free loopback port, connects a Client, runs the CLI and
// Python (NumPy) as subprocesses. Each ServerProcess is owned by one test.
#ifndef TENSORCAST_TESTS_INTEGRATION_HARNESS_H_
#define TENSORCAST_TESTS_INTEGRATION_HARNESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "client/cpp/client.h"

namespace tensorcast::testing {

// A fresh temporary directory, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

class ServerProcess {
 public:
  // Starts tensorcast-server with --listen=127.0.0.1:0 and the extra flags;
  // waits until it serves. Fails the test (ADD_FAILURE) if it does not.
  explicit ServerProcess(std::vector<std::string> flags = {});
  // Stops the server (SIGTERM) and checks it exited 0.
  ~ServerProcess();

  const std::string& address() const { return address_; }
  Client& client() { return *client_; }
  pid_t pid() const { return pid_; }
  // Sends SIGTERM and waits; returns the exit status (or -signal).
  int Stop();
  // The server's log so far.
  std::string Log() const;

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  std::string address_;
  std::unique_ptr<Client> client_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};
// Runs argv (no shell) and captures stdout and stderr.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         const std::string& stdin_text = "");
// `tensorcast --server=ADDRESS args...`.
CommandResult RunCli(const std::string& address,
                     const std::vector<std::string>& args);
// Runs a Python script (with NumPy) with the given argv; fails the test if
// the interpreter is missing.
CommandResult RunPython(const std::string& script,
                        const std::vector<std::string>& args = {});

// The pool's allocated bytes on cpu, for "nothing left behind" checks.
int64_t CpuAllocated(Client& client);

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& bytes);

}  // namespace tensorcast::testing

#endif  // TENSORCAST_TESTS_INTEGRATION_HARNESS_H_
