// The MemoryResource contract for the CUDA backends (device memory and
// pinned host memory), and a CachingPool over real device memory: the limit,
// EmptyCache handing memory back to CUDA, splitting and reuse, and
// stream-aware reuse behind a CudaEventFence. Skips where there is no CUDA
// device.
#include "server/memory/cuda_memory_resource.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/size.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/memory/caching_pool.h"
#include "server/memory/cuda_check.h"
#include "server/memory/fence.h"
#include "server/memory/memory_resource.h"
#include "server/memory/pinned_memory_resource.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;

constexpr size_t kMiB = size_t{1} << 20;

// SetUp for every test here: skip without a device.
void SkipWithoutADevice() {
  absl::StatusOr<int> count = CudaDeviceCount();
  ASSERT_TRUE(count.ok()) << count.status();
  if (*count == 0) {
    GTEST_SKIP() << "no CUDA device here: the CUDA memory resource test "
                    "needs a GPU (run tests/gpu/run.sh on one)";
  }
}

// Bytes of device memory CUDA reports free.
size_t FreeDeviceBytes() {
  size_t free_bytes = 0, total = 0;
  EXPECT_EQ(cudaMemGetInfo(&free_bytes, &total), cudaSuccess);
  return free_bytes;
}

// How the typed suite makes each resource, and whether its memory is on
// the device (so the host may not touch it directly).
struct DeviceCase {
  static std::unique_ptr<MemoryResource> Make() {
    return std::make_unique<CudaDeviceMemoryResource>(0);
  }
  static constexpr bool kOnDevice = true;
  static constexpr const char* kName = "cuda:0";
};
struct PinnedCase {
  static std::unique_ptr<MemoryResource> Make() {
    return std::make_unique<PinnedHostMemoryResource>();
  }
  static constexpr bool kOnDevice = false;
  static constexpr const char* kName = "pinned";
};

template <typename Case>
class CudaResourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SkipWithoutADevice();
    if (IsSkipped() || HasFatalFailure()) return;
    resource_ = Case::Make();
  }
  MemoryResource& mr() { return *resource_; }

  // Fills [p, p + size) through CUDA's copy and memset paths and reads it
  // back: a pattern copied in, a memset over its middle, a copy out.
  void RoundTrip(void* p, size_t size) {
    if (size == 0) return;
    std::vector<unsigned char> in(size), out(size, 0);
    for (size_t i = 0; i < size; ++i)
      in[i] = static_cast<unsigned char>(i * 131 + 7);
    ASSERT_EQ(cudaMemcpy(p, in.data(), size, cudaMemcpyDefault), cudaSuccess);
    const size_t begin = size / 4, length = size / 2;
    if (Case::kOnDevice) {
      ASSERT_EQ(cudaMemset(static_cast<char*>(p) + begin, 0x5a, length),
                cudaSuccess);
    } else {
      std::memset(static_cast<char*>(p) + begin, 0x5a, length);
    }
    std::memset(in.data() + begin, 0x5a, length);
    ASSERT_EQ(cudaMemcpy(out.data(), p, size, cudaMemcpyDefault), cudaSuccess);
    ASSERT_EQ(std::memcmp(in.data(), out.data(), size), 0) << size;
  }

  std::unique_ptr<MemoryResource> resource_;
};

using Cases = ::testing::Types<DeviceCase, PinnedCase>;
TYPED_TEST_SUITE(CudaResourceTest, Cases);

TYPED_TEST(CudaResourceTest, AlignedAndRoundTripsThroughCuda) {
  EXPECT_EQ(this->mr().Name(), TypeParam::kName);
  for (size_t size :
       {size_t{0}, size_t{1}, size_t{255}, size_t{256}, size_t{257},
        size_t{4097}, kMiB, 2 * kMiB + 1, 17 * kMiB + 3}) {
    absl::StatusOr<void*> p = this->mr().Allocate(size);
    ASSERT_TRUE(p.ok()) << size << ": " << p.status();
    ASSERT_NE(*p, nullptr);
    EXPECT_GE(MemoryResource::kAlignment, 256u);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(*p) % MemoryResource::kAlignment, 0u)
        << size;
    this->RoundTrip(*p, size);
    this->mr().Deallocate(*p, size);
  }
}

