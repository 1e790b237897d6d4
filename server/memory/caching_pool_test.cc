#include "server/memory/caching_pool.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/caller_message.h"
#include "server/memory/counting_resource_test_util.h"
#include "server/memory/fence.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB = 1024 * kKiB;

class CachingPoolTest : public ::testing::Test {
 protected:
  void* Alloc(CachingPool& pool, int64_t bytes) {
    absl::StatusOr<void*> p = pool.Allocate(static_cast<size_t>(bytes));
    EXPECT_TRUE(p.ok()) << p.status();
    if (!p.ok()) return nullptr;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(*p) % MemoryResource::kAlignment, 0u);
    return *p;
  }

  void* Alloc(CachingPool& pool, int64_t bytes, StreamId stream) {
    absl::StatusOr<void*> p = pool.Allocate(static_cast<size_t>(bytes), stream);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *p : nullptr;
  }

  testing::CountingResource upstream_;
};

// A fence that a test passes by hand.
class FakeFence final : public Fence {
 public:
  bool Passed() const override { return passed_.load(); }
  void Pass() { passed_.store(true); }

 private:
  std::atomic<bool> passed_{false};
};

constexpr StreamId kStreamA = 0x1000;
constexpr StreamId kStreamB = 0x2000;

TEST_F(CachingPoolTest, RoundsTo512AndZeroBytesGetsAUniqueBlock) {
  CachingPool pool("cpu", &upstream_, 0);
  EXPECT_EQ(pool.device(), "cpu");
  void* a = Alloc(pool, 0);
  void* b = Alloc(pool, 0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  EXPECT_EQ(pool.Stats().allocated_bytes, 1024);
  void* c = Alloc(pool, 1);
  EXPECT_EQ(pool.Stats().allocated_bytes, 1536);
  void* d = Alloc(pool, 513);
  EXPECT_EQ(pool.Stats().allocated_bytes, 2560);
  std::memset(d, 7, 513);
  for (void* p : {a, b, c, d}) pool.Free(p);
  EXPECT_EQ(pool.Stats().allocated_bytes, 0);
}

TEST_F(CachingPoolTest, SmallBlocksAreCarvedFromOneTwoMiBSegment) {
  CachingPool pool("cpu", &upstream_, 0);
  char* a = static_cast<char*>(Alloc(pool, 1000));
  char* b = static_cast<char*>(Alloc(pool, 1024));
  char* c = static_cast<char*>(Alloc(pool, kMiB));
  EXPECT_EQ(upstream_.allocations(), 1);
  EXPECT_EQ(b, a + 1024);
  EXPECT_EQ(c, b + 1024);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.segment_count, 1);
  EXPECT_EQ(s.reserved_bytes, 2 * kMiB);
  EXPECT_EQ(s.allocated_bytes, 2048 + kMiB);
  EXPECT_EQ(s.cache_misses, 1);
  EXPECT_EQ(s.cache_hits, 2);  // b and c came from the split remainder
  // The rest of the segment (1 MiB - 2 KiB) still serves small requests.
  Alloc(pool, kMiB - 2048);
  EXPECT_EQ(upstream_.allocations(), 1);
  Alloc(pool, 1);
  EXPECT_EQ(upstream_.allocations(), 2);
}

TEST_F(CachingPoolTest, LargeSegmentsRoundUpToTwoMiB) {
  CachingPool pool("cpu", &upstream_, 0);
  Alloc(pool, 3 * kMiB);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.reserved_bytes, 4 * kMiB);
  // A 1 MiB remainder is no use to the large pool: it stays in the block.
  EXPECT_EQ(s.allocated_bytes, 4 * kMiB);
  Alloc(pool, kMiB + 1);  // just over small: a large block
  s = pool.Stats();
  EXPECT_EQ(s.reserved_bytes, 6 * kMiB);
  EXPECT_EQ(s.segment_count, 2);
  EXPECT_EQ(upstream_.allocations(), 2);
}

TEST_F(CachingPoolTest, LargeCachedBlocksAreSplitAndTheRemainderReused) {
  CachingPool pool("cpu", &upstream_, 0);
  void* big = Alloc(pool, 10 * kMiB);
  pool.Free(big);
  char* a = static_cast<char*>(Alloc(pool, 3 * kMiB));
  EXPECT_EQ(a, big);
  EXPECT_EQ(pool.Stats().allocated_bytes, 3 * kMiB);
  char* b = static_cast<char*>(Alloc(pool, 7 * kMiB));
  EXPECT_EQ(b, a + 3 * kMiB);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.cache_hits, 2);
  EXPECT_EQ(s.cache_misses, 1);
  EXPECT_EQ(s.segment_count, 1);
  EXPECT_EQ(upstream_.allocations(), 1);
}

