// tensorcast._native: the Python client's fast path for the bulk RPCs.
//
// Fetch and Put run here, on a channel of the C++ gRPC library, with the
// GIL released: a Fetch's data fields are decoded from the slices gRPC
// received them in (the shared codec, client/cpp/codec.h) and copied once,
// straight into the destination's buffer (a fresh NumPy array, or the
// caller's own with fetch_into); a Put sends the array's memory as slices
// of its own (no copy into protobuf messages). Requests, headers and
// replies cross as serialized protobuf bytes, which the Python side builds
// and parses, so this module knows no message type. The calls run on
// grpc::GenericStub (common/generic_call.h), public gRPC API only. A
// Fetch or a Put may be given a Canceller, which another thread (the
// asyncio client's event loop, its task cancelled) stops it with: once
// Canceller.cancel() returns, a Fetch writes nothing more into its
// destination; a Put not yet half-closed is cancelled (nothing stored).
//
// Written against Python's limited C API (3.11 and up: the buffer
// protocol), so one build serves every later CPython (an abi3 wheel);
// built without Py_LIMITED_API for older ones.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/slice.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "client/cpp/codec.h"
#include "common/generic_call.h"

namespace {

constexpr char kFetchMethod[] = "/tensorcast.v1.TensorService/Fetch";
constexpr char kPutMethod[] = "/tensorcast.v1.TensorService/Put";
// Fresh destinations this large are prefaulted (when asked) before data
// comes: transparent huge pages where the kernel allows, then every page
// populated in one call instead of one fault per 4 KiB page mid-copy.
constexpr int64_t kPrefaultMinBytes = int64_t{16} << 20;
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older kernels answer EINVAL
#endif

// Raised as tensorcast._native.RpcError(code, details).
PyObject* rpc_error = nullptr;

struct Failure {
  int code = 0;  // a grpc::StatusCode; 0 = none
  std::string details;
};

using Metadata = std::vector<std::pair<std::string, std::string>>;

// Py_buffer released on scope exit (the GIL must be held then).
struct BufferView {
  Py_buffer view{};
  bool held = false;
  ~BufferView() {
    if (held) PyBuffer_Release(&view);
  }
};

// metadata: an iterable of (str, str) pairs. False with an exception set.
bool ParseMetadata(PyObject* obj, Metadata* out) {
  PyObject* it = PyObject_GetIter(obj);
  if (it == nullptr) return false;
  PyObject* item;
  while ((item = PyIter_Next(it)) != nullptr) {
    const char *k, *v;
    Py_ssize_t kn, vn;
    const bool ok = PyArg_ParseTuple(item, "s#s#", &k, &kn, &v, &vn) != 0;
    Py_DECREF(item);
    if (!ok) {
      Py_DECREF(it);
      return false;
    }
    out->emplace_back(std::string(k, static_cast<size_t>(kn)),
                      std::string(v, static_cast<size_t>(vn)));
  }
  Py_DECREF(it);
  return PyErr_Occurred() == nullptr;
}

void Prepare(grpc::ClientContext* ctx, const Metadata& metadata,
             double timeout) {
  for (const auto& [key, value] : metadata) ctx->AddMetadata(key, value);
  if (timeout > 0) {
    ctx->set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::microseconds(static_cast<int64_t>(timeout * 1e6)));
  }
}

// Sets RpcError(code, details); returns nullptr.
PyObject* RaiseFailure(const Failure& f) {
  PyObject* args = Py_BuildValue("(is#)", f.code, f.details.data(),
                                 static_cast<Py_ssize_t>(f.details.size()));
  if (args != nullptr) {
    PyErr_SetObject(rpc_error, args);
    Py_DECREF(args);
  }
  return nullptr;
}

