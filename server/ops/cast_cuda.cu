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

// Elements per thread in the vector loop: enough that the narrower side
// fills one 16-byte access (the wider side then takes several).
template <DType S, DType D>
constexpr int kVectorWidth = static_cast<int>(
    kVectorBytes / (sizeof(convert::Storage<S>) < sizeof(convert::Storage<D>)
                        ? sizeof(convert::Storage<S>)
                        : sizeof(convert::Storage<D>)));

// One kernel per (S, D) pair: elements [head, head + chunks * V) go V at a
// time through 16-byte loads and stores (both addresses 16-byte aligned
// there); the head and tail around them go one at a time. 64-bit indices,
// grid-stride loops.
template <DType S, DType D>
__global__ void __launch_bounds__(kThreadsPerBlock)
    CastKernel(const convert::Storage<S>* __restrict__ in,
               convert::Storage<D>* __restrict__ out, int64_t n, int64_t head,
               int64_t chunks) {
  using In = convert::Storage<S>;
  using Out = convert::Storage<D>;
  constexpr int kVec = kVectorWidth<S, D>;
  constexpr int kInWords = sizeof(In) * kVec / kVectorBytes;
  constexpr int kOutWords = sizeof(Out) * kVec / kVectorBytes;
  static_assert(kInWords >= 1 && kOutWords >= 1);

  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first =
      static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const uint4* __restrict__ vin = reinterpret_cast<const uint4*>(in + head);
  uint4* __restrict__ vout = reinterpret_cast<uint4*>(out + head);
  for (int64_t c = first; c < chunks; c += stride) {
    uint4 in_words[kInWords];
#pragma unroll
    for (int k = 0; k < kInWords; ++k) in_words[k] = vin[c * kInWords + k];
    In elements[kVec];
    memcpy(elements, in_words, sizeof(elements));
    Out results[kVec];
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      results[k] = convert::Convert<S, D>(elements[k]);
    }
    uint4 out_words[kOutWords];
    memcpy(out_words, results, sizeof(out_words));
#pragma unroll
    for (int k = 0; k < kOutWords; ++k) vout[c * kOutWords + k] = out_words[k];
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
    // The first element from which both sides are 16-byte aligned; none
    // (the buffers' offsets disagree modulo 16): everything goes one at a
    // time.
    int64_t head = 0;
    int64_t chunks = 0;
    for (int64_t p = 0; p < kVec && p < n; ++p) {
      if (AlignedTo(in + p, kVectorBytes) && AlignedTo(out + p, kVectorBytes)) {
        head = p;
        chunks = (n - p) / kVec;
        break;
      }
    }
    const int64_t rest = n - chunks * kVec;
    const int64_t work = chunks > rest ? chunks : rest;
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
