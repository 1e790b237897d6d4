#include "server/http/http_endpoint.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/dtype.h"
#include "proto/proto_json.h"
#include "server/http/http_parse.h"
#include "server/service/head_limited_server.h"
#include "server/service/proto_convert.h"
#include "server/store/fetch_source.h"
#include "server/store/fetch_stream.h"
#include "server/store/put_sink.h"

namespace tensorcast {

using Clock = std::chrono::steady_clock;
using Query = std::vector<std::pair<std::string, std::string>>;

namespace {

constexpr char kJson[] = "application/json";

// What an upload that failed part-way reads and drops of the rest of its
// body before it answers (then it closes the connection).
constexpr int64_t kDrainBytes = 64 << 20;

double MillisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start)
      .count();
}

// A name fit for Content-Disposition as it is, else the handle.
std::string FileName(const Tensor& t, WireFormat format) {
  std::string base = t.handle;
  if (!t.name.empty() && t.name.size() <= 128 &&
      std::all_of(t.name.begin(), t.name.end(), [](char c) {
        return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '-';
      })) {
    base = t.name;
  }
  return absl::StrCat(base, format == WireFormat::kRaw ? ".bin" : ".npy");
}

// The request's Content-Length; -1 when absent or malformed.
int64_t ContentLength(const httplib::Request& req) {
  if (!req.has_header("Content-Length")) return -1;
  int64_t n = -1;
  if (!absl::SimpleAtoi(req.get_header_value("Content-Length"), &n)) return -1;
  return n;
}

// Whether the request announces a body: any Content-Length but a plain 0
// (httplib reads "-1" or one past INT64_MAX as a length of 2^64 - 1 and
// would gather that much into memory for a DELETE), or any
// Transfer-Encoding.
bool HasBody(const httplib::Request& req) {
  if (req.has_header("Transfer-Encoding")) return true;
  if (!req.has_header("Content-Length")) return false;
  int64_t n = -1;
  return !absl::SimpleAtoi(req.get_header_value("Content-Length"), &n) ||
         n != 0;
}

}  // namespace

class HttpEndpoint::Api {
 public:
  Api(const HttpOptions& options, ServiceContext* service,
      const Authenticator* auth)
      : options_(options), service_(service), auth_(auth) {}

  // The drain's grace period is over and the endpoint is going away:
  // uploads still running fail at their next piece of body (httplib itself
  // stops calling a download's content provider once the server stops).
  void Stop() { stopping_.store(true); }

