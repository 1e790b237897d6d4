// GatherCastOnDevice and the device fills against their CPU twins
// (GatherCast, FillValue, FillArange, FillEye, FillRand), bit for bit: the
// gathers on random layouts (transposed, negative and zero strides, offsets,
// ranks 0..6 and one over the kernel's small-rank limit) and odd windows;
// the fills for every dtype at element offsets that move the vector path's
// head and tail, with guard bytes around the destination. Skips where there
// is no CUDA device.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "server/core/shape.h"
#include "server/memory/cuda_check.h"
#include "server/memory/cuda_memory_resource.h"
#include "server/ops/cast.h"
#include "server/ops/fill.h"
#include "server/ops/fill_cuda.h"
#include "server/ops/gather.h"
#include "server/ops/gather_cuda.h"

namespace tensorcast {
namespace {

constexpr size_t kGuardBytes = 64;
constexpr uint8_t kGuardByte = 0xa5;

// A device buffer of `bytes` between guard bytes; Download returns all of
// it, guards included.
class GuardedBuffer {
 public:
  absl::Status Init(size_t bytes) {
    bytes_ = bytes;
    if (absl::Status st = mem_.Allocate(bytes + 2 * kGuardBytes); !st.ok()) {
      return st;
    }
    TC_CUDA_TRY(cudaMemset(mem_.get(), kGuardByte, bytes + 2 * kGuardBytes));
    return absl::OkStatus();
  }
  uint8_t* data() const { return mem_.get() + kGuardBytes; }
  absl::StatusOr<std::vector<uint8_t>> Download() const {
    TC_CUDA_TRY(cudaDeviceSynchronize());
    std::vector<uint8_t> out(bytes_ + 2 * kGuardBytes);
    TC_CUDA_TRY(
        cudaMemcpy(out.data(), mem_.get(), out.size(), cudaMemcpyDeviceToHost));
    return out;
  }
  // What the CPU twin must produce: guards around `body`.
  static std::vector<uint8_t> Expected(const std::vector<uint8_t>& body) {
    std::vector<uint8_t> out(body.size() + 2 * kGuardBytes, kGuardByte);
    std::copy(body.begin(), body.end(), out.begin() + kGuardBytes);
    return out;
  }

 private:
  DeviceBuffer mem_;
  size_t bytes_ = 0;
};

// Index and bytes of the first difference, or "" when equal.
std::string FirstDifference(const std::vector<uint8_t>& want,
                            const std::vector<uint8_t>& got) {
  if (want.size() != got.size()) {
    return absl::StrCat("sizes ", want.size(), " vs ", got.size());
  }
  for (size_t i = 0; i < want.size(); ++i) {
    if (want[i] != got[i]) {
      return absl::StrCat("byte ", i, " (",
                          static_cast<int>(i) - static_cast<int>(kGuardBytes),
                          " from the start): cpu ", static_cast<int>(want[i]),
                          " gpu ", static_cast<int>(got[i]));
    }
  }
  return "";
}

std::vector<DType> AllDTypeValues() {
  std::vector<DType> out;
  for (int i = 0; i < kNumDTypes; ++i) out.push_back(static_cast<DType>(i));
  return out;
}

bool IsFloating(DType d) {
  return d == DType::kFloat16 || d == DType::kBFloat16 ||
         d == DType::kFloat32 || d == DType::kFloat64 ||
         d == DType::kComplex64 || d == DType::kComplex128;
}

class OpsCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<int> count = CudaDeviceCount();
    ASSERT_TRUE(count.ok()) << count.status();
    if (*count == 0) {
      GTEST_SKIP() << "no CUDA device here: GPU gather and fill tests need a "
                      "GPU (run tests/gpu/run.sh on one)";
    }
  }
};

// A random in-bounds layout of `rank` dims and the storage size it needs.
struct RandomView {
  Layout layout;
  int64_t storage_elements = 0;
};

