// SharedMemoryRegistry: same-host clients' shared-memory regions, which
// Fetch writes into and Put reads from instead of sending the bytes.
//
// A region is one of two kinds of memory:
//  - a file the client created under the registry's directory (/dev/shm)
//    named "tensorcast-" + [A-Za-z0-9_.-]; opened with O_NOFOLLOW, it must
//    be a regular file of at least the size given. The server reads and
//    writes it with pread/pwrite, never through a mapping: a client that
//    shrinks its file causes a short read or write, which is an error, not
//    a SIGBUS in the server. (Any language's shm_open works.)
//  - a memfd the client created and sealed against shrinking (F_SEAL_SHRINK,
//    Linux memfd_create with MFD_ALLOW_SEALING), named by the client's pid
//    and descriptor; the server opens it through /proc/PID/fd/FD. Because
//    the seal makes a SIGBUS impossible, the server maps it (lazily, never
//    faulting the client's pages in itself): Fetch and Put then cost one
//    memcpy.
//
// The layout: bytes [0, kSharedMemoryHeaderBytes) are the handshake's. The
// client writes its token there; the server reads only the token from it
// and never writes it, so no transfer can change or reveal the token: every
// Fetch/Put range must lie in [kSharedMemoryHeaderBytes, size). A region
// must be bigger than the header.
//
// Safety rules (the server runs with --shared-memory to use them at all):
//  - The client proves it controls the memory it names: the region must
//    start with the 16-64 byte token it sends (random: a token of one
//    repeated byte is refused), compared in constant time, read with pread
//    before anything is mapped. This is what makes a forged name, pid or
//    descriptor useless.
//  - A memfd must belong to another process: the server's own pid, or a
//    thread of it (whose /proc entry reaches the same descriptors, among
//    them every region other clients lent), is refused. So is a region
//    (device and inode) that another owner -- another connection or tenant
//    -- has open now.
//  - Every refusal of an open for what the host holds (no such file, pid or
//    descriptor, not a regular file, not sealed, too small, wrong token,
//    the server's own process, someone else's region) is one NOT_FOUND
//    with one text (kUnusable), so the answer reveals nothing about other
//    processes; the reason goes to `why` for the server's debug log. Input
//    errors (a bad name, token length, size) are INVALID_ARGUMENT.
//  - Caps, checked before anything is opened (RESOURCE_EXHAUSTED naming
//    the cap): region size, regions per owner (connection), per tenant and
//    in all. Each open region holds one descriptor.
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

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/mutex.h"

namespace tensorcast {

// The handshake's bytes at the start of every region: data starts here.
inline constexpr int64_t kSharedMemoryHeaderBytes = 4096;

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
  ~SharedMemoryRegion();
  SharedMemoryRegion(const SharedMemoryRegion&) = delete;
  SharedMemoryRegion& operator=(const SharedMemoryRegion&) = delete;

  int64_t size() const { return size_; }
  // True for a sealed memfd, which is mapped.
  bool mapped() const { return map_ != nullptr; }
  // INVALID_ARGUMENT unless kSharedMemoryHeaderBytes <= offset and
  // offset + length <= size.
  absl::Status CheckRange(int64_t offset, int64_t length) const;
  // Exactly n bytes at offset (checked); DATA_LOSS when the file came up
  // short (the client shrank it).
  absl::Status Write(int64_t offset, const char* data, int64_t n) const;
  absl::Status Read(int64_t offset, char* data, int64_t n) const;

 private:
  friend class SharedMemoryRegistry;
  SharedMemoryRegion(int fd, int64_t size) : fd_(fd), size_(size) {}
  const int fd_;
  const int64_t size_;
  char* map_ = nullptr;  // [0, size_) of the memfd, when mapped
};

class SharedMemoryRegistry {
 public:
  // Every refused open's message; `size` is the size asked for.
  static std::string Unusable(int64_t size);

  // `directory`: where region files live (/dev/shm; tests may use another).
  explicit SharedMemoryRegistry(std::string directory = "/dev/shm",
                                SharedMemoryLimits limits = {});

  // Opens a client's /dev/shm region for `owner` (a connection and tenant;
  // `tenant` names the tenant alone, for its cap); returns its id. On a
  // refusal, `why` (if given) gets the reason, for the server's log only.
  absl::StatusOr<std::string> Open(absl::string_view name, int64_t size,
                                   absl::string_view token,
                                   absl::string_view owner,
                                   absl::string_view tenant,
                                   std::string* why = nullptr);
  // Opens and maps a client's sealed memfd (descriptor `fd` of process
  // `pid`) for `owner`; returns its id.
  absl::StatusOr<std::string> OpenMemfd(int pid, int fd, int64_t size,
                                        absl::string_view token,
                                        absl::string_view owner,
                                        absl::string_view tenant,
                                        std::string* why = nullptr);
  // The region `id` if `owner` opened it; NOT_FOUND otherwise.
  absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>> Find(
      absl::string_view id, absl::string_view owner) const;
  void Close(absl::string_view id);
  int64_t size() const;
  // The server-wide cap in force (max_total, or the one derived).
  int64_t max_total() const { return max_total_; }

 private:
  struct Entry {
    std::string owner;
    std::string tenant;
    dev_t dev;
    ino_t ino;
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
  // closes it on failure) and registers it; maps it when `memfd`.
  absl::StatusOr<std::string> Register(int fd, bool memfd, int64_t size,
                                       absl::string_view token,
                                       Reservation& reservation,
                                       std::string* why);

  const std::string directory_;
  const SharedMemoryLimits limits_;
  const int64_t max_total_;
  mutable Mutex mu_;
  absl::flat_hash_map<std::string, Entry> regions_ ABSL_GUARDED_BY(mu_);
  // Regions open or being opened, by owner and by tenant, and in all.
  absl::flat_hash_map<std::string, int64_t> per_owner_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> per_tenant_ ABSL_GUARDED_BY(mu_);
  int64_t total_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_SHARED_MEMORY_H_
