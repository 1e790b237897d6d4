// HostEngine: Engine (engine.h) over host memory with the CPU loops.
#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/ops/engine.h"
#include "server/ops/fill.h"
#include "server/ops/gather.h"

namespace tensorcast {
namespace {

// Host memory needs no pipeline: Start produces the chunk at once.
class HostChunkReader final : public ChunkReader {
 public:
  HostChunkReader(const void* storage, DType src_dtype, Layout layout,
                  DType out_dtype, int64_t slot_elements, int slots)
      : storage_(storage),
        src_dtype_(src_dtype),
        layout_(std::move(layout)),
        out_dtype_(out_dtype),
        slot_elements_(slot_elements),
        buffers_(slots,
                 std::vector<char>(slot_elements * ItemSize(out_dtype))) {}
  int slots() const override { return static_cast<int>(buffers_.size()); }
  int64_t slot_elements() const override { return slot_elements_; }
  absl::Status Start(int slot, int64_t first, int64_t count) override {
    if (slot < 0 || slot >= slots() || count > slot_elements_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "chunk of ", count, " elements does not fit slot ", slot));
    }
    tensorcast::GatherCast(storage_, src_dtype_, layout_, first, count,
                           buffers_[slot].data(), out_dtype_);
    return absl::OkStatus();
  }
  absl::StatusOr<const char*> Wait(int slot) override {
    if (slot < 0 || slot >= slots()) {
      return absl::InvalidArgumentError("no such slot");
    }
    return buffers_[slot].data();
  }

 private:
  const void* const storage_;
  const DType src_dtype_;
  const Layout layout_;
  const DType out_dtype_;
  const int64_t slot_elements_;
  std::vector<std::vector<char>> buffers_;
};

class HostEngine final : public Engine {
 public:
  bool is_host() const override { return true; }

  absl::Status Fill(const FillOp& op, void* dst, DType dtype,
                    int64_t n) override {
    switch (op.kind) {
      case FillOp::Kind::kValue:
        FillValue(dst, dtype, n, op.value);
        return absl::OkStatus();
      case FillOp::Kind::kArange:
        FillArange(dst, dtype, n, op.start, op.step);
        return absl::OkStatus();
      case FillOp::Kind::kEye:
        FillEye(dst, dtype, op.rows, op.cols);
        return absl::OkStatus();
      case FillOp::Kind::kRand:
        return FillRand(dst, dtype, n, op.seed);
    }
    return absl::InvalidArgumentError("unknown fill");
  }

  absl::Status GatherCast(const void* storage, DType src_dtype,
                          const Layout& layout, int64_t start, int64_t count,
                          void* dst, DType dst_dtype) override {
    tensorcast::GatherCast(storage, src_dtype, layout, start, count, dst,
                           dst_dtype);
    return absl::OkStatus();
  }

  absl::Status Upload(void* dst, int64_t n, int64_t /*granule*/,
                      Producer produce) override {
    if (n > 0) produce(0, n, static_cast<char*>(dst));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<ChunkReader>> NewReader(
      const void* storage, DType src_dtype, const Layout& layout,
      DType out_dtype, int64_t slot_elements, int slots) override {
    if (slot_elements <= 0 || slots <= 0) {
      return absl::InvalidArgumentError("a reader needs slots");
    }
    return std::make_unique<HostChunkReader>(storage, src_dtype, layout,
                                             out_dtype, slot_elements, slots);
  }
};

}  // namespace

absl::Status Engine::CopyDevice(void* /*dst*/, int /*dst_device*/,
                                const void* /*src*/, int /*src_device*/,
                                int64_t /*n*/) {
  return absl::UnimplementedError(
      "this engine has no device memory to copy between");
}

std::unique_ptr<Engine> NewHostEngine() {
  return std::make_unique<HostEngine>();
}

}  // namespace tensorcast
