// The CUDA side of cuda_backend.h: the GPU probe, the memory resources and
// CudaEngine, the Engine (engine.h) of one GPU.
//
// Each synchronous call runs on a non-blocking stream of its own (created
// and destroyed per call: a few microseconds against the copies and kernels
// it orders) and synchronises it before returning, so the storage it touched
// may go back to the pool untracked. A ChunkReader owns one stream for its
// life -- a Fetch's pipeline -- and synchronises it before it frees its
// staging. Pool blocks are taken with the stream's identity, so a block
// cached by one stream goes back to the same stream first (CachingPool's
// stream-aware reuse).
#include <cuda_runtime_api.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/size.h"
#include "server/memory/cuda_check.h"
#include "server/memory/cuda_ipc_memory.h"
#include "server/memory/cuda_memory_resource.h"
#include "server/memory/pinned_memory_resource.h"
#include "server/ops/cuda_backend.h"
#include "server/ops/fill_cuda.h"
#include "server/ops/gather_cuda.h"

namespace tensorcast {
namespace {

// Staging per upload slot: big enough that a copy's fixed cost (~10 us) is
// small, small enough that two slots per upload cost little pinned memory.
constexpr int64_t kUploadStagingBytes = 4 << 20;

void LogIfError(const absl::Status& status) {
  if (!status.ok()) spdlog::error("{}", status.ToString());
}

// A non-blocking stream that is synchronised, then destroyed, when it goes
// out of scope: declare it after the pool blocks its work touches, so that
// on every path (errors included) the work ends before they are freed.
class OwnedStream {
 public:
  OwnedStream() = default;
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;
  ~OwnedStream() {
    if (stream_ == nullptr) return;
    LogIfError(
        CudaStatus(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"));
    LogIfError(CudaStatus(cudaStreamDestroy(stream_), "cudaStreamDestroy"));
  }
  absl::Status Create() {
    TC_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    return absl::OkStatus();
  }
  absl::Status Sync() {
    TC_CUDA_TRY(cudaStreamSynchronize(stream_));
    return absl::OkStatus();
  }
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class OwnedEvent {
 public:
  OwnedEvent() = default;
  OwnedEvent(const OwnedEvent&) = delete;
  OwnedEvent& operator=(const OwnedEvent&) = delete;
  ~OwnedEvent() {
    if (event_ != nullptr) {
      LogIfError(CudaStatus(cudaEventDestroy(event_), "cudaEventDestroy"));
    }
  }
  absl::Status Create() {
    TC_CUDA_TRY(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming));
    return absl::OkStatus();
  }
  absl::Status Record(cudaStream_t stream) {
    TC_CUDA_TRY(cudaEventRecord(event_, stream));
    return absl::OkStatus();
  }
  // A never-recorded event counts as complete.
  absl::Status Wait() {
    TC_CUDA_TRY(cudaEventSynchronize(event_));
    return absl::OkStatus();
  }

 private:
  cudaEvent_t event_ = nullptr;
};

// A block of a CachingPool, returned to it on destruction (after the stream
// that used it has been synchronised: see OwnedStream).
class PoolBlock {
 public:
  PoolBlock() = default;
  PoolBlock(const PoolBlock&) = delete;
  PoolBlock& operator=(const PoolBlock&) = delete;
  ~PoolBlock() {
    if (ptr_ != nullptr) pool_->Free(ptr_, stream_);
  }
  absl::Status Allocate(CachingPool* pool, int64_t bytes, StreamId stream) {
    absl::StatusOr<void*> p =
        pool->Allocate(static_cast<size_t>(bytes), stream);
    if (!p.ok()) return p.status();
    pool_ = pool;
    ptr_ = *p;
    stream_ = stream;
    return absl::OkStatus();
  }
  char* get() const { return static_cast<char*>(ptr_); }

 private:
  CachingPool* pool_ = nullptr;
  void* ptr_ = nullptr;
  StreamId stream_ = kNoStream;
};

class CudaChunkReader final : public ChunkReader {
 public:
  CudaChunkReader(int device, const void* storage, DType src_dtype,
                  const Layout& layout, DType out_dtype, int64_t slot_elements,
                  int slots)
      : device_(device),
        storage_(static_cast<const char*>(storage)),
        src_dtype_(src_dtype),
        layout_(layout),
        out_dtype_(out_dtype),
        slot_elements_(slot_elements),
        plain_(src_dtype == out_dtype && layout.IsContiguous()),
        slots_(slots) {}

  // Members go in reverse order: the stream (synchronised) before the
  // slots' blocks return to their pools.
  ~CudaChunkReader() override = default;

  absl::Status Init(CachingPool* device_pool, CachingPool* pinned_pool) {
    ScopedDevice scoped;
    if (absl::Status s = scoped.Enter(device_); !s.ok()) return s;
    if (absl::Status s = stream_.Create(); !s.ok()) return s;
    const StreamId id = StreamIdOf(stream_.get());
    const int64_t bytes = slot_elements_ * ItemSize(out_dtype_);
    for (Slot& slot : slots_) {
      if (absl::Status s = slot.event.Create(); !s.ok()) return s;
      if (absl::Status s = slot.pinned.Allocate(pinned_pool, bytes, id);
          !s.ok()) {
        return s;
      }
      if (!plain_) {
        if (absl::Status s = slot.scratch.Allocate(device_pool, bytes, id);
            !s.ok()) {
          return s;
        }
      }
    }
    return absl::OkStatus();
  }

  int slots() const override { return static_cast<int>(slots_.size()); }
  int64_t slot_elements() const override { return slot_elements_; }

  absl::Status Start(int index, int64_t first, int64_t count) override {
    if (index < 0 || index >= slots() || count > slot_elements_ || count < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chunk of ", count, " elements does not fit slot ", index));
    }
    Slot& slot = slots_[index];
    ScopedDevice scoped;
    if (absl::Status s = scoped.Enter(device_); !s.ok()) return s;
    const size_t out_bytes = static_cast<size_t>(count) * ItemSize(out_dtype_);
    if (count > 0) {
      if (plain_) {
        const char* src =
            storage_ + (layout_.offset + first) *
                           static_cast<int64_t>(ItemSize(src_dtype_));
        TC_CUDA_TRY(cudaMemcpyAsync(slot.pinned.get(), src, out_bytes,
                                    cudaMemcpyDeviceToHost, stream_.get()));
      } else {
        if (absl::Status s = GatherCastOnDevice(
                storage_, src_dtype_, layout_, first, count, slot.scratch.get(),
                out_dtype_, stream_.get());
            !s.ok()) {
          return s;
        }
        TC_CUDA_TRY(cudaMemcpyAsync(slot.pinned.get(), slot.scratch.get(),
                                    out_bytes, cudaMemcpyDeviceToHost,
                                    stream_.get()));
      }
    }
    return slot.event.Record(stream_.get());
  }

  absl::StatusOr<const char*> Wait(int index) override {
    if (index < 0 || index >= slots()) {
      return absl::InvalidArgumentError("no such slot");
    }
    if (absl::Status s = slots_[index].event.Wait(); !s.ok()) return s;
    return slots_[index].pinned.get();
  }

 private:
  struct Slot {
    PoolBlock pinned;   // host-visible output
    PoolBlock scratch;  // device output of the gather/cast (not plain_)
    OwnedEvent event;   // recorded after the slot's copy
  };

  const int device_;
  const char* const storage_;
  const DType src_dtype_;
  const Layout layout_;
  const DType out_dtype_;
  const int64_t slot_elements_;
  const bool plain_;  // contiguous, no cast: copy straight from storage
  std::vector<Slot> slots_;
  OwnedStream stream_;  // after slots_: destroyed (synchronised) first
};

class CudaEngine final : public Engine {
 public:
  CudaEngine(int device, CachingPool* device_pool, CachingPool* pinned_pool)
      : device_(device), device_pool_(device_pool), pinned_pool_(pinned_pool) {}

  bool is_host() const override { return false; }

  absl::Status Fill(const FillOp& op, void* dst, DType dtype,
                    int64_t n) override {
    ScopedDevice scoped;
    if (absl::Status s = scoped.Enter(device_); !s.ok()) return s;
    OwnedStream stream;
    if (absl::Status s = stream.Create(); !s.ok()) return s;
    absl::Status launched;
    switch (op.kind) {
      case FillOp::Kind::kValue:
        launched = FillValueOnDevice(dst, dtype, n, op.value, stream.get());
        break;
      case FillOp::Kind::kArange:
        launched =
            FillArangeOnDevice(dst, dtype, n, op.start, op.step, stream.get());
        break;
      case FillOp::Kind::kEye:
        launched = FillEyeOnDevice(dst, dtype, op.rows, op.cols, stream.get());
        break;
      case FillOp::Kind::kRand:
        launched = FillRandOnDevice(dst, dtype, n, op.seed, stream.get());
        break;
    }
    if (!launched.ok()) return launched;
    return stream.Sync();
  }

  absl::Status GatherCast(const void* storage, DType src_dtype,
                          const Layout& layout, int64_t start, int64_t count,
                          void* dst, DType dst_dtype) override {
    ScopedDevice scoped;
    if (absl::Status s = scoped.Enter(device_); !s.ok()) return s;
    OwnedStream stream;
    if (absl::Status s = stream.Create(); !s.ok()) return s;
    if (absl::Status s =
            GatherCastOnDevice(storage, src_dtype, layout, start, count, dst,
                               dst_dtype, stream.get());
        !s.ok()) {
      return s;
    }
    return stream.Sync();
  }

  // Two pinned slots: the host fills one while the copy engine drains the
  // other.
  absl::Status Upload(void* dst, int64_t n, int64_t granule,
                      Producer produce) override {
    if (n <= 0) return absl::OkStatus();
    granule = std::max<int64_t>(granule, 1);
    const int64_t chunk =
        std::min(n, std::max(granule, kUploadStagingBytes / granule * granule));
    ScopedDevice scoped;
    if (absl::Status s = scoped.Enter(device_); !s.ok()) return s;
    PoolBlock staging[2];
    OwnedEvent copied[2];
    OwnedStream stream;  // after the blocks: synchronised before they go
    if (absl::Status s = stream.Create(); !s.ok()) return s;
    const StreamId id = StreamIdOf(stream.get());
    for (int i = 0; i < 2; ++i) {
      if (absl::Status s = staging[i].Allocate(pinned_pool_, chunk, id);
          !s.ok()) {
        return s;
      }
      if (absl::Status s = copied[i].Create(); !s.ok()) return s;
    }
    char* out = static_cast<char*>(dst);
    for (int64_t offset = 0, i = 0; offset < n; offset += chunk, ++i) {
      const int slot = static_cast<int>(i & 1);
      // The copy that last read this slot must be done before refilling it.
      if (absl::Status s = copied[slot].Wait(); !s.ok()) return s;
      const int64_t len = std::min(chunk, n - offset);
      produce(offset, len, staging[slot].get());
      TC_CUDA_TRY(cudaMemcpyAsync(out + offset, staging[slot].get(),
                                  static_cast<size_t>(len),
                                  cudaMemcpyHostToDevice, stream.get()));
      if (absl::Status s = copied[slot].Record(stream.get()); !s.ok()) {
        return s;
      }
    }
    return stream.Sync();
  }

  // On a stream of this GPU's: within it, cudaMemcpyAsync; to or from a
  // peer, cudaMemcpyPeerAsync, which the driver routes over NVLink or PCIe
  // peer-to-peer where the two GPUs reach each other and through host
  // memory where they do not -- no peer access needs enabling for it, and
  // a CUDA IPC mapping (opened with cudaIpcMemLazyEnablePeerAccess) is a
  // pointer like any other here.
  absl::Status CopyDevice(void* dst, int dst_device, const void* src,
                          int src_device, int64_t n) override {
    if (dst_device != device_ && src_device != device_) {
      return absl::InvalidArgumentError(
          absl::StrCat("CopyDevice on cuda:", device_,
                       " between cuda:", src_device, " and cuda:", dst_device));
    }
    if (n <= 0) return absl::OkStatus();
    ScopedDevice scoped;
    if (absl::Status s = scoped.Enter(device_); !s.ok()) return s;
    OwnedStream stream;
    if (absl::Status s = stream.Create(); !s.ok()) return s;
    if (dst_device == src_device) {
      TC_CUDA_TRY(cudaMemcpyAsync(dst, src, static_cast<size_t>(n),
                                  cudaMemcpyDeviceToDevice, stream.get()));
    } else {
      TC_CUDA_TRY(cudaMemcpyPeerAsync(dst, dst_device, src, src_device,
                                      static_cast<size_t>(n), stream.get()));
    }
    return stream.Sync();
  }

  absl::StatusOr<std::unique_ptr<ChunkReader>> NewReader(
      const void* storage, DType src_dtype, const Layout& layout,
      DType out_dtype, int64_t slot_elements, int slots) override {
    if (slot_elements <= 0 || slots <= 0) {
      return absl::InvalidArgumentError("a reader needs slots");
    }
    auto reader = std::make_unique<CudaChunkReader>(
        device_, storage, src_dtype, layout, out_dtype, slot_elements, slots);
    if (absl::Status s = reader->Init(device_pool_, pinned_pool_); !s.ok()) {
      return s;
    }
    return reader;
  }

 private:
  const int device_;
  CachingPool* const device_pool_;
  CachingPool* const pinned_pool_;
};

}  // namespace

CudaProbe ProbeCuda() {
  CudaProbe probe;
  probe.built = true;
  int runtime = 0;
  int driver = 0;
  (void)cudaRuntimeGetVersion(&runtime);
  (void)cudaDriverGetVersion(&driver);
  auto version = [](int v) {
    return absl::StrCat(v / 1000, ".", (v % 1000) / 10);
  };
  absl::StatusOr<int> count = CudaDeviceCount();
  if (!count.ok()) {
    (void)cudaGetLastError();
    probe.status =
        absl::StrCat("CUDA is not usable here (", count.status().message(),
                     "), so this server serves cpu only");
    return probe;
  }
  if (*count == 0) {
    probe.status =
        driver == 0 ? "no NVIDIA driver found, so this server serves cpu only"
                    : "no CUDA device found, so this server serves cpu only";
    return probe;
  }
  for (int i = 0; i < *count; ++i) {
    cudaDeviceProp prop;
    CudaDeviceInfo info;
    info.index = i;
    if (cudaGetDeviceProperties(&prop, i) == cudaSuccess) {
      info.description =
          absl::StrFormat("%s, %s, sm_%d%d", prop.name,
                          FormatSize(static_cast<int64_t>(prop.totalGlobalMem)),
                          prop.major, prop.minor);
    } else {
      (void)cudaGetLastError();
      info.description = "CUDA device";
    }
    probe.devices.push_back(std::move(info));
  }
  probe.status = absl::StrCat("CUDA runtime ", version(runtime), ", driver ",
                              version(driver), ": ", *count, " device(s)");
  return probe;
}

std::unique_ptr<MemoryResource> NewCudaDeviceResource(int index) {
  return std::make_unique<CudaDeviceMemoryResource>(index);
}

std::unique_ptr<MemoryResource> NewPinnedResource() {
  return std::make_unique<PinnedHostMemoryResource>();
}

std::unique_ptr<Engine> NewCudaEngine(int index, CachingPool* device_pool,
                                      CachingPool* pinned_pool) {
  return std::make_unique<CudaEngine>(index, device_pool, pinned_pool);
}

std::unique_ptr<IpcMemoryOpener> NewIpcMemoryOpener(std::vector<int> served) {
  return NewCudaIpcMemoryOpener(std::move(served));
}

}  // namespace tensorcast