TEST_F(CachingPoolTest, ReuseIsACacheHitWithoutGoingUpstream) {
  CachingPool pool("cpu", &upstream_, 0);
  void* a = Alloc(pool, 1000);
  pool.Free(a);
  void* b = Alloc(pool, 1000);
  EXPECT_EQ(a, b);
  pool.Free(b);
  void* big = Alloc(pool, 64 * kMiB);
  pool.Free(big);
  EXPECT_EQ(Alloc(pool, 64 * kMiB), big);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.cache_hits, 2);
  EXPECT_EQ(s.cache_misses, 2);
  EXPECT_EQ(s.alloc_count, 4);
  EXPECT_EQ(s.free_count, 3);
  EXPECT_EQ(upstream_.allocations(), 2);
  EXPECT_EQ(upstream_.deallocations(), 0);
}

TEST_F(CachingPoolTest, BestFitPicksTheSmallestCachedBlockThatFits) {
  CachingPool pool("cpu", &upstream_, 0);
  void* four = Alloc(pool, 4 * kMiB);
  void* eight = Alloc(pool, 8 * kMiB);
  void* six = Alloc(pool, 6 * kMiB);
  for (void* p : {four, eight, six}) pool.Free(p);
  EXPECT_EQ(Alloc(pool, 5 * kMiB), six);
  EXPECT_EQ(Alloc(pool, 3 * kMiB), four);
  EXPECT_EQ(Alloc(pool, 7 * kMiB), eight);
  EXPECT_EQ(upstream_.allocations(), 3);
}

TEST_F(CachingPoolTest, FreeingInAnyOrderCoalescesBackToOneSegment) {
  CachingPool pool("cpu", &upstream_, 0);
  pool.Free(Alloc(pool, 8 * kMiB));
  std::vector<int> order = {0, 1, 2, 3};
  int permutations = 0;
  do {
    std::vector<void*> blocks;
    for (int i = 0; i < 4; ++i) blocks.push_back(Alloc(pool, 2 * kMiB));
    for (int i : order) pool.Free(blocks[i]);
    // Only a whole, merged 8 MiB block can serve this without upstream.
    void* whole = Alloc(pool, 8 * kMiB);
    EXPECT_EQ(whole, blocks[0]);
    pool.Free(whole);
    ++permutations;
  } while (std::next_permutation(order.begin(), order.end()));
  EXPECT_EQ(permutations, 24);
  EXPECT_EQ(upstream_.allocations(), 1);

  // The same for small blocks: after any order, EmptyCache finds the segment
  // whole and gives it back.
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    std::vector<void*> blocks;
    for (int i = 0; i < 12; ++i) blocks.push_back(Alloc(pool, 512 * (i + 1)));
    std::shuffle(blocks.begin(), blocks.end(), rng);
    for (void* p : blocks) pool.Free(p);
    EXPECT_EQ(pool.Stats().segment_count, 2);
  }
  EXPECT_EQ(upstream_.allocations(), 2);
  EXPECT_EQ(pool.EmptyCache(), 10 * kMiB);
  EXPECT_EQ(pool.Stats().reserved_bytes, 0);
  EXPECT_EQ(upstream_.outstanding_bytes(), 0);
}

TEST_F(CachingPoolTest, OverTheLimitIsResourceExhaustedWithTheFigures) {
  CachingPool pool("cpu", &upstream_, 128 * kMiB);
  pool.Free(Alloc(pool, 120 * kMiB));
  void* held = Alloc(pool, 100 * kMiB);  // 20 MiB stay cached beside it
  ASSERT_NE(held, nullptr);
  const int64_t upstream_calls = upstream_.allocations();
  absl::StatusOr<void*> p = pool.Allocate(64 * kMiB);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(p.status().message(),
            "out of memory on device cpu: tried to allocate 64.00 MiB; limit "
            "128.00 MiB, 100.00 MiB allocated, 20.00 MiB cached (reserved but "
            "unallocated)");
  // The request alone, for callers that must not see the device's figures.
  EXPECT_EQ(CallerMessage(p.status()),
            "out of memory on device cpu: tried to allocate 64.00 MiB");
  EXPECT_EQ(upstream_.allocations(), upstream_calls);  // never asked
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.limit_bytes, 128 * kMiB);
  EXPECT_EQ(s.reserved_bytes, 120 * kMiB);
  EXPECT_LE(s.peak_reserved_bytes, s.limit_bytes);
  // Cached room is still used for what fits.
  EXPECT_TRUE(pool.Allocate(20 * kMiB).ok());
}

