#include "server/core/shape.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kBig = int64_t{1} << 32;

TEST(NumElementsTest, CountsElements) {
  EXPECT_EQ(*NumElements(Shape{}), 1);  // a 0-d tensor holds one element
  EXPECT_EQ(*NumElements(Shape{0}), 0);
  EXPECT_EQ(*NumElements(Shape{5}), 5);
  EXPECT_EQ(*NumElements(Shape{3, 4}), 12);
  EXPECT_EQ(*NumElements(Shape{2, 0, 3}), 0);
  EXPECT_EQ(*NumElements(Shape{std::numeric_limits<int64_t>::max()}),
            std::numeric_limits<int64_t>::max());
  EXPECT_EQ(*NumElements(Shape(kMaxRank, 1)), 1);
}

TEST(NumElementsTest, RefusesNegativeDimensions) {
  absl::StatusOr<int64_t> n = NumElements(Shape{3, -2});
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(n.status().message(), HasSubstr("negative dimension -2"));
  EXPECT_THAT(n.status().message(), HasSubstr("(3, -2)"));
  // Found even after an overflow.
  EXPECT_THAT(NumElements(Shape{kBig, kBig, -1}).status().message(),
              HasSubstr("negative"));
}

TEST(NumElementsTest, RefusesRankOverTheLimit) {
  absl::StatusOr<int64_t> n = NumElements(Shape(kMaxRank + 1, 1));
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(n.status().message(), HasSubstr("rank 65"));
}

TEST(NumElementsTest, RefusesOverflowEvenWithAZeroDimension) {
  for (const Shape& shape :
       {Shape{kBig, kBig}, Shape{kBig, 0, kBig}, Shape{0, kBig, kBig},
        Shape{std::numeric_limits<int64_t>::max(), 2}}) {
    absl::StatusOr<int64_t> n = NumElements(shape);
    ASSERT_FALSE(n.ok()) << ShapeToString(shape);
    EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(n.status().message(), HasSubstr("overflow"));
  }
  EXPECT_EQ(*NumElements(Shape{0, kBig}), 0);
}

TEST(NumBytesTest, MultipliesByItemSizeWithOverflowCheck) {
  EXPECT_EQ(*NumBytes(Shape{3, 4}, DType::kFloat32), 48);
  EXPECT_EQ(*NumBytes(Shape{}, DType::kComplex128), 16);
  EXPECT_EQ(*NumBytes(Shape{7}, DType::kBool), 7);
  EXPECT_EQ(*NumBytes(Shape{0, 9}, DType::kFloat64), 0);
  absl::StatusOr<int64_t> b =
      NumBytes(Shape{int64_t{1} << 61}, DType::kFloat64);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(b.status().message(), HasSubstr("float64"));
  EXPECT_FALSE(NumBytes(Shape{-1}, DType::kInt8).ok());
}

TEST(StridesTest, ContiguousAndFortran) {
  EXPECT_EQ(ContiguousStrides(Shape{2, 3, 4}), (Strides{12, 4, 1}));
  EXPECT_EQ(FortranStrides(Shape{2, 3, 4}), (Strides{1, 2, 6}));
  EXPECT_EQ(ContiguousStrides(Shape{}), Strides{});
  EXPECT_EQ(ContiguousStrides(Shape{5}), Strides{1});
  // Zero dimensions do not zero the outer strides.
  EXPECT_EQ(ContiguousStrides(Shape{2, 0, 3}), (Strides{3, 3, 1}));
  EXPECT_EQ(FortranStrides(Shape{2, 0, 3}), (Strides{1, 2, 2}));
}

TEST(LayoutTest, IsContiguous) {
  EXPECT_TRUE(Layout::Contiguous({3, 4}).IsContiguous());
  EXPECT_TRUE(Layout::Contiguous({}).IsContiguous());
  Layout transposed{{4, 3}, {1, 4}, 0};
  EXPECT_FALSE(transposed.IsContiguous());
  Layout every_other{{3}, {2}, 0};
  EXPECT_FALSE(every_other.IsContiguous());
  // Size-1 dimensions may have any stride; empty tensors are contiguous.
  Layout unit_dims{{1, 3, 1}, {99, 1, -7}, 5};
  EXPECT_TRUE(unit_dims.IsContiguous());
  Layout empty{{2, 0, 3}, {3, 3, 1}, 0};
  EXPECT_TRUE(empty.IsContiguous());
  // The offset does not matter.
  Layout sliced{{2, 2}, {2, 1}, 6};
  EXPECT_TRUE(sliced.IsContiguous());
}

