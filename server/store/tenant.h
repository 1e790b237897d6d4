// Tenant: who a tensor belongs to, and what that owner may hold.
//
// Every tensor, storage block and stream is charged to the tenant whose
// token made it (server/service/auth.h maps tokens to tenants; whether a
// token may do admin things is the token's, not the tenant's). A server
// without --auth-tokens has one tenant, the default one (a null TenantPtr),
// with only the server-wide limits.
//
// Limits (0 = none): bytes across all devices (the quota), tensors held
// (handles), and streams in flight (Fetch, Put, shared-memory sessions).
// The quota counts every byte the tenant makes the server hold: tensor
// storage (a view shares its storage's bytes, so only allocations count)
// and the buffers of its streams -- a Fetch's cast/gather chunk buffers or
// its GPU reader's pinned slots and device scratch, a GPU Put's host
// staging (ByteCharge) -- and the data bytes of the shared-memory regions
// it lends (SharedMemoryRegistry). Going over one is RESOURCE_EXHAUSTED naming
// the limit; nothing is charged then.
//
// Thread-safe; the counters are atomics, the limits may change on a token
// reload.
#ifndef TENSORCAST_SERVER_STORE_TENANT_H_
#define TENSORCAST_SERVER_STORE_TENANT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"

namespace tensorcast {

struct TenantLimits {
  int64_t max_bytes = 0;
  int64_t max_tensors = 0;
  int64_t max_streams = 0;
};

class Tenant {
 public:
  Tenant(std::string name, TenantLimits limits);
  Tenant(const Tenant&) = delete;
  Tenant& operator=(const Tenant&) = delete;

  const std::string& name() const { return name_; }
  TenantLimits limits() const;
  // A token reload: new limits (what is held stays held).
  void Update(TenantLimits limits);

  absl::Status ChargeBytes(int64_t n);
  void ReleaseBytes(int64_t n);
  absl::Status AddTensor();
  void RemoveTensor();
  absl::Status StartStream();
  void EndStream();

  int64_t bytes() const { return bytes_.load(std::memory_order_relaxed); }
  int64_t tensors() const { return tensors_.load(std::memory_order_relaxed); }
  int64_t streams() const { return streams_.load(std::memory_order_relaxed); }

 private:
  // Adds one to `counter` unless that passes `limit` (0 = none).
  absl::Status Take(std::atomic<int64_t>& counter, int64_t n, int64_t limit,
                    const char* what);

  const std::string name_;
  std::atomic<int64_t> max_bytes_;
  std::atomic<int64_t> max_tensors_;
  std::atomic<int64_t> max_streams_;
  std::atomic<int64_t> bytes_{0};
  std::atomic<int64_t> tensors_{0};
  std::atomic<int64_t> streams_{0};
};

using TenantPtr = std::shared_ptr<Tenant>;

// Bytes charged to a tenant's quota for as long as the charge lives: what a
// stream holds beyond tensor storage. The default tenant (null) is charged
// nothing.
class ByteCharge {
 public:
  ByteCharge() = default;
  // RESOURCE_EXHAUSTED (nothing charged) when n bytes more would pass the
  // tenant's quota; `what` says what they are for, in the message.
  static absl::Status Take(const TenantPtr& tenant, int64_t n, const char* what,
                           ByteCharge* charge);
  ByteCharge(ByteCharge&& other) noexcept { *this = std::move(other); }
  ByteCharge& operator=(ByteCharge&& other) noexcept;
  ByteCharge(const ByteCharge&) = delete;
  ByteCharge& operator=(const ByteCharge&) = delete;
  ~ByteCharge() { Release(); }
  void Release();
  int64_t bytes() const { return bytes_; }

 private:
  TenantPtr tenant_;
  int64_t bytes_ = 0;
};

// Holds one stream slot of a tenant for its lifetime.
class StreamSlot {
 public:
  StreamSlot() = default;
  // RESOURCE_EXHAUSTED when the tenant is at its stream limit.
  static absl::Status Take(const TenantPtr& tenant, StreamSlot* slot);
  StreamSlot(StreamSlot&& other) noexcept { *this = std::move(other); }
  StreamSlot& operator=(StreamSlot&& other) noexcept;
  StreamSlot(const StreamSlot&) = delete;
  StreamSlot& operator=(const StreamSlot&) = delete;
  ~StreamSlot() { Release(); }
  void Release();

 private:
  TenantPtr tenant_;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_TENANT_H_