TEST_F(CachingPoolTest, ARequestBiggerThanTheLimitFails) {
  CachingPool pool("cuda:1", &upstream_, 4 * kMiB);
  absl::StatusOr<void*> p = pool.Allocate(5 * kMiB);
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(),
              HasSubstr("out of memory on device cuda:1: tried to allocate "
                        "5.00 MiB; limit 4.00 MiB, 0 B allocated, 0 B cached"));
  EXPECT_EQ(upstream_.allocations(), 0);
  absl::StatusOr<void*> huge = pool.Allocate(SIZE_MAX);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(CachingPoolTest, CachedSegmentsAreReleasedToMakeRoomUnderTheLimit) {
  CachingPool pool("cpu", &upstream_, 8 * kMiB);
  void* a = Alloc(pool, 6 * kMiB);
  pool.Free(a);
  EXPECT_EQ(pool.Stats().reserved_bytes, 6 * kMiB);
  // 7 MiB does not fit the cached 6 MiB, and 6 + 8 would pass the limit.
  void* b = Alloc(pool, 7 * kMiB);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(upstream_.deallocations(), 1);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.reserved_bytes, 8 * kMiB);
  EXPECT_EQ(s.segment_count, 1);
  EXPECT_EQ(s.peak_reserved_bytes, 8 * kMiB);
  EXPECT_EQ(s.cache_misses, 2);
}

TEST_F(CachingPoolTest, CachedSegmentsAreReleasedWhenUpstreamFails) {
  upstream_.set_capacity(10 * kMiB);
  CachingPool pool("cpu", &upstream_, 0);
  pool.Free(Alloc(pool, 6 * kMiB));
  void* b = Alloc(pool, 8 * kMiB);  // upstream refuses 6 + 8, then 8 fits
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(upstream_.failures(), 1);
  EXPECT_EQ(upstream_.deallocations(), 1);
  EXPECT_EQ(pool.Stats().reserved_bytes, 8 * kMiB);

  absl::StatusOr<void*> c = pool.Allocate(4 * kMiB);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.status().message(),
              HasSubstr("out of memory on device cpu: tried to allocate 4.00 "
                        "MiB; 8.00 MiB allocated, 0 B cached (reserved but "
                        "unallocated); counting(host): test capacity reached"));
}

TEST_F(CachingPoolTest, NearTheLimitASmallRequestGetsASegmentOfItsOwnSize) {
  CachingPool pool("cpu", &upstream_, 3 * kMiB);
  Alloc(pool, 3 * kMiB / 2);        // a 2 MiB large segment
  void* small = Alloc(pool, kKiB);  // a 2 MiB small segment would not fit
  ASSERT_NE(small, nullptr);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.reserved_bytes, 2 * kMiB + kKiB);
  EXPECT_EQ(s.segment_count, 2);
  EXPECT_LE(s.peak_reserved_bytes, 3 * kMiB);
}

TEST_F(CachingPoolTest, EmptyCacheReturnsReservedToAllocated) {
  CachingPool pool("cpu", &upstream_, 0);
  void* a = Alloc(pool, 2 * kMiB);
  void* b = Alloc(pool, 4 * kMiB);
  void* c = Alloc(pool, 6 * kMiB);
  pool.Free(b);
  pool.Free(c);
  EXPECT_EQ(pool.Stats().reserved_bytes, 12 * kMiB);
  EXPECT_EQ(pool.EmptyCache(), 10 * kMiB);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.reserved_bytes, s.allocated_bytes);
  EXPECT_EQ(s.reserved_bytes, 2 * kMiB);
  EXPECT_EQ(s.peak_reserved_bytes, 12 * kMiB);
  EXPECT_EQ(pool.EmptyCache(), 0);
  pool.Free(a);
  EXPECT_EQ(pool.EmptyCache(), 2 * kMiB);
  s = pool.Stats();
  EXPECT_EQ(s.reserved_bytes, 0);
  EXPECT_EQ(s.segment_count, 0);
  EXPECT_EQ(upstream_.outstanding_bytes(), 0);
  EXPECT_EQ(upstream_.mismatches(), 0);
}

