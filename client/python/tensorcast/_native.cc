// tensorcast._native: the Python client's fast path for the bulk RPCs.
//
// Fetch and Put run here, on a channel of the C++ gRPC library, with the
// GIL released: a Fetch's data fields are decoded from the slices gRPC
// received them in (proto/wire.h) and copied once, straight into the NumPy
// array's buffer; a Put sends the array's memory as slices of its own
// (no copy into protobuf messages). Requests, headers and replies cross as
// serialized protobuf bytes, which the Python side builds and parses, so
// this module knows no message type. Built by the package's setup.py when
// pybind11 and the gRPC C++ library are there; without it the package uses
// its pure-grpcio path.
#include <grpcpp/create_channel.h>
#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/slice.h>
#include <grpcpp/support/sync_stream.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "proto/wire.h"

namespace py = pybind11;

namespace {

constexpr char kFetchMethod[] = "/tensorcast.v1.TensorService/Fetch";
constexpr char kPutMethod[] = "/tensorcast.v1.TensorService/Put";
// v1.FetchResponse: data = 1, header = 2. v1.PutRequest: data = 2.
constexpr uint64_t kFetchData = 1;
constexpr uint64_t kFetchHeader = 2;
constexpr int kPutData = 2;

// Raised as tensorcast._native.RpcError(code, details).
PyObject* rpc_error = nullptr;

struct Failure {
  int code = 0;  // a grpc::StatusCode; 0 = none
  std::string details;
};

[[noreturn]] void Raise(const Failure& f) {
  PyErr_SetObject(rpc_error, py::make_tuple(f.code, f.details).ptr());
  throw py::error_already_set();
}

void Prepare(grpc::ClientContext* ctx,
             const std::vector<std::pair<std::string, std::string>>& metadata,
             double timeout) {
  for (const auto& [key, value] : metadata) ctx->AddMetadata(key, value);
  if (timeout > 0) {
    ctx->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::microseconds(static_cast<int64_t>(timeout * 1e6)));
  }
}

// Counts the slices of a caller's memory that gRPC still holds.
class InFlight : public std::enable_shared_from_this<InFlight> {
 public:
  // user_data for a slice: a reference to this, released by Release.
  void* Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    ++count_;
    return new std::shared_ptr<InFlight>(shared_from_this());
  }
  static void Release(void* held) {
    auto* self = static_cast<std::shared_ptr<InFlight>*>(held);
    {
      std::lock_guard<std::mutex> lock((*self)->mu_);
      --(*self)->count_;
    }
    (*self)->cv_.notify_all();
    delete self;
  }
  void WaitForNone() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return count_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int64_t count_ = 0;
};

