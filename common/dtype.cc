#include "common/dtype.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/echo.h"

namespace tensorcast {
namespace {

constexpr std::array<DTypeInfo, kNumDTypes> kDTypes = {{
    {DType::kBool, "bool", 1, "|b1", DTypeKind::kBool},
    {DType::kUInt8, "uint8", 1, "|u1", DTypeKind::kUnsigned},
    {DType::kInt8, "int8", 1, "|i1", DTypeKind::kSigned},
    {DType::kInt16, "int16", 2, "<i2", DTypeKind::kSigned},
    {DType::kInt32, "int32", 4, "<i4", DTypeKind::kSigned},
    {DType::kInt64, "int64", 8, "<i8", DTypeKind::kSigned},
    {DType::kUInt16, "uint16", 2, "<u2", DTypeKind::kUnsigned},
    {DType::kUInt32, "uint32", 4, "<u4", DTypeKind::kUnsigned},
    {DType::kUInt64, "uint64", 8, "<u8", DTypeKind::kUnsigned},
    {DType::kFloat16, "float16", 2, "<f2", DTypeKind::kFloat},
    // NumPy has no bfloat16; ml_dtypes registers one, but .npy cannot name it.
    {DType::kBFloat16, "bfloat16", 2, "", DTypeKind::kFloat},
    {DType::kFloat32, "float32", 4, "<f4", DTypeKind::kFloat},
    {DType::kFloat64, "float64", 8, "<f8", DTypeKind::kFloat},
    {DType::kComplex64, "complex64", 8, "<c8", DTypeKind::kComplex},
    {DType::kComplex128, "complex128", 16, "<c16", DTypeKind::kComplex},
}};

struct Alias {
  absl::string_view name;
  DType dtype;
};
// PyTorch's and NumPy's other spellings.
constexpr Alias kAliases[] = {
    {"bool_", DType::kBool},       {"half", DType::kFloat16},
    {"float", DType::kFloat32},    {"double", DType::kFloat64},
    {"cfloat", DType::kComplex64}, {"cdouble", DType::kComplex128},
    {"short", DType::kInt16},      {"int", DType::kInt32},
    {"long", DType::kInt64},       {"f2", DType::kFloat16},
    {"f4", DType::kFloat32},       {"f8", DType::kFloat64},
    {"i1", DType::kInt8},          {"i2", DType::kInt16},
    {"i4", DType::kInt32},         {"i8", DType::kInt64},
    {"u1", DType::kUInt8},         {"u2", DType::kUInt16},
    {"u4", DType::kUInt32},        {"u8", DType::kUInt64},
    {"c8", DType::kComplex64},     {"c16", DType::kComplex128},
    {"b1", DType::kBool},          {"bf16", DType::kBFloat16},
};

}  // namespace

const std::array<DTypeInfo, kNumDTypes>& AllDTypes() { return kDTypes; }

const DTypeInfo& GetDTypeInfo(DType dtype) {
  return kDTypes[static_cast<int>(dtype)];
}

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(name));
  absl::string_view n = lower;
  for (absl::string_view prefix :
       {absl::string_view("torch."), absl::string_view("numpy."),
        absl::string_view("np."), absl::string_view("tc.")}) {
    if (absl::ConsumePrefix(&n, prefix)) break;
  }
  for (const DTypeInfo& info : kDTypes) {
    if (info.name == n) return info.dtype;
  }
  for (const Alias& alias : kAliases) {
    if (alias.name == n) return alias.dtype;
  }
  std::string known;
  for (const DTypeInfo& info : kDTypes) {
    absl::StrAppend(&known, known.empty() ? "" : ", ", info.name);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown dtype '", EchoInput(name), "'; expected one of: ", known));
}

}  // namespace tensorcast
