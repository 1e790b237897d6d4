// Tests the .npy codec against files that the venv's NumPy writes during the
// test (no committed blobs), and against hand-made malformed headers.
#include "server/core/npy.h"

#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/support/test_support.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;

// Writes .npy files with NumPy into the directory argv[1] and prints what
// NumPy reads back from them, one line per file (FILE ...) or per bare header
// (HEADER ...).
constexpr char kScript[] = R"py(
import io, os, random, sys
import numpy as np
os.chdir(sys.argv[1])
from numpy.lib import format as fmt
try:
    from numpy.lib import _format_impl as fi
except ImportError:
    fi = fmt

DTYPES = ['bool', 'uint8', 'int8', 'int16', 'int32', 'int64', 'uint16',
          'uint32', 'uint64', 'float16', 'float32', 'float64', 'complex64',
          'complex128']
SHAPES = [(), (0,), (5,), (3, 4), (2, 0, 3)]

def values(dt, shape):
    n = int(np.prod(shape))
    a = np.arange(n) * 37 + 11
    if dt == 'bool':
        a = a % 3 == 0
    elif dt.startswith('complex'):
        a = a + 1j * (a + 0.5)
    return a.astype(dt).reshape(shape)

def shape_text(s):
    return ','.join(str(d) for d in s) if s else '-'

def save(name, arr, version=None):
    with open(name + '.npy', 'wb') as f:
        if version is None:
            np.save(f, arr)
        else:
            fmt.write_array(f, arr, version=version)
    with open(name + '.npy', 'rb') as f:
        major, minor = fmt.read_magic(f)
        shape, fortran, dtype = fi._read_array_header(f, (major, minor))
        offset = f.tell()
    # Only what np.save writes by itself must match EncodeNpyHeader.
    encodable = version is None and dtype.byteorder != '>'
    print('FILE', name, dtype.name, int(fortran), int(dtype.byteorder == '>'),
          shape_text(shape), offset, arr.nbytes, major, int(encodable))

for dt in DTYPES:
    for i, shape in enumerate(SHAPES):
        save(f'{dt}_{i}', values(dt, shape))
    a = values(dt, (3, 4))
    save(f'be_{dt}', a.astype(a.dtype.newbyteorder('>')))
    save(f'le_{dt}', a)
save('fortran_f4', np.asfortranarray(values('float32', (3, 4))))
save('fortran_i8', np.asfortranarray(values('int64', (2, 3, 4))))
save('fortran_be_f8',
     np.asfortranarray(values('float64', (4, 5))).astype('>f8', order='F'))
save('big_zero_size', np.empty((0, 10**12), dtype='float32'))
save('v2_f4', values('float32', (3, 4)), (2, 0))
save('v2_be_i2', values('int16', (7,)).astype('>i2'), (2, 0))
save('v3_c8', values('complex64', (2, 3)), (3, 0))
save('v3_fortran_u2', np.asfortranarray(values('uint16', (3, 2))), (3, 0))
save('v3_scalar_bool', values('bool', ()), (3, 0))

def header(dt, fortran, shape):
    d = {'descr': np.dtype(dt).str, 'fortran_order': fortran, 'shape': shape}
    f = io.BytesIO()
    fi._write_array_header(f, d, None)
    print('HEADER', dt, int(fortran), shape_text(shape), f.getvalue().hex())

# Every rank up to 64 hits every length mod 64, so the padding edge too.
for rank in range(0, 65):
    header(DTYPES[rank % len(DTYPES)], rank % 3 == 0, (1,) * rank)
rng = random.Random(1234)
for i in range(300):
    while True:
        shape = tuple(rng.choice([0, 1, 3, rng.randint(0, 10**rng.randint(1, 18))])
                      for _ in range(rng.randint(0, 8)))
        nonzero = 1
        for d in shape:
            nonzero *= d if d else 1
        if nonzero < 2**59:
            break
    header(rng.choice(DTYPES), rng.random() < 0.3, shape)
)py";

struct FileCase {
  std::string name;
  std::string dtype;
  bool fortran;
  bool byteswap;
  Shape shape;
  int64_t header_bytes;
  int64_t data_bytes;
  int version;
  bool encodable;
};