// Faults in `n` bytes at p (whole pages inside the range only), asking for
// huge pages first. Best effort: a kernel that has neither says EINVAL.
void Prefault(char* p, int64_t n) {
  const uintptr_t page = 4096;
  const uintptr_t begin =
      (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  if (end <= begin) return;
  void* at = reinterpret_cast<void*>(begin);
  madvise(at, end - begin, MADV_HUGEPAGE);
  madvise(at, end - begin, MADV_POPULATE_WRITE);
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

struct ChannelObject {
  PyObject_HEAD std::shared_ptr<grpc::Channel>* channel;
};

// What a Canceller shares with the Fetch it is passed to: the call's
// context while the call runs, and whether cancel() was called. Every
// write into the destination happens under `mu` after checking
// `cancelled`, so once cancel() has returned nothing writes there again.
//
// A Put checks it before each write: cancelled before its stream is
// half-closed, the call is cancelled (the server stores nothing); once
// `closing` is set (the half-close is under way) cancel() leaves the call
// be, so that its answer names what the server may have stored.
struct CancelState {
  std::mutex mu;
  grpc::ClientContext* ctx = nullptr;
  bool cancelled = false;
  bool closing = false;
};

struct CancellerObject {
  PyObject_HEAD CancelState* state;
};

// Ties a call's context to a Canceller for the call's lifetime (declared
// after the context, so it lets go of it first). A Canceller cancelled
// before the call started cancels it at once.
class CancelRegistration {
 public:
  CancelRegistration(CancelState* state, grpc::ClientContext* ctx)
      : state_(state) {
    if (state_ == nullptr) return;
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->ctx = ctx;
    state_->closing = false;
    if (state_->cancelled) ctx->TryCancel();
  }
  // Whether the call may go on: false once cancelled.
  bool Live() {
    if (state_ == nullptr) return true;
    std::lock_guard<std::mutex> lock(state_->mu);
    return !state_->cancelled;
  }
  // Before a Put's half-close: false (and the call cancelled) when
  // cancelled already; true, and later cancellations leave the call be.
  bool Close() {
    if (state_ == nullptr) return true;
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->cancelled) return false;
    state_->closing = true;
    return true;
  }
  ~CancelRegistration() {
    if (state_ == nullptr) return;
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->ctx = nullptr;
  }
  CancelRegistration(const CancelRegistration&) = delete;
  CancelRegistration& operator=(const CancelRegistration&) = delete;

 private:
  CancelState* state_;
};

// Where a Fetch's data goes. Fresh: on_header(header_bytes) returns the
// object whose writable buffer is filled. Into: `out`'s buffer, taken and
// checked before the call; on_header(header_bytes) returns the byte count
// the header announces, which must be out's size.
struct Destination {
  PyObject* on_header = nullptr;
  bool into = false;
  bool prefault = false;
  BufferView buffer;
  char* dst = nullptr;
  int64_t capacity = -1;  // -1 until the header has come
  int64_t written = 0;
  CancelState* cancel = nullptr;  // from a Canceller, or none
};

// Runs with the GIL held. A Python exception stays set for the caller.
Failure OnHeader(Destination* d, std::string_view header) {
  const Failure python{static_cast<int>(grpc::StatusCode::INTERNAL),
                       "the Fetch destination"};
  PyObject* result =
      PyObject_CallFunction(d->on_header, "y#", header.data(),
                            static_cast<Py_ssize_t>(header.size()));
  if (result == nullptr) return python;
  if (d->into) {
    const long long n = PyLong_AsLongLong(result);
    Py_DECREF(result);
    if (n == -1 && PyErr_Occurred() != nullptr) return python;
    if (n != static_cast<long long>(d->buffer.view.len)) {
      PyErr_Format(PyExc_ValueError,
                   "the fetched tensor has %lld bytes; out has %zd", n,
                   d->buffer.view.len);
      return python;
    }
  } else {
    const int got = PyObject_GetBuffer(result, &d->buffer.view,
                                       PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS);
    Py_DECREF(result);
    if (got != 0) return python;
    d->buffer.held = true;
  }
  d->dst = static_cast<char*>(d->buffer.view.buf);
  d->capacity = static_cast<int64_t>(d->buffer.view.len);
  return {};
}

// Runs Fetch(request) into d. Returns nullptr with an exception set, or the
// bytes written.
PyObject* RunFetch(ChannelObject* self, const std::string& request,
                   const Metadata& metadata, double timeout, Destination* d) {
  Failure failure;
  PyThreadState* saved = PyEval_SaveThread();
  try {
    grpc::ClientContext ctx;
    Prepare(&ctx, metadata, timeout);
    CancelRegistration registration(d->cancel, &ctx);
    tensorcast::GenericCall call(*self->channel, kFetchMethod, &ctx);
    grpc::Slice slice(request);
    if (call.Write(grpc::ByteBuffer(&slice, 1))) call.WritesDone();
    tensorcast::codec::FetchDecoder decoder;
    grpc::ByteBuffer message;
    std::vector<grpc::Slice> slices;
    std::vector<std::string_view> pieces;
    int64_t messages = 0;
    while (failure.code == 0 && call.Read(&message)) {
      slices.clear();
      pieces.clear();
      if (!message.Dump(&slices).ok()) slices.clear();
      for (const grpc::Slice& s : slices) {
        pieces.emplace_back(reinterpret_cast<const char*>(s.begin()), s.size());
      }
      const tensorcast::codec::FetchError e = decoder.Next(
          pieces.data(), pieces.size(),
          [&](std::string_view header) {
            PyEval_RestoreThread(saved);
            failure = OnHeader(d, header);
            saved = PyEval_SaveThread();
            if (failure.code == 0 && d->prefault && !d->into &&
                d->capacity >= kPrefaultMinBytes) {
              Prefault(d->dst, d->capacity);
            }
            return failure.code == 0;
          },
          [&](std::string_view piece) {
            if (static_cast<uint64_t>(d->capacity - d->written) <
                piece.size()) {
              failure = {static_cast<int>(grpc::StatusCode::DATA_LOSS),
                         "the Fetch stream sent more bytes than it announced"};
              return false;
            }
            if (d->cancel != nullptr) {
              std::lock_guard<std::mutex> lock(d->cancel->mu);
              if (d->cancel->cancelled) {
                failure = {static_cast<int>(grpc::StatusCode::CANCELLED),
                           "the Fetch was cancelled"};
                return false;
              }
              std::memcpy(d->dst + d->written, piece.data(), piece.size());
            } else {
              std::memcpy(d->dst + d->written, piece.data(), piece.size());
            }
            d->written += static_cast<int64_t>(piece.size());
            return true;
          });
      if (e != tensorcast::codec::FetchError::kNone && failure.code == 0) {
        failure = {static_cast<int>(grpc::StatusCode::DATA_LOSS),
                   tensorcast::codec::Describe(e)};
      }
      // Let Ctrl-C through every few messages.
      if (failure.code == 0 && ++messages % 16 == 0) {
        PyEval_RestoreThread(saved);
        if (PyErr_CheckSignals() != 0) {
          PyErr_Clear();
          failure = {static_cast<int>(grpc::StatusCode::CANCELLED),
                     "interrupted"};
          PyErr_SetInterrupt();  // re-raised as KeyboardInterrupt below
        }
        saved = PyEval_SaveThread();
      }
    }
    if (failure.code != 0) ctx.TryCancel();
    grpc::Status status = call.Finish();
    if (failure.code == 0 && !status.ok()) {
      failure = {static_cast<int>(status.error_code()), status.error_message()};
    }
  } catch (const std::exception& e) {
    failure = {static_cast<int>(grpc::StatusCode::INTERNAL), e.what()};
  }
  PyEval_RestoreThread(saved);
  if (failure.code != 0) {
    // The caller's own exception (from on_header), or Ctrl-C, first.
    if (PyErr_Occurred() != nullptr) return nullptr;
    if (PyErr_CheckSignals() != 0) return nullptr;
    return RaiseFailure(failure);
  }
  return PyLong_FromLongLong(d->written);
}

// cancel: None or a Canceller; false with an exception set otherwise.
bool ParseCancel(PyObject* obj, CancelState** out);

const char* fetch_keywords[] = {"request",  "metadata", "timeout", "on_header",
                                "prefault", "cancel",   nullptr};

PyObject* Fetch(PyObject* self, PyObject* args, PyObject* kwargs) {
  const char* request;
  Py_ssize_t request_len;
  PyObject* metadata_obj;
  double timeout;
  Destination d;
  int prefault = 0;
  PyObject* cancel = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y#OdO|pO",
                                   const_cast<char**>(fetch_keywords), &request,
                                   &request_len, &metadata_obj, &timeout,
                                   &d.on_header, &prefault, &cancel)) {
    return nullptr;
  }
  if (!ParseCancel(cancel, &d.cancel)) return nullptr;
  d.prefault = prefault != 0;
  Metadata metadata;
  if (!ParseMetadata(metadata_obj, &metadata)) return nullptr;
  return RunFetch(reinterpret_cast<ChannelObject*>(self),
                  std::string(request, static_cast<size_t>(request_len)),
                  metadata, timeout, &d);
}

