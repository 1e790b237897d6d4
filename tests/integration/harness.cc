#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace tensorcast::testing {
namespace {

// Where tensorcast-server and tensorcast are: $TENSORCAST_BIN_DIR when set
// and not empty (binaries carried to another machine, e.g. the GPU bundle
// that tests/gpu/run.sh runs), else the build's bin directory.
std::string BinDir() {
  const char* env = std::getenv("TENSORCAST_BIN_DIR");
  if (env != nullptr && *env != '\0') return env;
  return TENSORCAST_BIN_DIR;
}

}  // namespace

ServerProcess::ServerProcess(std::vector<std::string> flags,
                             ClientOptions options) {
  std::string port_file = dir_.File("port");
  std::vector<std::string> argv = {
      BinDir() + "/tensorcast-server", "--listen=127.0.0.1:0",
      "--port-file=" + port_file, "--log-level=debug", "--shutdown-grace=5"};
  // The CPU suites expect a cpu-only server even on a machine with a GPU:
  // only a test that asks for other devices gets them.
  bool devices_given = false;
  for (const std::string& f : flags) {
    devices_given |= f.rfind("--devices", 0) == 0;
  }
  if (!devices_given) argv.push_back("--devices=cpu");
  argv.insert(argv.end(), flags.begin(), flags.end());
  pid_ = SpawnProcess(argv, dir_.File("server.out"), dir_.File("server.log"));
  if (pid_ < 0) return;
  for (int i = 0; i < 300; ++i) {  // up to 30 s under sanitizers
    std::string port = ReadFile(port_file).value_or("");
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
  client_ = Client::Connect(address_, std::move(options));
}

int ServerProcess::Stop() {
  if (pid_ < 0) return -1;
  kill(pid_, SIGTERM);
  int code = WaitForExit(pid_);
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
  return ReadFile(dir_.File("server.log")).value_or("") +
         ReadFile(dir_.File("server.out")).value_or("");
}

std::string ServerProcess::Stdout() const {
  return ReadFile(dir_.File("server.out")).value_or("");
}

TestCertificates MakeTestCertificates(const std::string& dir) {
  TestCertificates c;
  auto path = [&](const std::string& name) { return dir + "/" + name; };
  auto openssl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {"/usr/bin/env", "openssl"};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = RunCommand(argv);
    EXPECT_EQ(r.exit_code, 0) << "openssl " << args[0] << ": " << r.err;
  };
  // P-256 keys: quick to make.
  const std::vector<std::string> new_key = {
      "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"};
  auto make_ca = [&](const std::string& name, const std::string& cn) {
    std::vector<std::string> args = {"req", "-x509"};
    args.insert(args.end(), new_key.begin(), new_key.end());
    args.insert(args.end(),
                {"-keyout", path(name + ".key"), "-out", path(name + ".pem"),
                 "-days", "2", "-subj", "/CN=" + cn, "-addext",
                 "basicConstraints=critical,CA:TRUE", "-addext",
                 "keyUsage=critical,keyCertSign,cRLSign"});
    openssl(args);
  };
  // A key and a certificate for it signed by CA `ca` with extensions `ext`.
  int serial = 1;
  auto make_leaf = [&](const std::string& name, const std::string& ca,
                       const std::string& cn, const std::string& ext) {
    std::vector<std::string> args = {"req"};
    args.insert(args.end(), new_key.begin(), new_key.end());
    args.insert(args.end(), {"-keyout", path(name + ".key"), "-out",
                             path(name + ".csr"), "-subj", "/CN=" + cn});
    openssl(args);
    WriteFile(path(name + ".ext"), ext);
    openssl({"x509", "-req", "-in", path(name + ".csr"), "-CA",
             path(ca + ".pem"), "-CAkey", path(ca + ".key"), "-set_serial",
             std::to_string(serial++), "-days", "2", "-extfile",
             path(name + ".ext"), "-out", path(name + ".pem")});
  };
  make_ca("ca", "tensorcast test CA");
  make_ca("other-ca", "unrelated test CA");
  make_leaf("server", "ca", "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "extendedKeyUsage=serverAuth\n");
  make_leaf("client", "ca", "test client", "extendedKeyUsage=clientAuth\n");
  make_leaf("other-client", "other-ca", "stranger",
            "extendedKeyUsage=clientAuth\n");
  c.ca = path("ca.pem");
  c.server_cert = path("server.pem");
  c.server_key = path("server.key");
  c.client_cert = path("client.pem");
  c.client_key = path("client.key");
  c.other_ca = path("other-ca.pem");
  c.other_client_cert = path("other-client.pem");
  c.other_client_key = path("other-client.key");
  return c;
}

CommandResult RunCli(const std::string& address,
                     const std::vector<std::string>& args) {
  std::vector<std::string> argv = {BinDir() + "/tensorcast",
                                   "--server=" + address};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv);
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

int64_t CpuAllocatedWhenSettled(Client& client, int64_t expected) {
  int64_t bytes = CpuAllocated(client);
  for (int i = 0; i < 100 && bytes != expected; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    bytes = CpuAllocated(client);
  }
  return bytes;
}

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  EXPECT_NE(port, 0) << "no free loopback port";
  return port;
}

