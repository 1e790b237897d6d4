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
// sink's host staging, then pinned memory). A shared-memory Put reads the
// client's region on the service's workers, 16 MiB at a time (its pieces
// take turns with other transfers'), never on gRPC's callback threads. A
// CUDA IPC region's bytes bound for a GPU tensor go device to device
// (PutSink::WriteFromDevice), in pieces of up to kDevicePieceBytes, with
// no host staging.
#include <grpcpp/support/byte_buffer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <string>

#include "proto/wire.h"
#include "server/service/proto_convert.h"
#include "server/service/reactors.h"
#include "server/service/request_limits.h"
#include "server/service/stream_call.h"
#include "server/store/put_sink.h"

namespace tensorcast {
namespace {

// v1.PutRequest's fields (a oneof).
constexpr uint64_t kHeaderField = 1;
constexpr uint64_t kDataField = 2;

// What a shared-memory Put reads from the region before it lets the other
// transfers' pieces have the worker.
constexpr int64_t kSharedMemoryPieceBytes = 16 << 20;
// The same for a device-to-device Put: the GPU copies this in about a
// millisecond.
constexpr int64_t kDevicePieceBytes = int64_t{1} << 30;
// What a Put from device memory reads to the host while the sink still
// waits for the whole .npy header (the header itself is usually 128
// bytes): the data after it then goes device to device.
constexpr int64_t kDeviceHeaderReadBytes = 4096;

class PutReactor final : public grpc::ServerReadReactor<grpc::ByteBuffer> {
 public:
  PutReactor(ServiceContext* service, grpc::CallbackServerContext* ctx,
             grpc::ByteBuffer* response)
      : service_(service), ctx_(ctx), response_(response) {
    if (absl::Status s = call_.Admit(); !s.ok()) {
      Done(s);
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // End of the client's stream: a normal half-close, or a cancellation.
      if (call_.live().revoked() || ctx_->IsCancelled()) {
        Done(call_.Interrupted());
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
    if (shm_left_ > 0) {
      // The region's bytes, in pieces on the service's workers; then the
      // next read (which must be the end of the stream).
      service_->shm_workers()->Run([this] { CopyFromSharedMemory(); });
      return;
    }
    StartRead(&request_);
  }

  void OnDone() override {
    call_.End();
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
        PutSink::Start(service_->ContextFor(call_.caller()), *std::move(spec));
    if (!sink.ok()) return sink.status();
    sink_ = *std::move(sink);
    if (!header.shm_region().empty()) {
      return StartSharedMemory(header);
    }
    return absl::OkStatus();
  }

  // Shared memory: the data is in the client's region (its challenge in
  // place), the whole range checked before anything is read; no data
  // messages may follow.
  absl::Status StartSharedMemory(const v1::PutHeader& header) {
    absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>> region =
        service_->FindRegion(ctx_, call_.caller(), header.shm_region());
    if (!region.ok()) return region.status();
    if (absl::Status s =
            (*region)->CheckRange(header.shm_offset(), header.shm_bytes());
        !s.ok()) {
      return s;
    }
    from_shared_memory_ = true;
    if (header.shm_bytes() > 0) {
      region_ = *std::move(region);
      shm_at_ = header.shm_offset();
      shm_left_ = header.shm_bytes();
    }
    return absl::OkStatus();
  }

  // One piece of a shared-memory Put, on a worker: then the next piece
  // queues behind the other transfers' pieces, or, the range read, the
  // next message is awaited.
  void CopyFromSharedMemory() {
    const absl::Status status =
        ctx_->IsCancelled() ? call_.Interrupted() : CopyPiece();
    if (!status.ok()) {
      Done(status);
      return;
    }
    if (shm_left_ > 0) {
      service_->shm_workers()->Run([this] { CopyFromSharedMemory(); });
      return;
    }
    region_.reset();  // here, on a worker: a last reference punches it out
    StartRead(&request_);
  }

  // Reads into the sink (straight into a host tensor's storage), 4 MiB at a
  // time, until kSharedMemoryPieceBytes have moved or the range is done; a
  // device region's bytes bound for a GPU tensor, device to device.
  absl::Status CopyPiece() {
    constexpr int64_t kReadBytes = 4 << 20;
    const bool device = region_->device() >= 0;
    int64_t moved = 0;
    while (shm_left_ > 0 && moved < kSharedMemoryPieceBytes) {
      if (device && sink_->TakesDeviceBytes()) {
        const int64_t n = std::min(kDevicePieceBytes, shm_left_);
        if (absl::Status s = sink_->WriteFromDevice(
                n, region_->device(), region_->device_data(shm_at_));
            !s.ok()) {
          return s;
        }
        service_->metrics().AddPutBytes(n);
        shm_at_ += n;
        shm_left_ -= n;
        moved += n;
        continue;
      }
      const int64_t n = std::min(
          device && !sink_->reserved() ? kDeviceHeaderReadBytes : kReadBytes,
          shm_left_);
      if (absl::Status s = sink_->WriteFrom(
              n, [&](char* dst) { return region_->Read(shm_at_, dst, n); });
          !s.ok()) {
        return s;
      }
      service_->metrics().AddPutBytes(n);
      shm_at_ += n;
      shm_left_ -= n;
      moved += n;
    }
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
    if (absl::Status s = call_.live().Commit([&] {
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
    region_.reset();
    sink_.reset();  // an unfinished upload's storage goes back now
    Finish(call_.Finish(status));
  }

  ServiceContext* const service_;
  grpc::CallbackServerContext* const ctx_;
  grpc::ByteBuffer* const response_;
  StreamCall call_{service_, ctx_, "Put", "nothing was stored",
                   "the client cancelled the upload; nothing was stored"};
  grpc::ByteBuffer request_;
  std::unique_ptr<PutSink> sink_;
  bool from_shared_memory_ = false;
  // A shared-memory Put's region, where its next byte is, and how many are
  // left.
  std::shared_ptr<const SharedMemoryRegion> region_;
  int64_t shm_at_ = 0;
  int64_t shm_left_ = 0;
};

}  // namespace

grpc::ServerReadReactor<grpc::ByteBuffer>* NewPutReactor(
    ServiceContext* service, grpc::CallbackServerContext* ctx,
    grpc::ByteBuffer* response) {
  return new PutReactor(service, ctx, response);
}

}  // namespace tensorcast
