// The GPU end to end: the real tensorcast-server started with --devices=auto,
// driven through the C++ client, on a machine with a CUDA device. cuda:0
// must behave exactly like cpu: every tensor made, moved, cast, viewed or
// fetched on the GPU gives the same bytes as the same requests on the host
// (the server's own cpu path is the reference; it is checked against NumPy
// by tests/integration). Skips, and ctest reports it skipped, when the
// server finds no CUDA device.
//
// Needs no Python: the .npy files it sends (Fortran order, big-endian) are
// made with the server's own header codec, so the binary runs from the GPU
// bundle (scripts/gpu_bundle.sh, tests/gpu/run.sh) with TENSORCAST_BIN_DIR
// pointing at the tensorcast-server beside it.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "server/core/npy.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

constexpr char kCuda[] = "cuda:0";
constexpr int64_t kMiB = int64_t{1} << 20;
constexpr char kCudaNumpyMessage[] =
    "can't convert cuda:0 device type tensor to numpy";

v1::DType ProtoDType(DType d) {
  return static_cast<v1::DType>(static_cast<int>(d) + 1);
}
DType CoreDType(v1::DType d) {
  return static_cast<DType>(static_cast<int>(d) - 1);
}
std::string Name(v1::DType d) {
  return d == v1::DTYPE_UNSPECIFIED ? "keep"
                                    : std::string(DTypeName(CoreDType(d)));
}

// The dtypes the Create and Put checks cover.
const std::vector<v1::DType>& SomeDTypes() {
  static const std::vector<v1::DType> kDTypes = {
      v1::DTYPE_FLOAT32,   v1::DTYPE_FLOAT16, v1::DTYPE_BFLOAT16,
      v1::DTYPE_INT32,     v1::DTYPE_UINT8,   v1::DTYPE_BOOL,
      v1::DTYPE_COMPLEX64, v1::DTYPE_FLOAT64};
  return kDTypes;
}

std::vector<v1::DType> AllProtoDTypes() {
  std::vector<v1::DType> all;
  for (const DTypeInfo& info : AllDTypes())
    all.push_back(ProtoDType(info.dtype));
  return all;
}

// n pseudo-random bytes (every bit pattern, NaN payloads included); bools
// are 0 or 1, as the server requires.
std::string RandomBytes(size_t n, uint64_t seed, v1::DType dtype) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(s.data() + i, &v, 8);
  }
  for (; i < n; ++i) s[i] = static_cast<char>(rng());
  if (dtype == v1::DTYPE_BOOL) {
    for (char& c : s) c &= 1;
  }
  return s;
}

// A .npy file as NumPy writes it for `c_order_data` (elements in C order,
// little-endian) stored in Fortran order and/or big-endian.
std::string MakeNpy(DType dtype, const std::vector<int64_t>& shape,
                    const std::string& c_order_data, bool fortran,
                    bool big_endian) {
  absl::StatusOr<std::string> header = EncodeNpyHeader(dtype, shape, fortran);
  EXPECT_TRUE(header.ok()) << header.status();
  if (!header.ok()) return "";
  const size_t item = ItemSize(dtype);
  std::string data = c_order_data;
  if (fortran) {
    // Element at C index (i0, ..., ik) goes to Fortran position
    // i0 + d0 * (i1 + d1 * (...)).
    const int64_t numel = static_cast<int64_t>(data.size() / item);
    std::vector<int64_t> index(shape.size(), 0);
    for (int64_t c = 0; c < numel; ++c) {
      int64_t f = 0;
      for (size_t k = shape.size(); k-- > 0;) f = f * shape[k] + index[k];
      std::memcpy(data.data() + f * item, c_order_data.data() + c * item, item);
      for (size_t k = shape.size(); k-- > 0;) {  // C-order increment
        if (++index[k] < shape[k]) break;
        index[k] = 0;
      }
    }
  }
  if (big_endian && item > 1) {
    const std::string little = std::string(GetDTypeInfo(dtype).npy_descr);
    std::string big = little;
    big[0] = '>';
    size_t at = header->find("'" + little + "'");
    EXPECT_NE(at, std::string::npos) << *header;
    if (at == std::string::npos) return "";
    header->replace(at + 1, little.size(), big);  // same length: padding holds
    ByteSwapElements(data.data(), static_cast<int64_t>(data.size() / item),
                     dtype);
  }
  return *header + data;
}

struct Fetched {
  absl::Status status;
  v1::FetchHeader header;
  std::string bytes;
};

class GpuTest : public ::testing::Test {
 protected:
  virtual std::vector<std::string> Flags() const { return {"--devices=auto"}; }

  void SetUp() override {
    server_ = std::make_unique<ServerProcess>(Flags());
    // No client when the server could not start (the harness said why).
    ASSERT_GE(server_->pid(), 0) << "tensorcast-server did not start";
    absl::StatusOr<v1::StatsResponse> stats = client().Stats();
    ASSERT_TRUE(stats.ok()) << stats.status() << "\n" << server_->Log();
    if (!stats->cuda_available()) {
      GTEST_SKIP() << "no CUDA device: " << stats->cuda_status()
                   << " (the GPU integration test needs a GPU; run "
                      "tests/gpu/run.sh on one)";
    }
  }

  Client& client() { return server_->client(); }

  v1::DeviceStats DeviceStatsOf(const std::string& device) {
    absl::StatusOr<v1::StatsResponse> stats = client().Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    if (stats.ok()) {
      for (const v1::DeviceStats& d : stats->devices()) {
        if (d.device() == device) return d;
      }
    }
    ADD_FAILURE() << "Stats lists no device " << device;
    return {};
  }

