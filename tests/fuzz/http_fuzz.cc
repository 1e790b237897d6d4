// Fuzzes the HTTP data plane's request parsing (server/http/http_parse.h):
// the request target (path, percent escapes, query), the download and
// upload query parameters, the Range header against a fuzz-chosen size,
// and the JSON error body. Input: a size (8 bytes), then the target and
// the Range header separated by a newline. Beyond "no crash": a partial
// range lies inside the representation and is non-empty, a parsed ref is
// printable ASCII within its limit, the query within its count, and the
// error JSON is ASCII without raw control characters.
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"
#include "server/http/http_parse.h"
#include "tests/fuzz/fuzz_targets.h"

namespace tensorcast::fuzz {

int FuzzHttpRequest(const uint8_t* data, size_t size) {
  if (size < 8) return 0;
  int64_t total = 0;
  std::memcpy(&total, data, 8);
  if (total < 0) total = -(total + 1);  // 0 .. INT64_MAX
  if (data[0] & 1) total %= 1 << 20;    // small sizes often
  const absl::string_view rest(reinterpret_cast<const char*>(data + 8),
                               size - 8);
  const size_t nl = rest.find('\n');
  const absl::string_view target = rest.substr(0, nl);
  const absl::string_view range_header =
      nl == absl::string_view::npos ? absl::string_view() : rest.substr(nl + 1);

  absl::StatusOr<http::Target> t = http::ParseTarget(target);
  if (t.ok()) {
    FUZZ_CHECK(t->query.size() <= http::kMaxQueryParams);
    if (t->route == http::Route::kTensor ||
        t->route == http::Route::kTensorInfo) {
      FUZZ_CHECK(!t->ref.empty() && t->ref.size() <= http::kMaxRefBytes);
      for (char c : t->ref) FUZZ_CHECK(c > 0x20 && c < 0x7f);
    }
    for (const auto& [k, v] : t->query) FUZZ_CHECK(!k.empty());
    absl::StatusOr<FetchSpec> fetch = http::FetchSpecFromQuery(t->query);
    if (fetch.ok()) FUZZ_CHECK(fetch->offset == 0 && fetch->length == 0);
    absl::StatusOr<PutSpec> put =
        http::PutSpecFromQuery(t->query, static_cast<int64_t>(size));
    if (put.ok()) FUZZ_CHECK(put->ttl_seconds >= 0);
  } else {
    const std::string json = http::ErrorJson(t.status());
    for (char c : json) {
      const unsigned char u = static_cast<unsigned char>(c);
      FUZZ_CHECK(u < 0x7f && (u >= 0x20 || c == '\n'));
    }
    const int status = http::HttpStatus(t.status());
    FUZZ_CHECK(status == 400 || status == 404);
  }

  const http::ByteRange r = http::ParseRange(range_header, total);
  switch (r.kind) {
    case http::ByteRange::kPartial:
      FUZZ_CHECK(0 <= r.begin && r.begin < r.end && r.end <= total);
      FUZZ_CHECK(!http::ContentRange(r, total).empty());
      break;
    case http::ByteRange::kWhole:
      FUZZ_CHECK(r.begin == 0 && r.end == total);
      break;
    case http::ByteRange::kUnsatisfiable:
      break;
  }
  absl::StatusOr<std::string> decoded = http::PercentDecode(target, false);
  if (decoded.ok()) FUZZ_CHECK(decoded->size() <= target.size());
  return 0;
}

}  // namespace tensorcast::fuzz
