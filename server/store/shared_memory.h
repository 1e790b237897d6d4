// SharedMemoryRegistry: same-host clients' shared-memory regions, which
// Fetch writes into and Put reads from instead of sending the bytes.
//
// A region is one of two kinds of memory:
//  - a file the client created under the registry's directory (/dev/shm)
//    named "tensorcast-" + [A-Za-z0-9_.-]; opened with O_NOFOLLOW, it must
//    be a regular file of at least the size given, on the directory's own
//    mount (not something mounted over the name). The server reads and
//    writes it with pread/pwrite, never through a mapping: a client that
//    shrinks its file causes a short read or write, which is an error, not
//    a SIGBUS in the server. (Any language's shm_open works.)
//  - a memfd the client created and sealed against shrinking and further
//    seals (F_SEAL_SHRINK and F_SEAL_SEAL; Linux memfd_create with
//    MFD_ALLOW_SEALING; tmpfs, not hugetlbfs), named by the client's pid
//    and descriptor; the server opens it through
//    /proc/PID/fd/FD once the link there names a memfd ("/memfd:..."), so
//    no other file system is ever asked anything. Because the seal makes a
//    SIGBUS impossible, the server maps it: Fetch and Put then cost one
//    memcpy.
// Every open of the client's memory is non-blocking (O_NONBLOCK): a file
// under a lease (F_SETLEASE) is refused at once, not waited for.
//  - a device allocation lent through CUDA IPC: the 64 bytes of its
//    cudaIpcMemHandle_t and the PCI bus id of its GPU, opened by the
//    registry's IpcMemoryOpener (server/memory/ipc_memory.h; the default
//    refuses every handle). The token and the challenge are read back from
//    the device, and Write/Read copy between host memory and the device
//    (IpcDeviceRegion::CopyToHost/CopyFromHost); a GPU tensor's bytes go
//    device to device instead, at device_data() (device_fetch.h,
//    PutSink::WriteFromDevice). Nothing is punched: the
//    server never allocates the client's device memory. Lent once at a time
//    by the address it opens at on its GPU.
//
// The layout: bytes [0, kSharedMemoryHeaderBytes) are the handshake's. The
// client writes its token at [0, token size) before it asks; the server
// answers with a random challenge, which the client writes at
// [kSharedMemoryChallengeOffset, +kSharedMemoryChallengeBytes) before its
// first transfer. The server reads only these from the header and never
// writes it, so no transfer can change or reveal them: every Fetch/Put
// range must lie in [kSharedMemoryHeaderBytes, size). A region must be
// bigger than the header.
//
// Safety rules (the server runs with --shared-memory to use them at all):
//  - The token proves the client can read the memory it names: the region
//    must start with the 16-64 byte token it sends (random: a token of one
//    repeated byte is refused), compared in constant time, read with pread
//    before anything is mapped. A forged name, pid or descriptor is useless
//    without reading the memory.
//  - The challenge proves it can write it: the first Fetch or Put (Find)
//    reads it back (pread, constant time) and refuses the region with the
//    open's NOT_FOUND, nothing read or written, until it is there. Memory
//    the caller can only read (another user's 0644 file, a descriptor
//    opened read-only, a guessable start such as an ELF header) is never
//    written nor read out through the server.
//  - A memfd must belong to another process: the server's own pid, or a
//    thread of it (whose /proc entry reaches the same descriptors, among
//    them every region other clients lent), is refused. Memory is lent once
//    at a time: a region (device and inode) that is lent now -- by anyone,
//    or by a session still ending -- is refused.
//  - Every refusal of an open for what the host holds (no such file, pid or
//    descriptor, not a regular file or memfd, not sealed, too small, wrong
//    token, leased, the server's own process, lent already) is one
//    NOT_FOUND with one text (Unusable), so the answer reveals nothing about
//    other processes; the reason goes to `why` for the server's debug log.
//    Input errors (a bad name, token length, size) are INVALID_ARGUMENT.
//  - Caps, checked before anything is opened (RESOURCE_EXHAUSTED naming
//    the cap): region size, regions per owner (connection), per tenant and
//    in all. Each open region holds one descriptor. The region's data bytes
//    (size - header) are charged to the tenant's memory quota (ByteCharge)
//    from before the open until the region is gone, so a tenant's shared
//    memory counts against its limits like its tensors.
//  - Memory cgroups: a page of a sparse region that the server touches
//    first (a transfer into or out of a hole) is allocated by the kernel
//    and charged to the server's cgroup, not the client's. The quota bounds
//    these pages while the region is lent; when the region is gone (its
//    session ended and no transfer uses it), the server punches its data
//    out (FALLOC_FL_PUNCH_HOLE) if it ever passed the challenge, which
//    frees them: a region's data does not outlive its session. Opening
//    reads only the token's bytes (no MAP_POPULATE, no faulting).
//  - Ids are 128 random bits, valid only for the owner (the gRPC peer and
//    tenant) that opened them: any other id or owner is NOT_FOUND, as if it
//    did not exist.
//  - Every access is bounds-checked first (INVALID_ARGUMENT, nothing read
//    or written).
//  - Close (when the client's session call ends) forgets the region; Fetches
//    or Puts still using it keep it open (and mapped) until they finish.
//
// Thread-safe.
#ifndef TENSORCAST_SERVER_STORE_SHARED_MEMORY_H_
#define TENSORCAST_SERVER_STORE_SHARED_MEMORY_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/mutex.h"
#include "server/memory/ipc_memory.h"
#include "server/store/tenant.h"

