#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "server/memory/cuda_check.h"
#include "server/ops/convert.h"
#include "server/ops/counter_rng.h"
#include "server/ops/fill_cuda.h"

namespace tensorcast {
namespace {

constexpr int kThreadsPerBlock = 256;
constexpr int64_t kMaxBlocks = 4096;  // as cast_cuda.cu: loops stride on
constexpr size_t kVectorBytes = 16;

unsigned BlocksFor(int64_t work) {
  int64_t blocks = (work + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return static_cast<unsigned>(blocks < kMaxBlocks ? blocks : kMaxBlocks);
}

bool AlignedTo(const void* p, size_t alignment) {
  return reinterpret_cast<uintptr_t>(p) % alignment == 0;
}

// One element's bytes, as the CPU computes it: Convert from float64 on the
// host, so the device writes exactly the CPU's element.
struct Element {
  alignas(16) unsigned char bytes[16];
  size_t size;
  size_t align;
};

template <DType D>
Element ConvertOnHost(double value) {
  using T = convert::Storage<D>;
  Element e{};
  const T converted = convert::Convert<DType::kFloat64, D>(value);
  std::memcpy(e.bytes, &converted, sizeof(T));
  e.size = sizeof(T);
  e.align = alignof(T);
  return e;
}

using ConvertFn = Element (*)(double);
template <size_t... I>
constexpr std::array<ConvertFn, sizeof...(I)> MakeConvertTable(
    std::index_sequence<I...>) {
  return {{&ConvertOnHost<static_cast<DType>(I)>...}};
}
constexpr std::array<ConvertFn, kNumDTypes> kConvertTable =
    MakeConvertTable(std::make_index_sequence<kNumDTypes>{});

// An element as N bytes with its dtype's alignment A (complex64: 8 bytes
// aligned to 4).
template <size_t N, size_t A>
struct alignas(A) Item {
  unsigned char bytes[N];
};

// n copies of `value`: [head, head + chunks * 16 / N) through 16-byte
// stores of `pattern` (value repeated), the rest one element at a time.
template <size_t N, size_t A>
__global__ void __launch_bounds__(kThreadsPerBlock)
    ReplicateKernel(Item<N, A>* __restrict__ out, int64_t n, Item<N, A> value,
                    uint4 pattern, int64_t head, int64_t chunks) {
  constexpr int64_t kVec = kVectorBytes / N;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t first =
      static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  uint4* __restrict__ vout = reinterpret_cast<uint4*>(out + head);
  for (int64_t c = first; c < chunks; c += stride) vout[c] = pattern;
  const int64_t body = chunks * kVec;
  const int64_t rest = n - body;
  for (int64_t j = first; j < rest; j += stride) {
    out[j < head ? j : j + body] = value;
  }
}

template <size_t N, size_t A>
absl::Status Replicate(const Element& e, void* dst, int64_t n,
                       cudaStream_t stream) {
  Item<N, A>* out = static_cast<Item<N, A>*>(dst);
  Item<N, A> value;
  std::memcpy(value.bytes, e.bytes, N);
  uint4 pattern;
  for (size_t k = 0; k < kVectorBytes; k += N) {
    std::memcpy(reinterpret_cast<unsigned char*>(&pattern) + k, e.bytes, N);
  }
  constexpr int64_t kVec = kVectorBytes / N;
  int64_t head = 0;
  int64_t chunks = 0;
  for (int64_t p = 0; p < kVec && p < n; ++p) {
    if (AlignedTo(out + p, kVectorBytes)) {
      head = p;
      chunks = (n - p) / kVec;
      break;
    }
  }
  const int64_t rest = n - chunks * kVec;
  ReplicateKernel<N, A>
      <<<BlocksFor(chunks > rest ? chunks : rest), kThreadsPerBlock, 0,
         stream>>>(out, n, value, pattern, head, chunks);
  TC_CUDA_TRY(cudaGetLastError());
  return absl::OkStatus();
}

// Calls fn.template operator()<N, A>() for the element's size and
// alignment (one byte elements never get here: a memset writes them).
template <typename Fn>
absl::Status DispatchItem(const Element& e, Fn fn) {
  if (e.size == 2) return fn.template operator()<2, 2>();
  if (e.size == 4) return fn.template operator()<4, 4>();
  if (e.size == 8 && e.align == 8) return fn.template operator()<8, 8>();
  if (e.size == 8) return fn.template operator()<8, 4>();
  return fn.template operator()<16, 8>();
}

// Writes n elements of e.size bytes.
absl::Status ReplicateElement(const Element& e, void* dst, int64_t n,
                              cudaStream_t stream) {
  bool one_byte = true;  // every byte equal: a memset does it
  for (size_t k = 1; k < e.size; ++k) one_byte &= e.bytes[k] == e.bytes[0];
  if (one_byte) {
    TC_CUDA_TRY(cudaMemsetAsync(dst, e.bytes[0],
                                static_cast<size_t>(n) * e.size, stream));
    return absl::OkStatus();
  }
  return DispatchItem(e, [&]<size_t N, size_t A>() {
    return Replicate<N, A>(e, dst, n, stream);
  });
}

// Validates the common arguments; n > 0 assumed.
absl::Status CheckBuffer(const char* what, void* dst, DType dtype) {
  const int d = static_cast<int>(dtype);
  if (d < 0 || d >= kNumDTypes) {
    return absl::InvalidArgumentError(std::string(what) + ": unknown dtype");
  }
  if (dst == nullptr) {
    return absl::InvalidArgumentError(std::string(what) + ": null buffer");
  }
  if (!AlignedTo(dst, kConvertTable[d](0.0).align)) {
    return absl::InvalidArgumentError(
        std::string(what) + ": dst is not aligned to its element type");
  }
  return absl::OkStatus();
}

template <DType D>
__global__ void __launch_bounds__(kThreadsPerBlock)
    ArangeKernel(convert::Storage<D>* __restrict__ out, int64_t n, double start,
                 double step) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < n; i += stride) {
    // fill.cc's expression; -fmad=false keeps the multiply and add apart.
    const double v = start + static_cast<double>(i) * step;
    out[i] = convert::Convert<DType::kFloat64, D>(v);
  }
}

template <DType D>
absl::Status LaunchArange(void* dst, int64_t n, double start, double step,
                          cudaStream_t stream) {
  ArangeKernel<D><<<BlocksFor(n), kThreadsPerBlock, 0, stream>>>(
      static_cast<convert::Storage<D>*>(dst), n, start, step);
  TC_CUDA_TRY(cudaGetLastError());
  return absl::OkStatus();
}

using ArangeFn = absl::Status (*)(void*, int64_t, double, double, cudaStream_t);
template <size_t... I>
constexpr std::array<ArangeFn, sizeof...(I)> MakeArangeTable(
    std::index_sequence<I...>) {
  return {{&LaunchArange<static_cast<DType>(I)>...}};
}
constexpr std::array<ArangeFn, kNumDTypes> kArangeTable =
    MakeArangeTable(std::make_index_sequence<kNumDTypes>{});

// out[i * step] = value for i < n.
template <size_t N, size_t A>
__global__ void __launch_bounds__(kThreadsPerBlock)
    DiagonalKernel(Item<N, A>* __restrict__ out, int64_t n, int64_t step,
                   Item<N, A> value) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       i < n; i += stride) {
    out[i * step] = value;
  }
}

