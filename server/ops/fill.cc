#include "server/ops/fill.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/ops/cast.h"
#include "server/ops/convert.h"
#include "server/ops/counter_rng.h"

namespace tensorcast {
namespace {

template <size_t N>
struct Item {
  unsigned char bytes[N];
};

template <size_t N>
void Replicate(const void* item, void* dst, int64_t n) {
  Item<N> value;
  std::memcpy(&value, item, N);
  std::fill_n(static_cast<Item<N>*>(dst), n, value);
}

// Writes n copies of the itemsize-byte element `item`.
void ReplicateItem(const void* item, size_t itemsize, void* dst, int64_t n) {
  switch (itemsize) {
    case 1:
      return Replicate<1>(item, dst, n);
    case 2:
      return Replicate<2>(item, dst, n);
    case 4:
      return Replicate<4>(item, dst, n);
    case 8:
      return Replicate<8>(item, dst, n);
    case 16:
      return Replicate<16>(item, dst, n);
    default:
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(static_cast<char*>(dst) + i * itemsize, item, itemsize);
      }
  }
}

template <typename T, typename Fn>
void FillScalars(void* dst, int64_t scalars, Fn fn) {
  T* out = static_cast<T*>(dst);
  for (int64_t j = 0; j < scalars; ++j) {
    out[j] = fn(static_cast<uint64_t>(j));
  }
}

}  // namespace

void FillValue(void* dst, DType dtype, int64_t n, double value) {
  if (n <= 0) return;
  alignas(16) unsigned char item[16];
  Cast(&value, DType::kFloat64, item, dtype, 1);
  ReplicateItem(item, ItemSize(dtype), dst, n);
}

void FillArange(void* dst, DType dtype, int64_t n, double start, double step) {
  constexpr int64_t kBlock = 512;
  double values[kBlock];
  char* out = static_cast<char*>(dst);
  const int64_t size = static_cast<int64_t>(ItemSize(dtype));
  for (int64_t done = 0; done < n; done += kBlock) {
    const int64_t m = std::min(kBlock, n - done);
    for (int64_t k = 0; k < m; ++k) {
      values[k] = start + static_cast<double>(done + k) * step;
    }
    Cast(values, DType::kFloat64, out + done * size, dtype, m);
  }
}

void FillEye(void* dst, DType dtype, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t size = static_cast<int64_t>(ItemSize(dtype));
  std::memset(dst, 0, rows * cols * size);  // zero is all-zero bits
  alignas(16) unsigned char one[16];
  const double kOne = 1.0;
  Cast(&kOne, DType::kFloat64, one, dtype, 1);
  char* out = static_cast<char*>(dst);
  for (int64_t i = 0; i < std::min(rows, cols); ++i) {
    std::memcpy(out + (i * cols + i) * size, one, size);
  }
}

absl::Status FillRand(void* dst, DType dtype, int64_t n, uint64_t seed) {
  auto bits = [seed](uint64_t j) { return counter_rng::Bits(seed, j); };
  const int64_t count = std::max<int64_t>(n, 0);
  switch (dtype) {
    case DType::kFloat16:
      FillScalars<uint16_t>(dst, count, [&](uint64_t j) {
        return counter_rng::UniformHalf(bits(j));
      });
      return absl::OkStatus();
    case DType::kBFloat16:
      FillScalars<uint16_t>(dst, count, [&](uint64_t j) {
        return counter_rng::UniformBFloat16(bits(j));
      });
      return absl::OkStatus();
    case DType::kFloat32:
    case DType::kComplex64:
      FillScalars<float>(
          dst, dtype == DType::kComplex64 ? 2 * count : count,
          [&](uint64_t j) { return counter_rng::UniformFloat(bits(j)); });
      return absl::OkStatus();
    case DType::kFloat64:
    case DType::kComplex128:
      FillScalars<double>(
          dst, dtype == DType::kComplex128 ? 2 * count : count,
          [&](uint64_t j) { return counter_rng::UniformDouble(bits(j)); });
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("rand is only defined for floating point dtypes, got ",
                       DTypeName(dtype)));
  }
}

}  // namespace tensorcast
