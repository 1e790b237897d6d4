// The conversions that make tensors on the server: Create (fills and
// literals), To (device and dtype) and Detach, with PyTorch's rules for
// requires_grad. Thread-safe: each call works on its own new storage and
// reads only immutable tensors.
#ifndef TENSORCAST_SERVER_STORE_CONVERSIONS_H_
#define TENSORCAST_SERVER_STORE_CONVERSIONS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "server/core/shape.h"
#include "server/store/device.h"
#include "server/store/tensor_store.h"

namespace tensorcast {

struct CreateSpec {
  enum class Init { kZeros, kOnes, kFull, kArange, kEye, kRand, kLiteral };

  DType dtype = DType::kFloat32;
  Shape shape;
  std::string device;
  bool requires_grad = false;
  std::string name;
  int64_t ttl_seconds = 0;

  Init init = Init::kZeros;
  double value = 0;   // kFull
  double start = 0;   // kArange
  double step = 1;    // kArange
  uint64_t seed = 0;  // kRand
  // kLiteral: C-order elements of literal_dtype (float64, int64, uint64,
  // bool or complex128), converted to dtype with the cast rules.
  DType literal_dtype = DType::kFloat64;
  std::string literal_bytes;
};

// Where new tensors go, how big they may be, and whose they are (their
// storage is charged to that tenant's quota).
struct ConversionContext {
  TensorStore* store;
  const DeviceRegistry* devices;
  int64_t max_tensor_bytes = 0;  // 0 = no limit
  TenantPtr tenant;              // null: the default tenant
};

// INVALID_ARGUMENT for a bad shape, a literal count that does not match, eye
// on a non-2-D shape, rand on an integer dtype; RESOURCE_EXHAUSTED when the
// pool is full; FAILED_PRECONDITION for a device this server lacks.
absl::StatusOr<TensorPtr> CreateTensor(const ConversionContext& ctx,
                                       CreateSpec spec);

struct ToSpec {
  std::string device;          // empty = keep
  std::optional<DType> dtype;  // empty = keep
  bool copy = false;
  std::string name;
  int64_t ttl_seconds = 0;
};
// Returns `src` itself when nothing changes and copy is false (Tensor.to()
// returns self). The result is contiguous.
absl::StatusOr<TensorPtr> ToTensor(const ConversionContext& ctx,
                                   const TensorPtr& src, const ToSpec& spec);

// A new handle on the same storage and layout, requires_grad false.
absl::StatusOr<TensorPtr> DetachTensor(const ConversionContext& ctx,
                                       const TensorPtr& src, std::string name,
                                       int64_t ttl_seconds);

// INVALID_ARGUMENT when nbytes exceeds max_tensor_bytes (0 = no limit).
absl::Status CheckTensorSize(int64_t nbytes, int64_t max_tensor_bytes);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_CONVERSIONS_H_
