#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "server/memory/cuda_check.h"
#include "server/ops/cast_cuda.h"
#include "server/ops/convert.h"

namespace tensorcast {
namespace {

constexpr int kThreadsPerBlock = 256;
// Enough resident threads for any current GPU; the loops stride over the
// rest.
constexpr int64_t kMaxBlocks = 4096;
constexpr size_t kVectorBytes = 16;  // one LDG.128 / STG.128
// Chunks each thread loads before it converts and stores any: independent
// loads in flight hide the memory latency.
constexpr int kUnroll = 4;

// Elements per thread per chunk: enough that the wider side fills one
// 16-byte access. The narrower side then takes one 8-, 4-, 2- or 1-byte
// access, so in every load and store instruction the 32 threads of a warp
// touch one contiguous span: both sides coalesce. (Sizing by the narrower
// side instead gave the wider side several 16-byte accesses per thread, a
// warp's writes 32-64 bytes apart -- widening casts then ran at 0.35-0.76x
// a device copy on an H100.)
template <DType S, DType D>
constexpr int kVectorWidth = static_cast<int>(
    kVectorBytes / (sizeof(convert::Storage<S>) > sizeof(convert::Storage<D>)
                        ? sizeof(convert::Storage<S>)
                        : sizeof(convert::Storage<D>)));

// The unsigned type that one access of `kBytes` loads or stores.
template <size_t kBytes>
struct WordOf;
template <>
struct WordOf<1> {
  using type = uint8_t;
};
template <>
struct WordOf<2> {
  using type = uint16_t;
};
template <>
struct WordOf<4> {
  using type = uint32_t;
};
template <>
struct WordOf<8> {
  using type = uint2;
};
template <>
struct WordOf<16> {
  using type = uint4;
};

// Conversions the device does in fewer instructions than Convert's portable
// bit manipulation, with Convert's bits exactly (bench/GPU.md, "Predictions
// for the H200's slow pairs"); every other pair is Convert itself.
//
// float16 -> float32 in hardware (cvt.f32.f16: exact for every finite value
// and infinity, subnormals included; a NaN's payload is the hardware's).
__device__ __forceinline__ float HalfToFloatExact(uint16_t h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}

template <DType S, DType D>
__device__ __forceinline__ convert::Storage<D> DeviceConvert(
    convert::Storage<S> x) {
  if constexpr (S == DType::kFloat16 && convert::IsInteger(D)) {
    // Convert's LoadReal (HalfToFloat) and StoreReal (FloatToInt): the
    // float is the same for every non-NaN, and FloatToInt gives 0 for any
    // NaN, whatever its payload.
    return convert::FloatToInt<convert::Storage<D>>(HalfToFloatExact(x));
  } else if constexpr (S == DType::kFloat16 && D == DType::kBFloat16) {
    // The same float, rounded by the same FloatToBFloat16; a NaN gets the
    // bits Convert gives it (HalfToFloat keeps the sign and payload and sets
    // the quiet bit, FloatToBFloat16 keeps the top 7 payload bits).
    const uint16_t rounded = convert::FloatToBFloat16(HalfToFloatExact(x));
    const uint16_t nan =
        static_cast<uint16_t>((x & 0x8000u) | 0x7fc0u | ((x & 0x3ffu) >> 3));
    return (x & 0x7fffu) > 0x7c00u ? nan : rounded;
  } else {
    return convert::Convert<S, D>(x);
  }
}

// One chunk of kVec elements. uint8/int8 -> float16 two at a time: the
// float16 with bits 0x6400 | b is 1024 + b exactly (b < 1024: its ulp is
// 1), so one packed float16 addition of -1024 (of -1152 for int8, whose
// byte is biased by 128 first) gives the value, exact -- every uint8 and
// int8 is a float16 -- and +0 for 0, as FloatToHalf gives. Every other pair
// converts element by element.
template <DType S, int kVec>
__device__ __forceinline__ void BytesToHalves(const convert::Storage<S>* in,
                                              uint16_t* out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 530
  constexpr uint32_t kBias = S == DType::kInt8 ? 0x80u : 0u;
  // -1024 or -1152 in both halves.
  constexpr uint32_t kMinus = S == DType::kInt8 ? 0xe480e480u : 0xe400e400u;
#pragma unroll
  for (int k = 0; k < kVec; k += 2) {
    const uint32_t lo = static_cast<uint8_t>(in[k]) ^ kBias;
    const uint32_t hi = static_cast<uint8_t>(in[k + 1]) ^ kBias;
    const uint32_t biased = 0x64006400u | lo | (hi << 16);
    uint32_t halves;
    asm("add.rn.f16x2 %0, %1, %2;" : "=r"(halves) : "r"(biased), "r"(kMinus));
    out[k] = static_cast<uint16_t>(halves);
    out[k + 1] = static_cast<uint16_t>(halves >> 16);
  }
#else
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    out[k] = convert::Convert<S, DType::kFloat16>(in[k]);
  }
#endif
}

// float16 -> bfloat16 two at a time: each half to float32 in hardware
// (exact), the pair rounded to bfloat16 by one cvt.rn.bf16x2.f32 (round to
// nearest even, FloatToBFloat16's rule; no float16 value is near bfloat16's
// overflow or subnormal range, where the two could part), and the NaNs given
// the bits Convert gives them (as DeviceConvert does), lane by lane in one
// 32-bit word: (h & 0x7fff) + 0x3ff carries into bit 15 exactly when h is a
// NaN, and never into the other lane.
template <int kVec>
__device__ __forceinline__ void HalvesToBFloat16s(const uint16_t* in,
                                                  uint16_t* out) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#pragma unroll
  for (int k = 0; k < kVec; k += 2) {
    const uint32_t pair =
        static_cast<uint32_t>(in[k]) | (static_cast<uint32_t>(in[k + 1]) << 16);
    uint32_t rounded;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;"
        : "=r"(rounded)
        : "f"(HalfToFloatExact(in[k + 1])), "f"(HalfToFloatExact(in[k])));
    const uint32_t nan_lanes =
        (((pair & 0x7fff7fffu) + 0x03ff03ffu) & 0x80008000u) >> 15;
    const uint32_t mask = nan_lanes * 0xffffu;  // 0xffff in each NaN lane
    const uint32_t nan =
        (pair & 0x80008000u) | 0x7fc07fc0u | ((pair >> 3) & 0x007f007fu);
    const uint32_t both = (nan & mask) | (rounded & ~mask);
    out[k] = static_cast<uint16_t>(both);
    out[k + 1] = static_cast<uint16_t>(both >> 16);
  }
