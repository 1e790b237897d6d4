// Shapes, strides (in elements) and the layout of a view, with every product
// and sum overflow-checked. Functions are pure and thread-safe.
#ifndef TENSORCAST_SERVER_CORE_SHAPE_H_
#define TENSORCAST_SERVER_CORE_SHAPE_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"

namespace tensorcast {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;  // in elements, may be 0 or negative

inline constexpr size_t kMaxRank = 64;  // NumPy 2's limit

// Number of elements; INVALID_ARGUMENT for a negative dimension, a rank over
// kMaxRank, or a product that does not fit int64.
absl::StatusOr<int64_t> NumElements(std::span<const int64_t> shape);
// NumElements * itemsize, overflow-checked the same way.
absl::StatusOr<int64_t> NumBytes(std::span<const int64_t> shape, DType dtype);

// C-order (row-major) strides in elements.
Strides ContiguousStrides(std::span<const int64_t> shape);
// Fortran-order (column-major) strides in elements.
Strides FortranStrides(std::span<const int64_t> shape);

// How a view addresses its storage: element (i0..in) lives at element index
// offset + sum(ik * strides[k]).
struct Layout {
  Shape shape;
  Strides strides;
  int64_t offset = 0;  // elements

  static Layout Contiguous(Shape shape);
  // True when the elements are in C order with no gaps (size-1 dims and
  // empty tensors count as contiguous whatever their strides).
  bool IsContiguous() const;
  // The same elements in the same C order with as few dims as possible:
  // size-1 dims dropped, and neighbours that step through memory as one
  // merged (a contiguous view becomes rank 1 with stride 1; a transposed
  // matrix stays rank 2). Rank 0 then means a single element. The gathers,
  // CPU and GPU, iterate over this.
  Layout Coalesced() const;
};

// Checks that every element the layout addresses lies inside a storage of
// `storage_elements` elements (overflow-checked); INVALID_ARGUMENT if not.
absl::Status CheckLayoutInBounds(const Layout& layout,
                                 int64_t storage_elements);

// "(3, 4)", "()" for 0-d, "(5,)" for 1-d: the way NumPy prints shapes.
std::string ShapeToString(std::span<const int64_t> shape);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_CORE_SHAPE_H_
