#include "server/ops/gather.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "server/ops/cast.h"

namespace tensorcast {
namespace {

// A layout with size-1 dims dropped and dims that step through memory as
// one merged: a contiguous view becomes rank 1 with stride 1, a transposed
// matrix stays rank 2. Rank 0 means a single element.
struct Dims {
  int rank = 0;
  int64_t offset = 0;  // elements
  int64_t shape[kMaxRank];
  int64_t stride[kMaxRank];  // elements
};

Dims Simplify(const Layout& layout) {
  const Layout c = layout.Coalesced();
  Dims d;
  d.offset = c.offset;
  d.rank = static_cast<int>(c.shape.size());
  std::copy(c.shape.begin(), c.shape.end(), d.shape);
  std::copy(c.strides.begin(), c.strides.end(), d.stride);
  return d;
}

// Copies n elements spaced `step` bytes apart into contiguous dst.
using RowFn = void (*)(const char* src, int64_t step, int64_t n, char* dst);
// Copies a rows x cols block, element (r, c) at src + r*row_step +
// c*col_step, into row-major dst; visits it in tiles that fit L1 so that a
// transposed source is read along its contiguous direction.
using TileFn = void (*)(const char* src, int64_t row_step, int64_t col_step,
                        int64_t rows, int64_t cols, char* dst);

template <size_t N>
void CopyRow(const char* src, int64_t step, int64_t n, char* dst) {
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(dst + i * static_cast<int64_t>(N), src + i * step, N);
  }
}

// One tile: read kTile columns of kTile elements (one cache line each when
// rows are adjacent) into a local buffer, then write kTile full output rows.
// Every source and destination line is touched once, so the power-of-two
// strides of a square transpose cannot evict lines that are still needed.
template <size_t N, int64_t kTile>
inline void CopyOneTile(const char* src, int64_t row_step, int64_t col_step,
                        int64_t rows, int64_t cols, int64_t dst_row_bytes,
                        char* dst) {
  constexpr int64_t kSize = static_cast<int64_t>(N);
  alignas(64) unsigned char buf[kTile * kTile * N];
  for (int64_t c = 0; c < cols; ++c) {
    const char* in = src + c * col_step;
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(buf + (c * kTile + r) * kSize, in + r * row_step, N);
    }
  }
  for (int64_t r = 0; r < rows; ++r) {
    char* out = dst + r * dst_row_bytes;
    for (int64_t c = 0; c < cols; ++c) {
      std::memcpy(out + c * kSize, buf + (c * kTile + r) * kSize, N);
    }
  }
}

template <size_t N>
void CopyTile(const char* src, int64_t row_step, int64_t col_step, int64_t rows,
              int64_t cols, char* dst) {
  constexpr int64_t kSize = static_cast<int64_t>(N);
  constexpr int64_t kTile = N >= 16 ? 4 : 64 / kSize;
  // Tiles are visited in blocks of 16 x 16 so that the pages a block
  // touches stay in the TLB.
  constexpr int64_t kBlock = 16 * kTile;
  const int64_t dst_row_bytes = cols * kSize;
  for (int64_t rb = 0; rb < rows; rb += kBlock) {
    const int64_t rb_end = std::min(rows, rb + kBlock);
    for (int64_t cb = 0; cb < cols; cb += kBlock) {
      const int64_t cb_end = std::min(cols, cb + kBlock);
      for (int64_t r0 = rb; r0 < rb_end; r0 += kTile) {
        const int64_t rn = std::min(kTile, rb_end - r0);
        for (int64_t c0 = cb; c0 < cb_end; c0 += kTile) {
          const int64_t cn = std::min(kTile, cb_end - c0);
          const char* in = src + r0 * row_step + c0 * col_step;
          char* out = dst + r0 * dst_row_bytes + c0 * kSize;
          if (rn == kTile && cn == kTile) {  // constant trip counts
            CopyOneTile<N, kTile>(in, row_step, col_step, kTile, kTile,
                                  dst_row_bytes, out);
          } else {
            CopyOneTile<N, kTile>(in, row_step, col_step, rn, cn, dst_row_bytes,
                                  out);
          }
        }
      }
    }
  }
}

struct Copier {
  size_t itemsize;
  RowFn row;    // null: itemsize has no specialisation
  TileFn tile;  // null: likewise

  void Row(const char* src, int64_t step, int64_t n, char* dst) const {
    if (step == static_cast<int64_t>(itemsize)) {
      std::memcpy(dst, src, n * itemsize);
    } else if (row != nullptr) {
      row(src, step, n, dst);
    } else {
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(dst + i * itemsize, src + i * step, itemsize);
      }
    }
  }
};

