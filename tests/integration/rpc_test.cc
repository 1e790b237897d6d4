// Every RPC of tensorcast.v1 against the real server, with NumPy as the
// reference for bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

v1::DType ProtoDType(DType d) {
  return static_cast<v1::DType>(static_cast<int>(d) + 1);
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

class RpcTest : public ::testing::Test {
 protected:
  ServerProcess server_;
  Client& client() { return server_.client(); }
};

TEST_F(RpcTest, PutRawThenFetchRawRoundTripsEveryDtype) {
  int64_t baseline = CpuAllocatedWhenSettled(client());
  for (const DTypeInfo& info : AllDTypes()) {
    SCOPED_TRACE(std::string(info.name));
    std::string bytes = RandomBytes(3 * 5 * info.itemsize, 7);
    if (info.dtype == DType::kBool) {
      for (char& c : bytes) c &= 1;  // bools are 0 or 1
    }
    PutOptions put;
    put.dtype = ProtoDType(info.dtype);
    put.shape = {3, 5};
    absl::StatusOr<v1::TensorInfo> t = client().PutBuffer(put, bytes);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(t->handle().size(), 32u);
    EXPECT_EQ(t->nbytes(), static_cast<int64_t>(bytes.size()));
    FetchOptions fetch;
    fetch.format = v1::FORMAT_RAW;
    absl::StatusOr<std::string> back = client().FetchBytes(t->handle(), fetch);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, bytes);
    ASSERT_TRUE(client().Delete({t->handle()}).ok());
  }
  EXPECT_EQ(CpuAllocatedWhenSettled(client(), baseline), baseline);
}

TEST_F(RpcTest, FetchNpyIsWhatNumPyReads) {
  TempDir dir;
  // NumPy writes one file per dtype (0-d, empty, and 2-D shapes too).
  CommandResult made = RunPython(R"(
import numpy as np, sys
d = sys.argv[1]
rng = np.random.default_rng(3)
names = ['bool','uint8','int8','int16','int32','int64','uint16','uint32',
         'uint64','float16','float32','float64','complex64','complex128']
for n in names:
    for tag, shape in [('2d', (4, 6)), ('0d', ()), ('empty', (2, 0, 3))]:
        a = (rng.standard_normal(shape) * 100).astype(n)
        np.save(f'{d}/{n}_{tag}.npy', a)
)",
                                 {dir.path()});
  ASSERT_EQ(made.exit_code, 0);
  for (const DTypeInfo& info : AllDTypes()) {
    if (info.dtype == DType::kBFloat16) continue;
    for (const char* tag : {"2d", "0d", "empty"}) {
      std::string base = std::string(info.name) + "_" + tag;
      SCOPED_TRACE(base);
      absl::StatusOr<v1::TensorInfo> t =
          client().PutNpyFile(dir.File(base + ".npy"), {});
      ASSERT_TRUE(t.ok()) << t.status();
      ASSERT_TRUE(client()
                      .FetchToFile(t->handle(), {}, dir.File(base + ".out.npy"))
                      .ok());
      // Byte-identical to np.save: header and data.
      EXPECT_EQ(ReadFile(dir.File(base + ".out.npy")).value_or(""),
                ReadFile(dir.File(base + ".npy")).value_or(""));
    }
  }
}

TEST_F(RpcTest, FortranOrderAndBigEndianFilesArriveInCOrder) {
  TempDir dir;
  RunPython(R"(
import numpy as np, sys
d = sys.argv[1]
a = np.arange(24, dtype='<f8').reshape(4, 6)
np.save(d + '/f.npy', np.asfortranarray(a))
np.save(d + '/be.npy', a.astype('>i4'))
np.save(d + '/c.npy', a)
np.save(d + '/ci.npy', a.astype('<i4'))
)",
            {dir.path()});
  absl::StatusOr<v1::TensorInfo> f = client().PutNpyFile(dir.File("f.npy"), {});
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(f->is_contiguous());  // stored as sent, a Fortran view
  ASSERT_TRUE(client().FetchToFile(f->handle(), {}, dir.File("f.out")).ok());
  EXPECT_EQ(ReadFile(dir.File("f.out")).value_or(""),
            ReadFile(dir.File("c.npy")).value_or(""));

  absl::StatusOr<v1::TensorInfo> be =
      client().PutNpyFile(dir.File("be.npy"), {});
  ASSERT_TRUE(be.ok()) << be.status();
  EXPECT_EQ(be->dtype(), v1::DTYPE_INT32);
  ASSERT_TRUE(client().FetchToFile(be->handle(), {}, dir.File("be.out")).ok());
  EXPECT_EQ(ReadFile(dir.File("be.out")).value_or(""),
            ReadFile(dir.File("ci.npy")).value_or(""));
}