#else
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    out[k] = DeviceConvert<DType::kFloat16, DType::kBFloat16>(in[k]);
  }
#endif
}

template <DType S, DType D, int kVec>
__device__ __forceinline__ void ConvertChunk(const convert::Storage<S>* in,
                                             convert::Storage<D>* out) {
  if constexpr ((S == DType::kUInt8 || S == DType::kInt8) &&
                D == DType::kFloat16 && kVec % 2 == 0) {
    BytesToHalves<S, kVec>(in, out);
  } else if constexpr (S == DType::kFloat16 && D == DType::kBFloat16 &&
                       kVec % 2 == 0) {
    HalvesToBFloat16s<kVec>(in, out);
  } else {
#pragma unroll
    for (int k = 0; k < kVec; ++k) out[k] = DeviceConvert<S, D>(in[k]);
  }
}

// One kernel per (S, D) pair: elements [head, head + chunks * V) go V at a
// time, one word in and one word out per chunk (both addresses aligned to
// their word there), kUnroll chunks per thread per pass; the head and tail
// around them go one element at a time. 64-bit indices, grid-stride loops.
template <DType S, DType D>
__global__ void __launch_bounds__(kThreadsPerBlock)
    CastKernel(const convert::Storage<S>* __restrict__ in,
               convert::Storage<D>* __restrict__ out, int64_t n, int64_t head,
               int64_t chunks) {
  using In = convert::Storage<S>;
  using Out = convert::Storage<D>;
  constexpr int kVec = kVectorWidth<S, D>;
  using InWord = typename WordOf<sizeof(In) * kVec>::type;
  using OutWord = typename WordOf<sizeof(Out) * kVec>::type;
  static_assert(kVec >= 1);

  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first =
      static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const InWord* __restrict__ vin = reinterpret_cast<const InWord*>(in + head);
  OutWord* __restrict__ vout = reinterpret_cast<OutWord*>(out + head);
  for (int64_t c0 = first; c0 < chunks; c0 += stride * kUnroll) {
    InWord words[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t c = c0 + u * stride;
      if (c < chunks) words[u] = vin[c];
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t c = c0 + u * stride;
      if (c >= chunks) break;
      In elements[kVec];
      memcpy(elements, &words[u], sizeof(elements));
      Out results[kVec];
      ConvertChunk<S, D, kVec>(elements, results);
      OutWord result;
      memcpy(&result, results, sizeof(result));
      vout[c] = result;
    }
  }
  const int64_t body = chunks * kVec;
  const int64_t rest = n - body;
  for (int64_t j = first; j < rest; j += stride) {
    const int64_t i = j < head ? j : j + body;
    out[i] = DeviceConvert<S, D>(in[i]);
  }
}