TEST_F(CachingPoolTest, StatsAndPeaks) {
  CachingPool pool("cpu", &upstream_, 64 * kMiB);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.allocated_bytes, 0);
  EXPECT_EQ(s.limit_bytes, 64 * kMiB);
  void* a = Alloc(pool, 10 * kMiB);
  void* b = Alloc(pool, 4 * kKiB);
  s = pool.Stats();
  EXPECT_EQ(s.allocated_bytes, 10 * kMiB + 4 * kKiB);
  EXPECT_EQ(s.reserved_bytes, 12 * kMiB);
  EXPECT_EQ(s.active_blocks, 2);
  pool.Free(a);
  void* c = Alloc(pool, 2 * kMiB);
  s = pool.Stats();
  EXPECT_EQ(s.allocated_bytes, 2 * kMiB + 4 * kKiB);
  EXPECT_EQ(s.peak_allocated_bytes, 10 * kMiB + 4 * kKiB);
  EXPECT_EQ(s.peak_reserved_bytes, 12 * kMiB);
  EXPECT_EQ(s.alloc_count, 3);
  EXPECT_EQ(s.free_count, 1);
  EXPECT_EQ(s.cache_hits, 1);
  EXPECT_EQ(s.cache_misses, 2);
  EXPECT_EQ(s.segment_count, 2);
  EXPECT_EQ(s.active_blocks, 2);
  pool.Free(b);
  pool.Free(c);
  s = pool.Stats();
  EXPECT_EQ(s.allocated_bytes, 0);
  EXPECT_EQ(s.active_blocks, 0);
  EXPECT_EQ(s.reserved_bytes, 12 * kMiB);
}

TEST_F(CachingPoolTest, FreeOfNullIsANoOp) {
  CachingPool pool("cpu", &upstream_, 0);
  pool.Free(nullptr);
  EXPECT_EQ(pool.Stats().free_count, 0);
}

TEST_F(CachingPoolTest, FreeOfAnUnknownPointerIsABug) {
  CachingPool pool("cpu", &upstream_, 0);
  void* a = Alloc(pool, 100);
  int local = 0;
  // Debug builds assert; release builds log and ignore it.
  EXPECT_DEBUG_DEATH(pool.Free(&local), "unknown pointer");
  pool.Free(a);
  EXPECT_DEBUG_DEATH(pool.Free(a), "unknown pointer");  // double free
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.free_count, 1);
  EXPECT_EQ(s.allocated_bytes, 0);
}

TEST_F(CachingPoolTest, DestructorReturnsEverySegmentUpstream) {
  {
    CachingPool pool("cpu", &upstream_, 0);
    Alloc(pool, 100);
    Alloc(pool, 5 * kMiB);
    pool.Free(Alloc(pool, 20 * kMiB));
    void* split = Alloc(pool, 12 * kMiB);
    ASSERT_NE(split, nullptr);
    EXPECT_GT(upstream_.outstanding_bytes(), 0);
  }
  EXPECT_EQ(upstream_.outstanding_bytes(), 0);
  EXPECT_EQ(upstream_.outstanding_blocks(), 0);
  EXPECT_EQ(upstream_.mismatches(), 0);
}

