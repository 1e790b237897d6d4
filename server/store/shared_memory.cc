#include "server/store/shared_memory.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/echo.h"
#include "common/secure_random.h"
#include "server/memory/cold_copy.h"

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

// Equal without an early exit: the time taken does not tell how many of
// the leading bytes matched.
bool SameBytes(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

class ScopedFd {
 public:
  explicit ScopedFd(int fd) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }

 private:
  const int fd_;
};

std::string Errno(absl::string_view call) {
  return absl::StrCat(call, ": ", std::strerror(errno));
}

// Opens `path` (relative to `dir`) for reading and writing if it is a
// regular file: first as a path only (O_PATH opens nothing -- no device, no
// FIFO, no file system's open), which `vet` sees before any call that could
// ask the file's file system about it (fstat: a FUSE one could take forever
// to answer); then, once fstat says regular, again through
// /proc/self/fd, without blocking: a file under a lease (F_SETLEASE) fails
// with EWOULDBLOCK at once rather than after the lease-break time (45 s by
// default). -1 and `reason` otherwise.
int OpenRegularFile(int dir, const std::string& path, int flags,
                    absl::FunctionRef<bool(int, std::string*)> vet,
                    std::string* reason) {
  const int handle = openat(dir, path.c_str(), O_PATH | O_CLOEXEC | flags);
  if (handle < 0) {
    *reason = Errno("open");
    return -1;
  }
  ScopedFd path_only(handle);
  if (!vet(handle, reason)) return -1;
  struct stat st;
  if (fstat(handle, &st) != 0 || !S_ISREG(st.st_mode)) {
    *reason = "not a regular file";
    return -1;
  }
  const std::string self = absl::StrCat("/proc/self/fd/", handle);
  const int fd = open(self.c_str(), O_RDWR | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) *reason = Errno("reopen");
  return fd;
}

// What the magic link `path` (relative to `dir`) points at; readlink asks
// no file system anything. Empty if it cannot be read.
std::string LinkTarget(int dir, const std::string& path) {
  char target[512];
  const ssize_t n = readlinkat(dir, path.c_str(), target, sizeof(target));
  return n > 0 ? std::string(target, static_cast<size_t>(n)) : std::string();
}

// A memfd's link reads "/memfd:NAME (deleted)"; no path can start so
// unless root made a directory "/memfd:...".
bool IsMemfdLink(absl::string_view target) {
  return absl::StartsWith(target, "/memfd:");
}

// The integer after `key` (e.g. "mnt_id:") at the start of a line of the
// small /proc file `path` (relative to the directory `dir`, or absolute with
// AT_FDCWD); -1 if it cannot be read.
int ProcFileInt(int dir, const std::string& path, absl::string_view key) {
  const int fd = openat(dir, path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buffer[4096];
  ssize_t n = 0;
  do {
    n = read(fd, buffer, sizeof(buffer) - 1);
  } while (n < 0 && errno == EINTR);
  close(fd);
  if (n <= 0) return -1;
  absl::string_view text(buffer, static_cast<size_t>(n));
  size_t at =
      absl::StartsWith(text, key) ? 0 : text.find(absl::StrCat("\n", key));
  if (at == absl::string_view::npos) return -1;
  if (at != 0) ++at;  // past the newline
  text.remove_prefix(at + key.size());
  text = absl::StripAsciiWhitespace(text.substr(0, text.find('\n')));
  int value = -1;
  return absl::SimpleAtoi(text, &value) ? value : -1;
}

// The mount that descriptor `fd` is on, from /proc/self/fdinfo (which asks
// no file system anything); -1 if unknown.
int MountIdOf(int fd) {
  return ProcFileInt(AT_FDCWD, absl::StrCat("/proc/self/fdinfo/", fd),
                     "mnt_id:");
}

// The thread group (process) of the task whose /proc directory is `dir`;
// -1 if it cannot be read.
int ThreadGroupOf(int dir) { return ProcFileInt(dir, "status", "Tgid:"); }

// Exactly out->size() bytes at `offset`.
bool ReadAt(int fd, int64_t offset, std::string* out) {
  size_t done = 0;
  while (done < out->size()) {
    ssize_t r = pread(fd, out->data() + done, out->size() - done,
                      static_cast<off_t>(offset + static_cast<int64_t>(done)));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    done += static_cast<size_t>(r);
  }
  return true;
}

// The name a tenant's regions are counted under.
std::string TenantName(const TenantPtr& tenant) {
  return tenant == nullptr ? "-" : tenant->name();
}

// The reason for the log: printable, and short.
std::string ForLog(absl::string_view reason) {
  constexpr size_t kMax = 200;
  std::string out = absl::CHexEscape(reason.substr(0, kMax));
  if (reason.size() > kMax) out += "...";
  return out;
}

int64_t DerivedMaxTotal() {
  constexpr int64_t kMost = 1024;
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0 ||
      limit.rlim_cur == RLIM_INFINITY) {
    return kMost;
  }
  return std::clamp<int64_t>(static_cast<int64_t>(limit.rlim_cur / 4), 1,
                             kMost);
}

}  // namespace

