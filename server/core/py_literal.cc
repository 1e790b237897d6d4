#include "server/core/py_literal.h"

#include <algorithm>
#include <cctype>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/echo.h"

namespace tensorcast {
namespace {

// A recursive-descent parser; one per text.
class LiteralParser {
 public:
  LiteralParser(absl::string_view text, const PyLiteralLimits& limits,
                absl::string_view subject)
      : text_(text), limits_(limits), subject_(subject) {}

  absl::StatusOr<PyValue> ParseAll() {
    SkipSpace();
    absl::StatusOr<PyValue> value = ParseValue(0);
    if (!value.ok()) return value;
    SkipSpace();
    if (pos_ != text_.size()) {
      absl::string_view after = "value";
      if (value->kind == PyValue::Kind::kDict) after = "dict";
      if (value->kind == PyValue::Kind::kTuple) after = "tuple";
      if (value->kind == PyValue::Kind::kList) after = "list";
      return Error(absl::StrCat("unexpected text after the ", after));
    }
    return value;
  }

  PyLiteralFailure failure() const { return failure_; }

 private:
  absl::Status Error(absl::string_view what,
                     PyLiteralFailure failure = PyLiteralFailure::kSyntax) {
    failure_ = failure;
    // Show where it went wrong: up to 40 bytes either side of the position.
    size_t from = pos_ > 40 ? pos_ - 40 : 0;
    absl::string_view before = text_.substr(from, pos_ - from);
    absl::string_view after = text_.substr(std::min(pos_, text_.size()), 40);
    return absl::InvalidArgumentError(absl::StrCat(
        what, " at byte ", pos_, " of ", subject_, ": \"",
        EchoInput(before, 160), ">>>", EchoInput(after, 160), "\""));
  }

  bool AtEnd() const { return pos_ >= text_.size(); }
  char Peek() const { return AtEnd() ? '\0' : text_[pos_]; }

  void SkipSpace() {
    while (!AtEnd()) {
      char c = text_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\f' &&
          c != '\v') {
        break;
      }
      ++pos_;
    }
  }

  absl::StatusOr<PyValue> ParseValue(int depth) {
    if (depth > limits_.max_depth) {
      return Error("nesting too deep", PyLiteralFailure::kTooDeep);
    }
    if (++values_ > limits_.max_values) {
      return Error(absl::StrCat("more than ", limits_.max_values, " values"),
                   PyLiteralFailure::kTooManyValues);
    }
    if (AtEnd()) return Error("unexpected end of " + std::string(subject_));
    char c = Peek();
    if (c == '{') return ParseDict(depth);
    if (c == '(') return ParseParenthesized(depth);
    if (c == '[') {
      ++pos_;
      PyValue list;
      list.kind = PyValue::Kind::kList;
      absl::Status s = ParseItems(']', depth, &list.items);
      if (!s.ok()) return s;
      return list;
    }
    if (c == '\'' || c == '"') return ParseString();
    if (c == '-' || c == '+' || (c >= '0' && c <= '9')) return ParseInt();
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      return ParseName();
    }
    return Error(absl::StrCat("unexpected character '",
                              EchoInput(absl::string_view(&c, 1)), "'"));
  }

