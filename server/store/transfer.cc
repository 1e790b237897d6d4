#include "server/store/transfer.h"

#include <algorithm>
#include <cstring>
#include <memory>

#include "server/ops/gather.h"

namespace tensorcast {

absl::Status PumpChunks(ChunkReader& reader, int64_t total,
                        absl::FunctionRef<absl::Status(
                            int64_t first, int64_t count, const char* host)>
                            consume) {
  const int64_t per = reader.slot_elements();
  const int slots = reader.slots();
  const int64_t chunks = (total + per - 1) / per;
  auto start = [&](int64_t chunk) {
    int64_t first = chunk * per;
    return reader.Start(static_cast<int>(chunk % slots), first,
                        std::min(per, total - first));
  };
  for (int64_t c = 0; c < std::min<int64_t>(slots, chunks); ++c) {
    if (absl::Status s = start(c); !s.ok()) return s;
  }
  for (int64_t c = 0; c < chunks; ++c) {
    absl::StatusOr<const char*> host = reader.Wait(static_cast<int>(c % slots));
    if (!host.ok()) return host.status();
    int64_t first = c * per;
    if (absl::Status s = consume(first, std::min(per, total - first), *host);
        !s.ok()) {
      return s;
    }
    if (c + slots < chunks) {
      if (absl::Status s = start(c + slots); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

absl::Status CopyView(const Tensor& src, DType out_dtype, Device* dst_device,
                      void* dst) {
  Device* src_device = src.storage->device();
  const int64_t item = static_cast<int64_t>(ItemSize(out_dtype));
  const int64_t nbytes = src.numel * item;
  if (nbytes == 0) return absl::OkStatus();
  if (src_device == dst_device) {
    return src_device->engine().GatherCast(src.storage->data(), src.dtype,
                                           src.layout, 0, src.numel, dst,
                                           out_dtype);
  }
  char* out = static_cast<char*>(dst);
  if (src_device->engine().is_host()) {
    // Cast on the host straight into the staging the GPU uploads from.
    return dst_device->engine().Upload(
        dst, nbytes, item, [&](int64_t offset, int64_t len, char* staging) {
          GatherCast(src.storage->data(), src.dtype, src.layout, offset / item,
                     len / item, staging, out_dtype);
        });
  }
  absl::StatusOr<std::unique_ptr<ChunkReader>> reader =
      src_device->engine().NewReader(
          src.storage->data(), src.dtype, src.layout, out_dtype,
          std::max<int64_t>(1, kTransferChunkBytes / item), kTransferSlots);
  if (!reader.ok()) return reader.status();
  const bool to_host = dst_device->engine().is_host();
  return PumpChunks(
      **reader, src.numel,
      [&](int64_t first, int64_t count, const char* host) -> absl::Status {
        if (to_host) {
          std::memcpy(out + first * item, host, count * item);
          return absl::OkStatus();
        }
        return dst_device->engine().Upload(
            out + first * item, count * item, item,
            [&](int64_t offset, int64_t len, char* staging) {
              std::memcpy(staging, host + offset, len);
            });
      });
}

}  // namespace tensorcast
