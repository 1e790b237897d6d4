// GenericCall: one streaming RPC of raw grpc::ByteBuffer messages, driven
// to completion op by op on a completion queue of its own, so that the
// caller blocks as with gRPC's synchronous API. It uses only public gRPC
// API (grpc::GenericStub), and lets the bulk calls send and receive
// messages that the shared codec (codec.h) frames and decodes: the C++
// client's Fetch and the Python extension's Fetch and Put run on it.
// Header-only; one call, one thread.
#ifndef TENSORCAST_COMMON_GENERIC_CALL_H_
#define TENSORCAST_COMMON_GENERIC_CALL_H_

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/status.h>

#include <memory>
#include <string>
#include <utility>

namespace tensorcast {

class GenericCall {
 public:
  // Starts `method` ("/package.Service/Method") on `channel`. The context
  // (metadata, deadline) must outlive the call.
  GenericCall(const std::shared_ptr<grpc::Channel>& channel,
              const std::string& method, grpc::ClientContext* ctx)
      : ctx_(ctx) {
    grpc::GenericStub stub(channel);
    call_ = stub.PrepareCall(ctx, method, &cq_);
    if (call_ != nullptr) {
      call_->StartCall(this);
      open_ = Wait();
    }
  }
  GenericCall(const GenericCall&) = delete;
  GenericCall& operator=(const GenericCall&) = delete;

  // A call not finished is cancelled, then finished.
  ~GenericCall() {
    if (call_ != nullptr && !finished_) {
      ctx_->TryCancel();
      Finish();
    }
    cq_.Shutdown();
    void* tag;
    bool ok;
    while (cq_.Next(&tag, &ok)) {
    }
  }

  // False once the stream is broken (Finish then says why). The buffer's
  // slices may be released by gRPC later than this returns.
  bool Write(const grpc::ByteBuffer& message) {
    if (!open_) return false;
    call_->Write(message, this);
    return open_ = Wait();
  }
  // Half-closes the stream (no more writes).
  bool WritesDone() {
    if (!open_) return false;
    call_->WritesDone(this);
    return Wait();
  }
  // The next message; false at the end of the stream or when it broke.
  bool Read(grpc::ByteBuffer* message) {
    if (call_ == nullptr) return false;
    call_->Read(message, this);
    return Wait();
  }
  grpc::Status Finish() {
    if (call_ == nullptr) {
      return grpc::Status(grpc::StatusCode::INTERNAL, "cannot start the call");
    }
    grpc::Status status;
    call_->Finish(&status, this);
    Wait();
    finished_ = true;
    open_ = false;
    return status;
  }

 private:
  // Waits for the one operation in flight.
  bool Wait() {
    void* tag;
    bool ok = false;
    return cq_.Next(&tag, &ok) && ok;
  }

  grpc::CompletionQueue cq_;  // declared first: destroyed after the call
  grpc::ClientContext* ctx_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  bool open_ = false;
  bool finished_ = false;
};

}  // namespace tensorcast

#endif  // TENSORCAST_COMMON_GENERIC_CALL_H_
