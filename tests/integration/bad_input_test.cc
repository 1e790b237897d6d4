// Bad input of every kind: each gets the right gRPC code and a message, the
// server keeps serving, and nothing is left behind (pool back to baseline,
// no tensor visible).
#include <grpcpp/create_channel.h>
#include <grpcpp/impl/rpc_method.h>
#include <grpcpp/support/sync_stream.h>
#include <gtest/gtest.h>

#include <thread>

#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    baseline_ = CpuAllocated(client());
    ASSERT_EQ(baseline_, 0);
  }
  void TearDown() override {
    // Nothing left behind, and the server still answers. (A Fetch's last
    // chunks may hold storage a moment after the client has them.)
    int64_t allocated = CpuAllocated(client());
    for (int i = 0; i < 100 && allocated != baseline_; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      allocated = CpuAllocated(client());
    }
    EXPECT_EQ(allocated, baseline_);
    // A stream the server ended early is torn down just after the client
    // sees its status: give it a moment to be counted out.
    absl::StatusOr<v1::StatsResponse> stats = client().Stats();
    for (int i = 0; i < 100 && stats.ok() && stats->active_streams() != 0;
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      stats = client().Stats();
    }
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->tensors(), expected_tensors_);
    EXPECT_EQ(stats->active_streams(), 0);
  }
  Client& client() { return server_.client(); }

  // Put with a raw header and the given data messages, optionally without
  // half-closing cleanly (cancel instead).
  grpc::Status RawPut(const v1::PutHeader& header,
                      const std::vector<std::string>& chunks,
                      bool cancel = false) {
    grpc::ClientContext ctx;
    v1::PutResponse response;
    auto writer = client().stub()->Put(&ctx, &response);
    v1::PutRequest request;
    *request.mutable_header() = header;
    writer->Write(request);
    for (const std::string& c : chunks) {
      v1::PutRequest data;
      data.set_data(c);
      if (!writer->Write(data)) break;
    }
    if (cancel) {
      ctx.TryCancel();
    } else {
      writer->WritesDone();
    }
    return writer->Finish();
  }

  ServerProcess server_{{"--memory-limit=64MiB"}};
  int64_t baseline_ = 0;
  int64_t expected_tensors_ = 0;
};

v1::PutHeader RawHeader(v1::DType dtype, std::vector<int64_t> shape) {
  v1::PutHeader h;
  h.set_format(v1::FORMAT_RAW);
  h.set_dtype(dtype);
  for (int64_t d : shape) h.add_shape(d);
  return h;
}

