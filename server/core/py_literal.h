// A bounded parser for Python literals: the subset of ast.literal_eval that
// a .npy header's dict uses (np.save and older writers), usable for any
// short, untrusted literal text.
//
// Grammar (whitespace -- space, \t \n \r \f \v -- may surround any token):
//   value  := dict | tuple | list | string | int | True | False | None
//   dict   := '{' [value ':' value {',' value ':' value} [',']] '}'
//   list   := '[' [value {',' value} [',']] ']'
//   tuple  := '(' ')' | '(' value ',' [value {',' value} [',']] ')'
//             ('(' value ')' is that value, as in Python)
//   string := '...' or "..." on one line: any byte but the quote and '\n';
//             escapes \\ \' \" \n \t, any other backslash kept as written
//             (no \x, \u or octal escapes, no prefixes, no triple quotes)
//   int    := ['+' | '-'] digits, with single '_' between digits and an
//             optional Python 2 'L'/'l' suffix; it must not run into '.',
//             a letter, a digit or '_' (so floats are refused; leading
//             zeros are accepted)
// Dict keys may be any value: no hashability or duplicate checks (keys are
// kept in order; the caller decides). Nothing else is Python here: no floats,
// sets, bytes, names other than True/False/None, comments or expressions.
//
// Limits (PyLiteralLimits) hold while parsing: the parser stops at the first
// one exceeded, before it reads what follows, so hostile input never builds
// more than a small tree whatever its length. Recursion is one level per
// container, so max_depth also bounds the stack.
//
// Allocation: only the returned tree -- at most limits.max_values nodes,
// and string and digit text no longer than the input in all. Pure function,
// thread-safe. Malformed input never crashes: it yields INVALID_ARGUMENT.
#ifndef TENSORCAST_SERVER_CORE_PY_LITERAL_H_
#define TENSORCAST_SERVER_CORE_PY_LITERAL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tensorcast {

// A parsed literal.
struct PyValue {
  enum class Kind { kString, kInt, kBool, kNone, kTuple, kList, kDict };
  Kind kind = Kind::kNone;
  // kString: the decoded string. kInt: the literal's digits, with '-' when
  // negative (no '+', no '_', no suffix).
  std::string text;
  int64_t integer = 0;        // kInt, when it fits
  bool int_overflow = false;  // kInt: the value does not fit int64
  bool boolean = false;       // kBool
  // kTuple, kList: the items; kDict: keys and values, interleaved.
  std::vector<PyValue> items;
};

struct PyLiteralLimits {
  // Containers within containers: the top value is at depth 0, a value
  // deeper than this is refused.
  int max_depth = 16;
  // Values in all, containers and dict keys included.
  int max_values = 256;
  // Items of one tuple or list, refused at the (max_items + 1)th.
  size_t max_items = 64;
  // Keys of one dict, refused at the (max_dict_keys + 1)th.
  size_t max_dict_keys = 16;
};

// Which rule refused the text.
enum class PyLiteralFailure {
  kSyntax,         // not a literal of the grammar above
  kTooDeep,        // max_depth
  kTooManyValues,  // max_values
  kTupleTooLong,   // max_items, in a tuple
  kListTooLong,    // max_items, in a list
  kDictTooLong,    // max_dict_keys
};

// Parses `text`, which must hold one value and nothing but whitespace
// around it. On failure: INVALID_ARGUMENT
//   "<what> at byte <offset> of <subject>: \"<before>>>><after>\""
// quoting up to 40 bytes either side of where it stopped through EchoInput;
// `*failure`, when given, says which rule refused it.
absl::StatusOr<PyValue> ParsePyLiteral(absl::string_view text,
                                       const PyLiteralLimits& limits,
                                       absl::string_view subject = "the text",
                                       PyLiteralFailure* failure = nullptr);

// `v` as an error message names it: a string quoted (through EchoInput), an
// int's digits, True/False/None, or "a tuple", "a list", "a dict".
std::string DescribePyValue(const PyValue& v);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_CORE_PY_LITERAL_H_