struct HeaderCase {
  std::string dtype;
  bool fortran;
  Shape shape;
  std::string bytes;
};

Shape ParseShapeText(absl::string_view text) {
  Shape shape;
  if (text == "-") return shape;
  for (absl::string_view d : absl::StrSplit(text, ',')) {
    int64_t v = 0;
    EXPECT_TRUE(absl::SimpleAtoi(d, &v)) << d;
    shape.push_back(v);
  }
  return shape;
}

int64_t ToInt(absl::string_view s) {
  int64_t v = 0;
  EXPECT_TRUE(absl::SimpleAtoi(s, &v)) << s;
  return v;
}

class NpyNumPyTest : public ::testing::Test {
 protected:
  // Runs the script once, in the first test's SetUp rather than in
  // SetUpTestSuite: a failure there would skip the tests instead of failing.
  static void MakeReference() {
    dir_ = new testing::TempDir();
    numpy_ =
        new testing::CommandResult(testing::RunPython(kScript, {dir_->path()}));
    if (numpy_->exit_code != 0) return;
    for (absl::string_view line : absl::StrSplit(numpy_->out, '\n')) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      if (f.size() == 10 && f[0] == "FILE") {
        files_.push_back(FileCase{f[1], f[2], f[3] == "1", f[4] == "1",
                                  ParseShapeText(f[5]), ToInt(f[6]),
                                  ToInt(f[7]), static_cast<int>(ToInt(f[8])),
                                  f[9] == "1"});
      } else if (f.size() == 5 && f[0] == "HEADER") {
        headers_.push_back(HeaderCase{f[1], f[2] == "1", ParseShapeText(f[3]),
                                      absl::HexStringToBytes(f[4])});
      }
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete numpy_;
    dir_ = nullptr;
    numpy_ = nullptr;
  }

  void SetUp() override {
    if (numpy_ == nullptr) MakeReference();
    ASSERT_EQ(numpy_->exit_code, 0)
        << "cannot make reference .npy files with NumPy: " << numpy_->err;
    ASSERT_GT(files_.size(), 80u);
    ASSERT_GT(headers_.size(), 300u);
  }

  static std::string Contents(const std::string& name) {
    absl::StatusOr<std::string> data =
        testing::ReadFile(dir_->File(name + ".npy"));
    EXPECT_TRUE(data.ok()) << data.status();
    return data.ok() ? *data : "";
  }

  static testing::TempDir* dir_;
  static testing::CommandResult* numpy_;
  static std::vector<FileCase> files_;
  static std::vector<HeaderCase> headers_;
};
testing::TempDir* NpyNumPyTest::dir_ = nullptr;
testing::CommandResult* NpyNumPyTest::numpy_ = nullptr;
std::vector<FileCase> NpyNumPyTest::files_;
std::vector<HeaderCase> NpyNumPyTest::headers_;

TEST_F(NpyNumPyTest, ParsesEveryFileAsNumPyReadsIt) {
  for (const FileCase& c : files_) {
    SCOPED_TRACE(c.name);
    std::string data = Contents(c.name);
    absl::StatusOr<std::optional<NpyHeader>> h = ParseNpyHeader(data);
    ASSERT_TRUE(h.ok()) << h.status();
    ASSERT_TRUE(h->has_value());
    const NpyHeader& header = **h;
    EXPECT_EQ(DTypeName(header.dtype), c.dtype);
    EXPECT_EQ(header.fortran_order, c.fortran);
    EXPECT_EQ(header.byteswap, c.byteswap);
    EXPECT_EQ(header.shape, c.shape);
    EXPECT_EQ(header.header_bytes, c.header_bytes);
    EXPECT_EQ(header.data_bytes, c.data_bytes);
    EXPECT_EQ(header.version_major, c.version);
    EXPECT_EQ(static_cast<int64_t>(data.size()),
              header.header_bytes + header.data_bytes);
  }
}