template <size_t N, size_t A>
absl::Status LaunchDiagonal(const Element& e, void* dst, int64_t n,
                            int64_t step, cudaStream_t stream) {
  Item<N, A> value;
  std::memcpy(value.bytes, e.bytes, N);
  DiagonalKernel<N, A><<<BlocksFor(n), kThreadsPerBlock, 0, stream>>>(
      static_cast<Item<N, A>*>(dst), n, step, value);
  TC_CUDA_TRY(cudaGetLastError());
  return absl::OkStatus();
}

// The generator's scalar types, one functor each (counter_rng.h).
struct UniformHalfFn {
  using Scalar = uint16_t;
  __device__ Scalar operator()(uint64_t x) const {
    return counter_rng::UniformHalf(x);
  }
};
struct UniformBFloat16Fn {
  using Scalar = uint16_t;
  __device__ Scalar operator()(uint64_t x) const {
    return counter_rng::UniformBFloat16(x);
  }
};
struct UniformFloatFn {
  using Scalar = float;
  __device__ Scalar operator()(uint64_t x) const {
    return counter_rng::UniformFloat(x);
  }
};
struct UniformDoubleFn {
  using Scalar = double;
  __device__ Scalar operator()(uint64_t x) const {
    return counter_rng::UniformDouble(x);
  }
};

