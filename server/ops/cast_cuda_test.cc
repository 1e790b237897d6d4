// CastOnDevice against Cast: for all 225 dtype pairs, the GPU's output must
// be the CPU's bit for bit (where the CPU gives NaN, NaN-ness only), on
// sources of random bit patterns with every special value the rules name
// (NaN, +-inf, -0, subnormals, max/min, integer range edges, rounding ties)
// at both ends, and for odd lengths and element offsets that move the
// vector path's head and tail; and every bit pattern of the 1- and 2-byte
// dtypes, through the vector and the scalar path, to every dtype. Nothing
// outside [dst, dst + n) may change.
// Skips where there is no CUDA device.
#include "server/ops/cast_cuda.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "server/memory/cuda_check.h"
#include "server/memory/cuda_memory_resource.h"
#include "server/ops/cast.h"

namespace tensorcast {
namespace {

constexpr int64_t kElements = 1000003 + 64;  // odd, with room for offsets
constexpr size_t kGuardBytes = 64;
constexpr uint8_t kGuardByte = 0xa5;

std::vector<DType> AllDTypeValues() {
  std::vector<DType> out;
  for (int i = 0; i < kNumDTypes; ++i) out.push_back(static_cast<DType>(i));
  return out;
}

// Values every float -> x and x -> float rule has an edge at.
std::vector<double> SpecialDoubles() {
  using F = std::numeric_limits<float>;
  using D = std::numeric_limits<double>;
  std::vector<double> v = {
      0.0, -0.0, D::quiet_NaN(), -D::quiet_NaN(), D::infinity(), -D::infinity(),
      1.0, -1.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999,
      // float16: max, overflow tie, normal/subnormal edges, subnormal ties,
      // mantissa ties.
      65504.0, 65519.0, 65520.0, -65520.0, 65536.0, std::ldexp(1.0, -14),
      std::ldexp(1.0, -24), std::ldexp(1.0, -25), std::ldexp(3.0, -25),
      std::ldexp(1.0, -26), std::ldexp(1023.0, -24), std::ldexp(2047.0, -25),
      1.0 + std::ldexp(1.0, -11), 1.0 + std::ldexp(3.0, -11),
      1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -30),
      // bfloat16 and float32.
      1.0 + std::ldexp(1.0, -8), 1.0 + std::ldexp(3.0, -8),
      3.3895313892515355e38, 3.3961775292304e38, F::max(), -F::max(), F::min(),
      F::denorm_min(), -F::denorm_min(), std::ldexp(1.0, -133),
      std::ldexp(1.0, -150), std::ldexp(3.0, -150), 1.0 + std::ldexp(1.0, -24),
      1.0 + std::ldexp(3.0, -24),
      static_cast<double>(F::max()) * (1.0 + std::ldexp(1.0, -25)), D::max(),
      -D::max(), D::min(), D::denorm_min(), -D::denorm_min()};
  // A hair off bfloat16 ties, normal and subnormal, and the overflow tie:
  // rounding through float32 lands on the tie and goes the wrong way; the
  // rule (and the CPU) round once. The first is -3.3961775292304597e38,
  // which must stay finite.
  for (int e : {-133, -127, -126, -60, 0, 15, 100, 127}) {
    for (double m : {1.0 + std::ldexp(1.0, -8), 1.0 + std::ldexp(3.0, -8),
                     2.0 - std::ldexp(1.0, -8)}) {
      const double tie = std::ldexp(m, e);
      for (double hair : {-1.0, 1.0}) {
        v.push_back(tie * (1.0 + hair * std::ldexp(1.0, -40)));
        v.push_back(-tie * (1.0 + hair * std::ldexp(1.0, -40)));
      }
    }
  }
  // Just inside and outside every integer range, ties included.
  const double bounds[] = {-128.0,
                           127.0,
                           255.0,
                           -32768.0,
                           32767.0,
                           65535.0,
                           -2147483648.0,
                           2147483647.0,
                           4294967295.0,
                           std::ldexp(-1.0, 63),
                           std::ldexp(1.0, 63),
                           std::ldexp(1.0, 64)};
  for (double b : bounds) {
    for (double d : {-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 0.99, 1.0}) {
      v.push_back(b + d);
    }
    v.push_back(std::nextafter(b, 0.0));
    v.push_back(std::nextafter(b, b < 0 ? -D::infinity() : D::infinity()));
  }
  return v;
}

// Integers at every type's edges and around powers of two (rounding ties
// to every float width).
std::vector<int64_t> SpecialInts() {
  std::vector<int64_t> v;
  const int64_t bounds[] = {0,         -128,       127,       255,
                            -32768,    32767,      65535,     INT32_MIN,
                            INT32_MAX, UINT32_MAX, INT64_MIN, INT64_MAX};
  for (int64_t b : bounds) {
    for (int64_t d = -3; d <= 3; ++d) {
      v.push_back(static_cast<int64_t>(static_cast<uint64_t>(b) +
                                       static_cast<uint64_t>(d)));
    }
  }
  for (int k = 0; k < 64; ++k) {
    const uint64_t p = uint64_t{1} << k;
    for (int64_t d = -3; d <= 3; ++d) {
      v.push_back(static_cast<int64_t>(p + static_cast<uint64_t>(d)));
      v.push_back(static_cast<int64_t>(-p + static_cast<uint64_t>(d)));
    }
    // Ties and near-ties for 11-, 8-, 24- and 53-bit significands (the
    // implicit bit counted: the ulp at 2^k is 2^(k-bits+1)), and half-ulps.
    for (int bits : {10, 11, 7, 8, 23, 24, 52, 53}) {
      if (k > bits) {
        const uint64_t half = uint64_t{1} << (k - bits - 1);
        v.push_back(static_cast<int64_t>(p + half));
        v.push_back(static_cast<int64_t>(p + 3 * half));
        v.push_back(static_cast<int64_t>(p + half + 1));
      }
    }
  }
  return v;
}

// kElements of `dtype`: random bits, with the special values (converted by
// the CPU rules) at the start and again near the end.
std::vector<uint8_t> MakeSource(DType dtype) {
  const size_t item = ItemSize(dtype);
  std::vector<uint8_t> bytes(kElements * item);
  std::mt19937_64 rng(0x7e45c0 + static_cast<int>(dtype));
  for (size_t i = 0; i < bytes.size(); i += 8) {
    const uint64_t r = rng();
    std::memcpy(&bytes[i], &r, std::min<size_t>(8, bytes.size() - i));
  }

  const std::vector<double> doubles = SpecialDoubles();
  const std::vector<int64_t> ints = SpecialInts();
  std::vector<double> pairs;  // complex128: (special, another special)
  for (size_t i = 0; i < doubles.size(); ++i) {
    pairs.push_back(doubles[i]);
    pairs.push_back(doubles[(i * 7 + 3) % doubles.size()]);
  }
  std::vector<uint8_t> special((doubles.size() * 2 + ints.size()) * item);
  uint8_t* p = special.data();
  Cast(doubles.data(), DType::kFloat64, p, dtype,
       static_cast<int64_t>(doubles.size()));
  p += doubles.size() * item;
  Cast(pairs.data(), DType::kComplex128, p, dtype,
       static_cast<int64_t>(doubles.size()));
  p += doubles.size() * item;
  Cast(ints.data(), DType::kInt64, p, dtype, static_cast<int64_t>(ints.size()));
  std::memcpy(bytes.data(), special.data(), special.size());
  std::memcpy(bytes.data() + bytes.size() - special.size() - 100 * item,
              special.data(), special.size());
  return bytes;
}

std::string Hex(const uint8_t* p, size_t size) {
  std::string out = "0x";
  for (size_t i = size; i-- > 0;) absl::StrAppendFormat(&out, "%02x", p[i]);
  return out;
}

bool IsNaNBits(const uint8_t* p, size_t size) {
  uint64_t bits = 0;
  std::memcpy(&bits, p, size);
  switch (size) {
    case 2:  // float16 or bfloat16: told apart by the caller's dtype
      return false;
    case 4:
      return (bits & 0x7fffffffu) > 0x7f800000u;
    default:
      return (bits & 0x7fffffffffffffffull) > 0x7ff0000000000000ull;
  }
}

// Whether a component (part of a floating or complex element) is NaN.
bool ComponentIsNaN(DType dtype, const uint8_t* p, size_t size) {
  if (dtype == DType::kFloat16 || dtype == DType::kBFloat16) {
    uint16_t bits;
    std::memcpy(&bits, p, 2);
    return dtype == DType::kFloat16 ? (bits & 0x7fffu) > 0x7c00u
                                    : (bits & 0x7fffu) > 0x7f80u;
  }
  return IsNaNBits(p, size);
}

struct Case {
  int64_t n;
  int64_t src_offset;  // elements
  int64_t dst_offset;  // elements
};

// Runs one case on the device and on the CPU; an empty string when they
// agree, else the first mismatch.
absl::Status RunCase(DType s, DType d, const std::vector<uint8_t>& source,
                     const Case& c, std::string* mismatch) {
  const size_t in_size = ItemSize(s);
  const size_t out_size = ItemSize(d);
  const size_t dst_bytes =
      kGuardBytes + (c.dst_offset + c.n) * out_size + kGuardBytes;
  DeviceBuffer src_dev;
  DeviceBuffer dst_dev;
  if (absl::Status st = src_dev.Allocate(source.size()); !st.ok()) return st;
  if (absl::Status st = dst_dev.Allocate(dst_bytes); !st.ok()) return st;
  TC_CUDA_TRY(cudaMemcpy(src_dev.get(), source.data(), source.size(),
                         cudaMemcpyHostToDevice));
  TC_CUDA_TRY(cudaMemset(dst_dev.get(), kGuardByte, dst_bytes));
  const size_t dst_start = kGuardBytes + c.dst_offset * out_size;
  if (absl::Status st =
          CastOnDevice(src_dev.get() + c.src_offset * in_size, s,
                       dst_dev.get() + dst_start, d, c.n, nullptr);
      !st.ok()) {
    return st;
  }
  TC_CUDA_TRY(cudaDeviceSynchronize());
  std::vector<uint8_t> gpu(dst_bytes);
  TC_CUDA_TRY(
      cudaMemcpy(gpu.data(), dst_dev.get(), dst_bytes, cudaMemcpyDeviceToHost));

  std::vector<uint8_t> cpu(dst_bytes, kGuardByte);
  const uint8_t* in = source.data() + c.src_offset * in_size;
  Cast(in, s, cpu.data() + dst_start, d, c.n);

  const std::string where = absl::StrFormat(
      "%s -> %s (n=%d, src offset %d, dst offset %d)", DTypeName(s),
      DTypeName(d), c.n, c.src_offset, c.dst_offset);
  for (size_t i = 0; i < dst_bytes; ++i) {
    if ((i < dst_start || i >= dst_start + c.n * out_size) &&
        gpu[i] != kGuardByte) {
      *mismatch =
          absl::StrCat(where, ": wrote byte ", i, " outside the destination");
      return absl::OkStatus();
    }
  }
  const bool floating = d == DType::kFloat16 || d == DType::kBFloat16 ||
                        d == DType::kFloat32 || d == DType::kFloat64 ||
                        d == DType::kComplex64 || d == DType::kComplex128;
  const size_t parts =
      d == DType::kComplex64 || d == DType::kComplex128 ? 2 : 1;
  const size_t part_size = out_size / parts;
  for (int64_t i = 0; i < c.n; ++i) {
    const uint8_t* want = cpu.data() + dst_start + i * out_size;
    const uint8_t* got = gpu.data() + dst_start + i * out_size;
    bool same = true;
    for (size_t k = 0; k < parts; ++k) {
      const uint8_t* w = want + k * part_size;
      const uint8_t* g = got + k * part_size;
      if (floating && ComponentIsNaN(d, w, part_size)) {
        same = same && ComponentIsNaN(d, g, part_size);
      } else {
        same = same && std::memcmp(w, g, part_size) == 0;
      }
    }
    if (!same) {
      *mismatch = absl::StrCat(
          where, ": index ", i, " input ", Hex(in + i * in_size, in_size),
          " cpu ", Hex(want, out_size), " gpu ", Hex(got, out_size));
      return absl::OkStatus();
    }
  }
  return absl::OkStatus();
}

class CastCudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<int> count = CudaDeviceCount();
    ASSERT_TRUE(count.ok()) << count.status();
    if (*count == 0) {
      GTEST_SKIP() << "no CUDA device here: GPU cast test needs a GPU (run "
                      "tests/gpu/run.sh on one)";
    }
  }
};

