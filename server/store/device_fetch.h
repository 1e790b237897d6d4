// DeviceFetch: a Fetch of a tensor on a GPU into a CUDA IPC region (device
// memory a same-host client lent, shared_memory.h), with no host memory in
// between. The Fetch reactor runs one instead of a FetchStream when the
// tensor is on a GPU and the region is device memory; every other pairing
// (a cpu tensor into device memory: one host-to-device copy per piece; a
// GPU tensor into host memory: the pinned pipeline) is a FetchStream's.
//
// The output's data bytes take one of two ways, chosen at Open:
//  - direct: the region is on the tensor's GPU, the range covers whole
//    elements and the region's bytes for them start aligned to an element.
//    The engine's GatherCast writes the output elements -- gathered and
//    cast -- straight into the region where it is mapped in this process:
//    one kernel per piece (a cudaMemcpy for a contiguous view that is not
//    cast), no temporary, nothing charged.
//  - through a temporary: the region is on another GPU, or the range
//    starts or ends inside an element, or the destination is not aligned
//    to one. The engine gathers and casts up to kTemporaryBytes of output
//    at a time into a temporary on the tensor's GPU, then one
//    Engine::CopyDevice per piece moves the bytes asked for into the
//    region (cudaMemcpyPeer between GPUs). The temporary is taken at Open,
//    before any work, from the tensor's device pool and charged to the
//    tenant's quota like a tensor (Storage::Allocate): RESOURCE_EXHAUSTED
//    there, as for a FetchStream's slots.
// Why a temporary and a peer copy rather than a kernel that writes the
// other GPU's memory: that needs peer access enabled between the two GPUs
// (cudaDeviceEnablePeerAccess, a change to the whole process's contexts
// that every GPU pair must support, and some have no peer path at all),
// whereas cudaMemcpyPeer works between any two -- over NVLink or PCIe
// where they reach each other, through host memory where they do not --
// and moves the bytes in one bulk transfer instead of a kernel's scattered
// remote stores. The cost is one extra read and write of the output in the
// tensor's GPU memory, bounded by kTemporaryBytes.
//
// The .npy header (FORMAT_NPY) is host memory: its bytes go into the region
// with the region's host-to-device copy (SharedMemoryRegion::Write).
// Every copy is synchronous: when CopyNext returns, its bytes are in the
// region, visible to any stream of the client's without a wait.
//
// Not thread-safe: one belongs to one Fetch. Keeps the source (and so the
// tensor's storage) and the region alive.
#ifndef TENSORCAST_SERVER_STORE_DEVICE_FETCH_H_
#define TENSORCAST_SERVER_STORE_DEVICE_FETCH_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "server/store/fetch_source.h"
#include "server/store/shared_memory.h"
#include "server/store/tenant.h"
#include "server/store/tensor_store.h"

namespace tensorcast {

class DeviceFetch {
 public:
  // The most output bytes the temporary holds (less for a smaller range).
  static constexpr int64_t kTemporaryBytes = int64_t{64} << 20;

  // Whether a Fetch of `source` into `region` goes this way: the tensor on
  // a GPU ("cuda:N", an engine that is not the host's) and the region
  // device memory.
  static bool Applies(const FetchSource& source,
                      const SharedMemoryRegion& region);

  // `offset`: where the output's first byte goes in the region; the caller
  // has checked the range (CheckRange). FAILED_PRECONDITION unless
  // Applies; RESOURCE_EXHAUSTED when the temporary, if one is needed,
  // cannot be had (the device pool, or `tenant`'s quota). `max_temporary`:
  // the temporary's bound (tests use a small one).
  static absl::StatusOr<std::unique_ptr<DeviceFetch>> Open(
      FetchSource source, std::shared_ptr<const SharedMemoryRegion> region,
      int64_t offset, const TenantPtr& tenant,
      int64_t max_temporary = kTemporaryBytes);

  DeviceFetch(const DeviceFetch&) = delete;
  DeviceFetch& operator=(const DeviceFetch&) = delete;

  const FetchSource& source() const { return source_; }
  // True when the data goes straight into the region (see above).
  bool direct() const { return temporary_ == nullptr; }
  // The temporary's size; 0 when direct.
  int64_t temporary_bytes() const {
    return temporary_ == nullptr ? 0 : temporary_->nbytes();
  }
  bool done() const { return pos_ == source_.end(); }

  // Copies the next bytes of the output into the region: any .npy header
  // bytes left, then up to max_bytes (> 0; at least one element) of data.
  // *moved: how many bytes went in.
  absl::Status CopyNext(int64_t max_bytes, int64_t* moved);

 private:
  DeviceFetch(FetchSource source,
              std::shared_ptr<const SharedMemoryRegion> region, int64_t offset,
              int tensor_device)
      : source_(std::move(source)),
        region_(std::move(region)),
        at_(offset),
        pos_(source_.begin()),
        tensor_device_(tensor_device) {}

  const FetchSource source_;
  const std::shared_ptr<const SharedMemoryRegion> region_;
  int64_t at_;   // where the next output byte goes in the region
  int64_t pos_;  // the next output byte
  const int tensor_device_;
  std::shared_ptr<Storage> temporary_;  // on the tensor's GPU; null: direct
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_DEVICE_FETCH_H_
