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
                                                                 int64_t size) {
  if (size < static_cast<int64_t>(kTokenBytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a shared-memory region needs at least ", kTokenBytes, " bytes"));
  }
  std::unique_ptr<SharedMemory> shm(new SharedMemory());
  shm->name_ = "tensorcast-" + RandomHex(12);
  const std::string shm_name = "/" + shm->name_;
  int fd = shm_open(shm_name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return ErrnoStatus(errno, "shm_open " + shm_name);
  if (ftruncate(fd, size) != 0) {
    int e = errno;
    close(fd);
    shm_unlink(shm_name.c_str());
    return ErrnoStatus(e, "ftruncate " + shm_name);
  }
  void* p = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_POPULATE, fd, 0);
  const int map_errno = errno;
  close(fd);
  if (p == MAP_FAILED) {
    shm_unlink(shm_name.c_str());
    return ErrnoStatus(map_errno, "mmap " + shm_name);
  }
  shm->data_ = static_cast<char*>(p);
  shm->size_ = size;
  const std::string token = RandomBytes(kTokenBytes);
  std::memcpy(shm->data_, token.data(), token.size());

  v1::OpenSharedMemoryRequest request;
  request.set_name(shm->name_);
  request.set_size(size);
  request.set_token(token);
  shm->session_ = client.stub()->OpenSharedMemory(&shm->ctx_, request);
  v1::SharedMemoryEvent event;
  if (!shm->session_->Read(&event)) {
    grpc::Status status = shm->session_->Finish();
    shm->session_.reset();
    return FromGrpcStatus(status);
  }
  shm->region_ = event.region();
  return shm;
}

SharedMemory::~SharedMemory() {
  if (session_ != nullptr) {
    ctx_.TryCancel();
    (void)session_->Finish();
  }
  if (data_ != nullptr) munmap(data_, static_cast<size_t>(size_));
  if (!name_.empty()) shm_unlink(("/" + name_).c_str());
}

}  // namespace tensorcast
