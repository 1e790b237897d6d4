#include "server/memory/malloc_tuning.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define TENSORCAST_MALLOC_REPLACED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TENSORCAST_MALLOC_REPLACED 1
#endif

namespace tensorcast {
namespace {

TEST(MallocTuningTest, TheOperatorsSettingsWin) {
  EXPECT_FALSE(OperatorTunesMalloc(nullptr, nullptr, nullptr));
  EXPECT_FALSE(OperatorTunesMalloc("", nullptr, nullptr));
  // Tunables for something other than malloc leave malloc to us.
  EXPECT_FALSE(OperatorTunesMalloc("glibc.pthread.rseq=0", nullptr, nullptr));
  EXPECT_TRUE(OperatorTunesMalloc("glibc.malloc.trim_threshold=1048576",
                                  nullptr, nullptr));
  EXPECT_TRUE(OperatorTunesMalloc(
      "glibc.pthread.rseq=0:glibc.malloc.arena_max=2", nullptr, nullptr));
  EXPECT_TRUE(OperatorTunesMalloc(nullptr, "131072", nullptr));
  EXPECT_TRUE(OperatorTunesMalloc(nullptr, nullptr, "131072"));
}

// With the tuning, a 16 MiB block comes from the heap rather than its own
// mapping, and freeing it keeps the memory: the next one of the size
// reuses the same, already faulted pages.
TEST(MallocTuningTest, LargeBlocksStayInTheHeap) {
#if !defined(__GLIBC__) || defined(TENSORCAST_MALLOC_REPLACED)
  GTEST_SKIP() << "glibc's own malloc only";
#else
  unsetenv("GLIBC_TUNABLES");
  unsetenv("MALLOC_MMAP_THRESHOLD_");
  unsetenv("MALLOC_TRIM_THRESHOLD_");
  const MallocTuning tuning = TuneMallocForStreaming();
  ASSERT_TRUE(tuning.applied) << tuning.detail;
  EXPECT_EQ(tuning.detail, "mmap threshold 32 MiB, trim threshold 64 MiB");

  constexpr size_t kBlock = size_t{16} << 20;
  const struct mallinfo2 before = mallinfo2();
  char* p = static_cast<char*>(std::malloc(kBlock));
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, kBlock);
  const struct mallinfo2 held = mallinfo2();
  EXPECT_EQ(held.hblks, before.hblks) << "the block was mmapped on its own";
  EXPECT_GE(held.arena, before.arena + kBlock);
  std::free(p);
  const struct mallinfo2 after = mallinfo2();
  EXPECT_GE(after.arena, before.arena + kBlock)
      << "free trimmed the block back to the kernel";
  EXPECT_GE(after.fordblks, kBlock);
#endif
}

TEST(MallocTuningTest, LeavesAnOperatorTunedMallocAlone) {
#if !defined(__GLIBC__)
  GTEST_SKIP() << "glibc only";
#else
  setenv("MALLOC_TRIM_THRESHOLD_", "131072", 1);
  const MallocTuning tuning = TuneMallocForStreaming();
  unsetenv("MALLOC_TRIM_THRESHOLD_");
  EXPECT_FALSE(tuning.applied);
  EXPECT_NE(tuning.detail.find("environment"), std::string::npos)
      << tuning.detail;
#endif
}

}  // namespace
}  // namespace tensorcast