  // Create `request` on `device`; fails the test (and returns an empty
  // info) if the server refuses.
  v1::TensorInfo Create(v1::CreateRequest request, const std::string& device) {
    request.set_device(device);
    absl::StatusOr<v1::TensorInfo> t = client().Create(request);
    EXPECT_TRUE(t.ok()) << "Create on " << device << ": " << t.status();
    return t.ok() ? *t : v1::TensorInfo();
  }

  v1::TensorInfo PutRaw(const std::string& device, v1::DType dtype,
                        std::vector<int64_t> shape, absl::string_view bytes) {
    PutOptions put;
    put.dtype = dtype;
    put.shape = std::move(shape);
    put.device = device;
    absl::StatusOr<v1::TensorInfo> t = client().PutBuffer(put, bytes);
    EXPECT_TRUE(t.ok()) << "Put RAW on " << device << ": " << t.status();
    return t.ok() ? *t : v1::TensorInfo();
  }

  v1::TensorInfo PutNpy(const std::string& device, absl::string_view file) {
    PutOptions put;
    put.format = v1::FORMAT_NPY;
    put.device = device;
    absl::StatusOr<v1::TensorInfo> t = client().PutBuffer(put, file);
    EXPECT_TRUE(t.ok()) << "Put NPY on " << device << ": " << t.status();
    return t.ok() ? *t : v1::TensorInfo();
  }

  // To(device, dtype); device "" keeps it, DTYPE_UNSPECIFIED keeps the dtype.
  v1::TensorInfo To(const std::string& ref, const std::string& device,
                    v1::DType dtype = v1::DTYPE_UNSPECIFIED,
                    bool copy = false) {
    v1::ToRequest to;
    to.set_ref(ref);
    to.set_device(device);
    to.set_dtype(dtype);
    to.set_copy(copy);
    absl::StatusOr<v1::TensorInfo> t = client().To(to);
    EXPECT_TRUE(t.ok()) << "To(" << device << ", " << Name(dtype)
                        << "): " << t.status();
    return t.ok() ? *t : v1::TensorInfo();
  }

  // The stream's header and bytes; force is set (a no-op on cpu tensors).
  Fetched FetchAll(const std::string& ref, FetchOptions options) {
    options.force = true;
    Fetched out;
    absl::StatusOr<v1::FetchHeader> header =
        client().Fetch(ref, options, [&](absl::string_view b) {
          out.bytes.append(b.data(), b.size());
          return absl::OkStatus();
        });
    if (header.ok()) {
      out.header = *header;
    } else {
      out.status = header.status();
    }
    return out;
  }

  // The whole tensor as RAW bytes (C order), forced to the host.
  std::string Raw(const std::string& ref,
                  v1::DType dtype = v1::DTYPE_UNSPECIFIED) {
    FetchOptions raw;
    raw.format = v1::FORMAT_RAW;
    raw.dtype = dtype;
    raw.force = true;
    absl::StatusOr<std::string> bytes = client().FetchBytes(ref, raw);
    EXPECT_TRUE(bytes.ok())
        << "Fetch RAW " << Name(dtype) << ": " << bytes.status();
    return bytes.ok() ? *bytes : std::string("<fetch failed>");
  }

  void DeleteAll() {
    absl::StatusOr<std::vector<v1::TensorInfo>> all = client().List();
    ASSERT_TRUE(all.ok()) << all.status();
    std::vector<std::string> handles;
    for (const v1::TensorInfo& t : *all) handles.push_back(t.handle());
    if (!handles.empty()) {
      ASSERT_TRUE(client().Delete(handles).ok());
    }
  }

  std::unique_ptr<ServerProcess> server_;
};

// Same dtype, shape, strides, sizes and contiguity; devices as given.
void ExpectSameLayout(const v1::TensorInfo& cpu, const v1::TensorInfo& cuda) {
  EXPECT_EQ(cpu.device(), "cpu");
  EXPECT_EQ(cuda.device(), kCuda);
  EXPECT_EQ(cuda.dtype(), cpu.dtype());
  EXPECT_EQ(std::vector<int64_t>(cuda.shape().begin(), cuda.shape().end()),
            std::vector<int64_t>(cpu.shape().begin(), cpu.shape().end()));
  EXPECT_EQ(std::vector<int64_t>(cuda.strides().begin(), cuda.strides().end()),
            std::vector<int64_t>(cpu.strides().begin(), cpu.strides().end()));
  EXPECT_EQ(cuda.storage_offset(), cpu.storage_offset());
  EXPECT_EQ(cuda.nbytes(), cpu.nbytes());
  EXPECT_EQ(cuda.numel(), cpu.numel());
  EXPECT_EQ(cuda.is_contiguous(), cpu.is_contiguous());
  EXPECT_EQ(cuda.requires_grad(), cpu.requires_grad());
}

// Byte strings compared without dumping megabytes: the first difference.
::testing::AssertionResult SameBytes(const std::string& expected,
                                     const std::string& actual) {
  if (expected == actual) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < expected.size() && i < actual.size() && expected[i] == actual[i]) {
    ++i;
  }
  auto byte = [](const std::string& s, size_t at) {
    return at < s.size()
               ? absl::StrCat(static_cast<int>(static_cast<uint8_t>(s[at])))
               : std::string("end");
  };
  return ::testing::AssertionFailure()
         << "sizes " << expected.size() << " (expected) and " << actual.size()
         << " (actual); first difference at byte " << i << ": "
         << byte(expected, i) << " vs " << byte(actual, i);
}

