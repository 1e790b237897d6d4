// tensorcast: the command-line client. A command that makes a tensor prints
// its handle alone on stdout; a failure prints "CODE: message" on stderr
// (CODE as gRPC names it) and exits 1; a usage error exits 2.
#include <grpc/support/log.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/cpp/client.h"
#include "common/dtype.h"
#include "common/flags.h"
#include "common/size.h"
#include "proto/proto_json.h"

namespace tensorcast {
namespace {

constexpr char kUsage[] =
    R"(tensorcast: convert tensors held by a tensorcast server.

Usage: tensorcast [--server=HOST:PORT] COMMAND [ARGS] [FLAGS]

Commands (REF is a handle or a name):
  put FILE.npy [--device=D] [--requires-grad] [--name=N] [--ttl=S] [--node=ID]
  create --dtype=T --shape=3,4 (--zeros|--ones|--fill=V|--arange|--eye|--rand=SEED)
         [--device=D] [--requires-grad] [--name=N] [--ttl=S] [--node=ID]
  get REF -o OUT.npy [--dtype=T] [--force] [--raw]    (-o - writes to stdout)
  to REF [--device=D] [--dtype=T]
  detach REF
  info REF [--json]
  ls [--json]
  stats [--json]
  rm REF...
  cluster [--json]       the cluster's members: id, address, health, free memory
  cp REF NODE [--device=D] [--dtype=T] [--name=N] [--ttl=S]
                         copy to another node, server to server
  health                 exit 0 when the server is SERVING, 1 otherwise
  empty-cache [--device=D]

Connection (any command):
  --server=HOST:PORT     default $TENSORCAST_SERVER or 127.0.0.1:50051; a
                         cluster: HOST:PORT,HOST:PORT,... or dns:///NAME:PORT
                         (new tensors are placed by free memory, or on
                         --node; calls on a handle go to the node it names)
  --timeout=S            seconds per call (0 = none)
  --token=T              bearer token for a server run with --auth-tokens
                         (default $TENSORCAST_TOKEN)
  --tls                  TLS, trusting the system's root CAs
  --tls-ca=FILE          TLS, trusting the CAs in this PEM file instead
  --tls-cert=FILE --tls-key=FILE
                         a client certificate and its key (PEM), for a
                         server that requires one (--tls-client-ca))";

struct Args {
  std::string server;
  double timeout = 0;
  std::string token, tls_ca, tls_cert, tls_key;
  bool tls = false;
  std::string device, name, dtype, shape, output, fill, node;
  int64_t ttl = 0, rand_seed = 0;
  bool requires_grad = false, zeros = false, ones = false, arange = false,
       eye = false, force = false, raw = false, json = false, rand = false;
};

// The flags every command accepts: where the server is and how to reach it.
bool IsConnectionFlag(const std::string& f) {
  return f == "server" || f == "timeout" || f == "token" || f == "tls" ||
         f == "tls-ca" || f == "tls-cert" || f == "tls-key";
}

// Which flags each command accepts (besides the connection flags).
const std::map<std::string, std::set<std::string>>& CommandFlags() {
  static const auto* table = new std::map<std::string, std::set<std::string>>{
      {"put", {"device", "requires-grad", "name", "ttl", "node"}},
      {"create",
       {"dtype", "shape", "zeros", "ones", "fill", "arange", "eye", "rand",
        "device", "requires-grad", "name", "ttl", "node"}},
      {"cluster", {"json"}},
      {"cp", {"device", "dtype", "name", "ttl"}},
      {"get", {"output", "dtype", "force", "raw"}},
      {"to", {"device", "dtype", "name", "ttl"}},
      {"detach", {"name", "ttl"}},
      {"info", {"json"}},
      {"ls", {"json"}},
      {"stats", {"json"}},
      {"rm", {}},
      {"health", {}},
      {"empty-cache", {"device"}},
  };
  return *table;
}

int UsageError(absl::string_view message) {
  std::fprintf(stderr, "tensorcast: %s (see tensorcast --help)\n",
               std::string(message).c_str());
  return 2;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "%s: %s\n", StatusCodeName(status.code()).c_str(),
               std::string(status.message()).c_str());
  return 1;
}

absl::StatusOr<v1::DType> ParseProtoDType(const std::string& text) {
  absl::StatusOr<DType> d = ParseDType(text);
  if (!d.ok()) return d.status();
  return static_cast<v1::DType>(static_cast<int>(*d) + 1);
}

