#include "client/cpp/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/secure_random.h"

namespace tensorcast {
namespace {

constexpr size_t kTokenBytes = 32;
// The region's header, where the token and the challenge go: the server's
// SharedMemoryEvent.data_offset, which it says in its answer.
constexpr int64_t kHeaderBytes = 4096;
// Where the server's challenge goes in the header (after the token's at
// most 64 bytes), and its most bytes.
constexpr int64_t kChallengeOffset = 64;
constexpr int64_t kMaxChallengeBytes = 64;

}  // namespace

absl::StatusOr<std::unique_ptr<SharedMemory>> SharedMemory::Open(Client& client,
                                                                 int64_t size,
                                                                 Kind kind) {
  if (size <= 0 || size > std::numeric_limits<int64_t>::max() - kHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a shared-memory region needs a size, not ", size));
  }
  if (kind == Kind::kFile) return OpenOne(client, size, /*memfd=*/false);
  absl::StatusOr<std::unique_ptr<SharedMemory>> shm =
      OpenOne(client, size, /*memfd=*/true);
  if (shm.ok() || kind == Kind::kMemfd) return shm;
  return OpenOne(client, size, /*memfd=*/false);
}

absl::StatusOr<std::unique_ptr<SharedMemory>> SharedMemory::OpenOne(
    Client& client, int64_t size, bool memfd) {
  std::unique_ptr<SharedMemory> shm(new SharedMemory());
  int fd = -1;
  std::string what;
  if (memfd) {
    what = "memfd_create";
    fd = memfd_create("tensorcast", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  } else {
    shm->name_ = "tensorcast-" + RandomHex(12);
    what = "shm_open /" + shm->name_;
    fd = shm_open(("/" + shm->name_).c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  }
  if (fd < 0) {
    shm->name_.clear();  // nothing to unlink
    return ErrnoStatus(errno, what);
  }
  // From here on the destructor removes the file; the descriptor is ours.
  auto fail = [&](const std::string& call) {
    const int e = errno;
    close(fd);
    return ErrnoStatus(e, call);
  };
  const int64_t total = kHeaderBytes + size;
  if (ftruncate(fd, total) != 0) return fail("ftruncate");
  // Sealed: it can never shrink under the server's mapping.
  if (memfd &&
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return fail("fcntl(F_ADD_SEALS)");
  }
  void* p = mmap(nullptr, static_cast<size_t>(total), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) return fail("mmap");
  shm->base_ = static_cast<char*>(p);
  shm->mapped_bytes_ = total;
  shm->offset_ = kHeaderBytes;
  shm->size_ = size;
  const std::string token = RandomBytes(kTokenBytes);
  std::memcpy(shm->base_, token.data(), token.size());

  v1::OpenSharedMemoryRequest request;
  if (memfd) {
    shm->memfd_ = fd;  // the server opens it through /proc while it is lent
    request.set_memfd_pid(getpid());
    request.set_memfd_fd(fd);
  } else {
    close(fd);
    request.set_name(shm->name_);
  }
  request.set_size(total);
  request.set_token(token);
  // The session lasts as long as the region: the token, no deadline.
  client.Prepare(&shm->ctx_, /*with_deadline=*/false);
  shm->session_ = client.stub()->OpenSharedMemory(&shm->ctx_, request);
  v1::SharedMemoryEvent event;
  if (!shm->session_->Read(&event)) {
    grpc::Status status = shm->session_->Finish();
    shm->session_.reset();
    return FromGrpcStatus(status);
  }
  shm->region_ = event.region();
  shm->mapped_ = event.mapped();
  // A server older than the header answers 0 and takes any offset.
  if (event.data_offset() > kHeaderBytes) {
    return absl::FailedPreconditionError(
        absl::StrCat("the server reserves ", event.data_offset(),
                     " bytes of each shared-memory region; this client leaves ",
                     kHeaderBytes));
  }
  // The challenge, written before any transfer: proof this client can
  // write the memory it named (a server older than it sends none).
  const std::string& challenge = event.challenge();
  if (static_cast<int64_t>(challenge.size()) > kMaxChallengeBytes) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the server's shared-memory challenge has ", challenge.size(),
        " bytes; this client takes at most ", kMaxChallengeBytes));
  }
  std::memcpy(shm->base_ + kChallengeOffset, challenge.data(),
              challenge.size());
  return shm;
}

SharedMemory::~SharedMemory() {
  if (session_ != nullptr) {
    ctx_.TryCancel();
    (void)session_->Finish();
  }
  if (base_ != nullptr) munmap(base_, static_cast<size_t>(mapped_bytes_));
  if (memfd_ >= 0) close(memfd_);
  if (!name_.empty()) shm_unlink(("/" + name_).c_str());
}

}  // namespace tensorcast
