// StreamCall: the bookkeeping Put's and Fetch's reactors share. From its
// construction the call counts as a running stream (a drain waits for it)
// until End, which the reactor's OnDone calls. Admit admits the caller
// (ServiceContext::Admit: the drain, the token, the call registered under
// it, one of the tenant's streams); Interrupted says why a call the
// client or a revocation cut short ended; Finish gives the stream slot back,
// logs and counts the call (LogRpc) and returns its status as the caller
// may see it. Not thread-safe: a reactor's callbacks never overlap.
#ifndef TENSORCAST_SERVER_SERVICE_STREAM_CALL_H_
#define TENSORCAST_SERVER_SERVICE_STREAM_CALL_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <utility>

#include "absl/status/status.h"
#include "server/service/auth.h"
#include "server/service/service_context.h"
#include "server/service/status.h"
#include "server/store/tenant.h"

namespace tensorcast {

class StreamCall {
 public:
  // `method` (a literal) names the call in the log and the metrics;
  // `revoked` and `cancelled` (literals) are Interrupted's messages.
  StreamCall(ServiceContext* service, grpc::CallbackServerContext* ctx,
             const char* method, const char* revoked, const char* cancelled)
      : service_(service),
        ctx_(ctx),
        method_(method),
        revoked_(revoked),
        cancelled_(cancelled) {
    service_->StreamStarted();
  }
  StreamCall(const StreamCall&) = delete;
  StreamCall& operator=(const StreamCall&) = delete;

  // OK once the caller is admitted (then caller() is who it is).
  absl::Status Admit() {
    absl::StatusOr<Caller> caller = service_->Admit(ctx_, &slot_, &live_);
    if (!caller.ok()) return caller.status();
    caller_ = *std::move(caller);
    return absl::OkStatus();
  }
  const Caller& caller() const { return caller_; }
  // Cancels the call if its token is revoked; Commit stores only while the
  // token stands.
  LiveCall& live() { return live_; }
  // The status of a call cut short: UNAUTHENTICATED (RevokedError with
  // `revoked`) when its token was revoked, else CANCELLED with `cancelled`
  // (the client went away or cancelled).
  absl::Status Interrupted() const {
    return live_.revoked() ? RevokedError(revoked_)
                           : absl::CancelledError(cancelled_);
  }

  // The call is over: the status to finish it with.
  grpc::Status Finish(const absl::Status& status) {
    slot_.Release();
    LogRpc(service_, method_, ctx_, status, start_);
    return ToGrpcStatus(ServiceContext::ForCaller(status, caller_));
  }
  // gRPC is done with the call (OnDone).
  void End() {
    live_.End();
    service_->StreamEnded();
  }

 private:
  ServiceContext* const service_;
  grpc::CallbackServerContext* const ctx_;
  const char* const method_;
  const char* const revoked_;
  const char* const cancelled_;
  const std::chrono::steady_clock::time_point start_ =
      std::chrono::steady_clock::now();
  Caller caller_;
  LiveCall live_;    // cancels the call if its token is revoked
  StreamSlot slot_;  // one of the tenant's concurrent streams
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_STREAM_CALL_H_
