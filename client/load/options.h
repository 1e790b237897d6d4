// LoadOptions: what one tensorcast-load run does, parsed and validated from
// the command line (flags of DESIGN.md §11, "Load tool"). Parsing is pure:
// it does not touch the network. Every error is INVALID_ARGUMENT with a
// one-line message; the binary prints it and exits 2. Thread-compatible.
#ifndef TENSORCAST_CLIENT_LOAD_OPTIONS_H_
#define TENSORCAST_CLIENT_LOAD_OPTIONS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tensorcast/v1/tensor_service.pb.h"

namespace tensorcast::load {

// One kind of request; `mixed` is a weighted choice among these.
enum class RequestKind : int { kFetch, kPut, kTo, kInfo };
inline constexpr int kNumRequestKinds = 4;
absl::string_view RequestKindName(RequestKind kind);

// Weight per RequestKind (index = static_cast<int>(kind)); sum > 0.
using Mix = std::array<int64_t, kNumRequestKinds>;

// "fetch:8,info:2": kinds among fetch, put, to, info; weights are
// non-negative integers, at least one positive; a kind at most once.
absl::StatusOr<Mix> ParseMix(absl::string_view text);
std::string MixText(const Mix& mix);

// "10s", "500ms", "1.5m", "1h", or plain seconds ("10", "0.5"); >= 0.
// Returns nanoseconds.
absl::StatusOr<int64_t> ParseDurationNs(absl::string_view text);

enum class Arrival { kConstant, kPoisson };

struct LoadOptions {
  std::string server = "127.0.0.1:50051";
  std::string scenario = "fetch";  // fetch|put|to|info|mixed
  Mix mix{};                       // the scenario as weights (one non-zero)
  int64_t size_bytes = 1 << 20;
  v1::DType dtype = v1::DTYPE_FLOAT32;
  v1::DType to_dtype = v1::DTYPE_UNSPECIFIED;  // fetch: cast; to: target
  v1::Format format = v1::FORMAT_NPY;
  std::string device = "cpu";
  // The tensors the run makes require grad (floating and complex dtypes).
  bool requires_grad = false;
  // Fetch as Tensor.numpy() does, without the .detach()/.cpu() the tool
  // otherwise fuses into the stream for a tensor that needs them (one that
  // requires grad or lives on a GPU): such fetches are then refused with
  // FAILED_PRECONDITION, as numpy() refuses them.
  bool fetch_as_is = false;
  // Closed loop when rate == 0: `concurrency` workers. Open loop otherwise.
  int64_t concurrency = 1;
  double rate = 0;
  Arrival arrival = Arrival::kConstant;
  int64_t max_inflight = 512;  // open loop: most requests outstanding
  int64_t connections = 1;
  // Exactly one of these is the run's length: requests > 0 wins.
  int64_t duration_ns = 10'000'000'000;
  int64_t requests = 0;
  int64_t warmup_ns = 2'000'000'000;
  std::string json_path;
  std::string csv_path;
  uint64_t seed = 1;
  bool progress = true;  // live progress when stderr is a terminal
  // A run whose failed requests are more than this fraction of its requests
  // is not a measurement: the binary exits 3 (0 <= max_error_rate <= 1).
  double max_error_rate = 0.5;
  // fetch and put through same-host shared memory (the server needs
  // --shared-memory): the stream carries only the header.
  bool shared_memory = false;
  // --cuda-ipc[=DEVICE]: fetch into and put from device memory on GPU
  // `cuda_ipc_device` of this process, lent to the server through CUDA IPC
  // (CudaIpcRegion; the server needs --shared-memory). -1 = off. Excludes
  // shared_memory.
  int cuda_ipc_device = -1;
  // Bearer token for a server with --auth-tokens (empty = none) and TLS:
  // PEM file paths, read by the binary ("" = not given). tls_ca or tls
  // turns TLS on; tls_cert and tls_key are a client certificate.
  std::string token;
  bool tls = false;
  std::string tls_ca, tls_cert, tls_key;

  bool open_loop() const { return rate > 0; }
  bool cuda_ipc() const { return cuda_ipc_device >= 0; }
  // How fetch and put move their bytes: "socket", "shared-memory" or
  // "cuda-ipc".
  const char* transport() const;
  // The tensor elements the scenario works on (size_bytes / item size).
  int64_t elements() const;
};

struct ParsedArgs {
  enum class Mode { kRun, kPlot, kHelp };
  Mode mode = Mode::kRun;
  LoadOptions options;
  std::string plot_json;  // --plot
  std::string plot_out;   // --out
  std::string usage;      // for --help
};

// Parses argv without the program name; --server defaults to
// `default_server` (the binary passes $TENSORCAST_SERVER or 127.0.0.1:50051)
// and --token to `default_token` ($TENSORCAST_TOKEN; never shown in the
// usage text).
absl::StatusOr<ParsedArgs> ParseArgs(
    const std::vector<std::string>& args,
    const std::string& default_server = "127.0.0.1:50051",
    const std::string& default_token = "");

}  // namespace tensorcast::load

#endif  // TENSORCAST_CLIENT_LOAD_OPTIONS_H_
