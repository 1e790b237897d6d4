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
//    the seal makes a SIGBUS impossible, the server maps it: Fetch and Put
//    then cost one memcpy. An unsealed memfd is FAILED_PRECONDITION.
//
// Safety rules (the server runs with --shared-memory to use them at all):
//  - The client proves it controls the memory it names: the region must
//    start with the 16-64 byte token it sends (PERMISSION_DENIED if not).
//    This is what makes a forged name, pid or descriptor useless.
//  - Ids are 128 random bits, valid only for the owner (the gRPC peer) that
//    opened them: any other id or owner is NOT_FOUND, as if it did not exist.
//  - Every access is bounds-checked first (INVALID_ARGUMENT, nothing read
//    or written).
//  - Close (when the client's session call ends) forgets the region; Fetches
//    or Puts still using it keep it open (and mapped) until they finish.
//
// Thread-safe.
#ifndef TENSORCAST_SERVER_STORE_SHARED_MEMORY_H_
#define TENSORCAST_SERVER_STORE_SHARED_MEMORY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/mutex.h"

namespace tensorcast {

class SharedMemoryRegion {
 public:
  ~SharedMemoryRegion();
  SharedMemoryRegion(const SharedMemoryRegion&) = delete;
  SharedMemoryRegion& operator=(const SharedMemoryRegion&) = delete;

  int64_t size() const { return size_; }
  // True for a sealed memfd, which is mapped.
  bool mapped() const { return map_ != nullptr; }
  // INVALID_ARGUMENT unless 0 <= offset and offset + length <= size.
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
  // `directory`: where region files live (/dev/shm; tests may use another).
  explicit SharedMemoryRegistry(std::string directory = "/dev/shm");

  // Opens a client's /dev/shm region for `owner`; returns its id.
  absl::StatusOr<std::string> Open(absl::string_view name, int64_t size,
                                   absl::string_view token,
                                   absl::string_view owner);
  // Opens and maps a client's sealed memfd (descriptor `fd` of process
  // `pid`) for `owner`; returns its id.
  absl::StatusOr<std::string> OpenMemfd(int pid, int fd, int64_t size,
                                        absl::string_view token,
                                        absl::string_view owner);
  // The region `id` if `owner` opened it; NOT_FOUND otherwise.
  absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>> Find(
      absl::string_view id, absl::string_view owner) const;
  void Close(absl::string_view id);
  int64_t size() const;

 private:
  struct Entry {
    std::string owner;
    std::shared_ptr<const SharedMemoryRegion> region;
  };
  // Checks the token at the region's start and registers it.
  absl::StatusOr<std::string> Register(
      std::shared_ptr<const SharedMemoryRegion> region, absl::string_view token,
      absl::string_view owner);
  const std::string directory_;
  mutable Mutex mu_;
  absl::flat_hash_map<std::string, Entry> regions_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_SHARED_MEMORY_H_
