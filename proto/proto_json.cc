#include "proto/proto_json.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"

namespace tensorcast {

namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

void Indent(std::string* out, int depth) {
  out->append(static_cast<size_t>(2 * depth), ' ');
}

void AppendString(std::string* out, absl::string_view s) {
  *out += '"';
  for (char c : s) {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          absl::StrAppendFormat(out, "\\u%04x", static_cast<unsigned char>(c));
        } else {
          *out += c;  // UTF-8 as it is (protobuf strings are valid UTF-8)
        }
    }
  }
  *out += '"';
}

// The shortest of %.{digits}g and %.{max_digits}g that reads back as `v`;
// protobuf's names for the values JSON has no number for.
void AppendFloating(std::string* out, double v, int digits, int max_digits,
                    bool is_float) {
  if (std::isnan(v)) {
    *out += "\"NaN\"";
    return;
  }
  if (std::isinf(v)) {
    *out += v > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    return;
  }
  std::string text = absl::StrFormat("%.*g", digits, v);
  const double back = std::strtod(text.c_str(), nullptr);
  if (is_float ? static_cast<float>(back) != static_cast<float>(v)
               : back != v) {
    text = absl::StrFormat("%.*g", max_digits, v);
  }
  *out += text;
}

void AppendMessage(std::string* out, const Message& message, int depth);

// Element `index` of a repeated field, or the singular field (index < 0).
void AppendValue(std::string* out, const Message& m, const FieldDescriptor* f,
                 int index, int depth) {
  const Reflection* r = m.GetReflection();
  const bool rep = index >= 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      absl::StrAppend(
          out, rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      absl::StrAppend(
          out, rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      absl::StrAppend(
          out, rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      absl::StrAppend(
          out, rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f));
      break;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      AppendFloating(
          out, rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f), 15,
          17, false);
      break;
    case FieldDescriptor::CPPTYPE_FLOAT:
      AppendFloating(out,
                     rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f),
                     6, 9, true);
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      *out += (rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f))
                  ? "true"
                  : "false";
      break;
    case FieldDescriptor::CPPTYPE_ENUM: {
      const int number =
          rep ? r->GetRepeatedEnumValue(m, f, index) : r->GetEnumValue(m, f);
      const EnumValueDescriptor* value =
          f->enum_type()->FindValueByNumber(number);
      if (value != nullptr) {
        AppendString(out, value->name());
      } else {
        absl::StrAppend(out, number);  // a value this build does not know
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& s =
          rep ? r->GetRepeatedStringReference(m, f, index, &scratch)
              : r->GetStringReference(m, f, &scratch);
      AppendString(out, f->type() == FieldDescriptor::TYPE_BYTES
                            ? absl::Base64Escape(s)
                            : s);
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      AppendMessage(
          out, rep ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f),
          depth);
      break;
  }
}

// A map entry's key as a JSON object key.
std::string MapKey(const Message& entry) {
  const FieldDescriptor* key = entry.GetDescriptor()->map_key();
  const Reflection* r = entry.GetReflection();
  switch (key->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      return absl::StrCat(r->GetInt32(entry, key));
    case FieldDescriptor::CPPTYPE_INT64:
      return absl::StrCat(r->GetInt64(entry, key));
    case FieldDescriptor::CPPTYPE_UINT32:
      return absl::StrCat(r->GetUInt32(entry, key));
    case FieldDescriptor::CPPTYPE_UINT64:
      return absl::StrCat(r->GetUInt64(entry, key));
    case FieldDescriptor::CPPTYPE_BOOL:
      return r->GetBool(entry, key) ? "true" : "false";
    default:
      return r->GetString(entry, key);
  }
}

void AppendMessage(std::string* out, const Message& m, int depth) {
  const Descriptor* d = m.GetDescriptor();
  const Reflection* r = m.GetReflection();
  bool first = true;
  *out += '{';
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    // Message fields, oneof members and proto3 `optional` scalars only
    // when set; other scalars and every repeated field always.
    if (!f->is_repeated() && f->has_presence() && !r->HasField(m, f)) {
      continue;
    }
    *out += first ? "\n" : ",\n";
    first = false;
    Indent(out, depth + 1);
    AppendString(out, f->name());
    *out += ": ";
    if (!f->is_repeated()) {
      AppendValue(out, m, f, -1, depth + 1);
      continue;
    }
    const int n = r->FieldSize(m, f);
    const bool map = f->is_map();
    if (n == 0) {
      *out += map ? "{}" : "[]";
      continue;
    }
    *out += map ? '{' : '[';
    for (int k = 0; k < n; ++k) {
      *out += k == 0 ? "\n" : ",\n";
      Indent(out, depth + 2);
      if (map) {
        const Message& entry = r->GetRepeatedMessage(m, f, k);
        AppendString(out, MapKey(entry));
        *out += ": ";
        AppendValue(out, entry, entry.GetDescriptor()->map_value(), -1,
                    depth + 2);
      } else {
        AppendValue(out, m, f, k, depth + 2);
      }
    }
    *out += '\n';
    Indent(out, depth + 1);
    *out += map ? '}' : ']';
  }
  if (!first) {
    *out += '\n';
    Indent(out, depth);
  }
  *out += '}';
}

}  // namespace

std::string ProtoJson(const google::protobuf::Message& message) {
  std::string out;
  AppendMessage(&out, message, 0);
  out += '\n';
  return out;
}

}  // namespace tensorcast
