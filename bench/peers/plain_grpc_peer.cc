// tensorcast-bench-plain-peer: the plain C++ gRPC server of the benchmark
// suite (bench/suite.py) — what a C++ programmer writes without tricks. It
// holds named float32 buffers (element i = float(i % 2048)) and answers
// tensorcast.bench.Peer/Fetch (bench/peers/peer.proto) by streaming a buffer
// in 4 MiB messages, one protobuf `bytes` field each, through the sync API:
// every chunk is copied into the message and serialized by gRPC as usual.
// No casts (UNIMPLEMENTED), no unary FetchUnary (UNIMPLEMENTED).
//
// Usage: tensorcast-bench-plain-peer --listen=127.0.0.1:0 --port-file=PATH
//            --tensors=NAME:ELEMENTS[,NAME:ELEMENTS...]
// Serves until SIGTERM or SIGINT, then shuts down and exits 0.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "bench/peers/peer.grpc.pb.h"

namespace tensorcast::bench {
namespace {

constexpr int64_t kDefaultChunkBytes = int64_t{4} << 20;

class PlainPeer final : public Peer::Service {
 public:
  explicit PlainPeer(std::map<std::string, std::vector<float>> tensors)
      : tensors_(std::move(tensors)) {}

  grpc::Status Fetch(grpc::ServerContext* /*context*/,
                     const FetchRequest* request,
                     grpc::ServerWriter<Chunk>* writer) override {
    auto it = tensors_.find(request->name());
    if (it == tensors_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such tensor");
    }
    if (!request->dtype().empty() && request->dtype() != "float32") {
      return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                          "the plain peer does not cast");
    }
    const char* data = reinterpret_cast<const char*>(it->second.data());
    const int64_t bytes = static_cast<int64_t>(it->second.size() * 4);
    const int64_t chunk = request->chunk_bytes() > 0 ? request->chunk_bytes()
                                                     : kDefaultChunkBytes;
    Chunk message;
    for (int64_t pos = 0; pos < bytes; pos += chunk) {
      const int64_t n = std::min(chunk, bytes - pos);
      message.set_data(data + pos, static_cast<size_t>(n));
      if (!writer->Write(message)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
      }
    }
    return grpc::Status::OK;
  }

 private:
  const std::map<std::string, std::vector<float>> tensors_;
};

bool ParseTensors(absl::string_view spec,
                  std::map<std::string, std::vector<float>>* out) {
  for (absl::string_view item : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts = absl::StrSplit(item, ':');
    int64_t elements = 0;
    if (parts.size() != 2 || parts[0].empty() ||
        !absl::SimpleAtoi(parts[1], &elements) || elements <= 0) {
      return false;
    }
    std::vector<float> values(static_cast<size_t>(elements));
    for (int64_t i = 0; i < elements; ++i) {
      values[static_cast<size_t>(i)] = static_cast<float>(i % 2048);
    }
    (*out)[std::string(parts[0])] = std::move(values);
  }
  return true;
}

int Run(int argc, char** argv) {
  std::string listen = "127.0.0.1:0";
  std::string port_file;
  std::map<std::string, std::vector<float>> tensors;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--listen=")) {
      listen = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--port-file=")) {
      port_file = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--tensors=")) {
      if (!ParseTensors(arg, &tensors)) {
        std::fprintf(stderr, "bad --tensors: %s\n", argv[i]);
        return 2;
      }
    } else {
      std::fprintf(stderr,
                   "usage: tensorcast-bench-plain-peer --listen=HOST:PORT "
                   "--port-file=PATH --tensors=NAME:ELEMENTS,...\n");
      return 2;
    }
  }

  // Signals go to the waiting thread below, not to gRPC's threads.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  PlainPeer service(std::move(tensors));
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "cannot listen on %s\n", listen.c_str());
    return 1;
  }
  if (!port_file.empty()) {
    const std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << port << "\n";
    std::filesystem::rename(tmp, port_file);
  }
  std::thread stopper([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    server->Shutdown(std::chrono::system_clock::now() +
                     std::chrono::seconds(2));
  });
  server->Wait();
  stopper.join();
  return 0;
}

}  // namespace
}  // namespace tensorcast::bench

int main(int argc, char** argv) { return tensorcast::bench::Run(argc, argv); }
