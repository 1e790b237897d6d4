// Histogram: a log-bucketed histogram of non-negative integer values (the
// load tool records nanoseconds) with bounded relative error, in the manner
// of HdrHistogram. Each power of two is split into 128 linear sub-buckets,
// so a bucket is at most 1/128 of its lower bound wide and a reported value
// (the bucket's midpoint, clamped to the exact min and max) is within 0.4%
// of a recorded one. Values below 128 are exact; values above kMaxValue
// (one hour in ns) are recorded as kMaxValue. Memory grows with the largest
// value recorded (about 14 KiB up to 1 s, 37 KiB up to an hour).
//
// Not thread-safe: give each thread its own and Merge() them afterwards.
#ifndef TENSORCAST_CLIENT_LOAD_HISTOGRAM_H_
#define TENSORCAST_CLIENT_LOAD_HISTOGRAM_H_

#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

namespace tensorcast::load {

class Histogram {
 public:
  static constexpr int kSubBucketBits = 7;
  static constexpr int64_t kSubBuckets = int64_t{1} << kSubBucketBits;
  static constexpr int64_t kMaxValue = int64_t{3600} * 1000 * 1000 * 1000;

  void Record(int64_t value) { RecordN(value, 1); }
  void RecordN(int64_t value, uint64_t count);
  void Merge(const Histogram& other);
  void Reset();

  uint64_t count() const { return count_; }
  // 0 when empty.
  int64_t min() const { return count_ == 0 ? 0 : min_; }
  int64_t max() const { return count_ == 0 ? 0 : max_; }
  double mean() const;
  // The value at nearest rank ceil(p/100 * count): p in [0, 100]; p <= 0 is
  // min(), p >= 100 is max(). 0 when empty.
  int64_t Percentile(double p) const;

  // Calls fn(low, high, count) for each non-empty bucket in value order;
  // the bucket holds values in [low, high].
  void ForEachBucket(
      const std::function<void(int64_t, int64_t, uint64_t)>& fn) const;

  // The bucket a value falls in and that bucket's bounds (inclusive).
  static int BucketIndex(int64_t value);
  static int64_t BucketLow(int index);
  static int64_t BucketHigh(int index);

 private:
  std::vector<uint64_t> counts_;  // grown to the highest index recorded
  uint64_t count_ = 0;
  int64_t min_ = std::numeric_limits<int64_t>::max();
  int64_t max_ = 0;
  double sum_ = 0;
};

}  // namespace tensorcast::load

#endif  // TENSORCAST_CLIENT_LOAD_HISTOGRAM_H_