TEST_F(CachingPoolTest, ConcurrentAllocateAndFreeKeepStatsConsistent) {
  constexpr int64_t kLimit = 96 * kMiB;
  CachingPool pool("cpu", &upstream_, kLimit);
  constexpr int kThreads = 4;
  constexpr int kOps = 20000;
  std::atomic<int64_t> failures{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(1000 + t);
      struct Held {
        unsigned char* p;
        size_t size;
      };
      std::vector<Held> held;
      auto release = [&](size_t i) {
        // Each block still carries this thread's tag at both ends: no other
        // allocation overlapped it.
        EXPECT_EQ(held[i].p[0], t);
        EXPECT_EQ(held[i].p[held[i].size - 1], t);
        pool.Free(held[i].p);
        held[i] = held.back();
        held.pop_back();
      };
      for (int op = 0; op < kOps; ++op) {
        if (held.size() < 32 && (held.empty() || rng() % 2 == 0)) {
          size_t size =
              rng() % 10 == 0 ? 1 + rng() % (6 * kMiB) : rng() % (64 * kKiB);
          absl::StatusOr<void*> p = pool.Allocate(size);
          if (!p.ok()) {
            EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
            ++failures;
            continue;
          }
          if (size == 0) continue;  // nothing to tag; leave it to the end
          auto* bytes = static_cast<unsigned char*>(*p);
          bytes[0] = t;
          bytes[size - 1] = t;
          held.push_back({bytes, size});
        } else {
          release(rng() % held.size());
        }
      }
      while (!held.empty()) release(held.size() - 1);
    });
  }
  // Readers and cache flushes race with the workers.
  std::thread observer([&] {
    while (!done.load()) {
      PoolStats s = pool.Stats();
      EXPECT_LE(s.allocated_bytes, s.reserved_bytes);
      EXPECT_LE(s.reserved_bytes, kLimit);
      pool.EmptyCache();
      std::this_thread::yield();
    }
  });
  for (std::thread& t : threads) t.join();
  done = true;
  observer.join();

  PoolStats s = pool.Stats();
  // Zero-byte blocks were left allocated on purpose; count them out.
  const int64_t zero_blocks = s.active_blocks;
  EXPECT_EQ(s.allocated_bytes, zero_blocks * 512);
  EXPECT_EQ(s.alloc_count, s.free_count + zero_blocks);
  EXPECT_EQ(s.alloc_count + failures.load(), s.cache_hits + s.cache_misses);
  EXPECT_LE(s.peak_reserved_bytes, kLimit);
  EXPECT_LE(s.peak_allocated_bytes, s.peak_reserved_bytes);
  EXPECT_GT(s.cache_hits, s.cache_misses);
  EXPECT_EQ(upstream_.outstanding_bytes(), s.reserved_bytes);
  EXPECT_EQ(upstream_.mismatches(), 0);
}

TEST_F(CachingPoolTest, AfterAStressEverythingGoesBackUpstream) {
  CachingPool pool("cpu", &upstream_, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<void*> held;
      for (int op = 0; op < 5000; ++op) {
        if (held.size() < 16 && rng() % 3 != 0) {
          absl::StatusOr<void*> p = pool.Allocate(rng() % (3 * kMiB));
          ASSERT_TRUE(p.ok());
          held.push_back(*p);
        } else if (!held.empty()) {
          size_t i = rng() % held.size();
          pool.Free(held[i]);
          held.erase(held.begin() + i);
        }
      }
      for (void* p : held) pool.Free(p);
    });
  }
  for (std::thread& t : threads) t.join();
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.allocated_bytes, 0);
  EXPECT_EQ(s.active_blocks, 0);
  EXPECT_EQ(s.alloc_count, s.free_count);
  EXPECT_EQ(pool.EmptyCache(), s.reserved_bytes);
  s = pool.Stats();
  EXPECT_EQ(s.reserved_bytes, 0);
  EXPECT_EQ(s.segment_count, 0);
  EXPECT_EQ(upstream_.outstanding_bytes(), 0);
  EXPECT_EQ(upstream_.allocations(), upstream_.deallocations());
}

TEST_F(CachingPoolTest, APendingBlockWaitsForItsFenceBeforeAnotherStream) {
  CachingPool pool("cuda:0", &upstream_, 0);
  void* p = Alloc(pool, 4 * kMiB, kStreamA);
  auto fence = std::make_shared<FakeFence>();
  pool.Free(p, kStreamA, fence);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.pending_free_bytes, 4 * kMiB);
  EXPECT_EQ(s.allocated_bytes, 0);
  EXPECT_EQ(s.reserved_bytes, 4 * kMiB);
  EXPECT_EQ(s.free_count, 1);

  // Another stream, and the host, get new segments.
  void* on_b = Alloc(pool, 4 * kMiB, kStreamB);
  void* on_host = Alloc(pool, 4 * kMiB);
  EXPECT_NE(on_b, p);
  EXPECT_NE(on_host, p);
  EXPECT_EQ(upstream_.allocations(), 3);
  EXPECT_EQ(pool.Stats().pending_free_bytes, 4 * kMiB);

  // The stream that freed it gets it back at once: stream order is enough.
  EXPECT_EQ(Alloc(pool, 4 * kMiB, kStreamA), p);
  s = pool.Stats();
  EXPECT_EQ(s.pending_free_bytes, 0);
  EXPECT_EQ(s.cache_hits, 1);
  EXPECT_EQ(s.cache_misses, 3);

  // Once the fence passes, any stream may have it.
  pool.Free(p, kStreamA, fence);
  EXPECT_EQ(pool.Stats().pending_free_bytes, 4 * kMiB);
  fence->Pass();
  EXPECT_EQ(Alloc(pool, 4 * kMiB, kStreamB), p);
  s = pool.Stats();
  EXPECT_EQ(s.pending_free_bytes, 0);
  EXPECT_EQ(s.allocated_bytes, 12 * kMiB);
  EXPECT_EQ(upstream_.allocations(), 3);
  for (void* q : {p, on_b, on_host}) pool.Free(q);
}