namespace tensorcast {

// The handshake's bytes at the start of every region: data starts here.
inline constexpr int64_t kSharedMemoryHeaderBytes = 4096;
// Where in the header the client writes the server's challenge (after the
// token's at most 64 bytes), and its size.
inline constexpr int64_t kSharedMemoryChallengeOffset = 64;
inline constexpr int64_t kSharedMemoryChallengeBytes = 16;

struct SharedMemoryLimits {
  // The largest region (bytes); 0 = no limit.
  int64_t max_region_bytes = int64_t{64} << 30;
  // Regions one owner (connection, as one tenant) may have open; 0 = no
  // per-owner limit.
  int64_t max_per_owner = 64;
  // Regions one tenant may have open on all its connections; 0 = no
  // per-tenant limit.
  int64_t max_per_tenant = 256;
  // Regions open in all; 0 = min(1024, RLIMIT_NOFILE / 4), which leaves
  // the other descriptors to connections and files.
  int64_t max_total = 0;
  // Tests only (the fuzzer): accept this process's own descriptors.
  bool allow_own_process = false;
};

class SharedMemoryRegion {
 public:
  // Punches the data out if the region ever passed its challenge (see the
  // file comment), then closes it. May take a while for a big region: drop
  // the last reference off gRPC's threads.
  ~SharedMemoryRegion();
  SharedMemoryRegion(const SharedMemoryRegion&) = delete;
  SharedMemoryRegion& operator=(const SharedMemoryRegion&) = delete;

  int64_t size() const { return size_; }
  // The GPU (this server's ordinal) of a CUDA IPC region; -1 for host
  // memory.
  int device() const { return device_ == nullptr ? -1 : device_->device(); }
  // True for a sealed memfd, which is mapped.
  bool mapped() const { return map_ != nullptr; }
  // Whether the client has shown it can write the region (Find checks).
  bool verified() const { return verified_.load(std::memory_order_acquire); }
  // INVALID_ARGUMENT unless kSharedMemoryHeaderBytes <= offset and
  // offset + length <= size.
  absl::Status CheckRange(int64_t offset, int64_t length) const;
  // Exactly n bytes at offset (checked); DATA_LOSS when the file came up
  // short (the client shrank it).
  absl::Status Write(int64_t offset, const char* data, int64_t n) const;
  // Read copies a mapped region's bytes with CopyToColdMemory
  // (server/memory/cold_copy.h): `data` is a tensor being uploaded.
  absl::Status Read(int64_t offset, char* data, int64_t n) const;
  // A CUDA IPC region's byte `offset` where it is mapped in this process:
  // a device pointer on GPU device(), for an engine's device-to-device
  // copies (DeviceFetch, PutSink::WriteFromDevice), which bypass Write and
  // Read; null for host memory. Check the range first (CheckRange), and
  // keep the region alive while a copy runs.
  char* device_data(int64_t offset) const;

 private:
  friend class SharedMemoryRegistry;
  struct Lent;
  SharedMemoryRegion(int fd, int64_t size) : fd_(fd), size_(size) {}
  // Exactly out->size() bytes of the client's memory at `offset`.
  bool ReadHeader(int64_t offset, std::string* out) const;
  // OK once the challenge is in the header (then for good); the open's
  // NOT_FOUND before.
  absl::Status Verify() const;