// Scalar j = uniform(Bits(seed, j)), j < scalars (2n for complex dtypes).
template <typename Fn>
__global__ void __launch_bounds__(kThreadsPerBlock)
    RandKernel(typename Fn::Scalar* __restrict__ out, int64_t scalars,
               uint64_t seed) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
       j < scalars; j += stride) {
    out[j] = Fn()(counter_rng::Bits(seed, static_cast<uint64_t>(j)));
  }
}

template <typename Fn>
absl::Status LaunchRand(void* dst, int64_t scalars, uint64_t seed,
                        cudaStream_t stream) {
  RandKernel<Fn><<<BlocksFor(scalars), kThreadsPerBlock, 0, stream>>>(
      static_cast<typename Fn::Scalar*>(dst), scalars, seed);
  TC_CUDA_TRY(cudaGetLastError());
  return absl::OkStatus();
}

}  // namespace

absl::Status FillValueOnDevice(void* dst, DType dtype, int64_t n, double value,
                               cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  if (absl::Status st = CheckBuffer("FillValueOnDevice", dst, dtype);
      !st.ok()) {
    return st;
  }
  return ReplicateElement(kConvertTable[static_cast<int>(dtype)](value), dst, n,
                          stream);
}

absl::Status FillArangeOnDevice(void* dst, DType dtype, int64_t n, double start,
                                double step, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  if (absl::Status st = CheckBuffer("FillArangeOnDevice", dst, dtype);
      !st.ok()) {
    return st;
  }
  return kArangeTable[static_cast<int>(dtype)](dst, n, start, step, stream);
}

absl::Status FillEyeOnDevice(void* dst, DType dtype, int64_t rows, int64_t cols,
                             cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return absl::OkStatus();
  if (absl::Status st = CheckBuffer("FillEyeOnDevice", dst, dtype); !st.ok()) {
    return st;
  }
  const Element one = kConvertTable[static_cast<int>(dtype)](1.0);
  int64_t elements = 0;
  int64_t bytes = 0;
  if (__builtin_mul_overflow(rows, cols, &elements) ||
      __builtin_mul_overflow(elements, static_cast<int64_t>(one.size),
                             &bytes)) {
    return absl::InvalidArgumentError("FillEyeOnDevice: rows * cols overflows");
  }
  TC_CUDA_TRY(cudaMemsetAsync(dst, 0, static_cast<size_t>(bytes), stream));
  const int64_t n = rows < cols ? rows : cols;
  const int64_t step = cols + 1;
  if (one.size == 1) return LaunchDiagonal<1, 1>(one, dst, n, step, stream);
  return DispatchItem(one, [&]<size_t N, size_t A>() {
    return LaunchDiagonal<N, A>(one, dst, n, step, stream);
  });
}

absl::Status FillRandOnDevice(void* dst, DType dtype, int64_t n, uint64_t seed,
                              cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat16:
    case DType::kBFloat16:
    case DType::kFloat32:
    case DType::kFloat64:
    case DType::kComplex64:
    case DType::kComplex128:
      break;
    default: {
      const int d = static_cast<int>(dtype);
      return absl::InvalidArgumentError(
          std::string("rand is only defined for floating point dtypes, got ") +
          (d >= 0 && d < kNumDTypes ? std::string(DTypeName(dtype))
                                    : std::string("an unknown dtype")));
    }
  }
  if (n <= 0) return absl::OkStatus();
  if (absl::Status st = CheckBuffer("FillRandOnDevice", dst, dtype); !st.ok()) {
    return st;
  }
  switch (dtype) {
    case DType::kFloat16:
      return LaunchRand<UniformHalfFn>(dst, n, seed, stream);
    case DType::kBFloat16:
      return LaunchRand<UniformBFloat16Fn>(dst, n, seed, stream);
    case DType::kFloat32:
      return LaunchRand<UniformFloatFn>(dst, n, seed, stream);
    case DType::kComplex64:
      return LaunchRand<UniformFloatFn>(dst, 2 * n, seed, stream);
    case DType::kFloat64:
      return LaunchRand<UniformDoubleFn>(dst, n, seed, stream);
    default:
      return LaunchRand<UniformDoubleFn>(dst, 2 * n, seed, stream);
  }
}

}  // namespace tensorcast
