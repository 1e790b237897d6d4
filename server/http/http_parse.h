// The HTTP data plane's request parsing and error mapping, as pure
// functions of strings (no sockets, no httplib), so that unit tests and the
// libFuzzer target (tests/fuzz/http_fuzz.cc) reach every branch: the
// request target (path and query, percent-decoded here, never by the
// library), the query parameters of a download and an upload, the Range
// header, and absl::Status codes to HTTP statuses with a JSON error body.
//
// Thread-safe (no state).
#ifndef TENSORCAST_SERVER_HTTP_HTTP_PARSE_H_
#define TENSORCAST_SERVER_HTTP_HTTP_PARSE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/store/fetch_source.h"
#include "server/store/put_sink.h"

namespace tensorcast::http {

// The most query parameters a request may carry, and the longest ref.
inline constexpr size_t kMaxQueryParams = 16;
inline constexpr size_t kMaxRefBytes = 512;

// What a request target names.
enum class Route {
  kTensors,     // /v1/tensors           GET: list; PUT/POST: upload
  kTensor,      // /v1/tensors/{ref}     GET/HEAD: download; DELETE
  kTensorInfo,  // /v1/tensors/{ref}/info
  kStats,       // /v1/stats
};

struct Target {
  Route route = Route::kTensors;
  std::string ref;  // percent-decoded; for kTensor and kTensorInfo
  std::vector<std::pair<std::string, std::string>> query;  // decoded
};

// `%XX` escapes decoded (and '+' as a space when `plus_is_space`, as in a
// query). INVALID_ARGUMENT for a '%' not followed by two hex digits.
absl::StatusOr<std::string> PercentDecode(absl::string_view s,
                                          bool plus_is_space);

// "k=v&k2=v2" (decoded). INVALID_ARGUMENT for a bad escape, more than
// kMaxQueryParams parameters, an empty or repeated name.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseQuery(
    absl::string_view query);

// A request target as sent ("/v1/tensors/w%2F1/info?x=y"). NOT_FOUND for a
// path that names nothing here; INVALID_ARGUMENT for a bad escape or query,
// or a ref that is empty, longer than kMaxRefBytes or not printable ASCII.
// A ref holding '/' is sent as %2F.
absl::StatusOr<Target> ParseTarget(absl::string_view target);

// A boolean query value: "", "1", "true", "yes" or "0", "false", "no".
absl::StatusOr<bool> ParseBool(absl::string_view name, absl::string_view value);

// GET /v1/tensors/{ref}: dtype=, format=npy|raw, cpu, detach, force.
// INVALID_ARGUMENT for an unknown parameter or a bad value.
absl::StatusOr<FetchSpec> FetchSpecFromQuery(
    const std::vector<std::pair<std::string, std::string>>& query);

// PUT/POST /v1/tensors: name=, device=, requires_grad, ttl= (seconds). The
// body is a .npy file; `content_length` (-1: not given) becomes the
// announced size.
absl::StatusOr<PutSpec> PutSpecFromQuery(
    const std::vector<std::pair<std::string, std::string>>& query,
    int64_t content_length);

// A Range header against a representation of `total` bytes (RFC 9110
// 14.2): one "bytes=" range, first-last, first- or -suffix.
struct ByteRange {
  enum Kind {
    kWhole,          // no Range, or one ignored (several ranges, another
                     // unit, malformed): 200 with everything
    kPartial,        // 206 with [begin, end)
    kUnsatisfiable,  // 416 with "Content-Range: bytes */total"
  };
  Kind kind = kWhole;
  int64_t begin = 0;
  int64_t end = 0;
};
ByteRange ParseRange(absl::string_view header, int64_t total);

// "bytes BEGIN-LAST/TOTAL" for a partial range.
std::string ContentRange(const ByteRange& range, int64_t total);

// The HTTP status for an error (OK -> 200). RESOURCE_EXHAUSTED is 507
// (Insufficient Storage) when the server ran out of memory (a device's
// pool or the host: the message starts "out of memory" / "out of host
// memory"), else 429 (a tenant's quota, tensors or streams, the staging
// budget: limits that free up as the caller's own work ends).
int HttpStatus(const absl::Status& status);

// {"code":"NOT_FOUND","message":"..."}
std::string ErrorJson(const absl::Status& status);

// `s` as a JSON string literal, quotes included (control characters and
// bytes >= 0x80 escaped as \u00XX, so the output is ASCII).
std::string JsonString(absl::string_view s);

// The strong entity tag of a download: tensors never change once stored,
// so the handle, the format and the output dtype name its bytes.
std::string ETag(absl::string_view handle, WireFormat format,
                 absl::string_view dtype);

// Reachable from this host only (127.0.0.0/8, ::1, localhost).
bool IsLoopbackListen(absl::string_view listen);

// "HOST:PORT" split ("[::1]:80" -> "::1", 80; an empty host -> "0.0.0.0").
// INVALID_ARGUMENT when malformed.
absl::StatusOr<std::pair<std::string, int>> SplitHostPort(
    absl::string_view listen);

}  // namespace tensorcast::http

#endif  // TENSORCAST_SERVER_HTTP_HTTP_PARSE_H_
