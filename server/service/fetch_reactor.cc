// Fetch: a server stream of chunks from a FetchStream. One chunk is written
// at a time and the next is taken when gRPC reports the previous write done,
// so slow clients pace the server; a host tensor's chunk is produced then, a
// GPU tensor's next chunks are already under way on the GPU (a few slots of
// pinned memory per stream, whatever the tensor size). A shared-memory
// Fetch copies into the client's region on the service's workers, 16 MiB at
// a time (its pieces take turns with other transfers'), never on gRPC's
// callback threads, which every other call needs; then it sends the header.
// A GPU tensor fetched into a CUDA IPC region goes device to device instead
// (DeviceFetch, server/store/device_fetch.h), in pieces of up to
// kDevicePieceBytes, with no host staging and no pinned slots.
//
// The method is registered raw: each response is a v1.FetchResponse encoded
// here as a small slice (the header message, the data field's tag and
// length, any .npy header bytes) followed by a slice that references the
// chunk's bytes -- the tensor's storage itself when it can be sent as it
// lies -- released by gRPC when it has sent them. The wire format is the
// ordinary message; only the copy into a protobuf string is gone.
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "proto/wire.h"
#include "server/service/proto_convert.h"
#include "server/service/reactors.h"
#include "server/service/request_limits.h"
#include "server/service/stream_call.h"
#include "server/store/device_fetch.h"
#include "server/store/fetch_source.h"
#include "server/store/fetch_stream.h"

namespace tensorcast {
namespace {

// FetchResponse.data's field number.
constexpr int kDataField = 1;

// What a shared-memory Fetch copies into the region before it lets the
// other transfers' pieces have the worker (at least one chunk).
constexpr int64_t kSharedMemoryPieceBytes = 16 << 20;
// The same for a device-to-device Fetch: the GPU moves this in about a
// millisecond, and one piece is one kernel (or one copy).
constexpr int64_t kDevicePieceBytes = int64_t{1} << 30;

void ReleaseChunk(void* keepalive) {
  delete static_cast<std::shared_ptr<const void>*>(keepalive);
}

// One FetchResponse: `header` (if any) first, then the chunk as `data`.
grpc::ByteBuffer EncodeResponse(const v1::FetchHeader* header,
                                FetchChunk* chunk) {
  std::string prefix;
  if (header != nullptr) {
    v1::FetchResponse with_header;
    *with_header.mutable_header() = *header;
    with_header.SerializeToString(&prefix);
  }
  const int64_t data_bytes =
      static_cast<int64_t>(chunk->header.size()) + chunk->size;
  if (data_bytes > 0) {
    prefix.push_back(wire::LengthDelimitedTag(kDataField));
    wire::AppendVarint(&prefix, static_cast<uint64_t>(data_bytes));
    prefix += chunk->header;
  }
  grpc::Slice slices[2] = {grpc::Slice(prefix), grpc::Slice()};
  size_t n = 1;
  if (chunk->size > 0) {
    slices[n++] = grpc::Slice(
        const_cast<char*>(chunk->data), static_cast<size_t>(chunk->size),
        &ReleaseChunk,
        new std::shared_ptr<const void>(std::move(chunk->keepalive)));
  }
  return grpc::ByteBuffer(slices, n);
}

class FetchReactor final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  FetchReactor(ServiceContext* service, grpc::CallbackServerContext* ctx,
               const grpc::ByteBuffer* raw_request)
      : service_(service), ctx_(ctx) {
    if (absl::Status s = call_.Admit(); !s.ok()) {
      Done(s);
      return;
    }
    v1::FetchRequest parsed;
    if (absl::Status s = ParseStreamRequest(*raw_request, "Fetch", &parsed);
        !s.ok()) {
      Done(s);
      return;
    }
    const v1::FetchRequest* request = &parsed;
    absl::StatusOr<FetchSource> source = Open(*request);
    if (!source.ok()) {
      Done(source.status());
      return;
    }
    const bool shared = !request->shm_region().empty();
    if (shared) {
      // The region (its challenge in place) and the whole range, checked
      // before anything is charged or written.
      if (absl::Status s = StartSharedMemory(*request, *source); !s.ok()) {
        Done(s);
        return;
      }
    }
    if (shared && DeviceFetch::Applies(*source, *region_)) {
      // A GPU tensor into device memory: device to device, its temporary
      // (if it needs one) charged to the caller's tenant before any work.
      absl::StatusOr<std::unique_ptr<DeviceFetch>> device = DeviceFetch::Open(
          *std::move(source), region_, shm_at_, call_.caller().tenant);
      if (!device.ok()) {
        Done(device.status());
        return;
      }
      device_ = *std::move(device);
      FillFetchHeader(device_->source(), request->format(), &header_);
    } else {
      int64_t chunk = request->chunk_bytes() > 0
                          ? request->chunk_bytes()
                          : service_->options().chunk_bytes;
      // The stream's buffers are charged to the caller's tenant (and a GPU
      // stream's pinned slots reserved) here, before any work.
      absl::StatusOr<std::unique_ptr<FetchStream>> stream = FetchStream::Open(
          *std::move(source), std::clamp(chunk, kMinChunkBytes, kMaxChunkBytes),
          service_->BudgetFor(call_.caller()));
      if (!stream.ok()) {
        Done(stream.status());
        return;
      }
      stream_ = *std::move(stream);
      FillFetchHeader(stream_->source(), request->format(), &header_);
    }
    if (shared) {
      // Shared memory: every byte into the client's region, in pieces on
      // the service's workers (not here, on gRPC's thread), then one
      // message with the header alone.
      service_->shm_workers()->Run([this] { CopyToSharedMemory(); });
      return;
    }
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Done(call_.Interrupted());
      return;
    }
    if (stream_ == nullptr || stream_->done()) {
      Done(absl::OkStatus());
      return;
    }
    WriteNext();
  }

