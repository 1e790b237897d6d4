#include "tests/integration/harness.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace tensorcast::testing {

TempDir::TempDir() {
  std::string tmpl =
      (std::filesystem::temp_directory_path() / "tensorcast-test-XXXXXX")
          .string();
  char* p = mkdtemp(tmpl.data());
  if (p == nullptr) ADD_FAILURE() << "mkdtemp failed";
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

namespace {

pid_t Spawn(const std::vector<std::string>& argv, const std::string& out_path,
            const std::string& err_path, const std::string& in_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!in_path.empty()) {
    posix_spawn_file_actions_addopen(&actions, 0, in_path.c_str(), O_RDONLY, 0);
  } else {
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  }
  posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
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

int WaitExit(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return -WTERMSIG(status);
  return -1;
}

}  // namespace

ServerProcess::ServerProcess(std::vector<std::string> flags) {
  std::string port_file = dir_.File("port");
  std::vector<std::string> argv = {
      std::string(TENSORCAST_BIN_DIR) + "/tensorcast-server",
      "--listen=127.0.0.1:0", "--port-file=" + port_file, "--log-level=debug",
      "--shutdown-grace=5"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  pid_ = Spawn(argv, dir_.File("server.out"), dir_.File("server.log"), "");
  if (pid_ < 0) return;
  for (int i = 0; i < 300; ++i) {  // up to 30 s under sanitizers
    std::string port = ReadFile(port_file);
    if (!port.empty() && port.back() == '\n') {
      address_ = "127.0.0.1:" + port.substr(0, port.size() - 1);
      break;
    }
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      ADD_FAILURE() << "tensorcast-server exited early:\n" << Log();
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (address_.empty()) ADD_FAILURE() << "server did not start:\n" << Log();
  client_ = Client::Connect(address_);
}

int ServerProcess::Stop() {
  if (pid_ < 0) return -1;
  kill(pid_, SIGTERM);
  int code = WaitExit(pid_);
  pid_ = -1;
  return code;
}

ServerProcess::~ServerProcess() {
  if (pid_ >= 0) {
    int code = Stop();
    EXPECT_EQ(code, 0) << "server did not exit cleanly; log:\n" << Log();
  }
}

std::string ServerProcess::Log() const {
  return ReadFile(dir_.File("server.log")) + ReadFile(dir_.File("server.out"));
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
  pid_t pid = Spawn(argv, dir.File("out"), dir.File("err"), in_path);
  if (pid < 0) return result;
  result.exit_code = WaitExit(pid);
  result.out = ReadFile(dir.File("out"));
  result.err = ReadFile(dir.File("err"));
  return result;
}

CommandResult RunCli(const std::string& address,
                     const std::vector<std::string>& args) {
  std::vector<std::string> argv = {
      std::string(TENSORCAST_BIN_DIR) + "/tensorcast", "--server=" + address};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
}

CommandResult RunPython(const std::string& script,
                        const std::vector<std::string>& args) {
  struct stat st;
  if (stat(TENSORCAST_PYTHON, &st) != 0) {
    ADD_FAILURE() << "no Python with NumPy at " << TENSORCAST_PYTHON
                  << " (run `make setup`)";
    return {};
  }
  std::vector<std::string> argv = {TENSORCAST_PYTHON, "-c", script};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 0) << "python failed:\n" << r.err;
  return r;
}

int64_t CpuAllocated(Client& client) {
  absl::StatusOr<v1::StatsResponse> stats = client.Stats();
  EXPECT_TRUE(stats.ok()) << stats.status();
  if (!stats.ok()) return -1;
  for (const v1::DeviceStats& d : stats->devices()) {
    if (d.device() == "cpu") return d.allocated_bytes();
  }
  return -1;
}

}  // namespace tensorcast::testing
