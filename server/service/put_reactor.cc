// Put: a client stream of one header then data. The reactor feeds a PutSink
// and finishes as soon as anything is wrong (so a bad upload stops early and
// its memory goes back at once); the tensor is stored only when the client
// half-closes with every byte delivered. A cancelled client stores nothing.
#include <spdlog/spdlog.h>

#include "server/service/proto_convert.h"
#include "server/service/status.h"
#include "server/service/tensor_service.h"
#include "server/store/put_sink.h"

namespace tensorcast {
namespace {

class PutReactor final : public grpc::ServerReadReactor<v1::PutRequest> {
 public:
  PutReactor(TensorServiceImpl* service, grpc::CallbackServerContext* ctx,
             v1::PutResponse* response)
      : service_(service), ctx_(ctx), response_(response) {
    service_->StreamStarted();
    if (absl::Status s = service_->CheckAccepting(); !s.ok()) {
      Done(s);
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // End of the client's stream: a normal half-close, or a cancellation.
      if (ctx_->IsCancelled()) {
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
    service_->StreamEnded();
    delete this;
  }

 private:
  absl::Status Consume() {
    if (sink_ == nullptr) {
      if (!request_.has_header()) {
        return absl::InvalidArgumentError(
            "the first Put message must be the header");
      }
      return Begin(request_.header());
    }
    if (request_.has_header()) {
      return absl::InvalidArgumentError(
          "a Put carries exactly one header, in its first message");
    }
    return sink_->Write(request_.data());
  }

  absl::Status Begin(const v1::PutHeader& header) {
    absl::StatusOr<std::optional<DType>> dtype = FromProto(header.dtype());
    if (!dtype.ok()) return dtype.status();
    absl::StatusOr<WireFormat> format =
        FromProto(header.format(), WireFormat::kRaw);
    if (!format.ok()) return format.status();
    PutSpec spec;
    spec.format = *format;
    spec.dtype = *dtype;
    spec.shape.assign(header.shape().begin(), header.shape().end());
    spec.device = header.device();
    spec.requires_grad = header.requires_grad();
    spec.name = header.name();
    spec.ttl_seconds = header.ttl_seconds();
    spec.total_bytes = header.total_bytes();
    absl::StatusOr<std::unique_ptr<PutSink>> sink =
        PutSink::Start(service_->conversion_context(), std::move(spec));
    if (!sink.ok()) return sink.status();
    sink_ = *std::move(sink);
    return absl::OkStatus();
  }

  absl::Status Complete() {
    if (sink_ == nullptr) {
      return absl::InvalidArgumentError(
          "the upload ended before its header: nothing was stored");
    }
    absl::StatusOr<TensorPtr> tensor = sink_->Finish();
    if (!tensor.ok()) return tensor.status();
    FillTensorInfo(**tensor, response_->mutable_tensor());
    return absl::OkStatus();
  }

  void Done(const absl::Status& status) {
    sink_.reset();  // an unfinished upload's storage goes back now
    LogRpc("Put", ctx_, status, start_);
    Finish(ToGrpcStatus(status));
  }

  TensorServiceImpl* const service_;
  grpc::CallbackServerContext* const ctx_;
  v1::PutResponse* const response_;
  const std::chrono::steady_clock::time_point start_ =
      std::chrono::steady_clock::now();

  v1::PutRequest request_;
  std::unique_ptr<PutSink> sink_;
};

}  // namespace

grpc::ServerReadReactor<v1::PutRequest>* NewPutReactor(
    TensorServiceImpl* service, grpc::CallbackServerContext* ctx,
    v1::PutResponse* response) {
  return new PutReactor(service, ctx, response);
}

}  // namespace tensorcast