TEST_F(RpcTest, CastsInFetchAndToMatchNumPyAstype) {
  TempDir dir;
  RunPython(R"(
import numpy as np, sys
d = sys.argv[1]
x = np.array([0.5, 1.5, 2.5, -1.25, 65519.0, 70000.0, 1e-8, -0.0, 3.14159,
              1e30, -7.9, 255.9], dtype=np.float32)
np.save(d + '/x.npy', x)
np.save(d + '/x_f16.npy', x.astype(np.float16))
np.save(d + '/x_f64.npy', x.astype(np.float64))
np.save(d + '/x_i16.npy', x[np.abs(x) < 30000].astype(np.int16))
)",
            {dir.path()});
  absl::StatusOr<v1::TensorInfo> x = client().PutNpyFile(dir.File("x.npy"), {});
  ASSERT_TRUE(x.ok()) << x.status();
  // Fetch with an on-the-fly cast.
  FetchOptions to_half;
  to_half.dtype = v1::DTYPE_FLOAT16;
  ASSERT_TRUE(
      client().FetchToFile(x->handle(), to_half, dir.File("half.npy")).ok());
  EXPECT_EQ(ReadFile(dir.File("half.npy")).value_or(""),
            ReadFile(dir.File("x_f16.npy")).value_or(""));
  // To(dtype) makes a new tensor.
  v1::ToRequest to;
  to.set_ref(x->handle());
  to.set_dtype(v1::DTYPE_FLOAT64);
  absl::StatusOr<v1::TensorInfo> d = client().To(to);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_NE(d->handle(), x->handle());
  ASSERT_TRUE(client().FetchToFile(d->handle(), {}, dir.File("d.npy")).ok());
  EXPECT_EQ(ReadFile(dir.File("d.npy")).value_or(""),
            ReadFile(dir.File("x_f64.npy")).value_or(""));
}

TEST_F(RpcTest, ToIsANoOpWhenNothingChangesAndKeepsGradAsPyTorchDoes) {
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(3);
  create.set_requires_grad(true);
  create.mutable_ones();
  absl::StatusOr<v1::TensorInfo> t = client().Create(create);
  ASSERT_TRUE(t.ok()) << t.status();
  v1::ToRequest same;
  same.set_ref(t->handle());
  same.set_device("cpu");
  same.set_dtype(v1::DTYPE_FLOAT32);
  absl::StatusOr<v1::TensorInfo> s = client().To(same);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->handle(), t->handle());
  v1::ToRequest to_double = same;
  to_double.set_dtype(v1::DTYPE_FLOAT64);
  absl::StatusOr<v1::TensorInfo> dbl = client().To(to_double);
  ASSERT_TRUE(dbl.ok());
  EXPECT_TRUE(dbl->requires_grad());
  v1::ToRequest to_int = same;
  to_int.set_dtype(v1::DTYPE_INT32);
  absl::StatusOr<v1::TensorInfo> i = client().To(to_int);
  ASSERT_TRUE(i.ok());
  EXPECT_FALSE(i->requires_grad());
}