double SumMetric(const std::string& metrics, const std::string& family,
                 const std::string& match) {
  double total = 0;
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (!absl::StartsWith(line, family + "{") &&
        !absl::StartsWith(line, family + " ")) {
      continue;
    }
    if (!match.empty() && !absl::StrContains(line, match)) continue;
    double v = 0;
    const size_t space = line.rfind(' ');
    if (absl::SimpleAtod(line.substr(space + 1), &v)) total += v;
  }
  return total;
}

LocalCluster::LocalCluster(int nodes, const std::string& dir,
                           std::vector<std::string> flags,
                           const ClientOptions& options) {
  for (int i = 0; i < nodes; ++i) {
    addresses.push_back(absl::StrCat("127.0.0.1:", FreeLoopbackPort()));
  }
  for (int i = 0; i < nodes; ++i) {
    const std::string metrics_file =
        absl::StrCat(dir, "/cluster-metrics-port-", i);
    std::vector<std::string> argv = {absl::StrCat("--listen=", addresses[i]),
                                     absl::StrCat("--node-id=n", i),
                                     absl::StrCat("--cluster=", Servers()),
                                     "--cluster-probe-ms=200",
                                     "--metrics-listen=127.0.0.1:0",
                                     "--metrics-port-file=" + metrics_file};
    argv.insert(argv.end(), flags.begin(), flags.end());
    servers.push_back(
        std::make_unique<ServerProcess>(std::move(argv), ClientOptions{}));
    int port = 0;
    EXPECT_TRUE(absl::SimpleAtoi(ReadFile(metrics_file).value_or(""), &port))
        << "node " << i << " wrote no metrics port";
    metrics_ports.push_back(port);
  }
  // Every node's own view: a client sent to one address asks that node.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(15);
  ready_ = true;
  for (const std::string& address : addresses) {
    std::unique_ptr<Client> one = Client::Connect(address, options);
    while (one->HealthyNodes().size() < static_cast<size_t>(nodes) &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (one->HealthyNodes().size() < static_cast<size_t>(nodes)) {
      ADD_FAILURE() << address << " sees " << one->HealthyNodes().size()
                    << " of " << nodes << " nodes healthy";
      ready_ = false;
    }
  }
}

std::string LocalCluster::Servers() const {
  return absl::StrJoin(addresses, ",");
}

std::string LocalCluster::Scrape(int node) const {
  httplib::Client http("127.0.0.1", metrics_ports[node]);
  httplib::Result res = http.Get("/metrics");
  return res ? res->body : std::string();
}

}  // namespace tensorcast::testing
