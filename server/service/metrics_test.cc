#include "server/service/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"

namespace tensorcast {
namespace {

ServiceSnapshot TwoDevices() {
  ServiceSnapshot s;
  s.devices.resize(2);
  s.devices[0].name = "cpu";
  s.devices[0].pool.allocated_bytes = 4096;
  s.devices[0].pool.alloc_count = 3;
  s.devices[0].tensors = 2;
  s.devices[0].tensor_bytes = 4000;
  s.devices[1].name = "cuda:0";
  s.devices[1].pool.limit_bytes = 1 << 30;
  s.tensors = 2;
  s.active_streams = 1;
  s.version = "1.2.3";
  return s;
}

bool Contains(const std::string& text, const std::string& line) {
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    if (l == line) return true;
  }
  return false;
}

TEST(MetricsTest, RendersGaugesPerDevice) {
  Metrics metrics({"Put", "Fetch"});
  std::string text = metrics.Render(TwoDevices());
  EXPECT_TRUE(Contains(text, "# TYPE tensorcast_pool_allocated_bytes gauge"));
  EXPECT_TRUE(
      Contains(text, "tensorcast_pool_allocated_bytes{device=\"cpu\"} 4096"));
  EXPECT_TRUE(Contains(
      text, "tensorcast_pool_limit_bytes{device=\"cuda:0\"} 1073741824"));
  EXPECT_TRUE(
      Contains(text, "# TYPE tensorcast_pool_alloc_count_total counter"));
  EXPECT_TRUE(
      Contains(text, "tensorcast_pool_alloc_count_total{device=\"cpu\"} 3"));
  EXPECT_TRUE(Contains(text, "tensorcast_tensors_held{device=\"cpu\"} 2"));
  EXPECT_TRUE(
      Contains(text, "tensorcast_tensor_bytes_held{device=\"cpu\"} 4000"));
  EXPECT_TRUE(Contains(text, "tensorcast_active_streams 1"));
  EXPECT_TRUE(Contains(text, "tensorcast_build_info{version=\"1.2.3\"} 1"));
  // Every method has its OK series and histogram from the start; "other"
  // only once something lands there.
  EXPECT_TRUE(
      Contains(text, "tensorcast_rpcs_total{method=\"Put\",code=\"OK\"} 0"));
  EXPECT_TRUE(Contains(
      text, "tensorcast_rpc_duration_seconds_count{method=\"Fetch\"} 0"));
  EXPECT_EQ(text.find("method=\"other\""), std::string::npos);
}

TEST(MetricsTest, CountsRpcsByMethodAndCodeWithCumulativeBuckets) {
  Metrics metrics({"Put", "Fetch"});
  metrics.RecordRpc("Put", absl::StatusCode::kOk, 0.0002);
  metrics.RecordRpc("Put", absl::StatusCode::kOk, 0.001);  // on a bound
  metrics.RecordRpc("Put", absl::StatusCode::kNotFound, 100);
  metrics.RecordRpc("Mystery", absl::StatusCode::kInternal, 0.5);
  metrics.AddPutBytes(10);
  metrics.AddPutBytes(5);
  metrics.AddFetchBytes(7);
  std::string text = metrics.Render(TwoDevices());
  EXPECT_TRUE(
      Contains(text, "tensorcast_rpcs_total{method=\"Put\",code=\"OK\"} 2"));
  EXPECT_TRUE(Contains(
      text, "tensorcast_rpcs_total{method=\"Put\",code=\"NOT_FOUND\"} 1"));
  EXPECT_TRUE(Contains(
      text, "tensorcast_rpcs_total{method=\"other\",code=\"INTERNAL\"} 1"));
  const std::string bucket =
      "tensorcast_rpc_duration_seconds_bucket{method=\"Put\",le=";
  EXPECT_TRUE(Contains(text, bucket + "\"0.0001\"} 0"));
  EXPECT_TRUE(Contains(text, bucket + "\"0.00025\"} 1"));
  EXPECT_TRUE(Contains(text, bucket + "\"0.001\"} 2"));
  EXPECT_TRUE(Contains(text, bucket + "\"60\"} 2"));
  EXPECT_TRUE(Contains(text, bucket + "\"+Inf\"} 3"));
  EXPECT_TRUE(Contains(
      text, "tensorcast_rpc_duration_seconds_count{method=\"Put\"} 3"));
  EXPECT_NE(
      text.find("tensorcast_rpc_duration_seconds_sum{method=\"Put\"} 100.00"),
      std::string::npos)
      << text;
  EXPECT_TRUE(Contains(text, "tensorcast_put_bytes_total 15"));
  EXPECT_TRUE(Contains(text, "tensorcast_fetch_bytes_total 7"));
}

TEST(MetricsTest, EveryFamilyHasHelpAndTypeAndLabelsAreEscaped) {
  Metrics metrics({"Put"});
  ServiceSnapshot s = TwoDevices();
  s.version = "a\"b\\c\nd";
  std::string text = metrics.Render(s);
  EXPECT_TRUE(
      Contains(text, "tensorcast_build_info{version=\"a\\\"b\\\\c\\nd\"} 1"));
  std::string family;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line.substr(0, 7) == "# HELP ") {
      family = std::string(line.substr(7, line.find(' ', 7) - 7));
      continue;
    }
    if (line.substr(0, 7) == "# TYPE ") continue;
    // A sample belongs to the family announced last.
    EXPECT_EQ(line.substr(0, family.size()), family) << line;
  }
}

