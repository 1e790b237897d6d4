#include "server/store/shared_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/core/random.h"

namespace tensorcast {
namespace {

constexpr absl::string_view kPrefix = "tensorcast-";
constexpr size_t kMaxNameBytes = 200;
constexpr size_t kMinTokenBytes = 16;
constexpr size_t kMaxTokenBytes = 64;

bool ValidName(absl::string_view name) {
  if (!absl::StartsWith(name, kPrefix) || name.size() > kMaxNameBytes ||
      name.size() == kPrefix.size()) {
    return false;
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return name.find("..") == absl::string_view::npos;
}

absl::Status CheckToken(absl::string_view token) {
  if (token.size() < kMinTokenBytes || token.size() > kMaxTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the token must be ",
                                                   kMinTokenBytes, " to ",
                                                   kMaxTokenBytes, " bytes"));
  }
  return absl::OkStatus();
}

absl::Status CheckSize(int64_t size) {
  if (size <= 0) {
    return absl::InvalidArgumentError("a shared-memory region needs a size");
  }
  return absl::OkStatus();
}

}  // namespace

SharedMemoryRegion::~SharedMemoryRegion() {
  if (map_ != nullptr) munmap(map_, static_cast<size_t>(size_));
  close(fd_);
}

absl::Status SharedMemoryRegion::CheckRange(int64_t offset,
                                            int64_t length) const {
  if (offset < 0 || length < 0 || offset > size_ || length > size_ - offset) {
    return absl::InvalidArgumentError(
        absl::StrCat("shared-memory range [", offset, ", +", length,
                     ") is outside the ", size_, "-byte region"));
  }
  return absl::OkStatus();
}

absl::Status SharedMemoryRegion::Write(int64_t offset, const char* data,
                                       int64_t n) const {
  if (absl::Status s = CheckRange(offset, n); !s.ok()) return s;
  if (map_ != nullptr) {
    if (n > 0) std::memcpy(map_ + offset, data, static_cast<size_t>(n));
    return absl::OkStatus();
  }
  while (n > 0) {
    ssize_t w = pwrite(fd_, data, static_cast<size_t>(n), offset);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      return absl::DataLossError(absl::StrCat(
          "writing the shared-memory region failed",
          w < 0 ? absl::StrCat(": ", std::strerror(errno)) : std::string()));
    }
    data += w;
    offset += w;
    n -= w;
  }
  return absl::OkStatus();
}

absl::Status SharedMemoryRegion::Read(int64_t offset, char* data,
                                      int64_t n) const {
  if (absl::Status s = CheckRange(offset, n); !s.ok()) return s;
  if (map_ != nullptr) {
    if (n > 0) std::memcpy(data, map_ + offset, static_cast<size_t>(n));
    return absl::OkStatus();
  }
  while (n > 0) {
    ssize_t r = pread(fd_, data, static_cast<size_t>(n), offset);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      return absl::DataLossError(
          r < 0 ? absl::StrCat("reading the shared-memory region failed: ",
                               std::strerror(errno))
                : "the shared-memory region is shorter than it was opened "
                  "with (did the client truncate it?)");
    }
    data += r;
    offset += r;
    n -= r;
  }
  return absl::OkStatus();
}

SharedMemoryRegistry::SharedMemoryRegistry(std::string directory)
    : directory_(std::move(directory)) {}

absl::StatusOr<std::string> SharedMemoryRegistry::Open(
    absl::string_view name, int64_t size, absl::string_view token,
    absl::string_view owner) {
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a shared-memory region is a file in ", directory_, " named '", kPrefix,
        "' followed by letters, digits, '_', '.' or '-'"));
  }
  if (absl::Status s = CheckSize(size); !s.ok()) return s;
  if (absl::Status s = CheckToken(token); !s.ok()) return s;
  const std::string path = absl::StrCat(directory_, "/", name);
  int fd = open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open shared memory ", path,
                                            ": ", std::strerror(errno)));
  }
  std::shared_ptr<SharedMemoryRegion> region(new SharedMemoryRegion(fd, size));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a regular file"));
  }
  if (st.st_size < size) {
    return absl::InvalidArgumentError(absl::StrCat(path, " holds ", st.st_size,
                                                   " bytes, fewer than the ",
                                                   size, " asked"));
  }
  return Register(std::move(region), token, owner);
}

absl::StatusOr<std::string> SharedMemoryRegistry::OpenMemfd(
    int pid, int fd, int64_t size, absl::string_view token,
    absl::string_view owner) {
  if (pid <= 0 || fd < 0) {
    return absl::InvalidArgumentError(
        "a memfd region is named by a process id and a descriptor");
  }
  if (absl::Status s = CheckSize(size); !s.ok()) return s;
  if (absl::Status s = CheckToken(token); !s.ok()) return s;
  // Built from two numbers: no path of the client's choosing.
  const std::string path = absl::StrCat("/proc/", pid, "/fd/", fd);
  int own = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (own < 0) {
    return absl::NotFoundError(absl::StrCat(
        "cannot open the memfd at ", path, ": ", std::strerror(errno),
        " (is the client on this host, in this pid namespace, "
        "as the same user?)"));
  }
  std::shared_ptr<SharedMemoryRegion> region(new SharedMemoryRegion(own, size));
  struct stat st;
  if (fstat(own, &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a regular file"));
  }
  const int seals = fcntl(own, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        path,
        " is not a memfd sealed against shrinking (F_SEAL_SHRINK): the "
        "server maps only memory that cannot shrink under it"));
  }
  if (st.st_size < size) {
    return absl::InvalidArgumentError(absl::StrCat(path, " holds ", st.st_size,
                                                   " bytes, fewer than the ",
                                                   size, " asked"));
  }
  void* p = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_POPULATE, own, 0);
  if (p == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot map ", path, ": ", std::strerror(errno)));
  }
  region->map_ = static_cast<char*>(p);
  return Register(std::move(region), token, owner);
}

absl::StatusOr<std::string> SharedMemoryRegistry::Register(
    std::shared_ptr<const SharedMemoryRegion> region, absl::string_view token,
    absl::string_view owner) {
  std::string start(token.size(), '\0');
  if (!region->Read(0, start.data(), static_cast<int64_t>(start.size())).ok() ||
      start != token) {
    return absl::PermissionDeniedError(
        "the region does not start with the token sent: it is not memory "
        "this client controls");
  }
  std::string id = RandomHex(16);  // 128 bits: unguessable
  MutexLock lock(&mu_);
  regions_[id] = Entry{std::string(owner), std::move(region)};
  return id;
}

absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>>
SharedMemoryRegistry::Find(absl::string_view id,
                           absl::string_view owner) const {
  MutexLock lock(&mu_);
  auto it = regions_.find(id);
  if (it == regions_.end() || it->second.owner != owner) {
    return absl::NotFoundError(
        absl::StrCat("no shared-memory region '", id, "' on this connection"));
  }
  return it->second.region;
}

void SharedMemoryRegistry::Close(absl::string_view id) {
  std::shared_ptr<const SharedMemoryRegion> region;  // closed outside the lock
  MutexLock lock(&mu_);
  auto it = regions_.find(id);
  if (it == regions_.end()) return;
  region = std::move(it->second.region);
  regions_.erase(it);
}

int64_t SharedMemoryRegistry::size() const {
  MutexLock lock(&mu_);
  return static_cast<int64_t>(regions_.size());
}

}  // namespace tensorcast