// The regions lent now (device, inode): memory is lent once at a time, and
// a region leaves only once its data is punched out.
struct SharedMemoryRegion::Lent {
  Mutex mu;
  absl::flat_hash_set<std::pair<dev_t, ino_t>> inodes ABSL_GUARDED_BY(mu);
  // CUDA IPC regions: (GPU, address opened at).
  absl::flat_hash_set<std::pair<int, uintptr_t>> device_ranges
      ABSL_GUARDED_BY(mu);
};

SharedMemoryRegion::~SharedMemoryRegion() {
  if (device_ != nullptr) {
    device_.reset();  // cudaIpcCloseMemHandle; then it may be lent again
    if (lent_ != nullptr) {
      MutexLock lock(&lent_->mu);
      lent_->device_ranges.erase(device_key_);
    }
    return;
  }
  if (verified()) {
    // Frees the data's pages, among them any this server touched first
    // (which the kernel charged to its memory cgroup, not the client's).
    // Only memory the client has shown it can write; best effort. Before
    // the unmap: while the server maps a memfd, F_SEAL_WRITE (which would
    // refuse the punch) cannot be added.
    (void)fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    kSharedMemoryHeaderBytes, size_ - kSharedMemoryHeaderBytes);
  }
  if (map_ != nullptr) munmap(map_, static_cast<size_t>(size_));
  close(fd_);
  if (lent_ != nullptr) {
    MutexLock lock(&lent_->mu);
    lent_->inodes.erase(inode_);
  }
  // charge_ goes back last, once the pages are.
}

absl::Status SharedMemoryRegion::Verify() const {
  if (verified()) return absl::OkStatus();
  std::string found(static_cast<size_t>(kSharedMemoryChallengeBytes), '\0');
  if (!ReadHeader(kSharedMemoryChallengeOffset, &found) ||
      !SameBytes(found, challenge_)) {
    return absl::NotFoundError(SharedMemoryRegistry::Unusable(size_));
  }
  verified_.store(true, std::memory_order_release);
  return absl::OkStatus();
}

bool SharedMemoryRegion::ReadHeader(int64_t offset, std::string* out) const {
  if (device_ != nullptr) {
    return device_
        ->CopyToHost(offset, out->data(), static_cast<int64_t>(out->size()))
        .ok();
  }
  return ReadAt(fd_, offset, out);
}

absl::Status SharedMemoryRegion::CheckRange(int64_t offset,
                                            int64_t length) const {
  if (offset < kSharedMemoryHeaderBytes || length < 0 || offset > size_ ||
      length > size_ - offset) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shared-memory range [", offset, ", +", length, ") is outside [",
        kSharedMemoryHeaderBytes, ", ", size_,
        ") of the region (data starts after its ", kSharedMemoryHeaderBytes,
        "-byte header, which holds the token)"));
  }
  return absl::OkStatus();
}