TEST_F(CachingPoolTest, AFenceOnTheHostStreamOnlyEverWaits) {
  CachingPool pool("cpu", &upstream_, 0);
  void* p = Alloc(pool, 4 * kMiB);
  auto fence = std::make_shared<FakeFence>();
  pool.Free(p, kNoStream, fence);
  void* q = Alloc(pool, 4 * kMiB);  // kNoStream is never "the same stream"
  EXPECT_NE(q, p);
  fence->Pass();
  EXPECT_EQ(Alloc(pool, 4 * kMiB), p);
  // A stream without a fence: reusable by everyone at once, as before.
  pool.Free(q, kStreamA);
  EXPECT_EQ(Alloc(pool, 4 * kMiB, kStreamB), q);
  EXPECT_EQ(upstream_.allocations(), 2);
}

TEST_F(CachingPoolTest, SameStreamReuseSplitsAndTheRestStaysPending) {
  CachingPool pool("cuda:0", &upstream_, 0);
  char* p = static_cast<char*>(Alloc(pool, 64 * kKiB, kStreamA));
  auto fence = std::make_shared<FakeFence>();
  pool.Free(p, kStreamA, fence);
  // Best fit: the pending 64 KiB beats the free rest of the segment.
  EXPECT_EQ(Alloc(pool, 16 * kKiB, kStreamA), p);
  EXPECT_EQ(pool.Stats().pending_free_bytes, 48 * kKiB);
  // Stream B is served from past the pending block.
  char* b = static_cast<char*>(Alloc(pool, 16 * kKiB, kStreamB));
  EXPECT_GE(b, p + 64 * kKiB);
  fence->Pass();
  EXPECT_EQ(Alloc(pool, 48 * kKiB, kStreamB), p + 16 * kKiB);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.pending_free_bytes, 0);
  EXPECT_EQ(s.segment_count, 1);
  EXPECT_EQ(s.allocated_bytes, 80 * kKiB);
}

TEST_F(CachingPoolTest, CoalescingWaitsForTheFence) {
  CachingPool pool("cpu", &upstream_, 0);
  pool.Free(Alloc(pool, 8 * kMiB));
  std::vector<char*> blocks;
  for (int i = 0; i < 4; ++i) {
    blocks.push_back(static_cast<char*>(Alloc(pool, 2 * kMiB, kStreamA)));
  }
  auto fence = std::make_shared<FakeFence>();
  pool.Free(blocks[1], kStreamA, fence);
  pool.Free(blocks[0], kStreamA);
  pool.Free(blocks[2], kStreamA);
  pool.Free(blocks[3], kStreamA);
  // 2 MiB free, 2 MiB pending, 4 MiB free: no 6 MiB in one piece.
  void* six = Alloc(pool, 6 * kMiB, kStreamB);
  EXPECT_EQ(upstream_.allocations(), 2);
  pool.Free(six);
  fence->Pass();
  // Merged into the whole 8 MiB again, without going upstream.
  EXPECT_EQ(Alloc(pool, 8 * kMiB, kStreamB), blocks[0]);
  EXPECT_EQ(upstream_.allocations(), 2);
  EXPECT_EQ(pool.Stats().pending_free_bytes, 0);
}

