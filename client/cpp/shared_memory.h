// SharedMemory: a region of same-host shared memory lent to a tensorcast
// server (which must run with --shared-memory) for Fetch and Put to move
// bytes through instead of the socket: one copy between the tensor's
// storage and this memory, done by the server.
//
//   absl::StatusOr<std::unique_ptr<SharedMemory>> shm =
//       SharedMemory::Open(client, 256 << 20);
//   FetchOptions f;
//   f.format = v1::FORMAT_RAW;
//   f.shm_region = (*shm)->region();
//   f.shm_offset = (*shm)->offset();     // where data() lies in the region
//   client.Fetch(ref, f, nullptr_sink)   // bytes land in (*shm)->data()
//
// Open creates the memory -- by default a memfd sealed against shrinking
// and growing, which the server maps (one memcpy per transfer); if the
// server cannot open it (another pid namespace or user), a file
// /dev/shm/tensorcast-<random> (mode 0600), which the server reads and
// writes with pread/pwrite -- maps it with its pages faulted in, writes a
// random token into its header (the first 4096 bytes, which the server
// checks -- proof this client can read the memory it names -- and never
// writes), opens the session call and writes the challenge the server
// answers with into the header (proof it can write the memory), before any
// transfer. The caller's `size` bytes follow the header: data() points at
// them, and a Fetch or Put names them by shm_offset = offset() + position
// (the server refuses ranges inside the header). The region lives until
// this object is destroyed, which ends the call -- the server then discards
// the data -- and removes the memory. Not thread-safe; the memory may be
// read and written by the caller between calls.
#ifndef TENSORCAST_CLIENT_CPP_SHARED_MEMORY_H_
#define TENSORCAST_CLIENT_CPP_SHARED_MEMORY_H_

#include <grpcpp/client_context.h>
#include <grpcpp/support/sync_stream.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/cpp/client.h"

namespace tensorcast {

class SharedMemory {
 public:
  enum class Kind {
    kAuto,   // a sealed memfd, else a /dev/shm file
    kMemfd,  // a sealed memfd only
    kFile,   // a /dev/shm file only
  };
  static absl::StatusOr<std::unique_ptr<SharedMemory>> Open(
      Client& client, int64_t size, Kind kind = Kind::kAuto);
  ~SharedMemory();
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;

  // The caller's bytes: size() of them, at shm_offset offset().
  char* data() const { return base_ + offset_; }
  int64_t size() const { return size_; }
  int64_t offset() const { return offset_; }
  // The id Fetch and Put name it by.
  const std::string& region() const { return region_; }
  // The file under /dev/shm; empty for a memfd.
  const std::string& name() const { return name_; }
  // True when the server maps the region (a sealed memfd).
  bool mapped() const { return mapped_; }

 private:
  SharedMemory() = default;
  static absl::StatusOr<std::unique_ptr<SharedMemory>> OpenOne(Client& client,
                                                               int64_t size,
                                                               bool memfd);
  std::string name_;
  bool mapped_ = false;
  int memfd_ = -1;  // a memfd's descriptor, open for as long as it is lent
  char* base_ = nullptr;  // the whole mapping: header, then data
  int64_t mapped_bytes_ = 0;
  int64_t offset_ = 0;
  int64_t size_ = 0;
  std::string region_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::SharedMemoryEvent>> session_;
};

}  // namespace tensorcast

#endif  // TENSORCAST_CLIENT_CPP_SHARED_MEMORY_H_
