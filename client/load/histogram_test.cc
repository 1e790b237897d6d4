#include "client/load/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace tensorcast::load {
namespace {

// Nearest rank, as Histogram::Percentile defines it.
int64_t ExactPercentile(const std::vector<int64_t>& sorted, double p) {
  if (p <= 0) return sorted.front();
  if (p >= 100) return sorted.back();
  size_t rank = static_cast<size_t>(
      std::ceil(p / 100.0 * static_cast<double>(sorted.size()) - 1e-9));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

TEST(HistogramTest, EmptyIsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), 0);
  EXPECT_EQ(h.Percentile(50), 0);
  EXPECT_EQ(h.mean(), 0);
}

TEST(HistogramTest, SmallValuesAreExact) {
  Histogram h;
  for (int64_t v = 0; v < Histogram::kSubBuckets; ++v) h.Record(v);
  for (int64_t v = 0; v < Histogram::kSubBuckets; ++v) {
    const double p = 100.0 * static_cast<double>(v + 1) /
                     static_cast<double>(Histogram::kSubBuckets);
    EXPECT_EQ(h.Percentile(p), v) << "p" << p;
  }
}

TEST(HistogramTest, BucketsCoverValuesWithBoundedWidth) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 200000; ++i) {
    const int64_t v = static_cast<int64_t>(
        rng() % static_cast<uint64_t>(Histogram::kMaxValue + 1));
    const int64_t small = static_cast<int64_t>(rng() % 100000);
    for (int64_t value : {v, small}) {
      const int index = Histogram::BucketIndex(value);
      const int64_t low = Histogram::BucketLow(index);
      const int64_t high = Histogram::BucketHigh(index);
      ASSERT_LE(low, value);
      ASSERT_GE(high, value);
      // Width at most 1/128 of the lower bound: <= 0.8% relative error.
      ASSERT_LE(static_cast<double>(high - low + 1),
                std::max(1.0, static_cast<double>(low) / 128.0));
      ASSERT_EQ(Histogram::BucketIndex(low), index);
      ASSERT_EQ(Histogram::BucketIndex(high), index);
      if (index > 0) {
        ASSERT_EQ(Histogram::BucketHigh(index - 1) + 1, low);
      }
    }
  }
}

TEST(HistogramTest, PercentilesWithinOnePercentOfExact) {
  std::mt19937_64 rng(42);
  // Latency-like: log-uniform from 1 µs to 1 h, in nanoseconds.
  std::uniform_real_distribution<double> exponent(3, std::log10(3.6e12));
  for (int trial = 0; trial < 5; ++trial) {
    Histogram h;
    std::vector<int64_t> samples;
    const int n = 1000 + trial * 20000;
    for (int i = 0; i < n; ++i) {
      const int64_t v = static_cast<int64_t>(std::pow(10.0, exponent(rng)));
      samples.push_back(v);
      h.Record(v);
    }
    std::sort(samples.begin(), samples.end());
    EXPECT_EQ(h.count(), static_cast<uint64_t>(n));
    EXPECT_EQ(h.min(), samples.front());
    EXPECT_EQ(h.max(), samples.back());
    for (double p : {0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9,
                     99.99, 100.0}) {
      const double exact = static_cast<double>(ExactPercentile(samples, p));
      const double got = static_cast<double>(h.Percentile(p));
      EXPECT_LE(std::abs(got - exact), 0.01 * exact)
          << "p" << p << " n=" << n << " exact " << exact << " got " << got;
    }
  }
}

TEST(HistogramTest, NarrowDistributionWithinOnePercent) {
  // Many samples in a few buckets: the typical unary-latency shape.
  std::mt19937_64 rng(3);
  std::normal_distribution<double> latency(180'000, 15'000);  // ns
  Histogram h;
  std::vector<int64_t> samples;
  for (int i = 0; i < 100000; ++i) {
    const int64_t v = std::max<int64_t>(1000, std::llround(latency(rng)));
    samples.push_back(v);
    h.Record(v);
  }
  std::sort(samples.begin(), samples.end());
  for (double p : {50.0, 90.0, 99.0, 99.9}) {
    const double exact = static_cast<double>(ExactPercentile(samples, p));
    EXPECT_NEAR(static_cast<double>(h.Percentile(p)), exact, 0.01 * exact);
  }
  double sum = 0;
  for (int64_t v : samples) sum += static_cast<double>(v);
  EXPECT_NEAR(h.mean(), sum / static_cast<double>(samples.size()), 1e-6 * sum);
}

TEST(HistogramTest, MergeEqualsRecordingEverything) {
  std::mt19937_64 rng(11);
  Histogram a, b, all;
  for (int i = 0; i < 50000; ++i) {
    const int64_t v = static_cast<int64_t>(rng() % 10'000'000'000ULL);
    (i % 3 == 0 ? a : b).Record(v);
    all.Record(v);
  }
  Histogram merged;
  merged.Merge(a);
  merged.Merge(b);
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.min(), all.min());
  EXPECT_EQ(merged.max(), all.max());
  for (double p = 0; p <= 100; p += 0.5) {
    EXPECT_EQ(merged.Percentile(p), all.Percentile(p)) << p;
  }
  Histogram empty;
  merged.Merge(empty);
  EXPECT_EQ(merged.count(), all.count());
}

TEST(HistogramTest, ClampsOutOfRange) {
  Histogram h;
  h.Record(-5);
  h.Record(Histogram::kMaxValue * 10);
  EXPECT_EQ(h.min(), 0);
  EXPECT_EQ(h.max(), Histogram::kMaxValue);
  h.RecordN(1000, 8);
  EXPECT_EQ(h.count(), 10u);
  EXPECT_NEAR(static_cast<double>(h.Percentile(50)), 1000, 10);
}

TEST(HistogramTest, PercentilesAreMonotonicAndWithinMinMax) {
  std::mt19937_64 rng(5);
  Histogram h;
  for (int i = 0; i < 1000; ++i)
    h.Record(5000 + static_cast<int64_t>(rng() % 900));
  int64_t last = 0;
  for (double p = 0; p <= 100; p += 0.1) {
    const int64_t v = h.Percentile(p);
    EXPECT_GE(v, last);
    EXPECT_GE(v, h.min());
    EXPECT_LE(v, h.max());
    last = v;
  }
  uint64_t total = 0;
  h.ForEachBucket([&](int64_t low, int64_t high, uint64_t count) {
    EXPECT_LE(low, high);
    total += count;
  });
  EXPECT_EQ(total, h.count());
}

}  // namespace
}  // namespace tensorcast::load
