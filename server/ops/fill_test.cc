// FillValue, FillArange, FillEye and FillRand: values, ranges, determinism
// and the refusal of rand for non-floating dtypes.
#include "server/ops/fill.h"

#include <cmath>
#include <cstring>
#include <set>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "server/ops/cast.h"

namespace tensorcast {
namespace {

// Every element (every part, for complex) as double, via Cast.
std::vector<double> AsDoubles(const std::vector<unsigned char>& buf,
                              DType dtype) {
  DType part = dtype;
  if (dtype == DType::kComplex64) part = DType::kFloat32;
  if (dtype == DType::kComplex128) part = DType::kFloat64;
  const int64_t n = buf.size() / ItemSize(part);
  std::vector<double> out(n);
  Cast(buf.data(), part, out.data(), DType::kFloat64, n);
  return out;
}

std::vector<unsigned char> Buffer(DType dtype, int64_t n) {
  return std::vector<unsigned char>(n * ItemSize(dtype), 0xcd);
}

TEST(FillValueTest, EqualsCastOfTheValueEverywhere) {
  for (const DTypeInfo& info : AllDTypes()) {
    for (double value : {2.5, -1.0, 0.0, 1e10, std::nan("")}) {
      SCOPED_TRACE(testing::Message() << info.name << " " << value);
      auto buf = Buffer(info.dtype, 37);
      FillValue(buf.data(), info.dtype, 37, value);
      auto one = Buffer(info.dtype, 1);
      Cast(&value, DType::kFloat64, one.data(), info.dtype, 1);
      for (int i = 0; i < 37; ++i) {
        ASSERT_EQ(std::memcmp(buf.data() + i * info.itemsize, one.data(),
                              info.itemsize),
                  0);
      }
    }
  }
  int32_t ints[3];
  FillValue(ints, DType::kInt32, 3, -2.75);
  EXPECT_EQ(ints[2], -2);
  uint8_t bytes[2];
  FillValue(bytes, DType::kUInt8, 2, -1.0);  // saturates (see fill.h)
  EXPECT_EQ(bytes[1], 0);
  uint16_t half[2];
  FillValue(half, DType::kFloat16, 2, 2.5);
  EXPECT_EQ(half[1], 0x4100);
}

TEST(FillArangeTest, StartPlusIndexTimesStep) {
  auto buf = Buffer(DType::kFloat64, 1000);
  FillArange(buf.data(), DType::kFloat64, 1000, 0.5, 0.1);
  const std::vector<double> got = AsDoubles(buf, DType::kFloat64);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(got[i], 0.5 + i * 0.1);

  int64_t ints[5];
  FillArange(ints, DType::kInt64, 5, -3, 2);
  EXPECT_EQ(std::vector<int64_t>(ints, ints + 5),
            (std::vector<int64_t>{-3, -1, 1, 3, 5}));

  // Narrow dtypes convert the double value once.
  const int64_t n = 3000;
  auto half = Buffer(DType::kFloat16, n);
  FillArange(half.data(), DType::kFloat16, n, -1.0, 1.0 / 3);
  for (int64_t i = 0; i < n; i += 97) {
    const double x = -1.0 + static_cast<double>(i) * (1.0 / 3);
    uint16_t want;
    Cast(&x, DType::kFloat64, &want, DType::kFloat16, 1);
    uint16_t got;
    std::memcpy(&got, half.data() + 2 * i, 2);
    ASSERT_EQ(got, want) << i;
  }
  unsigned char untouched = 0x11;
  FillArange(&untouched, DType::kUInt8, 0, 5, 1);
  EXPECT_EQ(untouched, 0x11);
}

TEST(FillEyeTest, OnesOnTheDiagonal) {
  for (const DTypeInfo& info : AllDTypes()) {
    for (auto [rows, cols] :
         {std::pair<int64_t, int64_t>{3, 3}, {2, 5}, {5, 2}, {1, 1}}) {
      SCOPED_TRACE(testing::Message()
                   << info.name << " " << rows << "x" << cols);
      auto buf = Buffer(info.dtype, rows * cols);
      FillEye(buf.data(), info.dtype, rows, cols);
      std::vector<unsigned char> as_f64(rows * cols * 8);
      Cast(buf.data(), info.dtype, as_f64.data(), DType::kFloat64, rows * cols);
      std::vector<unsigned char> imag_free(rows * cols * 16);
      Cast(buf.data(), info.dtype, imag_free.data(), DType::kComplex128,
           rows * cols);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          double v, im;
          std::memcpy(&v, &as_f64[(r * cols + c) * 8], 8);
          std::memcpy(&im, &imag_free[(r * cols + c) * 16 + 8], 8);
          EXPECT_EQ(v, r == c ? 1.0 : 0.0) << r << "," << c;
          EXPECT_EQ(im, 0.0);
        }
      }
    }
  }
  unsigned char untouched = 0x11;
  FillEye(&untouched, DType::kFloat32, 0, 4);
  EXPECT_EQ(untouched, 0x11);
}

