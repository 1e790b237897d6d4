// Cast against NumPy: for all 225 dtype pairs, Cast's output must equal
// NumPy's astype (ml_dtypes for bfloat16) byte for byte (NaN as NaN-ness) on
// arrays built to hit every rounding, overflow and wrap-around rule; the
// float -> integer cases NumPy leaves undefined are checked against
// tensorcast's rule (truncate, saturate, NaN -> 0), computed by the script.
#include "server/ops/cast.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <ostream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "server/ops/cast_internal.h"
#include "server/ops/convert.h"
#include "tests/support/test_support.h"

namespace tensorcast {

// gtest prints parameters with this (found by ADL).
void PrintTo(DType dtype, std::ostream* os) { *os << DTypeName(dtype); }

namespace {

// Writes src_<dtype>.bin for every dtype, ref_<src>_<dst>.bin (the expected
// result) for every pair and, for float -> integer pairs, undef_<src>_<dst>.bin
// (1 where NumPy's result is undefined and ref holds tensorcast's rule).
constexpr char kReferenceScript[] = R"py(
import sys, warnings
import numpy as np
import ml_dtypes

warnings.simplefilter("ignore")
out = sys.argv[1]
NAMES = ["bool", "uint8", "int8", "int16", "int32", "int64", "uint16",
         "uint32", "uint64", "float16", "bfloat16", "float32", "float64",
         "complex64", "complex128"]
INTS = NAMES[1:9]
BF16 = np.dtype(ml_dtypes.bfloat16)


def dt(name):
    return BF16 if name == "bfloat16" else np.dtype(name)


rng = np.random.default_rng(20240611)


def random_bits(d, n):
    return rng.integers(0, 256, size=n * d.itemsize, dtype=np.uint8).view(d)


def up(a):
    return np.nextafter(a, a.dtype.type(np.inf))


def down(a):
    return np.nextafter(a, a.dtype.type(-np.inf))


# Integers: every type's edges and just past them, powers of two, and ties
# and near-ties for rounding to every float width (p significant bits).
edges = set()
for name in INTS:
    info = np.iinfo(name)
    for b in (int(info.min), int(info.max)):
        edges.update(b + d for d in range(-3, 4))
for k in range(65):
    for d in range(-3, 4):
        edges.update((2**k + d, -(2**k) + d))
# (p counts the implicit bit: float16 11, bfloat16 8, float32 24, float64 53,
# so the ulp at 2^k is 2^(k-p+1); the finer grid 2^(k-p) is kept as well.)
for k in range(9, 64):
    for p in (8, 9, 11, 12, 24, 25, 53, 54):
        if k > p:
            ulp = 2 ** (k - p + 1)
            for m in (0, 1, 2, 3):
                tie = 2**k + m * ulp + ulp // 2
                for d in (-1, 0, 1):
                    edges.update((tie + d, -(tie + d)))
edges = sorted(edges)

sources = {"bool": rng.integers(0, 2, size=2000).astype(np.bool_)}
for name in INTS:
    d = np.dtype(name)
    info = np.iinfo(d)
    fit = np.array([v for v in edges if info.min <= v <= info.max], dtype=d)
    u = random_bits(np.dtype(f"uint{8 * d.itemsize}"), 4000)
    shifts = rng.integers(0, 8 * d.itemsize, size=4000).astype(u.dtype)
    small = (u >> shifts).astype(d)
    if info.min < 0:
        small[::2] = np.negative(small[::2])
    sources[name] = np.concatenate([fit, random_bits(d, 4000), small])

# Every float16 and bfloat16 bit pattern.
sources["float16"] = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
sources["bfloat16"] = np.arange(1 << 16, dtype=np.uint16).view(BF16)

# Floats: specials, limits, integer edges (+-0.5, +-1 ulp), and ties for
# every narrowing (with +-1 ulp and, in float64, a hair off the tie).
f64 = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0, 0.5, -0.5,
       0.999, -0.999, 1.5, -1.5, 2.5, -2.5, 1e-300, 5e-324, -5e-324]
for name in ["float16", "bfloat16", "float32", "float64"]:
    fi = ml_dtypes.finfo(dt(name)) if name == "bfloat16" else np.finfo(name)
    for v in (fi.max, fi.tiny, fi.smallest_subnormal, fi.eps):
        f64 += [float(v), -float(v)]
for v in edges:
    f64 += [float(v), float(v) + 0.5, float(v) - 0.5, float(v) + 0.25]
f64 = np.array(f64, dtype=np.float64)
f64 = np.concatenate([f64, up(f64), down(f64)])
f32 = f64.astype(np.float32)
f32 = np.concatenate([f32, up(f32), down(f32)])


def ties(narrow, wide, count):
    a = np.unique(random_bits(narrow, count))
    a = a[np.isfinite(a)]
    b = np.nextafter(a.astype(wide), wide.type(np.inf)).astype(narrow)
    b = np.where(np.isfinite(b), b, a)
    mid = (a.astype(wide) + b.astype(wide)) / wide.type(2)
    # The tie above the largest value, where rounding overflows to inf.
    big = wide.type(float(ml_dtypes.finfo(narrow).max if narrow == BF16
                          else np.finfo(narrow).max))
    ulp = big - np.nextafter(big.astype(narrow), narrow.type(0)).astype(wide)
    extra = np.array([big + ulp / 2, -(big + ulp / 2)], dtype=wide)
    mid = np.concatenate([mid, extra])
    return np.concatenate([mid, up(mid), down(mid)])


hair = np.float64(2.0**-40)
t16 = ties(np.dtype(np.float16), np.dtype(np.float64), 4000)
tbf = ties(BF16, np.dtype(np.float64), 4000)
t32 = ties(np.dtype(np.float32), np.dtype(np.float64), 4000)
f64 = np.concatenate([
    f64, t16, tbf, t32, t16 * (1 + hair), t16 * (1 - hair),
    tbf * (1 + hair), tbf * (1 - hair),
    random_bits(np.dtype(np.float64), 6000),
    rng.standard_normal(3000) * 10.0 ** rng.integers(-8, 25, size=3000)])
f32 = np.concatenate([
    f32, ties(np.dtype(np.float16), np.dtype(np.float32), 4000),
    ties(BF16, np.dtype(np.float32), 4000),
    random_bits(np.dtype(np.float32), 6000),
    (rng.standard_normal(3000) * 10.0 ** rng.integers(-8, 25, size=3000)
     ).astype(np.float32)])
# Sorted and without repeats; NaNs of both signs put back.
nans = [np.nan, -np.nan]
f32 = np.concatenate([np.unique(f32), np.array(nans, np.float32)])
f64 = np.concatenate([np.unique(f64), np.array(nans)])
sources["float32"] = f32
sources["float64"] = f64


def complex_of(real, dtype):
    re, im = rng.permutation(real), rng.permutation(real)
    re[::7] = 0
    im[::5] = 0
    c = np.empty(len(real), dtype=dtype)
    c.real, c.imag = re, im
    nan, inf = np.nan, np.inf
    pairs = [(0, 0), (-0.0, 0), (0, -0.0), (nan, 0), (0, nan), (inf, 0),
             (0, 1), (1, 0), (-inf, nan)]
    extra = np.array([complex(a, b) for a, b in pairs], dtype=dtype)
    return np.concatenate([extra, c])


sources["complex64"] = complex_of(f32, np.complex64)
sources["complex128"] = complex_of(f64, np.complex128)

for s in NAMES:
    src = sources[s]
    src.tofile(f"{out}/src_{s}.bin")
    for d in NAMES:
        with np.errstate(all="ignore"):
            ref = src.astype(dt(d))
        if d in INTS and s in ("float16", "bfloat16", "float32", "float64",
                               "complex64", "complex128"):
            # NumPy leaves these undefined; tensorcast's rule instead.
            v = (src.real if src.dtype.kind == "c" else src).astype(np.float64)
            t = np.trunc(v)
            info = np.iinfo(d)
            below = t < float(info.min)
            above = t >= float(int(info.max) + 1)
            nan = np.isnan(t)
            ref[nan] = 0
            ref[below] = info.min
            ref[above] = info.max
            (nan | below | above).astype(np.uint8).tofile(
                f"{out}/undef_{s}_{d}.bin")
        ref.tofile(f"{out}/ref_{s}_{d}.bin")
)py";