TEST_F(NpyNumPyTest, EncodesExactlyWhatNpSaveWrites) {
  int checked = 0;
  for (const FileCase& c : files_) {
    if (!c.encodable) continue;
    SCOPED_TRACE(c.name);
    absl::StatusOr<DType> dtype = ParseDType(c.dtype);
    ASSERT_TRUE(dtype.ok());
    absl::StatusOr<std::string> encoded =
        EncodeNpyHeader(*dtype, c.shape, c.fortran);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    EXPECT_EQ(
        absl::BytesToHexString(*encoded),
        absl::BytesToHexString(Contents(c.name).substr(0, c.header_bytes)));
    ++checked;
  }
  EXPECT_GT(checked, 70);
}

TEST_F(NpyNumPyTest, EncodesBareHeadersLikeNumPyAndParsesThemBack) {
  for (const HeaderCase& c : headers_) {
    SCOPED_TRACE(absl::StrCat(c.dtype, " ", ShapeToString(c.shape),
                              c.fortran ? " F" : " C"));
    absl::StatusOr<DType> dtype = ParseDType(c.dtype);
    ASSERT_TRUE(dtype.ok());
    absl::StatusOr<std::string> encoded =
        EncodeNpyHeader(*dtype, c.shape, c.fortran);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    EXPECT_EQ(*encoded, c.bytes);
    EXPECT_EQ(encoded->size() % 64, 0u);
    absl::StatusOr<std::optional<NpyHeader>> h = ParseNpyHeader(c.bytes);
    ASSERT_TRUE(h.ok()) << h.status();
    ASSERT_TRUE(h->has_value());
    EXPECT_EQ((*h)->dtype, *dtype);
    EXPECT_EQ((*h)->shape, c.shape);
    EXPECT_EQ((*h)->fortran_order, c.fortran);
    EXPECT_EQ((*h)->header_bytes, static_cast<int64_t>(c.bytes.size()));
  }
}

TEST_F(NpyNumPyTest, EveryTruncationOfAValidHeaderNeedsMoreBytes) {
  for (const FileCase& c : files_) {
    SCOPED_TRACE(c.name);
    std::string data = Contents(c.name);
    for (int64_t cut = 0; cut < c.header_bytes; ++cut) {
      absl::StatusOr<std::optional<NpyHeader>> h =
          ParseNpyHeader(absl::string_view(data).substr(0, cut));
      ASSERT_TRUE(h.ok()) << "cut at " << cut << ": " << h.status();
      EXPECT_FALSE(h->has_value()) << "cut at " << cut;
    }
  }
}

TEST_F(NpyNumPyTest, ByteSwapTurnsBigEndianDataIntoNumPysLittleEndian) {
  for (const DTypeInfo& info : AllDTypes()) {
    if (info.npy_descr.empty()) continue;
    std::string name(info.name);
    SCOPED_TRACE(name);
    std::string big = Contents("be_" + name);
    std::string little = Contents("le_" + name);
    absl::StatusOr<std::optional<NpyHeader>> hb = ParseNpyHeader(big);
    absl::StatusOr<std::optional<NpyHeader>> hl = ParseNpyHeader(little);
    ASSERT_TRUE(hb.ok() && hb->has_value() && hl.ok() && hl->has_value());
    EXPECT_EQ((*hb)->byteswap, info.itemsize > 1);
    std::string data = big.substr((*hb)->header_bytes);
    if ((*hb)->byteswap) {
      ByteSwapElements(data.data(), 12, info.dtype);
    }
    EXPECT_EQ(absl::BytesToHexString(data),
              absl::BytesToHexString(little.substr((*hl)->header_bytes)));
  }
}

TEST_F(NpyNumPyTest, RandomCorruptionNeverCrashes) {
  std::mt19937 rng(42);
  int errors = 0;
  for (const FileCase& c : files_) {
    std::string data = Contents(c.name).substr(0, c.header_bytes);
    for (int i = 0; i < 40; ++i) {
      std::string bad = data;
      int flips = 1 + rng() % 4;
      for (int k = 0; k < flips; ++k) {
        bad[rng() % bad.size()] = static_cast<char>(rng() % 256);
      }
      absl::StatusOr<std::optional<NpyHeader>> h = ParseNpyHeader(bad);
      if (!h.ok()) {
        EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
        ++errors;
      }
    }
  }
  EXPECT_GT(errors, 0);
}