// The documented generator, written out again independently.
uint64_t SplitMix(uint64_t seed, uint64_t j) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (j + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

TEST(FillRandTest, FloatingDTypesInUnitIntervalAndDeterministic) {
  const DType floating[] = {DType::kFloat16,   DType::kBFloat16,
                            DType::kFloat32,   DType::kFloat64,
                            DType::kComplex64, DType::kComplex128};
  const int64_t n = 100000;
  for (DType dtype : floating) {
    SCOPED_TRACE(DTypeName(dtype));
    auto a = Buffer(dtype, n), b = Buffer(dtype, n), c = Buffer(dtype, n);
    ASSERT_TRUE(FillRand(a.data(), dtype, n, 1234).ok());
    ASSERT_TRUE(FillRand(b.data(), dtype, n, 1234).ok());
    ASSERT_TRUE(FillRand(c.data(), dtype, n, 1235).ok());
    EXPECT_EQ(a, b) << "same seed, different values";
    const std::vector<double> va = AsDoubles(a, dtype);
    const std::vector<double> vc = AsDoubles(c, dtype);
    double sum = 0, lo = 1, hi = 0;
    int64_t same = 0;
    for (size_t i = 0; i < va.size(); ++i) {
      ASSERT_GE(va[i], 0.0);
      ASSERT_LT(va[i], 1.0);
      sum += va[i];
      lo = std::min(lo, va[i]);
      hi = std::max(hi, va[i]);
      same += va[i] == vc[i];
    }
    const double mean = sum / static_cast<double>(va.size());
    EXPECT_NEAR(mean, 0.5, 0.01);
    EXPECT_LT(lo, 0.01);
    EXPECT_GT(hi, 0.99);
    // Coarse dtypes repeat values by chance; never most of them.
    EXPECT_LT(same, static_cast<int64_t>(va.size()) / 50)
        << "seeds 1234 and 1235 give the same stream";
    // A prefix is the same stream: element i depends on (seed, i) only.
    auto prefix = Buffer(dtype, 17);
    ASSERT_TRUE(FillRand(prefix.data(), dtype, 17, 1234).ok());
    EXPECT_EQ(std::memcmp(prefix.data(), a.data(), prefix.size()), 0);
  }
}

TEST(FillRandTest, BitsFollowTheDocumentedGenerator) {
  const uint64_t seed = 0xdeadbeefcafef00dull;
  double f64[4];
  ASSERT_TRUE(FillRand(f64, DType::kFloat64, 4, seed).ok());
  float f32[4];
  ASSERT_TRUE(FillRand(f32, DType::kFloat32, 4, seed).ok());
  float c64[4];  // two complex64 elements: re, im, re, im
  ASSERT_TRUE(FillRand(c64, DType::kComplex64, 2, seed).ok());
  uint16_t bf16[4];
  ASSERT_TRUE(FillRand(bf16, DType::kBFloat16, 4, seed).ok());
  uint16_t f16[4];
  ASSERT_TRUE(FillRand(f16, DType::kFloat16, 4, seed).ok());
  for (int j = 0; j < 4; ++j) {
    const uint64_t x = SplitMix(seed, j);
    EXPECT_EQ(f64[j], std::ldexp(static_cast<double>(x >> 11), -53));
    EXPECT_EQ(f32[j], std::ldexp(static_cast<float>(x >> 40), -24));
    EXPECT_EQ(c64[j], f32[j]);
    float bf;
    Cast(&bf16[j], DType::kBFloat16, &bf, DType::kFloat32, 1);
    EXPECT_EQ(bf, std::ldexp(static_cast<float>(x >> 56), -8));
    float h;
    Cast(&f16[j], DType::kFloat16, &h, DType::kFloat32, 1);
    EXPECT_EQ(h, std::ldexp(static_cast<float>(x >> 53), -11));
  }
  // splitmix64 seeded with 0: its published first output.
  EXPECT_EQ(SplitMix(0, 0), 0xe220a8397b1dcdafull);
}

TEST(FillRandTest, RefusesBoolAndIntegers) {
  for (const DTypeInfo& info : AllDTypes()) {
    if (IsFloatingOrComplex(info.dtype)) continue;
    unsigned char buf[64];
    std::memset(buf, 0x3c, sizeof buf);
    const absl::Status s = FillRand(buf, info.dtype, 4, 1);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << info.name;
    EXPECT_EQ(s.message(),
              absl::StrCat("rand is only defined for floating point dtypes, "
                           "got ",
                           info.name));
    EXPECT_EQ(buf[0], 0x3c) << "wrote into dst";
  }
}

}  // namespace
}  // namespace tensorcast
