#include "server/store/dtype_inference.h"

namespace tensorcast {

DType InferLiteralDType(DType packed) {
  switch (packed) {
    case DType::kBool:
      return DType::kBool;
    case DType::kInt64:
    case DType::kUInt64:
      return DType::kInt64;
    case DType::kComplex128:
      return DType::kComplex64;
    default:
      return DType::kFloat32;
  }
}

DType InferCreateDType(const CreateSpec& spec) {
  if (spec.init == CreateSpec::Init::kLiteral) {
    return InferLiteralDType(spec.literal_dtype);
  }
  return DType::kFloat32;
}

}  // namespace tensorcast
