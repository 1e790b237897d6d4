// Test harness for integration tests: starts the real tensorcast-server as a
// child process on a free loopback port, connects a Client, runs the CLI as
// a subprocess. Each ServerProcess is owned by one test. The generic helpers
// (TempDir, RunCommand, RunPython, ReadFile...) are in test_support.h.
#ifndef TENSORCAST_TESTS_INTEGRATION_HARNESS_H_
#define TENSORCAST_TESTS_INTEGRATION_HARNESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "client/cpp/client.h"
#include "tests/support/test_support.h"

namespace tensorcast::testing {

class ServerProcess {
 public:
  // Starts tensorcast-server with --listen=127.0.0.1:0 and the extra flags
  // (a later --listen wins; the address is then 127.0.0.1 and the bound
  // port); waits until it serves. Fails the test (ADD_FAILURE) if it does
  // not. client() connects with `options` (a token, TLS).
  explicit ServerProcess(std::vector<std::string> flags = {},
                         ClientOptions options = {});
  // Stops the server (SIGTERM) and checks it exited 0.
  ~ServerProcess();

  const std::string& address() const { return address_; }
  Client& client() { return *client_; }
  // Another client of this server, e.g. with another token.
  std::unique_ptr<Client> Connect(ClientOptions options) const {
    return Client::Connect(address_, std::move(options));
  }
  pid_t pid() const { return pid_; }
  // Sends SIGTERM and waits; returns the exit status (or -signal).
  int Stop();
  // For a test that waited for the server's exit itself: forget its pid.
  void Forget() { pid_ = -1; }
  // The server's log so far.
  std::string Log() const;
  // What it wrote to stdout so far (its log lines), stderr left out.
  std::string Stdout() const;

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  std::string address_;
  std::unique_ptr<Client> client_;
};

// PEM files made with the openssl command for one test: a CA, a server
// certificate it signed for 127.0.0.1 and localhost, a client certificate
// it signed, and an unrelated CA (with its own client certificate) for the
// negative cases. Paths, and the files' text for ClientOptions.
struct TestCertificates {
  std::string ca, server_cert, server_key, client_cert, client_key;
  std::string other_ca, other_client_cert, other_client_key;
  // File contents.
  std::string Pem(const std::string& path) const {
    return ReadFile(path).value_or("");
  }
};
// Writes them into `dir`; fails the test if openssl does.
TestCertificates MakeTestCertificates(const std::string& dir);

// `tensorcast --server=ADDRESS args...`.
CommandResult RunCli(const std::string& address,
                     const std::vector<std::string>& args);

// The pool's allocated bytes on cpu, for "nothing left behind" checks.
int64_t CpuAllocated(Client& client);
// The same once it equals `expected`, or after 5 s: a Fetch's last chunks
// reference storage until gRPC has sent them, a moment after the client has
// them, so "nothing left behind" checks wait for that.
int64_t CpuAllocatedWhenSettled(Client& client, int64_t expected = 0);

// A free TCP port on 127.0.0.1, bound and released: for tests that must
// name every address before any server starts (a cluster's --cluster list).
int FreeLoopbackPort();

// The sum of every sample of the Prometheus family `family` in the text
// `metrics` whose line contains `match` (all samples when it is empty).
double SumMetric(const std::string& metrics, const std::string& family,
                 const std::string& match = "");

// `nodes` tensorcast-server processes as one cluster on loopback: node ids
// n0, n1, ..., --cluster listing every address, a 200 ms probe, each with
// a metrics endpoint; `flags` are added to every node's command line. The
// constructor waits (15 s at most) until every node's own view, asked
// through a Client made with `options`, has all `nodes` members healthy;
// ready() says whether they got there.
class LocalCluster {
 public:
  LocalCluster(int nodes, const std::string& dir,
               std::vector<std::string> flags = {},
               const ClientOptions& options = {});

  bool ready() const { return ready_; }
  // The addresses, comma-separated: a Client or CLI --server list.
  std::string Servers() const;
  // GET /metrics of node `node` (empty if it does not answer).
  std::string Scrape(int node) const;

  std::vector<std::string> addresses;
  std::vector<std::unique_ptr<ServerProcess>> servers;
  std::vector<int> metrics_ports;

 private:
  bool ready_ = false;
};

}  // namespace tensorcast::testing

#endif  // TENSORCAST_TESTS_INTEGRATION_HARNESS_H_