TEST_F(BadInputTest, UnknownHandleIsNotFound) {
  EXPECT_EQ(client().Info("0123456789abcdef0123456789abcdef").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client().FetchBytes("nope", {}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client().Detach("nope").status().code(),
            absl::StatusCode::kNotFound);
  v1::ToRequest to;
  to.set_ref("nope");
  EXPECT_EQ(client().To(to).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client().Delete({"nope"}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(BadInputTest, BadDtypeIsInvalidArgument) {
  v1::CreateRequest create;
  create.set_dtype(static_cast<v1::DType>(99));
  create.add_shape(2);
  EXPECT_EQ(client().Create(create).status().code(),
            absl::StatusCode::kInvalidArgument);
  grpc::Status s = RawPut(RawHeader(static_cast<v1::DType>(42), {2}),
                          {std::string(8, '\0')});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("dtype"), std::string::npos);
  // A RAW put without a dtype.
  s = RawPut(RawHeader(v1::DTYPE_UNSPECIFIED, {2}), {std::string(8, '\0')});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BadInputTest, NegativeAndOverflowingShapes) {
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(3);
  create.add_shape(-1);
  absl::Status s = client().Create(create).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("negative"), absl::string_view::npos);
  create.clear_shape();
  create.add_shape(int64_t{1} << 40);
  create.add_shape(int64_t{1} << 40);
  s = client().Create(create).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("overflow"), absl::string_view::npos);
  grpc::Status p =
      RawPut(RawHeader(v1::DTYPE_FLOAT64, {int64_t{1} << 62, 4}), {"x"});
  EXPECT_EQ(p.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BadInputTest, PutByteCountShortLongOrCancelled) {
  // Short: 3 of 4 floats.
  grpc::Status s =
      RawPut(RawHeader(v1::DTYPE_FLOAT32, {4}), {std::string(12, '\1')});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("byte count mismatch"), std::string::npos);
  // Long: 5 of 4.
  s = RawPut(RawHeader(v1::DTYPE_FLOAT32, {4}),
             {std::string(16, '\1'), std::string(4, '\1')});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Announced total that disagrees with the shape.
  v1::PutHeader h = RawHeader(v1::DTYPE_FLOAT32, {4});
  h.set_total_bytes(15);
  s = RawPut(h, {std::string(15, '\1')});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  // Cut off by a cancelled client mid-upload.
  s = RawPut(RawHeader(v1::DTYPE_UINT8, {8 << 20}),
             {std::string(1 << 20, '\1'), std::string(1 << 20, '\1')},
             /*cancel=*/true);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::CANCELLED);
  // The server notices the cancellation asynchronously.
  for (int i = 0; i < 50 && CpuAllocated(client()) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // A header-less stream and a second header.
  grpc::ClientContext ctx;
  v1::PutResponse response;
  auto writer = client().stub()->Put(&ctx, &response);
  v1::PutRequest data;
  data.set_data("abc");
  writer->Write(data);
  writer->WritesDone();
  EXPECT_EQ(writer->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// A well-formed header naming dtype object, which tensorcast cannot hold.
std::string ObjectDtypeFile(const std::string& good) {
  size_t header_len = static_cast<unsigned char>(good[8]) |
                      static_cast<unsigned char>(good[9]) << 8;
  std::string dict = "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }";
  dict.resize(header_len - 1, ' ');
  return good.substr(0, 10) + dict + "\n" + std::string(16, 'x');
}

TEST_F(BadInputTest, MalformedAndTruncatedNpy) {
  TempDir dir;
  RunPython(R"(
import numpy as np, sys
np.save(sys.argv[1] + '/good.npy', np.arange(100, dtype=np.float64))
)",
            {dir.path()});
  std::string good = ReadFile(dir.File("good.npy")).value_or("");
  ASSERT_GT(good.size(), 128u);
  struct Case {
    const char* what;
    std::string bytes;
  } cases[] = {
      {"not npy at all", "hello, this is not a numpy file at all......"},
      {"bad magic", "\x93NUMPZ" + good.substr(6)},
      {"bad version", good.substr(0, 6) + "\x09" + good.substr(7)},
      {"object dtype", ObjectDtypeFile(good)},
      {"truncated header", good.substr(0, 40)},
      {"truncated data", good.substr(0, good.size() - 8)},
      {"extra data", good + "12345678"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::string path = dir.File("bad.npy");
    WriteFile(path, c.bytes);
    absl::StatusOr<v1::TensorInfo> t = client().PutNpyFile(path, {});
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument)
        << t.status();
  }
}

TEST_F(BadInputTest, FetchCancelledMidStream) {
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_UINT8);
  create.add_shape(16 << 20);
  create.mutable_ones();
  absl::StatusOr<v1::TensorInfo> t = client().Create(create);
  ASSERT_TRUE(t.ok());
  expected_tensors_ = 1;
  baseline_ = CpuAllocated(client());
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  raw.chunk_bytes = 64 << 10;
  int chunks = 0;
  absl::StatusOr<v1::FetchHeader> h =
      client().Fetch(t->handle(), raw, [&](absl::string_view) {
        return ++chunks == 3 ? absl::CancelledError("enough")
                             : absl::OkStatus();
      });
  EXPECT_EQ(h.status().code(), absl::StatusCode::kCancelled);
  for (int i = 0; i < 50; ++i) {
    if (client().Stats()->active_streams() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // The tensor is intact.
  EXPECT_TRUE(client().Info(t->handle()).ok());
}

TEST_F(BadInputTest, PutOverTheMemoryLimitIsResourceExhausted) {
  grpc::Status s = RawPut(RawHeader(v1::DTYPE_UINT8, {100 << 20}),
                          {std::string(1 << 20, '\0')});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(s.error_message().find("limit"), std::string::npos)
      << s.error_message();
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(32 << 20);
  create.mutable_zeros();
  EXPECT_EQ(client().Create(create).status().code(),
            absl::StatusCode::kResourceExhausted);
  // Still serving: a small put works and is then removed.
  absl::StatusOr<v1::TensorInfo> t = client().PutBuffer(
      [] {
        PutOptions p;
        p.dtype = v1::DTYPE_UINT8;
        p.shape = {4};
        return p;
      }(),
      "abcd");
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_TRUE(client().Delete({t->handle()}).ok());
}

TEST_F(BadInputTest, DuplicateNameIsAlreadyExists) {
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(2);
  create.set_name("weights");
  create.mutable_zeros();
  absl::StatusOr<v1::TensorInfo> first = client().Create(create);
  ASSERT_TRUE(first.ok());
  expected_tensors_ = 1;
  baseline_ = CpuAllocated(client());
  EXPECT_EQ(client().Create(create).status().code(),
            absl::StatusCode::kAlreadyExists);
  v1::PutHeader h = RawHeader(v1::DTYPE_FLOAT32, {2});
  h.set_name("weights");
  EXPECT_EQ(RawPut(h, {std::string(8, '\0')}).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(BadInputTest, RequiresGradOnIntegersIsRefusedWithPyTorchsMessage) {
  v1::PutHeader h = RawHeader(v1::DTYPE_INT64, {2});
  h.set_requires_grad(true);
  grpc::Status s = RawPut(h, {std::string(16, '\0')});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(),
            "Only Tensors of floating point and complex dtype can require "
            "gradients");
}

TEST_F(BadInputTest, BadFetchRequests) {
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_BFLOAT16);
  create.add_shape(2);
  create.mutable_ones();
  absl::StatusOr<v1::TensorInfo> t = client().Create(create);
  ASSERT_TRUE(t.ok()) << t.status();
  expected_tensors_ = 1;
  baseline_ = CpuAllocated(client());
  absl::Status s = client().FetchBytes(t->handle(), {}).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("float32"), absl::string_view::npos);
  FetchOptions f;
  f.format = v1::FORMAT_RAW;
  f.offset = 100;
  EXPECT_EQ(client().FetchBytes(t->handle(), f).status().code(),
            absl::StatusCode::kOutOfRange);
  f.offset = -1;
  EXPECT_EQ(client().FetchBytes(t->handle(), f).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Put and Fetch decode their messages by hand on the server (proto/wire.h):
// bytes that are not a valid message get INVALID_ARGUMENT, never a crash,
// and store nothing. Sent raw, as a broken client in any language might.
TEST_F(BadInputTest, MalformedWireMessages) {
  std::shared_ptr<grpc::Channel> channel = grpc::CreateChannel(
      server_.address(), grpc::InsecureChannelCredentials());
  auto raw_put = [&](const std::vector<std::string>& messages) {
    grpc::ClientContext ctx;
    grpc::ByteBuffer response;
    const grpc::internal::RpcMethod method(
        "/tensorcast.v1.TensorService/Put",
        grpc::internal::RpcMethod::CLIENT_STREAMING, channel);
    std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> writer(
        grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(
            channel.get(), method, &ctx, &response));
    for (const std::string& m : messages) {
      grpc::Slice slice(m);
      if (!writer->Write(grpc::ByteBuffer(&slice, 1))) break;
    }
    writer->WritesDone();
    return writer->Finish();
  };
  v1::PutRequest header_message;
  *header_message.mutable_header() = RawHeader(v1::DTYPE_UINT8, {3});
  const std::string header = header_message.SerializeAsString();
  v1::PutRequest data_message;
  data_message.set_data("abc");
  const std::string data = data_message.SerializeAsString();

  // A truncated length, a bad wire type, a header that is not a PutHeader.
  for (const std::string& bad : {std::string("\x0a\xff"), std::string("\x0f"),
                                 std::string("\x0a\x02\xff\xff")}) {
    grpc::Status s = raw_put({bad});
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << s.error_message();
  }
  // Data first; a second header; garbage after a good header.
  EXPECT_EQ(raw_put({data}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(raw_put({header, header}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(raw_put({header, std::string("\x12\x09"
                                         "abc")})
                .error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // Unknown fields are skipped, as protobuf would: this one is stored.
  std::string with_unknown = data;
  with_unknown += std::string("\x78\x05");  // field 15, varint 5
  grpc::Status ok = raw_put({header, with_unknown});
  EXPECT_TRUE(ok.ok()) << ok.error_message();
  expected_tensors_ = 1;
  baseline_ = CpuAllocated(client());

  // A FetchRequest that does not parse.
  grpc::ClientContext ctx;
  const grpc::internal::RpcMethod fetch(
      "/tensorcast.v1.TensorService/Fetch",
      grpc::internal::RpcMethod::SERVER_STREAMING, channel);
  grpc::Slice garbage(std::string("\x0a\xff\xff"));
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(
          channel.get(), fetch, &ctx, grpc::ByteBuffer(&garbage, 1)));
  grpc::ByteBuffer ignored;
  while (reader->Read(&ignored)) {
  }
  grpc::Status s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << s.error_message();
}

}  // namespace
}  // namespace tensorcast::testing
