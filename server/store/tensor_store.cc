#include "server/store/tensor_store.h"

#include <sys/random.h>

#include <chrono>
#include <cstring>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "server/core/echo.h"
#include "server/core/secure_random.h"
#include "server/store/handle.h"

namespace tensorcast {
namespace {

constexpr size_t kMaxNameBytes = 256;

// 128 bits from the kernel's CSPRNG: handles must be unguessable. On a node
// with an id, the id follows a "." (server/store/handle.h).
std::string NewHandle(const std::string& node_id) {
  std::string handle = RandomHex(kHandleHexDigits / 2);
  if (!node_id.empty()) absl::StrAppend(&handle, ".", node_id);
  return handle;
}

// Names are unique per tenant: the key carries the tenant's name (tenant
// names cannot contain the separator).
std::string NameKey(const Tenant* tenant, absl::string_view name) {
  return absl::StrCat(tenant == nullptr ? "" : tenant->name(), "\x1f", name);
}

}  // namespace

absl::StatusOr<std::shared_ptr<Storage>> Storage::Allocate(Device* device,
                                                           int64_t nbytes,
                                                           TenantPtr owner) {
  if (nbytes < 0) return absl::InvalidArgumentError("negative byte count");
  if (owner != nullptr) {
    if (absl::Status s = owner->ChargeBytes(nbytes); !s.ok()) return s;
  }
  absl::StatusOr<void*> p =
      device->pool().Allocate(static_cast<size_t>(nbytes));
  if (!p.ok()) {
    if (owner != nullptr) owner->ReleaseBytes(nbytes);
    return p.status();
  }
  return std::shared_ptr<Storage>(
      new Storage(device, *p, nbytes, std::move(owner)));
}

Storage::~Storage() {
  device_->pool().Free(data_);
  if (owner_ != nullptr) owner_->ReleaseBytes(nbytes_);
}

absl::Status CheckRequiresGrad(DType dtype, bool requires_grad) {
  if (requires_grad && !IsFloatingOrComplex(dtype)) {
    return absl::InvalidArgumentError(
        "Only Tensors of floating point and complex dtype can require "
        "gradients");
  }
  return absl::OkStatus();
}

TensorStore::TensorStore(int64_t default_ttl_seconds, Clock clock,
                         std::string node_id)
    : default_ttl_seconds_(default_ttl_seconds),
      clock_(clock != nullptr ? std::move(clock) : Clock(&NowUnixSeconds)),
      node_id_(std::move(node_id)) {}

int64_t TensorStore::NowUnixSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::Status TensorStore::CheckNameLocked(absl::string_view name,
                                          const Tenant* tenant) const {
  if (name.empty()) return absl::OkStatus();
  if (name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("name is longer than ", kMaxNameBytes, " bytes"));
  }
  if (NameLooksLikeHandle(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "name '", EchoInput(name),
        "' looks like a handle (32 hex digits, alone or before a '.'); "
        "choose another"));
  }
  for (char c : name) {
    if (!absl::ascii_isgraph(c)) {
      return absl::InvalidArgumentError(
          "names may contain only printable ASCII without spaces");
    }
  }
  auto it = by_name_.find(NameKey(tenant, name));
  if (it != by_name_.end() &&
      FindLocked(it->second, Now(), tenant) != nullptr) {
    return absl::AlreadyExistsError(
        absl::StrCat("a tensor named '", EchoInput(name),
                     "' already exists (handle ", it->second, ")"));
  }
  return absl::OkStatus();
}

absl::Status TensorStore::CheckNameAvailable(absl::string_view name,
                                             const Tenant* tenant) const {
  ReaderMutexLock lock(&mu_);
  return CheckNameLocked(name, tenant);
}