absl::Status SharedMemoryRegion::Write(int64_t offset, const char* data,
                                       int64_t n) const {
  if (absl::Status s = CheckRange(offset, n); !s.ok()) return s;
  if (device_ != nullptr) return device_->CopyFromHost(offset, data, n);
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
  if (device_ != nullptr) return device_->CopyToHost(offset, data, n);
  if (map_ != nullptr) {
    // Into an uploading tensor, read after the upload: streamed.
    if (n > 0) CopyToColdMemory(data, map_ + offset, static_cast<size_t>(n));
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

char* SharedMemoryRegion::device_data(int64_t offset) const {
  if (device_ == nullptr) return nullptr;
  return reinterpret_cast<char*>(device_->address()) + offset;
}

// A region counted against the caps while it is being opened: uncounted
// again unless it was registered.
class SharedMemoryRegistry::Reservation {
 public:
  Reservation(SharedMemoryRegistry* registry, absl::string_view owner,
              absl::string_view tenant)
      : registry_(registry), owner_(owner), tenant_(tenant) {}
  ~Reservation() {
    if (committed_) return;
    MutexLock lock(&registry_->mu_);
    registry_->Unreserve(owner_, tenant_);
  }
  Reservation(const Reservation&) = delete;
  Reservation& operator=(const Reservation&) = delete;
  const std::string& owner() const { return owner_; }
  const std::string& tenant() const { return tenant_; }
  void Commit() { committed_ = true; }

 private:
  SharedMemoryRegistry* const registry_;
  const std::string owner_;
  const std::string tenant_;
  bool committed_ = false;
};

std::string SharedMemoryRegistry::Unusable(int64_t size) {
  return absl::StrCat(
      "shared memory region not usable: it must exist, be the caller's own "
      "memory (a sealed memfd of another process, or a tensorcast-* file in "
      "/dev/shm; lent once at a time) of at least ",
      size,
      " bytes, start with the token and, from its first transfer on, hold the "
      "session's challenge");
}

SharedMemoryRegistry::SharedMemoryRegistry(
    std::string directory, SharedMemoryLimits limits,
    std::shared_ptr<const IpcMemoryOpener> ipc)
    : directory_(std::move(directory)),
      limits_(limits),
      max_total_(limits.max_total > 0 ? limits.max_total : DerivedMaxTotal()),
      lent_(std::make_shared<SharedMemoryRegion::Lent>()),
      ipc_(ipc != nullptr ? std::move(ipc)
                          : std::shared_ptr<const IpcMemoryOpener>(
                                NewRefusingIpcMemoryOpener(
                                    "CUDA IPC is not available here"))) {}

namespace {

// Every refusal of an open for what the host holds: one code, one text.
absl::Status Refuse(int64_t size, std::string* why, absl::string_view reason) {
  if (why != nullptr) *why = ForLog(reason);
  return absl::NotFoundError(SharedMemoryRegistry::Unusable(size));
}

}  // namespace

absl::Status SharedMemoryRegistry::CheckRequest(int64_t size,
                                                absl::string_view token) const {
  if (size <= kSharedMemoryHeaderBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a shared-memory region needs more than its ",
                     kSharedMemoryHeaderBytes, "-byte header (the token's)"));
  }
  if (limits_.max_region_bytes > 0 && size > limits_.max_region_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("a shared-memory region of ", size,
                     " bytes is over the server's limit of ",
                     limits_.max_region_bytes, " (--shared-memory-max-size)"));
  }
  if (token.size() < kMinTokenBytes || token.size() > kMaxTokenBytes) {
    return absl::InvalidArgumentError(absl::StrCat("the token must be ",
                                                   kMinTokenBytes, " to ",
                                                   kMaxTokenBytes, " bytes"));
  }
  if (token.find_first_not_of(token[0]) == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "the token must be random bytes, not one byte repeated");
  }
  return absl::OkStatus();
}

absl::Status SharedMemoryRegistry::Reserve(absl::string_view owner,
                                           absl::string_view tenant) {
  MutexLock lock(&mu_);
  int64_t& mine = per_owner_[owner];
  int64_t& theirs = per_tenant_[tenant];
  absl::Status status;
  if (limits_.max_per_owner > 0 && mine >= limits_.max_per_owner) {
    status = absl::ResourceExhaustedError(
        absl::StrCat("this connection has ", mine,
                     " shared-memory regions open, its limit (per connection: "
                     "--shared-memory-max-per-connection)"));
  } else if (limits_.max_per_tenant > 0 && theirs >= limits_.max_per_tenant) {
    status = absl::ResourceExhaustedError(
        absl::StrCat("tenant '", tenant, "' has ", theirs,
                     " shared-memory regions open, its limit (per tenant: "
                     "--shared-memory-max-per-tenant)"));
  } else if (total_ >= max_total_) {
    // Not how many: that would tell about other tenants.
    status = absl::ResourceExhaustedError(
        "the server's limit of shared-memory regions in all is reached "
        "(--shared-memory-max-regions)");
  }
  if (!status.ok()) {
    if (mine == 0) per_owner_.erase(owner);
    if (theirs == 0) per_tenant_.erase(tenant);
    return status;
  }
  ++mine;
  ++theirs;
  ++total_;
  return absl::OkStatus();
}

