// Tests FetchSource (fetch_source.h): the Tensor.numpy() refusals with
// PyTorch's messages, NPY and RAW output, casts, every byte range, views
// read in C order, and that a source keeps its storage alive.
#include "server/store/fetch_source.h"

#include <algorithm>
#include <complex>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/npy.h"
#include "server/memory/host_memory_resource.h"
#include "server/ops/cast.h"
#include "server/store/device.h"
#include "server/store/store_test_util.h"
#include "server/store/tensor_store.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;

constexpr char kCudaMessage[] =
    "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to "
    "copy the tensor to host memory first.";

class FetchSourceTest : public testing::HostStoreTest {
 protected:
  // A contiguous host tensor whose bytes are `bytes`.
  TensorPtr Make(DType dtype, Shape shape, const std::string& bytes,
                 bool requires_grad = false) {
    absl::StatusOr<std::shared_ptr<Storage>> storage = Storage::Allocate(
        registry_->host(), static_cast<int64_t>(bytes.size()));
    EXPECT_TRUE(storage.ok()) << storage.status();
    if (!storage.ok()) return nullptr;
    std::memcpy((*storage)->data(), bytes.data(), bytes.size());
    NewTensor t;
    t.dtype = dtype;
    t.layout = Layout::Contiguous(std::move(shape));
    t.requires_grad = requires_grad;
    t.storage = *std::move(storage);
    absl::StatusOr<TensorPtr> added = store_.Add(std::move(t));
    EXPECT_TRUE(added.ok()) << added.status();
    return added.ok() ? *added : nullptr;
  }

  template <typename T>
  static std::string Bytes(const std::vector<T>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()),
                       v.size() * sizeof(T));
  }

  // n float32 values 0.5, 1.5, 2.5...
  static std::string FloatBytes(int64_t n) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) + 0.5f;
    return Bytes(v);
  }

  static std::string ReadAll(const FetchSource& src) {
    std::string out(static_cast<size_t>(src.end() - src.begin()), '\0');
    src.Read(src.begin(), src.end() - src.begin(), out.data());
    return out;
  }

  // Every (offset, length) pair on a grid that includes unaligned ones,
  // through Read directly and through Open's range: both must equal the
  // slice of a full read.
  static void CheckEveryRange(const TensorPtr& t, const FetchSpec& spec) {
    absl::StatusOr<FetchSource> whole = FetchSource::Open(t, spec);
    ASSERT_TRUE(whole.ok()) << whole.status();
    const int64_t total = whole->total_bytes();
    const std::string full = ReadAll(*whole);
    ASSERT_EQ(static_cast<int64_t>(full.size()), total);
    std::vector<int64_t> points;
    for (int64_t p = 0; p <= total; p += p < 200 ? 1 : 37) points.push_back(p);
    points.push_back(total);
    int checked = 0;
    for (int64_t pos : points) {
      for (int64_t n : {1, 2, 3, 5, 7, 8, 13, 64, 100, 1000}) {
        if (pos + n > total) continue;
        std::string got(static_cast<size_t>(n), '\x5a');
        whole->Read(pos, n, got.data());
        ASSERT_EQ(got, full.substr(pos, n)) << "Read pos " << pos << " n " << n;
        ++checked;
      }
    }
    EXPECT_GT(checked, 100);
    // Open's byte range, a sample of it: begin/end and the bytes they give.
    for (int64_t offset : {int64_t{0}, int64_t{1}, int64_t{3}, total / 2 + 1,
                           total - 1, total}) {
      for (int64_t length : {int64_t{0}, int64_t{1}, int64_t{9}, total * 2}) {
        FetchSpec ranged = spec;
        ranged.offset = offset;
        ranged.length = length;
        absl::StatusOr<FetchSource> src = FetchSource::Open(t, ranged);
        ASSERT_TRUE(src.ok()) << src.status();
        int64_t want_end =
            length == 0 ? total : std::min(total, offset + length);
        EXPECT_EQ(src->begin(), offset);
        EXPECT_EQ(src->end(), want_end);
        EXPECT_EQ(src->total_bytes(), total);
        EXPECT_EQ(ReadAll(*src), full.substr(offset, want_end - offset))
            << "offset " << offset << " length " << length;
      }
    }
  }
};

