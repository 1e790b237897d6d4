// PutSink: receives an uploaded tensor in pieces and stores it only when
// every byte has arrived. It validates what it can as early as it can — the
// header (dtype, shape, size limit, name, device) before any data, each
// piece as it comes — and checks the byte count last. Until Finish succeeds
// nothing is visible in the store; destroying an unfinished sink returns its
// storage to the pool.
//
// Not thread-safe: one sink belongs to one upload.
#ifndef TENSORCAST_SERVER_STORE_PUT_SINK_H_
#define TENSORCAST_SERVER_STORE_PUT_SINK_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/npy.h"
#include "server/store/conversions.h"
#include "server/store/fetch_source.h"
#include "server/store/tenant.h"
#include "server/store/tensor_store.h"

namespace tensorcast {

struct PutSpec {
  WireFormat format = WireFormat::kRaw;
  // RAW: required. NPY: optional; when set, dtype and shape must match the
  // file's.
  std::optional<DType> dtype;
  Shape shape;
  std::string device;
  bool requires_grad = false;
  std::string name;
  int64_t ttl_seconds = 0;
  int64_t total_bytes = 0;  // announced size, 0 = unknown
};

class PutSink {
 public:
  // Validates the header; for RAW also reserves the storage.
  static absl::StatusOr<std::unique_ptr<PutSink>> Start(
      const ConversionContext& ctx, PutSpec spec);

  // INVALID_ARGUMENT for a malformed .npy header or more bytes than
  // expected; RESOURCE_EXHAUSTED when the storage cannot be reserved.
  absl::Status Write(absl::string_view data);
  // Write for `n` bytes that `read` produces: it must fill the `n` bytes at
  // the pointer it is given (or fail, and its error is returned). On a host
  // device, once the storage is reserved, they go straight into the
  // tensor's storage: one copy from wherever `read` takes them (a
  // shared-memory region), not two. Otherwise through a buffer of `n`
  // bytes, then Write. The checks and errors are Write's, made before
  // `read` is called; after a failed read the upload is unusable (Finish
  // is FAILED_PRECONDITION: a half-read tensor is never stored).
  absl::Status WriteFrom(int64_t n,
                         const std::function<absl::Status(char*)>& read);
  // Whether the storage is reserved: at Start for RAW, once the whole
  // header has arrived for NPY.
  bool reserved() const { return storage_ != nullptr; }
  // Whether the next bytes may come by WriteFromDevice: the storage is
  // reserved on a GPU ("cuda:N") and needs no byte swap (not a big-endian
  // .npy file).
  bool TakesDeviceBytes() const;
  // Write for `n` bytes at `src`, device memory of GPU `src_device` as this
  // process numbers them (a CUDA IPC region where it is mapped): the
  // tensor's engine copies them device to device (Engine::CopyDevice: one
  // copy within a GPU, a peer copy between two) straight into the storage,
  // no host memory in between. Bytes staged on the host before (those that
  // followed a .npy header) are uploaded first. FAILED_PRECONDITION unless
  // TakesDeviceBytes(); otherwise the checks and errors are Write's, made
  // before the copy, and after a failed copy the upload is unusable, as
  // for WriteFrom. Synchronous: the source may be reused when it returns.
  absl::Status WriteFromDevice(int64_t n, int src_device, const void* src);
  // INVALID_ARGUMENT when bytes are missing; otherwise the stored tensor.
  absl::StatusOr<TensorPtr> Finish();

  int64_t received_bytes() const { return received_; }

 private:
  PutSink(const ConversionContext& ctx, PutSpec spec, Device* device)
      : ctx_(ctx), spec_(std::move(spec)), device_(device) {}
  absl::Status Reserve(DType dtype, const Shape& shape);
  absl::Status ParseHeader();
  absl::Status FlushToDevice();
  // Write's byte counting and size checks for `n` more bytes received (all
  // of them), and for `n` more data bytes (after any header).
  absl::Status CountReceived(int64_t n);
  absl::Status CountData(int64_t n);

  // A GPU upload gathers pieces up to this size on the host (charged to the
  // tenant with its storage), then the engine moves them through pinned
  // staging.
  static constexpr int64_t kDeviceStagingBytes = 4 << 20;

  const ConversionContext ctx_;
  const PutSpec spec_;
  Device* const device_;

  std::string header_buffer_;  // NPY: bytes until the header is complete
  std::optional<NpyHeader> npy_;
  std::shared_ptr<Storage> storage_;
  DType dtype_ = DType::kFloat32;
  Shape shape_;
  int64_t expected_data_ = 0;  // data bytes after any header
  int64_t data_written_ = 0;
  std::string staging_;           // GPU: received, not yet uploaded
  int64_t staging_capacity_ = 0;  // GPU: what staging_ may hold
  ByteCharge staging_charge_;     // GPU: staging_capacity_, to the tenant
  int64_t uploaded_ = 0;          // GPU: data bytes in storage
  int64_t received_ = 0;
  int gpu_ = -1;              // the device's CUDA ordinal; -1 for the host
  std::string read_buffer_;   // WriteFrom, where the bytes cannot go direct
  bool read_failed_ = false;  // a WriteFrom's read failed: Finish refuses
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_PUT_SINK_H_
