#include "server/http/http_parse.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace tensorcast::http {
namespace {

TEST(HttpStatus, MapsEveryCodeOnce) {
  EXPECT_EQ(HttpStatus(absl::OkStatus()), 200);
  EXPECT_EQ(HttpStatus(absl::NotFoundError("x")), 404);
  EXPECT_EQ(HttpStatus(absl::InvalidArgumentError("x")), 400);
  EXPECT_EQ(HttpStatus(absl::OutOfRangeError("x")), 400);
  EXPECT_EQ(HttpStatus(absl::FailedPreconditionError("x")), 409);
  EXPECT_EQ(HttpStatus(absl::AlreadyExistsError("x")), 409);
  EXPECT_EQ(HttpStatus(absl::UnauthenticatedError("x")), 401);
  EXPECT_EQ(HttpStatus(absl::PermissionDeniedError("x")), 403);
  EXPECT_EQ(HttpStatus(absl::UnavailableError("x")), 503);
  EXPECT_EQ(HttpStatus(absl::UnimplementedError("x")), 501);
  EXPECT_EQ(HttpStatus(absl::InternalError("x")), 500);
  EXPECT_EQ(HttpStatus(absl::DeadlineExceededError("x")), 504);
  // Limits that free up as the caller's own work ends: 429. The server
  // out of memory: 507.
  EXPECT_EQ(HttpStatus(absl::ResourceExhaustedError(
                "tenant 'a' is at its quota of 1.0 MiB")),
            429);
  EXPECT_EQ(HttpStatus(absl::ResourceExhaustedError(
                "out of memory on device cpu: tried to allocate 1.0 GiB")),
            507);
  EXPECT_EQ(HttpStatus(absl::ResourceExhaustedError(
                "out of host memory: cannot allocate 1.0 GiB: x")),
            507);
}

TEST(ErrorJson, EscapesTheMessage) {
  EXPECT_EQ(ErrorJson(absl::NotFoundError("no \"w\"\n\x01\xff")),
            "{\"code\":\"NOT_FOUND\",\"message\":\"no \\\"w\\\"\\n\\u0001"
            "\\u00ff\"}\n");
}

TEST(ParseTarget, Routes) {
  absl::StatusOr<Target> t = ParseTarget("/v1/tensors");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->route, Route::kTensors);
  t = ParseTarget("/v1/stats");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->route, Route::kStats);
  t = ParseTarget("/v1/tensors/w%2F1?dtype=float64&cpu");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->route, Route::kTensor);
  EXPECT_EQ(t->ref, "w/1");
  ASSERT_EQ(t->query.size(), 2u);
  EXPECT_EQ(t->query[0].first, "dtype");
  EXPECT_EQ(t->query[0].second, "float64");
  EXPECT_EQ(t->query[1].first, "cpu");
  EXPECT_EQ(t->query[1].second, "");
  t = ParseTarget("/v1/tensors/abc/info");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->route, Route::kTensorInfo);
  EXPECT_EQ(t->ref, "abc");
}