TEST_F(FetchSourceTest, RequiresGradIsRefusedWithPyTorchsMessage) {
  TensorPtr t = Make(DType::kFloat32, {4}, FloatBytes(4), true);
  ASSERT_NE(t, nullptr);
  absl::StatusOr<FetchSource> plain = FetchSource::Open(t, {});
  EXPECT_EQ(plain.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(plain.status().message(),
            "Can't call numpy() on Tensor that requires grad. Use "
            "tensor.detach().numpy() instead.");
  FetchSpec cpu_only;
  cpu_only.cpu = true;
  EXPECT_EQ(FetchSource::Open(t, cpu_only).status().message(),
            kRequiresGradMessage);

  FetchSpec detach;
  detach.detach = true;
  absl::StatusOr<FetchSource> detached = FetchSource::Open(t, detach);
  ASSERT_TRUE(detached.ok()) << detached.status();
  FetchSpec force;
  force.force = true;
  absl::StatusOr<FetchSource> forced = FetchSource::Open(t, force);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(ReadAll(*forced), ReadAll(*detached));
}

TEST_F(FetchSourceTest, DeviceTensorIsRefusedFirstWithPyTorchsMessage) {
  // A device that is not the host, backed by host memory so that the test
  // needs no GPU: Open decides on the device's name alone.
  Device fake_gpu("cuda:0", "host memory posing as a GPU",
                  std::make_unique<HostMemoryResource>(), 0,
                  [](CachingPool*) { return NewHostEngine(); });
  {
    TensorStore gpu_store;  // dies before fake_gpu, whatever fails
    absl::StatusOr<std::shared_ptr<Storage>> storage =
        Storage::Allocate(&fake_gpu, 12);
    ASSERT_TRUE(storage.ok()) << storage.status();
    std::memcpy((*storage)->data(), FloatBytes(3).data(), 12);
    NewTensor nt;
    nt.layout = Layout::Contiguous({3});
    nt.requires_grad = true;
    nt.storage = *std::move(storage);
    absl::StatusOr<TensorPtr> added = gpu_store.Add(std::move(nt));
    ASSERT_TRUE(added.ok()) << added.status();
    TensorPtr t = *added;
    EXPECT_EQ(t->device(), "cuda:0");
    // PyTorch checks the device before grad.
    absl::StatusOr<FetchSource> plain = FetchSource::Open(t, {});
    EXPECT_EQ(plain.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(plain.status().message(), kCudaMessage);
    FetchSpec detach_only;
    detach_only.detach = true;
    EXPECT_EQ(FetchSource::Open(t, detach_only).status().message(),
              kCudaMessage);
    FetchSpec cpu_only;
    cpu_only.cpu = true;
    EXPECT_EQ(FetchSource::Open(t, cpu_only).status().message(),
              kRequiresGradMessage);
    FetchSpec both;
    both.cpu = true;
    both.detach = true;
    EXPECT_TRUE(FetchSource::Open(t, both).ok());
    FetchSpec force;
    force.force = true;
    absl::StatusOr<FetchSource> forced = FetchSource::Open(t, force);
    ASSERT_TRUE(forced.ok()) << forced.status();
    EXPECT_EQ(forced->total_bytes(),
              static_cast<int64_t>(
                  EncodeNpyHeader(DType::kFloat32, Shape{3})->size() + 12));
    EXPECT_GT(fake_gpu.pool().Stats().allocated_bytes, 0);
  }
  EXPECT_EQ(fake_gpu.pool().Stats().allocated_bytes, 0);
}

TEST_F(FetchSourceTest, NpyIsTheEncodedHeaderThenTheData) {
  const std::string data = FloatBytes(12);
  TensorPtr t = Make(DType::kFloat32, {3, 4}, data);
  ASSERT_NE(t, nullptr);
  absl::StatusOr<FetchSource> src = FetchSource::Open(t, {});
  ASSERT_TRUE(src.ok()) << src.status();
  absl::StatusOr<std::string> header =
      EncodeNpyHeader(DType::kFloat32, Shape{3, 4});
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(src->out_dtype(), DType::kFloat32);
  EXPECT_EQ(src->total_bytes(), static_cast<int64_t>(header->size() + 48));
  EXPECT_EQ(src->begin(), 0);
  EXPECT_EQ(src->end(), src->total_bytes());
  EXPECT_EQ(ReadAll(*src), *header + data);

  // The header parses back to what was sent.
  absl::StatusOr<std::optional<NpyHeader>> parsed = ParseNpyHeader(*header);
  ASSERT_TRUE(parsed.ok() && parsed->has_value());
  EXPECT_EQ((*parsed)->shape, (Shape{3, 4}));
  EXPECT_FALSE((*parsed)->fortran_order);
}

TEST_F(FetchSourceTest, RawIsTheDataAlone) {
  std::vector<int16_t> v = {1, -2, 300, -400, 5};
  TensorPtr t = Make(DType::kInt16, {5}, Bytes(v));
  ASSERT_NE(t, nullptr);
  FetchSpec raw;
  raw.format = WireFormat::kRaw;
  absl::StatusOr<FetchSource> src = FetchSource::Open(t, raw);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(src->total_bytes(), 10);
  EXPECT_EQ(ReadAll(*src), Bytes(v));
}

TEST_F(FetchSourceTest, CastOnTheFly) {
  std::vector<double> v = {-1.5, 0.25, 3.75, 1e300};
  TensorPtr t = Make(DType::kFloat64, {2, 2}, Bytes(v));
  ASSERT_NE(t, nullptr);
  FetchSpec spec;
  spec.format = WireFormat::kRaw;
  spec.dtype = DType::kFloat32;
  absl::StatusOr<FetchSource> src = FetchSource::Open(t, spec);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(src->out_dtype(), DType::kFloat32);
  EXPECT_EQ(src->total_bytes(), 16);
  std::string want(16, '\0');
  Cast(v.data(), DType::kFloat64, want.data(), DType::kFloat32, 4);
  std::string got = ReadAll(*src);
  EXPECT_EQ(got, want);
  float f[4];
  std::memcpy(f, got.data(), 16);
  EXPECT_EQ(f[0], -1.5f);
  EXPECT_EQ(f[2], 3.75f);

  spec.format = WireFormat::kNpy;
  spec.dtype = DType::kInt8;
  src = FetchSource::Open(t, spec);
  ASSERT_TRUE(src.ok()) << src.status();
  std::string header = *EncodeNpyHeader(DType::kInt8, Shape{2, 2});
  std::string ints(4, '\0');
  Cast(v.data(), DType::kFloat64, ints.data(), DType::kInt8, 4);
  EXPECT_EQ(ReadAll(*src), header + ints);
}

TEST_F(FetchSourceTest, EveryByteRangeMatchesAFullRead) {
  TensorPtr f32 = Make(DType::kFloat32, {7, 9}, FloatBytes(63));
  ASSERT_NE(f32, nullptr);
  std::vector<std::complex<double>> cv;
  for (int i = 0; i < 20; ++i) cv.push_back({i + 0.25, -i - 0.5});
  TensorPtr c128 = Make(DType::kComplex128, {4, 5}, Bytes(cv));
  ASSERT_NE(c128, nullptr);

  FetchSpec npy;
  FetchSpec raw;
  raw.format = WireFormat::kRaw;
  FetchSpec npy_cast;  // not a plain copy: through GatherCast
  npy_cast.dtype = DType::kFloat64;
  FetchSpec raw_narrow;
  raw_narrow.format = WireFormat::kRaw;
  raw_narrow.dtype = DType::kInt16;
  FetchSpec complex_down;
  complex_down.dtype = DType::kComplex64;
  for (const auto& [t, spec, label] :
       std::vector<std::tuple<TensorPtr, FetchSpec, std::string>>{
           {f32, npy, "f32 npy"},
           {f32, raw, "f32 raw"},
           {f32, npy_cast, "f32->f64 npy"},
           {f32, raw_narrow, "f32->i16 raw"},
           {c128, npy, "c128 npy"},
           {c128, complex_down, "c128->c64 npy"}}) {
    SCOPED_TRACE(label);
    CheckEveryRange(t, spec);
  }
}

TEST_F(FetchSourceTest, NonContiguousViewIsReadInCOrder) {
  std::vector<int32_t> v(12);
  for (int i = 0; i < 12; ++i) v[i] = i;
  TensorPtr base = Make(DType::kInt32, {3, 4}, Bytes(v));
  ASSERT_NE(base, nullptr);
  NewTensor view;
  view.dtype = DType::kInt32;
  view.layout.shape = {4, 3};
  view.layout.strides = {1, 4};  // base.T
  view.storage = base->storage;
  absl::StatusOr<TensorPtr> transposed = store_.Add(std::move(view));
  ASSERT_TRUE(transposed.ok()) << transposed.status();
  ASSERT_FALSE((*transposed)->layout.IsContiguous());

  const std::vector<int32_t> c_order = {0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11};
  FetchSpec raw;
  raw.format = WireFormat::kRaw;
  absl::StatusOr<FetchSource> src = FetchSource::Open(*transposed, raw);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(ReadAll(*src), Bytes(c_order));

  absl::StatusOr<FetchSource> npy = FetchSource::Open(*transposed, {});
  ASSERT_TRUE(npy.ok());
  EXPECT_EQ(ReadAll(*npy),
            *EncodeNpyHeader(DType::kInt32, Shape{4, 3}) + Bytes(c_order));
  CheckEveryRange(*transposed, raw);
  FetchSpec widened;
  widened.dtype = DType::kInt64;
  CheckEveryRange(*transposed, widened);

  // A strided view with an offset: base[1, ::2] = [4, 6].
  NewTensor row;
  row.dtype = DType::kInt32;
  row.layout.shape = {2};
  row.layout.strides = {2};
  row.layout.offset = 4;
  row.storage = base->storage;
  absl::StatusOr<TensorPtr> strided = store_.Add(std::move(row));
  ASSERT_TRUE(strided.ok()) << strided.status();
  src = FetchSource::Open(*strided, raw);
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(ReadAll(*src), Bytes(std::vector<int32_t>{4, 6}));

  // A contiguous view with an offset is a plain copy from the right place.
  NewTensor tail;
  tail.dtype = DType::kInt32;
  tail.layout = Layout::Contiguous({3});
  tail.layout.offset = 9;
  tail.storage = base->storage;
  absl::StatusOr<TensorPtr> last = store_.Add(std::move(tail));
  ASSERT_TRUE(last.ok());
  src = FetchSource::Open(*last, raw);
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(ReadAll(*src), Bytes(std::vector<int32_t>{9, 10, 11}));
}

TEST_F(FetchSourceTest, BFloat16HasNoNpy) {
  std::vector<uint16_t> bf = {0x3f80, 0x4000, 0xc040};  // 1, 2, -3
  TensorPtr t = Make(DType::kBFloat16, {3}, Bytes(bf));
  ASSERT_NE(t, nullptr);
  absl::StatusOr<FetchSource> npy = FetchSource::Open(t, {});
  EXPECT_EQ(npy.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(npy.status().message(), HasSubstr("bfloat16"));
  EXPECT_THAT(npy.status().message(), HasSubstr("float32"));
  EXPECT_THAT(npy.status().message(), HasSubstr("RAW"));

  FetchSpec raw;
  raw.format = WireFormat::kRaw;
  absl::StatusOr<FetchSource> src = FetchSource::Open(t, raw);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(ReadAll(*src), Bytes(bf));

  FetchSpec as_f32;
  as_f32.dtype = DType::kFloat32;
  src = FetchSource::Open(t, as_f32);
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(ReadAll(*src), *EncodeNpyHeader(DType::kFloat32, Shape{3}) +
                               Bytes(std::vector<float>{1.0f, 2.0f, -3.0f}));

  // Casting to bfloat16 on the way out is refused the same way.
  TensorPtr f = Make(DType::kFloat32, {2}, FloatBytes(2));
  ASSERT_NE(f, nullptr);
  FetchSpec to_bf;
  to_bf.dtype = DType::kBFloat16;
  EXPECT_EQ(FetchSource::Open(f, to_bf).status().code(),
            absl::StatusCode::kInvalidArgument);
  to_bf.format = WireFormat::kRaw;
  EXPECT_TRUE(FetchSource::Open(f, to_bf).ok());
}

TEST_F(FetchSourceTest, RangeErrors) {
  TensorPtr t = Make(DType::kFloat32, {10}, FloatBytes(10));
  ASSERT_NE(t, nullptr);
  FetchSpec raw;
  raw.format = WireFormat::kRaw;
  raw.offset = 41;
  absl::StatusOr<FetchSource> past = FetchSource::Open(t, raw);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(past.status().message(), HasSubstr("40-byte"));

  raw.offset = 40;  // the very end: an empty range, not an error
  absl::StatusOr<FetchSource> at_end = FetchSource::Open(t, raw);
  ASSERT_TRUE(at_end.ok()) << at_end.status();
  EXPECT_EQ(at_end->begin(), 40);
  EXPECT_EQ(at_end->end(), 40);

  raw.offset = -1;
  EXPECT_EQ(FetchSource::Open(t, raw).status().code(),
            absl::StatusCode::kInvalidArgument);
  raw.offset = 0;
  raw.length = -5;
  EXPECT_EQ(FetchSource::Open(t, raw).status().code(),
            absl::StatusCode::kInvalidArgument);

  FetchSpec npy;
  absl::StatusOr<FetchSource> whole = FetchSource::Open(t, npy);
  ASSERT_TRUE(whole.ok());
  npy.offset = whole->total_bytes() + 1;
  EXPECT_EQ(FetchSource::Open(t, npy).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST_F(FetchSourceTest, EmptyAndScalarTensors) {
  TensorPtr empty = Make(DType::kFloat64, {0, 3}, "");
  ASSERT_NE(empty, nullptr);
  absl::StatusOr<FetchSource> src = FetchSource::Open(empty, {});
  ASSERT_TRUE(src.ok()) << src.status();
  EXPECT_EQ(ReadAll(*src), *EncodeNpyHeader(DType::kFloat64, Shape{0, 3}));
  FetchSpec raw;
  raw.format = WireFormat::kRaw;
  src = FetchSource::Open(empty, raw);
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(src->total_bytes(), 0);

  TensorPtr scalar = Make(DType::kFloat32, {}, FloatBytes(1));
  ASSERT_NE(scalar, nullptr);
  src = FetchSource::Open(scalar, {});
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(ReadAll(*src),
            *EncodeNpyHeader(DType::kFloat32, Shape{}) + FloatBytes(1));
}

TEST_F(FetchSourceTest, ASourceKeepsItsStorageAliveAfterDelete) {
  const std::string data = FloatBytes(1 << 18);
  TensorPtr t = Make(DType::kFloat32, {1 << 18}, data);
  ASSERT_NE(t, nullptr);
  const int64_t in_use = Allocated();
  EXPECT_GE(in_use, 1 << 20);
  FetchSpec raw;
  raw.format = WireFormat::kRaw;
  {
    absl::StatusOr<FetchSource> src = FetchSource::Open(t, raw);
    ASSERT_TRUE(src.ok());
    std::vector<std::string> refs = {t->handle};
    t.reset();
    ASSERT_TRUE(store_.Delete(refs).ok());
    EXPECT_EQ(store_.size(), 0);
    EXPECT_EQ(Allocated(), in_use);
    EXPECT_EQ(ReadAll(*src), data);
  }
  EXPECT_EQ(Allocated(), 0);
}

}  // namespace
}  // namespace tensorcast