const char* fetch_into_keywords[] = {"request",   "metadata", "timeout", "out",
                                     "on_header", "cancel",   nullptr};

PyObject* FetchInto(PyObject* self, PyObject* args, PyObject* kwargs) {
  const char* request;
  Py_ssize_t request_len;
  PyObject* metadata_obj;
  PyObject* out;
  double timeout;
  Destination d;
  d.into = true;
  PyObject* cancel = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y#OdOO|O",
                                   const_cast<char**>(fetch_into_keywords),
                                   &request, &request_len, &metadata_obj,
                                   &timeout, &out, &d.on_header, &cancel)) {
    return nullptr;
  }
  if (!ParseCancel(cancel, &d.cancel)) return nullptr;
  // out: any buffer, checked here before the call, each way it can fail
  // said in words.
  if (PyObject_GetBuffer(out, &d.buffer.view, PyBUF_FULL_RO) != 0) {
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError,
                 "out must be a writable buffer (a NumPy array, bytearray, "
                 "memoryview), not %R",
                 reinterpret_cast<PyObject*>(Py_TYPE(out)));
    return nullptr;
  }
  d.buffer.held = true;
  if (d.buffer.view.readonly) {
    PyErr_SetString(PyExc_ValueError, "out is read-only");
    return nullptr;
  }
  if (!PyBuffer_IsContiguous(&d.buffer.view, 'C')) {
    PyErr_SetString(PyExc_ValueError, "out is not C-contiguous");
    return nullptr;
  }
  Metadata metadata;
  if (!ParseMetadata(metadata_obj, &metadata)) return nullptr;
  return RunFetch(reinterpret_cast<ChannelObject*>(self),
                  std::string(request, static_cast<size_t>(request_len)),
                  metadata, timeout, &d);
}

