#include "server/http/http_parse.h"

#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/dtype.h"
#include "common/echo.h"

namespace tensorcast::http {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decimal digits only (no sign, no spaces), saturating at INT64_MAX.
bool ParseDigits(absl::string_view s, int64_t* out) {
  if (s.empty() || s.size() > 64) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const int d = c - '0';
    if (v > (std::numeric_limits<int64_t>::max() - d) / 10) {
      v = std::numeric_limits<int64_t>::max();
    } else {
      v = v * 10 + d;
    }
  }
  *out = v;
  return true;
}

absl::Status UnknownParameter(absl::string_view name, const char* known) {
  return absl::InvalidArgumentError(
      absl::StrCat("unknown query parameter '", EchoInput(name),
                   "' (this request takes ", known, ")"));
}

}  // namespace

absl::StatusOr<std::string> PercentDecode(absl::string_view s,
                                          bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%') {
      const bool room = i + 2 < s.size();
      const int hi = room ? HexValue(s[i + 1]) : -1;
      const int lo = room ? HexValue(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad percent escape in '", EchoInput(s), "'"));
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseQuery(
    absl::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  if (query.empty()) return out;
  for (absl::string_view part : absl::StrSplit(query, '&')) {
    if (part.empty()) continue;  // "a=1&&b=2", a trailing '&'
    if (out.size() == kMaxQueryParams) {
      return absl::InvalidArgumentError(
          absl::StrCat("more than ", kMaxQueryParams, " query parameters"));
    }
    const size_t eq = part.find('=');
    absl::StatusOr<std::string> name =
        PercentDecode(part.substr(0, eq), /*plus_is_space=*/true);
    if (!name.ok()) return name.status();
    absl::StatusOr<std::string> value =
        eq == absl::string_view::npos
            ? std::string()
            : PercentDecode(part.substr(eq + 1), /*plus_is_space=*/true);
    if (!value.ok()) return value.status();
    if (name->empty()) {
      return absl::InvalidArgumentError("a query parameter without a name");
    }
    for (const auto& [k, v] : out) {
      if (k == *name) {
        return absl::InvalidArgumentError(absl::StrCat(
            "query parameter '", EchoInput(*name), "' given twice"));
      }
    }
    out.emplace_back(*std::move(name), *std::move(value));
  }
  return out;
}

absl::StatusOr<Target> ParseTarget(absl::string_view target) {
  absl::string_view path = target;
  absl::string_view query;
  if (const size_t q = target.find('?'); q != absl::string_view::npos) {
    path = target.substr(0, q);
    query = target.substr(q + 1);
  }
  if (const size_t h = query.find('#'); h != absl::string_view::npos) {
    query = query.substr(0, h);
  }
  Target out;
  absl::string_view rest = path;
  if (rest == "/v1/stats") {
    out.route = Route::kStats;
  } else if (rest == "/v1/tensors" || rest == "/v1/tensors/") {
    out.route = Route::kTensors;
  } else if (absl::ConsumePrefix(&rest, "/v1/tensors/")) {
    absl::string_view raw_ref = rest;
    out.route = Route::kTensor;
    if (absl::ConsumeSuffix(&raw_ref, "/info")) out.route = Route::kTensorInfo;
    if (raw_ref.empty() || absl::StrContains(raw_ref, '/')) {
      return absl::NotFoundError(
          absl::StrCat("no such path: ", EchoInput(path),
                       " (a ref holding '/' is sent as %2F)"));
    }
    absl::StatusOr<std::string> ref =
        PercentDecode(raw_ref, /*plus_is_space=*/false);
    if (!ref.ok()) return ref.status();
    if (ref->empty() || ref->size() > kMaxRefBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "a ref is 1 to ", kMaxRefBytes, " bytes, not ", ref->size()));
    }
    for (char c : *ref) {
      if (!absl::ascii_isgraph(c)) {
        return absl::InvalidArgumentError(
            "a ref is printable ASCII without spaces");
      }
    }
    out.ref = *std::move(ref);
  } else {
    return absl::NotFoundError(
        absl::StrCat("no such path: ", EchoInput(path),
                     " (this server has /v1/tensors, /v1/tensors/{ref}, "
                     "/v1/tensors/{ref}/info and /v1/stats)"));
  }
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> params =
      ParseQuery(query);
  if (!params.ok()) return params.status();
  out.query = *std::move(params);
  return out;
}

absl::StatusOr<bool> ParseBool(absl::string_view name,
                               absl::string_view value) {
  const std::string v = absl::AsciiStrToLower(value);
  if (v.empty() || v == "1" || v == "true" || v == "yes") return true;
  if (v == "0" || v == "false" || v == "no") return false;
  return absl::InvalidArgumentError(
      absl::StrCat("query parameter '", EchoInput(name),
                   "': expected true or false, not '", EchoInput(value), "'"));
}

