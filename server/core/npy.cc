#include "server/core/npy.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/echo.h"
#include "server/core/py_literal.h"

namespace tensorcast {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the .npy codec assumes a little-endian host");

constexpr absl::string_view kMagic("\x93NUMPY", 6);
constexpr size_t kMagicAndVersionBytes = 8;
// np.save aligns the data to this many bytes (numpy's ARRAY_ALIGN).
constexpr size_t kArrayAlign = 64;
// np.save pads the text so the growth axis can be rewritten in place with
// up to this many digits (numpy's GROWTH_AXIS_MAX_DIGITS).
constexpr size_t kGrowthAxisMaxDigits = 21;
// What the header's literal may hold. Deeper nesting than max_depth is not
// a header any writer produces, and the limit keeps the recursive parser's
// stack bounded on hostile input. The rest refuse as soon as a header holds
// more: values in all (a valid header has a dict, three keys, three values
// and up to kMaxRank dimensions), items in a tuple or list (the shape's
// rank), keys in a dict. So hostile input never builds more than a small
// tree, whatever its length.
constexpr PyLiteralLimits kHeaderLimits{.max_depth = 16,
                                        .max_values = 256,
                                        .max_items = kMaxRank,
                                        .max_dict_keys = 16};

absl::Status Malformed(absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("malformed .npy header: ", what));
}

struct DescrCode {
  absl::string_view code;  // after the byte-order character
  DType dtype;
};
// The kind+size codes np.save writes, and the one-letter codes np.dtype()
// also accepts ('l'/'L' are left out: their size depends on the writer's OS).
constexpr DescrCode kDescrCodes[] = {
    {"b1", DType::kBool},        {"?", DType::kBool},
    {"u1", DType::kUInt8},       {"B", DType::kUInt8},
    {"i1", DType::kInt8},        {"b", DType::kInt8},
    {"i2", DType::kInt16},       {"h", DType::kInt16},
    {"i4", DType::kInt32},       {"i", DType::kInt32},
    {"i8", DType::kInt64},       {"q", DType::kInt64},
    {"u2", DType::kUInt16},      {"H", DType::kUInt16},
    {"u4", DType::kUInt32},      {"I", DType::kUInt32},
    {"u8", DType::kUInt64},      {"Q", DType::kUInt64},
    {"f2", DType::kFloat16},     {"e", DType::kFloat16},
    {"f4", DType::kFloat32},     {"f", DType::kFloat32},
    {"f8", DType::kFloat64},     {"d", DType::kFloat64},
    {"c8", DType::kComplex64},   {"F", DType::kComplex64},
    {"c16", DType::kComplex128}, {"D", DType::kComplex128},
};

std::string SupportedDTypes() {
  std::vector<absl::string_view> names;
  for (const DTypeInfo& info : AllDTypes()) {
    if (!info.npy_descr.empty()) names.push_back(info.name);
  }
  return absl::StrJoin(names, ", ");
}

absl::Status UnsupportedDescr(absl::string_view descr, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("unsupported dtype '", EchoInput(descr), "' in .npy header",
                   why, "; supported dtypes: ", SupportedDTypes()));
}

struct ParsedDescr {
  DType dtype;
  bool byteswap;
};

absl::StatusOr<ParsedDescr> ParseDescr(absl::string_view descr) {
  absl::string_view code = descr;
  char order = '=';
  if (!code.empty() &&
      (code[0] == '<' || code[0] == '>' || code[0] == '|' || code[0] == '=')) {
    order = code[0];
    code.remove_prefix(1);
  }
  for (const DescrCode& c : kDescrCodes) {
    if (c.code == code) {
      return ParsedDescr{c.dtype, order == '>' && ItemSize(c.dtype) > 1};
    }
  }
  absl::string_view why = "";
  switch (code.empty() ? '\0' : code[0]) {
    case 'U':
    case 'w':
      why = " (unicode strings)";
      break;
    case 'S':
    case 'a':
      why = " (byte strings)";
      break;
    case 'V':
      why =
          " (void/raw bytes: ml_dtypes types such as bfloat16 are saved this "
          "way; upload bfloat16 in RAW format)";
      break;
    case 'O':
      why = " (Python objects)";
      break;
    case 'M':
      why = " (datetime64)";
      break;
    case 'm':
      why = " (timedelta64)";
      break;
    case 'f':
    case 'g':
    case 'c':
    case 'G':
      why = " (extended precision)";
      break;
    default:
      break;
  }
  return UnsupportedDescr(descr, why);
}

}  // namespace