// A header as a writer would frame it: magic, version, length, text.
std::string Frame(absl::string_view text, int major = 1) {
  std::string out("\x93NUMPY", 6);
  out.push_back(static_cast<char>(major));
  out.push_back('\0');
  uint32_t len = text.size();
  int len_bytes = major == 1 ? 2 : 4;
  for (int i = 0; i < len_bytes; ++i) {
    out.push_back(static_cast<char>((len >> (8 * i)) & 0xFF));
  }
  out.append(text.data(), text.size());
  return out;
}

absl::StatusOr<NpyHeader> ParseComplete(absl::string_view bytes) {
  absl::StatusOr<std::optional<NpyHeader>> h = ParseNpyHeader(bytes);
  if (!h.ok()) return h.status();
  if (!h->has_value()) return absl::OutOfRangeError("needs more bytes");
  return **h;
}

TEST(NpyParseTest, AcceptsAnyKeyOrderQuotesAndWhitespace) {
  absl::StatusOr<NpyHeader> h = ParseComplete(
      Frame("  {\"shape\" :( 3 ,\n\t4 , ) ,'fortran_order':True,\r\n"
            "  'descr':'>i8'}"));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->dtype, DType::kInt64);
  EXPECT_TRUE(h->byteswap);
  EXPECT_TRUE(h->fortran_order);
  EXPECT_EQ(h->shape, (Shape{3, 4}));
  EXPECT_EQ(h->data_bytes, 96);
  EXPECT_EQ(h->version_major, 1);
}

TEST(NpyParseTest, ByteOrdersAndShapes) {
  struct Case {
    const char* descr;
    const char* shape;
    DType dtype;
    bool byteswap;
    Shape expected;
  };
  const Case cases[] = {
      {"<f4", "()", DType::kFloat32, false, {}},
      {">f2", "(5,)", DType::kFloat16, true, {5}},
      {"=u4", "(1, 2, 3)", DType::kUInt32, false, {1, 2, 3}},
      {"|b1", "( )", DType::kBool, false, {}},
      {">u1", "(2,)", DType::kUInt8, false, {2}},
      {"|i1", "(0, 4)", DType::kInt8, false, {0, 4}},
      {"f8", "(2_000,)", DType::kFloat64, false, {2000}},
      {">c16", "(3L,)", DType::kComplex128, true, {3}},
      {"<c8", "(+7,)", DType::kComplex64, false, {7}},
      {"?", "(1,)", DType::kBool, false, {1}},
      {">H", "(1,)", DType::kUInt16, true, {1}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.descr);
    absl::StatusOr<NpyHeader> h = ParseComplete(Frame(
        absl::StrCat("{'descr': '", c.descr,
                     "', 'fortran_order': False, 'shape': ", c.shape, "}\n")));
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->dtype, c.dtype);
    EXPECT_EQ(h->byteswap, c.byteswap);
    EXPECT_EQ(h->shape, c.expected);
  }
}

TEST(NpyParseTest, VersionsTwoAndThreeUseAFourByteLength) {
  const std::string text =
      "{'descr': '<i2', 'fortran_order': False, 'shape': (9,), }\n";
  for (int major : {2, 3}) {
    absl::StatusOr<NpyHeader> h = ParseComplete(Frame(text, major));
    ASSERT_TRUE(h.ok()) << h.status();
    EXPECT_EQ(h->version_major, major);
    EXPECT_EQ(h->header_bytes, static_cast<int64_t>(12 + text.size()));
  }
}

struct BadCase {
  std::string bytes;
  std::string message;  // a substring the error must contain
};

