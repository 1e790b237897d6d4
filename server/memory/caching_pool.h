// CachingPool: a per-device caching allocator over a MemoryResource, after
// PyTorch's CUDACachingAllocator. Freed blocks stay cached for reuse instead
// of going back upstream; EmptyCache (or memory pressure) releases them.
//
//  - Sizes round up to 512 bytes. Requests up to 1 MiB ("small") are carved
//    from 2 MiB segments; larger ones get segments rounded up to 2 MiB, so
//    small and large blocks never share a segment (less fragmentation).
//  - Best fit over the cached blocks of the right class; a block bigger than
//    needed is split and the remainder stays cached (large-pool remainders
//    of 1 MiB or less are not split off: no large request could use them).
//  - On Free, a block merges with free neighbours of its segment; a segment
//    that is one free block again can be released upstream.
//  - Limit: reserved_bytes never exceeds limit_bytes (0 = no limit). When a
//    new segment would pass the limit, or upstream fails, every cached free
//    segment is released and the allocation retried once (near the limit
//    with a segment of just the rounded request size); then
//    RESOURCE_EXHAUSTED, with how much was asked, the limit, what is
//    allocated and what is cached.
//  - Stream-aware reuse (as PyTorch's allocator does with events): Free may
//    name the stream that last used the block and a Fence recorded on it
//    after that use. Such a block is "pending": it is handed out again at
//    once to an Allocate on the same stream (stream order makes that safe;
//    kNoStream never counts as the same stream), but to any other stream,
//    and for coalescing with its neighbours or release upstream, only once
//    the fence has passed. Allocate polls the pending frees cheaply (a few,
//    oldest first, per call; all of them once before a cache miss goes
//    upstream); EmptyCache polls them all once. Nothing here ever waits on
//    a fence: EmptyCache and the release-and-retry path skip segments that
//    still hold a pending block. Free without a fence (the default) makes
//    the block reusable by everyone at once.
//  - Stats are named as PyTorch names them. allocated_bytes counts the
//    blocks handed out (rounded sizes); reserved_bytes is every segment held
//    from upstream (allocated + cached + pending_free). The OOM message's
//    "cached" figure counts only what is reusable now: reserved minus
//    allocated minus pending_free_bytes (pending bytes, if any, are named
//    after it).
//
// Thread safety: every method may be called concurrently; one mutex guards
// the state and upstream is called under it (upstream calls are rare once
// the cache is warm). Ownership: the pool owns its segments and returns all
// of them upstream on destruction (pointers still handed out then dangle:
// free everything first). `upstream` is not owned and must outlive the
// pool. Free of a pointer the pool did not hand out is a caller bug: it
// asserts in debug builds and is logged and ignored in release builds.
#ifndef TENSORCAST_SERVER_MEMORY_CACHING_POOL_H_
#define TENSORCAST_SERVER_MEMORY_CACHING_POOL_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/mutex.h"
#include "server/memory/fence.h"
#include "server/memory/memory_resource.h"

namespace tensorcast {

struct PoolStats {
  int64_t allocated_bytes = 0;  // in blocks handed to callers
  int64_t reserved_bytes = 0;   // in segments held from upstream
  int64_t peak_allocated_bytes = 0;
  int64_t peak_reserved_bytes = 0;
  int64_t limit_bytes = 0;   // 0 = none
  int64_t alloc_count = 0;   // successful Allocate calls
  int64_t free_count = 0;    // Free calls that returned a block
  int64_t cache_hits = 0;    // allocations served from cached blocks
  int64_t cache_misses = 0;  // allocations that needed a new segment
  int64_t segment_count = 0;
  int64_t active_blocks = 0;  // blocks handed out and not yet freed
  // Freed behind a fence that has not been seen to pass: reserved, not
  // allocated, and reusable only by the stream that freed them.
  int64_t pending_free_bytes = 0;
  // What a new allocation may still take, as placement compares it: the
  // pool's cached bytes (reserved - allocated: already held, so never
  // short) plus what upstream has free (MemoryResource::AvailableBytes:
  // the host's available memory, cudaMemGetInfo's free), bounded by
  // limit_bytes - allocated_bytes when there is a limit. Upstream unable
  // to tell: limit - allocated, or 0 (unknown) without a limit. Measured
  // at Stats(), outside the pool's lock; other processes change it.
  int64_t free_bytes = 0;
};

class CachingPool {
 public:
  // Block sizes are multiples of this, and no block is smaller.
  static constexpr size_t kMinBlockSize = 512;
  // Requests up to this size are small blocks...
  static constexpr size_t kSmallSize = size_t{1} << 20;
  // ...carved from segments of this size.
  static constexpr size_t kSmallSegment = size_t{2} << 20;
  // Large segments are rounded up to a multiple of this.
  static constexpr size_t kLargeSegmentRound = size_t{2} << 20;

  CachingPool(std::string device, MemoryResource* upstream,
              int64_t limit_bytes);
  ~CachingPool();
  CachingPool(const CachingPool&) = delete;
  CachingPool& operator=(const CachingPool&) = delete;

