// Tests the Python-literal parser on its own: the grammar it accepts, the
// errors and where they point, and each limit at its boundary. (npy_test.cc
// tests it again through .npy headers.)
#include "server/core/py_literal.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;
using Kind = PyValue::Kind;

absl::StatusOr<PyValue> Parse(absl::string_view text,
                              const PyLiteralLimits& limits = {}) {
  return ParsePyLiteral(text, limits);
}

// The failure that refused `text`, after checking that it was refused as
// INVALID_ARGUMENT with a message containing `message`.
PyLiteralFailure Refused(absl::string_view text, absl::string_view message,
                         const PyLiteralLimits& limits = {}) {
  PyLiteralFailure failure = PyLiteralFailure::kSyntax;
  absl::StatusOr<PyValue> v =
      ParsePyLiteral(text, limits, "the text", &failure);
  EXPECT_FALSE(v.ok()) << "parsed: " << absl::CHexEscape(text);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr(message));
  return failure;
}

TEST(PyLiteralTest, Scalars) {
  absl::StatusOr<PyValue> v = Parse("'a\\'b\\\"c\\\\d\\ne\\tf\\qg'");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->kind, Kind::kString);
  EXPECT_EQ(v->text, "a'b\"c\\d\ne\tf\\qg");  // unknown escapes kept

  v = Parse(R"("it's")");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->text, "it's");

  v = Parse("  True\n");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->kind, Kind::kBool);
  EXPECT_TRUE(v->boolean);
  v = Parse("False");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->kind, Kind::kBool);
  EXPECT_FALSE(v->boolean);
  v = Parse("None");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->kind, Kind::kNone);
}

TEST(PyLiteralTest, Integers) {
  struct Case {
    const char* text;
    int64_t value;
    const char* digits;
  };
  const Case cases[] = {
      {"0", 0, "0"},
      {"42", 42, "42"},
      {"+7", 7, "7"},
      {"- 3", -3, "-3"},
      {"1_000_000", 1000000, "1000000"},
      {"12L", 12, "12"},
      {"007", 7, "007"},
      {"9223372036854775807", std::numeric_limits<int64_t>::max(),
       "9223372036854775807"},
      {"-9223372036854775808", std::numeric_limits<int64_t>::min(),
       "-9223372036854775808"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<PyValue> v = Parse(c.text);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(v->kind, Kind::kInt);
    EXPECT_FALSE(v->int_overflow);
    EXPECT_EQ(v->integer, c.value);
    EXPECT_EQ(v->text, c.digits);
  }
  for (const char* big : {"9223372036854775808", "-9223372036854775809",
                          "123456789012345678901234567890"}) {
    SCOPED_TRACE(big);
    absl::StatusOr<PyValue> v = Parse(big);
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_TRUE(v->int_overflow);
    EXPECT_EQ(v->text, big);
  }
}

TEST(PyLiteralTest, Containers) {
  absl::StatusOr<PyValue> v =
      Parse("{'a': (1, 2,), \"b\": [None, ()], 3: {}, (4,): (5)}");
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_EQ(v->kind, Kind::kDict);
  ASSERT_EQ(v->items.size(), 8u);  // keys and values interleaved, in order
  EXPECT_EQ(v->items[0].text, "a");
  const PyValue& tuple = v->items[1];
  ASSERT_EQ(tuple.kind, Kind::kTuple);
  ASSERT_EQ(tuple.items.size(), 2u);
  EXPECT_EQ(tuple.items[1].integer, 2);
  const PyValue& list = v->items[3];
  ASSERT_EQ(list.kind, Kind::kList);
  ASSERT_EQ(list.items.size(), 2u);
  EXPECT_EQ(list.items[0].kind, Kind::kNone);
  EXPECT_EQ(list.items[1].kind, Kind::kTuple);
  EXPECT_TRUE(list.items[1].items.empty());
  EXPECT_EQ(v->items[4].integer, 3);  // any value may be a key
  EXPECT_EQ(v->items[5].kind, Kind::kDict);
  EXPECT_EQ(v->items[6].kind, Kind::kTuple);
  // "(5)" is 5, not a tuple.
  EXPECT_EQ(v->items[7].kind, Kind::kInt);
  EXPECT_EQ(v->items[7].integer, 5);

  // Duplicate keys are kept: the caller decides.
  v = Parse("{'k': 1, 'k': 2}");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->items.size(), 4u);
}