absl::StatusOr<TensorPtr> TensorStore::Add(NewTensor t) {
  if (absl::Status s = CheckRequiresGrad(t.dtype, t.requires_grad); !s.ok()) {
    return s;
  }
  if (t.storage == nullptr) return absl::InternalError("tensor has no storage");
  absl::StatusOr<int64_t> numel = NumElements(t.layout.shape);
  if (!numel.ok()) return numel.status();
  int64_t storage_elements =
      t.storage->nbytes() / static_cast<int64_t>(ItemSize(t.dtype));
  if (absl::Status s = CheckLayoutInBounds(t.layout, storage_elements);
      !s.ok()) {
    return s;
  }
  if (t.ttl_seconds < 0) {
    return absl::InvalidArgumentError("ttl_seconds must not be negative");
  }
  auto tensor = std::make_shared<Tensor>();
  tensor->handle = NewHandle(node_id_);
  tensor->name = std::move(t.name);
  tensor->dtype = t.dtype;
  tensor->layout = std::move(t.layout);
  tensor->requires_grad = t.requires_grad;
  tensor->storage = std::move(t.storage);
  tensor->tenant = std::move(t.tenant);
  tensor->numel = *numel;
  tensor->created_unix_s = Now();
  int64_t ttl = t.ttl_seconds > 0 ? t.ttl_seconds : default_ttl_seconds_;
  // Saturate: a huge ttl means "practically never", not an overflow into the
  // past.
  int64_t expires = 0;
  if (ttl > 0 &&
      __builtin_add_overflow(tensor->created_unix_s, ttl, &expires)) {
    expires = std::numeric_limits<int64_t>::max();
  }
  tensor->expires_unix_s = expires;

  // An expired holder of the name gives it up now; its storage goes back to
  // the pool after the lock is released (the pool is never entered under
  // mu_).
  TensorPtr expired;
  const Tenant* tenant = tensor->tenant.get();
  MutexLock lock(&mu_);
  if (absl::Status s = CheckNameLocked(tensor->name, tenant); !s.ok()) {
    return s;
  }
  if (tenant != nullptr) {
    if (absl::Status s = tensor->tenant->AddTensor(); !s.ok()) return s;
  }
  if (!tensor->name.empty()) {
    const std::string key = NameKey(tenant, tensor->name);
    auto old = by_name_.find(key);
    if (old != by_name_.end()) {
      auto held = by_handle_.find(old->second);
      if (held != by_handle_.end()) expired = held->second.tensor;
      EraseLocked(std::string(old->second));
    }
    by_name_[key] = tensor->handle;
  }
  const uint64_t seq = ++last_seq_[Owner(tenant)];
  by_seq_[SeqKey(Owner(tenant), seq)] = tensor->handle;
  by_handle_[tensor->handle] = Entry{tensor, seq};
  return TensorPtr(tensor);
}

const TensorStore::Entry* TensorStore::FindLocked(absl::string_view ref,
                                                  int64_t now,
                                                  const Tenant* tenant) const {
  auto it = by_handle_.find(ref);
  if (it == by_handle_.end()) {
    auto named = by_name_.find(NameKey(tenant, ref));
    if (named == by_name_.end()) return nullptr;
    it = by_handle_.find(named->second);
    if (it == by_handle_.end()) return nullptr;
  }
  const Tensor& t = *it->second.tensor;
  if (t.tenant.get() != tenant) return nullptr;  // as if it did not exist
  if (t.expires_unix_s != 0 && t.expires_unix_s <= now) return nullptr;
  return &it->second;
}

absl::StatusOr<TensorPtr> TensorStore::Get(absl::string_view ref,
                                           const Tenant* tenant) const {
  ReaderMutexLock lock(&mu_);
  const Entry* e = FindLocked(ref, Now(), tenant);
  if (e == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no tensor '", EchoInput(ref), "'"));
  }
  return e->tensor;
}

void TensorStore::EraseLocked(const std::string& handle) {
  auto it = by_handle_.find(handle);
  if (it == by_handle_.end()) return;
  const Tensor& t = *it->second.tensor;
  if (!t.name.empty()) {
    auto named = by_name_.find(NameKey(t.tenant.get(), t.name));
    if (named != by_name_.end() && named->second == handle) {
      by_name_.erase(named);
    }
  }
  if (t.tenant != nullptr) t.tenant->RemoveTensor();
  by_seq_.erase(SeqKey(Owner(t.tenant.get()), it->second.seq));
  by_handle_.erase(it);
}

