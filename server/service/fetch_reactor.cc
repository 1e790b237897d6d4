// Fetch: a server stream of chunks produced on demand from a FetchSource.
// One chunk is written at a time and the next is produced when gRPC reports
// the previous write done, so a stream holds about one chunk of memory
// whatever the tensor size, and slow clients pace the server.
#include <algorithm>

#include "server/service/proto_convert.h"
#include "server/service/status.h"
#include "server/service/tensor_service.h"
#include "server/store/fetch_source.h"

namespace tensorcast {
namespace {

absl::StatusOr<FetchSpec> SpecFromProto(const v1::FetchRequest& request) {
  FetchSpec spec;
  absl::StatusOr<WireFormat> format =
      FromProto(request.format(), WireFormat::kNpy);
  if (!format.ok()) return format.status();
  absl::StatusOr<std::optional<DType>> dtype = FromProto(request.dtype());
  if (!dtype.ok()) return dtype.status();
  spec.format = *format;
  spec.dtype = *dtype;
  spec.detach = request.detach();
  spec.cpu = request.cpu();
  spec.force = request.force();
  spec.offset = request.offset();
  spec.length = request.length();
  return spec;
}

class FetchReactor final : public grpc::ServerWriteReactor<v1::FetchResponse> {
 public:
  FetchReactor(TensorServiceImpl* service, grpc::CallbackServerContext* ctx,
               const v1::FetchRequest* request)
      : service_(service), ctx_(ctx) {
    service_->StreamStarted();
    if (absl::Status s = service_->CheckAccepting(); !s.ok()) {
      Done(s);
      return;
    }
    absl::StatusOr<FetchSource> source = Open(*request);
    if (!source.ok()) {
      Done(source.status());
      return;
    }
    source_.emplace(*std::move(source));
    int64_t chunk = request->chunk_bytes() > 0
                        ? request->chunk_bytes()
                        : service_->options().chunk_bytes;
    chunk_bytes_ = std::clamp(chunk, kMinChunkBytes, kMaxChunkBytes);
    pos_ = source_->begin();

    v1::FetchHeader* header = response_.mutable_header();
    FillTensorInfo(*source_->tensor(), header->mutable_tensor());
    // Describe the tensor as it arrives: cast, contiguous, on the host,
    // detached (what .numpy() returns); handle and name stay the source's.
    v1::TensorInfo* info = header->mutable_tensor();
    info->set_dtype(ToProto(source_->out_dtype()));
    info->clear_strides();
    for (int64_t s : ContiguousStrides(source_->tensor()->layout.shape)) {
      info->add_strides(s);
    }
    info->set_storage_offset(0);
    info->set_is_contiguous(true);
    info->set_requires_grad(false);
    info->set_device("cpu");
    info->set_nbytes(source_->tensor()->numel * ItemSize(source_->out_dtype()));
    info->set_storage_bytes(info->nbytes());
    header->set_format(request->format() == v1::FORMAT_RAW ? v1::FORMAT_RAW
                                                           : v1::FORMAT_NPY);
    header->set_total_bytes(source_->total_bytes());
    header->set_offset(source_->begin());
    header->set_length(source_->end() - source_->begin());
    WriteNext();
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      Done(absl::CancelledError("the client went away mid-stream"));
      return;
    }
    if (pos_ == source_->end()) {
      Done(absl::OkStatus());
      return;
    }
    response_.clear_header();
    WriteNext();
  }

  void OnDone() override {
    service_->StreamEnded();
    delete this;
  }

 private:
  absl::StatusOr<FetchSource> Open(const v1::FetchRequest& request) {
    absl::StatusOr<FetchSpec> spec = SpecFromProto(request);
    if (!spec.ok()) return spec.status();
    absl::StatusOr<TensorPtr> tensor = service_->store()->Get(request.ref());
    if (!tensor.ok()) return tensor.status();
    return FetchSource::Open(*std::move(tensor), *spec);
  }

  void WriteNext() {
    int64_t n = std::min(chunk_bytes_, source_->end() - pos_);
    std::string* data = response_.mutable_data();
    data->resize(n);  // same size as last time: no new allocation or fill
    source_->Read(pos_, n, data->data());
    pos_ += n;
    StartWrite(&response_);
  }

  void Done(const absl::Status& status) {
    LogRpc("Fetch", ctx_, status, start_);
    source_.reset();  // drop the tensor reference before the call winds down
    Finish(ToGrpcStatus(status));
  }

  TensorServiceImpl* const service_;
  grpc::CallbackServerContext* const ctx_;
  const std::chrono::steady_clock::time_point start_ =
      std::chrono::steady_clock::now();

  std::optional<FetchSource> source_;
  v1::FetchResponse response_;
  int64_t chunk_bytes_ = 0;
  int64_t pos_ = 0;
};

}  // namespace

grpc::ServerWriteReactor<v1::FetchResponse>* NewFetchReactor(
    TensorServiceImpl* service, grpc::CallbackServerContext* ctx,
    const v1::FetchRequest* request) {
  return new FetchReactor(service, ctx, request);
}

}  // namespace tensorcast