TEST_F(RpcTest, CreateFillsAgreeWithNumPy) {
  TempDir dir;
  RunPython(R"(
import numpy as np, sys
d = sys.argv[1]
np.save(d + '/eye.npy', np.eye(3, 4, dtype=np.float64))
np.save(d + '/arange.npy', np.arange(12, dtype=np.int32).reshape(3, 4))
np.save(d + '/full.npy', np.full((2, 2), 2.5, dtype=np.float16))
np.save(d + '/lit.npy', np.array([12.14, 22.58, 32.02, 42.5, 52.6], dtype=np.float32))
np.save(d + '/ints.npy', np.array([[15, 25, 35], [45, 55, 65]], dtype=np.int64))
)",
            {dir.path()});
  auto check = [&](v1::CreateRequest request, const std::string& file) {
    SCOPED_TRACE(file);
    absl::StatusOr<v1::TensorInfo> t = client().Create(request);
    ASSERT_TRUE(t.ok()) << t.status();
    ASSERT_TRUE(client().FetchToFile(t->handle(), {}, dir.File("o.npy")).ok());
    EXPECT_EQ(ReadFile(dir.File("o.npy")).value_or(""),
              ReadFile(dir.File(file)).value_or(""));
  };
  v1::CreateRequest eye;
  eye.set_dtype(v1::DTYPE_FLOAT64);
  eye.add_shape(3);
  eye.add_shape(4);
  eye.mutable_eye();
  check(eye, "eye.npy");
  v1::CreateRequest arange;
  arange.set_dtype(v1::DTYPE_INT32);
  arange.add_shape(3);
  arange.add_shape(4);
  arange.mutable_arange()->set_step(1);
  check(arange, "arange.npy");
  v1::CreateRequest full;
  full.set_dtype(v1::DTYPE_FLOAT16);
  full.add_shape(2);
  full.add_shape(2);
  full.set_full(2.5);
  check(full, "full.npy");
  // torch.tensor([...]) infers float32 for floats and int64 for ints.
  v1::CreateRequest lit;
  lit.add_shape(5);
  for (double v : {12.14, 22.58, 32.02, 42.5, 52.6}) {
    lit.mutable_values()->add_float_values(v);
  }
  check(lit, "lit.npy");
  v1::CreateRequest ints;
  ints.add_shape(2);
  ints.add_shape(3);
  for (int v : {15, 25, 35, 45, 55, 65}) {
    ints.mutable_values()->add_int_values(v);
  }
  check(ints, "ints.npy");
}

TEST_F(RpcTest, RandIsDeterministicPerSeedAndInUnitInterval) {
  v1::CreateRequest r;
  r.set_dtype(v1::DTYPE_FLOAT32);
  r.add_shape(1000);
  r.set_rand_seed(42);
  absl::StatusOr<v1::TensorInfo> a = client().Create(r);
  absl::StatusOr<v1::TensorInfo> b = client().Create(r);
  r.set_rand_seed(43);
  absl::StatusOr<v1::TensorInfo> c = client().Create(r);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  std::string ba = *client().FetchBytes(a->handle(), raw);
  EXPECT_EQ(ba, *client().FetchBytes(b->handle(), raw));
  EXPECT_NE(ba, *client().FetchBytes(c->handle(), raw));
  std::vector<float> v(1000);
  std::memcpy(v.data(), ba.data(), ba.size());
  for (float f : v) {
    EXPECT_GE(f, 0.0f);
    EXPECT_LT(f, 1.0f);
  }
}

TEST_F(RpcTest, NumpyRulesRefuseGradAndAllowDetachAndForce) {
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(3);
  create.add_shape(3);
  create.set_requires_grad(true);
  create.mutable_arange()->set_step(1);
  absl::StatusOr<v1::TensorInfo> t = client().Create(create);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(t->requires_grad());
  absl::StatusOr<std::string> refused = client().FetchBytes(t->handle(), {});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.status().message(),
            "Can't call numpy() on Tensor that requires grad. Use "
            "tensor.detach().numpy() instead.");
  FetchOptions detach;
  detach.detach = true;
  absl::StatusOr<std::string> a = client().FetchBytes(t->handle(), detach);
  ASSERT_TRUE(a.ok()) << a.status();
  FetchOptions force;
  force.force = true;
  EXPECT_EQ(*client().FetchBytes(t->handle(), force), *a);
  // The stream's header describes what arrives: detached, on the host.
  absl::StatusOr<v1::FetchHeader> header = client().Fetch(
      t->handle(), force, [](absl::string_view) { return absl::OkStatus(); });
  ASSERT_TRUE(header.ok());
  EXPECT_FALSE(header->tensor().requires_grad());
  EXPECT_EQ(header->tensor().device(), "cpu");
  EXPECT_EQ(header->tensor().handle(), t->handle());
  // Detach: a new handle on the same storage, without grad.
  int64_t before = CpuAllocated(client());
  absl::StatusOr<v1::TensorInfo> d = client().Detach(t->handle());
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d->requires_grad());
  EXPECT_NE(d->handle(), t->handle());
  EXPECT_EQ(CpuAllocated(client()), before);  // shares storage
  EXPECT_EQ(*client().FetchBytes(d->handle(), {}), *a);
  // Deleting the original keeps the view's storage alive.
  ASSERT_TRUE(client().Delete({t->handle()}).ok());
  EXPECT_EQ(*client().FetchBytes(d->handle(), {}), *a);
}