TEST(PyLiteralTest, SyntaxErrorsSayWhatAndWhere) {
  struct Case {
    const char* text;
    const char* message;
  };
  const Case cases[] = {
      {"", "unexpected end of the text"},
      {"(1, 2", "expected ',' or ')'"},
      {"[1 2]", "expected ',' or ']'"},
      {"(1 2)", "expected ',' or ')'"},
      {"{'a' 1}", "expected ':' after a dict key"},
      {"{'a': 1 'b': 2}", "expected ',' or '}' in the dict"},
      {"'abc", "unterminated string"},
      {"'ab\ncd'", "unterminated string"},
      {"'ab\\", "unterminated string"},
      {"1.5", "expected an integer"},
      {"1e3", "expected an integer"},
      {"0x10", "expected an integer"},
      {"1__0", "malformed number"},
      {"1_", "malformed number"},
      {"-", "expected a number"},
      {"true", "unexpected name 'true'"},
      {"<", "unexpected character '<'"},
      {"{} x", "unexpected text after the dict"},
      {"(1,) x", "unexpected text after the tuple"},
      {"[] x", "unexpected text after the list"},
      {"1 2", "unexpected text after the value"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    EXPECT_EQ(Refused(c.text, c.message), PyLiteralFailure::kSyntax);
  }
  // A NUL byte is a character like any other.
  EXPECT_EQ(Refused(absl::string_view("\0", 1), "unexpected character '\\x00'"),
            PyLiteralFailure::kSyntax);

  // The message points at the byte, shows the text either side of it, and
  // names the text as the caller says.
  absl::StatusOr<PyValue> v =
      ParsePyLiteral("{'a': 1 'b': 2}", {}, "the config");
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), HasSubstr("at byte 8 of the config"));
  EXPECT_THAT(v.status().message(), HasSubstr("1 >>>\\'b\\'"));
}

TEST(PyLiteralTest, ErrorsQuoteAtMostFortyBytesEitherSide) {
  const std::string text = absl::StrCat("[", std::string(100, '1'), " x",
                                        std::string(100, '2'), "]");
  absl::StatusOr<PyValue> v = Parse(text);
  ASSERT_FALSE(v.ok());
  const std::string expected =
      absl::StrCat("at byte 102 of the text: \"", std::string(39, '1'), " >>>x",
                   std::string(39, '2'), "\"");
  EXPECT_THAT(v.status().message(), HasSubstr(expected));
}

TEST(PyLiteralTest, DepthLimitAtItsBoundary) {
  PyLiteralLimits limits;
  limits.max_depth = 3;
  // The top value is at depth 0: three containers around a value are fine.
  EXPECT_TRUE(Parse("[[[1]]]", limits).ok());
  EXPECT_EQ(Refused("[[[[1]]]]", "nesting too deep", limits),
            PyLiteralFailure::kTooDeep);
  // The default keeps hostile nesting off the stack.
  const std::string deep =
      std::string(100000, '(') + "1" + std::string(100000, ')');
  EXPECT_EQ(Refused(deep, "nesting too deep"), PyLiteralFailure::kTooDeep);
}

TEST(PyLiteralTest, ValueLimitCountsEveryValue) {
  PyLiteralLimits limits;
  limits.max_values = 5;
  // A dict, two keys, two values: five.
  EXPECT_TRUE(Parse("{'a': 1, 'b': 2}", limits).ok());
  EXPECT_EQ(Refused("{'a': 1, 'b': [2]}", "more than 5 values", limits),
            PyLiteralFailure::kTooManyValues);
}

TEST(PyLiteralTest, ItemAndKeyLimitsStopBeforeTheNextItem) {
  PyLiteralLimits limits;
  limits.max_items = 3;
  limits.max_dict_keys = 2;
  EXPECT_TRUE(Parse("(1, 2, 3)", limits).ok());
  EXPECT_TRUE(Parse("[1, 2, 3,]", limits).ok());
  EXPECT_TRUE(Parse("{1: 1, 2: 2}", limits).ok());
  // What follows the item too many is not even read.
  EXPECT_EQ(Refused("(1, 2, 3, @@@", "a tuple of more than 3 items", limits),
            PyLiteralFailure::kTupleTooLong);
  EXPECT_EQ(Refused("[1, 2, 3, @@@", "a list of more than 3 items", limits),
            PyLiteralFailure::kListTooLong);
  EXPECT_EQ(Refused("{1: 1, 2: 2, @@@", "a dict of more than 2 keys", limits),
            PyLiteralFailure::kDictTooLong);
  // A tuple of a few hundred thousand items stops at its limit.
  std::vector<std::string> many(200000, "1");
  EXPECT_EQ(Refused(absl::StrCat("(", absl::StrJoin(many, ","), ")"),
                    "a tuple of more than 64 items"),
            PyLiteralFailure::kTupleTooLong);
}

TEST(PyLiteralTest, DescribeNamesEachKind) {
  PyValue v;
  EXPECT_EQ(DescribePyValue(v), "None");
  v.kind = Kind::kBool;
  v.boolean = true;
  EXPECT_EQ(DescribePyValue(v), "True");
  v.kind = Kind::kInt;
  v.text = "-12";
  EXPECT_EQ(DescribePyValue(v), "-12");
  v.kind = Kind::kString;
  v.text = "it's\n";
  EXPECT_EQ(DescribePyValue(v), "'it\\'s\\n'");
  v.kind = Kind::kTuple;
  EXPECT_EQ(DescribePyValue(v), "a tuple");
  v.kind = Kind::kList;
  EXPECT_EQ(DescribePyValue(v), "a list");
  v.kind = Kind::kDict;
  EXPECT_EQ(DescribePyValue(v), "a dict");
}

}  // namespace
}  // namespace tensorcast
