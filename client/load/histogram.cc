#include "client/load/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace tensorcast::load {

int Histogram::BucketIndex(int64_t value) {
  value = std::clamp<int64_t>(value, 0, kMaxValue);
  if (value < kSubBuckets) return static_cast<int>(value);
  // Highest set bit e >= kSubBucketBits; keep the kSubBucketBits bits below
  // it as the linear sub-bucket.
  const int e = std::bit_width(static_cast<uint64_t>(value)) - 1;
  const int shift = e - kSubBucketBits;
  const int64_t sub = (value >> shift) - kSubBuckets;
  return static_cast<int>(kSubBuckets + shift * kSubBuckets + sub);
}

int64_t Histogram::BucketLow(int index) {
  if (index < kSubBuckets) return index;
  const int shift = static_cast<int>((index - kSubBuckets) / kSubBuckets);
  const int64_t sub = (index - kSubBuckets) % kSubBuckets;
  return (kSubBuckets + sub) << shift;
}

int64_t Histogram::BucketHigh(int index) {
  if (index < kSubBuckets) return index;
  const int shift = static_cast<int>((index - kSubBuckets) / kSubBuckets);
  return BucketLow(index) + (int64_t{1} << shift) - 1;
}

void Histogram::RecordN(int64_t value, uint64_t count) {
  if (count == 0) return;
  value = std::clamp<int64_t>(value, 0, kMaxValue);
  const size_t index = static_cast<size_t>(BucketIndex(value));
  if (index >= counts_.size()) counts_.resize(index + 1, 0);
  counts_[index] += count;
  count_ += count;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<double>(value) * static_cast<double>(count);
}

void Histogram::Merge(const Histogram& other) {
  if (other.count_ == 0) return;
  if (other.counts_.size() > counts_.size()) {
    counts_.resize(other.counts_.size(), 0);
  }
  for (size_t i = 0; i < other.counts_.size(); ++i) {
    counts_[i] += other.counts_[i];
  }
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void Histogram::Reset() { *this = Histogram(); }

double Histogram::mean() const {
  return count_ == 0 ? 0 : sum_ / static_cast<double>(count_);
}

int64_t Histogram::Percentile(double p) const {
  if (count_ == 0) return 0;
  if (p <= 0) return min_;
  if (p >= 100) return max_;
  uint64_t rank = static_cast<uint64_t>(
      std::ceil(p / 100.0 * static_cast<double>(count_) - 1e-9));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const int index = static_cast<int>(i);
      const int64_t low = BucketLow(index);
      const int64_t mid = low + (BucketHigh(index) - low) / 2;
      return std::clamp(mid, min_, max_);
    }
  }
  return max_;
}

void Histogram::ForEachBucket(
    const std::function<void(int64_t, int64_t, uint64_t)>& fn) const {
  for (size_t i = 0; i < counts_.size(); ++i) {
    if (counts_[i] == 0) continue;
    const int index = static_cast<int>(i);
    fn(BucketLow(index), BucketHigh(index), counts_[i]);
  }
}

}  // namespace tensorcast::load