absl::StatusOr<std::optional<NpyHeader>> ParseNpyHeader(
    absl::string_view prefix) {
  absl::string_view magic_seen =
      prefix.substr(0, std::min(prefix.size(), kMagic.size()));
  if (magic_seen != kMagic.substr(0, magic_seen.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a .npy file: it must start with \"\\x93NUMPY\", got \"",
        EchoInput(magic_seen), "\""));
  }
  if (prefix.size() <= kMagic.size()) return std::nullopt;
  // Refuse a bad version as soon as its first byte is in.
  const int major = static_cast<uint8_t>(prefix[6]);
  if (major < 1 || major > 3) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported .npy format version ", major,
                     ".x; supported: 1.0, 2.0, 3.0"));
  }
  if (prefix.size() < kMagicAndVersionBytes) return std::nullopt;
  const int minor = static_cast<uint8_t>(prefix[7]);
  if (minor != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsupported .npy format version ", major, ".", minor,
                     "; supported: 1.0, 2.0, 3.0"));
  }
  const size_t length_bytes = major == 1 ? 2 : 4;
  const size_t preamble = kMagicAndVersionBytes + length_bytes;
  if (prefix.size() < preamble) return std::nullopt;
  uint64_t header_len = 0;
  for (size_t i = 0; i < length_bytes; ++i) {
    header_len |= uint64_t{static_cast<uint8_t>(prefix[8 + i])} << (8 * i);
  }
  if (header_len > static_cast<uint64_t>(kMaxNpyHeaderBytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed .npy header: the header is ", header_len,
                     " bytes long; the most accepted is ", kMaxNpyHeaderBytes));
  }
  if (prefix.size() < preamble + header_len) return std::nullopt;

  // A tuple too long can only be a shape of too high a rank (the only
  // tuple a valid header has): say so.
  PyLiteralFailure failure;
  absl::StatusOr<PyValue> parsed =
      ParsePyLiteral(prefix.substr(preamble, header_len), kHeaderLimits,
                     "the header", &failure);
  if (!parsed.ok()) {
    if (failure == PyLiteralFailure::kTupleTooLong) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid shape in .npy header: more than ", kMaxRank,
                       " dimensions (the maximum rank is ", kMaxRank, ")"));
    }
    return Malformed(parsed.status().message());
  }
  if (parsed->kind != PyValue::Kind::kDict) {
    return Malformed(
        absl::StrCat("expected a dict, got ", DescribePyValue(*parsed)));
  }

  const PyValue* descr = nullptr;
  const PyValue* fortran_order = nullptr;
  const PyValue* shape = nullptr;
  const std::vector<PyValue>& items = parsed->items;
  for (size_t i = 0; i < items.size(); i += 2) {
    const PyValue& key = items[i];
    const PyValue** slot = nullptr;
    if (key.kind == PyValue::Kind::kString) {
      if (key.text == "descr") slot = &descr;
      if (key.text == "fortran_order") slot = &fortran_order;
      if (key.text == "shape") slot = &shape;
    }
    if (slot == nullptr) {
      return Malformed(
          absl::StrCat("unexpected key ", DescribePyValue(key),
                       " (the keys are 'descr', 'fortran_order' and 'shape')"));
    }
    if (*slot != nullptr) {
      return Malformed(absl::StrCat("duplicate key ", DescribePyValue(key)));
    }
    *slot = &items[i + 1];
  }
  for (auto [value, name] :
       {std::pair{descr, "descr"}, std::pair{fortran_order, "fortran_order"},
        std::pair{shape, "shape"}}) {
    if (value == nullptr) {
      return Malformed(absl::StrCat("missing key '", name, "'"));
    }
  }

  NpyHeader header;
  header.version_major = major;
  header.header_bytes = static_cast<int64_t>(preamble + header_len);

  if (descr->kind == PyValue::Kind::kList) {
    return absl::InvalidArgumentError(
        "unsupported dtype in .npy header: structured dtypes (a list of "
        "fields) are not supported; save each field as its own array");
  }
  if (descr->kind != PyValue::Kind::kString) {
    return Malformed(absl::StrCat("'descr' must be a string, got ",
                                  DescribePyValue(*descr)));
  }
  absl::StatusOr<ParsedDescr> dtype = ParseDescr(descr->text);
  if (!dtype.ok()) return dtype.status();
  header.dtype = dtype->dtype;
  header.byteswap = dtype->byteswap;

  if (fortran_order->kind != PyValue::Kind::kBool) {
    return Malformed(absl::StrCat("'fortran_order' must be True or False, got ",
                                  DescribePyValue(*fortran_order)));
  }
  header.fortran_order = fortran_order->boolean;

  if (shape->kind != PyValue::Kind::kTuple) {
    return Malformed(absl::StrCat("'shape' must be a tuple of integers, got ",
                                  DescribePyValue(*shape)));
  }
  for (const PyValue& dim : shape->items) {
    if (dim.kind != PyValue::Kind::kInt) {
      return Malformed(absl::StrCat("'shape' must be a tuple of integers, got ",
                                    DescribePyValue(dim), " in it"));
    }
    if (dim.int_overflow) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid shape in .npy header: dimension ",
                       EchoInput(dim.text), " does not fit a 64-bit integer"));
    }
    header.shape.push_back(dim.integer);
  }
  absl::StatusOr<int64_t> data_bytes = NumBytes(header.shape, header.dtype);
  if (!data_bytes.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid shape in .npy header: ", data_bytes.status().message()));
  }
  header.data_bytes = *data_bytes;
  return header;
}