absl::StatusOr<int> TensorStore::Delete(std::span<const std::string> refs,
                                        const Tenant* tenant) {
  // Storage is freed when the last TensorPtr drops; keep them alive until
  // the lock is released so the pool is never entered under mu_.
  std::vector<TensorPtr> doomed;
  {
    MutexLock lock(&mu_);
    int64_t now = Now();
    for (const std::string& ref : refs) {
      const Entry* e = FindLocked(ref, now, tenant);
      if (e == nullptr) {
        return absl::NotFoundError(absl::StrCat("no tensor '", EchoInput(ref),
                                                "'; nothing was deleted"));
      }
      doomed.push_back(e->tensor);
    }
    for (const TensorPtr& t : doomed) EraseLocked(t->handle);
  }
  int deleted = 0;
  // The same tensor named twice (handle and name) counts once.
  for (size_t i = 0; i < doomed.size(); ++i) {
    bool seen = false;
    for (size_t j = 0; j < i; ++j) seen |= doomed[j] == doomed[i];
    if (!seen) ++deleted;
  }
  return deleted;
}

absl::StatusOr<TensorStore::Page> TensorStore::List(
    int page_size, absl::string_view page_token, absl::string_view name_prefix,
    const Tenant* tenant) const {
  if (page_size <= 0) page_size = 100;
  if (page_size > 1000) page_size = 1000;
  uint64_t after = 0;
  if (!page_token.empty() && !absl::SimpleAtoi(page_token, &after)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad page_token '", EchoInput(page_token), "'"));
  }
  Page page;
  ReaderMutexLock lock(&mu_);
  int64_t now = Now();
  // Only this tenant's range of the index: its own sequence numbers.
  const uintptr_t owner = Owner(tenant);
  for (auto it = by_seq_.upper_bound(SeqKey(owner, after));
       it != by_seq_.end() && it->first.first == owner; ++it) {
    const Entry* e = FindLocked(it->second, now, tenant);
    if (e == nullptr) continue;
    if (!absl::StartsWith(e->tensor->name, name_prefix)) continue;
    if (static_cast<int>(page.tensors.size()) == page_size) {
      page.next_page_token = absl::StrCat(std::prev(it)->first.second);
      break;
    }
    page.tensors.push_back(e->tensor);
  }
  return page;
}

int TensorStore::ReapExpired() { return ReapExpired(Now()); }

int TensorStore::ReapExpired(int64_t now_unix_s) {
  std::vector<TensorPtr> doomed;
  {
    MutexLock lock(&mu_);
    for (const auto& [handle, entry] : by_handle_) {
      int64_t exp = entry.tensor->expires_unix_s;
      if (exp != 0 && exp <= now_unix_s) doomed.push_back(entry.tensor);
    }
    for (const TensorPtr& t : doomed) EraseLocked(t->handle);
  }
  return static_cast<int>(doomed.size());
}

int64_t TensorStore::size() const {
  ReaderMutexLock lock(&mu_);
  return static_cast<int64_t>(by_handle_.size());
}

int64_t TensorStore::CountOnDevice(const Device* device) const {
  ReaderMutexLock lock(&mu_);
  int64_t n = 0;
  for (const auto& [handle, entry] : by_handle_) {
    n += entry.tensor->storage->device() == device;
  }
  return n;
}

int64_t TensorStore::BytesOnDevice(const Device* device) const {
  ReaderMutexLock lock(&mu_);
  int64_t bytes = 0;
  for (const auto& [handle, entry] : by_handle_) {
    if (entry.tensor->storage->device() == device) {
      bytes += entry.tensor->nbytes();
    }
  }
  return bytes;
}

}  // namespace tensorcast