TEST(NpyParseTest, MalformedHeadersAreInvalidArgumentWithAReason) {
  auto dict = [](absl::string_view descr, absl::string_view fortran,
                 absl::string_view shape) {
    return Frame(absl::StrCat("{'descr': ", descr, ", 'fortran_order': ",
                              fortran, ", 'shape': ", shape, ", }\n"));
  };
  std::string too_long("\x93NUMPY\x02\x00\x00\x00\x20\x00", 12);
  const BadCase cases[] = {
      {"PK\x03\x04 zip file", "not a .npy file"},
      {"\x93NUMPZ\x01\x00", "not a .npy file"},
      {std::string("\x93NUMPY\x04\x00\x10\x00", 10), "version 4.x"},
      {std::string("\x93NUMPY\x01\x01\x10\x00", 10), "version 1.1"},
      {std::string("\x93NUMPY\x00\x00\x10\x00", 10), "version 0.x"},
      {too_long, "the most accepted is 65536"},
      {Frame("{'descr': '<f4' 'fortran_order': False, 'shape': ()}"),
       "expected ',' or '}'"},
      {Frame("{'descr': '<f4', 'fortran_order': False, 'shape': (3,) "),
       "expected ',' or '}'"},
      {Frame("{'descr': '<f4, 'fortran_order': False, 'shape': ()}"),
       "expected ',' or '}'"},
      {Frame("{'descr' '<f4', 'fortran_order': False, 'shape': ()}"),
       "expected ':'"},
      {Frame("{'descr': '<f4', 'fortran_order': False, 'shape': (3,)"),
       "expected ',' or '}'"},
      {Frame("{'descr': <f4, 'fortran_order': False, 'shape': ()}"),
       "unexpected character '<'"},
      {Frame("{'descr': '<f4}"), "unterminated string"},
      {Frame("{'descr': '<f4', 'fortran_order': false, 'shape': ()}"),
       "unexpected name 'false'"},
      {Frame("{'descr': '<f4', 'fortran_order': False, 'shape': ()} x"),
       "unexpected text after the dict"},
      {Frame("['descr', '<f4']"), "expected a dict"},
      {Frame(""), "unexpected end"},
      {Frame(std::string("{'descr': '<f4',\0 }", 19)), "unexpected character"},
      {Frame("{'descr': '<f4', 'shape': ()}"), "missing key 'fortran_order'"},
      {Frame("{'fortran_order': False, 'shape': ()}"), "missing key 'descr'"},
      {Frame("{'descr': '<f4', 'fortran_order': False}"),
       "missing key 'shape'"},
      {Frame("{'descr': '<f4', 'fortran_order': False, 'shape': (), "
             "'extra': 1}"),
       "unexpected key 'extra'"},
      {Frame("{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, "
             "'shape': ()}"),
       "duplicate key 'descr'"},
      {Frame("{1: '<f4', 'fortran_order': False, 'shape': ()}"),
       "unexpected key 1"},
      {dict("'<V8'", "False", "()"), "'<V8'"},
      {dict("'<V2'", "False", "()"), "bfloat16"},
      {dict("'<U3'", "False", "()"), "unicode strings"},
      {dict("'|S5'", "False", "()"), "byte strings"},
      {dict("'|O'", "False", "()"), "Python objects"},
      {dict("'<M8[ns]'", "False", "()"), "datetime64"},
      {dict("'<m8[s]'", "False", "()"), "timedelta64"},
      {dict("'<f16'", "False", "()"), "extended precision"},
      {dict("'bfloat16'", "False", "()"), "unsupported dtype 'bfloat16'"},
      {dict("''", "False", "()"), "unsupported dtype ''"},
      {dict("[('a', '<f4')]", "False", "()"), "structured dtypes"},
      {dict("4", "False", "()"), "'descr' must be a string"},
      {dict("'<f4'", "0", "()"), "'fortran_order' must be True or False"},
      {dict("'<f4'", "None", "()"), "'fortran_order' must be True or False"},
      {dict("'<f4'", "False", "[3, 4]"), "'shape' must be a tuple"},
      {dict("'<f4'", "False", "(5)"), "'shape' must be a tuple"},
      {dict("'<f4'", "False", "(3.5,)"), "expected an integer"},
      {dict("'<f4'", "False", "(3e2,)"), "expected an integer"},
      {dict("'<f4'", "False", "('3',)"), "tuple of integers"},
      {dict("'<f4'", "False", "(True,)"), "tuple of integers"},
      {dict("'<f4'", "False", "(-1,)"), "negative dimension -1"},
      {dict("'<f4'", "False", "(9223372036854775808,)"),
       "does not fit a 64-bit integer"},
      {dict("'<f4'", "False", "(-99999999999999999999,)"),
       "does not fit a 64-bit integer"},
      {dict("'<f4'", "False", "(4294967296, 4294967296)"), "overflow"},
      {dict("'<f8'", "False", "(2305843009213693952,)"), "overflows"},
      {dict("'<f4'", "False",
            absl::StrCat("(", std::string(65 * 3, '1'), ",)")),
       "does not fit"},
      {dict("'<f4'", "False",
            absl::StrCat("(", absl::StrJoin(std::vector<int>(65, 1), ","),
                         ",)")),
       "more than 64 dimensions"},
      {dict("'<f4'", "False", "(1__0,)"), "malformed number"},
      {dict("'<f4'", "False", "(-,)"), "expected a number"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(absl::CHexEscape(c.bytes));
    absl::StatusOr<std::optional<NpyHeader>> h = ParseNpyHeader(c.bytes);
    ASSERT_FALSE(h.ok()) << "parsed although malformed";
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(h.status().message(), HasSubstr(c.message));
  }
}

TEST(NpyParseTest, ErrorsPointAtTheOffendingByte) {
  absl::StatusOr<std::optional<NpyHeader>> h = ParseNpyHeader(
      Frame("{'descr': '<f4', 'fortran_order': False 'shape': ()}"));
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(h.status().message(), HasSubstr("at byte 40 of the header"));
  EXPECT_THAT(h.status().message(), HasSubstr("False >>>\\'shape\\'"));
}

TEST(NpyParseTest, DeepNestingIsRefusedNotACrash) {
  std::string deep = absl::StrCat("{'descr': ", std::string(30000, '('),
                                  std::string(30000, ')'), "}");
  absl::StatusOr<std::optional<NpyHeader>> h = ParseNpyHeader(Frame(deep, 2));
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(h.status().message(), HasSubstr("nesting too deep"));
}

// Limits hold while parsing, not after: the 65th dimension is refused
// before anything after it is read (what follows here is not even valid),
// and so are a dict of too many keys and a header of too many values.
TEST(NpyParseTest, RankAndSizeLimitsStopTheParserEarly) {
  const std::string dims = absl::StrJoin(std::vector<int>(65, 1), ",");
  absl::StatusOr<std::optional<NpyHeader>> h = ParseNpyHeader(
      Frame(absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (",
                         dims, ", @@@ not python")));
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(h.status().message(),
              HasSubstr("more than 64 dimensions (the maximum rank is 64)"));
  // The shape the adversarial review sent: a tuple of a few hundred
  // thousand items (here as many as fit the header limit).
  std::string huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  while (huge.size() + 8 < static_cast<size_t>(kMaxNpyHeaderBytes)) {
    huge += "1,";
  }
  huge += ")}";
  h = ParseNpyHeader(Frame(huge, 2));
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(h.status().message(), HasSubstr("more than 64 dimensions"));
  // A list (only a structured descr has one) and a dict stop too.
  h = ParseNpyHeader(Frame(absl::StrCat("{'descr': [", dims, "]}")));
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(h.status().message(), HasSubstr("a list of more than 64 items"));
  std::string keys = "{";
  for (int i = 0; i < 17; ++i) absl::StrAppend(&keys, "'k", i, "': 0, ");
  h = ParseNpyHeader(Frame(keys + "}"));
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(h.status().message(), HasSubstr("a dict of more than 16 keys"));
  // Values in all: nested tuples of 64 items each.
  const std::string inner = absl::StrCat("(", dims.substr(2), ")");
  std::vector<std::string> many(8, inner);
  h = ParseNpyHeader(
      Frame(absl::StrCat("{'descr': (", absl::StrJoin(many, ","), ")}")));
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(h.status().message(), HasSubstr("more than 256 values"));
}

TEST(NpyParseTest, QuotedInputIsEscapedAndCut) {
  // A long descr ending in a quote and a newline (escaped as Python does).
  const std::string descr = std::string(5000, 'x') + R"(\"\n)";
  absl::StatusOr<std::optional<NpyHeader>> h =
      ParseNpyHeader(Frame(absl::StrCat(
          "{'descr': '", descr, "', 'fortran_order': False, 'shape': ()}")));
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(h.status().message(), HasSubstr("unsupported dtype 'xxx"));
  EXPECT_THAT(h.status().message(), HasSubstr("...(5002 bytes)"));
  EXPECT_LT(h.status().message().size(), 400u) << h.status().message();
}

TEST(NpyParseTest, ShortPrefixesNeedMoreBytesUntilTheyCannotMatch) {
  std::string magic("\x93NUMPY\x01\x00", 8);
  for (size_t n = 0; n <= magic.size(); ++n) {
    absl::StatusOr<std::optional<NpyHeader>> h =
        ParseNpyHeader(magic.substr(0, n));
    ASSERT_TRUE(h.ok()) << n;
    EXPECT_FALSE(h->has_value());
  }
  // A wrong first byte is an error at once, not a wait for more.
  EXPECT_FALSE(ParseNpyHeader("x").ok());
  EXPECT_FALSE(ParseNpyHeader(std::string("\x93NUMPY\x09", 7)).ok());
  // A too-long header is refused before its bytes arrive.
  EXPECT_FALSE(
      ParseNpyHeader(std::string("\x93NUMPY\x03\x00\xff\xff\xff\xff", 12))
          .ok());
}

TEST(NpyParseTest, DataAfterTheHeaderIsIgnored) {
  std::string file =
      Frame("{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }\n");
  int64_t header_size = file.size();
  file.append("\x01\x00\x02\x00 and more", 13);
  absl::StatusOr<NpyHeader> h = ParseComplete(file);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->header_bytes, header_size);
  EXPECT_EQ(h->data_bytes, 4);
}