TEST_F(RpcTest, CudaDeviceOnACpuServerIsFailedPrecondition) {
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(2);
  create.set_device("cuda");
  create.mutable_eye();
  absl::StatusOr<v1::TensorInfo> t = client().Create(create);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(t.status().message().find("cuda:0"), absl::string_view::npos);
  EXPECT_NE(t.status().message().find("cpu only"), absl::string_view::npos);
  create.set_device("tpu");
  EXPECT_EQ(client().Create(create).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RpcTest, InfoListDeleteAndNames) {
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_INT16);
  create.add_shape(4);
  create.mutable_zeros();
  std::vector<std::string> handles;
  for (int i = 0; i < 5; ++i) {
    create.set_name(absl::StrCat("t", i));
    absl::StatusOr<v1::TensorInfo> t = client().Create(create);
    ASSERT_TRUE(t.ok()) << t.status();
    handles.push_back(t->handle());
  }
  absl::StatusOr<v1::TensorInfo> by_name = client().Info("t3");
  ASSERT_TRUE(by_name.ok());
  EXPECT_EQ(by_name->handle(), handles[3]);
  EXPECT_EQ(by_name->dtype(), v1::DTYPE_INT16);
  // Paging: 2 at a time, in creation order.
  v1::ListRequest list;
  list.set_page_size(2);
  std::vector<std::string> seen;
  while (true) {
    grpc::ClientContext ctx;
    v1::ListResponse page;
    ASSERT_TRUE(client().stub()->List(&ctx, list, &page).ok());
    for (const auto& t : page.tensors()) seen.push_back(t.handle());
    if (page.next_page_token().empty()) break;
    list.set_page_token(page.next_page_token());
  }
  EXPECT_EQ(seen, handles);
  // Delete is all or nothing.
  EXPECT_EQ(client().Delete({"t0", "nope"}).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(client().Info("t0").ok());
  absl::StatusOr<int> n = client().Delete({"t0", handles[1]});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2);
  EXPECT_EQ(client().Info("t0").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(client().List()->size(), 3u);
}

TEST_F(RpcTest, StatsAndEmptyCache) {
  absl::StatusOr<v1::StatsResponse> s0 = client().Stats();
  ASSERT_TRUE(s0.ok());
  ASSERT_EQ(s0->devices_size(), 1);
  EXPECT_EQ(s0->devices(0).device(), "cpu");
  EXPECT_FALSE(s0->cuda_available());
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(1 << 20);
  create.mutable_ones();
  absl::StatusOr<v1::TensorInfo> t = client().Create(create);
  ASSERT_TRUE(t.ok());
  absl::StatusOr<v1::StatsResponse> s1 = client().Stats();
  EXPECT_EQ(s1->devices(0).allocated_bytes() - s0->devices(0).allocated_bytes(),
            4 << 20);
  EXPECT_EQ(s1->tensors(), s0->tensors() + 1);
  ASSERT_TRUE(client().Delete({t->handle()}).ok());
  absl::StatusOr<int64_t> released = client().EmptyCache();
  ASSERT_TRUE(released.ok());
  EXPECT_GE(*released, 4 << 20);
  absl::StatusOr<v1::StatsResponse> s2 = client().Stats();
  EXPECT_EQ(s2->devices(0).reserved_bytes(), s2->devices(0).allocated_bytes());
  EXPECT_EQ(client().EmptyCache("cuda:3").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(RpcTest, RoundTrip64MiBAndByteRanges) {
  std::string bytes = RandomBytes(64 << 20, 11);
  PutOptions put;
  put.dtype = v1::DTYPE_FLOAT32;
  put.shape = {16 << 20};
  absl::StatusOr<v1::TensorInfo> t = client().PutBuffer(put, bytes);
  ASSERT_TRUE(t.ok()) << t.status();
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  absl::StatusOr<std::string> back = client().FetchBytes(t->handle(), raw);
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == bytes);
  // A resumed download: an unaligned range, with a cast.
  raw.offset = 1001;
  raw.length = 77777;
  raw.dtype = v1::DTYPE_FLOAT64;
  absl::StatusOr<std::string> part = client().FetchBytes(t->handle(), raw);
  raw.offset = 0;
  raw.length = 0;
  absl::StatusOr<std::string> whole = client().FetchBytes(t->handle(), raw);
  ASSERT_TRUE(part.ok() && whole.ok());
  EXPECT_EQ(*part, whole->substr(1001, 77777));
  // Into a caller's buffer: exact fit works, one byte short is refused.
  raw.dtype = v1::DTYPE_UNSPECIFIED;
  std::vector<char> buffer(bytes.size());
  absl::StatusOr<v1::FetchHeader> into =
      client().FetchInto(t->handle(), raw, buffer.data(), buffer.size());
  ASSERT_TRUE(into.ok()) << into.status();
  EXPECT_EQ(into->length(), static_cast<int64_t>(bytes.size()));
  EXPECT_TRUE(std::equal(buffer.begin(), buffer.end(), bytes.begin()));
  EXPECT_EQ(client()
                .FetchInto(t->handle(), raw, buffer.data(), buffer.size() - 1)
                .status()
                .code(),
            absl::StatusCode::kOutOfRange);
  // Into a span: it must be the output's size, checked on the header
  // before any byte is written.
  std::fill(buffer.begin(), buffer.end(), '\x5a');
  into = client().FetchInto(t->handle(), raw, absl::MakeSpan(buffer));
  ASSERT_TRUE(into.ok()) << into.status();
  EXPECT_TRUE(std::equal(buffer.begin(), buffer.end(), bytes.begin()));
  for (size_t n : {buffer.size() - 1, buffer.size() + 8}) {
    std::vector<char> other(n, '\x5a');
    absl::StatusOr<v1::FetchHeader> wrong =
        client().FetchInto(t->handle(), raw, absl::MakeSpan(other));
    EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument)
        << wrong.status();
    EXPECT_NE(wrong.status().message().find("bytes; the destination has"),
              absl::string_view::npos);
    EXPECT_TRUE(std::all_of(other.begin(), other.end(),
                            [](char c) { return c == '\x5a'; }));
  }
}

TEST_F(RpcTest, DeleteWhileFetchingCompletesTheStream) {
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_UINT8);
  create.add_shape(32 << 20);
  create.mutable_ones();
  absl::StatusOr<v1::TensorInfo> t = client().Create(create);
  ASSERT_TRUE(t.ok());
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  raw.chunk_bytes = 64 << 10;
  int64_t received = 0;
  bool deleted = false;
  bool all_ones = true;
  absl::StatusOr<v1::FetchHeader> h =
      client().Fetch(t->handle(), raw, [&](absl::string_view b) {
        if (!deleted) {
          deleted = client().Delete({t->handle()}).ok();
        }
        for (char c : b) all_ones &= c == 1;
        received += static_cast<int64_t>(b.size());
        return absl::OkStatus();
      });
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_TRUE(deleted);
  EXPECT_TRUE(all_ones);
  EXPECT_EQ(received, 32 << 20);
  EXPECT_EQ(CpuAllocatedWhenSettled(client()), 0);
}