const char* put_keywords[] = {"header",  "data",   "chunk_bytes", "metadata",
                              "timeout", "cancel", nullptr};

// Runs Put: `header` (a serialized PutRequest holding the header), then
// `data` (a buffer: the array's bytes) in chunks of chunk_bytes, each a
// PutRequest whose data field is a slice of that memory. Returns the
// serialized PutResponse.
PyObject* Put(PyObject* self_obj, PyObject* args, PyObject* kwargs) {
  auto* self = reinterpret_cast<ChannelObject*>(self_obj);
  const char* header;
  Py_ssize_t header_len;
  PyObject* data;
  long long chunk_bytes;
  PyObject* metadata_obj;
  double timeout;
  PyObject* cancel_obj = Py_None;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "y#OLOd|O",
                                   const_cast<char**>(put_keywords), &header,
                                   &header_len, &data, &chunk_bytes,
                                   &metadata_obj, &timeout, &cancel_obj)) {
    return nullptr;
  }
  CancelState* cancel = nullptr;
  if (!ParseCancel(cancel_obj, &cancel)) return nullptr;
  BufferView buffer;
  if (PyObject_GetBuffer(data, &buffer.view, PyBUF_C_CONTIGUOUS) != 0) {
    return nullptr;
  }
  buffer.held = true;
  Metadata metadata;
  if (!ParseMetadata(metadata_obj, &metadata)) return nullptr;
  const std::string header_bytes(header, static_cast<size_t>(header_len));
  const char* bytes = static_cast<const char*>(buffer.view.buf);
  const int64_t n = static_cast<int64_t>(buffer.view.len);
  const int64_t chunk =
      std::clamp<int64_t>(chunk_bytes, 1, tensorcast::codec::kMaxPutChunkBytes);
  grpc::ByteBuffer response;
  grpc::Status status;
  bool got_response = false;
  Failure failure;
  PyThreadState* saved = PyEval_SaveThread();
  try {
    // The data slices reference the array: count them out, and return only
    // when gRPC has released every one (the call may keep a failed write's
    // slices until it is destroyed), so the caller may free the array.
    auto in_flight = std::make_shared<InFlight>();
    {
      grpc::ClientContext ctx;
      Prepare(&ctx, metadata, timeout);
      CancelRegistration registration(cancel, &ctx);
      tensorcast::GenericCall call(*self->channel, kPutMethod, &ctx);
      const auto cancelled = [&] {
        ctx.TryCancel();
        failure = {static_cast<int>(grpc::StatusCode::CANCELLED),
                   "the Put was cancelled: nothing was stored"};
        return false;
      };
      grpc::Slice first(header_bytes);
      bool ok = call.Write(grpc::ByteBuffer(&first, 1));
      for (int64_t at = 0; ok && at < n; at += chunk) {
        if (!registration.Live()) {
          ok = cancelled();
          break;
        }
        const int64_t len = std::min(chunk, n - at);
        char prefix[tensorcast::codec::kMaxPutDataPrefixBytes];
        const size_t k = tensorcast::codec::PutDataPrefix(
            static_cast<uint64_t>(len), prefix);
        grpc::Slice slices[2] = {
            grpc::Slice(prefix, k),
            grpc::Slice(const_cast<char*>(bytes + at), static_cast<size_t>(len),
                        &InFlight::Release, in_flight->Hold())};
        ok = call.Write(grpc::ByteBuffer(slices, 2));
      }
      // Past this point a cancellation leaves the call be: the server may
      // store the tensor once the stream is half-closed.
      if (ok && !registration.Close()) ok = cancelled();
      if (ok) call.WritesDone();
      got_response = call.Read(&response);
      status = call.Finish();
    }
    in_flight->WaitForNone();
  } catch (const std::exception& e) {
    failure = {static_cast<int>(grpc::StatusCode::INTERNAL), e.what()};
  }
  PyEval_RestoreThread(saved);
  if (failure.code == 0 && !status.ok()) {
    failure = {static_cast<int>(status.error_code()), status.error_message()};
  }
  if (failure.code == 0 && !got_response) {
    failure = {static_cast<int>(grpc::StatusCode::INTERNAL),
               "the Put call ended without a response"};
  }
  if (failure.code != 0) return RaiseFailure(failure);
  std::vector<grpc::Slice> slices;
  std::string out;
  if (response.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      out.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return PyBytes_FromStringAndSize(out.data(),
                                   static_cast<Py_ssize_t>(out.size()));
}