TEST_F(GpuTest, StatsListsCuda0) {
  absl::StatusOr<v1::StatsResponse> stats = client().Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_TRUE(stats->cuda_available());
  ASSERT_GE(stats->devices_size(), 2);
  EXPECT_EQ(stats->devices(0).device(), "cpu");
  bool found = false;
  for (const v1::DeviceStats& d : stats->devices()) {
    if (d.device() != kCuda) continue;
    found = true;
    EXPECT_FALSE(d.description().empty()) << "cuda:0 has no description";
    EXPECT_EQ(d.allocated_bytes(), 0);
    EXPECT_EQ(d.tensors(), 0);
    EXPECT_EQ(d.limit_bytes(), 0);
  }
  EXPECT_TRUE(found) << stats->DebugString();
  std::printf("[          ] cuda: %s\n", stats->cuda_status().c_str());
}

TEST_F(GpuTest, CreateOnCudaEqualsCreateOnCpu) {
  struct Init {
    std::string name;
    std::function<void(v1::CreateRequest&)> set;
  };
  const std::vector<Init> inits = {
      {"zeros", [](v1::CreateRequest& r) { r.mutable_zeros(); }},
      {"ones", [](v1::CreateRequest& r) { r.mutable_ones(); }},
      {"full(2.5)", [](v1::CreateRequest& r) { r.set_full(2.5); }},
      {"full(-300.75)", [](v1::CreateRequest& r) { r.set_full(-300.75); }},
      {"full(nan)",
       [](v1::CreateRequest& r) {
         r.set_full(std::numeric_limits<double>::quiet_NaN());
       }},
      {"arange(-5, 0.75)",
       [](v1::CreateRequest& r) {
         r.mutable_arange()->set_start(-5);
         r.mutable_arange()->set_step(0.75);
       }},
      {"arange(0, 1)",
       [](v1::CreateRequest& r) { r.mutable_arange()->set_step(1); }},
      {"eye", [](v1::CreateRequest& r) { r.mutable_eye(); }},
      {"rand(1234)", [](v1::CreateRequest& r) { r.set_rand_seed(1234); }},
      {"rand(0)", [](v1::CreateRequest& r) { r.set_rand_seed(0); }},
  };
  const std::vector<std::vector<int64_t>> shapes = {
      {37, 53}, {300, 517}, {(int64_t{1} << 20) + 3}, {0, 4}};
  for (v1::DType dtype : SomeDTypes()) {
    for (const Init& init : inits) {
      for (const std::vector<int64_t>& shape : shapes) {
        if (init.name == "eye" ? shape.size() != 2 : shape[0] == 300) {
          continue;  // eye is 2-D only; the big 2-D shape is for eye
        }
        SCOPED_TRACE(
            absl::StrCat(Name(dtype), " ", init.name, " shape[0]=", shape[0]));
        v1::CreateRequest request;
        request.set_dtype(dtype);
        for (int64_t d : shape) request.add_shape(d);
        init.set(request);
        request.set_device("cpu");
        absl::StatusOr<v1::TensorInfo> cpu = client().Create(request);
        request.set_device(kCuda);
        absl::StatusOr<v1::TensorInfo> cuda = client().Create(request);
        // rand on integer dtypes is refused: the same way on both.
        ASSERT_EQ(cuda.status().code(), cpu.status().code()) << cuda.status();
        EXPECT_EQ(cuda.status().message(), cpu.status().message());
        if (!cpu.ok()) continue;
        ExpectSameLayout(*cpu, *cuda);
        EXPECT_TRUE(SameBytes(Raw(cpu->handle()), Raw(cuda->handle())));
        ASSERT_TRUE(client().Delete({cpu->handle(), cuda->handle()}).ok());
      }
    }
  }
  EXPECT_EQ(DeviceStatsOf(kCuda).allocated_bytes(), 0);
}