struct Reference {
  testing::TempDir dir;
  testing::CommandResult python;
};

// Generated once per process, on first use.
const Reference& GetReference() {
  static Reference ref;  // destroyed at exit, removing the files
  static const bool generated = [] {
    ref.python = testing::RunPython(kReferenceScript, {ref.dir.path()});
    return true;
  }();
  (void)generated;
  return ref;
}

std::string Path(absl::string_view name) {
  return absl::StrCat(GetReference().dir.path(), "/", name);
}

bool IsNaN(DType d, const unsigned char* p) {
  uint16_t h;
  float f;
  double x;
  switch (d) {
    case DType::kFloat16:
      std::memcpy(&h, p, 2);
      return (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    case DType::kBFloat16:
      std::memcpy(&h, p, 2);
      return (h & 0x7f80) == 0x7f80 && (h & 0x7f) != 0;
    case DType::kFloat32:
      std::memcpy(&f, p, 4);
      return std::isnan(f);
    case DType::kFloat64:
      std::memcpy(&x, p, 8);
      return std::isnan(x);
    default:
      return false;
  }
}

// Bytewise equality, except that any NaN equals any NaN.
bool SameElement(DType d, const unsigned char* a, const unsigned char* b) {
  if (d == DType::kComplex64 || d == DType::kComplex128) {
    const DType part =
        d == DType::kComplex64 ? DType::kFloat32 : DType::kFloat64;
    const size_t half = ItemSize(part);
    return SameElement(part, a, b) && SameElement(part, a + half, b + half);
  }
  if (IsNaN(d, a) || IsNaN(d, b)) return IsNaN(d, a) && IsNaN(d, b);
  return std::memcmp(a, b, ItemSize(d)) == 0;
}

std::string Hex(const unsigned char* p, size_t n) {
  std::string s = "0x";
  for (size_t i = n; i-- > 0;) absl::StrAppendFormat(&s, "%02x", p[i]);
  return s;
}

// Compares a Cast result with the reference; `undefined` marks the
// elements where the reference is tensorcast's rule rather than NumPy.
void ExpectMatches(DType src_dtype, DType dst_dtype,
                   const std::vector<unsigned char>& src,
                   const std::vector<unsigned char>& got,
                   const std::vector<unsigned char>& want,
                   const std::vector<unsigned char>& undefined,
                   absl::string_view variant) {
  const size_t in_size = ItemSize(src_dtype);
  const size_t out_size = ItemSize(dst_dtype);
  const int64_t n = static_cast<int64_t>(undefined.size());
  int64_t numpy_checked = 0, numpy_bad = 0, rule_checked = 0, rule_bad = 0;
  std::string numpy_examples, rule_examples;
  for (int64_t i = 0; i < n; ++i) {
    const unsigned char* g = got.data() + i * out_size;
    const unsigned char* w = want.data() + i * out_size;
    const bool rule = undefined[i] != 0;
    (rule ? rule_checked : numpy_checked)++;
    if (SameElement(dst_dtype, g, w)) continue;
    int64_t& bad = rule ? rule_bad : numpy_bad;
    std::string& examples = rule ? rule_examples : numpy_examples;
    if (++bad <= 8) {
      absl::StrAppend(&examples, "\n  [", i, "] src ",
                      Hex(src.data() + i * in_size, in_size), " -> got ",
                      Hex(g, out_size), ", want ", Hex(w, out_size));
    }
  }
  const std::string what = absl::StrCat(
      DTypeName(src_dtype), " -> ", DTypeName(dst_dtype), " (", variant, ")");
  EXPECT_EQ(numpy_bad, 0) << numpy_bad << " of " << numpy_checked << " " << what
                          << " elements differ from NumPy:" << numpy_examples;
  EXPECT_EQ(rule_bad, 0) << rule_bad << " of " << rule_checked << " " << what
                         << " elements break the saturation rule:"
                         << rule_examples;
}

using Pair = std::tuple<DType, DType>;

class CastVsNumPyTest : public ::testing::TestWithParam<Pair> {};

TEST_P(CastVsNumPyTest, MatchesAstypeAndTheDefinedRule) {
  const auto [src_dtype, dst_dtype] = GetParam();
  ASSERT_EQ(GetReference().python.exit_code, 0) << GetReference().python.err;
  const std::string src_name(DTypeName(src_dtype));
  const std::string dst_name(DTypeName(dst_dtype));
  auto src = testing::ReadBytes(Path("src_" + src_name + ".bin"));
  ASSERT_TRUE(src.ok()) << src.status();
  auto want =
      testing::ReadBytes(Path("ref_" + src_name + "_" + dst_name + ".bin"));
  ASSERT_TRUE(want.ok()) << want.status();
  const size_t in_size = ItemSize(src_dtype);
  const size_t out_size = ItemSize(dst_dtype);
  const int64_t n = static_cast<int64_t>(src->size() / in_size);
  ASSERT_GT(n, 0);
  ASSERT_EQ(want->size(), n * out_size);
  std::vector<unsigned char> undefined(n, 0);
  const bool float_to_int =
      convert::IsInteger(dst_dtype) && IsFloatingOrComplex(src_dtype);
  if (float_to_int) {
    auto mask =
        testing::ReadBytes(Path("undef_" + src_name + "_" + dst_name + ".bin"));
    ASSERT_TRUE(mask.ok()) << mask.status();
    ASSERT_EQ(mask->size(), static_cast<size_t>(n));
    undefined = *mask;
  }

  std::vector<unsigned char> got(n * out_size, 0xa5);
  Cast(src->data(), src_dtype, got.data(), dst_dtype, n);
  ExpectMatches(src_dtype, dst_dtype, *src, got, *want, undefined, "Cast");
  if (float_to_int) {
    EXPECT_GT(std::count(undefined.begin(), undefined.end(), 1), 0)
        << "the data never hits the defined cases";
  }

  // Every instruction-set variant this CPU runs gives the same results.
  for (const auto& [isa, name] :
       {std::pair{CastIsa::kBaseline, "baseline"},
        std::pair{CastIsa::kX86_64_V3, "x86-64-v3"}}) {
    if (!CastIsaAvailable(isa)) continue;
    std::vector<unsigned char> variant(n * out_size, 0x5a);
    CastWithIsa(isa, src->data(), src_dtype, variant.data(), dst_dtype, n);
    ExpectMatches(src_dtype, dst_dtype, *src, variant, *want, undefined, name);
  }

  // Misaligned buffers (the bounce path) give the same bytes.
  std::vector<unsigned char> src_odd(src->size() + 1);
  std::memcpy(src_odd.data() + 1, src->data(), src->size());
  std::vector<unsigned char> got_odd(got.size() + 1);
  Cast(src_odd.data() + 1, src_dtype, got_odd.data() + 1, dst_dtype, n);
  EXPECT_EQ(std::memcmp(got_odd.data() + 1, got.data(), got.size()), 0)
      << "misaligned buffers give different results";
}

std::vector<Pair> AllPairs() {
  std::vector<Pair> pairs;
  for (const DTypeInfo& s : AllDTypes()) {
    for (const DTypeInfo& d : AllDTypes()) pairs.emplace_back(s.dtype, d.dtype);
  }
  return pairs;
}

INSTANTIATE_TEST_SUITE_P(AllPairs, CastVsNumPyTest,
                         ::testing::ValuesIn(AllPairs()),
                         [](const ::testing::TestParamInfo<Pair>& info) {
                           return absl::StrCat(
                               DTypeName(std::get<0>(info.param)), "_to_",
                               DTypeName(std::get<1>(info.param)));
                         });

template <typename T>
T CastOne(DType from, const void* value, DType to) {
  T out{};
  Cast(value, from, &out, to, 1);
  return out;
}

// tensorcast's own rule where NumPy is undefined, spelled out.
TEST(CastTest, UndefinedFloatToIntTruncatesThenSaturates) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  struct Case {
    double value;
    DType to;
    int64_t want;  // as the target's value, widened
  };
  const Case cases[] = {
      {nan, DType::kInt32, 0},
      {-nan, DType::kUInt8, 0},
      {inf, DType::kInt32, std::numeric_limits<int32_t>::max()},
      {-inf, DType::kInt32, std::numeric_limits<int32_t>::min()},
      {300.0, DType::kInt8, 127},
      {-300.0, DType::kInt8, -128},
      {-1.0, DType::kUInt8, 0},
      {-0.9, DType::kUInt8, 0},  // defined by NumPy too: truncates to 0
      {-1e30, DType::kUInt64, 0},
      {65536.0, DType::kUInt16, 65535},
      {2147483648.0, DType::kInt32, 2147483647},
      {-2147483649.0, DType::kInt32, -2147483648LL},
      {9223372036854775808.0, DType::kInt64,
       std::numeric_limits<int64_t>::max()},
      {-1e300, DType::kInt64, std::numeric_limits<int64_t>::min()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.value, " -> ", DTypeName(c.to)));
    int64_t got = 0;
    unsigned char out[8] = {};
    Cast(&c.value, DType::kFloat64, out, c.to, 1);
    switch (c.to) {
      case DType::kInt8:
        got = static_cast<int8_t>(out[0]);
        break;
      case DType::kUInt8:
        got = out[0];
        break;
      case DType::kUInt16:
        got = CastOne<uint16_t>(DType::kFloat64, &c.value, c.to);
        break;
      case DType::kInt32:
        got = CastOne<int32_t>(DType::kFloat64, &c.value, c.to);
        break;
      case DType::kInt64:
        got = CastOne<int64_t>(DType::kFloat64, &c.value, c.to);
        break;
      case DType::kUInt64:
        got = static_cast<int64_t>(
            CastOne<uint64_t>(DType::kFloat64, &c.value, c.to));
        break;
      default:
        FAIL();
    }
    EXPECT_EQ(got, c.want);
    // Every float source follows the same rule (float32 holds all these).
    const float f = static_cast<float>(c.value);
    if (static_cast<double>(f) == c.value || std::isnan(c.value)) {
      unsigned char out32[8] = {};
      Cast(&f, DType::kFloat32, out32, c.to, 1);
      EXPECT_EQ(std::memcmp(out, out32, ItemSize(c.to)), 0);
    }
  }
  const float big = 1e10f;
  EXPECT_EQ(CastOne<uint64_t>(DType::kFloat32, &big, DType::kUInt64),
            10000000000u);
  EXPECT_EQ(CastOne<uint32_t>(DType::kFloat32, &big, DType::kUInt32),
            std::numeric_limits<uint32_t>::max());
  const uint16_t half_inf = 0x7c00, half_nan = 0x7e00, bf16_ninf = 0xff80;
  EXPECT_EQ(CastOne<int16_t>(DType::kFloat16, &half_inf, DType::kInt16), 32767);
  EXPECT_EQ(CastOne<int64_t>(DType::kFloat16, &half_nan, DType::kInt64), 0);
  EXPECT_EQ(CastOne<uint8_t>(DType::kBFloat16, &bf16_ninf, DType::kUInt8), 0);
  const float c64[2] = {std::nanf(""), 1.0f};
  EXPECT_EQ(CastOne<int32_t>(DType::kComplex64, c64, DType::kInt32), 0);
  const double c128[2] = {1e300, 0.0};
  EXPECT_EQ(CastOne<int16_t>(DType::kComplex128, c128, DType::kInt16), 32767);
}

