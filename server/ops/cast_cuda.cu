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
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        results[k] = convert::Convert<S, D>(elements[k]);
      }
      OutWord result;
      memcpy(&result, results, sizeof(result));
      vout[c] = result;
    }
  }
  const int64_t body = chunks * kVec;
  const int64_t rest = n - body;
  for (int64_t j = first; j < rest; j += stride) {
    const int64_t i = j < head ? j : j + body;
    out[i] = convert::Convert<S, D>(in[i]);
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