RandomView MakeView(std::mt19937_64& rng, const Shape& shape) {
  RandomView v;
  v.layout.shape = shape;
  const size_t rank = shape.size();
  // C-order strides of a permutation of the dims (a transpose), then some
  // dims negated, widened (gaps) or broadcast.
  std::vector<size_t> perm(rank);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  Strides strides(rank);
  int64_t step = 1 + static_cast<int64_t>(rng() % 2);
  for (size_t k = rank; k-- > 0;) {
    strides[perm[k]] = step;
    step *=
        std::max<int64_t>(shape[perm[k]], 1) + static_cast<int64_t>(rng() % 2);
  }
  int64_t lo = 0;
  int64_t hi = 0;
  for (size_t k = 0; k < rank; ++k) {
    const uint64_t r = rng() % 8;
    if (r == 0) strides[k] = 0;
    if (r == 1 || r == 2) strides[k] = -strides[k];
    const int64_t span = (std::max<int64_t>(shape[k], 1) - 1) * strides[k];
    (span < 0 ? lo : hi) += span;
  }
  v.layout.strides = strides;
  v.layout.offset = -lo + static_cast<int64_t>(rng() % 4);
  v.storage_elements =
      v.layout.offset + hi + 1 + static_cast<int64_t>(rng() % 4);
  return v;
}

// Storage values that every tested pair converts without NaN (whose
// payload the device need not keep): random values in [-300, 300), some
// integral, with infinities and -0.
std::vector<uint8_t> MakeStorage(std::mt19937_64& rng, DType dtype, int64_t n) {
  std::vector<double> values(static_cast<size_t>(n));
  std::uniform_real_distribution<double> real(-300.0, 300.0);
  for (double& x : values) {
    const uint64_t r = rng() % 16;
    x = r == 0   ? std::floor(real(rng))
        : r == 1 ? 0.0
        : r == 2 ? -0.0
        : r == 3 ? std::numeric_limits<double>::infinity()
                 : real(rng);
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(n) * ItemSize(dtype));
  Cast(values.data(), DType::kFloat64, bytes.data(), dtype, n);
  return bytes;
}

void CheckGather(DType s, DType d, const RandomView& view,
                 const std::vector<uint8_t>& storage, int64_t start,
                 int64_t count, const DeviceBuffer& storage_dev) {
  const std::string where = absl::StrCat(
      DTypeName(s), " -> ", DTypeName(d), " shape ",
      ShapeToString(view.layout.shape), " strides ",
      ShapeToString(view.layout.strides), " offset ", view.layout.offset,
      " window [", start, ", ", start + count, ")");
  const size_t out_bytes = static_cast<size_t>(count) * ItemSize(d);
  GuardedBuffer out;
  ASSERT_TRUE(out.Init(out_bytes).ok()) << where;
  const absl::Status st = GatherCastOnDevice(
      storage_dev.get(), s, view.layout, start, count, out.data(), d, nullptr);
  ASSERT_TRUE(st.ok()) << where << ": " << st;
  absl::StatusOr<std::vector<uint8_t>> got = out.Download();
  ASSERT_TRUE(got.ok()) << where << ": " << got.status();
  std::vector<uint8_t> body(out_bytes);
  GatherCast(storage.data(), s, view.layout, start, count, body.data(), d);
  const std::string diff = FirstDifference(GuardedBuffer::Expected(body), *got);
  EXPECT_EQ(diff, "") << where;
}