Copier MakeCopier(size_t itemsize) {
  switch (itemsize) {
    case 1:
      return {1, &CopyRow<1>, &CopyTile<1>};
    case 2:
      return {2, &CopyRow<2>, &CopyTile<2>};
    case 4:
      return {4, &CopyRow<4>, &CopyTile<4>};
    case 8:
      return {8, &CopyRow<8>, &CopyTile<8>};
    case 16:
      return {16, &CopyRow<16>, &CopyTile<16>};
    default:
      return {itemsize, nullptr, nullptr};
  }
}

void GatherDims(const char* storage, const Copier& copier, const Dims& d,
                int64_t start, int64_t count, char* dst) {
  if (count <= 0) return;
  const int64_t size = static_cast<int64_t>(copier.itemsize);
  if (d.rank == 0) {
    std::memcpy(dst, storage + d.offset * size, copier.itemsize);
    return;
  }
  const int inner = d.rank - 1;
  const int64_t row_len = d.shape[inner];
  const int64_t step = d.stride[inner] * size;
  if (d.rank == 1) {
    copier.Row(storage + (d.offset + start * d.stride[0]) * size, step, count,
               dst);
    return;
  }
  // The multi-index of `start` (the only divisions), then an odometer over
  // the outer dims; `row_offset` addresses element (idx..., 0).
  int64_t idx[kMaxRank];
  int64_t row_offset = d.offset;
  int64_t rest = start;
  for (int k = inner; k >= 0; --k) {
    idx[k] = rest % d.shape[k];
    rest /= d.shape[k];
    if (k < inner) row_offset += idx[k] * d.stride[k];
  }
  int64_t col = idx[inner];
  const int outer = inner - 1;  // the dim the tiles span
  const bool tiled = copier.tile != nullptr && d.stride[inner] != 1 &&
                     std::abs(d.stride[outer]) < std::abs(d.stride[inner]);
  // Moves to the next row, or `rows` rows on in dim `outer`, with carry.
  auto advance = [&](int64_t rows) {
    idx[outer] += rows;
    row_offset += rows * d.stride[outer];
    for (int k = outer; k > 0 && idx[k] >= d.shape[k]; --k) {
      idx[k] = 0;
      row_offset -= d.shape[k] * d.stride[k];
      ++idx[k - 1];
      row_offset += d.stride[k - 1];
    }
  };
  while (count > 0) {
    if (tiled && col == 0) {
      const int64_t rows =
          std::min(d.shape[outer] - idx[outer], count / row_len);
      if (rows >= 2) {
        copier.tile(storage + row_offset * size, d.stride[outer] * size, step,
                    rows, row_len, dst);
        dst += rows * row_len * size;
        count -= rows * row_len;
        advance(rows);
        continue;
      }
    }
    const int64_t n = std::min(row_len - col, count);
    copier.Row(storage + (row_offset + col * d.stride[inner]) * size, step, n,
               dst);
    dst += n * size;
    count -= n;
    col = 0;
    if (count > 0) advance(1);
  }
}

constexpr size_t kScratchBytes = 64 * 1024;

std::byte* Scratch() {
  thread_local std::unique_ptr<std::byte[]> block(new std::byte[kScratchBytes]);
  return block.get();
}

}  // namespace

void Gather(const void* storage, size_t itemsize, const Layout& layout,
            int64_t start, int64_t count, void* dst) {
  if (count <= 0) return;
  GatherDims(static_cast<const char*>(storage), MakeCopier(itemsize),
             Simplify(layout), start, count, static_cast<char*>(dst));
}

void GatherCast(const void* storage, DType src_dtype, const Layout& layout,
                int64_t start, int64_t count, void* dst, DType dst_dtype) {
  if (count <= 0) return;
  const size_t in_size = ItemSize(src_dtype);
  const size_t out_size = ItemSize(dst_dtype);
  const char* in = static_cast<const char*>(storage);
  char* out = static_cast<char*>(dst);
  const Dims d = Simplify(layout);
  const Copier copier = MakeCopier(in_size);
  if (src_dtype == dst_dtype) {
    GatherDims(in, copier, d, start, count, out);
    return;
  }
  if (d.rank == 0 || (d.rank == 1 && d.stride[0] == 1)) {
    const int64_t first = d.offset + (d.rank == 0 ? 0 : start);
    Cast(in + first * static_cast<int64_t>(in_size), src_dtype, out, dst_dtype,
         count);
    return;
  }
  std::byte* scratch = Scratch();
  const int64_t block = static_cast<int64_t>(kScratchBytes / in_size);
  for (int64_t done = 0; done < count; done += block) {
    const int64_t m = std::min(block, count - done);
    GatherDims(in, copier, d, start + done, m,
               reinterpret_cast<char*>(scratch));
    Cast(scratch, src_dtype, out + done * static_cast<int64_t>(out_size),
         dst_dtype, m);
  }
}

}  // namespace tensorcast
