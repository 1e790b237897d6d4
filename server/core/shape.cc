#include "server/core/shape.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tensorcast {

absl::StatusOr<int64_t> NumElements(std::span<const int64_t> shape) {
  if (shape.size() > kMaxRank) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", shape.size(), " exceeds the maximum of ", kMaxRank));
  }
  int64_t n = 1;
  bool overflow = false;
  for (int64_t d : shape) {
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "negative dimension ", d, " in shape ", ShapeToString(shape)));
    }
    // Keep checking the rest for negatives even after an overflow.
    if (!overflow && __builtin_mul_overflow(n, d, &n)) overflow = true;
  }
  // A zero anywhere makes the product 0 whatever the other dimensions are,
  // but NumPy still refuses shapes whose non-zero dims overflow; so do we.
  if (overflow) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shape ", ShapeToString(shape), " has too many elements (overflow)"));
  }
  int64_t nonzero = 1;
  for (int64_t d : shape) {
    if (d != 0 && __builtin_mul_overflow(nonzero, d, &nonzero)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shape ", ShapeToString(shape), " has too many elements (overflow)"));
    }
  }
  return n;
}

absl::StatusOr<int64_t> NumBytes(std::span<const int64_t> shape, DType dtype) {
  absl::StatusOr<int64_t> n = NumElements(shape);
  if (!n.ok()) return n.status();
  int64_t bytes;
  if (__builtin_mul_overflow(*n, static_cast<int64_t>(ItemSize(dtype)),
                             &bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("shape ", ShapeToString(shape), " of ", DTypeName(dtype),
                     " is too large (byte count overflows)"));
  }
  return bytes;
}

Strides ContiguousStrides(std::span<const int64_t> shape) {
  Strides strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i] > 0 ? shape[i] : 1;
  }
  return strides;
}

Strides FortranStrides(std::span<const int64_t> shape) {
  Strides strides(shape.size());
  int64_t s = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    strides[i] = s;
    s *= shape[i] > 0 ? shape[i] : 1;
  }
  return strides;
}

Layout Layout::Contiguous(Shape shape) {
  Layout layout;
  layout.strides = ContiguousStrides(shape);
  layout.shape = std::move(shape);
  return layout;
}

bool Layout::IsContiguous() const {
  for (int64_t d : shape) {
    if (d == 0) return true;
  }
  int64_t expected = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

Layout Layout::Coalesced() const {
  Layout out;
  out.offset = offset;
  for (size_t k = 0; k < shape.size(); ++k) {
    const int64_t n = shape[k];
    const int64_t s = strides[k];
    if (n == 1) continue;
    // s * n may overflow where the view is empty (any strides pass
    // CheckLayoutInBounds then); such dims are not neighbours.
    int64_t span;
    if (!out.shape.empty() && !__builtin_mul_overflow(s, n, &span) &&
        out.strides.back() == span) {
      out.shape.back() *= n;
      out.strides.back() = s;
    } else {
      out.shape.push_back(n);
      out.strides.push_back(s);
    }
  }
  return out;
}

absl::Status CheckLayoutInBounds(const Layout& layout,
                                 int64_t storage_elements) {
  if (layout.shape.size() != layout.strides.size()) {
    return absl::InvalidArgumentError("shape and strides differ in rank");
  }
  absl::StatusOr<int64_t> n = NumElements(layout.shape);
  if (!n.ok()) return n.status();
  if (*n == 0) return absl::OkStatus();
  int64_t lo = layout.offset, hi = layout.offset;
  for (size_t i = 0; i < layout.shape.size(); ++i) {
    int64_t extent;
    if (__builtin_mul_overflow(layout.shape[i] - 1, layout.strides[i],
                               &extent)) {
      return absl::InvalidArgumentError("strides overflow");
    }
    int64_t* bound = extent < 0 ? &lo : &hi;
    if (__builtin_add_overflow(*bound, extent, bound)) {
      return absl::InvalidArgumentError("strides overflow");
    }
  }
  if (lo < 0 || hi >= storage_elements) {
    return absl::InvalidArgumentError(
        absl::StrCat("view addresses elements [", lo, ", ", hi,
                     "] outside a storage of ", storage_elements, " elements"));
  }
  return absl::OkStatus();
}

std::string ShapeToString(std::span<const int64_t> shape) {
  if (shape.size() == 1) return absl::StrCat("(", shape[0], ",)");
  return absl::StrCat("(", absl::StrJoin(shape, ", "), ")");
}

}  // namespace tensorcast