void SharedMemoryRegistry::Unreserve(absl::string_view owner,
                                     absl::string_view tenant) {
  auto drop = [](absl::flat_hash_map<std::string, int64_t>& counts,
                 absl::string_view key) {
    auto it = counts.find(key);
    if (it != counts.end() && --it->second <= 0) counts.erase(it);
  };
  drop(per_owner_, owner);
  drop(per_tenant_, tenant);
  --total_;
}

absl::StatusOr<SharedMemoryGrant> SharedMemoryRegistry::Open(
    absl::string_view name, int64_t size, absl::string_view token,
    absl::string_view owner, const TenantPtr& tenant, std::string* why) {
  if (!ValidName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a shared-memory region is a file in ", directory_, " named '", kPrefix,
        "' followed by letters, digits, '_', '.' or '-'"));
  }
  if (absl::Status s = CheckRequest(size, token); !s.ok()) return s;
  const std::string tenant_name = TenantName(tenant);
  if (absl::Status s = Reserve(owner, tenant_name); !s.ok()) return s;
  Reservation reservation(this, owner, tenant_name);
  ByteCharge charge;
  if (absl::Status s = ByteCharge::Take(tenant, size - kSharedMemoryHeaderBytes,
                                        "shared-memory regions", &charge);
      !s.ok()) {
    return s;
  }
  ScopedFd dir(open(directory_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) {
    return Refuse(size, why, absl::StrCat(directory_, ": ", Errno("open")));
  }
  const int dir_mount = MountIdOf(dir.get());
  const std::string path(name);
  std::string reason;
  const int fd = OpenRegularFile(
      dir.get(), path, O_NOFOLLOW,
      [&](int handle, std::string* refused) {
        // Not something mounted over the name (a FUSE file system the
        // client mounted there could block fstat for good).
        if (dir_mount >= 0 && MountIdOf(handle) == dir_mount) return true;
        *refused = "not on the directory's own mount";
        return false;
      },
      &reason);
  if (fd < 0) {
    return Refuse(size, why, absl::StrCat(directory_, "/", path, ": ", reason));
  }
  return Register(fd, /*memfd=*/false, size, token, std::move(charge),
                  reservation, why);
}