TEST_F(GpuTest, FetchFollowsTensorNumpyRules) {
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(3);
  create.add_shape(3);
  create.set_requires_grad(true);
  create.mutable_arange()->set_step(1);
  v1::TensorInfo t = Create(create, "cuda");  // "cuda" is cuda:0
  ASSERT_FALSE(t.handle().empty());
  EXPECT_EQ(t.device(), kCuda);
  EXPECT_TRUE(t.requires_grad());

  // Device first, then grad, as Tensor.numpy() checks them.
  for (v1::Format format : {v1::FORMAT_NPY, v1::FORMAT_RAW}) {
    for (bool detach : {false, true}) {
      FetchOptions options;
      options.format = format;
      options.detach = detach;
      absl::StatusOr<std::string> refused =
          client().FetchBytes(t.handle(), options);
      EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
          << refused.status();
      EXPECT_NE(refused.status().message().find(kCudaNumpyMessage),
                absl::string_view::npos)
          << refused.status();
    }
  }
  FetchOptions cpu_only;
  cpu_only.cpu = true;
  absl::StatusOr<std::string> grad = client().FetchBytes(t.handle(), cpu_only);
  EXPECT_EQ(grad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(grad.status().message().find("requires grad"),
            absl::string_view::npos)
      << grad.status();

  FetchOptions cpu_detach;
  cpu_detach.cpu = true;
  cpu_detach.detach = true;
  absl::StatusOr<std::string> npy = client().FetchBytes(t.handle(), cpu_detach);
  ASSERT_TRUE(npy.ok()) << npy.status();
  FetchOptions force;
  force.force = true;
  absl::StatusOr<std::string> forced = client().FetchBytes(t.handle(), force);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(*forced, *npy);
  // The same bytes as on the host.
  v1::TensorInfo on_cpu = Create(create, "cpu");
  EXPECT_EQ(*forced, *client().FetchBytes(on_cpu.handle(), force));

  // The header describes what arrives: on the host, detached.
  absl::StatusOr<v1::FetchHeader> header = client().Fetch(
      t.handle(), force, [](absl::string_view) { return absl::OkStatus(); });
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->tensor().device(), "cpu");
  EXPECT_FALSE(header->tensor().requires_grad());
  EXPECT_EQ(header->tensor().handle(), t.handle());
  EXPECT_TRUE(header->tensor().is_contiguous());

  // A tensor without grad needs only cpu.
  create.set_requires_grad(false);
  v1::TensorInfo plain = Create(create, kCuda);
  EXPECT_EQ(client().FetchBytes(plain.handle(), {}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<std::string> via_cpu =
      client().FetchBytes(plain.handle(), cpu_only);
  ASSERT_TRUE(via_cpu.ok()) << via_cpu.status();
  EXPECT_EQ(*via_cpu, *npy);

  // Info, List and Detach see the device.
  absl::StatusOr<v1::TensorInfo> info = client().Info(t.handle());
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->device(), kCuda);
  absl::StatusOr<std::vector<v1::TensorInfo>> list = client().List();
  ASSERT_TRUE(list.ok());
  int on_cuda = 0;
  for (const v1::TensorInfo& l : *list) on_cuda += l.device() == kCuda;
  EXPECT_EQ(on_cuda, 2);
  const int64_t before = DeviceStatsOf(kCuda).allocated_bytes();
  absl::StatusOr<v1::TensorInfo> detached = client().Detach(t.handle());
  ASSERT_TRUE(detached.ok()) << detached.status();
  EXPECT_EQ(detached->device(), kCuda);
  EXPECT_FALSE(detached->requires_grad());
  EXPECT_EQ(DeviceStatsOf(kCuda).allocated_bytes(), before);  // shared
  EXPECT_EQ(DeviceStatsOf(kCuda).tensors(), 3);
  EXPECT_EQ(Raw(detached->handle()), Raw(t.handle()));

  // To the device it is on: the same handle (as .to() returns self), unless
  // copy is asked for.
  EXPECT_EQ(To(t.handle(), kCuda).handle(), t.handle());
  EXPECT_EQ(To(t.handle(), "cuda").handle(), t.handle());
  v1::TensorInfo copy = To(t.handle(), kCuda, v1::DTYPE_UNSPECIFIED, true);
  EXPECT_NE(copy.handle(), t.handle());
  EXPECT_EQ(copy.device(), kCuda);
  EXPECT_TRUE(copy.requires_grad());
  EXPECT_GT(DeviceStatsOf(kCuda).allocated_bytes(), before);
  EXPECT_EQ(Raw(copy.handle()), Raw(t.handle()));

  // A device this server does not have.
  create.set_device("cuda:1023");
  EXPECT_EQ(client().Create(create).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(GpuTest, ToCudaAndBackRoundTripsEveryDtype) {
  int i = 0;
  for (v1::DType dtype : AllProtoDTypes()) {
    for (std::vector<int64_t> shape :
         {std::vector<int64_t>{5, 7, 3}, std::vector<int64_t>{(1 << 18) + 1},
          std::vector<int64_t>{0}, std::vector<int64_t>{}}) {
      SCOPED_TRACE(absl::StrCat(Name(dtype), " rank ", shape.size()));
      int64_t numel = 1;
      for (int64_t d : shape) numel *= d;
      const std::string bytes =
          RandomBytes(numel * ItemSize(CoreDType(dtype)), ++i, dtype);
      v1::TensorInfo cpu = PutRaw("cpu", dtype, shape, bytes);
      v1::TensorInfo cuda = To(cpu.handle(), kCuda);
      EXPECT_NE(cuda.handle(), cpu.handle());
      ExpectSameLayout(cpu, cuda);
      EXPECT_TRUE(SameBytes(bytes, Raw(cuda.handle())));
      v1::TensorInfo back = To(cuda.handle(), "cpu");
      EXPECT_EQ(back.device(), "cpu");
      EXPECT_TRUE(SameBytes(bytes, Raw(back.handle())));
      // cuda -> cuda copy, too.
      v1::TensorInfo copy = To(cuda.handle(), "", v1::DTYPE_UNSPECIFIED, true);
      EXPECT_EQ(copy.device(), kCuda);
      EXPECT_TRUE(SameBytes(bytes, Raw(copy.handle())));
      DeleteAll();
    }
  }
  EXPECT_EQ(DeviceStatsOf(kCuda).allocated_bytes(), 0);
}

// Values that find the edges of every cast: NaN, infinities, signed zero,
// ties at every float format's precision, integer range limits and just
// past them, subnormals; then a ramp through the small integers.
std::vector<double> CastEdgeValues() {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> v = {nan,
                           -nan,
                           inf,
                           -inf,
                           0.0,
                           -0.0,
                           0.5,
                           -0.5,
                           1.5,
                           2.5,
                           -2.5,
                           0.49999997,
                           0.9999999,
                           1.0,
                           -1.0,
                           127,
                           127.9,
                           128,
                           -128,
                           -128.9,
                           -129,
                           255,
                           255.9,
                           256,
                           300,
                           -300,
                           32767,
                           32768,
                           -32768,
                           -32769,
                           65504,
                           65519,
                           65520,
                           65535,
                           65536,
                           2049,
                           2051,
                           16777217,
                           1.00390625,
                           1.01171875,
                           2147483647.0,
                           2147483648.0,
                           -2147483648.0,
                           -2147483649.0,
                           4294967295.0,
                           4294967296.0,
                           9.2233720368547758e18,
                           -9.2233720368547758e18,
                           -9.3e18,
                           1.8446744073709552e19,
                           2e19,
                           3.0e38,
                           3.4028235677973366e38,
                           3.5e38,
                           1e300,
                           -1e300,
                           5e-324,
                           1e-40,
                           1.4e-45,
                           6e-8,
                           5.96e-8,
                           1e-8,
                           -1e-8,
                           3.14159,
                           -7.9,
                           1e10,
                           -1e10,
                           0.1,
                           1.0 / 3.0};
  for (int i = 0; i < 1000; ++i) v.push_back(i * 1.37 - 500);
  return v;
}

TEST_F(GpuTest, CastsOnTheWayToCudaMatchTheCpu) {
  const std::vector<double> values = CastEdgeValues();
  const int64_t n = static_cast<int64_t>(values.size());
  std::string real(reinterpret_cast<const char*>(values.data()),
                   values.size() * sizeof(double));
  // Complex sources: the values as real parts, reversed as imaginary parts.
  std::vector<double> interleaved;
  for (int64_t i = 0; i < n; ++i) {
    interleaved.push_back(values[i]);
    interleaved.push_back(values[n - 1 - i]);
  }
  std::string complex(reinterpret_cast<const char*>(interleaved.data()),
                      interleaved.size() * sizeof(double));
  const v1::TensorInfo real_master =
      PutRaw("cpu", v1::DTYPE_FLOAT64, {n}, real);
  const v1::TensorInfo complex_master =
      PutRaw("cpu", v1::DTYPE_COMPLEX128, {n}, complex);
  ASSERT_FALSE(real_master.handle().empty());
  ASSERT_FALSE(complex_master.handle().empty());
  const std::vector<v1::DType> all = AllProtoDTypes();
  for (v1::DType src : all) {
    const bool is_complex =
        src == v1::DTYPE_COMPLEX64 || src == v1::DTYPE_COMPLEX128;
    // The source on the host, made by the cpu's own cast; then its copy on
    // the GPU.
    const v1::TensorInfo& master = is_complex ? complex_master : real_master;
    v1::TensorInfo src_cpu = To(master.handle(), "cpu", src, true);
    v1::TensorInfo src_cuda = To(src_cpu.handle(), kCuda);
    ASSERT_FALSE(src_cuda.handle().empty());
    std::vector<std::string> made;
    for (v1::DType dst : all) {
      SCOPED_TRACE(absl::StrCat(Name(src), " -> ", Name(dst)));
      v1::TensorInfo ref = To(src_cpu.handle(), "cpu", dst);
      const std::string expected = Raw(ref.handle());
      // cpu -> cuda with the cast.
      v1::TensorInfo a = To(src_cpu.handle(), kCuda, dst);
      EXPECT_EQ(a.device(), kCuda);
      EXPECT_EQ(a.dtype(), dst);
      EXPECT_TRUE(SameBytes(expected, Raw(a.handle()))) << "cpu -> cuda:0";
      // cuda -> cuda cast.
      v1::TensorInfo b = To(src_cuda.handle(), "", dst);
      EXPECT_EQ(b.device(), kCuda);
      EXPECT_TRUE(SameBytes(expected, Raw(b.handle()))) << "on cuda:0";
      // cuda -> cpu with the cast.
      v1::TensorInfo c = To(src_cuda.handle(), "cpu", dst);
      EXPECT_EQ(c.device(), "cpu");
      EXPECT_TRUE(SameBytes(expected, Raw(c.handle()))) << "cuda:0 -> cpu";
      // The cast in the Fetch stream of the cuda tensor.
      EXPECT_TRUE(SameBytes(expected, Raw(src_cuda.handle(), dst)))
          << "Fetch(dtype) of the cuda:0 tensor";
      for (const v1::TensorInfo* t : {&ref, &a, &b, &c}) {
        if (t->handle() != src_cpu.handle() &&
            t->handle() != src_cuda.handle() && !t->handle().empty()) {
          made.push_back(t->handle());
        }
      }
    }
    made.push_back(src_cpu.handle());
    made.push_back(src_cuda.handle());
    ASSERT_TRUE(client().Delete(made).ok());
  }
  EXPECT_EQ(DeviceStatsOf(kCuda).allocated_bytes(), 0);
}

TEST_F(GpuTest, FortranOrderViewsArriveInCOrder) {
  struct Case {
    DType dtype;
    std::vector<int64_t> shape;
  };
  for (const Case& c :
       {Case{DType::kFloat32, {67, 129}}, Case{DType::kInt16, {5, 6, 7}},
        Case{DType::kFloat64, {1024, 513}}, Case{DType::kComplex64, {3, 4}}}) {
    SCOPED_TRACE(absl::StrCat(DTypeName(c.dtype), " rank ", c.shape.size()));
    int64_t numel = 1;
    for (int64_t d : c.shape) numel *= d;
    const v1::DType dtype = ProtoDType(c.dtype);
    const std::string c_order =
        RandomBytes(numel * ItemSize(c.dtype), numel, dtype);
    const std::string file = MakeNpy(c.dtype, c.shape, c_order, true, false);
    v1::TensorInfo cpu = PutNpy("cpu", file);
    ASSERT_FALSE(cpu.handle().empty());
    EXPECT_FALSE(cpu.is_contiguous());
    EXPECT_TRUE(SameBytes(c_order, Raw(cpu.handle())));

    // Moved: a contiguous copy, as the cpu's own copy is.
    v1::TensorInfo cpu_copy =
        To(cpu.handle(), "cpu", v1::DTYPE_UNSPECIFIED, true);
    v1::TensorInfo moved = To(cpu.handle(), kCuda);
    ExpectSameLayout(cpu_copy, moved);
    EXPECT_TRUE(SameBytes(c_order, Raw(moved.handle())));
    // Moved with a cast.
    v1::TensorInfo cast_cpu = To(cpu.handle(), "cpu", v1::DTYPE_FLOAT16);
    v1::TensorInfo cast_cuda = To(cpu.handle(), kCuda, v1::DTYPE_FLOAT16);
    ExpectSameLayout(cast_cpu, cast_cuda);
    EXPECT_TRUE(SameBytes(Raw(cast_cpu.handle()), Raw(cast_cuda.handle())));

    // Put straight to the GPU: stored as sent (a Fortran view), as on cpu.
    v1::TensorInfo direct = PutNpy(kCuda, file);
    ExpectSameLayout(cpu, direct);
    EXPECT_TRUE(SameBytes(c_order, Raw(direct.handle())));
    // The view's fetch with a cast and a range that cuts elements.
    FetchOptions options;
    options.format = v1::FORMAT_NPY;
    options.dtype = v1::DTYPE_FLOAT64;
    options.offset = 77;
    options.length = numel * 8 / 2 + 3;
    Fetched from_cpu = FetchAll(cpu.handle(), options);
    Fetched from_cuda = FetchAll(direct.handle(), options);
    ASSERT_TRUE(from_cpu.status.ok()) << from_cpu.status;
    ASSERT_TRUE(from_cuda.status.ok()) << from_cuda.status;
    EXPECT_TRUE(SameBytes(from_cpu.bytes, from_cuda.bytes));
    // The view's moves from the GPU: to cpu, and a copy on the GPU.
    v1::TensorInfo back = To(direct.handle(), "cpu");
    ExpectSameLayout(back,
                     To(direct.handle(), "", v1::DTYPE_UNSPECIFIED, true));
    EXPECT_TRUE(SameBytes(c_order, Raw(back.handle())));
    // A detached view of the GPU view keeps its strides.
    absl::StatusOr<v1::TensorInfo> view = client().Detach(direct.handle());
    ASSERT_TRUE(view.ok()) << view.status();
    ExpectSameLayout(cpu, *view);
    EXPECT_TRUE(SameBytes(c_order, Raw(view->handle())));
    DeleteAll();
  }
  EXPECT_EQ(DeviceStatsOf(kCuda).allocated_bytes(), 0);
}

TEST_F(GpuTest, PutStraightToCuda) {
  int seed = 100;
  // RAW, every dtype of the list.
  for (v1::DType dtype : SomeDTypes()) {
    SCOPED_TRACE(Name(dtype));
    const std::string bytes =
        RandomBytes(1000 * 3 * ItemSize(CoreDType(dtype)), ++seed, dtype);
    v1::TensorInfo t = PutRaw(kCuda, dtype, {1000, 3}, bytes);
    EXPECT_EQ(t.device(), kCuda);
    EXPECT_TRUE(t.is_contiguous());
    EXPECT_TRUE(SameBytes(bytes, Raw(t.handle())));
    absl::StatusOr<v1::TensorInfo> info = client().Info(t.handle());
    ASSERT_TRUE(info.ok());
    EXPECT_EQ(info->device(), kCuda);
  }
  // NPY, little- and big-endian: the same tensor as the cpu gets, and the
  // same .npy back.
  for (DType dtype : {DType::kInt32, DType::kFloat64, DType::kComplex64,
                      DType::kFloat16, DType::kUInt8, DType::kBool}) {
    for (bool big_endian : {false, true}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(dtype), big_endian ? " >" : " <"));
      const std::string data =
          RandomBytes(41 * 43 * ItemSize(dtype), ++seed, ProtoDType(dtype));
      const std::string file =
          MakeNpy(dtype, {41, 43}, data, false, big_endian);
      v1::TensorInfo cpu = PutNpy("cpu", file);
      v1::TensorInfo cuda = PutNpy(kCuda, file);
      ExpectSameLayout(cpu, cuda);
      EXPECT_TRUE(SameBytes(data, Raw(cuda.handle())));
      FetchOptions npy;
      npy.format = v1::FORMAT_NPY;
      Fetched a = FetchAll(cpu.handle(), npy);
      Fetched b = FetchAll(cuda.handle(), npy);
      ASSERT_TRUE(a.status.ok() && b.status.ok()) << a.status << b.status;
      EXPECT_TRUE(SameBytes(a.bytes, b.bytes));
      if (!big_endian) {
        EXPECT_TRUE(SameBytes(file, b.bytes));
      }
    }
  }
  DeleteAll();

  // 64 MiB, RAW and big-endian NPY: several Put messages each.
  const std::string big = RandomBytes(64 * kMiB, 7, v1::DTYPE_FLOAT32);
  {
    v1::TensorInfo t = PutRaw(kCuda, v1::DTYPE_FLOAT32, {16 * kMiB}, big);
    EXPECT_EQ(t.nbytes(), 64 * kMiB);
    EXPECT_TRUE(SameBytes(big, Raw(t.handle())));
    ASSERT_TRUE(client().Delete({t.handle()}).ok());
  }
  {
    const std::string file =
        MakeNpy(DType::kFloat32, {4 * kMiB, 4}, big, false, true);
    v1::TensorInfo t = PutNpy(kCuda, file);
    EXPECT_EQ(t.dtype(), v1::DTYPE_FLOAT32);
    EXPECT_TRUE(SameBytes(big, Raw(t.handle())));
    ASSERT_TRUE(client().Delete({t.handle()}).ok());
  }
  EXPECT_EQ(DeviceStatsOf(kCuda).allocated_bytes(), 0);
}

TEST_F(GpuTest, FetchWithCastAndRangesMatchesTheCpu) {
  // float32 values with NaN, infinities and out-of-range values sprinkled in.
  const int64_t n = (int64_t{1} << 20) + 5;
  std::vector<float> v(n);
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(),
                            std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(),
                            1e10f,
                            -1e10f,
                            70000.0f,
                            -0.0f,
                            3e38f};
  for (int64_t i = 0; i < n; ++i) {
    v[i] = i % 97 == 0 ? specials[(i / 97) % 8]
                       : static_cast<float>(i % 1000) * 0.37f - 150.0f;
  }
  const std::string bytes(reinterpret_cast<const char*>(v.data()), n * 4);
  v1::TensorInfo cpu = PutRaw("cpu", v1::DTYPE_FLOAT32, {n}, bytes);
  v1::TensorInfo cuda = To(cpu.handle(), kCuda);
  ASSERT_FALSE(cuda.handle().empty());

  int round = 0;
  for (v1::DType dtype :
       {v1::DTYPE_UNSPECIFIED, v1::DTYPE_FLOAT16, v1::DTYPE_BFLOAT16,
        v1::DTYPE_FLOAT64, v1::DTYPE_INT32, v1::DTYPE_UINT8, v1::DTYPE_BOOL,
        v1::DTYPE_COMPLEX64, v1::DTYPE_INT64}) {
    for (v1::Format format : {v1::FORMAT_RAW, v1::FORMAT_NPY}) {
      SCOPED_TRACE(absl::StrCat(Name(dtype), " ", v1::Format_Name(format)));
      FetchOptions options;
      options.format = format;
      options.dtype = dtype;
      Fetched whole_cpu = FetchAll(cpu.handle(), options);
      Fetched whole_cuda = FetchAll(cuda.handle(), options);
      ASSERT_EQ(whole_cuda.status.code(), whole_cpu.status.code())
          << whole_cuda.status;
      if (!whole_cpu.status.ok()) continue;  // bfloat16 as .npy: refused
      EXPECT_TRUE(SameBytes(whole_cpu.bytes, whole_cuda.bytes));
      const int64_t total = whole_cpu.header.total_bytes();
      EXPECT_EQ(whole_cuda.header.total_bytes(), total);
      EXPECT_EQ(whole_cuda.header.tensor().device(), "cpu");
      EXPECT_EQ(whole_cuda.header.tensor().dtype(),
                whole_cpu.header.tensor().dtype());
      const std::pair<int64_t, int64_t> ranges[] = {
          {1001, 77777},         {3, 5},           {1, 0}, {total - 7, 0},
          {total / 2 + 1, 4099}, {total - 1, 100}, {0, 1}};
      for (const auto& [offset, length] : ranges) {
        SCOPED_TRACE(absl::StrCat("offset ", offset, " length ", length));
        options.offset = offset;
        options.length = length;
        const int64_t chunks[] = {0, 4096, 3 * kMiB};
        options.chunk_bytes = chunks[round++ % 3];
        Fetched a = FetchAll(cpu.handle(), options);
        Fetched b = FetchAll(cuda.handle(), options);
        ASSERT_TRUE(a.status.ok()) << a.status;
        ASSERT_TRUE(b.status.ok()) << b.status;
        EXPECT_TRUE(SameBytes(a.bytes, b.bytes));
        const int64_t want =
            length == 0 ? total - offset : std::min(length, total - offset);
        EXPECT_TRUE(SameBytes(whole_cpu.bytes.substr(offset, want), b.bytes));
        EXPECT_EQ(b.header.offset(), a.header.offset());
        EXPECT_EQ(b.header.length(), a.header.length());
        EXPECT_EQ(b.header.total_bytes(), total);
      }
      // Past the end: the same answer from both.
      options.offset = total + 1;
      options.length = 0;
      EXPECT_EQ(FetchAll(cuda.handle(), options).status.code(),
                FetchAll(cpu.handle(), options).status.code());
    }
  }
}