  const int fd_;
  const int64_t size_;
  char* map_ = nullptr;  // [0, size_) of the memfd, when mapped
  std::string challenge_;
  mutable std::atomic<bool> verified_{false};
  ByteCharge charge_;  // the tenant's quota, for the data bytes
  // The lent inodes, which this one leaves once punched and closed.
  std::shared_ptr<Lent> lent_;
  std::pair<dev_t, ino_t> inode_{};
  // A CUDA IPC region (fd_ is -1), and where it is lent.
  std::unique_ptr<IpcDeviceRegion> device_;
  std::pair<int, uintptr_t> device_key_{-1, 0};
};

// What an open gives the client.
struct SharedMemoryGrant {
  std::string id;  // what Fetch and Put name the region by
  // kSharedMemoryChallengeBytes random bytes for the client to write at
  // kSharedMemoryChallengeOffset before its first transfer.
  std::string challenge;
  // A CUDA IPC region's GPU (this server's ordinal); -1 for host memory.
  int device = -1;
};

class SharedMemoryRegistry {
 public:
  // Every refused open's message (and a region's whose challenge is not
  // there); `size` is the size asked for.
  static std::string Unusable(int64_t size);

  // `directory`: where region files live (/dev/shm; tests may use another).
  // `ipc` opens CUDA IPC regions; null refuses them all.
  explicit SharedMemoryRegistry(
      std::string directory = "/dev/shm", SharedMemoryLimits limits = {},
      std::shared_ptr<const IpcMemoryOpener> ipc = nullptr);

  // Opens a client's /dev/shm region for `owner` (a connection and tenant)
  // of `tenant` (null: the default tenant, which has no quota), whose quota
  // is charged the data bytes first. On a refusal, `why` (if given) gets
  // the reason, for the server's log only.
  absl::StatusOr<SharedMemoryGrant> Open(absl::string_view name, int64_t size,
                                         absl::string_view token,
                                         absl::string_view owner,
                                         const TenantPtr& tenant,
                                         std::string* why = nullptr);
  // Opens and maps a client's sealed memfd (descriptor `fd` of process
  // `pid`) for `owner`, likewise.
  absl::StatusOr<SharedMemoryGrant> OpenMemfd(int pid, int fd, int64_t size,
                                              absl::string_view token,
                                              absl::string_view owner,
                                              const TenantPtr& tenant,
                                              std::string* why = nullptr);
  // Opens a client's device allocation lent through CUDA IPC (`handle`:
  // kCudaIpcHandleBytes; `pci_bus_id`: its GPU, as ValidPciBusId has it)
  // for `owner`, likewise: INVALID_ARGUMENT for a malformed request,
  // RESOURCE_EXHAUSTED over a cap or the quota (both before the opener is
  // asked anything), and the one NOT_FOUND (Unusable) for any refusal of
  // the opener's or a token not found at the allocation's start.
  absl::StatusOr<SharedMemoryGrant> OpenCudaIpc(
      absl::string_view handle, absl::string_view pci_bus_id, int64_t size,
      absl::string_view token, absl::string_view owner, const TenantPtr& tenant,
      std::string* why = nullptr);
  // The region `id` if `owner` opened it (NOT_FOUND otherwise) and its
  // challenge is in its header (the open's NOT_FOUND otherwise: nothing is
  // read or written).
  absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>> Find(
      absl::string_view id, absl::string_view owner) const;
  // Forgets the region; returns it, so that the caller can drop what may be
  // the last reference where the punch does not hold anyone up.
  std::shared_ptr<const SharedMemoryRegion> Close(absl::string_view id);
  int64_t size() const;
  // The server-wide cap in force (max_total, or the one derived).
  int64_t max_total() const { return max_total_; }

 private:
  struct Entry {
    std::string owner;
    std::string tenant;
    std::shared_ptr<const SharedMemoryRegion> region;
  };
  class Reservation;
  // INVALID_ARGUMENT for a bad size or token, RESOURCE_EXHAUSTED for a
  // size over the cap.
  absl::Status CheckRequest(int64_t size, absl::string_view token) const;
  // Counts a region about to be opened against the caps.
  absl::Status Reserve(absl::string_view owner, absl::string_view tenant);
  void Unreserve(absl::string_view owner, absl::string_view tenant)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks the opened descriptor `fd` (its size, seals, token; the caller
  // closes it on failure) and registers it with `charge`; maps it when
  // `memfd`.
  absl::StatusOr<SharedMemoryGrant> Register(int fd, bool memfd, int64_t size,
                                             absl::string_view token,
                                             ByteCharge charge,
                                             Reservation& reservation,
                                             std::string* why);

  const std::string directory_;
  const SharedMemoryLimits limits_;
  const int64_t max_total_;
  const std::shared_ptr<SharedMemoryRegion::Lent> lent_;
  const std::shared_ptr<const IpcMemoryOpener> ipc_;
  mutable Mutex mu_;
  absl::flat_hash_map<std::string, Entry> regions_ ABSL_GUARDED_BY(mu_);
  // Regions open or being opened, by owner and by tenant, and in all.
  absl::flat_hash_map<std::string, int64_t> per_owner_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> per_tenant_ ABSL_GUARDED_BY(mu_);
  int64_t total_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_SHARED_MEMORY_H_