  void OnDone() override {
    call_.End();
    delete this;
  }

 private:
  absl::StatusOr<FetchSource> Open(const v1::FetchRequest& request) {
    absl::StatusOr<FetchSpec> spec = FetchSpecFromProto(request);
    if (!spec.ok()) return spec.status();
    absl::StatusOr<TensorPtr> tensor =
        service_->store()->Get(request.ref(), call_.caller().tenant.get());
    if (!tensor.ok()) return tensor.status();
    return FetchSource::Open(*std::move(tensor), *spec);
  }

  // The region (its challenge in place) and the whole range of `out`,
  // checked before anything is written.
  absl::Status StartSharedMemory(const v1::FetchRequest& request,
                                 const FetchSource& out) {
    absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>> region =
        service_->FindRegion(ctx_, call_.caller(), request.shm_region());
    if (!region.ok()) return region.status();
    if (absl::Status s = (*region)->CheckRange(request.shm_offset(),
                                               out.end() - out.begin());
        !s.ok()) {
      return s;
    }
    region_ = *std::move(region);
    shm_at_ = request.shm_offset();
    return absl::OkStatus();
  }

  // One piece of a shared-memory Fetch, on a worker: then the next piece
  // queues behind the other transfers' pieces, or, the range written, the
  // header goes out.
  void CopyToSharedMemory() {
    const absl::Status status =
        ctx_->IsCancelled() ? call_.Interrupted() : CopyPiece();
    if (!status.ok()) {
      Done(status);
      return;
    }
    if (device_ != nullptr ? !device_->done() : !stream_->done()) {
      service_->shm_workers()->Run([this] { CopyToSharedMemory(); });
      return;
    }
    // Here, on a worker: a last reference punches the region out (or closes
    // a device mapping).
    device_.reset();
    region_.reset();
    WriteNext();
  }

  // Chunks into the region until kSharedMemoryPieceBytes have moved or the
  // range is done.
  absl::Status CopyPiece() {
    if (device_ != nullptr) {
      int64_t moved = 0;
      absl::Status s = device_->CopyNext(kDevicePieceBytes, &moved);
      service_->metrics().AddFetchBytes(moved);
      return s;
    }
    int64_t moved = 0;
    while (!stream_->done() && moved < kSharedMemoryPieceBytes) {
      FetchChunk chunk;
      if (absl::Status s = stream_->NextChunk(&chunk); !s.ok()) return s;
      const int64_t header_bytes = static_cast<int64_t>(chunk.header.size());
      if (absl::Status s =
              region_->Write(shm_at_, chunk.header.data(), header_bytes);
          !s.ok()) {
        return s;
      }
      shm_at_ += header_bytes;
      if (absl::Status s = region_->Write(shm_at_, chunk.data, chunk.size);
          !s.ok()) {
        return s;
      }
      shm_at_ += chunk.size;
      moved += header_bytes + chunk.size;
      service_->metrics().AddFetchBytes(header_bytes + chunk.size);
    }
    return absl::OkStatus();
  }

  void WriteNext() {
    // The last message's chunk goes back to its stream before the next one
    // is produced (a GPU stream refills its slots only once released).
    response_.Clear();
    FetchChunk chunk;  // stays empty for an empty range, or shared memory
    if (stream_ != nullptr && !stream_->done()) {
      if (absl::Status s = stream_->NextChunk(&chunk); !s.ok()) {
        Done(s);
        return;
      }
    }
    service_->metrics().AddFetchBytes(chunk.header.size() + chunk.size);
    response_ = EncodeResponse(first_ ? &header_ : nullptr, &chunk);
    first_ = false;
    StartWrite(&response_);
  }

  void Done(const absl::Status& status) {
    device_.reset();
    region_.reset();
    stream_.reset();  // drop the tensor reference before the call winds down
    Finish(call_.Finish(status));
  }

  ServiceContext* const service_;
  grpc::CallbackServerContext* const ctx_;
  StreamCall call_{service_, ctx_, "Fetch", "the stream was cancelled",
                   "the client went away mid-stream"};
  std::unique_ptr<FetchStream> stream_;  // null for a device-to-device one
  std::unique_ptr<DeviceFetch> device_;  // a GPU tensor into device memory
  // A shared-memory Fetch's region, and where its next byte goes.
  std::shared_ptr<const SharedMemoryRegion> region_;
  int64_t shm_at_ = 0;
  v1::FetchHeader header_;  // sent with the first chunk
  bool first_ = true;
  grpc::ByteBuffer response_;  // the write in flight
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* NewFetchReactor(
    ServiceContext* service, grpc::CallbackServerContext* ctx,
    const grpc::ByteBuffer* request) {
  return new FetchReactor(service, ctx, request);
}

}  // namespace tensorcast