TEST_F(CachingPoolTest, EmptyCacheSkipsSegmentsWithPendingBlocks) {
  CachingPool pool("cpu", &upstream_, 0);
  void* p = Alloc(pool, 4 * kMiB, kStreamA);
  void* q = Alloc(pool, 2 * kMiB);
  auto fence = std::make_shared<FakeFence>();
  pool.Free(q);
  pool.Free(p, kStreamA, fence);
  EXPECT_EQ(pool.EmptyCache(), 2 * kMiB);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.reserved_bytes, 4 * kMiB);
  EXPECT_EQ(s.pending_free_bytes, 4 * kMiB);
  EXPECT_EQ(s.segment_count, 1);
  fence->Pass();
  EXPECT_EQ(pool.EmptyCache(), 4 * kMiB);
  s = pool.Stats();
  EXPECT_EQ(s.reserved_bytes, 0);
  EXPECT_EQ(s.pending_free_bytes, 0);
  EXPECT_EQ(upstream_.outstanding_bytes(), 0);
}

TEST_F(CachingPoolTest, PendingBlocksAreNotReleasedUnderPressure) {
  CachingPool pool("cuda:0", &upstream_, 8 * kMiB);
  char* p = static_cast<char*>(Alloc(pool, 6 * kMiB, kStreamA));
  auto fence = std::make_shared<FakeFence>();
  pool.Free(p, kStreamA, fence);
  absl::StatusOr<void*> on_b = pool.Allocate(4 * kMiB, kStreamB);
  ASSERT_FALSE(on_b.ok());
  EXPECT_EQ(on_b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(on_b.status().message(),
            "out of memory on device cuda:0: tried to allocate 4.00 MiB; "
            "limit 8.00 MiB, 0 B allocated, 0 B cached (reserved but "
            "unallocated), 6.00 MiB freed but pending on a stream");
  EXPECT_EQ(upstream_.deallocations(), 0);
  // Stream A may use it: 4 MiB of it, the other 2 MiB still pending.
  EXPECT_EQ(Alloc(pool, 4 * kMiB, kStreamA), p);
  EXPECT_EQ(pool.Stats().pending_free_bytes, 2 * kMiB);
  fence->Pass();
  EXPECT_EQ(Alloc(pool, 2 * kMiB, kStreamB), p + 4 * kMiB);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.pending_free_bytes, 0);
  EXPECT_EQ(s.reserved_bytes, 6 * kMiB);
  EXPECT_EQ(s.allocated_bytes, 6 * kMiB);
}

// Four streams (one a thread) allocate, tag and free, a third of the frees
// behind fences that another thread passes at random. No block freed behind
// a fence that has not passed may be handed to another stream; at the end,
// with every fence passed, the pool gives everything back.
TEST_F(CachingPoolTest, StreamStressWithRandomFencesEndsConsistent) {
  CachingPool pool("cuda:0", &upstream_, 0);
  struct PendingRange {
    uintptr_t begin;
    uintptr_t end;
    StreamId stream;
    std::shared_ptr<FakeFence> fence;
  };
  std::mutex mu;  // guards `ranges` and `unpassed`
  std::vector<PendingRange> ranges;
  std::vector<std::shared_ptr<FakeFence>> unpassed;
  std::atomic<int64_t> violations{0};

  // After stream `stream` got [begin, end): no other stream's range behind
  // an unpassed fence overlaps it (fences only ever pass, so unpassed now
  // means unpassed when the pool handed it out). Its own ranges there are
  // reused and drop out (the pool may split them; we do not model that).
  auto check_allocation = [&](StreamId stream, uintptr_t begin, uintptr_t end) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<PendingRange> kept;
    for (PendingRange& r : ranges) {
      if (r.fence->Passed()) continue;
      if (r.end <= begin || end <= r.begin) {
        kept.push_back(std::move(r));
      } else if (r.stream != stream) {
        ++violations;
        kept.push_back(std::move(r));
      }  // else: reused by its own stream (all of it, as far as we know)
    }
    ranges = std::move(kept);
  };

  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      const StreamId stream = kStreamA * (t + 1);
      std::mt19937 rng(500 + t);
      struct Held {
        unsigned char* p;
        size_t size;
      };
      std::vector<Held> held;
      auto release = [&](size_t i) {
        Held h = held[i];
        EXPECT_EQ(h.p[0], t);
        EXPECT_EQ(h.p[h.size - 1], t);
        held[i] = held.back();
        held.pop_back();
        if (rng() % 3 != 0) {
          pool.Free(h.p, stream);
          return;
        }
        auto fence = std::make_shared<FakeFence>();
        {
          std::lock_guard<std::mutex> lock(mu);
          const auto begin = reinterpret_cast<uintptr_t>(h.p);
          ranges.push_back({begin, begin + h.size, stream, fence});
          unpassed.push_back(fence);
        }
        pool.Free(h.p, stream, fence);
      };
      for (int op = 0; op < 4000; ++op) {
        if (held.size() < 16 && (held.empty() || rng() % 2 == 0)) {
          const size_t size =
              rng() % 8 == 0 ? 1 + rng() % (5 * kMiB) : 1 + rng() % (64 * kKiB);
          absl::StatusOr<void*> p = pool.Allocate(size, stream);
          ASSERT_TRUE(p.ok()) << p.status();
          auto* bytes = static_cast<unsigned char*>(*p);
          check_allocation(stream, reinterpret_cast<uintptr_t>(bytes),
                           reinterpret_cast<uintptr_t>(bytes) + size);
          bytes[0] = t;
          bytes[size - 1] = t;
          held.push_back({bytes, size});
        } else {
          release(rng() % held.size());
        }
      }
      while (!held.empty()) release(held.size() - 1);
    });
  }
  std::thread passer([&] {
    std::mt19937 rng(99);
    while (!done.load()) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!unpassed.empty() && rng() % 2 == 0) {
          const size_t i = rng() % unpassed.size();
          unpassed[i]->Pass();
          unpassed[i] = unpassed.back();
          unpassed.pop_back();
        }
      }
      PoolStats s = pool.Stats();
      EXPECT_LE(s.allocated_bytes + s.pending_free_bytes, s.reserved_bytes);
      if (rng() % 16 == 0) pool.EmptyCache();
      std::this_thread::yield();
    }
  });
  for (std::thread& t : threads) t.join();
  done = true;
  passer.join();

  EXPECT_EQ(violations.load(), 0);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.allocated_bytes, 0);
  EXPECT_EQ(s.active_blocks, 0);
  EXPECT_EQ(s.alloc_count, s.free_count);
  EXPECT_EQ(s.alloc_count, s.cache_hits + s.cache_misses);
  for (const auto& fence : unpassed) fence->Pass();
  EXPECT_EQ(pool.EmptyCache(), s.reserved_bytes);
  s = pool.Stats();
  EXPECT_EQ(s.pending_free_bytes, 0);
  EXPECT_EQ(s.reserved_bytes, 0);
  EXPECT_EQ(s.segment_count, 0);
  EXPECT_EQ(upstream_.outstanding_bytes(), 0);
  EXPECT_EQ(upstream_.mismatches(), 0);
}