TYPED_TEST(CudaResourceTest, LivePointersAreDistinctAndDoNotOverlap) {
  std::vector<std::pair<uintptr_t, size_t>> live;
  for (int i = 0; i < 32; ++i) {
    const size_t size = i % 4 == 0 ? 0 : 1 + (i * 7919) % (3 * kMiB);
    absl::StatusOr<void*> p = this->mr().Allocate(size);
    ASSERT_TRUE(p.ok()) << p.status();
    live.emplace_back(reinterpret_cast<uintptr_t>(*p), size);
  }
  for (size_t i = 0; i < live.size(); ++i) {
    for (size_t j = i + 1; j < live.size(); ++j) {
      const auto [a, a_size] = live[i];
      const auto [b, b_size] = live[j];
      EXPECT_NE(a, b);
      EXPECT_TRUE(a + std::max<size_t>(a_size, 1) <= b ||
                  b + std::max<size_t>(b_size, 1) <= a)
          << i << " and " << j << " overlap";
    }
  }
  for (auto [p, size] : live) {
    this->mr().Deallocate(reinterpret_cast<void*>(p), size);
  }
  this->mr().Deallocate(nullptr, 0);
  this->mr().Deallocate(nullptr, 64 * kMiB);
}

TYPED_TEST(CudaResourceTest, DeallocatedMemoryIsReused) {
  const size_t size = 64 * kMiB;
  const size_t free_before = FreeDeviceBytes();
  for (int i = 0; i < 16; ++i) {  // 1 GiB in all: leaks would show
    absl::StatusOr<void*> p = this->mr().Allocate(size);
    ASSERT_TRUE(p.ok()) << i << ": " << p.status();
    if (i == 0 || i == 15) this->RoundTrip(*p, size);
    this->mr().Deallocate(*p, size);
  }
  // Nothing kept: device memory is back where it was (give or take what
  // CUDA's own bookkeeping took meanwhile).
  EXPECT_GE(FreeDeviceBytes() + 16 * kMiB, free_before);
}

TYPED_TEST(CudaResourceTest, TooLargeIsResourceExhaustedWithTheSize) {
  for (size_t size : {size_t{1} << 50, size_t{1} << 60, SIZE_MAX}) {
    absl::StatusOr<void*> p = this->mr().Allocate(size);
    ASSERT_FALSE(p.ok()) << size;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted)
        << p.status();
    const int64_t shown = size > static_cast<size_t>(INT64_MAX)
                              ? INT64_MAX
                              : static_cast<int64_t>(size);
    EXPECT_THAT(p.status().message(),
                HasSubstr(std::string(TypeParam::kName) + ": cannot allocate " +
                          FormatSize(shown)));
    // The failure is not left behind for the next cudaGetLastError.
    EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  }
  // Still usable afterwards.
  absl::StatusOr<void*> p = this->mr().Allocate(kMiB);
  ASSERT_TRUE(p.ok()) << p.status();
  this->mr().Deallocate(*p, kMiB);
}

class CudaDeviceMemoryResourceTest : public ::testing::Test {
 protected:
  void SetUp() override { SkipWithoutADevice(); }
};

TEST_F(CudaDeviceMemoryResourceTest, KeepsTheCallersDeviceAndRejectsBadOnes) {
  absl::StatusOr<int> count = CudaDeviceCount();
  ASSERT_TRUE(count.ok());
  ASSERT_EQ(cudaSetDevice(*count - 1), cudaSuccess);
  CudaDeviceMemoryResource first(0);
  absl::StatusOr<void*> p = first.Allocate(kMiB);
  ASSERT_TRUE(p.ok()) << p.status();
  cudaPointerAttributes attributes;
  ASSERT_EQ(cudaPointerGetAttributes(&attributes, *p), cudaSuccess);
  EXPECT_EQ(attributes.type, cudaMemoryTypeDevice);
  EXPECT_EQ(attributes.device, 0);
  first.Deallocate(*p, kMiB);
  int current = -1;
  ASSERT_EQ(cudaGetDevice(&current), cudaSuccess);
  EXPECT_EQ(current, *count - 1);

  CudaDeviceMemoryResource missing(*count);
  EXPECT_EQ(missing.Name(), absl::StrCat("cuda:", *count));
  absl::StatusOr<void*> q = missing.Allocate(kMiB);
  ASSERT_FALSE(q.ok());
  EXPECT_THAT(q.status().message(), HasSubstr("cudaSetDevice"));
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaGetDevice(&current), cudaSuccess);
  EXPECT_EQ(current, *count - 1);
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
}

