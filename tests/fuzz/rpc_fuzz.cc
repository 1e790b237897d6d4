// Fuzzes the whole service in-process: a TensorcastServer (cpu only, small
// pool, on 127.0.0.1 and a free port) is started once per process, and each
// input is one RPC of tensorcast.v1.TensorService sent through a generic
// stub, so its request bytes reach the server as they are (Put and Fetch
// decode their own messages; the others go through protobuf).
//
// Input: a method byte, a flags byte, then request messages, each a varint
// length and that many bytes (Put sends up to kMaxPutMessages of them, the
// others the first one; none means an empty message). Flag bit 0 cancels
// the call once the messages are sent. A request that parses as its message
// type and names "#k" as a ref is sent with the handle of fixture k instead:
// a few tensors made at start (also reachable by their names, "f32",
// "grad", "fort", "view", "empty"), remade if a Delete removes them.
//
// The server must not crash (sanitizers watch it), must answer every call
// before its deadline, must end every stream it started, and keeps no tensor
// a fuzzed call made: each new handle in a reply is deleted at once.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/service/server.h"
#include "tensorcast/v1/tensor_service.grpc.pb.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/fuzz_targets.h"

namespace tensorcast::fuzz {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using std::chrono::steady_clock;

constexpr int kMaxPutMessages = 8;
constexpr int kMaxResponses = 256;  // then the client cancels
constexpr auto kCallDeadline = seconds(1);
constexpr auto kSetupDeadline = seconds(10);

enum class Method {
  kPut,
  kCreate,
  kInfo,
  kList,
  kDelete,
  kDetach,
  kTo,
  kFetch,
  kStats,
  kEmptyCache,
  kOpenSharedMemory,
  kCount,
};

const char* MethodPath(Method m) {
  switch (m) {
    case Method::kPut:
      return "/tensorcast.v1.TensorService/Put";
    case Method::kCreate:
      return "/tensorcast.v1.TensorService/Create";
    case Method::kInfo:
      return "/tensorcast.v1.TensorService/Info";
    case Method::kList:
      return "/tensorcast.v1.TensorService/List";
    case Method::kDelete:
      return "/tensorcast.v1.TensorService/Delete";
    case Method::kDetach:
      return "/tensorcast.v1.TensorService/Detach";
    case Method::kTo:
      return "/tensorcast.v1.TensorService/To";
    case Method::kFetch:
      return "/tensorcast.v1.TensorService/Fetch";
    case Method::kStats:
      return "/tensorcast.v1.TensorService/Stats";
    case Method::kEmptyCache:
      return "/tensorcast.v1.TensorService/EmptyCache";
    case Method::kOpenSharedMemory:
    case Method::kCount:
      break;
  }
  return "/tensorcast.v1.TensorService/OpenSharedMemory";
}

bool IsStream(Method m) {
  return m == Method::kPut || m == Method::kFetch ||
         m == Method::kOpenSharedMemory;
}

// A big-endian int16 array of shape (2, 3) in Fortran order, as NumPy saves
// np.asfortranarray(np.arange(6, dtype='>i2').reshape(2, 3)).
std::string FortranNpy() {
  std::string dict =
      "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }";
  const size_t total = (10 + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - 10 - dict.size() - 1, ' ');
  dict.push_back('\n');
  std::string file("\x93NUMPY\x01\x00", 8);
  file.push_back(static_cast<char>(dict.size() & 0xff));
  file.push_back(static_cast<char>(dict.size() >> 8));
  file += dict;
  for (int v : {0, 3, 1, 4, 2, 5}) {  // column by column
    file.push_back(0);
    file.push_back(static_cast<char>(v));
  }
  return file;
}

class RpcWorld {
 public:
  RpcWorld() {
    spdlog::set_level(spdlog::level::off);
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.devices.devices = "cpu";
    options.devices.memory_limit_bytes = 16 << 20;
    options.service.max_tensor_bytes = 4 << 20;
    absl::StatusOr<std::unique_ptr<TensorcastServer>> server =
        TensorcastServer::Start(options);
    if (!server.ok()) {
      std::fprintf(stderr, "rpc fuzzer: cannot start the server: %s\n",
                   server.status().ToString().c_str());
      std::abort();
    }
    server_ = *std::move(server);
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);
    args.SetMaxSendMessageSize(-1);
    // Over loopback TCP, as clients connect. Not grpc::Server's
    // InProcessChannel: gRPC 1.51's in-process transport keeps about half
    // of these calls (both ends' arenas) alive, and the fuzzer's memory
    // grows by ~10 KB per input; over TCP it stays flat, as fast.
    channel_ =
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                  grpc::InsecureChannelCredentials(), args);
    generic_ = std::make_unique<grpc::GenericStub>(channel_);
    stub_ = v1::TensorService::NewStub(channel_);
    MakeFixtures();
  }

  ~RpcWorld() {
    stub_.reset();
    generic_.reset();
    channel_.reset();
    server_->Shutdown(milliseconds(0));
    server_.reset();
  }

  void Run(FuzzInput& in) {
    const Method method =
        static_cast<Method>(in.Byte() % static_cast<int>(Method::kCount));
    const uint8_t flags = in.Byte();
    const bool cancel = flags & 1;
    std::vector<std::string> messages;
    const int most = method == Method::kPut ? kMaxPutMessages : 1;
    while (!in.empty() && static_cast<int>(messages.size()) < most) {
      messages.push_back(Substitute(method, in.LengthPrefixed()));
    }
    if (messages.empty()) messages.emplace_back();

    std::vector<std::string> responses;
    const grpc::Status status =
        Call(method, messages, cancel, &responses, kCallDeadline);
    if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      std::fprintf(
          stderr, "rpc fuzzer: %s ran past its %lld ms deadline\n",
          MethodPath(method),
          static_cast<long long>(
              std::chrono::duration_cast<milliseconds>(kCallDeadline).count()));
    }
    if (IsStream(method)) WaitForStreamsToEnd();
    DeleteNewTensor(method, responses);
    if (method == Method::kDelete) EnsureFixtures();
    if (++calls_ % 64 == 0) Sweep();
  }

 private:
  // Sends `messages` as one call of `method` and collects the replies.
  grpc::Status Call(Method method, const std::vector<std::string>& messages,
                    bool cancel, std::vector<std::string>* responses,
                    steady_clock::duration timeout) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    grpc::CompletionQueue cq;
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
        generic_->PrepareCall(&ctx, MethodPath(method), &cq);
    // One operation at a time: start it, then wait for its completion.
    auto wait = [&cq] {
      void* tag;
      bool ok = false;
      FUZZ_CHECK(cq.Next(&tag, &ok));
      return ok;
    };
    int tag = 0;
    call->StartCall(&tag);
    bool ok = wait();
    for (size_t i = 0; ok && i < messages.size(); ++i) {
      grpc::Slice slice(messages[i]);
      grpc::ByteBuffer buffer(&slice, 1);
      call->Write(buffer, &tag);
      ok = wait();
    }
    if (cancel) {
      ctx.TryCancel();
    } else if (ok) {
      call->WritesDone(&tag);
      ok = wait();
    }
    while (true) {
      grpc::ByteBuffer buffer;
      call->Read(&buffer, &tag);
      if (!wait()) break;
      if (static_cast<int>(responses->size()) >= kMaxResponses) {
        ctx.TryCancel();
        continue;
      }
      std::vector<grpc::Slice> slices;
      std::string bytes;
      if (buffer.Dump(&slices).ok()) {
        for (const grpc::Slice& s : slices) {
          bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
      }
      responses->push_back(std::move(bytes));
    }
    grpc::Status status;
    call->Finish(&status, &tag);
    wait();
    cq.Shutdown();
    void* ignored_tag;
    bool ignored_ok;
    while (cq.Next(&ignored_tag, &ignored_ok)) {
    }
    return status;
  }

  // "#k" as a ref becomes fixture k's handle; anything else is sent as is.
  std::string Substitute(Method method, absl::string_view bytes) {
    auto swap = [this](std::string* ref) {
      if (ref->size() < 2 || (*ref)[0] != '#') return false;
      *ref =
          fixtures_[static_cast<unsigned char>((*ref)[1]) % fixtures_.size()];
      return true;
    };
    auto rewrite = [&](auto message, auto refs) -> std::string {
      if (!message.ParseFromArray(bytes.data(),
                                  static_cast<int>(bytes.size()))) {
        return std::string(bytes);
      }
      bool changed = false;
      for (std::string* ref : refs(message)) changed |= swap(ref);
      return changed ? message.SerializeAsString() : std::string(bytes);
    };
    switch (method) {
      case Method::kInfo:
        return rewrite(v1::InfoRequest(), [](v1::InfoRequest& m) {
          return std::vector<std::string*>{m.mutable_ref()};
        });
      case Method::kDetach:
        return rewrite(v1::DetachRequest(), [](v1::DetachRequest& m) {
          return std::vector<std::string*>{m.mutable_ref()};
        });
      case Method::kTo:
        return rewrite(v1::ToRequest(), [](v1::ToRequest& m) {
          return std::vector<std::string*>{m.mutable_ref()};
        });
      case Method::kFetch:
        return rewrite(v1::FetchRequest(), [](v1::FetchRequest& m) {
          return std::vector<std::string*>{m.mutable_ref()};
        });
      case Method::kDelete:
        return rewrite(v1::DeleteRequest(), [](v1::DeleteRequest& m) {
          std::vector<std::string*> refs;
          for (std::string& r : *m.mutable_refs()) refs.push_back(&r);
          return refs;
        });
      default:
        return std::string(bytes);
    }
  }

  bool IsFixture(const std::string& handle) const {
    for (const std::string& f : fixtures_) {
      if (f == handle) return true;
    }
    return false;
  }

  // The tensor a successful Put, Create, Detach or To made, if new.
  void DeleteNewTensor(Method method, const std::vector<std::string>& replies) {
    if (replies.empty()) return;
    v1::TensorInfo info;
    bool parsed = false;
    auto take = [&](auto reply) {
      parsed = reply.ParseFromString(replies[0]);
      info = reply.tensor();
    };
    switch (method) {
      case Method::kPut:
        take(v1::PutResponse());
        break;
      case Method::kCreate:
        take(v1::CreateResponse());
        break;
      case Method::kDetach:
        take(v1::DetachResponse());
        break;
      case Method::kTo:
        take(v1::ToResponse());
        break;
      default:
        return;
    }
    if (!parsed || info.handle().empty() || IsFixture(info.handle())) return;
    Delete({info.handle()});
  }

  void Delete(const std::vector<std::string>& handles) {
    v1::DeleteRequest request;
    for (const std::string& h : handles) request.add_refs(h);
    v1::DeleteResponse response;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kSetupDeadline);
    grpc::Status s = stub_->Delete(&ctx, request, &response);
    CheckAlive(s, "Delete", /*not_found_ok=*/true);
  }

  // A call the harness makes itself must succeed, or the server is stuck.
  static void CheckAlive(const grpc::Status& s, const char* what,
                         bool not_found_ok = false) {
    if (s.ok()) return;
    if (not_found_ok && s.error_code() == grpc::StatusCode::NOT_FOUND) return;
    std::fprintf(stderr, "rpc fuzzer: the harness's %s failed: %d %s\n", what,
                 static_cast<int>(s.error_code()), s.error_message().c_str());
    std::abort();
  }

  v1::StatsResponse Stats() {
    v1::StatsResponse response;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kSetupDeadline);
    CheckAlive(stub_->Stats(&ctx, v1::StatsRequest(), &response), "Stats");
    return response;
  }

  // Streams end on the server a moment after the client sees their status;
  // one that is still running seconds later never will.
  void WaitForStreamsToEnd() {
    const auto give_up = steady_clock::now() + seconds(5);
    while (Stats().active_streams() > 0) {
      if (steady_clock::now() > give_up) {
        std::fprintf(stderr, "rpc fuzzer: a stream never ended\n");
        std::abort();
      }
      std::this_thread::sleep_for(milliseconds(1));
    }
  }

  // Deletes whatever is stored besides the fixtures (a tensor whose reply
  // was lost to a cancellation, say).
  void Sweep() {
    if (Stats().tensors() <= static_cast<int64_t>(fixtures_.size())) return;
    v1::ListRequest request;
    request.set_page_size(1000);
    v1::ListResponse response;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kSetupDeadline);
    CheckAlive(stub_->List(&ctx, request, &response), "List");
    std::vector<std::string> extra;
    for (const v1::TensorInfo& t : response.tensors()) {
      if (!IsFixture(t.handle())) extra.push_back(t.handle());
    }
    for (const std::string& h : extra) Delete({h});  // some may expire
  }

  void EnsureFixtures() {
    bool all = !fixtures_.empty();
    for (const std::string& h : fixtures_) {
      v1::InfoRequest request;
      request.set_ref(h);
      v1::InfoResponse response;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + kSetupDeadline);
      grpc::Status s = stub_->Info(&ctx, request, &response);
      CheckAlive(s, "Info", /*not_found_ok=*/true);
      all &= s.ok();
    }
    if (all) return;
    // One by one: a Delete that names a missing ref deletes nothing.
    for (const std::string& h : fixtures_) Delete({h});
    MakeFixtures();
  }

  void MakeFixtures() {
    fixtures_.clear();
    auto create = [this](const char* name, v1::DType dtype,
                         std::vector<int64_t> shape, bool grad) {
      v1::CreateRequest request;
      request.set_name(name);
      request.set_dtype(dtype);
      for (int64_t d : shape) request.add_shape(d);
      request.set_requires_grad(grad);
      if (shape.size() == 2 && shape[0] == shape[1]) {
        request.mutable_eye();
      } else {
        request.mutable_arange()->set_step(1);
      }
      v1::CreateResponse response;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + kSetupDeadline);
      CheckAlive(stub_->Create(&ctx, request, &response), "Create");
      fixtures_.push_back(response.tensor().handle());
    };
    create("f32", v1::DTYPE_FLOAT32, {2, 3}, false);
    create("grad", v1::DTYPE_FLOAT64, {3, 3}, true);

    // A Fortran-order, big-endian upload: a non-contiguous view.
    v1::PutRequest header;
    header.mutable_header()->set_name("fort");
    header.mutable_header()->set_format(v1::FORMAT_NPY);
    v1::PutRequest data;
    data.set_data(FortranNpy());
    std::vector<std::string> replies;
    grpc::Status s = Call(
        Method::kPut, {header.SerializeAsString(), data.SerializeAsString()},
        false, &replies, kSetupDeadline);
    FUZZ_CHECK(s.ok() && replies.size() == 1);
    v1::PutResponse put;
    FUZZ_CHECK(put.ParseFromString(replies[0]));
    FUZZ_CHECK(!put.tensor().is_contiguous());
    fixtures_.push_back(put.tensor().handle());

    v1::DetachRequest detach;
    detach.set_ref("fort");
    detach.set_name("view");
    v1::DetachResponse view;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + kSetupDeadline);
    FUZZ_CHECK(stub_->Detach(&ctx, detach, &view).ok());
    fixtures_.push_back(view.tensor().handle());

    create("empty", v1::DTYPE_COMPLEX64, {0, 3}, false);
  }

  std::unique_ptr<TensorcastServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> generic_;
  std::unique_ptr<v1::TensorService::Stub> stub_;
  std::vector<std::string> fixtures_;
  int64_t calls_ = 0;
};

RpcWorld* world = nullptr;

}  // namespace

int FuzzRpc(const uint8_t* data, size_t size) {
  // Never destroyed in a fuzzer: the process exits with the server running.
  if (world == nullptr) world = new RpcWorld;
  FuzzInput in(data, size);
  world->Run(in);
  return 0;
}

void ShutdownRpcFuzzer() {
  delete world;
  world = nullptr;
}

}  // namespace tensorcast::fuzz
