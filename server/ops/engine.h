// Engine: what the store does with one device's memory -- fill it, gather
// and cast within it, upload host bytes into it, read it back in chunks --
// behind one interface that names no CUDA type, so server/store stays free
// of CUDA headers and builds the same with or without the toolkit.
//
// HostEngine (here) runs the CPU loops of cast.h, gather.h and fill.h on
// host memory. The CUDA engine (cuda_backend.h's NewCudaEngine, built only
// with CUDA) runs the kernels of *_cuda.h on one GPU, on CUDA streams of its
// own, staging through pinned host memory.
//
// Every method is synchronous unless it says otherwise: when it returns, the
// work is done and the memory may be read, reused or freed by anyone --
// except ChunkReader, the one asynchronous path (a Fetch's pipeline).
// Engines are thread-safe; a ChunkReader belongs to one caller.
#ifndef TENSORCAST_SERVER_OPS_ENGINE_H_
#define TENSORCAST_SERVER_OPS_ENGINE_H_

#include <cstdint>
#include <memory>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "server/core/shape.h"

namespace tensorcast {

// One of Create's computed fills (fill.h).
struct FillOp {
  enum class Kind { kValue, kArange, kEye, kRand };
  Kind kind = Kind::kValue;
  double value = 0;   // kValue
  double start = 0;   // kArange
  double step = 1;    // kArange
  int64_t rows = 0;   // kEye
  int64_t cols = 0;   // kEye
  uint64_t seed = 0;  // kRand
};

// Produces elements of a strided view, cast, into host memory, a chunk at a
// time, with up to slots() chunks in flight: Start queues a chunk and
// returns at once; Wait blocks until that slot's chunk is in host memory.
// The producer of a Fetch: while gRPC sends one chunk the device gathers,
// casts and copies the next ones.
//
// A reader holds slots() x slot_elements() output elements of host memory
// (pinned, on a GPU) and, on a GPU, as much device scratch unless the view
// is contiguous and not cast; callers charge that before they make one.
//
// Not thread-safe. The reader keeps what it reads valid only while the
// caller keeps the storage alive; its destructor waits for work in flight.
class ChunkReader {
 public:
  virtual ~ChunkReader() = default;
  virtual int slots() const = 0;
  // The most elements one slot holds.
  virtual int64_t slot_elements() const = 0;
  // Queues elements [first, first + count) of the view, cast to the output
  // dtype, into `slot`, which must not be in flight (Start without a Wait).
  virtual absl::Status Start(int slot, int64_t first, int64_t count) = 0;
  // The slot's elements, in host memory, valid until the slot is started
  // again or the reader is destroyed.
  virtual absl::StatusOr<const char*> Wait(int slot) = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;

  // True for host memory: its pointers may be read and written directly.
  virtual bool is_host() const = 0;

  // n contiguous elements of dtype at dst (this device's memory).
  // INVALID_ARGUMENT for rand on a bool or integer dtype.
  virtual absl::Status Fill(const FillOp& op, void* dst, DType dtype,
                            int64_t n) = 0;

  // GatherCast (gather.h) with storage and dst both this device's memory.
  virtual absl::Status GatherCast(const void* storage, DType src_dtype,
                                  const Layout& layout, int64_t start,
                                  int64_t count, void* dst,
                                  DType dst_dtype) = 0;

  // Writes bytes [offset, offset + len) of an upload into `staging`, host
  // memory the engine provides (pinned, for a GPU).
  using Producer =
      absl::FunctionRef<void(int64_t offset, int64_t len, char* staging)>;
  // Fills n bytes at dst (this device's memory) with what `produce` writes,
  // in pieces whose lengths are multiples of `granule` bytes (but the last),
  // so a producer that casts or byte-swaps sees whole elements.
  virtual absl::Status Upload(void* dst, int64_t n, int64_t granule,
                              Producer produce) = 0;

  // A reader of the view of `storage` (this device's memory), cast to
  // out_dtype, with `slots` slots of at least `slot_elements` elements.
  virtual absl::StatusOr<std::unique_ptr<ChunkReader>> NewReader(
      const void* storage, DType src_dtype, const Layout& layout,
      DType out_dtype, int64_t slot_elements, int slots) = 0;

  // Copies n bytes between two device pointers of this process, `src` on
  // GPU src_device and `dst` on GPU dst_device (CUDA ordinals; one of them
  // this engine's GPU): memory of its own, or memory another process lent
  // through CUDA IPC (server/memory/ipc_memory.h). One copy within a GPU,
  // or one peer copy between two (cudaMemcpyPeer: NVLink or PCIe where the
  // GPUs reach each other, the driver staging through host memory where
  // they do not). Byte-granular: no alignment needed. Synchronous, like
  // every method here. INVALID_ARGUMENT when neither GPU is this engine's;
  // UNIMPLEMENTED on an engine without device memory (the host's), whose
  // callers copy through host memory instead.
  virtual absl::Status CopyDevice(void* dst, int dst_device, const void* src,
                                  int src_device, int64_t n);
};

// The engine of host memory: the CPU loops, no staging.
std::unique_ptr<Engine> NewHostEngine();

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_OPS_ENGINE_H_