  // Items up to `close`, comma-separated, a trailing comma allowed; `pos_`
  // is just after the opening bracket. More than max_items items is refused
  // before the next one is parsed.
  absl::Status ParseItems(char close, int depth, std::vector<PyValue>* items) {
    while (true) {
      SkipSpace();
      if (Peek() == close) {
        ++pos_;
        return absl::OkStatus();
      }
      if (items->size() >= limits_.max_items) {
        const bool tuple = close == ')';
        return Error(
            absl::StrCat(tuple ? "a tuple" : "a list", " of more than ",
                         limits_.max_items, " items"),
            tuple ? PyLiteralFailure::kTupleTooLong
                  : PyLiteralFailure::kListTooLong);
      }
      absl::StatusOr<PyValue> item = ParseValue(depth + 1);
      if (!item.ok()) return item.status();
      items->push_back(*std::move(item));
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
      } else if (Peek() != close) {
        return Error(
            absl::StrCat("expected ',' or '", std::string(1, close), "'"));
      }
    }
  }

  // "()" is an empty tuple, "(x)" is x, "(x,)" and "(x, y)" are tuples.
  absl::StatusOr<PyValue> ParseParenthesized(int depth) {
    ++pos_;  // '('
    SkipSpace();
    PyValue tuple;
    tuple.kind = PyValue::Kind::kTuple;
    if (Peek() == ')') {
      ++pos_;
      return tuple;
    }
    absl::StatusOr<PyValue> first = ParseValue(depth + 1);
    if (!first.ok()) return first;
    SkipSpace();
    if (Peek() == ')') {
      ++pos_;
      return first;
    }
    if (Peek() != ',') return Error("expected ',' or ')'");
    ++pos_;
    tuple.items.push_back(*std::move(first));
    absl::Status s = ParseItems(')', depth, &tuple.items);
    if (!s.ok()) return s;
    return tuple;
  }

  absl::StatusOr<PyValue> ParseDict(int depth) {
    ++pos_;  // '{'
    PyValue dict;
    dict.kind = PyValue::Kind::kDict;
    while (true) {
      SkipSpace();
      if (Peek() == '}') {
        ++pos_;
        return dict;
      }
      if (dict.items.size() >= 2 * limits_.max_dict_keys) {
        return Error(absl::StrCat("a dict of more than ", limits_.max_dict_keys,
                                  " keys"),
                     PyLiteralFailure::kDictTooLong);
      }
      absl::StatusOr<PyValue> key = ParseValue(depth + 1);
      if (!key.ok()) return key;
      SkipSpace();
      if (Peek() != ':') return Error("expected ':' after a dict key");
      ++pos_;
      SkipSpace();
      absl::StatusOr<PyValue> value = ParseValue(depth + 1);
      if (!value.ok()) return value;
      dict.items.push_back(*std::move(key));
      dict.items.push_back(*std::move(value));
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
      } else if (Peek() != '}') {
        return Error("expected ',' or '}' in the dict");
      }
    }
  }

  absl::StatusOr<PyValue> ParseString() {
    char quote = text_[pos_++];
    PyValue s;
    s.kind = PyValue::Kind::kString;
    while (true) {
      if (AtEnd()) return Error("unterminated string");
      char c = text_[pos_++];
      if (c == quote) return s;
      if (c == '\n') {
        --pos_;
        return Error("unterminated string");
      }
      if (c == '\\') {
        if (AtEnd()) return Error("unterminated string");
        char e = text_[pos_++];
        switch (e) {
          case '\\':
          case '\'':
          case '"':
            s.text.push_back(e);
            break;
          case 'n':
            s.text.push_back('\n');
            break;
          case 't':
            s.text.push_back('\t');
            break;
          default:  // Python keeps unknown escapes as they are.
            s.text.push_back('\\');
            s.text.push_back(e);
        }
        continue;
      }
      s.text.push_back(c);
    }
  }

  absl::StatusOr<PyValue> ParseInt() {
    PyValue v;
    v.kind = PyValue::Kind::kInt;
    bool negative = false;
    if (Peek() == '-' || Peek() == '+') {
      negative = text_[pos_++] == '-';
      SkipSpace();
    }
    if (!(Peek() >= '0' && Peek() <= '9')) return Error("expected a number");
    // Accumulate negatively so that INT64_MIN parses too.
    int64_t value = 0;
    bool last_was_digit = false;
    while (!AtEnd()) {
      char c = text_[pos_];
      if (c >= '0' && c <= '9') {
        if (!v.int_overflow &&
            (__builtin_mul_overflow(value, 10, &value) ||
             __builtin_sub_overflow(value, c - '0', &value))) {
          v.int_overflow = true;
        }
        v.text.push_back(c);
        last_was_digit = true;
      } else if (c == '_' && last_was_digit) {  // 1_000, as Python allows
        last_was_digit = false;
      } else {
        break;
      }
      ++pos_;
    }
    if (!last_was_digit) return Error("malformed number");
    if (Peek() == 'L' || Peek() == 'l') ++pos_;  // Python 2 long suffix
    char next = Peek();
    if (next == '.' || std::isalnum(static_cast<unsigned char>(next)) ||
        next == '_') {
      return Error("expected an integer");
    }
    if (negative) {
      v.text = absl::StrCat("-", v.text);
      v.integer = value;
    } else if (!v.int_overflow && __builtin_sub_overflow(0, value, &value)) {
      v.int_overflow = true;
    } else {
      v.integer = value;
    }
    return v;
  }

  absl::StatusOr<PyValue> ParseName() {
    size_t start = pos_;
    while (!AtEnd() && (std::isalnum(static_cast<unsigned char>(Peek())) ||
                        Peek() == '_')) {
      ++pos_;
    }
    absl::string_view name = text_.substr(start, pos_ - start);
    PyValue v;
    if (name == "True" || name == "False") {
      v.kind = PyValue::Kind::kBool;
      v.boolean = name == "True";
      return v;
    }
    if (name == "None") return v;
    pos_ = start;
    return Error(absl::StrCat("unexpected name '", EchoInput(name), "'"));
  }

  const absl::string_view text_;
  const PyLiteralLimits limits_;
  const absl::string_view subject_;
  size_t pos_ = 0;
  int values_ = 0;  // parsed so far
  PyLiteralFailure failure_ = PyLiteralFailure::kSyntax;
};

}  // namespace

absl::StatusOr<PyValue> ParsePyLiteral(absl::string_view text,
                                       const PyLiteralLimits& limits,
                                       absl::string_view subject,
                                       PyLiteralFailure* failure) {
  LiteralParser parser(text, limits, subject);
  absl::StatusOr<PyValue> value = parser.ParseAll();
  if (!value.ok() && failure != nullptr) *failure = parser.failure();
  return value;
}

std::string DescribePyValue(const PyValue& v) {
  switch (v.kind) {
    case PyValue::Kind::kString:
      return absl::StrCat("'", EchoInput(v.text), "'");
    case PyValue::Kind::kInt:
      return EchoInput(v.text);
    case PyValue::Kind::kBool:
      return v.boolean ? "True" : "False";
    case PyValue::Kind::kNone:
      return "None";
    case PyValue::Kind::kTuple:
      return "a tuple";
    case PyValue::Kind::kList:
      return "a list";
    case PyValue::Kind::kDict:
      return "a dict";
  }
  return "?";
}

}  // namespace tensorcast