TEST_F(RpcTest, TtlReclaimsTensors) {
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(8);
  create.set_ttl_seconds(1);
  create.mutable_zeros();
  absl::StatusOr<v1::TensorInfo> t = client().Create(create);
  ASSERT_TRUE(t.ok());
  EXPECT_GT(t->expires_at_unix_s(), 0);
  EXPECT_TRUE(client().Info(t->handle()).ok());
  // Expiry has one-second resolution and the reaper wakes on its own
  // schedule: allow a loaded machine up to ten seconds.
  absl::Status info = absl::OkStatus();
  for (int i = 0; i < 100 && (info.ok() || CpuAllocated(client()) != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    info = client().Info(t->handle()).status();
  }
  EXPECT_EQ(info.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(CpuAllocated(client()), 0);
}

TEST(ServerLifecycleTest, SigtermDrainsARunningStream) {
  ServerProcess server;
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_UINT8);
  create.add_shape(64 << 20);
  create.mutable_zeros();
  absl::StatusOr<v1::TensorInfo> t = server.client().Create(create);
  ASSERT_TRUE(t.ok());
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  raw.chunk_bytes = 64 << 10;
  int64_t received = 0;
  bool signalled = false;
  absl::Status during_drain;
  absl::StatusOr<v1::FetchHeader> h =
      server.client().Fetch(t->handle(), raw, [&](absl::string_view b) {
        if (!signalled) {
          kill(server.pid(), SIGTERM);
          signalled = true;
        } else if (during_drain.code() != absl::StatusCode::kUnavailable) {
          // The signal thread starts the drain at its own pace (slowly under
          // sanitizers): ask until new calls are refused, pausing a little
          // so the stream does not finish first.
          during_drain = server.client().Info(t->handle()).status();
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        received += static_cast<int64_t>(b.size());
        return absl::OkStatus();
      });
  // The running stream finishes within the grace period; then it exits 0.
  EXPECT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(received, 64 << 20);
  EXPECT_EQ(during_drain.code(), absl::StatusCode::kUnavailable)
      << during_drain;
  EXPECT_EQ(server.Stop(), 0);
}

}  // namespace
}  // namespace tensorcast::testing