TEST_F(OpsCudaTest, GatherCastMatchesCpuOnRandomLayouts) {
  const std::pair<DType, DType> pairs[] = {
      {DType::kFloat32, DType::kFloat32}, {DType::kFloat32, DType::kFloat16},
      {DType::kInt64, DType::kFloat64},   {DType::kComplex64, DType::kFloat32},
      {DType::kUInt8, DType::kBool},
  };
  std::mt19937_64 rng(0x6a7e4c0d);
  std::vector<Shape> shapes = {{},
                               {1},
                               {7},
                               {1000003},
                               {300, 257},
                               {1, 5, 1},
                               {3, 4, 5},
                               {2, 3, 4, 5},
                               {6, 1, 7, 3, 2},
                               {2, 3, 2, 3, 2, 5},
                               // Over the kernel's small-rank limit of 8.
                               {2, 2, 3, 2, 2, 3, 2, 2, 3, 2}};
  for (int i = 0; i < 12; ++i) {  // random shapes of ranks 0..6
    Shape shape(rng() % 7);
    for (int64_t& n : shape) n = 1 + static_cast<int64_t>(rng() % 6);
    shapes.push_back(shape);
  }
  for (const auto& [s, d] : pairs) {
    for (const Shape& shape : shapes) {
      for (int trial = 0; trial < 3; ++trial) {
        const RandomView view = MakeView(rng, shape);
        ASSERT_TRUE(
            CheckLayoutInBounds(view.layout, view.storage_elements).ok());
        const int64_t total = *NumElements(shape);
        const std::vector<uint8_t> storage =
            MakeStorage(rng, s, view.storage_elements);
        DeviceBuffer storage_dev;
        ASSERT_TRUE(storage_dev.Allocate(storage.size()).ok());
        ASSERT_EQ(cudaMemcpy(storage_dev.get(), storage.data(), storage.size(),
                             cudaMemcpyHostToDevice),
                  cudaSuccess);
        std::vector<std::pair<int64_t, int64_t>> windows = {
            {0, total}, {total / 3, total - total / 3 - total / 5}};
        if (total >= 3) {
          windows.push_back({1, total - 2});
          windows.push_back({total - 1, 1});
          windows.push_back({total / 2 + 1, (total - total / 2 - 1) / 2});
        }
        for (const auto& [start, count] : windows) {
          CheckGather(s, d, view, storage, start, count, storage_dev);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

TEST_F(OpsCudaTest, GatherCastRejectsNullBuffersAndBadLayouts) {
  DeviceBuffer buffer;
  ASSERT_TRUE(buffer.Allocate(1024).ok());
  const Layout layout = Layout::Contiguous({4});
  EXPECT_EQ(GatherCastOnDevice(nullptr, DType::kFloat32, layout, 0, 4,
                               buffer.get(), DType::kFloat32, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  Layout bad = layout;
  bad.strides.push_back(1);
  EXPECT_EQ(GatherCastOnDevice(buffer.get(), DType::kFloat32, bad, 0, 4,
                               buffer.get() + 512, DType::kFloat32, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(GatherCastOnDevice(nullptr, DType::kFloat32, layout, 0, 0,
                                 nullptr, DType::kFloat32, nullptr)
                  .ok());
}

struct FillCase {
  int64_t n;
  int64_t offset;  // elements into the device buffer
};
constexpr FillCase kFillCases[] = {
    {1, 0}, {7, 1}, {33, 3}, {1000003, 0}, {100001, 1}};

// Runs `device` into a guarded buffer at case.offset and `cpu` into a host
// one; the bytes (guards, the leading offset elements included) must agree.
template <typename DeviceFn, typename CpuFn>
void CompareFill(const std::string& where, DType dtype, const FillCase& c,
                 DeviceFn device, CpuFn cpu) {
  const size_t item = ItemSize(dtype);
  const size_t bytes = (c.offset + c.n) * item;
  GuardedBuffer out;
  ASSERT_TRUE(out.Init(bytes).ok()) << where;
  const absl::Status st = device(out.data() + c.offset * item);
  ASSERT_TRUE(st.ok()) << where << ": " << st;
  absl::StatusOr<std::vector<uint8_t>> got = out.Download();
  ASSERT_TRUE(got.ok()) << where << ": " << got.status();
  std::vector<uint8_t> body(bytes, kGuardByte);
  cpu(body.data() + c.offset * item);
  EXPECT_EQ(FirstDifference(GuardedBuffer::Expected(body), *got), "")
      << where << " (n=" << c.n << ", offset " << c.offset << ")";
}

TEST_F(OpsCudaTest, FillValueMatchesCpu) {
  const double values[] = {0.0,
                           -0.0,
                           1.0,
                           -1.5,
                           300.25,
                           65520.0,
                           1e-8,
                           -7e300,
                           std::numeric_limits<double>::quiet_NaN(),
                           std::numeric_limits<double>::infinity()};
  for (DType dtype : AllDTypeValues()) {
    for (double value : values) {
      for (const FillCase& c : kFillCases) {
        CompareFill(
            absl::StrCat("FillValue ", DTypeName(dtype), " ", value), dtype, c,
            [&](void* dst) {
              return FillValueOnDevice(dst, dtype, c.n, value, nullptr);
            },
            [&](void* dst) { FillValue(dst, dtype, c.n, value); });
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_F(OpsCudaTest, FillArangeMatchesCpu) {
  const std::pair<double, double> ranges[] = {
      {0.0, 1.0},  {-3.0, 0.1},        {1e6, -0.37},
      {0.5, 1e-7}, {-40000.0, 0.8125}, {1.0, 3.0e-3}};
  for (DType dtype : AllDTypeValues()) {
    for (const auto& [start, step] : ranges) {
      for (const FillCase& c : kFillCases) {
        CompareFill(
            absl::StrCat("FillArange ", DTypeName(dtype), " ", start, " ",
                         step),
            dtype, c,
            [&](void* dst) {
              return FillArangeOnDevice(dst, dtype, c.n, start, step, nullptr);
            },
            [&](void* dst) { FillArange(dst, dtype, c.n, start, step); });
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_F(OpsCudaTest, FillEyeMatchesCpu) {
  const std::pair<int64_t, int64_t> sizes[] = {{1, 1},     {3, 5},    {5, 3},
                                               {257, 257}, {1000, 3}, {2, 999}};
  for (DType dtype : AllDTypeValues()) {
    for (const auto& [rows, cols] : sizes) {
      for (int64_t offset : {0, 1}) {
        const FillCase c{rows * cols, offset};
        CompareFill(
            absl::StrCat("FillEye ", DTypeName(dtype), " ", rows, "x", cols),
            dtype, c,
            [&](void* dst) {
              return FillEyeOnDevice(dst, dtype, rows, cols, nullptr);
            },
            [&](void* dst) { FillEye(dst, dtype, rows, cols); });
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_F(OpsCudaTest, FillRandMatchesCpu) {
  for (DType dtype : AllDTypeValues()) {
    if (!IsFloating(dtype)) continue;
    for (uint64_t seed : {uint64_t{0}, uint64_t{42}, ~uint64_t{0}}) {
      for (const FillCase& c : kFillCases) {
        CompareFill(
            absl::StrCat("FillRand ", DTypeName(dtype), " seed ", seed), dtype,
            c,
            [&](void* dst) {
              return FillRandOnDevice(dst, dtype, c.n, seed, nullptr);
            },
            [&](void* dst) {
              ASSERT_TRUE(FillRand(dst, dtype, c.n, seed).ok());
            });
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_F(OpsCudaTest, FillRandRefusesNonFloatingDTypes) {
  DeviceBuffer buffer;
  ASSERT_TRUE(buffer.Allocate(1024).ok());
  for (DType dtype : AllDTypeValues()) {
    if (IsFloating(dtype)) continue;
    const absl::Status st =
        FillRandOnDevice(buffer.get(), dtype, 16, 7, nullptr);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument)
        << DTypeName(dtype);
    EXPECT_EQ(st.message(),
              FillRand(buffer.get(), dtype, 16, 7).message())  // untouched
        << DTypeName(dtype);
  }
  EXPECT_EQ(
      FillRandOnDevice(buffer.get(), DType::kInt64, 16, 7, nullptr).message(),
      "rand is only defined for floating point dtypes, got int64");
}

TEST_F(OpsCudaTest, FillsRejectNullAndMisalignedBuffers) {
  DeviceBuffer buffer;
  ASSERT_TRUE(buffer.Allocate(1024).ok());
  EXPECT_EQ(FillValueOnDevice(nullptr, DType::kFloat32, 4, 1.0, nullptr).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      FillArangeOnDevice(buffer.get() + 1, DType::kFloat32, 4, 0, 1, nullptr)
          .code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(FillEyeOnDevice(nullptr, DType::kFloat32, 0, 3, nullptr).ok());
}

}  // namespace
}  // namespace tensorcast