// -- Canceller ---------------------------------------------------------------

PyObject* canceller_type = nullptr;

int CancellerInit(PyObject* self_obj, PyObject* args, PyObject* kwargs) {
  auto* self = reinterpret_cast<CancellerObject*>(self_obj);
  if (!PyArg_ParseTuple(args, ":Canceller") ||
      (kwargs != nullptr && PyObject_Length(kwargs) > 0)) {
    if (!PyErr_Occurred()) {
      PyErr_SetString(PyExc_TypeError, "Canceller() takes no arguments");
    }
    return -1;
  }
  if (self->state == nullptr) self->state = new CancelState;
  return 0;
}

void CancellerDealloc(PyObject* self_obj) {
  auto* self = reinterpret_cast<CancellerObject*>(self_obj);
  delete self->state;
  self->state = nullptr;
  PyTypeObject* type = Py_TYPE(self_obj);
  auto free_fn = reinterpret_cast<freefunc>(PyType_GetSlot(type, Py_tp_free));
  free_fn(self_obj);
  Py_DECREF(type);
}

// Cancels the Fetch running with this Canceller (or the next one, at its
// start); returns once nothing writes into its destination any more. The
// calling thread waits at most for one piece's copy in progress.
PyObject* CancellerCancel(PyObject* self_obj, PyObject* /*unused*/) {
  CancelState* state = reinterpret_cast<CancellerObject*>(self_obj)->state;
  if (state == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "the Canceller is not initialised");
    return nullptr;
  }
  // The GIL is let go while a piece's copy ends (the copy needs no GIL).
  PyThreadState* saved = PyEval_SaveThread();
  {
    std::lock_guard<std::mutex> lock(state->mu);
    state->cancelled = true;
    if (state->ctx != nullptr && !state->closing) state->ctx->TryCancel();
  }
  PyEval_RestoreThread(saved);
  Py_RETURN_NONE;
}