  void Register(httplib::Server* server) {
    // Every path goes through one handler per method, which parses the raw
    // target itself (http_parse.h); "[\s\S]*" matches any decoded path.
    const std::string any = R"([\s\S]*)";
    server->Get(any, [this](const httplib::Request& req,
                            httplib::Response& res) { Handle(req, res); });
    server->Delete(any, [this](const httplib::Request& req,
                               httplib::Response& res) { Handle(req, res); });
    server->Options(any, [this](const httplib::Request& req,
                                httplib::Response& res) { Handle(req, res); });
    auto upload = [this](const httplib::Request& req, httplib::Response& res,
                         const httplib::ContentReader& reader) {
      Handle(req, res, &reader);
    };
    server->Put(any, upload);
    server->Post(any, upload);
    server->Patch(any, upload);
    server->set_pre_routing_handler(
        [this](const httplib::Request& req, httplib::Response& res) {
          return PreRoute(req, res);
        });
    server->set_post_routing_handler(
        [this](const httplib::Request&, httplib::Response& res) {
          res.set_header("X-Content-Type-Options", "nosniff");
          res.set_header("Cache-Control", "no-cache");
          if (!options_.cors_origin.empty()) {
            res.set_header("Access-Control-Allow-Origin", options_.cors_origin);
            res.set_header("Access-Control-Expose-Headers",
                           "Content-Length, Content-Range, Accept-Ranges, "
                           "ETag, Content-Disposition, X-Tensor-Dtype, "
                           "X-Tensor-Shape");
            if (options_.cors_origin != "*") res.set_header("Vary", "Origin");
          }
        });
    // httplib's own errors, answered before any handler runs: a request it
    // cannot parse (400), a target over its limit (414), a Range header its
    // parser refuses (416: a reversed range, another unit, a number past
    // INT64_MAX). The last is not an error here: a GET or HEAD is handled
    // as any other, and Download applies or ignores the Range as
    // http::ParseRange says (RFC 9110). The others get a JSON body as ours
    // do. (The post-routing headers follow either way.)
    server->set_error_handler(httplib::Server::HandlerWithResponse(
        [this](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty() || res.content_provider_) {
            return httplib::Server::HandlerResponse::Unhandled;  // ours
          }
          if (res.status == 416 && !HasBody(req) &&
              (req.method == "GET" || req.method == "HEAD")) {
            const_cast<httplib::Request&>(req).ranges.clear();
            Handle(req, res);
            return httplib::Server::HandlerResponse::Handled;
          }
          const int status = res.status;
          const std::string what =
              status == 414   ? "the request target is too long"
              : status == 416 ? "the Range header cannot be parsed"
              : status == 413 ? "the request body is too large"
              : status >= 500 ? "the server failed to answer the request"
                              : "a malformed HTTP request";
          Fail(req, res,
               status >= 500 ? absl::InternalError(what)
                             : absl::InvalidArgumentError(what),
               nullptr, Clock::now(), status);
          return httplib::Server::HandlerResponse::Handled;
        }));
  }

 private:
  // Before httplib reads any body: only PUT/POST may carry one (others'
  // would be read whole into memory), and httplib's own Range handling is
  // switched off -- it would apply the header to every response, errors
  // included, and does not check a range against the length; ranges are
  // answered by Download from the Fetch byte range instead. (The Request
  // is httplib's own non-const object, handed to us as const.)
  httplib::Server::HandlerResponse PreRoute(const httplib::Request& req,
                                            httplib::Response& res) {
    const_cast<httplib::Request&>(req).ranges.clear();
    if (req.method != "PUT" && req.method != "POST" && HasBody(req)) {
      res.set_header("Connection", "close");
      Fail(req, res,
           absl::InvalidArgumentError(
               absl::StrCat(req.method, " takes no request body")),
           nullptr, Clock::now(), 413);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  }

  void Handle(const httplib::Request& req, httplib::Response& res,
              const httplib::ContentReader* reader = nullptr) {
    const Clock::time_point start = Clock::now();
    if (reader != nullptr) {
      // An upload answered before its body is read leaves the rest of the
      // body on the connection: close it after the answer.
      res.set_header("Connection", "close");
    }
    if (req.method == "OPTIONS") {
      res.status = 204;
      res.set_header("Allow", "GET, HEAD, PUT, POST, DELETE, OPTIONS");
      if (!options_.cors_origin.empty()) {
        res.set_header("Access-Control-Allow-Methods",
                       "GET, HEAD, PUT, POST, DELETE");
        res.set_header("Access-Control-Allow-Headers",
                       "Authorization, Range, If-Range, If-None-Match, "
                       "Content-Type");
        res.set_header("Access-Control-Max-Age", "600");
      }
      return;
    }
    absl::StatusOr<http::Target> target = http::ParseTarget(req.target);
    if (!target.ok()) {
      Fail(req, res, target.status(), nullptr, start);
      return;
    }
    const std::string& m = req.method;
    const bool get = m == "GET" || m == "HEAD";
    switch (target->route) {
      case http::Route::kTensors:
        if (get) return List(req, res, *target, start);
        if (reader != nullptr && (m == "PUT" || m == "POST")) {
          return Upload(req, res, *target, *reader, start);
        }
        return NotAllowed(req, res, "GET, HEAD, PUT, POST", start);
      case http::Route::kTensor:
        if (get) return Download(req, res, *target, start);
        if (m == "DELETE") return Delete(req, res, *target, start);
        return NotAllowed(req, res, "GET, HEAD, DELETE", start);
      case http::Route::kTensorInfo:
        if (get) return Info(req, res, *target, start);
        return NotAllowed(req, res, "GET, HEAD", start);
      case http::Route::kStats:
        if (get) return Stats(req, res, *target, start);
        return NotAllowed(req, res, "GET, HEAD", start);
    }
  }

  // Draining (UNAVAILABLE) and the bearer token (UNAUTHENTICATED).
  absl::StatusOr<Caller> Admit(const httplib::Request& req) const {
    if (absl::Status s = service_->CheckAccepting(); !s.ok()) return s;
    if (!auth_->enabled()) return auth_->AuthenticateToken("");
    const std::string value = req.get_header_value("Authorization");
    absl::string_view v = value;
    // RFC 6750: the scheme is case-insensitive.
    if (v.size() < 7 || !absl::EqualsIgnoreCase(v.substr(0, 7), "bearer ")) {
      return auth_->AuthenticateToken("");
    }
    return auth_->AuthenticateToken(absl::StripAsciiWhitespace(v.substr(7)));
  }

  void Log(const httplib::Request& req, int status, const absl::Status& error,
           const Caller* caller, Clock::time_point start) const {
    const std::string who = caller != nullptr ? caller->name() : "?";
    if (error.ok()) {
      spdlog::debug("HTTP {} {} -> {} ({}, {}:{}, {:.3f} ms)", req.method,
                    req.path, status, who, req.remote_addr, req.remote_port,
                    MillisSince(start));
    } else {
      spdlog::warn("HTTP {} {} -> {} {}: {} ({}, {}:{}, {:.3f} ms)", req.method,
                   req.path, status, absl::StatusCodeToString(error.code()),
                   std::string(error.message()), who, req.remote_addr,
                   req.remote_port, MillisSince(start));
    }
  }

  // The error as this caller may see it, as JSON with its HTTP status
  // (`status_override` > 0 replaces the mapped one).
  void Fail(const httplib::Request& req, httplib::Response& res,
            const absl::Status& error, const Caller* caller,
            Clock::time_point start, int status_override = 0) const {
    const absl::Status shown =
        caller != nullptr ? ServiceContext::ForCaller(error, *caller) : error;
    res.status =
        status_override > 0 ? status_override : http::HttpStatus(shown);
    if (shown.code() == absl::StatusCode::kUnauthenticated) {
      res.set_header("WWW-Authenticate", "Bearer");
    }
    res.set_content(http::ErrorJson(shown), kJson);
    Log(req, res.status, error, caller, start);
  }

  void NotAllowed(const httplib::Request& req, httplib::Response& res,
                  const char* allow, Clock::time_point start) const {
    res.set_header("Allow", allow);
    Fail(req, res,
         absl::UnimplementedError(absl::StrCat(
             req.method, " is not served here; this path takes ", allow)),
         nullptr, start, 405);
  }

  void Json(const httplib::Request& req, httplib::Response& res, int status,
            std::string body, const Caller& caller,
            Clock::time_point start) const {
    res.status = status;
    res.set_content(std::move(body), kJson);
    Log(req, status, absl::OkStatus(), &caller, start);
  }

  // A unary request: admitted, counted while it runs (the drain waits for
  // it), `body` returns the JSON or an error.
  template <typename Body>
  void Unary(const httplib::Request& req, httplib::Response& res,
             Clock::time_point start, Body body, int ok_status = 200) {
    absl::StatusOr<Caller> caller = Admit(req);
    if (!caller.ok()) return Fail(req, res, caller.status(), nullptr, start);
    service_->UnaryStarted();
    absl::StatusOr<std::string> json = body(*caller);
    service_->UnaryEnded();
    if (!json.ok()) return Fail(req, res, json.status(), &*caller, start);
    Json(req, res, ok_status, *std::move(json), *caller, start);
  }

  void Info(const httplib::Request& req, httplib::Response& res,
            const http::Target& target, Clock::time_point start) {
    Unary(req, res, start, [&](const Caller& c) -> absl::StatusOr<std::string> {
      if (!target.query.empty()) {
        return absl::InvalidArgumentError("info takes no query parameters");
      }
      absl::StatusOr<TensorPtr> t =
          service_->store()->Get(target.ref, c.tenant.get());
      if (!t.ok()) return t.status();
      v1::TensorInfo info;
      FillTensorInfo(**t, &info);
      return ProtoJson(info);
    });
  }

  void List(const httplib::Request& req, httplib::Response& res,
            const http::Target& target, Clock::time_point start) {
    Unary(req, res, start, [&](const Caller& c) -> absl::StatusOr<std::string> {
      std::string prefix, token;
      int page_size = 0;
      for (const auto& [k, v] : target.query) {
        if (k == "prefix") {
          prefix = v;
        } else if (k == "page_token") {
          token = v;
        } else if (k == "page_size") {
          if (!absl::SimpleAtoi(v, &page_size) || page_size < 0) {
            return absl::InvalidArgumentError(
                "page_size: expected a whole number");
          }
        } else {
          return absl::InvalidArgumentError(
              "unknown query parameter (a list takes prefix, page_size, "
              "page_token)");
        }
      }
      absl::StatusOr<TensorStore::Page> page =
          service_->store()->List(page_size, token, prefix, c.tenant.get());
      if (!page.ok()) return page.status();
      v1::ListResponse out;
      for (const TensorPtr& t : page->tensors) {
        FillTensorInfo(*t, out.add_tensors());
      }
      out.set_next_page_token(page->next_page_token);
      return ProtoJson(out);
    });
  }

  void Delete(const httplib::Request& req, httplib::Response& res,
              const http::Target& target, Clock::time_point start) {
    Unary(req, res, start, [&](const Caller& c) -> absl::StatusOr<std::string> {
      if (!target.query.empty()) {
        return absl::InvalidArgumentError("DELETE takes no query parameters");
      }
      const std::string refs[] = {target.ref};
      absl::StatusOr<int> n = service_->store()->Delete(refs, c.tenant.get());
      if (!n.ok()) return n.status();
      return absl::StrCat("{\"deleted\":", *n, "}\n");
    });
  }

  void Stats(const httplib::Request& req, httplib::Response& res,
             const http::Target& target, Clock::time_point start) {
    Unary(req, res, start, [&](const Caller& c) -> absl::StatusOr<std::string> {
      if (!target.query.empty()) {
        return absl::InvalidArgumentError("stats takes no query parameters");
      }
      v1::StatsResponse stats;
      service_->FillStats(c, &stats);
      return ProtoJson(stats);
    });
  }

  // One download in flight: what the content provider needs after the
  // handler has returned, alive until httplib lets the response go.
  struct Transfer {
    explicit Transfer(ServiceContext* s) : service(s) {
      service->StreamStarted();  // the drain waits for it
    }
    ~Transfer() {
      live.End();
      service->StreamEnded();
    }
    ServiceContext* const service;
    std::atomic<bool> revoked{false};  // before `live`: outlives its cancel
    Caller caller;
    StreamSlot slot;
    LiveCall live;
    std::unique_ptr<FetchStream> stream;
    absl::Status status;  // why it stopped early
  };

  void Download(const httplib::Request& req, httplib::Response& res,
                const http::Target& target, Clock::time_point start) {
    const bool head = req.method == "HEAD";
    auto t = std::make_shared<Transfer>(service_);
    absl::StatusOr<Caller> caller = Admit(req);
    if (!caller.ok()) return Fail(req, res, caller.status(), nullptr, start);
    t->caller = *caller;
    absl::StatusOr<FetchSpec> spec = http::FetchSpecFromQuery(target.query);
    if (!spec.ok()) return Fail(req, res, spec.status(), &t->caller, start);
    absl::StatusOr<TensorPtr> tensor =
        service_->store()->Get(target.ref, t->caller.tenant.get());
    if (!tensor.ok()) return Fail(req, res, tensor.status(), &t->caller, start);
    // The whole output first: its size and the .numpy() refusals.
    absl::StatusOr<FetchSource> whole = FetchSource::Open(*tensor, *spec);
    if (!whole.ok()) return Fail(req, res, whole.status(), &t->caller, start);
    const int64_t total = whole->total_bytes();
    const std::string etag = http::ETag((*tensor)->handle, spec->format,
                                        DTypeName(whole->out_dtype()));
    res.set_header("ETag", etag);
    res.set_header("Accept-Ranges", "bytes");
    res.set_header("Content-Disposition",
                   absl::StrCat("attachment; filename=\"",
                                FileName(**tensor, spec->format), "\""));
    res.set_header("X-Tensor-Dtype",
                   std::string(DTypeName(whole->out_dtype())));
    res.set_header("X-Tensor-Shape",
                   absl::StrJoin((*tensor)->layout.shape, ","));
    const std::string type = spec->format == WireFormat::kRaw
                                 ? "application/octet-stream"
                                 : "application/x-npy";
    if (req.has_header("If-None-Match") &&
        req.get_header_value("If-None-Match") == etag) {
      res.status = 304;
      Log(req, 304, absl::OkStatus(), &t->caller, start);
      return;
    }
    http::ByteRange range;
    range.begin = 0;
    range.end = total;
    // If-Range with another tag: the tensor changed, send it whole.
    if (req.has_header("Range") && (!req.has_header("If-Range") ||
                                    req.get_header_value("If-Range") == etag)) {
      range = http::ParseRange(req.get_header_value("Range"), total);
    }
    if (range.kind == http::ByteRange::kUnsatisfiable) {
      res.set_header("Content-Range", http::ContentRange(range, total));
      return Fail(req, res,
                  absl::OutOfRangeError(
                      absl::StrCat("Range '", req.get_header_value("Range"),
                                   "' lies past the end (", total, " bytes)")),
                  &t->caller, start, 416);
    }
    res.status = 200;
    if (range.kind == http::ByteRange::kPartial) {
      res.status = 206;
      res.set_header("Content-Range", http::ContentRange(range, total));
      spec->offset = range.begin;
      spec->length = range.end - range.begin;
    }
    const int64_t n = range.end - range.begin;
    if (head || n == 0) {
      // HEAD: the headers a GET would have; httplib sends no body for it
      // and never calls the provider.
      if (n == 0) {
        res.set_content("", type);
      } else {
        res.set_content_provider(
            static_cast<size_t>(n), type,
            [](size_t, size_t, httplib::DataSink&) { return false; });
      }
      Log(req, res.status, absl::OkStatus(), &t->caller, start);
      return;
    }
    // A stream: one of the tenant's, cancelled if its token is revoked,
    // its buffers charged to the tenant before any work.
    if (absl::Status s = StreamSlot::Take(t->caller.tenant, &t->slot);
        !s.ok()) {
      return Fail(req, res, s, &t->caller, start);
    }
    Transfer* raw = t.get();
    if (absl::Status s =
            t->live.Start(t->caller, [raw] { raw->revoked = true; });
        !s.ok()) {
      return Fail(req, res, s, &t->caller, start);
    }
    absl::StatusOr<FetchSource> source = FetchSource::Open(*tensor, *spec);
    if (!source.ok()) return Fail(req, res, source.status(), &t->caller, start);
    absl::StatusOr<std::unique_ptr<FetchStream>> stream =
        FetchStream::Open(*std::move(source), service_->options().chunk_bytes,
                          service_->BudgetFor(t->caller));
    if (!stream.ok()) return Fail(req, res, stream.status(), &t->caller, start);
    t->stream = *std::move(stream);
    ServiceContext* service = service_;
    // One chunk per call, written straight to the socket and released
    // before the next is made: a slow reader holds one chunk (httplib's
    // write blocks, up to the write timeout).
    res.set_content_provider(
        static_cast<size_t>(n), type,
        [t, service](size_t, size_t, httplib::DataSink& sink) {
          if (t->revoked.load()) {
            t->status = RevokedError("the download was cut short");
            return false;
          }
          if (t->stream->done()) return false;  // cannot happen: sized
          FetchChunk chunk;
          if (absl::Status s = t->stream->NextChunk(&chunk); !s.ok()) {
            t->status = s;
            return false;
          }
          if ((!chunk.header.empty() &&
               !sink.write(chunk.header.data(), chunk.header.size())) ||
              (chunk.size > 0 &&
               !sink.write(chunk.data, static_cast<size_t>(chunk.size)))) {
            t->status =
                absl::CancelledError("the client went away mid-download");
            return false;
          }
          service->metrics().AddFetchBytes(
              static_cast<int64_t>(chunk.header.size()) + chunk.size);
          return true;
        },
        [this, t, req_method = req.method, req_path = req.path,
         addr = req.remote_addr, port = req.remote_port, start,
         status = res.status](bool success) {
          t->stream.reset();
          t->slot.Release();
          absl::Status error = t->status;
          if (!success && error.ok()) {
            error = stopping_.load()
                        ? absl::UnavailableError(
                              "the server shut down (its --shutdown-grace "
                              "was over) before the download completed")
                        : absl::CancelledError("the download did not complete");
          }
          httplib::Request r;  // for the log line
          r.method = req_method;
          r.path = req_path;
          r.remote_addr = addr;
          r.remote_port = port;
          Log(r, status, error, &t->caller, start);
        });
  }

  void Upload(const httplib::Request& req, httplib::Response& res,
              const http::Target& target, const httplib::ContentReader& reader,
              Clock::time_point start) {
    Transfer t(service_);
    absl::StatusOr<Caller> caller = Admit(req);
    if (!caller.ok()) return Fail(req, res, caller.status(), nullptr, start);
    t.caller = *caller;
    absl::StatusOr<PutSpec> spec =
        http::PutSpecFromQuery(target.query, ContentLength(req));
    if (!spec.ok()) return Fail(req, res, spec.status(), &t.caller, start);
    if (absl::Status s = StreamSlot::Take(t.caller.tenant, &t.slot); !s.ok()) {
      return Fail(req, res, s, &t.caller, start);
    }
    Transfer* raw = &t;
    if (absl::Status s = t.live.Start(t.caller, [raw] { raw->revoked = true; });
        !s.ok()) {
      return Fail(req, res, s, &t.caller, start);
    }
    absl::StatusOr<std::unique_ptr<PutSink>> sink =
        PutSink::Start(service_->ContextFor(t.caller), *std::move(spec));
    if (!sink.ok()) return Fail(req, res, sink.status(), &t.caller, start);
    // The body as it arrives (httplib reads it in pieces of a few KiB),
    // straight into the sink: nothing is gathered whole.
    // After an error the rest of the body is read and dropped, up to
    // kDrainBytes, so that a client still sending gets the answer rather
    // than a reset connection; past that the connection is closed.
    absl::Status written;
    int64_t drained = 0;
    const bool complete = reader([&](const char* data, size_t size) {
      if (!written.ok()) {
        drained += static_cast<int64_t>(size);
        return drained <= kDrainBytes;
      }
      if (t.revoked.load()) {
        written = RevokedError("nothing was stored");
        return false;
      }
      if (stopping_.load()) {
        written = absl::UnavailableError(
            "the server shut down (its --shutdown-grace was over) before the "
            "upload completed; nothing was stored");
        return false;
      }
      service_->metrics().AddPutBytes(static_cast<int64_t>(size));
      written = (*sink)->Write(absl::string_view(data, size));
      return true;
    });
    if (!written.ok()) {
      sink->reset();  // its storage back at once
      return Fail(req, res, written, &t.caller, start);
    }
    if (!complete) {
      return Fail(req, res,
                  absl::CancelledError(
                      "the upload ended before its body did (the client "
                      "went away or stalled); nothing was stored"),
                  &t.caller, start, 400);
    }
    // Stored only while the token stands (as Put's Complete).
    absl::StatusOr<TensorPtr> tensor;
    if (absl::Status s = t.live.Commit([&] {
          tensor = (*sink)->Finish();
          return tensor.status();
        });
        !s.ok()) {
      return Fail(req, res, s, &t.caller, start);
    }
    v1::TensorInfo info;
    FillTensorInfo(**tensor, &info);
    res.set_header("Location", absl::StrCat("/v1/tensors/", (*tensor)->handle));
    res.headers.erase("Connection");  // the body was read whole
    Json(req, res, 201, ProtoJson(info), t.caller, start);
  }

  const HttpOptions options_;
  ServiceContext* const service_;
  const Authenticator* const auth_;
  std::atomic<bool> stopping_{false};
};

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Start(
    const HttpOptions& options, ServiceContext* service,
    const Authenticator* auth) {
  absl::StatusOr<std::pair<std::string, int>> address =
      http::SplitHostPort(options.listen);
  if (!address.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http-listen: ", address.status().message()));
  }
  if (!auth->enabled() && !http::IsLoopbackListen(options.listen)) {
    if (!options.allow_insecure_remote) {
      return absl::FailedPreconditionError(absl::StrCat(
          "refusing to serve HTTP on ", options.listen,
          " without --auth-tokens: anyone who can reach it could read and "
          "delete every tensor. Give --auth-tokens=FILE, listen on "
          "127.0.0.1, or accept that with --allow-insecure-remote"));
    }
  }
  std::unique_ptr<HttpEndpoint> e(new HttpEndpoint());
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!options.tls_cert.empty()) {
    auto tls = std::make_unique<httplib::SSLServer>(
        options.tls_cert.c_str(), options.tls_key.c_str(),
        options.tls_client_ca.empty() ? nullptr
                                      : options.tls_client_ca.c_str());
    if (!tls->is_valid()) {
      return absl::InvalidArgumentError(
          "--http-listen: the TLS certificate, key or client CA could not be "
          "loaded");
    }
    e->server_ = std::move(tls);
  } else {
    e->server_ = NewHeadLimitedServer(kMaxHeadBytes, kIoTimeoutSeconds);
  }
  httplib::Server* server = e->server_.get();
  server->new_task_queue = [] { return new httplib::ThreadPool(kWorkers); };
  server->set_read_timeout(kIoTimeoutSeconds);
  server->set_write_timeout(kIoTimeoutSeconds);
  server->set_keep_alive_timeout(kKeepAliveSeconds);
  server->set_keep_alive_max_count(100);
  server->set_tcp_nodelay(true);
  // SO_REUSEADDR alone (httplib's default adds SO_REUSEPORT, with which a
  // second server would bind the same port and share the connections).
  server->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  e->api_ = std::make_unique<Api>(options, service, auth);
  e->api_->Register(server);

  const auto& [host, requested_port] = *address;
  int port = requested_port;
  if (port == 0) {
    port = server->bind_to_any_port(host);
  } else if (!server->bind_to_port(host, port)) {
    port = -1;
  }
  if (port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on --http-listen=", options.listen,
                     " (address in use, or not a HOST:PORT this host has?)"));
  }
  e->port_ = port;
  auto finished = std::make_shared<std::atomic<bool>>(false);
  e->thread_ = std::thread([server, finished] {
    server->listen_after_bind();
    finished->store(true);
  });
  while (!server->is_running() && !finished->load()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!server->is_running()) {
    e->thread_.join();
    return absl::UnavailableError(
        absl::StrCat("cannot serve --http-listen=", options.listen));
  }
  return e;
}

HttpEndpoint::~HttpEndpoint() {
  if (api_ != nullptr) api_->Stop();
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace tensorcast