absl::StatusOr<SharedMemoryGrant> SharedMemoryRegistry::OpenMemfd(
    int pid, int fd, int64_t size, absl::string_view token,
    absl::string_view owner, const TenantPtr& tenant, std::string* why) {
  if (pid <= 0 || fd < 0) {
    return absl::InvalidArgumentError(
        "a memfd region is named by a process id and a descriptor");
  }
  if (absl::Status s = CheckRequest(size, token); !s.ok()) return s;
  const std::string tenant_name = TenantName(tenant);
  if (absl::Status s = Reserve(owner, tenant_name); !s.ok()) return s;
  Reservation reservation(this, owner, tenant_name);
  ByteCharge charge;
  if (absl::Status s = ByteCharge::Take(tenant, size - kSharedMemoryHeaderBytes,
                                        "shared-memory regions", &charge);
      !s.ok()) {
    return s;
  }
  // Built from two numbers: no path of the client's choosing. The /proc
  // directory, once open, stays that task's: a pid reused meanwhile cannot
  // swap another process in between the checks and the open.
  const std::string proc = absl::StrCat("/proc/", pid);
  const bool own_pid = pid == getpid();
  if (own_pid && !limits_.allow_own_process) {
    return Refuse(size, why, absl::StrCat(proc, ": the server's own process"));
  }
  ScopedFd dir(open(proc.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) {
    return Refuse(size, why, absl::StrCat(proc, ": ", Errno("open")));
  }
  if (!limits_.allow_own_process) {
    // A thread of the server: its fd table is the server's.
    const int tgid = ThreadGroupOf(dir.get());
    if (tgid < 0 || tgid == getpid()) {
      return Refuse(size, why,
                    absl::StrCat(proc, tgid < 0 ? ": no readable status"
                                                : ": a thread of the server"));
    }
  }
  // A memfd by its link, before anything else is done with it: any other
  // file (one of a FUSE file system above all, whose fstat could block for
  // good) is refused without its file system being asked anything.
  const std::string link = absl::StrCat("fd/", fd);
  if (!IsMemfdLink(LinkTarget(dir.get(), link))) {
    return Refuse(size, why, absl::StrCat(proc, "/", link, ": not a memfd"));
  }
  std::string reason;
  const int own = OpenRegularFile(
      dir.get(), link, 0,
      [](int handle, std::string* refused) {
        // The descriptor may have been replaced since: what was opened.
        if (IsMemfdLink(
                LinkTarget(AT_FDCWD, absl::StrCat("/proc/self/fd/", handle)))) {
          return true;
        }
        *refused = "not a memfd";
        return false;
      },
      &reason);
  if (own < 0) {
    return Refuse(size, why, absl::StrCat(proc, "/", link, ": ", reason));
  }
  return Register(own, /*memfd=*/true, size, token, std::move(charge),
                  reservation, why);
}

absl::StatusOr<SharedMemoryGrant> SharedMemoryRegistry::OpenCudaIpc(
    absl::string_view handle, absl::string_view pci_bus_id, int64_t size,
    absl::string_view token, absl::string_view owner, const TenantPtr& tenant,
    std::string* why) {
  if (handle.size() != kCudaIpcHandleBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a CUDA IPC handle is ", kCudaIpcHandleBytes,
                     " bytes (a cudaIpcMemHandle_t), not ", handle.size()));
  }
  if (!ValidPciBusId(pci_bus_id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", EchoInput(pci_bus_id),
        "' is not a PCI bus id as cudaDeviceGetPCIBusId writes it "
        "([domain:]bus:device.function, hexadecimal: 0000:3b:00.0)"));
  }
  if (absl::Status s = CheckRequest(size, token); !s.ok()) return s;
  const std::string tenant_name = TenantName(tenant);
  if (absl::Status s = Reserve(owner, tenant_name); !s.ok()) return s;
  Reservation reservation(this, owner, tenant_name);
  ByteCharge charge;
  if (absl::Status s = ByteCharge::Take(tenant, size - kSharedMemoryHeaderBytes,
                                        "shared-memory regions", &charge);
      !s.ok()) {
    return s;
  }
  std::string reason;
  std::unique_ptr<IpcDeviceRegion> device =
      ipc_->Open(handle, pci_bus_id, size, &reason);
  if (device == nullptr) {
    return Refuse(size, why, absl::StrCat("CUDA IPC: ", reason));
  }
  // Owns the device mapping and the charge from here on.
  std::shared_ptr<SharedMemoryRegion> region(new SharedMemoryRegion(-1, size));
  region->charge_ = std::move(charge);
  region->device_key_ = {device->device(), device->address()};
  region->device_ = std::move(device);
  // The token, read back from the device: proof the caller can read it.
  std::string start(token.size(), '\0');
  if (!region->ReadHeader(0, &start) || !SameBytes(start, token)) {
    return Refuse(size, why, "does not start with the token sent");
  }
  region->challenge_ = RandomBytes(kSharedMemoryChallengeBytes);
  {
    MutexLock lock(&lent_->mu);
    if (!lent_->device_ranges.insert(region->device_key_).second) {
      region->device_key_ = {-1, 0};  // not its to release
      return Refuse(size, why,
                    "lent already (now, or by a session still ending)");
    }
  }
  region->lent_ = lent_;
  SharedMemoryGrant grant{RandomHex(16), region->challenge_, region->device()};
  MutexLock lock(&mu_);
  regions_[grant.id] =
      Entry{reservation.owner(), reservation.tenant(), std::move(region)};
  reservation.Commit();
  return grant;
}

