// The dtype table against NumPy (and ml_dtypes for bfloat16), and ParseDType.
#include "common/dtype.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;

// For each name: "name itemsize str kind" as NumPy sees that dtype; then
// "ALIAS code name" for NumPy's spellings that mean the same in PyTorch.
constexpr char kScript[] = R"py(
import numpy as np
import ml_dtypes
names = ['bool', 'uint8', 'int8', 'int16', 'int32', 'int64', 'uint16',
         'uint32', 'uint64', 'float16', 'bfloat16', 'float32', 'float64',
         'complex64', 'complex128']
for n in names:
    d = np.dtype(ml_dtypes.bfloat16) if n == 'bfloat16' else np.dtype(n)
    print('DTYPE', n, d.itemsize, d.str, d.kind)
for code in ['f2', 'f4', 'f8', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8',
             'c8', 'c16', 'b1', 'half', 'double', 'short', 'cdouble']:
    print('ALIAS', code, np.dtype(code).name)
)py";

char NumPyKind(DTypeKind kind) {
  switch (kind) {
    case DTypeKind::kBool:
      return 'b';
    case DTypeKind::kUnsigned:
      return 'u';
    case DTypeKind::kSigned:
      return 'i';
    case DTypeKind::kFloat:
      return 'f';
    case DTypeKind::kComplex:
      return 'c';
  }
  return '?';
}

TEST(DTypeTest, TableMatchesNumPy) {
  testing::CommandResult numpy = testing::RunPython(kScript);
  ASSERT_EQ(numpy.exit_code, 0) << "cannot ask NumPy: " << numpy.err;
  int dtypes = 0, aliases = 0;
  for (absl::string_view line : absl::StrSplit(numpy.out, '\n')) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() == 5 && f[0] == "DTYPE") {
      SCOPED_TRACE(f[1]);
      absl::StatusOr<DType> dtype = ParseDType(f[1]);
      ASSERT_TRUE(dtype.ok()) << dtype.status();
      const DTypeInfo& info = GetDTypeInfo(*dtype);
      EXPECT_EQ(info.name, f[1]);
      EXPECT_EQ(std::to_string(info.itemsize), f[2]);
      if (*dtype == DType::kBFloat16) {
        // ml_dtypes' bfloat16 is a void type to NumPy: .npy cannot name it.
        EXPECT_EQ(f[3], "<V2");
        EXPECT_EQ(info.npy_descr, "");
        EXPECT_EQ(info.kind, DTypeKind::kFloat);
      } else {
        EXPECT_EQ(info.npy_descr, f[3]);
        EXPECT_EQ(std::string(1, NumPyKind(info.kind)), f[4]);
      }
      ++dtypes;
    } else if (f.size() == 3 && f[0] == "ALIAS") {
      SCOPED_TRACE(f[1]);
      absl::StatusOr<DType> dtype = ParseDType(f[1]);
      ASSERT_TRUE(dtype.ok()) << dtype.status();
      EXPECT_EQ(DTypeName(*dtype), f[2]);
      ++aliases;
    }
  }
  EXPECT_EQ(dtypes, kNumDTypes);
  EXPECT_EQ(aliases, 18);
}

TEST(DTypeTest, TableIsIndexedByEnumValue) {
  const auto& all = AllDTypes();
  ASSERT_EQ(all.size(), static_cast<size_t>(kNumDTypes));
  for (int i = 0; i < kNumDTypes; ++i) {
    EXPECT_EQ(static_cast<int>(all[i].dtype), i);
    EXPECT_EQ(&GetDTypeInfo(static_cast<DType>(i)), &all[i]);
  }
  EXPECT_EQ(DTypeName(DType::kComplex128), "complex128");
  EXPECT_EQ(ItemSize(DType::kComplex128), 16u);
  EXPECT_EQ(Kind(DType::kUInt16), DTypeKind::kUnsigned);
}

TEST(DTypeTest, OnlyFloatingAndComplexMayRequireGrad) {
  for (const DTypeInfo& info : AllDTypes()) {
    bool expected =
        info.kind == DTypeKind::kFloat || info.kind == DTypeKind::kComplex;
    EXPECT_EQ(IsFloatingOrComplex(info.dtype), expected) << info.name;
  }
  EXPECT_TRUE(IsFloatingOrComplex(DType::kBFloat16));
  EXPECT_FALSE(IsFloatingOrComplex(DType::kBool));
}

TEST(DTypeTest, ParsesCanonicalNamesAndAliases) {
  const std::map<std::string, DType> cases = {
      {"float32", DType::kFloat32},
      {"float", DType::kFloat32},
      {"double", DType::kFloat64},
      {"half", DType::kFloat16},
      {"int", DType::kInt32},
      {"long", DType::kInt64},
      {"short", DType::kInt16},
      {"bool_", DType::kBool},
      {"bool", DType::kBool},
      {"cfloat", DType::kComplex64},
      {"cdouble", DType::kComplex128},
      {"bf16", DType::kBFloat16},
      {"torch.float32", DType::kFloat32},
      {"np.float32", DType::kFloat32},
      {"numpy.int8", DType::kInt8},
      {"tc.uint64", DType::kUInt64},
      {"torch.bfloat16", DType::kBFloat16},
      {"  Float16 ", DType::kFloat16},
      {"INT64", DType::kInt64},
      {"torch.long", DType::kInt64},
  };
  for (const auto& [name, dtype] : cases) {
    absl::StatusOr<DType> parsed = ParseDType(name);
    ASSERT_TRUE(parsed.ok()) << name << ": " << parsed.status();
    EXPECT_EQ(*parsed, dtype) << name;
  }
  for (const DTypeInfo& info : AllDTypes()) {
    absl::StatusOr<DType> parsed = ParseDType(info.name);
    ASSERT_TRUE(parsed.ok()) << info.name;
    EXPECT_EQ(*parsed, info.dtype);
  }
}

TEST(DTypeTest, UnknownNamesAreInvalidArgumentListingTheChoices) {
  for (absl::string_view bad : {"", "float128", "torch.", "string", "f16",
                                "<f4", "torch.float32x", "object"}) {
    absl::StatusOr<DType> parsed = ParseDType(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr("unknown dtype"));
    EXPECT_THAT(parsed.status().message(),
                HasSubstr("bool, uint8, int8, int16, int32, int64, uint16, "
                          "uint32, uint64, float16, bfloat16, float32, "
                          "float64, complex64, complex128"));
  }
}

}  // namespace
}  // namespace tensorcast