TEST_F(CastCudaTest, AllPairsMatchCpuBitForBit) {
  const Case cases[] = {
      {1000003, 0, 0},      // odd length, both aligned
      {1, 0, 0},            // one element
      {3, 1, 1},            // shorter than one vector
      {1000003 - 9, 1, 3},  // offsets that disagree modulo 16 bytes
      {4099, 5, 5},         // same offset: a scalar head, then vectors
      {77, 2, 0},
  };
  int failures = 0;
  for (DType s : AllDTypeValues()) {
    const std::vector<uint8_t> source = MakeSource(s);
    for (DType d : AllDTypeValues()) {
      for (const Case& c : cases) {
        std::string mismatch;
        const absl::Status status = RunCase(s, d, source, c, &mismatch);
        ASSERT_TRUE(status.ok())
            << DTypeName(s) << " -> " << DTypeName(d) << ": " << status;
        if (!mismatch.empty()) {
          ADD_FAILURE() << mismatch;
          ++failures;
          break;  // the first mismatch of a pair is enough
        }
      }
      ASSERT_LT(failures, 20) << "stopping after 20 mismatching pairs";
    }
  }
}

// Every bit pattern of the 1- and 2-byte dtypes (bool, uint8, int8, int16,
// uint16, float16, bfloat16) to every dtype: the patterns in order, then
// again rotated by one element, so that each one also sits in the other lane
// of the conversions done two at a time (uint8/int8 -> float16, float16 ->
// bfloat16); once from an aligned start (the vector path) and once from
// offsets that disagree (the scalar path).
TEST_F(CastCudaTest, EveryNarrowSourcePatternMatchesCpu) {
  int failures = 0;
  for (DType s : AllDTypeValues()) {
    const size_t item = ItemSize(s);
    if (item > 2) continue;
    const size_t patterns = size_t{1} << (8 * item);
    const int64_t n = static_cast<int64_t>(2 * patterns);
    std::vector<uint8_t> source((2 * patterns + 64) * item, 0);
    for (size_t i = 0; i < patterns; ++i) {
      const uint16_t bits = static_cast<uint16_t>(i);
      const uint16_t rotated = static_cast<uint16_t>((i + 1) % patterns);
      std::memcpy(&source[i * item], &bits, item);  // little-endian
      std::memcpy(&source[(patterns + i) * item], &rotated, item);
    }
    for (DType d : AllDTypeValues()) {
      for (const Case& c : {Case{n, 0, 0}, Case{n, 1, 0}}) {
        std::string mismatch;
        const absl::Status status = RunCase(s, d, source, c, &mismatch);
        ASSERT_TRUE(status.ok())
            << DTypeName(s) << " -> " << DTypeName(d) << ": " << status;
        if (!mismatch.empty()) {
          ADD_FAILURE() << mismatch;
          ++failures;
          break;
        }
      }
      ASSERT_LT(failures, 20) << "stopping after 20 mismatching pairs";
    }
  }
}

TEST_F(CastCudaTest, RejectsNullAndMisalignedBuffers) {
  DeviceBuffer buffer;
  ASSERT_TRUE(buffer.Allocate(1024).ok());
  EXPECT_EQ(CastOnDevice(nullptr, DType::kFloat32, buffer.get(),
                         DType::kFloat16, 4, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CastOnDevice(buffer.get() + 1, DType::kFloat32, buffer.get() + 512,
                         DType::kFloat16, 4, nullptr)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CastOnDevice(nullptr, DType::kFloat32, nullptr, DType::kFloat16,
                           0, nullptr)
                  .ok());
}

}  // namespace
}  // namespace tensorcast
