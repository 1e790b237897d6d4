// The counter-based generator behind FillRand (fill.h): scalar j of a
// stream is a pure function of (seed, j), so any device, thread or chunk
// computes the same bits. Header-only and constexpr so a CUDA kernel can
// include it; pure functions, thread-safe.
#ifndef TENSORCAST_SERVER_OPS_COUNTER_RNG_H_
#define TENSORCAST_SERVER_OPS_COUNTER_RNG_H_

#include <cstdint>

#include "server/ops/convert.h"

namespace tensorcast {
namespace counter_rng {

inline constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ull;

// splitmix64's output function (Steele, Lea, Flood 2014).
TC_HOST_DEVICE constexpr uint64_t SplitMix64Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// The j-th output of splitmix64 seeded with `seed`.
TC_HOST_DEVICE constexpr uint64_t Bits(uint64_t seed, uint64_t j) {
  return SplitMix64Mix(seed + kGolden * (j + 1));
}

// Uniform on [0, 1) with `p` significant bits: (x >> (64 - p)) * 2^-p.
TC_HOST_DEVICE constexpr double UniformDouble(uint64_t x) {
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}
TC_HOST_DEVICE constexpr float UniformFloat(uint64_t x) {
  return static_cast<float>(x >> 40) * 0x1.0p-24f;
}
TC_HOST_DEVICE constexpr uint16_t UniformHalf(uint64_t x) {
  return convert::FloatToHalf(static_cast<float>(x >> 53) * 0x1.0p-11f);
}
TC_HOST_DEVICE constexpr uint16_t UniformBFloat16(uint64_t x) {
  return convert::FloatToBFloat16(static_cast<float>(x >> 56) * 0x1.0p-8f);
}

}  // namespace counter_rng
}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_OPS_COUNTER_RNG_H_