std::string DTypeText(v1::DType d) {
  int i = static_cast<int>(d) - 1;
  if (i < 0 || i >= kNumDTypes) return "?";
  return std::string(DTypeName(static_cast<DType>(i)));
}

std::string ShapeText(const google::protobuf::RepeatedField<int64_t>& shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

void PrintInfoRow(const v1::TensorInfo& t) {
  std::printf("%-32s  %-16s  %-10s  %-16s  %-7s  %-5s  %s\n",
              t.handle().c_str(), t.name().empty() ? "-" : t.name().c_str(),
              DTypeText(t.dtype()).c_str(), ShapeText(t.shape()).c_str(),
              t.device().c_str(), t.requires_grad() ? "yes" : "no",
              FormatSize(t.nbytes()).c_str());
}

void PrintInfoHeader() {
  std::printf("%-32s  %-16s  %-10s  %-16s  %-7s  %-5s  %s\n", "HANDLE", "NAME",
              "DTYPE", "SHAPE", "DEVICE", "GRAD", "SIZE");
}

int PrintHandle(const absl::StatusOr<v1::TensorInfo>& info) {
  if (!info.ok()) return Fail(info.status());
  std::printf("%s\n", info->handle().c_str());
  return 0;
}

int Run(Client& client, const std::string& command,
        const std::vector<std::string>& operands, const Args& a) {
  auto need = [&](size_t n) { return operands.size() == n; };
  if (command == "put") {
    if (!need(1)) return UsageError("put takes one FILE.npy");
    PutOptions options;
    options.device = a.device;
    options.requires_grad = a.requires_grad;
    options.name = a.name;
    options.ttl_seconds = a.ttl;
    options.node = a.node;
    return PrintHandle(client.PutNpyFile(operands[0], options));
  }
  if (command == "create") {
    if (!need(0)) return UsageError("create takes no operands");
    v1::CreateRequest request;
    absl::StatusOr<v1::DType> dtype =
        ParseProtoDType(a.dtype.empty() ? "float32" : a.dtype);
    if (!dtype.ok()) return UsageError(dtype.status().message());
    request.set_dtype(*dtype);
    if (!a.shape.empty()) {
      for (absl::string_view d : absl::StrSplit(a.shape, ',')) {
        int64_t v;
        if (!absl::SimpleAtoi(d, &v)) {
          return UsageError(absl::StrCat("--shape=", a.shape,
                                         ": expected integers such as 3,4"));
        }
        request.add_shape(v);
      }
    }
    int fills = a.zeros + a.ones + !a.fill.empty() + a.arange + a.eye + a.rand;
    if (fills != 1) {
      return UsageError(
          "create needs exactly one of --zeros --ones --fill=V --arange --eye "
          "--rand=SEED");
    }
    if (a.ones) request.mutable_ones();
    if (a.zeros) request.mutable_zeros();
    if (a.eye) request.mutable_eye();
    if (a.arange) request.mutable_arange()->set_step(1);
    if (a.rand) request.set_rand_seed(static_cast<uint64_t>(a.rand_seed));
    if (!a.fill.empty()) {
      double v;
      if (!absl::SimpleAtod(a.fill, &v)) {
        return UsageError(absl::StrCat("--fill=", a.fill, ": not a number"));
      }
      request.set_full(v);
    }
    request.set_device(a.device);
    request.set_requires_grad(a.requires_grad);
    request.set_name(a.name);
    request.set_ttl_seconds(a.ttl);
    return PrintHandle(client.Create(request, a.node));
  }
  if (command == "get") {
    if (!need(1)) return UsageError("get takes one REF");
    if (a.output.empty()) return UsageError("get needs -o OUT.npy (or -o -)");
    FetchOptions options;
    options.format = a.raw ? v1::FORMAT_RAW : v1::FORMAT_NPY;
    options.force = a.force;
    if (!a.dtype.empty()) {
      absl::StatusOr<v1::DType> dtype = ParseProtoDType(a.dtype);
      if (!dtype.ok()) return UsageError(dtype.status().message());
      options.dtype = *dtype;
    }
    if (a.output == "-") {
      absl::StatusOr<v1::FetchHeader> header = client.Fetch(
          operands[0], options, [](absl::string_view bytes) -> absl::Status {
            if (std::fwrite(bytes.data(), 1, bytes.size(), stdout) !=
                bytes.size()) {
              return absl::DataLossError("cannot write to stdout");
            }
            return absl::OkStatus();
          });
      std::fflush(stdout);
      return header.ok() ? 0 : Fail(header.status());
    }
    absl::StatusOr<v1::FetchHeader> header =
        client.FetchToFile(operands[0], options, a.output);
    return header.ok() ? 0 : Fail(header.status());
  }
  if (command == "to") {
    if (!need(1)) return UsageError("to takes one REF");
    v1::ToRequest request;
    request.set_ref(operands[0]);
    request.set_device(a.device);
    if (!a.dtype.empty()) {
      absl::StatusOr<v1::DType> dtype = ParseProtoDType(a.dtype);
      if (!dtype.ok()) return UsageError(dtype.status().message());
      request.set_dtype(*dtype);
    }
    request.set_name(a.name);
    request.set_ttl_seconds(a.ttl);
    return PrintHandle(client.To(request));
  }
  if (command == "detach") {
    if (!need(1)) return UsageError("detach takes one REF");
    return PrintHandle(client.Detach(operands[0]));
  }
  if (command == "info") {
    if (!need(1)) return UsageError("info takes one REF");
    absl::StatusOr<v1::TensorInfo> info = client.Info(operands[0]);
    if (!info.ok()) return Fail(info.status());
    if (a.json) {
      std::printf("%s", ProtoJson(*info).c_str());
    } else {
      PrintInfoHeader();
      PrintInfoRow(*info);
    }
    return 0;
  }
  if (command == "ls") {
    if (!need(0)) return UsageError("ls takes no operands");
    absl::StatusOr<std::vector<v1::TensorInfo>> all = client.List();
    if (!all.ok()) return Fail(all.status());
    if (a.json) {
      v1::ListResponse response;
      for (const v1::TensorInfo& t : *all) *response.add_tensors() = t;
      std::printf("%s", ProtoJson(response).c_str());
    } else {
      PrintInfoHeader();
      for (const v1::TensorInfo& t : *all) PrintInfoRow(t);
    }
    return 0;
  }
  if (command == "stats") {
    if (!need(0)) return UsageError("stats takes no operands");
    absl::StatusOr<v1::StatsResponse> stats = client.Stats();
    if (!stats.ok()) return Fail(stats.status());
    if (a.json) {
      std::printf("%s", ProtoJson(*stats).c_str());
      return 0;
    }
    // A token without admin rights gets its own figures only: no devices,
    // no CUDA status.
    std::string cuda =
        stats->cuda_available() ? "CUDA available" : stats->cuda_status();
    std::printf("tensorcast %s: %lld tensor(s), %lld stream(s)%s\n",
                stats->version().c_str(),
                static_cast<long long>(stats->tensors()),
                static_cast<long long>(stats->active_streams()),
                cuda.empty() ? "" : absl::StrCat("; ", cuda).c_str());
    if (stats->devices_size() > 0 || !stats->has_tenant()) {
      std::printf("%-8s  %12s  %12s  %12s  %12s  %9s  %8s\n", "DEVICE",
                  "ALLOCATED", "RESERVED", "PEAK", "LIMIT", "ALLOCS",
                  "TENSORS");
    }
    for (const v1::DeviceStats& d : stats->devices()) {
      std::printf(
          "%-8s  %12s  %12s  %12s  %12s  %9lld  %8lld\n", d.device().c_str(),
          FormatSize(d.allocated_bytes()).c_str(),
          FormatSize(d.reserved_bytes()).c_str(),
          FormatSize(d.peak_allocated_bytes()).c_str(),
          d.limit_bytes() > 0 ? FormatSize(d.limit_bytes()).c_str() : "none",
          static_cast<long long>(d.alloc_count()),
          static_cast<long long>(d.tensors()));
    }
    if (stats->has_tenant() || stats->tenants_size() > 0) {
      std::printf("%-16s  %12s  %12s  %9s  %9s  %9s  %9s\n", "TENANT", "BYTES",
                  "QUOTA", "TENSORS", "MAX", "STREAMS", "MAX");
      auto limit = [](int64_t v) {
        return v > 0 ? absl::StrCat(v) : std::string("none");
      };
      auto row = [&](const v1::TenantStats& t, const char* mark) {
        std::printf(
            "%-16s  %12s  %12s  %9lld  %9s  %9lld  %9s\n",
            absl::StrCat(t.tenant(), mark).c_str(),
            FormatSize(t.bytes()).c_str(),
            t.quota_bytes() > 0 ? FormatSize(t.quota_bytes()).c_str() : "none",
            static_cast<long long>(t.tensors()), limit(t.max_tensors()).c_str(),
            static_cast<long long>(t.active_streams()),
            limit(t.max_streams()).c_str());
      };
      // The caller's own tenant first, marked; an admin's list follows.
      if (stats->has_tenant()) row(stats->tenant(), " (you)");
      for (const v1::TenantStats& t : stats->tenants()) {
        if (!stats->has_tenant() || t.tenant() != stats->tenant().tenant()) {
          row(t, "");
        }
      }
    }
    return 0;
  }
  if (command == "cluster") {
    if (!need(0)) return UsageError("cluster takes no operands");
    absl::StatusOr<v1::ClusterResponse> cluster = client.Cluster();
    if (!cluster.ok()) return Fail(cluster.status());
    if (a.json) {
      std::printf("%s", ProtoJson(*cluster).c_str());
      return 0;
    }
    std::printf("%-20s  %-24s  %-7s  %-8s  %12s  %s\n", "NODE", "ADDRESS",
                "HEALTHY", "DEVICE", "FREE", "ERROR");
    for (const v1::ClusterMember& m : cluster->members()) {
      std::string id = m.node_id().empty() ? "-" : m.node_id();
      if (m.self()) id += " *";
      if (m.devices().empty()) {
        std::printf("%-20s  %-24s  %-7s  %-8s  %12s  %s\n", id.c_str(),
                    m.address().c_str(), m.healthy() ? "yes" : "no", "-", "-",
                    m.error().c_str());
      }
      for (const v1::DeviceStats& d : m.devices()) {
        std::printf("%-20s  %-24s  %-7s  %-8s  %12s  %s\n", id.c_str(),
                    m.address().c_str(), m.healthy() ? "yes" : "no",
                    d.device().c_str(), FormatSize(d.free_bytes()).c_str(),
                    m.error().c_str());
      }
    }
    return 0;
  }
  if (command == "cp") {
    if (!need(2)) return UsageError("cp takes a REF and a NODE");
    v1::CopyRequest request;
    request.set_ref(operands[0]);
    request.set_node(operands[1]);
    request.set_device(a.device);
    request.set_name(a.name);
    request.set_ttl_seconds(a.ttl);
    if (!a.dtype.empty()) {
      absl::StatusOr<v1::DType> dtype = ParseProtoDType(a.dtype);
      if (!dtype.ok()) return UsageError(dtype.status().message());
      request.set_dtype(*dtype);
    }
    return PrintHandle(client.Copy(request));
  }
  if (command == "rm") {
    if (operands.empty()) return UsageError("rm takes one or more REFs");
    absl::StatusOr<int> n = client.Delete(operands);
    return n.ok() ? 0 : Fail(n.status());
  }
  if (command == "health") {
    if (!need(0)) return UsageError("health takes no operands");
    absl::Status s = client.Health();
    if (!s.ok()) return Fail(s);
    std::printf("SERVING\n");
    return 0;
  }
  if (command == "empty-cache") {
    absl::StatusOr<int64_t> released = client.EmptyCache(a.device);
    if (!released.ok()) return Fail(released.status());
    std::printf("released %s\n", FormatSize(*released).c_str());
    return 0;
  }
  return UsageError(absl::StrCat("unknown command '", command, "'"));
}

// gRPC's own log lines (e.g. "Handshake failed" when TLS does not match)
// would come before the one "CODE: message" line a failure prints, and that
// message already carries gRPC's reason: they are dropped unless
// $GRPC_VERBOSITY asks for them.
void QuietGrpcLogs() {
  const char* verbosity = std::getenv("GRPC_VERBOSITY");
  if (verbosity != nullptr && *verbosity != '\0') return;
  gpr_set_log_function([](gpr_log_func_args*) {});
}

int Main(int argc, char** argv) {
  QuietGrpcLogs();
  Args a;
  const char* env = std::getenv("TENSORCAST_SERVER");
  a.server = env != nullptr && *env != '\0' ? env : "127.0.0.1:50051";
  std::string rand_text;
  FlagSet flags(kUsage);
  flags.String("server", &a.server,
               "HOST:PORT of the server, a list, or dns:///NAME:PORT");
  flags.String("node", &a.node, "the cluster node to put the tensor on");
  flags.Double("timeout", &a.timeout, "seconds per call (0 = none)");
  flags.String("token", &a.token, "bearer token (default $TENSORCAST_TOKEN)");
  flags.Bool("tls", &a.tls, "TLS with the system's root CAs");
  flags.String("tls-ca", &a.tls_ca, "PEM root CAs: TLS trusting these");
  flags.String("tls-cert", &a.tls_cert, "PEM client certificate (mutual TLS)");
  flags.String("tls-key", &a.tls_key, "PEM key of --tls-cert");
  flags.String("device", &a.device, "cpu, cuda, cuda:N");
  flags.String("name", &a.name, "a unique name for the new tensor");
  flags.Int("ttl", &a.ttl, "seconds until the server may reclaim it");
  flags.Bool("requires-grad", &a.requires_grad, "mark it as requiring grad");
  flags.String("dtype", &a.dtype, "float32, int64, bfloat16...");
  flags.String("shape", &a.shape, "comma-separated, e.g. 3,4 (empty: 0-d)");
  flags.Bool("zeros", &a.zeros, "fill with 0");
  flags.Bool("ones", &a.ones, "fill with 1");
  flags.String("fill", &a.fill, "fill with a value");
  flags.Bool("arange", &a.arange, "0, 1, 2... in C order");
  flags.Bool("eye", &a.eye, "identity (2-D)");
  flags.String("rand", &rand_text, "uniform [0, 1) from this seed");
  flags.String("output", &a.output, "file to write (-o); - for stdout");
  flags.Bool("force", &a.force, "as numpy(force=True): detach and copy");
  flags.Bool("raw", &a.raw, "raw C-order bytes instead of .npy");
  flags.Bool("json", &a.json, "print JSON");
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    // -o is the one short flag, as curl and compilers spell it.
    if (arg == "-o") arg = "--output";
    if (arg.rfind("-o", 0) == 0 && arg.size() > 2 && arg[2] != '-') {
      arg = "--output=" + arg.substr(2);
    }
    args.push_back(arg);
  }
  if (absl::Status s = flags.Parse(args); !s.ok()) {
    return UsageError(s.message());
  }
  if (flags.help_requested() || flags.positional().empty()) {
    std::printf("%s\n", kUsage);
    return flags.help_requested() ? 0 : 2;
  }
  const std::string command = flags.positional()[0];
  auto allowed = CommandFlags().find(command);
  if (allowed == CommandFlags().end()) {
    return UsageError(absl::StrCat("unknown command '", command, "'"));
  }
  for (const std::string& f : flags.set_flags()) {
    if (!IsConnectionFlag(f) && allowed->second.count(f) == 0) {
      return UsageError(absl::StrCat("--", f, " does not apply to ", command));
    }
  }
  if (flags.WasSet("rand")) {
    a.rand = true;
    if (!absl::SimpleAtoi(rand_text, &a.rand_seed)) {
      return UsageError(
          absl::StrCat("--rand=", rand_text, ": expected an integer seed"));
    }
  }
  ClientOptions options;
  options.timeout =
      std::chrono::milliseconds(static_cast<int64_t>(a.timeout * 1000));
  // The token from the environment is read here, not as the flag's
  // default, so that it never shows in a usage text.
  if (!flags.WasSet("token")) {
    const char* token = std::getenv("TENSORCAST_TOKEN");
    if (token != nullptr) a.token = token;
  }
  options.token = a.token;
  options.tls = a.tls;
  if (absl::Status s = ReadTlsFiles(a.tls_ca, a.tls_cert, a.tls_key, &options);
      !s.ok()) {
    return UsageError(s.message());
  }
  std::unique_ptr<Client> client = Client::Connect(a.server, options);
  std::vector<std::string> operands(flags.positional().begin() + 1,
                                    flags.positional().end());
  return Run(*client, command, operands, a);
}

}  // namespace
}  // namespace tensorcast

int main(int argc, char** argv) { return tensorcast::Main(argc, argv); }
