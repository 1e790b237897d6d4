#include "client/cpp/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/core/random.h"

namespace tensorcast {
namespace {

constexpr size_t kTokenBytes = 32;

}  // namespace

absl::StatusOr<std::unique_ptr<SharedMemory>> SharedMemory::Open(Client& client,
                                                                 int64_t size,
                                                                 Kind kind) {
  if (size < static_cast<int64_t>(kTokenBytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a shared-memory region needs at least ", kTokenBytes, " bytes"));
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
  if (ftruncate(fd, size) != 0) return fail("ftruncate");
  // Sealed: it can never shrink under the server's mapping.
  if (memfd &&
      fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return fail("fcntl(F_ADD_SEALS)");
  }
  void* p = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) return fail("mmap");
  shm->data_ = static_cast<char*>(p);
  shm->size_ = size;
  const std::string token = RandomBytes(kTokenBytes);
  std::memcpy(shm->data_, token.data(), token.size());

  v1::OpenSharedMemoryRequest request;
  if (memfd) {
    shm->memfd_ = fd;  // the server opens it through /proc while it is lent
    request.set_memfd_pid(getpid());
    request.set_memfd_fd(fd);
  } else {
    close(fd);
    request.set_name(shm->name_);
  }
  request.set_size(size);
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
  return shm;
}

SharedMemory::~SharedMemory() {
  if (session_ != nullptr) {
    ctx_.TryCancel();
    (void)session_->Finish();
  }
  if (data_ != nullptr) munmap(data_, static_cast<size_t>(size_));
  if (memfd_ >= 0) close(memfd_);
  if (!name_.empty()) shm_unlink(("/" + name_).c_str());
}

}  // namespace tensorcast