// shape.h promises that empty tensors are contiguous whatever their strides.
TEST(LayoutTest, EmptyIsContiguousWhateverTheStrides) {
  Layout empty{{2, 0, 3}, {5, 7, 11}, 0};
  EXPECT_TRUE(empty.IsContiguous());
}

TEST(LayoutTest, CheckLayoutInBounds) {
  Layout c = Layout::Contiguous({3, 4});
  EXPECT_TRUE(CheckLayoutInBounds(c, 12).ok());
  EXPECT_FALSE(CheckLayoutInBounds(c, 11).ok());
  c.offset = 1;
  absl::Status s = CheckLayoutInBounds(c, 12);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("[1, 12]"));
  EXPECT_TRUE(CheckLayoutInBounds(c, 13).ok());

  // A reversed view: offset at the end, negative stride.
  Layout reversed{{5}, {-1}, 4};
  EXPECT_TRUE(CheckLayoutInBounds(reversed, 5).ok());
  reversed.offset = 3;
  EXPECT_FALSE(CheckLayoutInBounds(reversed, 5).ok());

  Layout broadcast{{1000, 3}, {0, 1}, 0};
  EXPECT_TRUE(CheckLayoutInBounds(broadcast, 3).ok());
  Layout empty{{0, 5}, {5, 1}, 100};
  EXPECT_TRUE(CheckLayoutInBounds(empty, 0).ok());
  Layout scalar{{}, {}, 2};
  EXPECT_TRUE(CheckLayoutInBounds(scalar, 3).ok());
  EXPECT_FALSE(CheckLayoutInBounds(scalar, 2).ok());

  Layout mismatched{{3, 4}, {1}, 0};
  EXPECT_THAT(CheckLayoutInBounds(mismatched, 100).message(),
              HasSubstr("rank"));
  Layout overflow{{3, 3}, {std::numeric_limits<int64_t>::max(), 1}, 0};
  EXPECT_THAT(CheckLayoutInBounds(overflow, 100).message(),
              HasSubstr("overflow"));
  Layout overflow_sum{{2, 2},
                      {std::numeric_limits<int64_t>::max() / 2 + 1,
                       std::numeric_limits<int64_t>::max() / 2 + 1},
                      0};
  EXPECT_FALSE(CheckLayoutInBounds(overflow_sum, 100).ok());
  Layout negative{{-1}, {1}, 0};
  EXPECT_FALSE(CheckLayoutInBounds(negative, 100).ok());
}

TEST(ShapeToStringTest, PrintsLikeNumPy) {
  EXPECT_EQ(ShapeToString(Shape{}), "()");
  EXPECT_EQ(ShapeToString(Shape{5}), "(5,)");
  EXPECT_EQ(ShapeToString(Shape{3, 4}), "(3, 4)");
  EXPECT_EQ(ShapeToString(Shape{2, 0, 3}), "(2, 0, 3)");
}

TEST(LayoutTest, CoalescedMergesContiguousDimsAndDropsOnes) {
  Layout c = Layout::Contiguous({2, 3, 4}).Coalesced();
  EXPECT_EQ(c.shape, (Shape{24}));
  EXPECT_EQ(c.strides, (Strides{1}));
  // A transposed matrix stays rank 2; size-1 dims go; the offset stays.
  Layout t{{4, 1, 3}, {1, 99, 4}, 5};
  Layout tc = t.Coalesced();
  EXPECT_EQ(tc.shape, (Shape{4, 3}));
  EXPECT_EQ(tc.strides, (Strides{1, 4}));
  EXPECT_EQ(tc.offset, 5);
  // A row slice of a wider matrix: rows cannot merge, columns are inner.
  Layout rows{{3, 4}, {10, 1}, 0};
  EXPECT_EQ(rows.Coalesced().shape, (Shape{3, 4}));
  // Negative strides merge when they step as one.
  Layout rev{{2, 3}, {-3, -1}, 5};
  EXPECT_EQ(rev.Coalesced().shape, (Shape{6}));
  EXPECT_EQ(rev.Coalesced().strides, (Strides{-1}));
  // Rank 0 and all-ones are a single element.
  EXPECT_TRUE(Layout::Contiguous({}).Coalesced().shape.empty());
  EXPECT_TRUE(Layout::Contiguous({1, 1}).Coalesced().shape.empty());
}

}  // namespace
}  // namespace tensorcast
