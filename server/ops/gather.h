// Gather: copies a run of a strided view's elements, in C order of the
// view's shape, into a contiguous buffer; GatherCast also converts them.
// Stateless and thread-safe; the caller owns storage and dst, which must not
// overlap. Memory use is bounded (a 64 KiB per-thread scratch block for
// GatherCast) whatever the element count.
//
// Preconditions (checked by the caller, e.g. with CheckLayoutInBounds):
// itemsize > 0, every element the layout addresses lies inside the storage,
// layout.shape.size() == layout.strides.size() <= kMaxRank, and
// 0 <= start, 0 <= count, start + count <= the view's element count.
#ifndef TENSORCAST_SERVER_OPS_GATHER_H_
#define TENSORCAST_SERVER_OPS_GATHER_H_

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "server/core/shape.h"

namespace tensorcast {

// Copies elements [start, start + count) of the view (flat C-order indices)
// into dst, count * itemsize bytes. `storage` points at element 0 of the
// storage; the layout's offset and strides (in elements, possibly 0 or
// negative) address it. Contiguous runs are copied with memcpy, 2-D
// transposes in cache-sized tiles.
void Gather(const void* storage, size_t itemsize, const Layout& layout,
            int64_t start, int64_t count, void* dst);

// Gather followed by Cast (cast.h) to dst_dtype: dst receives
// count * ItemSize(dst_dtype) bytes. Works through a bounded scratch block,
// never a buffer the size of the run.
void GatherCast(const void* storage, DType src_dtype, const Layout& layout,
                int64_t start, int64_t count, void* dst, DType dst_dtype);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_OPS_GATHER_H_
