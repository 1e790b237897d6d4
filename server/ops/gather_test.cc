// Gather and GatherCast against a naive per-element reference on random
// views (strided, transposed, negative and zero strides, offsets, rank 0 to
// 5 and 64), and against NumPy's as_strided for a few.
#include "server/ops/gather.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "server/core/shape.h"
#include "server/ops/cast.h"
#include "tests/support/test_support.h"

namespace tensorcast {
namespace {

struct View {
  Layout layout;
  int64_t storage_elements = 1;
};

int64_t Count(const Layout& layout) {
  int64_t n = 1;
  for (int64_t d : layout.shape) n *= d;
  return n;
}

// Storage just large enough for the layout, with the offset that puts its
// lowest address at `slack` elements.
View Place(Shape shape, Strides strides, int64_t slack) {
  View v;
  int64_t lo = 0, hi = 0;
  bool empty = false;
  for (size_t k = 0; k < shape.size(); ++k) {
    if (shape[k] == 0) empty = true;
    const int64_t span = (shape[k] - 1) * strides[k];
    (span < 0 ? lo : hi) += span;
  }
  if (empty) lo = hi = 0;
  v.layout.shape = std::move(shape);
  v.layout.strides = std::move(strides);
  v.layout.offset = slack - lo;
  v.storage_elements = v.layout.offset + hi + 1 + slack;
  return v;
}

View RandomView(std::mt19937_64& rng, int rank) {
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  Shape shape(rank);
  for (auto& d : shape) d = uniform(0, 11) == 0 ? 0 : uniform(1, 5);
  Strides strides(rank);
  switch (uniform(0, 2)) {
    case 0: {  // a permutation of a padded C-order parent (transposes)
      std::vector<int> perm(rank);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      int64_t s = 1;
      for (int k = rank - 1; k >= 0; --k) {
        strides[perm[k]] = s;
        s *= std::max<int64_t>(shape[perm[k]], 1) + uniform(0, 1);
      }
      break;
    }
    case 1: {  // C order, sliced with steps, some flipped or broadcast
      int64_t s = 1;
      for (int k = rank - 1; k >= 0; --k) {
        const int64_t step = uniform(1, 3);
        strides[k] = s * step * (uniform(0, 3) == 0 ? -1 : 1);
        if (uniform(0, 5) == 0) strides[k] = 0;
        s *= std::max<int64_t>(shape[k], 1) * step;
      }
      break;
    }
    default:
      for (auto& s : strides) s = uniform(-7, 7);
  }
  return Place(std::move(shape), std::move(strides), uniform(0, 3));
}

std::vector<unsigned char> RandomBytes(std::mt19937_64& rng, size_t n) {
  std::vector<unsigned char> b(n);
  for (auto& x : b) x = static_cast<unsigned char>(rng());
  return b;
}

// One division-based address computation per element.
std::vector<unsigned char> NaiveGather(const unsigned char* storage,
                                       size_t itemsize, const Layout& layout,
                                       int64_t start, int64_t count) {
  std::vector<unsigned char> out(count * itemsize);
  for (int64_t i = 0; i < count; ++i) {
    int64_t rest = start + i, addr = layout.offset;
    for (size_t k = layout.shape.size(); k-- > 0;) {
      addr += (rest % layout.shape[k]) * layout.strides[k];
      rest /= layout.shape[k];
    }
    std::memcpy(out.data() + i * itemsize, storage + addr * itemsize, itemsize);
  }
  return out;
}

std::string Describe(const Layout& l, int64_t start, int64_t count) {
  return absl::StrCat("shape (", absl::StrJoin(l.shape, ","), ") strides (",
                      absl::StrJoin(l.strides, ","), ") offset ", l.offset,
                      " start ", start, " count ", count);
}

void ExpectGatherMatchesNaive(const View& v, size_t itemsize, int64_t start,
                              int64_t count, std::mt19937_64& rng) {
  ASSERT_TRUE(CheckLayoutInBounds(v.layout, v.storage_elements).ok());
  const auto storage = RandomBytes(rng, v.storage_elements * itemsize);
  std::vector<unsigned char> got(count * itemsize + 1, 0xee);
  Gather(storage.data(), itemsize, v.layout, start, count, got.data());
  const auto want =
      NaiveGather(storage.data(), itemsize, v.layout, start, count);
  EXPECT_TRUE(std::equal(want.begin(), want.end(), got.begin()))
      << "itemsize " << itemsize << " " << Describe(v.layout, start, count);
  EXPECT_EQ(got.back(), 0xee) << "wrote past the end";
}

TEST(GatherTest, RandomViewsMatchNaive) {
  std::mt19937_64 rng(42);
  const size_t itemsizes[] = {1, 2, 4, 8, 16, 3, 12};
  for (int iter = 0; iter < 3000; ++iter) {
    const View v = RandomView(rng, iter % 6);
    const int64_t n = Count(v.layout);
    const size_t itemsize = itemsizes[iter % std::size(itemsizes)];
    int64_t start = 0, count = n;
    if (n > 0 && iter % 2 == 1) {
      start = std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
      count = std::uniform_int_distribution<int64_t>(0, n - start)(rng);
    }
    ExpectGatherMatchesNaive(v, itemsize, start, count, rng);
    if (HasFailure()) return;
  }
}

TEST(GatherTest, LargeTransposesAnyRange) {
  std::mt19937_64 rng(7);
  // 2-D transposed (the tiled path), a 3-D permutation, a flipped transpose.
  const View views[] = {
      Place({300, 517}, {1, 300}, 0),
      Place({33, 40, 70}, {1, 33 * 70, 33}, 5),
      Place({129, 65}, {-1, 129}, 0),
      Place({64, 64}, {0, 1}, 0),  // broadcast rows
      Place({64, 64}, {1, 0}, 0),  // broadcast columns
  };
  for (const View& v : views) {
    const int64_t n = Count(v.layout);
    const int64_t ranges[][2] = {{0, n},       {1, n - 1},    {517, 3 * 517},
                                 {250, 10000}, {n - 3, 3},    {0, 1},
                                 {999, 54321}, {n / 2, n / 3}};
    for (const auto& r : ranges) {
      const int64_t start = std::min(r[0], n);
      const int64_t count = std::min(r[1], n - start);
      for (size_t itemsize : {size_t{1}, size_t{4}, size_t{16}, size_t{6}}) {
        ExpectGatherMatchesNaive(v, itemsize, start, count, rng);
      }
    }
  }
}

TEST(GatherTest, RankZeroAndRank64) {
  std::mt19937_64 rng(3);
  ExpectGatherMatchesNaive(Place({}, {}, 2), 8, 0, 1, rng);
  // 12 dims of 2 and 52 of 1, in a shuffled order with shuffled strides.
  Shape shape(kMaxRank, 1);
  for (int k = 0; k < 12; ++k) shape[k] = 2;
  std::shuffle(shape.begin(), shape.end(), rng);
  std::vector<int> perm(kMaxRank);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  Strides strides(kMaxRank);
  int64_t s = 1;
  for (int k : perm) {
    strides[k] = (k % 3 == 0 ? -s : s);
    s *= shape[k];
  }
  const View v = Place(shape, strides, 1);
  ExpectGatherMatchesNaive(v, 4, 0, 4096, rng);
  ExpectGatherMatchesNaive(v, 4, 1000, 2049, rng);
  ExpectGatherMatchesNaive(v, 2, 4095, 1, rng);
}

TEST(GatherTest, ContiguousAndEmpty) {
  std::mt19937_64 rng(5);
  View v;
  v.layout = Layout::Contiguous({4, 1, 6});
  v.layout.offset = 3;
  v.storage_elements = 27;
  ExpectGatherMatchesNaive(v, 8, 0, 24, rng);
  ExpectGatherMatchesNaive(v, 8, 7, 11, rng);
  unsigned char sentinel = 0x5a;
  Gather(nullptr, 4, Layout::Contiguous({3, 0}), 0, 0, &sentinel);
  EXPECT_EQ(sentinel, 0x5a);
}

TEST(GatherTest, GatherCastMatchesGatherThenCast) {
  std::mt19937_64 rng(11);
  const DType pairs[][2] = {
      {DType::kFloat64, DType::kFloat16},  {DType::kFloat32, DType::kBFloat16},
      {DType::kInt16, DType::kComplex128}, {DType::kComplex64, DType::kInt8},
      {DType::kUInt8, DType::kUInt8},      {DType::kBool, DType::kFloat32}};
  std::vector<View> views = {Place({300, 517}, {1, 300}, 0),  // > one block
                             Place({20000}, {1}, 3),          // contiguous
                             Place({}, {}, 1)};
  for (int i = 0; i < 200; ++i) views.push_back(RandomView(rng, i % 6));
  for (const auto& pair : pairs) {
    const DType from = pair[0], to = pair[1];
    for (const View& v : views) {
      const int64_t n = Count(v.layout);
      // Whole view, and a run that starts and ends mid-row.
      for (const int64_t start : {int64_t{0}, n / 3}) {
        const int64_t count = start == 0 ? n : n - start - n / 5;
        auto storage = RandomBytes(rng, v.storage_elements * ItemSize(from));
        if (from == DType::kFloat64 || from == DType::kComplex64 ||
            from == DType::kFloat32) {
          // Keep values in range so both sides are NumPy-defined.
          for (int64_t e = 0; e < v.storage_elements; ++e) {
            const double x = static_cast<double>(rng() % 2000) / 7 - 100;
            if (from == DType::kFloat64) {
              std::memcpy(&storage[e * 8], &x, 8);
            } else {
              const float f = static_cast<float>(x);
              std::memcpy(&storage[e * ItemSize(from)], &f, 4);
            }
          }
        }
        std::vector<unsigned char> gathered(count * ItemSize(from));
        Gather(storage.data(), ItemSize(from), v.layout, start, count,
               gathered.data());
        std::vector<unsigned char> want(count * ItemSize(to));
        Cast(gathered.data(), from, want.data(), to, count);
        std::vector<unsigned char> got(count * ItemSize(to) + 1, 0xee);
        GatherCast(storage.data(), from, v.layout, start, count, got.data(),
                   to);
        ASSERT_TRUE(std::equal(want.begin(), want.end(), got.begin()))
            << DTypeName(from) << " -> " << DTypeName(to) << " "
            << Describe(v.layout, start, count);
        ASSERT_EQ(got.back(), 0xee);
      }
    }
  }
}

// A handful of views through NumPy's own strided machinery.
constexpr char kAsStridedScript[] = R"py(
import sys
import numpy as np
from numpy.lib.stride_tricks import as_strided

out = sys.argv[1]
with open(f"{out}/cases.txt") as f:
    for i, line in enumerate(f):
        shape, strides, offset, size = line.split("|")
        shape = [int(x) for x in shape.split()]
        strides = [int(x) * 4 for x in strides.split()]
        storage = np.arange(int(size), dtype=np.int32)
        view = as_strided(storage[int(offset):], shape, strides)
        np.ascontiguousarray(view).tofile(f"{out}/view_{i}.bin")
)py";

TEST(GatherTest, MatchesNumPyAsStrided) {
  std::mt19937_64 rng(99);
  std::vector<View> views = {
      Place({5, 7}, {1, 5}, 0), Place({4, 3, 2}, {-6, 2, -1}, 2),
      Place({3, 4}, {0, -2}, 1), Place({2, 3, 4, 5}, {60, 1, 15, 3}, 0)};
  for (int i = 0; i < 12; ++i) views.push_back(RandomView(rng, 1 + i % 5));
  testing::TempDir dir;
  {
    std::ofstream cases(dir.path() + "/cases.txt");
    for (const View& v : views) {
      cases << absl::StrJoin(v.layout.shape, " ") << "|"
            << absl::StrJoin(v.layout.strides, " ") << "|" << v.layout.offset
            << "|" << v.storage_elements << "\n";
    }
  }
  const testing::CommandResult ran =
      testing::RunPython(kAsStridedScript, {dir.path()});
  ASSERT_EQ(ran.exit_code, 0) << ran.err;
  for (size_t i = 0; i < views.size(); ++i) {
    const View& v = views[i];
    std::vector<int32_t> storage(v.storage_elements);
    std::iota(storage.begin(), storage.end(), 0);
    auto want =
        testing::ReadBytes(absl::StrCat(dir.path(), "/view_", i, ".bin"));
    ASSERT_TRUE(want.ok()) << want.status();
    const int64_t n = Count(v.layout);
    ASSERT_EQ(want->size(), static_cast<size_t>(n) * 4);
    std::vector<unsigned char> got(n * 4);
    Gather(storage.data(), 4, v.layout, 0, n, got.data());
    EXPECT_TRUE(std::equal(got.begin(), got.end(), want->begin()))
        << Describe(v.layout, 0, n);
  }
}

}  // namespace
}  // namespace tensorcast