TEST_F(GpuTest, Fetch256MiBWholeEqualsTheCpu) {
  const int64_t bytes = 256 * kMiB;
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(bytes / 4);
  create.set_rand_seed(20240601);
  v1::TensorInfo cpu = Create(create, "cpu");
  v1::TensorInfo cuda = Create(create, kCuda);
  ASSERT_FALSE(cpu.handle().empty() || cuda.handle().empty());
  std::unique_ptr<char[]> a(new char[bytes]);
  std::unique_ptr<char[]> b(new char[bytes]);
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  raw.force = true;
  absl::StatusOr<v1::FetchHeader> ha =
      client().FetchInto(cpu.handle(), raw, a.get(), bytes);
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<v1::FetchHeader> hb =
      client().FetchInto(cuda.handle(), raw, b.get(), bytes);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
  ASSERT_TRUE(ha.ok()) << ha.status();
  ASSERT_TRUE(hb.ok()) << hb.status();
  EXPECT_EQ(ha->length(), bytes);
  EXPECT_EQ(hb->length(), bytes);
  EXPECT_EQ(std::memcmp(a.get(), b.get(), bytes), 0);
  std::printf("[          ] 256 MiB from cuda:0 in %.3f s (%.2f GB/s)\n",
              seconds, static_cast<double>(bytes) / seconds / 1e9);
  ASSERT_TRUE(client().Delete({cpu.handle(), cuda.handle()}).ok());
}