bool AlignedTo(const void* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

template <DType S, DType D>
absl::Status LaunchCast(const void* src, void* dst, int64_t n,
                        cudaStream_t stream) {
  using In = convert::Storage<S>;
  using Out = convert::Storage<D>;
  if constexpr (S == D) {
    TC_CUDA_TRY(cudaMemcpyAsync(dst, src, static_cast<size_t>(n) * sizeof(In),
                                cudaMemcpyDeviceToDevice, stream));
    return absl::OkStatus();
  } else {
    if (!AlignedTo(src, alignof(In)) || !AlignedTo(dst, alignof(Out))) {
      return absl::InvalidArgumentError(
          "CastOnDevice: src or dst is not aligned to its element type");
    }
    const In* in = static_cast<const In*>(src);
    Out* out = static_cast<Out*>(dst);
    constexpr int kVec = kVectorWidth<S, D>;
    // The first element from which both sides are aligned to their words;
    // none (the buffers' offsets disagree): everything goes one at a time.
    int64_t head = 0;
    int64_t chunks = 0;
    for (int64_t p = 0; p < kVec && p < n; ++p) {
      if (AlignedTo(in + p, sizeof(In) * kVec) &&
          AlignedTo(out + p, sizeof(Out) * kVec)) {
        head = p;
        chunks = (n - p) / kVec;
        break;
      }
    }
    const int64_t rest = n - chunks * kVec;
    const int64_t passes = (chunks + kUnroll - 1) / kUnroll;
    const int64_t work = passes > rest ? passes : rest;
    int64_t blocks = (work + kThreadsPerBlock - 1) / kThreadsPerBlock;
    blocks = blocks < kMaxBlocks ? blocks : kMaxBlocks;
    CastKernel<S, D>
        <<<static_cast<unsigned>(blocks), kThreadsPerBlock, 0, stream>>>(
            in, out, n, head, chunks);
    TC_CUDA_TRY(cudaGetLastError());
    return absl::OkStatus();
  }
}

using LaunchFn = absl::Status (*)(const void*, void*, int64_t, cudaStream_t);

template <size_t... I>
constexpr std::array<LaunchFn, sizeof...(I)> MakeLaunchTable(
    std::index_sequence<I...>) {
  return {{&LaunchCast<static_cast<DType>(I / kNumDTypes),
                       static_cast<DType>(I % kNumDTypes)>...}};
}
constexpr std::array<LaunchFn, kNumDTypes* kNumDTypes> kLaunchTable =
    MakeLaunchTable(std::make_index_sequence<kNumDTypes * kNumDTypes>{});

}  // namespace

absl::Status CastOnDevice(const void* src, DType src_dtype, void* dst,
                          DType dst_dtype, int64_t n, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  if (src == nullptr || dst == nullptr) {
    return absl::InvalidArgumentError("CastOnDevice: null buffer");
  }
  const int s = static_cast<int>(src_dtype);
  const int d = static_cast<int>(dst_dtype);
  if (s < 0 || s >= kNumDTypes || d < 0 || d >= kNumDTypes) {
    return absl::InvalidArgumentError("CastOnDevice: unknown dtype");
  }
  return kLaunchTable[s * kNumDTypes + d](src, dst, n, stream);
}

}  // namespace tensorcast