// Every narrowing rounds once, from the source type. These are values where
// rounding through float32 first gives a different answer (the first two
// broke when ml_dtypes 0.7 started rounding once, as IEEE 754 says).
TEST(CastTest, NarrowingRoundsOnceFromTheSource) {
  struct Case {
    uint64_t f64_bits;
    uint16_t want;  // bfloat16 bits
  };
  const Case to_bf16[] = {
      {0xc7efefffffffffffull, 0xff7f},  // just below -(max + ulp/2): finite
      {0xc0e9afffffffffffull, 0xc74d},  // just below a tie: rounds down
      {0x40e9b00000000001ull, 0x474e},  // just above a tie: rounds up
      {0x47efefffffffffffull, 0x7f7f},  // just below max + ulp/2
      {0x47eff00000000000ull, 0x7f80},  // max + ulp/2: the tie goes to inf
  };
  for (const Case& c : to_bf16) {
    double d;
    std::memcpy(&d, &c.f64_bits, 8);
    SCOPED_TRACE(absl::StrFormat("%#x", c.f64_bits));
    EXPECT_EQ(CastOne<uint16_t>(DType::kFloat64, &d, DType::kBFloat16), c.want);
    const double complex[2] = {d, 1.0};
    EXPECT_EQ(CastOne<uint16_t>(DType::kComplex128, complex, DType::kBFloat16),
              c.want);
    // Both variants (a tie in float32 would hide the difference).
    for (CastIsa isa : {CastIsa::kBaseline, CastIsa::kX86_64_V3}) {
      if (!CastIsaAvailable(isa)) continue;
      uint16_t out = 0;
      CastWithIsa(isa, &d, DType::kFloat64, &out, DType::kBFloat16, 1);
      EXPECT_EQ(out, c.want);
    }
  }
  // Integers too wide for float32's 24 bits.
  const int32_t i32 = (1 << 24) + (1 << 16) + 1;  // float32 makes it a tie
  EXPECT_EQ(CastOne<uint16_t>(DType::kInt32, &i32, DType::kBFloat16), 0x4b81);
  const int64_t i64 = (int64_t{1} << 60) + (int64_t{1} << 52) + 1;
  EXPECT_EQ(CastOne<uint16_t>(DType::kInt64, &i64, DType::kBFloat16), 0x5d81);
  const int64_t neg = -i64;
  EXPECT_EQ(CastOne<uint16_t>(DType::kInt64, &neg, DType::kBFloat16), 0xdd81);
  const int64_t min64 = std::numeric_limits<int64_t>::min();
  EXPECT_EQ(CastOne<uint16_t>(DType::kInt64, &min64, DType::kBFloat16), 0xdf00);
  const uint64_t max64 = std::numeric_limits<uint64_t>::max();
  EXPECT_EQ(CastOne<uint16_t>(DType::kUInt64, &max64, DType::kBFloat16),
            0x5f80);
  // float64 -> float16 rounds once as well, as NumPy does; PyTorch rounds
  // through float32 and gets 71.0 (0x5470) here.
  const double x = 70.96874823;
  EXPECT_EQ(CastOne<uint16_t>(DType::kFloat64, &x, DType::kFloat16), 0x546f);
}

