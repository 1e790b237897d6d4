// Put: a client stream of one header then data. The reactor feeds a PutSink
// and finishes as soon as anything is wrong (so a bad upload stops early and
// its memory goes back at once); the tensor is stored only when the client
// half-closes with every byte delivered. A cancelled client stores nothing,
// nor does a call whose token is revoked before its tensor is stored.
//
// The method is registered raw: each v1.PutRequest is decoded here from the
// slices it arrived in (proto/wire.h), so the data field's bytes go from
// gRPC's receive buffers into the tensor's host storage in one copy,
// without a protobuf string in between (a GPU upload goes through the
// sink's host staging, then pinned memory).
#include <grpcpp/support/byte_buffer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>

#include "proto/wire.h"
#include "server/service/proto_convert.h"
#include "server/service/status.h"
#include "server/service/tensor_service.h"
#include "server/store/put_sink.h"

namespace tensorcast {
namespace {

// v1.PutRequest's fields (a oneof).
constexpr uint64_t kHeaderField = 1;
constexpr uint64_t kDataField = 2;

class PutReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  PutReactor(TensorServiceImpl* service, grpc::CallbackServerContext* ctx,
             grpc::ByteBuffer* response)
      : service_(service), ctx_(ctx), response_(response) {
    service_->StreamStarted();
    absl::StatusOr<Caller> caller = service_->Admit(ctx_, &slot_, &live_);
    if (!caller.ok()) {
      Done(caller.status());
      return;
    }
    caller_ = *std::move(caller);
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // End of the client's stream: a normal half-close, or a cancellation.
      if (live_.revoked()) {
        Done(RevokedError("nothing was stored"));
      } else if (ctx_->IsCancelled()) {
        Done(
            absl::CancelledError("the client cancelled the upload; nothing "
                                 "was stored"));
      } else {
        Done(Complete());
      }
      return;
    }
    absl::Status status = Consume();
    if (!status.ok()) {
      Done(status);
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override {
    live_.End();
    service_->StreamEnded();
    delete this;
  }

 private:
  absl::Status Consume() {
    wire::SliceReader in(request_);
    while (!in.done()) {
      uint64_t field, wire_type, n;
      if (!in.NextField(&field, &wire_type, &n)) {
        return absl::InvalidArgumentError("malformed PutRequest");
      }
      if (wire_type != wire::kLengthDelimited) continue;
      if (field == kHeaderField) {
        if (sink_ != nullptr) {
          return absl::InvalidArgumentError(
              "a Put carries exactly one header, in its first message");
        }
        std::string bytes;
        v1::PutHeader header;
        if (!in.Copy(n, &bytes)) {
          return absl::InvalidArgumentError("malformed PutHeader");
        }
        if (absl::Status s = ParseStreamRequest(bytes, "PutHeader", &header);
            !s.ok()) {
          return s;
        }
        if (absl::Status s = Begin(header); !s.ok()) return s;
      } else if (field == kDataField) {
        if (sink_ == nullptr) {
          return absl::InvalidArgumentError(
              "the first Put message must be the header");
        }
        if (from_shared_memory_) {
          return absl::InvalidArgumentError(
              "a Put from shared memory carries no data messages");
        }
        service_->metrics().AddPutBytes(static_cast<int64_t>(n));
        absl::Status written;
        bool ok = in.Take(n, [&](absl::string_view piece) {
          written = sink_->Write(piece);
          return written.ok();
        });
        if (!written.ok()) return written;
        if (!ok) return absl::InvalidArgumentError("malformed PutRequest");
      } else if (!in.Skip(n)) {
        return absl::InvalidArgumentError("malformed PutRequest");
      }
    }
    if (sink_ == nullptr) {
      return absl::InvalidArgumentError(
          "the first Put message must be the header");
    }
    return absl::OkStatus();
  }

  absl::Status Begin(const v1::PutHeader& header) {
    absl::StatusOr<PutSpec> spec = PutSpecFromProto(header);
    if (!spec.ok()) return spec.status();
    absl::StatusOr<std::unique_ptr<PutSink>> sink =
        PutSink::Start(service_->ContextFor(caller_), *std::move(spec));
    if (!sink.ok()) return sink.status();
    sink_ = *std::move(sink);
    if (!header.shm_region().empty()) {
      return ReadSharedMemory(header);
    }
    return absl::OkStatus();
  }

  // Shared memory: the data is in the client's region; no data messages
  // may follow.
  absl::Status ReadSharedMemory(const v1::PutHeader& header) {
    absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>> region =
        service_->FindRegion(ctx_, caller_, header.shm_region());
    if (!region.ok()) return region.status();
    if (absl::Status s =
            (*region)->CheckRange(header.shm_offset(), header.shm_bytes());
        !s.ok()) {
      return s;
    }
    constexpr int64_t kPiece = 4 << 20;
    std::string buffer(
        static_cast<size_t>(std::min(kPiece, header.shm_bytes())), '\0');
    for (int64_t done = 0; done < header.shm_bytes();) {
      const int64_t n = std::min(kPiece, header.shm_bytes() - done);
      if (absl::Status s =
              (*region)->Read(header.shm_offset() + done, buffer.data(), n);
          !s.ok()) {
        return s;
      }
      if (absl::Status s = sink_->Write(absl::string_view(buffer.data(), n));
          !s.ok()) {
        return s;
      }
      service_->metrics().AddPutBytes(n);
      done += n;
    }
    from_shared_memory_ = true;
    return absl::OkStatus();
  }

  absl::Status Complete() {
    if (sink_ == nullptr) {
      return absl::InvalidArgumentError(
          "the upload ended before its header: nothing was stored");
    }
    // Stored only while the token stands: a revocation either comes first
    // (nothing is stored) or waits until the tensor is in (and then leaves
    // this call be).
    absl::StatusOr<TensorPtr> tensor;
    if (absl::Status s = live_.Commit([&] {
          tensor = sink_->Finish();
          return tensor.status();
        });
        !s.ok()) {
      return s;
    }
    v1::PutResponse response;
    FillTensorInfo(**tensor, response.mutable_tensor());
    bool own_buffer;
    if (!grpc::SerializationTraits<v1::PutResponse>::Serialize(
             response, response_, &own_buffer)
             .ok()) {
      return absl::InternalError("cannot encode the PutResponse");
    }
    return absl::OkStatus();
  }

  void Done(const absl::Status& status) {
    sink_.reset();  // an unfinished upload's storage goes back now
    slot_.Release();
    LogRpc(service_, "Put", ctx_, status, start_);
    Finish(ToGrpcStatus(TensorServiceImpl::ForCaller(status, caller_)));
  }

  TensorServiceImpl* const service_;
  grpc::CallbackServerContext* const ctx_;
  grpc::ByteBuffer* const response_;
  const std::chrono::steady_clock::time_point start_ =
      std::chrono::steady_clock::now();

  Caller caller_;
  LiveCall live_;    // cancels the call if its token is revoked
  StreamSlot slot_;  // one of the tenant's concurrent streams
  grpc::ByteBuffer request_;
  std::unique_ptr<PutSink> sink_;
  bool from_shared_memory_ = false;
};

}  // namespace

grpc::ServerReadReactor<grpc::ByteBuffer>* NewPutReactor(
    TensorServiceImpl* service, grpc::CallbackServerContext* ctx,
    grpc::ByteBuffer* response) {
  return new PutReactor(service, ctx, response);
}

}  // namespace tensorcast