TEST(ParseTarget, Refusals) {
  EXPECT_EQ(ParseTarget("/").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ParseTarget("/v1/tensors/a/b").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(ParseTarget("/v1/tensors/%zz").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseTarget("/v1/tensors/a%").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseTarget("/v1/tensors/a%20b").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseTarget("/v1/tensors/" + std::string(600, 'a')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseTarget("/v1/tensors?a=1&a=2").status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string many = "/v1/tensors?";
  for (int i = 0; i < 20; ++i) absl::StrAppend(&many, "k", i, "=1&");
  EXPECT_EQ(ParseTarget(many).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(FetchSpecFromQuery, ReadsEveryParameter) {
  absl::StatusOr<FetchSpec> spec = FetchSpecFromQuery(
      {{"dtype", "float16"}, {"format", "raw"}, {"force", "1"}});
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->dtype, DType::kFloat16);
  EXPECT_EQ(spec->format, WireFormat::kRaw);
  EXPECT_TRUE(spec->force);
  EXPECT_FALSE(spec->cpu);
  EXPECT_FALSE(FetchSpecFromQuery({{"format", "csv"}}).ok());
  EXPECT_FALSE(FetchSpecFromQuery({{"dtype", "float99"}}).ok());
  EXPECT_FALSE(FetchSpecFromQuery({{"cpu", "maybe"}}).ok());
  EXPECT_FALSE(FetchSpecFromQuery({{"offset", "3"}}).ok());
}

TEST(PutSpecFromQuery, ReadsEveryParameter) {
  absl::StatusOr<PutSpec> spec = PutSpecFromQuery({{"name", "w"},
                                                   {"device", "cpu"},
                                                   {"requires_grad", "true"},
                                                   {"ttl", "60"}},
                                                  1000);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->format, WireFormat::kNpy);
  EXPECT_EQ(spec->name, "w");
  EXPECT_EQ(spec->device, "cpu");
  EXPECT_TRUE(spec->requires_grad);
  EXPECT_EQ(spec->ttl_seconds, 60);
  EXPECT_EQ(spec->total_bytes, 1000);
  EXPECT_EQ(PutSpecFromQuery({}, -1)->total_bytes, 0);
  EXPECT_FALSE(PutSpecFromQuery({{"ttl", "-1"}}, -1).ok());
  EXPECT_FALSE(PutSpecFromQuery({{"shape", "2"}}, -1).ok());
}

TEST(ParseRange, Forms) {
  ByteRange r = ParseRange("bytes=0-99", 1000);
  EXPECT_EQ(r.kind, ByteRange::kPartial);
  EXPECT_EQ(r.begin, 0);
  EXPECT_EQ(r.end, 100);
  EXPECT_EQ(ContentRange(r, 1000), "bytes 0-99/1000");
  r = ParseRange("bytes=900-", 1000);
  EXPECT_EQ(r.kind, ByteRange::kPartial);
  EXPECT_EQ(r.begin, 900);
  EXPECT_EQ(r.end, 1000);
  r = ParseRange("bytes=-10", 1000);
  EXPECT_EQ(r.kind, ByteRange::kPartial);
  EXPECT_EQ(r.begin, 990);
  r = ParseRange("bytes=-5000", 1000);
  EXPECT_EQ(r.begin, 0);
  r = ParseRange("bytes=10-99999999999999999999999", 1000);
  EXPECT_EQ(r.kind, ByteRange::kPartial);
  EXPECT_EQ(r.end, 1000);
  r = ParseRange("bytes=1000-", 1000);
  EXPECT_EQ(r.kind, ByteRange::kUnsatisfiable);
  EXPECT_EQ(ContentRange(r, 1000), "bytes */1000");
  EXPECT_EQ(ParseRange("bytes=-0", 1000).kind, ByteRange::kUnsatisfiable);
  // Ignored: whole.
  EXPECT_EQ(ParseRange("bytes=0-1,5-6", 1000).kind, ByteRange::kWhole);
  EXPECT_EQ(ParseRange("items=0-1", 1000).kind, ByteRange::kWhole);
  EXPECT_EQ(ParseRange("bytes=5-1", 1000).kind, ByteRange::kWhole);
  EXPECT_EQ(ParseRange("bytes=x-1", 1000).kind, ByteRange::kWhole);
  EXPECT_EQ(ParseRange("bytes=-1-2", 1000).kind, ByteRange::kWhole);
}

TEST(Listen, LoopbackAndSplit) {
  EXPECT_TRUE(IsLoopbackListen("127.0.0.1:80"));
  EXPECT_TRUE(IsLoopbackListen("[::1]:80"));
  EXPECT_FALSE(IsLoopbackListen("0.0.0.0:80"));
  auto a = SplitHostPort("[::1]:8080");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->first, "::1");
  EXPECT_EQ(a->second, 8080);
  EXPECT_FALSE(SplitHostPort("nohost").ok());
  EXPECT_FALSE(SplitHostPort("h:70000").ok());
}

}  // namespace
}  // namespace tensorcast::http