PyObject* CancellerCancelled(PyObject* self_obj, PyObject* /*unused*/) {
  CancelState* state = reinterpret_cast<CancellerObject*>(self_obj)->state;
  if (state == nullptr) Py_RETURN_FALSE;
  std::lock_guard<std::mutex> lock(state->mu);
  return PyBool_FromLong(state->cancelled ? 1 : 0);
}

bool ParseCancel(PyObject* obj, CancelState** out) {
  *out = nullptr;
  if (obj == Py_None) return true;
  const int is = PyObject_IsInstance(obj, canceller_type);
  if (is < 0) return false;
  if (is == 0) {
    PyErr_SetString(PyExc_TypeError, "cancel must be a Canceller or None");
    return false;
  }
  *out = reinterpret_cast<CancellerObject*>(obj)->state;
  if (*out == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "the Canceller is not initialised");
    return false;
  }
  return true;
}

PyMethodDef canceller_methods[] = {
    {"cancel", CancellerCancel, METH_NOARGS,
     "cancel() -> None\n"
     "Cancel the Fetch this was passed to (or the next one, at its start).\n"
     "Once it returns, that Fetch writes nothing more into its destination;\n"
     "the call then ends with RpcError(CANCELLED)."},
    {"cancelled", CancellerCancelled, METH_NOARGS,
     "cancelled() -> bool\nWhether cancel() was called."},
    {nullptr, nullptr, 0, nullptr}};

PyType_Slot canceller_slots[] = {
    {Py_tp_doc,
     const_cast<char*>("Canceller(): pass as fetch(cancel=...) or "
                       "fetch_into(cancel=...) to stop that call from another "
                       "thread")},
    {Py_tp_new, reinterpret_cast<void*>(PyType_GenericNew)},
    {Py_tp_init, reinterpret_cast<void*>(CancellerInit)},
    {Py_tp_dealloc, reinterpret_cast<void*>(CancellerDealloc)},
    {Py_tp_methods, canceller_methods},
    {0, nullptr}};

PyType_Spec canceller_spec = {"tensorcast._native.Canceller",
                              sizeof(CancellerObject), 0, Py_TPFLAGS_DEFAULT,
                              canceller_slots};

// -- Channel
// -------------------------------------------------------------------

const char* init_keywords[] = {"target", "max_message_bytes", nullptr};

int ChannelInit(PyObject* self_obj, PyObject* args, PyObject* kwargs) {
  auto* self = reinterpret_cast<ChannelObject*>(self_obj);
  const char* target;
  int max_message_bytes;
  if (!PyArg_ParseTupleAndKeywords(args, kwargs, "si",
                                   const_cast<char**>(init_keywords), &target,
                                   &max_message_bytes)) {
    return -1;
  }
  try {
    grpc::ChannelArguments channel_args;
    channel_args.SetMaxReceiveMessageSize(max_message_bytes);
    channel_args.SetMaxSendMessageSize(max_message_bytes);
    auto channel = grpc::CreateCustomChannel(
        target, grpc::InsecureChannelCredentials(), channel_args);
    delete self->channel;
    self->channel = new std::shared_ptr<grpc::Channel>(std::move(channel));
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return -1;
  }
  return 0;
}