class CudaCachingPoolTest : public ::testing::Test {
 protected:
  void SetUp() override { SkipWithoutADevice(); }

  void* Alloc(CachingPool& pool, size_t bytes, StreamId stream = kNoStream) {
    absl::StatusOr<void*> p = pool.Allocate(bytes, stream);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *p : nullptr;
  }

  CudaDeviceMemoryResource device_{0};
};

TEST_F(CudaCachingPoolTest, OverTheLimitIsResourceExhaustedWithTheFigures) {
  CachingPool pool("cuda:0", &device_, 128 * kMiB);
  pool.Free(Alloc(pool, 120 * kMiB));
  void* held = Alloc(pool, 100 * kMiB);  // 20 MiB stay cached beside it
  ASSERT_NE(held, nullptr);
  absl::StatusOr<void*> p = pool.Allocate(64 * kMiB);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(p.status().message(),
            "out of memory on device cuda:0: tried to allocate 64.00 MiB; "
            "limit 128.00 MiB, 100.00 MiB allocated, 20.00 MiB cached "
            "(reserved but unallocated)");
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.reserved_bytes, 120 * static_cast<int64_t>(kMiB));
  EXPECT_LE(s.peak_reserved_bytes, s.limit_bytes);
  pool.Free(held);
}

TEST_F(CudaCachingPoolTest, FreeBytesIsCudasFreePlusTheCacheUnderTheLimit) {
  // Without a limit: cudaMemGetInfo's free plus the cached bytes. Other
  // processes may allocate meanwhile, so compare with a margin.
  const int64_t margin = 64 * static_cast<int64_t>(kMiB);
  std::optional<int64_t> device_free = device_.AvailableBytes();
  ASSERT_TRUE(device_free.has_value());
  EXPECT_NEAR(static_cast<double>(*device_free),
              static_cast<double>(FreeDeviceBytes()), margin);
  CachingPool pool("cuda:0", &device_, 0);
  pool.Free(Alloc(pool, 256 * kMiB));  // 256 MiB cached
  PoolStats s = pool.Stats();
  ASSERT_EQ(s.reserved_bytes - s.allocated_bytes, 256 * int64_t{kMiB});
  EXPECT_GT(s.free_bytes, 256 * int64_t{kMiB});
  EXPECT_NEAR(static_cast<double>(s.free_bytes),
              static_cast<double>(FreeDeviceBytes() + 256 * kMiB), margin);

  // With a limit: at most limit - allocated.
  CachingPool limited("cuda:0", &device_, 128 * kMiB);
  void* held = Alloc(limited, 100 * kMiB);
  ASSERT_NE(held, nullptr);
  EXPECT_EQ(limited.Stats().free_bytes, 28 * int64_t{kMiB});
  limited.Free(held);
  EXPECT_EQ(limited.Stats().free_bytes, 128 * int64_t{kMiB});
}

TEST_F(CudaCachingPoolTest, UpstreamExhaustionNamesTheDevice) {
  CachingPool pool("cuda:0", &device_, 0);
  absl::StatusOr<void*> p = pool.Allocate(size_t{1} << 50);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(p.status().message(),
              HasSubstr("out of memory on device cuda:0: tried to allocate "));
  EXPECT_THAT(p.status().message(), HasSubstr("cuda:0: cannot allocate"));
}