TEST(NpyEncodeTest, KnownBytes) {
  Shape shape = {3, 4};
  absl::StatusOr<std::string> h = EncodeNpyHeader(DType::kFloat32, shape);
  ASSERT_TRUE(h.ok());
  ASSERT_EQ(h->size(), 128u);
  EXPECT_EQ(h->substr(0, 10), std::string("\x93NUMPY\x01\x00\x76\x00", 10));
  EXPECT_EQ(h->substr(10, 59),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }");
  EXPECT_EQ(h->back(), '\n');
  EXPECT_EQ(h->find_first_not_of(' ', 69), h->size() - 1);
}

TEST(NpyEncodeTest, BFloat16HasNoNpyDType) {
  Shape shape = {2};
  absl::StatusOr<std::string> h = EncodeNpyHeader(DType::kBFloat16, shape);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(h.status().message(),
            "bfloat16 has no .npy dtype; fetch as float32 or in RAW format");
}

TEST(NpyEncodeTest, RefusesInvalidShapes) {
  Shape negative = {3, -1};
  EXPECT_EQ(EncodeNpyHeader(DType::kInt8, negative).status().code(),
            absl::StatusCode::kInvalidArgument);
  Shape overflow = {int64_t{1} << 40, int64_t{1} << 40};
  EXPECT_EQ(EncodeNpyHeader(DType::kInt8, overflow).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(NpyByteSwapTest, SwapsElementsAndComplexComponents) {
  uint32_t words[2] = {0x01020304u, 0xA0B0C0D0u};
  ByteSwapElements(words, 2, DType::kFloat32);
  EXPECT_EQ(words[0], 0x04030201u);
  EXPECT_EQ(words[1], 0xD0C0B0A0u);

  uint32_t complex[2] = {0x01020304u, 0x05060708u};  // one complex64
  ByteSwapElements(complex, 1, DType::kComplex64);
  EXPECT_EQ(complex[0], 0x04030201u);
  EXPECT_EQ(complex[1], 0x08070605u);

  uint64_t c128[2] = {0x0102030405060708ull, 0x1112131415161718ull};
  ByteSwapElements(c128, 1, DType::kComplex128);
  EXPECT_EQ(c128[0], 0x0807060504030201ull);
  EXPECT_EQ(c128[1], 0x1817161514131211ull);

  uint16_t halves[3] = {0x0102, 0x0304, 0x0506};
  ByteSwapElements(halves, 2, DType::kBFloat16);  // the third stays
  EXPECT_EQ(halves[0], 0x0201);
  EXPECT_EQ(halves[1], 0x0403);
  EXPECT_EQ(halves[2], 0x0506);

  uint8_t bytes[2] = {1, 2};
  ByteSwapElements(bytes, 2, DType::kUInt8);
  EXPECT_EQ(bytes[0], 1);
  ByteSwapElements(nullptr, 0, DType::kInt64);
}

}  // namespace
}  // namespace tensorcast