TEST(CastTest, NaNOutputsAreQuiet) {
  const uint32_t f32_snan_bits = 0x7f800001;  // payload in low bits only
  float f32_snan;
  std::memcpy(&f32_snan, &f32_snan_bits, 4);
  EXPECT_EQ(
      CastOne<uint16_t>(DType::kFloat32, &f32_snan, DType::kFloat16) & 0x7e00,
      0x7e00);
  EXPECT_EQ(
      CastOne<uint16_t>(DType::kFloat32, &f32_snan, DType::kBFloat16) & 0x7fc0,
      0x7fc0);
  const uint64_t f64_snan_bits = 0xfff0000000000001ull;
  double f64_snan;
  std::memcpy(&f64_snan, &f64_snan_bits, 8);
  const uint16_t h =
      CastOne<uint16_t>(DType::kFloat64, &f64_snan, DType::kFloat16);
  EXPECT_EQ(h & 0xfe00, 0xfe00) << std::hex << h;  // sign kept, quiet
  const uint16_t h_snan = 0x7c01, bf_snan = 0x7f81;
  EXPECT_EQ(CastOne<uint32_t>(DType::kFloat16, &h_snan, DType::kFloat32) &
                0x7fc00000u,
            0x7fc00000u);
  EXPECT_EQ(CastOne<uint32_t>(DType::kBFloat16, &bf_snan, DType::kFloat32) &
                0x7fc00000u,
            0x7fc00000u);
}

TEST(CastTest, AnyNonZeroBoolByteIsTrue) {
  const uint8_t bytes[3] = {0, 1, 0x80};
  float out[3];
  Cast(bytes, DType::kBool, out, DType::kFloat32, 3);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], 1.0f);
  EXPECT_EQ(out[2], 1.0f);
  int64_t wide[3];
  Cast(bytes, DType::kBool, wide, DType::kInt64, 3);
  EXPECT_EQ(wide[2], 1);
}

TEST(CastTest, NonPositiveCountWritesNothing) {
  const float src[1] = {1.0f};
  int32_t dst[1] = {-7};
  Cast(src, DType::kFloat32, dst, DType::kInt32, 0);
  Cast(src, DType::kFloat32, dst, DType::kInt32, -5);
  EXPECT_EQ(dst[0], -7);
}

TEST(CastTest, SameDTypeIsACopy) {
  std::vector<uint16_t> src = {0x7c01, 0xffff, 0x0001, 0x8000};
  std::vector<uint16_t> dst(src.size());
  Cast(src.data(), DType::kFloat16, dst.data(), DType::kFloat16, src.size());
  EXPECT_EQ(src, dst);  // NaN payloads untouched
}

}  // namespace
}  // namespace tensorcast
