#include <array>
#include <cstddef>
#include <cstdint>
#include <utility>

#include "server/memory/cuda_check.h"
#include "server/ops/cast_cuda.h"
#include "server/ops/convert.h"
#include "server/ops/gather_cuda.h"

namespace tensorcast {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = 4096;  // as cast_cuda.cu: loops stride on
// Dims passed by value for views of up to this many (simplified) dims: the
// index loop unrolls. Larger views take a kMaxRank-dim twin (about 1 KiB of
// kernel parameters, well inside CUDA's 4 KiB).
constexpr int kSmallRank = 8;

// A view's dims innermost first, size-1 dims dropped and dims that step
// through memory as one merged (Layout::Coalesced, reversed). rank 0: a
// single element.
template <int kDims>
struct ViewDims {
  int rank = 0;
  int64_t offset = 0;         // elements
  int64_t shape[kDims] = {};  // [0] is the innermost dim
  int64_t stride[kDims] = {};
};

ViewDims<kMaxRank> Simplify(const Layout& layout) {
  const Layout c = layout.Coalesced();  // outermost first
  ViewDims<kMaxRank> d;
  d.offset = c.offset;
  d.rank = static_cast<int>(c.shape.size());
  for (int i = 0; i < d.rank; ++i) {  // reversed: [0] is the innermost dim
    d.shape[i] = c.shape[d.rank - 1 - i];
    d.stride[i] = c.strides[d.rank - 1 - i];
  }
  return d;
}

// a / b for 0 <= a, 0 < b; 32-bit division when both fit, which is the
// common case and several times cheaper than the 64-bit routine.
__device__ __forceinline__ uint64_t DivIndex(uint64_t a, uint64_t b) {
  if (((a | b) >> 32) == 0) {
    return static_cast<uint32_t>(a) / static_cast<uint32_t>(b);
  }
  return a / b;
}

// out[j] = Convert(element start + j of the view), j < count. Grid-stride,
// 64-bit indices; each thread splits its flat index over the dims,
// innermost first (rank - 1 divisions: the outermost dim needs none).
template <DType S, DType D, int kDims>
__global__ void __launch_bounds__(kThreadsPerBlock)
    GatherKernel(const convert::Storage<S>* __restrict__ in,
                 convert::Storage<D>* __restrict__ out, ViewDims<kDims> dims,
                 int64_t start, int64_t count) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int last = dims.rank - 1;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < count; j += stride) {
    uint64_t rest = static_cast<uint64_t>(start + j);
    int64_t offset = dims.offset;
#pragma unroll(kDims <= kSmallRank ? kDims : 1)
    for (int k = 0; k < kDims; ++k) {
      if (k >= last) break;
      const uint64_t n = static_cast<uint64_t>(dims.shape[k]);
      const uint64_t q = DivIndex(rest, n);
      offset += static_cast<int64_t>(rest - q * n) * dims.stride[k];
      rest = q;
    }
    if (last >= 0) offset += static_cast<int64_t>(rest) * dims.stride[last];
    out[j] = convert::Convert<S, D>(in[offset]);
  }
}

// Same-dtype gathers copy bits: one kernel per storage size and alignment.
template <DType S>
constexpr DType kCopyAs = sizeof(convert::Storage<S>) == 1   ? DType::kUInt8
                          : sizeof(convert::Storage<S>) == 2 ? DType::kUInt16
                          : sizeof(convert::Storage<S>) == 4 ? DType::kUInt32
                          : S == DType::kComplex64           ? S
                          : sizeof(convert::Storage<S>) == 8 ? DType::kUInt64
                                                             : S;

