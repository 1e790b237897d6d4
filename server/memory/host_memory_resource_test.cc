// The MemoryResource contract, as one typed test suite that every backend
// and adaptor runs (host now; pinned and CUDA join when they exist), plus
// what is particular to HostMemoryResource.
#include "server/memory/host_memory_resource.h"

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/memory/counting_resource_test_util.h"
#include "server/memory/memory_resource.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;

constexpr size_t kMiB = size_t{1} << 20;

// A counting adaptor over the host resource, default-constructible for the
// typed suite.
class CountedHost : public testing::CountingResource {
 public:
  CountedHost() : CountingResource(&testing::SharedHostResource()) {}
};

template <typename Resource>
class MemoryResourceTest : public ::testing::Test {
 protected:
  Resource resource_;
  MemoryResource& mr() { return resource_; }
};

using Resources = ::testing::Types<HostMemoryResource, CountedHost>;
TYPED_TEST_SUITE(MemoryResourceTest, Resources);

const size_t kSizes[] = {
    0,        1,    255,          256,      257,          4097,
    kMiB - 1, kMiB, 2 * kMiB - 1, 2 * kMiB, 2 * kMiB + 1, 17 * kMiB + 3};

TYPED_TEST(MemoryResourceTest, AllocationsAreAlignedAndWritable) {
  for (size_t size : kSizes) {
    absl::StatusOr<void*> p = this->mr().Allocate(size);
    ASSERT_TRUE(p.ok()) << size << ": " << p.status();
    ASSERT_NE(*p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(*p) % MemoryResource::kAlignment, 0u)
        << size;
    std::memset(*p, 0xAB, size);
    if (size > 0) {
      EXPECT_EQ(static_cast<unsigned char*>(*p)[size - 1], 0xAB);
    }
    this->mr().Deallocate(*p, size);
  }
}

TYPED_TEST(MemoryResourceTest, ZeroBytesGivesDistinctValidPointers) {
  std::set<void*> seen;
  std::vector<void*> held;
  for (int i = 0; i < 16; ++i) {
    absl::StatusOr<void*> p = this->mr().Allocate(0);
    ASSERT_TRUE(p.ok());
    ASSERT_NE(*p, nullptr);
    EXPECT_TRUE(seen.insert(*p).second);
    held.push_back(*p);
  }
  for (void* p : held) this->mr().Deallocate(p, 0);
}

TYPED_TEST(MemoryResourceTest, DeallocateNullIsANoOp) {
  this->mr().Deallocate(nullptr, 0);
  this->mr().Deallocate(nullptr, 123);
  this->mr().Deallocate(nullptr, 64 * kMiB);
}

TYPED_TEST(MemoryResourceTest, LiveAllocationsDoNotOverlap) {
  std::vector<std::pair<unsigned char*, size_t>> live;
  for (int i = 0; i < 64; ++i) {
    size_t size = 1 + (i * 7919) % (i % 8 == 0 ? 3 * kMiB : 8192);
    absl::StatusOr<void*> p = this->mr().Allocate(size);
    ASSERT_TRUE(p.ok()) << p.status();
    std::memset(*p, i, size);
    live.emplace_back(static_cast<unsigned char*>(*p), size);
  }
  for (size_t i = 0; i < live.size(); ++i) {
    auto [p, size] = live[i];
    EXPECT_EQ(p[0], static_cast<unsigned char>(i));
    EXPECT_EQ(p[size - 1], static_cast<unsigned char>(i));
    this->mr().Deallocate(p, size);
  }
}

TYPED_TEST(MemoryResourceTest, ImpossibleSizesAreResourceExhausted) {
  for (size_t size : {size_t{1} << 60, SIZE_MAX - 4096, SIZE_MAX}) {
    absl::StatusOr<void*> p = this->mr().Allocate(size);
    ASSERT_FALSE(p.ok()) << size;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(p.status().message(), HasSubstr("cannot allocate"));
  }
}

TYPED_TEST(MemoryResourceTest, ConcurrentUse) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < 500; ++i) {
        size_t size = (i % 50 == 0) ? 2 * kMiB + i : 64 + (i * 37 + t) % 4096;
        absl::StatusOr<void*> p = this->mr().Allocate(size);
        ASSERT_TRUE(p.ok());
        static_cast<char*>(*p)[0] = static_cast<char>(t);
        static_cast<char*>(*p)[size - 1] = static_cast<char>(t);
        EXPECT_EQ(static_cast<char*>(*p)[0], static_cast<char>(t));
        this->mr().Deallocate(*p, size);
      }
    });
  }
  for (std::thread& t : threads) t.join();
}

TYPED_TEST(MemoryResourceTest, HasAName) {
  EXPECT_FALSE(this->mr().Name().empty());
}

TEST(HostMemoryResourceTest, BigBlocksAreHugePageAligned) {
  HostMemoryResource host;
  EXPECT_EQ(host.Name(), "host");
  for (size_t size : {2 * kMiB, 3 * kMiB + 5, 64 * kMiB}) {
    absl::StatusOr<void*> p = host.Allocate(size);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(
        reinterpret_cast<uintptr_t>(*p) % HostMemoryResource::kHugePageBytes,
        0u)
        << size;
    // Touch every page to be sure the whole range is mapped.
    for (size_t off = 0; off < size; off += 4096) {
      static_cast<char*>(*p)[off] = 1;
    }
    host.Deallocate(*p, size);
  }
}

TEST(CountingResourceTest, CountsAndFails) {
  testing::CountingResource counting;
  EXPECT_EQ(counting.Name(), "counting(host)");
  absl::StatusOr<void*> a = counting.Allocate(1000);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(counting.outstanding_bytes(), 1000);
  counting.set_capacity(1500);
  EXPECT_EQ(counting.Allocate(600).status().code(),
            absl::StatusCode::kResourceExhausted);
  counting.set_capacity(0);
  counting.FailNext(1);
  EXPECT_FALSE(counting.Allocate(10).ok());
  counting.Deallocate(*a, 999);  // wrong size: counted, not passed on
  EXPECT_EQ(counting.mismatches(), 1);
  counting.Deallocate(*a, 1000);
  EXPECT_EQ(counting.allocations(), 1);
  EXPECT_EQ(counting.deallocations(), 2);
  EXPECT_EQ(counting.failures(), 2);
  EXPECT_EQ(counting.outstanding_bytes(), 0);
}

TEST(HostMemoryResourceTest, AvailableBytesIsTheHostsAvailableMemory) {
  HostMemoryResource host;
  std::optional<int64_t> available = host.AvailableBytes();
  ASSERT_TRUE(available.has_value());  // Linux has /proc/meminfo
  EXPECT_GT(*available, 0);
  const int64_t total = static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) *
                        static_cast<int64_t>(sysconf(_SC_PAGESIZE));
  EXPECT_LE(*available, total);
  // An adaptor that does not say reports nothing.
  EXPECT_FALSE(testing::CountingResource().AvailableBytes().has_value());
}

}  // namespace
}  // namespace tensorcast
