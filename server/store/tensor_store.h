// TensorStore: the handles and names of the tensors a server holds, and the
// storage they share.
//
// A Tensor is immutable once added: a view (dtype, layout, requires_grad) on
// a reference-counted Storage. Detach and other views share storage, and a
// Fetch in flight holds a TensorPtr, so deleting a handle never frees memory
// that anything else still reads: the storage goes back to its device's pool
// when the last reference drops.
//
// Tenants: every tensor belongs to one (null is the default tenant of a
// server without tokens). Lookups take the caller's tenant and see only its
// tensors: another tenant's handle or name is NOT_FOUND, exactly as one
// that does not exist; names are unique per tenant.
//
// Thread safety: all methods may be called concurrently.
#ifndef TENSORCAST_SERVER_STORE_TENSOR_STORE_H_
#define TENSORCAST_SERVER_STORE_TENSOR_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/dtype.h"
#include "server/core/mutex.h"
#include "server/core/shape.h"
#include "server/store/device.h"
#include "server/store/tenant.h"

namespace tensorcast {

// A block of one device's pool, charged to its owner's quota (if any).
// Returns the block to the pool, and the bytes to the owner, on destruction.
class Storage {
 public:
  // RESOURCE_EXHAUSTED (with the pool's figures) when the pool is full, or
  // (naming the quota) when the owner's quota would be exceeded.
  static absl::StatusOr<std::shared_ptr<Storage>> Allocate(
      Device* device, int64_t nbytes, TenantPtr owner = nullptr);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  char* bytes() const { return static_cast<char*>(data_); }
  int64_t nbytes() const { return nbytes_; }
  Device* device() const { return device_; }

 private:
  Storage(Device* device, void* data, int64_t nbytes, TenantPtr owner)
      : device_(device),
        data_(data),
        nbytes_(nbytes),
        owner_(std::move(owner)) {}
  Device* const device_;
  void* const data_;
  const int64_t nbytes_;
  const TenantPtr owner_;
};

struct Tensor {
  std::string handle;
  std::string name;
  DType dtype = DType::kFloat32;
  Layout layout;
  bool requires_grad = false;
  std::shared_ptr<Storage> storage;
  TenantPtr tenant;  // the owner; null: the default tenant
  int64_t numel = 0;
  int64_t created_unix_s = 0;
  int64_t expires_unix_s = 0;  // 0 = never

  int64_t nbytes() const { return numel * ItemSize(dtype); }
  const std::string& device() const { return storage->device()->name(); }
  // Address of element 0 of the storage (layout.offset not applied).
  const char* storage_bytes() const { return storage->bytes(); }
};
using TensorPtr = std::shared_ptr<const Tensor>;

// What a caller supplies to add a tensor; the store fills in the rest.
struct NewTensor {
  DType dtype = DType::kFloat32;
  Layout layout;
  bool requires_grad = false;
  std::shared_ptr<Storage> storage;
  std::string name;         // optional
  int64_t ttl_seconds = 0;  // 0 = the store's default
  TenantPtr tenant;         // the owner; null: the default tenant
};

// The PyTorch messages for requires_grad on a dtype that cannot have it.
absl::Status CheckRequiresGrad(DType dtype, bool requires_grad);

class TensorStore {
 public:
  // The wall clock behind creation times and expiry: whole seconds since the
  // Unix epoch. Called from any thread, at times under the store's lock, so
  // it must not call into the store.
  using Clock = std::function<int64_t()>;

  // default_ttl_seconds: applied when a tensor gives none; 0 = never expire.
  // clock: null is the system clock (NowUnixSeconds); tests pass a fake one
  // to expire tensors without waiting. node_id: non-empty on a node of a
  // cluster, whose handles then end in ".NODE_ID" (server/store/handle.h).
  explicit TensorStore(int64_t default_ttl_seconds = 0, Clock clock = nullptr,
                       std::string node_id = "");
  TensorStore(const TensorStore&) = delete;
  TensorStore& operator=(const TensorStore&) = delete;

  // Adds a tensor under a fresh handle. INVALID_ARGUMENT for a bad name,
  // requires_grad on a non-floating dtype, or a layout outside the storage;
  // ALREADY_EXISTS when the name is taken; RESOURCE_EXHAUSTED when the
  // tenant holds its limit of tensors.
  absl::StatusOr<TensorPtr> Add(NewTensor tensor);
  // The same name checks as Add, for callers that want to fail early (a Put
  // checks before it receives any data). The name may still be taken later.
  absl::Status CheckNameAvailable(absl::string_view name,
                                  const Tenant* tenant = nullptr) const;

  // A ref is a handle or a name. NOT_FOUND if neither (or it expired, or it
  // is another tenant's).
  absl::StatusOr<TensorPtr> Get(absl::string_view ref,
                                const Tenant* tenant = nullptr) const;
  // All or nothing: NOT_FOUND naming the first unknown ref and nothing
  // deleted; otherwise the number of handles removed.
  absl::StatusOr<int> Delete(std::span<const std::string> refs,
                             const Tenant* tenant = nullptr);

  struct Page {
    std::vector<TensorPtr> tensors;
    std::string next_page_token;  // empty on the last page
  };
  // The tenant's tensors in creation order. Page tokens are opaque and
  // count the tenant's own tensors only (its own creation sequence): what
  // other tenants make changes nothing a tenant sees, and a token is
  // meaningless to another tenant. INVALID_ARGUMENT for a bad token.
  absl::StatusOr<Page> List(int page_size, absl::string_view page_token,
                            absl::string_view name_prefix,
                            const Tenant* tenant = nullptr) const;

  // Removes tensors whose expiry is at or before now (the store's clock, or
  // `now_unix_s`); returns how many. Until then an expired tensor is
  // already invisible to Get, Delete, List and the name checks.
  int ReapExpired();
  int ReapExpired(int64_t now_unix_s);

  int64_t size() const;
  int64_t CountOnDevice(const Device* device) const;
  // The bytes of the tensors on `device` (each view counts its own).
  int64_t BytesOnDevice(const Device* device) const;

  // The system clock, in seconds since the Unix epoch.
  static int64_t NowUnixSeconds();
  // The store's clock.
  int64_t Now() const { return clock_(); }
  // The node id handles carry ("" for none).
  const std::string& node_id() const { return node_id_; }

 private:
  struct Entry {
    TensorPtr tensor;
    uint64_t seq;  // in its tenant's own sequence
  };
  // List's order: (tenant, its own sequence number).
  static uintptr_t Owner(const Tenant* tenant) {
    return reinterpret_cast<uintptr_t>(tenant);
  }
  using SeqKey = std::pair<uintptr_t, uint64_t>;
  absl::Status CheckNameLocked(absl::string_view name,
                               const Tenant* tenant) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  const Entry* FindLocked(absl::string_view ref, int64_t now,
                          const Tenant* tenant) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  void EraseLocked(const std::string& handle)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const int64_t default_ttl_seconds_;
  const Clock clock_;
  const std::string node_id_;

  mutable Mutex mu_;
  absl::flat_hash_map<std::string, Entry> by_handle_ ABSL_GUARDED_BY(mu_);
  // NameKey(tenant, name) -> handle.
  absl::flat_hash_map<std::string, std::string> by_name_ ABSL_GUARDED_BY(mu_);
  std::map<SeqKey, std::string> by_seq_ ABSL_GUARDED_BY(mu_);
  // Each tenant's last sequence number (tenants live as long as the
  // server's Authenticator, so their addresses are not reused).
  absl::flat_hash_map<uintptr_t, uint64_t> last_seq_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_TENSOR_STORE_H_
