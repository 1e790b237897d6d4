#include "server/memory/caching_pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/size.h"
#include "server/core/caller_message.h"

namespace tensorcast {
namespace {

// Larger requests are refused outright; it keeps every size arithmetic
// below far from overflow.
constexpr size_t kMaxRequest = size_t{1} << 62;
// Spare Block objects kept for reuse; more are deleted.
constexpr size_t kMaxSpareBlocks = 1024;
// Pending frees each Allocate checks before it looks for a cached block.
constexpr size_t kPollPerAllocate = 4;

size_t RoundUp(size_t bytes, size_t multiple) {
  return (bytes + multiple - 1) / multiple * multiple;
}

}  // namespace

CachingPool::CachingPool(std::string device, MemoryResource* upstream,
                         int64_t limit_bytes)
    : device_(std::move(device)),
      upstream_(upstream),
      limit_bytes_(limit_bytes > 0 ? limit_bytes : 0) {
  stats_.limit_bytes = limit_bytes_;
}

CachingPool::~CachingPool() {
  MutexLock lock(&mu_);
  if (!active_.empty()) {
    spdlog::warn(
        "CachingPool({}): destroyed with {} blocks ({} bytes) still in use",
        device_, active_.size(), stats_.allocated_bytes);
  }
  if (pending_count_ > 0) {
    spdlog::warn(
        "CachingPool({}): destroyed with {} blocks ({} bytes) freed behind "
        "fences not seen to pass",
        device_, pending_count_, stats_.pending_free_bytes);
  }
  for (Block* head : segments_) {
    size_t segment_size = 0;
    for (Block* b = head; b != nullptr;) {
      segment_size += b->size;
      Block* next = b->next;
      if (b != head) delete b;
      b = next;
    }
    upstream_->Deallocate(head->ptr, segment_size);
    delete head;
  }
  for (Block* spare : spare_blocks_) delete spare;
}

CachingPool::Block* CachingPool::NewBlock(char* ptr, size_t size, bool small) {
  if (spare_blocks_.empty()) return new Block{ptr, size, small};
  Block* block = spare_blocks_.back();
  spare_blocks_.pop_back();
  *block = Block{ptr, size, small};
  return block;
}

void CachingPool::DeleteBlock(Block* block) {
  if (spare_blocks_.size() < kMaxSpareBlocks) {
    spare_blocks_.push_back(block);
  } else {
    delete block;
  }
}

size_t CachingPool::RoundSize(size_t bytes) {
  return bytes < kMinBlockSize ? kMinBlockSize : RoundUp(bytes, kMinBlockSize);
}

size_t CachingPool::SegmentSize(size_t rounded) {
  return rounded <= kSmallSize ? kSmallSegment
                               : RoundUp(rounded, kLargeSegmentRound);
}

absl::StatusOr<void*> CachingPool::Allocate(size_t bytes, StreamId stream) {
  MutexLock lock(&mu_);
  if (bytes > kMaxRequest) return OutOfMemory(bytes, absl::OkStatus());
  const size_t size = RoundSize(bytes);
  const bool small = size <= kSmallSize;
  if (pending_count_ > 0) PollPending(kPollPerAllocate);
  Block* block = TakeCachedBlock(size, small, stream);
  // Before going upstream, see whether any other pending free has passed.
  if (block == nullptr && pending_count_ > 0 &&
      PollPending(pending_count_) > 0) {
    block = TakeCachedBlock(size, small, stream);
  }
  if (block != nullptr) {
    ++stats_.cache_hits;
  } else {
    ++stats_.cache_misses;
    absl::Status upstream_error;
    block = NewSegmentWithinLimit(size, small, &upstream_error);
    // Under pressure, give back what is cached and try once more.
    if (block == nullptr && ReleaseCachedSegments() > 0) {
      upstream_error = absl::OkStatus();
      block = NewSegmentWithinLimit(size, small, &upstream_error);
    }
    if (block == nullptr) return OutOfMemory(bytes, upstream_error);
    Split(block, size);
  }
  block->allocated = true;
  active_.emplace(block->ptr, block);
  stats_.allocated_bytes += static_cast<int64_t>(block->size);
  stats_.peak_allocated_bytes =
      std::max(stats_.peak_allocated_bytes, stats_.allocated_bytes);
  ++stats_.alloc_count;
  ++stats_.active_blocks;
  return static_cast<void*>(block->ptr);
}

void CachingPool::Free(void* ptr, StreamId stream,
                       std::shared_ptr<const Fence> pending) noexcept {
  if (ptr == nullptr) return;
  MutexLock lock(&mu_);
  auto it = active_.find(ptr);
  if (it == active_.end()) {
    spdlog::error(
        "CachingPool({}): Free({}) of a pointer this pool did not hand out "
        "(or already freed); ignored",
        device_, ptr);
    assert(false && "CachingPool::Free of an unknown pointer");
    return;
  }
  Block* block = it->second;
  active_.erase(it);
  block->allocated = false;
  stats_.allocated_bytes -= static_cast<int64_t>(block->size);
  ++stats_.free_count;
  --stats_.active_blocks;
  if (pending != nullptr) {
    block->fence = std::move(pending);
    block->stream = stream;
    AddPending(block);
    return;
  }
  InsertFree(block);
}

void CachingPool::InsertFree(Block* block) {
  // Merge with free neighbours that wait for no fence; the lower block
  // survives, so a segment's head block stays its head.
  FreeBlocks& free_blocks = FreeBlocksFor(block->small);
  if (Block* next = block->next;
      next != nullptr && !next->allocated && next->fence == nullptr) {
    free_blocks.erase(next);
    block->size += next->size;
    block->next = next->next;
    if (next->next != nullptr) next->next->prev = block;
    DeleteBlock(next);
  }
  if (Block* prev = block->prev;
      prev != nullptr && !prev->allocated && prev->fence == nullptr) {
    free_blocks.erase(prev);
    prev->size += block->size;
    prev->next = block->next;
    if (block->next != nullptr) block->next->prev = prev;
    DeleteBlock(block);
    block = prev;
  }
  free_blocks.insert(block);
}

void CachingPool::AddPending(Block* block) {
  block->pending_prev = pending_tail_;
  block->pending_next = nullptr;
  if (pending_tail_ != nullptr) {
    pending_tail_->pending_next = block;
  } else {
    pending_head_ = block;
  }
  pending_tail_ = block;
  ++pending_count_;
  pending_by_stream_[block->stream].For(block->small).insert(block);
  stats_.pending_free_bytes += static_cast<int64_t>(block->size);
}

void CachingPool::RemovePending(Block* block) {
  if (block->pending_prev != nullptr) {
    block->pending_prev->pending_next = block->pending_next;
  } else {
    pending_head_ = block->pending_next;
  }
  if (block->pending_next != nullptr) {
    block->pending_next->pending_prev = block->pending_prev;
  } else {
    pending_tail_ = block->pending_prev;
  }
  block->pending_prev = nullptr;
  block->pending_next = nullptr;
  --pending_count_;
  auto it = pending_by_stream_.find(block->stream);
  assert(it != pending_by_stream_.end());
  it->second.For(block->small).erase(block);
  if (it->second.small.empty() && it->second.large.empty()) {
    pending_by_stream_.erase(it);
  }
  stats_.pending_free_bytes -= static_cast<int64_t>(block->size);
}

size_t CachingPool::PollPending(size_t max_checks) {
  // Each step takes the head off or moves it to the back, so no block is
  // checked twice in one call.
  const size_t checks = std::min(max_checks, pending_count_);
  size_t freed = 0;
  for (size_t i = 0; i < checks; ++i) {
    Block* block = pending_head_;
    if (block->fence->Passed()) {
      RemovePending(block);
      block->fence.reset();
      block->stream = kNoStream;
      InsertFree(block);
      ++freed;
    } else if (block != pending_tail_) {
      pending_head_ = block->pending_next;
      pending_head_->pending_prev = nullptr;
      block->pending_prev = pending_tail_;
      block->pending_next = nullptr;
      pending_tail_->pending_next = block;
      pending_tail_ = block;
    }
  }
  return freed;
}

PoolStats CachingPool::Stats() const {
  PoolStats stats;
  {
    MutexLock lock(&mu_);
    stats = stats_;
  }
  const int64_t bound =
      limit_bytes_ > 0
          ? std::max<int64_t>(0, limit_bytes_ - stats.allocated_bytes)
          : 0;
  std::optional<int64_t> available = upstream_->AvailableBytes();
  if (available.has_value()) {
    const int64_t cached =
        std::max<int64_t>(0, stats.reserved_bytes - stats.allocated_bytes);
    stats.free_bytes = cached + std::max<int64_t>(0, *available);
    if (limit_bytes_ > 0) stats.free_bytes = std::min(stats.free_bytes, bound);
  } else {
    stats.free_bytes = bound;
  }
  return stats;
}

int64_t CachingPool::EmptyCache() {
  MutexLock lock(&mu_);
  if (pending_count_ > 0) PollPending(pending_count_);
  return ReleaseCachedSegments();
}

CachingPool::Block* CachingPool::TakeCachedBlock(size_t size, bool small,
                                                 StreamId stream) {
  FreeBlocks& free_blocks = FreeBlocksFor(small);
  Block key{nullptr, size, small};
  auto it = free_blocks.lower_bound(&key);
  Block* block = it == free_blocks.end() ? nullptr : *it;
  // A block pending on this very stream is as good as free to it: its
  // stream runs the new work after the old. Best fit over both; on a tie
  // the pending one, which leaves the free block to other streams.
  Block* pending = nullptr;
  if (stream != kNoStream) {
    if (auto s = pending_by_stream_.find(stream);
        s != pending_by_stream_.end()) {
      FreeBlocks& mine = s->second.For(small);
      auto p = mine.lower_bound(&key);
      if (p != mine.end()) pending = *p;
    }
  }
  if (pending != nullptr &&
      (block == nullptr || pending->size <= block->size)) {
    RemovePending(pending);
    Split(pending, size);  // the remainder stays pending on the same fence
    pending->fence.reset();
    pending->stream = kNoStream;
    return pending;
  }
  if (block == nullptr) return nullptr;
  free_blocks.erase(it);
  Split(block, size);
  return block;
}

CachingPool::Block* CachingPool::NewSegment(size_t segment_size, bool small,
                                            absl::Status* upstream_error) {
  const int64_t bytes = static_cast<int64_t>(segment_size);
  if (limit_bytes_ > 0 && bytes > limit_bytes_ - stats_.reserved_bytes) {
    return nullptr;
  }
  absl::StatusOr<void*> p = upstream_->Allocate(segment_size);
  if (!p.ok()) {
    *upstream_error = p.status();
    return nullptr;
  }
  Block* head = NewBlock(static_cast<char*>(*p), segment_size, small);
  segments_.insert(head);
  stats_.reserved_bytes += bytes;
  stats_.peak_reserved_bytes =
      std::max(stats_.peak_reserved_bytes, stats_.reserved_bytes);
  ++stats_.segment_count;
  return head;
}

CachingPool::Block* CachingPool::NewSegmentWithinLimit(
    size_t size, bool small, absl::Status* upstream_error) {
  const size_t segment_size = SegmentSize(size);
  Block* block = NewSegment(segment_size, small, upstream_error);
  if (block == nullptr && upstream_error->ok() && segment_size > size) {
    block = NewSegment(size, small, upstream_error);
  }
  return block;
}

void CachingPool::Split(Block* block, size_t size) {
  const size_t remaining = block->size - size;
  // A large-pool remainder of 1 MiB or less could only ever serve a small
  // request, which never comes to the large pool: keep it in the block.
  const bool split =
      block->small ? remaining >= kMinBlockSize : remaining > kSmallSize;
  if (!split) return;
  Block* rest = NewBlock(block->ptr + size, remaining, block->small);
  rest->prev = block;
  rest->next = block->next;
  if (block->next != nullptr) block->next->prev = rest;
  block->next = rest;
  block->size = size;
  if (block->fence != nullptr) {
    rest->fence = block->fence;
    rest->stream = block->stream;
    AddPending(rest);
  } else {
    FreeBlocksFor(block->small).insert(rest);
  }
}

int64_t CachingPool::ReleaseCachedSegments() {
  int64_t released = 0;
  for (FreeBlocks* free_blocks : {&small_free_, &large_free_}) {
    for (auto it = free_blocks->begin(); it != free_blocks->end();) {
      Block* block = *it;
      if (block->prev != nullptr || block->next != nullptr) {
        ++it;  // part of a segment that is still in use
        continue;
      }
      it = free_blocks->erase(it);
      segments_.erase(block);
      upstream_->Deallocate(block->ptr, block->size);
      released += static_cast<int64_t>(block->size);
      stats_.reserved_bytes -= static_cast<int64_t>(block->size);
      --stats_.segment_count;
      DeleteBlock(block);
    }
  }
  return released;
}

absl::Status CachingPool::OutOfMemory(
    size_t bytes, const absl::Status& upstream_error) const {
  const int64_t asked = bytes > static_cast<size_t>(INT64_MAX)
                            ? INT64_MAX
                            : static_cast<int64_t>(bytes);
  const std::string request =
      absl::StrCat("out of memory on device ", device_, ": tried to allocate ",
                   FormatSize(asked));
  std::string message = absl::StrCat(request, "; ");
  if (limit_bytes_ > 0) {
    absl::StrAppend(&message, "limit ", FormatSize(limit_bytes_), ", ");
  }
  // "cached" is what could be reused now; blocks still behind a fence are
  // named apart, and only when there are some.
  absl::StrAppend(&message, FormatSize(stats_.allocated_bytes), " allocated, ",
                  FormatSize(stats_.reserved_bytes - stats_.allocated_bytes -
                             stats_.pending_free_bytes),
                  " cached (reserved but unallocated)");
  if (stats_.pending_free_bytes > 0) {
    absl::StrAppend(&message, ", ", FormatSize(stats_.pending_free_bytes),
                    " freed but pending on a stream");
  }
  if (!upstream_error.ok()) {
    absl::StrAppend(&message, "; ", upstream_->Name(), ": ",
                    upstream_error.message());
  }
  return WithCallerMessage(absl::ResourceExhaustedError(message), request);
}

}  // namespace tensorcast