absl::StatusOr<FetchSpec> FetchSpecFromQuery(
    const std::vector<std::pair<std::string, std::string>>& query) {
  FetchSpec spec;
  for (const auto& [name, value] : query) {
    if (name == "dtype") {
      absl::StatusOr<DType> dtype = ParseDType(value);
      if (!dtype.ok()) return dtype.status();
      spec.dtype = *dtype;
    } else if (name == "format") {
      if (value == "npy") {
        spec.format = WireFormat::kNpy;
      } else if (value == "raw") {
        spec.format = WireFormat::kRaw;
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "format: expected npy or raw, not '", EchoInput(value), "'"));
      }
    } else if (name == "cpu" || name == "detach" || name == "force") {
      absl::StatusOr<bool> on = ParseBool(name, value);
      if (!on.ok()) return on.status();
      (name == "cpu"      ? spec.cpu
       : name == "detach" ? spec.detach
                          : spec.force) = *on;
    } else {
      return UnknownParameter(name, "dtype, format, cpu, detach, force");
    }
  }
  return spec;
}

absl::StatusOr<PutSpec> PutSpecFromQuery(
    const std::vector<std::pair<std::string, std::string>>& query,
    int64_t content_length) {
  PutSpec spec;
  spec.format = WireFormat::kNpy;
  spec.total_bytes = content_length > 0 ? content_length : 0;
  for (const auto& [name, value] : query) {
    if (name == "name") {
      spec.name = value;
    } else if (name == "device") {
      spec.device = value;
    } else if (name == "requires_grad") {
      absl::StatusOr<bool> on = ParseBool(name, value);
      if (!on.ok()) return on.status();
      spec.requires_grad = *on;
    } else if (name == "ttl") {
      int64_t ttl = 0;
      if (!ParseDigits(value, &ttl) || ttl > (int64_t{1} << 40)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "ttl: expected whole seconds, not '", EchoInput(value), "'"));
      }
      spec.ttl_seconds = ttl;
    } else {
      return UnknownParameter(name, "name, device, requires_grad, ttl");
    }
  }
  return spec;
}

ByteRange ParseRange(absl::string_view header, int64_t total) {
  ByteRange whole;
  whole.kind = ByteRange::kWhole;
  whole.begin = 0;
  whole.end = total;
  absl::string_view spec = absl::StripAsciiWhitespace(header);
  if (!absl::ConsumePrefix(&spec, "bytes=")) return whole;
  spec = absl::StripAsciiWhitespace(spec);
  if (absl::StrContains(spec, ',')) return whole;  // several: not served
  const size_t dash = spec.find('-');
  if (dash == absl::string_view::npos) return whole;
  const absl::string_view first =
      absl::StripAsciiWhitespace(spec.substr(0, dash));
  const absl::string_view last =
      absl::StripAsciiWhitespace(spec.substr(dash + 1));
  ByteRange r;
  r.kind = ByteRange::kPartial;
  if (first.empty()) {
    int64_t suffix = 0;
    if (!ParseDigits(last, &suffix)) return whole;
    if (suffix == 0 || total == 0) {
      r.kind = ByteRange::kUnsatisfiable;
      return r;
    }
    r.begin = suffix >= total ? 0 : total - suffix;
    r.end = total;
    return r;
  }
  int64_t a = 0;
  if (!ParseDigits(first, &a)) return whole;
  int64_t b = std::numeric_limits<int64_t>::max();
  if (!last.empty() && !ParseDigits(last, &b)) return whole;
  if (b < a) return whole;  // invalid: ignored, as RFC 9110 says
  if (a >= total) {
    r.kind = ByteRange::kUnsatisfiable;
    return r;
  }
  r.begin = a;
  r.end = b >= total - 1 ? total : b + 1;
  return r;
}

std::string ContentRange(const ByteRange& range, int64_t total) {
  if (range.kind == ByteRange::kUnsatisfiable) {
    return absl::StrCat("bytes */", total);
  }
  return absl::StrCat("bytes ", range.begin, "-", range.end - 1, "/", total);
}

int HttpStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kCancelled:
      return 499;  // the client went away (nginx's code; rarely seen)
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kResourceExhausted:
      return absl::StartsWith(status.message(), "out of memory") ||
                     absl::StartsWith(status.message(), "out of host memory")
                 ? 507
                 : 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    default:
      return 500;
  }
}

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  out.reserve(s.size() + 2);
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c >= 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\u00";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
  return out;
}

std::string ErrorJson(const absl::Status& status) {
  return absl::StrCat(
      "{\"code\":", JsonString(absl::StatusCodeToString(status.code())),
      ",\"message\":", JsonString(status.message()), "}\n");
}

std::string ETag(absl::string_view handle, WireFormat format,
                 absl::string_view dtype) {
  return absl::StrCat("\"", handle, "-",
                      format == WireFormat::kRaw ? "raw" : "npy", "-", dtype,
                      "\"");
}

bool IsLoopbackListen(absl::string_view listen) {
  absl::string_view host = listen.substr(0, listen.rfind(':'));
  return absl::StartsWith(host, "127.") || host == "localhost" ||
         host == "[::1]" || host == "::1";
}

absl::StatusOr<std::pair<std::string, int>> SplitHostPort(
    absl::string_view listen) {
  const size_t colon = listen.rfind(':');
  int port = -1;
  if (colon == absl::string_view::npos ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", EchoInput(listen), "': expected HOST:PORT"));
  }
  std::string host(listen.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) host = "0.0.0.0";
  return std::make_pair(host, port);
}

}  // namespace tensorcast::http