// An upstream that reports what it has free (as the host and CUDA
// resources do).
class ReportingResource : public testing::CountingResource {
 public:
  std::optional<int64_t> AvailableBytes() const override { return available; }
  std::optional<int64_t> available;
};

TEST(CachingPoolFreeBytesTest, CachedPlusUpstreamFreeBoundedByTheLimit) {
  constexpr int64_t kMiB = int64_t{1} << 20;
  ReportingResource upstream;
  // Upstream cannot tell and no limit: 0, unknown.
  CachingPool unknown("test", &upstream, 0);
  EXPECT_EQ(unknown.Stats().free_bytes, 0);

  upstream.available = 1000 * kMiB;
  CachingPool pool("test", &upstream, 0);
  EXPECT_EQ(pool.Stats().free_bytes, 1000 * kMiB);
  absl::StatusOr<void*> p = pool.Allocate(8 * kMiB);
  ASSERT_TRUE(p.ok()) << p.status();
  pool.Free(*p);  // 8 MiB cached: the pool's, on top of upstream's free
  EXPECT_EQ(pool.Stats().free_bytes, 1008 * kMiB);

  // A limit bounds it: limit - allocated, whatever upstream has.
  CachingPool limited("test", &upstream, 64 * kMiB);
  absl::StatusOr<void*> q = limited.Allocate(16 * kMiB);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(limited.Stats().free_bytes, 48 * kMiB);
  // ...and upstream short of the limit bounds it too: its free plus the
  // cache (the 16 MiB segment is allocated, nothing cached).
  upstream.available = 10 * kMiB;
  EXPECT_EQ(limited.Stats().free_bytes, 10 * kMiB);
  limited.Free(*q);  // now cached: 10 MiB free upstream + 16 MiB cached
  EXPECT_EQ(limited.Stats().free_bytes, 26 * kMiB);
  // Upstream unable to tell, with a limit: limit - allocated.
  upstream.available.reset();
  EXPECT_EQ(limited.Stats().free_bytes, 64 * kMiB);
}

}  // namespace
}  // namespace tensorcast