TEST_F(GpuTest, DeleteFreesDeviceMemoryAndEmptyCacheReleasesIt) {
  const v1::DeviceStats s0 = DeviceStatsOf(kCuda);
  EXPECT_EQ(s0.allocated_bytes(), 0);
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_FLOAT32);
  create.add_shape(2 * kMiB);
  create.mutable_zeros();
  v1::TensorInfo a = Create(create, kCuda);  // 8 MiB
  create.set_dtype(v1::DTYPE_UINT8);
  create.set_shape(0, kMiB + 3);
  v1::TensorInfo b = Create(create, kCuda);
  create.set_shape(0, 100);
  v1::TensorInfo small = Create(create, kCuda);
  v1::TensorInfo put = PutRaw(kCuda, v1::DTYPE_INT64, {256 * 1024},
                              RandomBytes(2 * kMiB, 1, v1::DTYPE_INT64));
  v1::TensorInfo host = PutRaw("cpu", v1::DTYPE_INT16, {2 * kMiB},
                               RandomBytes(4 * kMiB, 2, v1::DTYPE_INT16));
  v1::TensorInfo moved = To(host.handle(), kCuda);
  absl::StatusOr<v1::TensorInfo> view = client().Detach(a.handle());
  ASSERT_TRUE(view.ok());
  // Fetched once each, so that any staging is exercised before the deletes.
  for (const v1::TensorInfo* t : {&a, &b, &small, &put, &moved})
    Raw(t->handle());

  const v1::DeviceStats s1 = DeviceStatsOf(kCuda);
  const int64_t sum =
      a.nbytes() + b.nbytes() + small.nbytes() + put.nbytes() + moved.nbytes();
  EXPECT_GE(s1.allocated_bytes(), sum);
  EXPECT_GE(s1.reserved_bytes(), s1.allocated_bytes());
  EXPECT_GE(s1.peak_allocated_bytes(), s1.allocated_bytes());
  EXPECT_EQ(s1.tensors(), 6);
  EXPECT_GE(s1.alloc_count(), 5);

  // Deleting the original keeps the view's storage.
  ASSERT_TRUE(client().Delete({a.handle()}).ok());
  EXPECT_EQ(DeviceStatsOf(kCuda).allocated_bytes(), s1.allocated_bytes());
  EXPECT_TRUE(SameBytes(std::string(8 * kMiB, '\0'), Raw(view->handle())));
  DeleteAll();
  const v1::DeviceStats s2 = DeviceStatsOf(kCuda);
  EXPECT_EQ(s2.allocated_bytes(), 0);
  EXPECT_EQ(s2.tensors(), 0);
  EXPECT_GE(s2.free_count(), 5);

  // EmptyCache hands every cached block back to CUDA. Blocks freed behind a
  // stream are released once it passes them: ask again for a little while.
  int64_t released = 0;
  int64_t reserved = s2.reserved_bytes();
  for (int i = 0; i < 50 && reserved > 0; ++i) {
    absl::StatusOr<int64_t> r = client().EmptyCache(kCuda);
    ASSERT_TRUE(r.ok()) << r.status();
    released += *r;
    reserved = DeviceStatsOf(kCuda).reserved_bytes();
    if (reserved > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(reserved, 0);
  EXPECT_EQ(released, s2.reserved_bytes());
  EXPECT_GE(s2.reserved_bytes(), sum) << "nothing was cached after Delete";
  EXPECT_EQ(DeviceStatsOf(kCuda).segment_count(), 0);
  EXPECT_TRUE(client().EmptyCache("").ok());
  EXPECT_EQ(client().EmptyCache("cuda:1023").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

class GpuMemoryLimitTest : public GpuTest {
 protected:
  std::vector<std::string> Flags() const override {
    return {"--devices=auto", "--memory-limit=64MiB"};
  }
};

TEST_F(GpuMemoryLimitTest, OverTheLimitIsResourceExhausted) {
  EXPECT_EQ(DeviceStatsOf(kCuda).limit_bytes(), 64 * kMiB);
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_UINT8);
  create.add_shape(100 * kMiB);
  create.set_device(kCuda);
  create.mutable_ones();
  absl::StatusOr<v1::TensorInfo> refused = client().Create(create);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted)
      << refused.status();
  const absl::string_view message = refused.status().message();
  EXPECT_NE(message.find("limit"), absl::string_view::npos) << message;
  EXPECT_NE(message.find("64.00 MiB"), absl::string_view::npos) << message;
  EXPECT_NE(message.find(kCuda), absl::string_view::npos) << message;

  // Under the limit works; a move that would pass it is refused too.
  create.set_shape(0, 40 * kMiB);
  absl::StatusOr<v1::TensorInfo> fits = client().Create(create);
  ASSERT_TRUE(fits.ok()) << fits.status();
  create.set_device("cpu");
  absl::StatusOr<v1::TensorInfo> host = client().Create(create);
  ASSERT_TRUE(host.ok()) << host.status();
  v1::ToRequest to;
  to.set_ref(host->handle());
  to.set_device(kCuda);
  EXPECT_EQ(client().To(to).status().code(),
            absl::StatusCode::kResourceExhausted);
  // Still serving; freed memory is usable again.
  ASSERT_TRUE(client().Delete({fits->handle()}).ok());
  absl::StatusOr<v1::TensorInfo> moved = client().To(to);
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_TRUE(SameBytes(std::string(40 * kMiB, '\1'), Raw(moved->handle())));
  DeleteAll();
  EXPECT_EQ(DeviceStatsOf(kCuda).allocated_bytes(), 0);
}

}  // namespace
}  // namespace tensorcast::testing
