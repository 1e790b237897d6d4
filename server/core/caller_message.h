// Errors whose message gives server-wide figures (what a device's pool has
// allocated, what other streams hold, how many regions the server has
// open) are for the operator and admins. Such a status carries, as a
// payload, the message any other caller sees instead: the same error in
// terms of its own request. The service swaps it in for tenants without
// admin rights (ServiceContext::ForCaller,
// server/service/service_context.h); the log keeps the original.
#ifndef TENSORCAST_SERVER_CORE_CALLER_MESSAGE_H_
#define TENSORCAST_SERVER_CORE_CALLER_MESSAGE_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

namespace tensorcast {

inline constexpr char kCallerMessagePayload[] =
    "type.tensorcast/caller_message";

// `status` with `message` as what callers without admin rights see.
inline absl::Status WithCallerMessage(absl::Status status,
                                      absl::string_view message) {
  status.SetPayload(kCallerMessagePayload, absl::Cord(message));
  return status;
}

// That message, if the status has one.
inline std::optional<std::string> CallerMessage(const absl::Status& status) {
  auto payload = status.GetPayload(kCallerMessagePayload);
  if (!payload.has_value()) return std::nullopt;
  return std::string(*payload);
}

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_CORE_CALLER_MESSAGE_H_