void ChannelDealloc(PyObject* self_obj) {
  auto* self = reinterpret_cast<ChannelObject*>(self_obj);
  delete self->channel;
  self->channel = nullptr;
  PyTypeObject* type = Py_TYPE(self_obj);
  auto free_fn = reinterpret_cast<freefunc>(PyType_GetSlot(type, Py_tp_free));
  free_fn(self_obj);
  Py_DECREF(type);
}

// The channel must have been initialised (Channel.__init__ ran).
template <PyObject* (*F)(PyObject*, PyObject*, PyObject*)>
PyObject* Guarded(PyObject* self, PyObject* args, PyObject* kwargs) {
  if (reinterpret_cast<ChannelObject*>(self)->channel == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "the channel is not initialised");
    return nullptr;
  }
  try {
    return F(self, args, kwargs);
  } catch (const std::bad_alloc&) {
    return PyErr_NoMemory();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    return nullptr;
  }
}

PyMethodDef channel_methods[] = {
    {"fetch", reinterpret_cast<PyCFunction>(Guarded<Fetch>),
     METH_VARARGS | METH_KEYWORDS,
     "fetch(request, metadata, timeout, on_header, prefault=False, "
     "cancel=None) -> int\n"
     "Fetch into a fresh buffer: on_header(header_bytes) returns it.\n"
     "cancel: a Canceller another thread may stop the call with."},
    {"fetch_into", reinterpret_cast<PyCFunction>(Guarded<FetchInto>),
     METH_VARARGS | METH_KEYWORDS,
     "fetch_into(request, metadata, timeout, out, on_header, cancel=None) "
     "-> int\n"
     "Fetch into out (writable, C-contiguous): on_header(header_bytes)\n"
     "returns the byte count the header announces, which must be out's.\n"
     "cancel: a Canceller another thread may stop the call with."},
    {"put", reinterpret_cast<PyCFunction>(Guarded<Put>),
     METH_VARARGS | METH_KEYWORDS,
     "put(header, data, chunk_bytes, metadata, timeout, cancel=None) -> "
     "bytes\n"
     "cancel: a Canceller another thread may stop the call with, until its\n"
     "stream is half-closed (then the server's answer is waited for)."},
    {nullptr, nullptr, 0, nullptr}};

PyType_Slot channel_slots[] = {
    {Py_tp_doc, const_cast<char*>("Channel(target, max_message_bytes)")},
    {Py_tp_new, reinterpret_cast<void*>(PyType_GenericNew)},
    {Py_tp_init, reinterpret_cast<void*>(ChannelInit)},
    {Py_tp_dealloc, reinterpret_cast<void*>(ChannelDealloc)},
    {Py_tp_methods, channel_methods},
    {0, nullptr}};

PyType_Spec channel_spec = {"tensorcast._native.Channel", sizeof(ChannelObject),
                            0, Py_TPFLAGS_DEFAULT, channel_slots};

PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "_native",
    "tensorcast's native Fetch/Put path (gRPC C++, GIL released)",
    -1,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr};

}  // namespace

PyMODINIT_FUNC PyInit__native() {
  PyObject* m = PyModule_Create(&module_def);
  if (m == nullptr) return nullptr;
  rpc_error = PyErr_NewException("tensorcast._native.RpcError",
                                 PyExc_RuntimeError, nullptr);
  PyObject* type = PyType_FromSpec(&channel_spec);
  canceller_type = PyType_FromSpec(&canceller_spec);
  if (rpc_error == nullptr || type == nullptr || canceller_type == nullptr ||
      PyModule_AddObjectRef(m, "RpcError", rpc_error) != 0 ||
      PyModule_AddObjectRef(m, "Channel", type) != 0 ||
      PyModule_AddObjectRef(m, "Canceller", canceller_type) != 0 ||
      PyModule_AddIntConstant(m, "PREFAULT_MIN_BYTES", kPrefaultMinBytes) !=
          0) {
    Py_XDECREF(type);
    Py_XDECREF(canceller_type);
    canceller_type = nullptr;
    Py_DECREF(m);
    return nullptr;
  }
  Py_DECREF(type);
  return m;
}