absl::StatusOr<SharedMemoryGrant> SharedMemoryRegistry::Register(
    int fd, bool memfd, int64_t size, absl::string_view token,
    ByteCharge charge, Reservation& reservation, std::string* why) {
  // Owns fd and the charge from here on.
  std::shared_ptr<SharedMemoryRegion> region(new SharedMemoryRegion(fd, size));
  region->charge_ = std::move(charge);
  struct stat st;
  if (fstat(fd, &st) != 0) return Refuse(size, why, Errno("fstat"));
  if (st.st_size < size) {
    return Refuse(size, why,
                  absl::StrCat("holds ", st.st_size, " bytes, fewer than the ",
                               size, " asked"));
  }
  if (memfd) {
    // tmpfs only: a hugetlbfs memfd could fail a fault (SIGBUS) when its
    // pool runs dry.
    struct statfs fs;
    if (fstatfs(fd, &fs) != 0 || fs.f_type != TMPFS_MAGIC) {
      return Refuse(size, why, "not a memfd on tmpfs");
    }
    // F_SEAL_SHRINK: no SIGBUS under the mapping. F_SEAL_SEAL: no seal
    // added later, F_SEAL_FUTURE_WRITE above all, which would stop the
    // punch that frees the pages this server touched first.
    const int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & F_SEAL_SHRINK) == 0 ||
        (seals & F_SEAL_SEAL) == 0) {
      return Refuse(size, why,
                    "not a memfd sealed against shrinking and further seals "
                    "(F_SEAL_SHRINK, F_SEAL_SEAL)");
    }
  }
  // The token, read before anything is mapped: memory that is not the
  // caller's is never mapped, let alone faulted in.
  std::string start(token.size(), '\0');
  if (!ReadAt(fd, 0, &start) || !SameBytes(start, token)) {
    return Refuse(size, why, "does not start with the token sent");
  }
  if (memfd) {
    // No MAP_POPULATE: pages are faulted in by the transfers that use them.
    void* p = mmap(nullptr, static_cast<size_t>(size), PROT_READ | PROT_WRITE,
                   MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      if (errno == ENOMEM) {
        return absl::ResourceExhaustedError(
            absl::StrCat("cannot map a shared-memory region of ", size,
                         " bytes: ", std::strerror(errno)));
      }
      return Refuse(size, why, Errno("mmap"));
    }
    region->map_ = static_cast<char*>(p);
  }
  region->challenge_ = RandomBytes(kSharedMemoryChallengeBytes);
  region->inode_ = {st.st_dev, st.st_ino};
  {
    MutexLock lock(&lent_->mu);
    if (!lent_->inodes.insert(region->inode_).second) {
      return Refuse(size, why,
                    "lent already (now, or by a session still ending)");
    }
  }
  region->lent_ = lent_;
  SharedMemoryGrant grant{RandomHex(16), region->challenge_};  // 128 bits
  MutexLock lock(&mu_);
  regions_[grant.id] =
      Entry{reservation.owner(), reservation.tenant(), std::move(region)};
  reservation.Commit();
  return grant;
}

absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>>
SharedMemoryRegistry::Find(absl::string_view id,
                           absl::string_view owner) const {
  std::shared_ptr<const SharedMemoryRegion> region;
  {
    MutexLock lock(&mu_);
    auto it = regions_.find(id);
    if (it == regions_.end() || it->second.owner != owner) {
      return absl::NotFoundError(absl::StrCat(
          "no shared-memory region '", EchoInput(id), "' on this connection"));
    }
    region = it->second.region;
  }
  // Outside the lock: a read of the client's memory.
  if (absl::Status s = region->Verify(); !s.ok()) return s;
  return region;
}

std::shared_ptr<const SharedMemoryRegion> SharedMemoryRegistry::Close(
    absl::string_view id) {
  MutexLock lock(&mu_);
  auto it = regions_.find(id);
  if (it == regions_.end()) return nullptr;
  std::shared_ptr<const SharedMemoryRegion> region =
      std::move(it->second.region);
  Unreserve(it->second.owner, it->second.tenant);
  regions_.erase(it);
  return region;
}

int64_t SharedMemoryRegistry::size() const {
  MutexLock lock(&mu_);
  return static_cast<int64_t>(regions_.size());
}

}  // namespace tensorcast
