// The one place where the core's absl::Status becomes a grpc::Status. The
// canonical codes share numbering, so the map is a cast plus the message.
#ifndef TENSORCAST_SERVER_SERVICE_STATUS_H_
#define TENSORCAST_SERVER_SERVICE_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace tensorcast {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_SERVICE_STATUS_H_
