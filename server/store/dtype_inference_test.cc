// Tests the dtype a Create infers when none is asked for
// (dtype_inference.h): torch.tensor's rules for literals, float32 for the
// factories.
#include "server/store/dtype_inference.h"

#include "gtest/gtest.h"

namespace tensorcast {
namespace {

TEST(DTypeInferenceTest, LiteralsFollowTorchTensor) {
  EXPECT_EQ(InferLiteralDType(DType::kBool), DType::kBool);
  EXPECT_EQ(InferLiteralDType(DType::kInt64), DType::kInt64);
  // Unsigned values are integers too: torch.tensor has no uint64 default.
  EXPECT_EQ(InferLiteralDType(DType::kUInt64), DType::kInt64);
  // Floats become the default dtype, not float64.
  EXPECT_EQ(InferLiteralDType(DType::kFloat64), DType::kFloat32);
  EXPECT_EQ(InferLiteralDType(DType::kComplex128), DType::kComplex64);
}

TEST(DTypeInferenceTest, CreateUsesTheLiteralsDTypeOnlyForLiterals) {
  CreateSpec literal;
  literal.init = CreateSpec::Init::kLiteral;
  literal.literal_dtype = DType::kBool;
  EXPECT_EQ(InferCreateDType(literal), DType::kBool);
  literal.literal_dtype = DType::kComplex128;
  EXPECT_EQ(InferCreateDType(literal), DType::kComplex64);

  // The factories make float32 whatever literal_dtype holds.
  for (CreateSpec::Init init :
       {CreateSpec::Init::kZeros, CreateSpec::Init::kOnes,
        CreateSpec::Init::kFull, CreateSpec::Init::kArange,
        CreateSpec::Init::kEye, CreateSpec::Init::kRand}) {
    CreateSpec spec;
    spec.init = init;
    spec.literal_dtype = DType::kInt64;
    EXPECT_EQ(InferCreateDType(spec), DType::kFloat32)
        << static_cast<int>(init);
  }
}

}  // namespace
}  // namespace tensorcast
