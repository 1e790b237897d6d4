// The 15 element types tensorcast stores, and what is known about each:
// name, item size, NumPy `.npy` descriptor and kind. Pure data, thread-safe.
#ifndef TENSORCAST_COMMON_DTYPE_H_
#define TENSORCAST_COMMON_DTYPE_H_

#include <array>
#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tensorcast {

// The order is part of the contract: proto enum value = index + 1.
enum class DType : uint8_t {
  kBool,
  kUInt8,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kUInt16,
  kUInt32,
  kUInt64,
  kFloat16,
  kBFloat16,
  kFloat32,
  kFloat64,
  kComplex64,
  kComplex128,
};
inline constexpr int kNumDTypes = 15;

enum class DTypeKind : uint8_t { kBool, kUnsigned, kSigned, kFloat, kComplex };

struct DTypeInfo {
  DType dtype;
  absl::string_view name;       // "float32": NumPy's and PyTorch's name
  size_t itemsize;              // bytes per element
  absl::string_view npy_descr;  // little-endian descr, "<f4"; empty: none
  DTypeKind kind;
};

// Every dtype, indexed by static_cast<int>(DType).
const std::array<DTypeInfo, kNumDTypes>& AllDTypes();
const DTypeInfo& GetDTypeInfo(DType dtype);

inline absl::string_view DTypeName(DType d) { return GetDTypeInfo(d).name; }
inline size_t ItemSize(DType d) { return GetDTypeInfo(d).itemsize; }
inline DTypeKind Kind(DType d) { return GetDTypeInfo(d).kind; }
// Only floating and complex tensors may require grad (PyTorch's rule).
inline bool IsFloatingOrComplex(DType d) {
  return Kind(d) == DTypeKind::kFloat || Kind(d) == DTypeKind::kComplex;
}

// Accepts the canonical names and the usual aliases ("float", "double",
// "half", "int", "long", "bool_", "torch.float32", "np.float32"...).
// INVALID_ARGUMENT names the accepted set on failure.
absl::StatusOr<DType> ParseDType(absl::string_view name);

}  // namespace tensorcast

#endif  // TENSORCAST_COMMON_DTYPE_H_