TEST_F(CudaCachingPoolTest, EmptyCacheGivesMemoryBackToCuda) {
  const size_t size = 512 * kMiB;
  CachingPool pool("cuda:0", &device_, 0);
  pool.Free(Alloc(pool, size));
  EXPECT_EQ(pool.Stats().reserved_bytes, static_cast<int64_t>(size));
  EXPECT_EQ(pool.Stats().allocated_bytes, 0);
  const size_t free_cached = FreeDeviceBytes();
  EXPECT_EQ(pool.EmptyCache(), static_cast<int64_t>(size));
  const size_t free_emptied = FreeDeviceBytes();
  EXPECT_GE(free_emptied, free_cached + size - 16 * kMiB)
      << "cudaMemGetInfo free: " << free_cached << " -> " << free_emptied;
  EXPECT_EQ(pool.Stats().reserved_bytes, 0);
}

TEST_F(CudaCachingPoolTest, SplitBlocksAreReusedAsCacheHits) {
  CachingPool pool("cuda:0", &device_, 0);
  char* first = static_cast<char*>(Alloc(pool, 10 * kMiB));
  ASSERT_NE(first, nullptr);
  pool.Free(first);
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.cache_misses, 1);
  EXPECT_EQ(s.cache_hits, 0);

  // 4 MiB from the cached 10 MiB: a hit at the same address; the 6 MiB
  // remainder serves the next 4 MiB, also a hit.
  char* a = static_cast<char*>(Alloc(pool, 4 * kMiB));
  char* b = static_cast<char*>(Alloc(pool, 4 * kMiB));
  EXPECT_EQ(a, first);
  EXPECT_EQ(b, first + 4 * kMiB);
  s = pool.Stats();
  EXPECT_EQ(s.cache_misses, 1);
  EXPECT_EQ(s.cache_hits, 2);
  EXPECT_EQ(s.segment_count, 1);
  EXPECT_EQ(s.reserved_bytes, 10 * static_cast<int64_t>(kMiB));

  // The split blocks are real, separate device memory.
  ASSERT_EQ(cudaMemset(a, 0x11, 4 * kMiB), cudaSuccess);
  ASSERT_EQ(cudaMemset(b, 0x22, 4 * kMiB), cudaSuccess);
  unsigned char edge[2] = {0, 0};
  ASSERT_EQ(cudaMemcpy(&edge[0], b - 1, 1, cudaMemcpyDeviceToHost),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpy(&edge[1], b, 1, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(edge[0], 0x11);
  EXPECT_EQ(edge[1], 0x22);

  pool.Free(a);
  pool.Free(b);
  // Coalesced again: 10 MiB in one piece, without going to CUDA.
  char* whole = static_cast<char*>(Alloc(pool, 10 * kMiB));
  EXPECT_EQ(whole, first);
  EXPECT_EQ(pool.Stats().cache_misses, 1);
  pool.Free(whole);
}

TEST_F(CudaCachingPoolTest, StatsStayConsistent) {
  CachingPool pool("cuda:0", &device_, 0);
  std::vector<void*> held;
  int64_t rounded = 0;
  for (int i = 0; i < 40; ++i) {
    // Large requests in whole 2 MiB: a large block's remainder of 1 MiB or
    // less is not split off, so other sizes would count more than asked.
    const size_t size =
        (i % 5 == 0) ? 4 * kMiB : 512 * (1 + i * 37 % 97) - i % 7;
    held.push_back(Alloc(pool, size));
    rounded += static_cast<int64_t>((size + 511) / 512 * 512);
    if (i % 3 == 2) {
      pool.Free(held.back());
      held.pop_back();
      rounded -= static_cast<int64_t>((size + 511) / 512 * 512);
    }
  }
  PoolStats s = pool.Stats();
  EXPECT_EQ(s.allocated_bytes, rounded);
  EXPECT_GE(s.reserved_bytes, s.allocated_bytes);
  EXPECT_GE(s.peak_allocated_bytes, s.allocated_bytes);
  EXPECT_GE(s.peak_reserved_bytes, s.reserved_bytes);
  EXPECT_EQ(s.alloc_count, 40);
  EXPECT_EQ(s.alloc_count, s.cache_hits + s.cache_misses);
  EXPECT_EQ(s.alloc_count - s.free_count, s.active_blocks);
  EXPECT_EQ(s.active_blocks, static_cast<int64_t>(held.size()));
  for (void* p : held) pool.Free(p);
  s = pool.Stats();
  EXPECT_EQ(s.allocated_bytes, 0);
  EXPECT_EQ(s.active_blocks, 0);
  const int64_t reserved = s.reserved_bytes;
  EXPECT_EQ(pool.EmptyCache(), reserved);
  EXPECT_EQ(pool.Stats().reserved_bytes, 0);
  EXPECT_EQ(pool.Stats().segment_count, 0);
}

// A block freed on stream A behind an event is not handed to stream B while
// A's work is still queued, is handed back to A at once, and is B's once A
// has got past the event.
TEST_F(CudaCachingPoolTest, ABlockFreedOnAStreamWaitsForItsEvent) {
  cudaStream_t a = nullptr;
  cudaStream_t b = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking), cudaSuccess);
  EXPECT_EQ(StreamIdOf(nullptr), kNoStream);
  EXPECT_EQ(StreamIdOf(cudaStreamPerThread), kNoStream);
  ASSERT_NE(StreamIdOf(a), StreamIdOf(b));
  ASSERT_NE(StreamIdOf(a), kNoStream);

  CachingPool pool("cuda:0", &device_, 0);
  const size_t kBusy = 512 * kMiB;
  const size_t kBlock = 4 * kMiB;
  absl::StatusOr<void*> busy = device_.Allocate(kBusy);
  ASSERT_TRUE(busy.ok()) << busy.status();
  char* p = static_cast<char*>(Alloc(pool, kBlock, StreamIdOf(a)));
  ASSERT_NE(p, nullptr);
  // Tens of milliseconds of work on A (a 512 MiB memset is a fraction of a
  // millisecond on a recent GPU), the block's last use after it.
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(cudaMemsetAsync(*busy, i, kBusy, a), cudaSuccess);
  }
  ASSERT_EQ(cudaMemsetAsync(p, 0x5a, kBlock, a), cudaSuccess);
  absl::StatusOr<std::shared_ptr<CudaEventFence>> fence =
      CudaEventFence::Make(a);
  ASSERT_TRUE(fence.ok()) << fence.status();
  pool.Free(p, StreamIdOf(a), *fence);
  EXPECT_FALSE((*fence)->Passed())
      << "stream A finished too soon for this test to show anything";

  void* on_b = Alloc(pool, kBlock, StreamIdOf(b));
  EXPECT_NE(on_b, p);
  EXPECT_EQ(pool.Stats().pending_free_bytes, static_cast<int64_t>(kBlock));
  // Stream A may have it back at once; it frees it again behind a new event.
  EXPECT_EQ(Alloc(pool, kBlock, StreamIdOf(a)), p);
  absl::StatusOr<std::shared_ptr<CudaEventFence>> again =
      CudaEventFence::Make(a);
  ASSERT_TRUE(again.ok()) << again.status();
  pool.Free(p, StreamIdOf(a), *again);

  ASSERT_EQ(cudaStreamSynchronize(a), cudaSuccess);
  EXPECT_TRUE((*fence)->Passed());
  EXPECT_TRUE((*again)->Passed());
  void* reused = Alloc(pool, kBlock, StreamIdOf(b));
  EXPECT_EQ(reused, p);
  EXPECT_EQ(pool.Stats().pending_free_bytes, 0);
  unsigned char last = 0;
  ASSERT_EQ(cudaMemcpy(&last, p + kBlock - 1, 1, cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(last, 0x5a);  // A's last write, done before B got the block

  pool.Free(reused);
  pool.Free(on_b);
  device_.Deallocate(*busy, kBusy);
  EXPECT_EQ(cudaStreamDestroy(a), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(b), cudaSuccess);
}

}  // namespace
}  // namespace tensorcast
