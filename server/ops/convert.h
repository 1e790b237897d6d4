// Element conversion rules: one element of one dtype to another, the rules
// that Cast (cast.h) documents. Header-only, constexpr and free of library
// calls that only exist on the host, so a CUDA kernel can include it and
// produce the same bits as the CPU. The float16/bfloat16 conversions are
// written as branch-free bit manipulation so that loops over them vectorise
// (no soft-float helper calls). Pure functions: thread-safe.
#ifndef TENSORCAST_SERVER_OPS_CONVERT_H_
#define TENSORCAST_SERVER_OPS_CONVERT_H_

#include <cstdint>
#include <limits>
#include <type_traits>

#include "common/dtype.h"

#if defined(__CUDACC__)
#define TC_HOST_DEVICE __host__ __device__
#else
#define TC_HOST_DEVICE
#endif

namespace tensorcast {
namespace convert {

// Interleaved (real, imag), the layout of NumPy's complex64/complex128.
template <typename T>
struct Complex {
  T re;
  T im;
};

// The C++ type that holds one element of a dtype in memory. bool is a byte
// (any non-zero byte reads as true); float16 and bfloat16 are their bits.
template <DType D>
struct StorageOf;
template <>
struct StorageOf<DType::kBool> {
  using type = uint8_t;
};
template <>
struct StorageOf<DType::kUInt8> {
  using type = uint8_t;
};
template <>
struct StorageOf<DType::kInt8> {
  using type = int8_t;
};
template <>
struct StorageOf<DType::kInt16> {
  using type = int16_t;
};
template <>
struct StorageOf<DType::kInt32> {
  using type = int32_t;
};
template <>
struct StorageOf<DType::kInt64> {
  using type = int64_t;
};
template <>
struct StorageOf<DType::kUInt16> {
  using type = uint16_t;
};
template <>
struct StorageOf<DType::kUInt32> {
  using type = uint32_t;
};
template <>
struct StorageOf<DType::kUInt64> {
  using type = uint64_t;
};
template <>
struct StorageOf<DType::kFloat16> {
  using type = uint16_t;
};
template <>
struct StorageOf<DType::kBFloat16> {
  using type = uint16_t;
};
template <>
struct StorageOf<DType::kFloat32> {
  using type = float;
};
template <>
struct StorageOf<DType::kFloat64> {
  using type = double;
};
template <>
struct StorageOf<DType::kComplex64> {
  using type = Complex<float>;
};
template <>
struct StorageOf<DType::kComplex128> {
  using type = Complex<double>;
};
template <DType D>
using Storage = typename StorageOf<D>::type;

TC_HOST_DEVICE constexpr bool IsInteger(DType d) {
  return d >= DType::kUInt8 && d <= DType::kUInt64;
}
TC_HOST_DEVICE constexpr bool IsComplex(DType d) {
  return d == DType::kComplex64 || d == DType::kComplex128;
}
TC_HOST_DEVICE constexpr bool IsHalfWidth(DType d) {
  return d == DType::kFloat16 || d == DType::kBFloat16;
}

template <typename To, typename From>
TC_HOST_DEVICE constexpr To BitCast(const From& from) {
  static_assert(sizeof(To) == sizeof(From));
  return __builtin_bit_cast(To, from);
}

// float16 bits -> float32, exact. NaNs come out quiet, sign and top payload
// bits kept.
TC_HOST_DEVICE constexpr float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t bits = static_cast<uint32_t>(h & 0x7fffu) << 13;
  const uint32_t exp = bits & 0x0f800000u;
  const uint32_t normal = bits + (112u << 23);  // rebias 15 -> 127
  const uint32_t special =
      bits | 0x7f800000u | ((h & 0x3ffu) != 0 ? 0x00400000u : 0u);
  // A subnormal is mantissa * 2^-24: give it the exponent of 2^-14 and
  // subtract 2^-14, exactly, in float arithmetic.
  const uint32_t subnormal = BitCast<uint32_t>(
      BitCast<float>(bits + (113u << 23)) - BitCast<float>(113u << 23));
  const uint32_t out = exp == 0x0f800000u ? special
                       : exp == 0         ? subnormal
                                          : normal;
  return BitCast<float>(out | sign);
}

// float32 -> float16 bits, round to nearest even; overflow gives inf; NaN
// stays NaN (quiet, sign and top payload bits kept). After F. Giesen's
// float_to_half_fast3_rtne, with both branches computed and one selected.
TC_HOST_DEVICE constexpr uint16_t FloatToHalf(float f) {
  uint32_t u = BitCast<uint32_t>(f);
  const uint32_t sign = (u >> 16) & 0x8000u;
  u &= 0x7fffffffu;
  const uint32_t special =
      u > 0x7f800000u ? (0x7e00u | ((u >> 13) & 0x3ffu)) : 0x7c00u;
  // Adding 0.5 (whose ulp is 2^-24, float16's subnormal step) rounds the
  // value to a subnormal float16 mantissa held in the low bits.
  constexpr uint32_t kMagic = 126u << 23;
  const uint32_t subnormal =
      BitCast<uint32_t>(BitCast<float>(u) + BitCast<float>(kMagic)) - kMagic;
  const uint32_t mant_odd = (u >> 13) & 1u;
  const uint32_t normal = (u + ((15u - 127u) << 23) + 0xfffu + mant_odd) >> 13;
  const uint32_t out = u >= (143u << 23)  ? special    // >= 2^16, inf, NaN
                       : u < (113u << 23) ? subnormal  // < 2^-14
                                          : normal;
  return static_cast<uint16_t>(out | sign);
}

// float64 -> float16 bits with a single rounding (as NumPy does; going via
// float32 would round twice). Same rules as FloatToHalf.
TC_HOST_DEVICE constexpr uint16_t DoubleToHalf(double d) {
  uint64_t u = BitCast<uint64_t>(d);
  const uint64_t sign = (u >> 48) & 0x8000u;
  u &= 0x7fffffffffffffffull;
  const uint64_t special = u > 0x7ff0000000000000ull
                               ? (0x7e00u | ((u >> 42) & 0x3ffu))
                               : uint64_t{0x7c00u};
  // 2^28 has an ulp of 2^-24 in float64.
  constexpr uint64_t kMagic = uint64_t{1023 + 28} << 52;
  const uint64_t subnormal =
      BitCast<uint64_t>(BitCast<double>(u) + BitCast<double>(kMagic)) - kMagic;
  const uint64_t mant_odd = (u >> 42) & 1u;
  const uint64_t normal = (u + (static_cast<uint64_t>(15 - 1023) << 52) +
                           ((uint64_t{1} << 41) - 1) + mant_odd) >>
                          42;
  const uint64_t out = u >= (uint64_t{1023 + 16} << 52)  ? special
                       : u < (uint64_t{1023 - 14} << 52) ? subnormal
                                                         : normal;
  return static_cast<uint16_t>(out | sign);
}

// bfloat16 bits -> float32, exact; NaNs come out quiet.
TC_HOST_DEVICE constexpr float BFloat16ToFloat(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  return BitCast<float>(nan ? (u | 0x00400000u) : u);
}

// float32 -> bfloat16 bits, round to nearest even (ml_dtypes' rule), overflow
// gives inf, NaN stays NaN (quiet).
TC_HOST_DEVICE constexpr uint16_t FloatToBFloat16(float f) {
  const uint32_t u = BitCast<uint32_t>(f);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

// float64 -> bfloat16 bits with a single rounding (to nearest even), as
// ml_dtypes (0.7 and later) and IEEE 754 do; going via float32 would round
// twice. Overflow gives inf, NaN stays NaN (quiet, sign and top payload bits
// kept). bfloat16 shares float32's exponent range, so only the widths differ.
TC_HOST_DEVICE constexpr uint16_t DoubleToBFloat16(double d) {
  uint64_t u = BitCast<uint64_t>(d);
  const uint64_t sign = (u >> 48) & 0x8000u;
  u &= 0x7fffffffffffffffull;
  const uint64_t special = u > 0x7ff0000000000000ull
                               ? (0x7fc0u | ((u >> 45) & 0x7fu))
                               : uint64_t{0x7f80u};
  // 2^-81 has an ulp of 2^-133 (bfloat16's subnormal step) in float64.
  constexpr uint64_t kMagic = uint64_t{1023 - 81} << 52;
  const uint64_t subnormal =
      BitCast<uint64_t>(BitCast<double>(u) + BitCast<double>(kMagic)) - kMagic;
  const uint64_t mant_odd = (u >> 45) & 1u;
  // Rebias 1023 -> 127 and round off 45 mantissa bits; a carry out of the
  // largest finite value lands on inf (0x7f80), as it should.
  const uint64_t normal = (u - (static_cast<uint64_t>(1023 - 127) << 52) +
                           ((uint64_t{1} << 44) - 1) + mant_odd) >>
                          45;
  const uint64_t out = u >= (uint64_t{1023 + 128} << 52)  ? special
                       : u < (uint64_t{1023 - 126} << 52) ? subnormal
                                                          : normal;
  return static_cast<uint16_t>(out | sign);
}

// A 64-bit integer -> bfloat16 bits, rounded once. A double holds 53 bits,
// so a magnitude of 2^53 or more first drops its low 11 bits into a sticky
// bit (round to odd): the double is then exact, and rounding it to bfloat16's
// 8 bits gives what rounding the integer itself would.
template <typename I>
TC_HOST_DEVICE constexpr uint16_t Int64ToBFloat16(I v) {
  static_assert(sizeof(I) == 8);
  bool negative = false;
  if constexpr (std::is_signed_v<I>) negative = v < 0;
  const uint64_t m = negative ? uint64_t{0} - static_cast<uint64_t>(v)
                              : static_cast<uint64_t>(v);
  const bool wide = m >= (uint64_t{1} << 53);
  const uint64_t kept = wide ? ((m >> 11) | ((m & 0x7ffu) != 0 ? 1u : 0u)) : m;
  const double magnitude = static_cast<double>(kept) * (wide ? 2048.0 : 1.0);
  return static_cast<uint16_t>(DoubleToBFloat16(magnitude) |
                               (negative ? 0x8000u : 0u));
}

// Float -> integer: truncate toward zero, saturate to [min, max], NaN -> 0.
// For values NumPy defines (the truncated value fits) this is C's cast.
// Written as clamp-then-convert so the conversion never sees an out-of-range
// value and the loop vectorises.
template <typename I, typename F>
TC_HOST_DEVICE constexpr I FloatToInt(F x) {
  using Limits = std::numeric_limits<I>;
  constexpr F kLo = static_cast<F>(Limits::min());  // 0 or -2^k: exact
  constexpr F kHi = static_cast<F>(Limits::max() / 2 + 1) * F{2};  // 2^k
  // The largest F below kHi; converts to a value that fits I.
  constexpr F kBelowHi = kHi - kHi * (std::numeric_limits<F>::epsilon() / 2);
  F clamped = x > kLo ? x : kLo;  // NaN -> kLo, replaced below
  clamped = clamped < kBelowHi ? clamped : kBelowHi;
  I out = static_cast<I>(clamped);
  out = x >= kHi ? Limits::max() : out;
  out = x == x ? out : I{0};
  return out;
}

// The value a real element starts from: the integer itself (bool as int 0/1),
// float for float16/bfloat16/float32, double for float64, the real part of a
// complex.
template <DType S>
TC_HOST_DEVICE constexpr auto LoadReal(Storage<S> x) {
  if constexpr (S == DType::kBool) {
    return static_cast<int32_t>(x != 0);  // int32: GCC vectorises that
  } else if constexpr (S == DType::kFloat16) {
    return HalfToFloat(x);
  } else if constexpr (S == DType::kBFloat16) {
    return BFloat16ToFloat(x);
  } else if constexpr (IsComplex(S)) {
    return x.re;
  } else {
    return x;
  }
}

// A real value (integer, float or double) stored as dtype D.
template <DType D, typename V>
TC_HOST_DEVICE constexpr Storage<D> StoreReal(V v) {
  constexpr bool kFromFloat = std::is_floating_point_v<V>;
  if constexpr (D == DType::kBool) {
    return static_cast<uint8_t>(v != 0);  // NaN != 0
  } else if constexpr (IsInteger(D)) {
    if constexpr (kFromFloat) {
      return FloatToInt<Storage<D>>(v);
    } else {
      return static_cast<Storage<D>>(v);  // two's complement wrap
    }
  } else if constexpr (D == DType::kFloat16) {
    if constexpr (std::is_same_v<V, double>) {
      return DoubleToHalf(v);
    } else {
      return FloatToHalf(static_cast<float>(v));  // NumPy: ints via float
    }
  } else if constexpr (D == DType::kBFloat16) {
    // One rounding from the source type, as ml_dtypes does: a float rounds
    // directly; a double, and an integer too wide for float32, go through
    // DoubleToBFloat16 (32-bit integers are exact in a double).
    if constexpr (std::is_same_v<V, float>) {
      return FloatToBFloat16(v);
    } else if constexpr (std::is_same_v<V, double>) {
      return DoubleToBFloat16(v);
    } else if constexpr (sizeof(V) == 8) {
      return Int64ToBFloat16(v);
    } else if constexpr (sizeof(V) == 4) {
      return DoubleToBFloat16(static_cast<double>(v));
    } else {
      return FloatToBFloat16(static_cast<float>(v));  // exact in a float
    }
  } else if constexpr (D == DType::kFloat32 || D == DType::kFloat64) {
    return static_cast<Storage<D>>(v);
  } else {
    using Part = decltype(Storage<D>::re);
    return Storage<D>{static_cast<Part>(v), Part{0}};
  }
}

// One element of S as D: NumPy's astype where NumPy defines it, the rules
// in cast.h where it does not.
template <DType S, DType D>
TC_HOST_DEVICE constexpr Storage<D> Convert(Storage<S> x) {
  if constexpr (S == D) {
    return x;
  } else if constexpr (IsComplex(S) && IsComplex(D)) {
    using Part = decltype(Storage<D>::re);
    return Storage<D>{static_cast<Part>(x.re), static_cast<Part>(x.im)};
  } else if constexpr (IsComplex(S) && D == DType::kBool) {
    return static_cast<uint8_t>(x.re != 0 || x.im != 0);
  } else if constexpr (IsHalfWidth(S) && D == DType::kBool) {
    return static_cast<uint8_t>((x & 0x7fffu) != 0);
  } else {
    return StoreReal<D>(LoadReal<S>(x));
  }
}

}  // namespace convert
}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_OPS_CONVERT_H_