absl::StatusOr<std::string> EncodeNpyHeader(DType dtype,
                                            std::span<const int64_t> shape,
                                            bool fortran_order) {
  const DTypeInfo& info = GetDTypeInfo(dtype);
  if (info.npy_descr.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        info.name, " has no .npy dtype; fetch as float32 or in RAW format"));
  }
  absl::StatusOr<int64_t> elements = NumElements(shape);
  if (!elements.ok()) return elements.status();

  // What numpy's _write_array_header builds: the sorted dict's repr, then
  // room for the growth axis (the first, or last if Fortran-ordered).
  std::string text =
      absl::StrCat("{'descr': '", info.npy_descr,
                   "', 'fortran_order': ", fortran_order ? "True" : "False",
                   ", 'shape': ", ShapeToString(shape), ", }");
  if (!shape.empty()) {
    size_t digits =
        absl::StrCat(fortran_order ? shape.back() : shape.front()).size();
    if (digits < kGrowthAxisMaxDigits) {
      text.append(kGrowthAxisMaxDigits - digits, ' ');
    }
  }

  // numpy's _wrap_header: pad with spaces and a final '\n' so the preamble
  // plus the text is a multiple of kArrayAlign (a full extra block of spaces
  // when it already is one, as numpy does).
  int major = 1;
  size_t preamble = kMagicAndVersionBytes + 2;
  size_t with_newline = text.size() + 1;
  size_t pad = kArrayAlign - (preamble + with_newline) % kArrayAlign;
  if (with_newline + pad > 0xFFFF) {
    major = 2;
    preamble = kMagicAndVersionBytes + 4;
    pad = kArrayAlign - (preamble + with_newline) % kArrayAlign;
  }
  const uint64_t header_len = with_newline + pad;

  std::string out;
  out.reserve(preamble + header_len);
  out.append(kMagic.data(), kMagic.size());
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  for (size_t i = 0; i < preamble - kMagicAndVersionBytes; ++i) {
    out.push_back(static_cast<char>((header_len >> (8 * i)) & 0xFF));
  }
  out.append(text);
  out.append(pad, ' ');
  out.push_back('\n');
  return out;
}

void ByteSwapElements(void* data, int64_t n, DType dtype) {
  size_t unit = ItemSize(dtype);
  int64_t count = n;
  if (Kind(dtype) == DTypeKind::kComplex) {
    unit /= 2;
    count *= 2;
  }
  char* p = static_cast<char*>(data);
  switch (unit) {
    case 2:
      for (int64_t i = 0; i < count; ++i, p += 2) {
        uint16_t v;
        std::memcpy(&v, p, 2);
        v = __builtin_bswap16(v);
        std::memcpy(p, &v, 2);
      }
      break;
    case 4:
      for (int64_t i = 0; i < count; ++i, p += 4) {
        uint32_t v;
        std::memcpy(&v, p, 4);
        v = __builtin_bswap32(v);
        std::memcpy(p, &v, 4);
      }
      break;
    case 8:
      for (int64_t i = 0; i < count; ++i, p += 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        v = __builtin_bswap64(v);
        std::memcpy(p, &v, 8);
      }
      break;
    default:  // 1-byte elements have no byte order.
      break;
  }
}

}  // namespace tensorcast