  // A block of at least `bytes` bytes, aligned to
  // MemoryResource::kAlignment. Allocate(0) returns a valid unique pointer.
  // `stream` is the stream that will use it: blocks freed on that stream
  // behind a fence that has not passed yet may be handed out to it.
  // RESOURCE_EXHAUSTED when neither the cache, the limit nor upstream allow:
  // its message gives the device's figures (limit, allocated, cached), and
  // caller message (server/core/caller_message.h) only what concerns the
  // request.
  [[nodiscard]] absl::StatusOr<void*> Allocate(size_t bytes,
                                               StreamId stream = kNoStream)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Returns a block to the cache; Free(nullptr) is a no-op. With a
  // `pending` fence (recorded on `stream` after the block's last use there)
  // the block is reusable only by `stream` until the fence passes; without
  // one it is reusable at once by any stream.
  void Free(void* ptr, StreamId stream = kNoStream,
            std::shared_ptr<const Fence> pending = nullptr) noexcept
      ABSL_LOCKS_EXCLUDED(mu_);

  // The counters, and free_bytes (which asks upstream: a /proc read or a
  // cudaMemGetInfo, not under the pool's lock).
  PoolStats Stats() const ABSL_LOCKS_EXCLUDED(mu_);
  // Polls every pending free once (never waits), then releases every cached
  // segment that is wholly free and holds no pending block; returns the
  // bytes given back upstream.
  int64_t EmptyCache() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& device() const { return device_; }

 private:
  // A contiguous range of a segment: handed out, free (in a free set), or
  // pending (free behind a fence: in its stream's pending set and the
  // pending list). The blocks of a segment form a list in address order;
  // the head block lives as long as its segment does.
  struct Block {
    char* ptr;
    size_t size;
    bool small;  // which pool: segments never mix small and large blocks
    bool allocated = false;
    Block* prev = nullptr;  // neighbours in the same segment
    Block* next = nullptr;
    // Pending only: the fence it waits for, the stream that freed it, and
    // its neighbours in the pending list (oldest first).
    std::shared_ptr<const Fence> fence = nullptr;
    StreamId stream = kNoStream;
    Block* pending_prev = nullptr;
    Block* pending_next = nullptr;
  };
  struct BySizeThenAddress {
    bool operator()(const Block* a, const Block* b) const {
      if (a->size != b->size) return a->size < b->size;
      return a->ptr < b->ptr;
    }
  };
  // A B-tree: best fit in O(log n) like std::set, without a heap node per
  // insert.
  using FreeBlocks = absl::btree_set<Block*, BySizeThenAddress>;
  // One stream's pending blocks, by pool.
  struct StreamPending {
    FreeBlocks small;
    FreeBlocks large;
    FreeBlocks& For(bool is_small) { return is_small ? small : large; }
  };

  static size_t RoundSize(size_t bytes);
  // Block objects are recycled: splitting and merging are on the hot path.
  Block* NewBlock(char* ptr, size_t size, bool small)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DeleteBlock(Block* block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static size_t SegmentSize(size_t rounded);

  FreeBlocks& FreeBlocksFor(bool small) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return small ? small_free_ : large_free_;
  }
  // The best-fitting cached block for `size` -- a free block, or one
  // pending on `stream` (not kNoStream) -- taken out of its set and split
  // if it is much bigger; nullptr when none fits.
  Block* TakeCachedBlock(size_t size, bool small, StreamId stream)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Merges a free, non-pending block with its free, non-pending neighbours
  // (the lower block survives) and puts the result in its free set.
  void InsertFree(Block* block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Pending bookkeeping: the list, the stream's set and the stats. Neither
  // touches block->fence.
  void AddPending(Block* block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemovePending(Block* block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks up to `max_checks` pending blocks, oldest first: those whose
  // fence has passed become free blocks, the others move to the back of the
  // list. Returns how many became free.
  size_t PollPending(size_t max_checks) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A new segment from upstream as one block outside the free sets; nullptr
  // when it would pass the limit, or when upstream fails (then
  // *upstream_error says why).
  Block* NewSegment(size_t segment_size, bool small,
                    absl::Status* upstream_error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // NewSegment, trying an exact-size segment when the usual one would pass
  // the limit.
  Block* NewSegmentWithinLimit(size_t size, bool small,
                               absl::Status* upstream_error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Splits off what `block` does not need as a new free block (pending on
  // the same fence if `block` is pending).
  void Split(Block* block, size_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t ReleaseCachedSegments() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status OutOfMemory(size_t bytes,
                           const absl::Status& upstream_error) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const std::string device_;
  MemoryResource* const upstream_;
  const int64_t limit_bytes_;

  mutable Mutex mu_;
  FreeBlocks small_free_ ABSL_GUARDED_BY(mu_);
  FreeBlocks large_free_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<void*, Block*> active_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<Block*> segments_ ABSL_GUARDED_BY(mu_);  // head blocks
  std::vector<Block*> spare_blocks_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<StreamId, StreamPending> pending_by_stream_
      ABSL_GUARDED_BY(mu_);
  Block* pending_head_ ABSL_GUARDED_BY(mu_) = nullptr;  // oldest
  Block* pending_tail_ ABSL_GUARDED_BY(mu_) = nullptr;
  size_t pending_count_ ABSL_GUARDED_BY(mu_) = 0;
  PoolStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_MEMORY_CACHING_POOL_H_