class Channel {
 public:
  Channel(const std::string& target, int max_message_bytes) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(max_message_bytes);
    args.SetMaxSendMessageSize(max_message_bytes);
    channel_ = grpc::CreateCustomChannel(
        target, grpc::InsecureChannelCredentials(), args);
  }

  // Runs Fetch(request). On the header, calls on_header(header_bytes) with
  // the GIL held; it returns a writable buffer (the array's bytes) that the
  // data is then copied into, GIL released. Returns the bytes written.
  int64_t Fetch(
      const py::bytes& request,
      const std::vector<std::pair<std::string, std::string>>& metadata,
      double timeout, const py::function& on_header) {
    const std::string request_bytes = request;
    grpc::ClientContext ctx;
    Prepare(&ctx, metadata, timeout);
    Failure failure;
    int64_t written = 0;
    {
      py::gil_scoped_release unlocked;
      const grpc::internal::RpcMethod method(
          kFetchMethod, grpc::internal::RpcMethod::SERVER_STREAMING, channel_);
      grpc::Slice slice(request_bytes);
      grpc::ByteBuffer request_buffer(&slice, 1);
      std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
          grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
              channel_.get(), method, &ctx, request_buffer));
      char* dst = nullptr;
      int64_t capacity = -1;  // -1 until the header has come
      grpc::ByteBuffer message;
      int64_t messages = 0;
      while (failure.code == 0 && reader->Read(&message)) {
        failure = Consume(message, on_header, &dst, &capacity, &written);
        // Let Ctrl-C through every few messages.
        if (failure.code == 0 && ++messages % 16 == 0) {
          py::gil_scoped_acquire locked;
          if (PyErr_CheckSignals() != 0) {
            PyErr_Clear();
            failure = {static_cast<int>(grpc::StatusCode::CANCELLED),
                       "interrupted"};
            PyErr_SetInterrupt();  // re-raised as KeyboardInterrupt later
          }
        }
      }
      if (failure.code != 0) ctx.TryCancel();
      grpc::Status status = reader->Finish();
      if (failure.code == 0 && !status.ok()) {
        failure = {static_cast<int>(status.error_code()),
                   status.error_message()};
      }
    }
    if (failure.code != 0) {
      // The caller's own exception (from on_header), or Ctrl-C, first.
      if (PyErr_Occurred() != nullptr) throw py::error_already_set();
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      Raise(failure);
    }
    return written;
  }

  // Runs Put: `header` (a serialized PutRequest holding the header), then
  // `data` (a buffer: the array's bytes) in chunks of chunk_bytes, each a
  // PutRequest whose data field is a slice of that memory. Returns the
  // serialized PutResponse.
  py::bytes Put(
      const py::bytes& header, const py::buffer& data, int64_t chunk_bytes,
      const std::vector<std::pair<std::string, std::string>>& metadata,
      double timeout) {
    const std::string header_bytes = header;
    py::buffer_info info = data.request();
    const char* bytes = static_cast<const char*>(info.ptr);
    const int64_t n = info.size * info.itemsize;
    // The server refuses messages over 1 MiB + 64 KiB.
    chunk_bytes = std::clamp<int64_t>(chunk_bytes, 1, int64_t{1} << 20);
    grpc::ByteBuffer response;
    grpc::Status status;
    // The data slices reference the array: count them out, and return only
    // when gRPC has released every one (the call, held by its context, may
    // keep a failed write's slices until the context goes), so the caller
    // may free the array.
    auto in_flight = std::make_shared<InFlight>();
    {
      py::gil_scoped_release unlocked;
      {
        grpc::ClientContext ctx;
        Prepare(&ctx, metadata, timeout);
        const grpc::internal::RpcMethod method(
            kPutMethod, grpc::internal::RpcMethod::CLIENT_STREAMING, channel_);
        std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer(
            grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(
                channel_.get(), method, &ctx, &response));
        grpc::Slice first(header_bytes);
        bool ok = writer->Write(grpc::ByteBuffer(&first, 1));
        for (int64_t at = 0; ok && at < n; at += chunk_bytes) {
          const int64_t len = std::min(chunk_bytes, n - at);
          std::string prefix(1, tensorcast::wire::LengthDelimitedTag(kPutData));
          tensorcast::wire::AppendVarint(&prefix, static_cast<uint64_t>(len));
          grpc::Slice slices[2] = {
              grpc::Slice(prefix),
              grpc::Slice(const_cast<char*>(bytes + at),
                          static_cast<size_t>(len), &InFlight::Release,
                          in_flight->Hold())};
          ok = writer->Write(grpc::ByteBuffer(slices, 2));
        }
        if (ok) writer->WritesDone();
        status = writer->Finish();
      }
      in_flight->WaitForNone();
    }
    if (!status.ok()) {
      Raise({static_cast<int>(status.error_code()), status.error_message()});
    }
    std::vector<grpc::Slice> slices;
    std::string out;
    if (response.Dump(&slices).ok()) {
      for (const grpc::Slice& s : slices) {
        out.append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
    return py::bytes(out);
  }

 private:
  // One FetchResponse: its header first (the fields may come in any order;
  // on the header Python gives the destination), then its data, copied in.
  static Failure Consume(const grpc::ByteBuffer& message,
                         const py::function& on_header, char** dst,
                         int64_t* capacity, int64_t* written) {
    const Failure malformed{static_cast<int>(grpc::StatusCode::DATA_LOSS),
                            "malformed FetchResponse from the server"};
    for (int pass = 0; pass < 2; ++pass) {
      tensorcast::wire::SliceReader in(message);
      while (!in.done()) {
        uint64_t field, wire_type, n;
        if (!in.NextField(&field, &wire_type, &n)) return malformed;
        if (wire_type != tensorcast::wire::kLengthDelimited) continue;
        if (pass == 0 && field == kFetchHeader) {
          std::string header;
          if (!in.Copy(n, &header)) return malformed;
          if (*capacity >= 0) {
            return {static_cast<int>(grpc::StatusCode::DATA_LOSS),
                    "the Fetch stream sent a second header"};
          }
          if (Failure f = Destination(on_header, header, dst, capacity);
              f.code != 0) {
            return f;
          }
        } else if (pass == 1 && field == kFetchData) {
          if (*capacity < 0) {
            return {static_cast<int>(grpc::StatusCode::DATA_LOSS),
                    "the Fetch stream sent data before its header"};
          }
          if (static_cast<uint64_t>(*capacity - *written) < n) {
            return {static_cast<int>(grpc::StatusCode::DATA_LOSS),
                    "the Fetch stream sent more bytes than it announced"};
          }
          if (!in.Take(n, [&](absl::string_view piece) {
                std::memcpy(*dst + *written, piece.data(), piece.size());
                *written += static_cast<int64_t>(piece.size());
                return true;
              })) {
            return malformed;
          }
        } else if (!in.Skip(n)) {
          return malformed;
        }
      }
    }
    return {};
  }

  // Asks Python (on_header) for the destination of the data. A Python
  // exception stays set for the caller to raise.
  static Failure Destination(const py::function& on_header,
                             const std::string& header, char** dst,
                             int64_t* capacity) {
    py::gil_scoped_acquire locked;
    try {
      py::object target = on_header(py::bytes(header));
      py::buffer_info info = py::buffer(target).request(true);
      *dst = static_cast<char*>(info.ptr);
      *capacity = info.size * info.itemsize;
      return {};
    } catch (py::error_already_set& e) {
      Failure f{static_cast<int>(grpc::StatusCode::INTERNAL), e.what()};
      e.restore();
      return f;
    } catch (const std::exception& e) {
      return {static_cast<int>(grpc::StatusCode::INTERNAL),
              std::string("the Fetch destination: ") + e.what()};
    }
  }

  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "tensorcast's native Fetch/Put path (gRPC C++, GIL released)";
  rpc_error = PyErr_NewException("tensorcast._native.RpcError",
                                 PyExc_RuntimeError, nullptr);
  m.attr("RpcError") = py::handle(rpc_error);
  py::class_<Channel>(m, "Channel")
      .def(py::init<const std::string&, int>(), py::arg("target"),
           py::arg("max_message_bytes"))
      .def("fetch", &Channel::Fetch, py::arg("request"), py::arg("metadata"),
           py::arg("timeout"), py::arg("on_header"))
      .def("put", &Channel::Put, py::arg("header"), py::arg("data"),
           py::arg("chunk_bytes"), py::arg("metadata"), py::arg("timeout"));
}