TEST(MetricsEndpointTest, ServesMetricsOnAFreePort) {
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
      MetricsEndpoint::Start("127.0.0.1:0",
                             [] { return std::string("x 1\n"); });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  ASSERT_GT((*endpoint)->port(), 0);
  httplib::Client client("127.0.0.1", (*endpoint)->port());
  httplib::Result res = client.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "x 1\n");
  EXPECT_EQ(res->get_header_value("Content-Type"), Metrics::kContentType);
  res = client.Get("/other");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
}

// A TCP connection to 127.0.0.1:port, or -1.
int ConnectTcp(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Idle connections and one that sends half a request hold workers; a
// scrape must still be answered at once, and the dawdlers are dropped
// after the endpoint's timeout rather than held for good.
TEST(MetricsEndpointTest, SlowClientsDoNotStarveScrapes) {
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
      MetricsEndpoint::Start("127.0.0.1:0",
                             [] { return std::string("x 1\n"); });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  const int port = (*endpoint)->port();
  std::vector<int> slow;
  for (int i = 0; i < 4; ++i) slow.push_back(ConnectTcp(port));
  slow.push_back(ConnectTcp(port));
  const std::string half = "GET /metrics HTTP/1.1\r\nHost: x\r\n";
  ASSERT_EQ(write(slow.back(), half.data(), half.size()),
            static_cast<ssize_t>(half.size()));
  for (int fd : slow) ASSERT_GE(fd, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  const auto start = std::chrono::steady_clock::now();
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  httplib::Result res = client.Get("/metrics");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->body, "x 1\n");
  EXPECT_LT(seconds, 1.0);

  // Each dawdler is closed by the server (EOF) within a few seconds.
  for (int fd : slow) {
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 4000), 1) << "connection still held after 4 s";
    char buf[256];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
    }
    EXPECT_EQ(n, 0);
    close(fd);
  }
}

// A request line that never ends is not gathered in memory: the server
// drops the connection once the head passes its bound (16 KiB), long before
// 64 MiB are sent; a scrape is then answered as ever.
TEST(MetricsEndpointTest, BoundsTheRequestHead) {
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> endpoint =
      MetricsEndpoint::Start("127.0.0.1:0",
                             [] { return std::string("x 1\n"); });
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  const int port = (*endpoint)->port();
  const int fd = ConnectTcp(port);
  ASSERT_GE(fd, 0);
  const std::string junk(1 << 16, 'x');
  int64_t sent = 0;
  while (sent < (int64_t{64} << 20)) {
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, 10000) != 1 || (p.revents & POLLOUT) == 0) break;
    const ssize_t n = send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += n;
  }
  close(fd);
  EXPECT_LT(sent, int64_t{64} << 20) << "the server read 64 MiB of one line";

  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(5);
  httplib::Result res = client.Get("/metrics");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->body, "x 1\n");
}

TEST(MetricsEndpointTest, RejectsBadAddresses) {
  auto render = [] { return std::string(); };
  EXPECT_EQ(MetricsEndpoint::Start("no-port", render).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MetricsEndpoint::Start("127.0.0.1:99999", render).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::unique_ptr<MetricsEndpoint>> first =
      MetricsEndpoint::Start("127.0.0.1:0", render);
  ASSERT_TRUE(first.ok());
  const std::string taken = "127.0.0.1:" + std::to_string((*first)->port());
  EXPECT_EQ(MetricsEndpoint::Start(taken, render).status().code(),
            absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tensorcast