bool AlignedTo(const void* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

template <DType S, DType D, int kDims>
absl::Status LaunchKernel(const void* storage, const ViewDims<kMaxRank>& all,
                          int64_t start, int64_t count, void* dst,
                          cudaStream_t stream) {
  ViewDims<kDims> dims;
  dims.rank = all.rank;
  dims.offset = all.offset;
  for (int k = 0; k < all.rank; ++k) {
    dims.shape[k] = all.shape[k];
    dims.stride[k] = all.stride[k];
  }
  int64_t blocks = (count + kThreadsPerBlock - 1) / kThreadsPerBlock;
  blocks = blocks < kMaxBlocks ? blocks : kMaxBlocks;
  GatherKernel<S, D, kDims>
      <<<static_cast<unsigned>(blocks), kThreadsPerBlock, 0, stream>>>(
          static_cast<const convert::Storage<S>*>(storage),
          static_cast<convert::Storage<D>*>(dst), dims, start, count);
  TC_CUDA_TRY(cudaGetLastError());
  return absl::OkStatus();
}

template <DType S, DType D>
absl::Status LaunchGather(const void* storage, const ViewDims<kMaxRank>& dims,
                          int64_t start, int64_t count, void* dst,
                          cudaStream_t stream) {
  if (!AlignedTo(storage, alignof(convert::Storage<S>)) ||
      !AlignedTo(dst, alignof(convert::Storage<D>))) {
    return absl::InvalidArgumentError(
        "GatherCastOnDevice: storage or dst is not aligned to its element "
        "type");
  }
  if constexpr (S == D && kCopyAs<S> != S) {
    return LaunchGather<kCopyAs<S>, kCopyAs<S>>(storage, dims, start, count,
                                                dst, stream);
  } else if (dims.rank <= kSmallRank) {
    return LaunchKernel<S, D, kSmallRank>(storage, dims, start, count, dst,
                                          stream);
  } else {
    return LaunchKernel<S, D, static_cast<int>(kMaxRank)>(storage, dims, start,
                                                          count, dst, stream);
  }
}

using LaunchFn = absl::Status (*)(const void*, const ViewDims<kMaxRank>&,
                                  int64_t, int64_t, void*, cudaStream_t);

template <size_t... I>
constexpr std::array<LaunchFn, sizeof...(I)> MakeLaunchTable(
    std::index_sequence<I...>) {
  return {{&LaunchGather<static_cast<DType>(I / kNumDTypes),
                         static_cast<DType>(I % kNumDTypes)>...}};
}
constexpr std::array<LaunchFn, kNumDTypes* kNumDTypes> kLaunchTable =
    MakeLaunchTable(std::make_index_sequence<kNumDTypes * kNumDTypes>{});

}  // namespace

absl::Status GatherCastOnDevice(const void* storage, DType src_dtype,
                                const Layout& layout, int64_t start,
                                int64_t count, void* dst, DType dst_dtype,
                                cudaStream_t stream) {
  if (count <= 0) return absl::OkStatus();
  if (storage == nullptr || dst == nullptr) {
    return absl::InvalidArgumentError("GatherCastOnDevice: null buffer");
  }
  const int s = static_cast<int>(src_dtype);
  const int d = static_cast<int>(dst_dtype);
  if (s < 0 || s >= kNumDTypes || d < 0 || d >= kNumDTypes) {
    return absl::InvalidArgumentError("GatherCastOnDevice: unknown dtype");
  }
  if (layout.shape.size() != layout.strides.size() ||
      layout.shape.size() > kMaxRank) {
    return absl::InvalidArgumentError(
        "GatherCastOnDevice: layout rank over kMaxRank or shape and strides "
        "of different lengths");
  }
  const ViewDims<kMaxRank> dims = Simplify(layout);
  if (dims.rank == 0 || (dims.rank == 1 && dims.stride[0] == 1)) {
    // One contiguous run: a copy (CastOnDevice's same-dtype path is
    // cudaMemcpyAsync) or a vectorised cast.
    const int64_t first = dims.offset + (dims.rank == 0 ? 0 : start);
    const char* in = static_cast<const char*>(storage) +
                     first * static_cast<int64_t>(ItemSize(src_dtype));
    return CastOnDevice(in, src_dtype, dst, dst_dtype, count, stream);
  }
  return kLaunchTable[s * kNumDTypes + d](storage, dims, start, count, dst,
                                          stream);
}

}  // namespace tensorcast
