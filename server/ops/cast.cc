#include "server/ops/cast.h"

#include <array>
#include <cstddef>
#include <cstring>
#include <utility>

#include "server/ops/cast_internal.h"
#include "server/ops/convert.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    __GNUC__ >= 12
#define TENSORCAST_CAST_X86_64_V3 1
#endif

namespace tensorcast {
namespace {

using CastKernelFn = void (*)(const void* src, void* dst, int64_t n);
using CastTable = std::array<CastKernelFn, kNumDTypes * kNumDTypes>;

// One plain loop per pair: no branch on the dtype inside, so GCC vectorises
// it at -O3. Inlined into each instruction-set variant below.
template <DType S, DType D>
[[gnu::always_inline]] inline void CastLoop(const void* src, void* dst,
                                            int64_t n) {
  using In = convert::Storage<S>;
  using Out = convert::Storage<D>;
  const In* __restrict in = static_cast<const In*>(src);
  Out* __restrict out = static_cast<Out*>(dst);
  for (int64_t i = 0; i < n; ++i) {
    out[i] = convert::Convert<S, D>(in[i]);
  }
}

template <DType S>
void CopyKernel(const void* src, void* dst, int64_t n) {
  std::memmove(dst, src, static_cast<size_t>(n) * sizeof(convert::Storage<S>));
}

template <DType S, DType D>
void CastKernelBaseline(const void* src, void* dst, int64_t n) {
  CastLoop<S, D>(src, dst, n);
}

#ifdef TENSORCAST_CAST_X86_64_V3
// Twice the vector width, and F16C-era integer ops, for the same code.
template <DType S, DType D>
__attribute__((target("arch=x86-64-v3"))) void CastKernelV3(const void* src,
                                                            void* dst,
                                                            int64_t n) {
  CastLoop<S, D>(src, dst, n);
}
#endif

template <template <DType, DType> class Kernel, size_t... I>
constexpr CastTable MakeTable(std::index_sequence<I...>) {
  return {{[]() -> CastKernelFn {
    constexpr DType kSrc = static_cast<DType>(I / kNumDTypes);
    constexpr DType kDst = static_cast<DType>(I % kNumDTypes);
    if constexpr (kSrc == kDst) {
      return &CopyKernel<kSrc>;
    } else {
      return Kernel<kSrc, kDst>::kFn;
    }
  }()...}};
}

template <DType S, DType D>
struct Baseline {
  static constexpr CastKernelFn kFn = &CastKernelBaseline<S, D>;
};
constexpr CastTable kBaselineTable =
    MakeTable<Baseline>(std::make_index_sequence<kNumDTypes * kNumDTypes>{});

#ifdef TENSORCAST_CAST_X86_64_V3
template <DType S, DType D>
struct V3 {
  static constexpr CastKernelFn kFn = &CastKernelV3<S, D>;
};
constexpr CastTable kV3Table =
    MakeTable<V3>(std::make_index_sequence<kNumDTypes * kNumDTypes>{});
#endif

const CastTable& TableFor(CastIsa isa) {
#ifdef TENSORCAST_CAST_X86_64_V3
  if (isa == CastIsa::kX86_64_V3) return kV3Table;
#endif
  (void)isa;
  return kBaselineTable;
}

const CastTable& BestTable() {
  static const CastTable& table =
      TableFor(CastIsaAvailable(CastIsa::kX86_64_V3) ? CastIsa::kX86_64_V3
                                                     : CastIsa::kBaseline);
  return table;
}

template <size_t... I>
constexpr std::array<size_t, sizeof...(I)> MakeAlignments(
    std::index_sequence<I...>) {
  return {{alignof(convert::Storage<static_cast<DType>(I)>)...}};
}
constexpr std::array<size_t, kNumDTypes> kAlignment =
    MakeAlignments(std::make_index_sequence<kNumDTypes>{});

bool IsAligned(const void* p, DType dtype) {
  return reinterpret_cast<uintptr_t>(p) % kAlignment[static_cast<int>(dtype)] ==
         0;
}

void CastWithTable(const CastTable& table, const void* src, DType src_dtype,
                   void* dst, DType dst_dtype, int64_t n) {
  if (n <= 0) return;
  const CastKernelFn kernel = table[static_cast<int>(src_dtype) * kNumDTypes +
                                    static_cast<int>(dst_dtype)];
  if ((IsAligned(src, src_dtype) && IsAligned(dst, dst_dtype)) ||
      src_dtype == dst_dtype) {
    kernel(src, dst, n);
    return;
  }
  // Misaligned (e.g. bytes straight off the wire): bounce through aligned
  // blocks on the stack.
  constexpr size_t kBlockBytes = 4096;
  alignas(16) std::byte in_block[kBlockBytes];
  alignas(16) std::byte out_block[kBlockBytes];
  const size_t in_size = ItemSize(src_dtype);
  const size_t out_size = ItemSize(dst_dtype);
  const int64_t block = static_cast<int64_t>(
      kBlockBytes / (in_size > out_size ? in_size : out_size));
  const std::byte* in = static_cast<const std::byte*>(src);
  std::byte* out = static_cast<std::byte*>(dst);
  for (int64_t done = 0; done < n; done += block) {
    const int64_t m = n - done < block ? n - done : block;
    std::memcpy(in_block, in + done * in_size, m * in_size);
    kernel(in_block, out_block, m);
    std::memcpy(out + done * out_size, out_block, m * out_size);
  }
}

}  // namespace

bool CastIsaAvailable(CastIsa isa) {
  switch (isa) {
    case CastIsa::kBaseline:
      return true;
    case CastIsa::kX86_64_V3:
#ifdef TENSORCAST_CAST_X86_64_V3
      return __builtin_cpu_supports("x86-64-v3");
#else
      return false;
#endif
  }
  return false;
}

void CastWithIsa(CastIsa isa, const void* src, DType src_dtype, void* dst,
                 DType dst_dtype, int64_t n) {
  CastWithTable(TableFor(isa), src, src_dtype, dst, dst_dtype, n);
}

void Cast(const void* src, DType src_dtype, void* dst, DType dst_dtype,
          int64_t n) {
  CastWithTable(BestTable(), src, src_dtype, dst, dst_dtype, n);
}

}  // namespace tensorcast
