// Fuzzes the shared-memory handshake (SharedMemoryRegistry) on real memory
// of this process: a sealed or unsealed memfd, or a file in a directory of
// its own, with fuzz-chosen contents, size, token and seals, then transfers
// at fuzz-chosen offsets.
//
// Input: a flags byte (bit 0: a file, else a memfd; bits 1-3: the memfd's
// F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE; bit 4: the token is copied to
// the region's start after the header bytes; bit 5: the server's challenge
// is NOT written into the header; bit 6: the tenant has a 16 KiB quota;
// bit 7: the memfd is NOT sealed against further seals, F_SEAL_SEAL),
// the region's real size (varint, taken modulo 64 KiB), the size asked for
// (zigzag varint), the token (varint length, bytes), the bytes written at
// offset 0 (varint length, bytes), then transfers: an op byte (even:
// write, odd: read), an offset and a length (zigzag varints), until the
// input ends.
//
// Invariants beyond "no crash, no sanitizer report":
//  - the open succeeds exactly when the request is well formed and the
//    memory is usable: a size over the 4096-byte header and within the cap,
//    a 16-64 byte token that is not one byte repeated, data bytes within the
//    tenant's quota, a region at least that big, a memfd sealed against
//    shrinking and further seals (and writable), starting with the token;
//    malformed requests are INVALID_ARGUMENT (or RESOURCE_EXHAUSTED for the
//    size cap and the quota), and every other refusal is the one NOT_FOUND
//    text, whatever its reason;
//  - an open region charges its data bytes to the tenant's quota, until it
//    is gone;
//  - Find gives the region only once the client has written the challenge
//    at its offset; before, the open's NOT_FOUND, and nothing changes;
//  - a transfer succeeds exactly when its range lies in [4096, size); a
//    write lands where it was asked and nowhere else -- the header above
//    all never changes -- and a read returns the region's bytes;
//  - memory is lent once at a time: the same region opened again, by
//    another owner or the same one, is refused (NOT_FOUND); another owner's
//    Find is NOT_FOUND;
//  - once the region is gone, a memfd that passed the challenge reads as
//    zeros past the header (its data punched out), one that did not is
//    untouched, and it can be lent again;
//  - a registry that refuses its own process (the default) refuses every
//    memfd of this process, with the same NOT_FOUND;
//  - once every region is closed the registry is empty.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/store/shared_memory.h"
#include "server/store/tenant.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/fuzz_targets.h"

namespace tensorcast::fuzz {
namespace {

constexpr int64_t kHeader = kSharedMemoryHeaderBytes;
constexpr int64_t kMaxRegionBytes = 32 << 10;  // the registry's size cap
constexpr int64_t kMaxFileBytes = 64 << 10;
constexpr int64_t kMaxTransfer = 128 << 10;  // larger ones are only checked
constexpr int64_t kQuotaBytes = 16 << 10;    // the tenant's, when it has one
constexpr char kName[] = "tensorcast-fuzz";

// A directory of this process's own for the file kind, removed at exit
// (each input removes its file).
const std::string& Directory() {
  static const std::string* dir = [] {
    std::string pattern = "/tmp/tensorcast-shm-fuzz-XXXXXX";
    FUZZ_CHECK(mkdtemp(pattern.data()) != nullptr);
    return new std::string(pattern);
  }();
  static const bool cleanup = [] {
    return std::atexit([] { rmdir(Directory().c_str()); }) == 0;
  }();
  (void)cleanup;
  return *dir;
}

bool PreadAll(int fd, int64_t offset, char* out, int64_t n) {
  while (n > 0) {
    ssize_t r = pread(fd, out, static_cast<size_t>(n), offset);
    if (r <= 0) return false;
    out += r;
    offset += r;
    n -= r;
  }
  return true;
}

bool PwriteAll(int fd, int64_t offset, const char* data, int64_t n) {
  while (n > 0) {
    ssize_t w = pwrite(fd, data, static_cast<size_t>(n), offset);
    if (w <= 0) return false;
    data += w;
    offset += w;
    n -= w;
  }
  return true;
}

bool InRange(int64_t offset, int64_t length, int64_t size) {
  return offset >= kHeader && length >= 0 && offset <= size &&
         length <= size - offset;
}

void CheckUnusable(const absl::Status& status, int64_t size) {
  FUZZ_CHECK(status.code() == absl::StatusCode::kNotFound);
  FUZZ_CHECK(status.message() == SharedMemoryRegistry::Unusable(size));
}

}  // namespace

int FuzzSharedMemory(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  const uint8_t flags = in.Byte();
  const bool file = (flags & 1) != 0;
  const unsigned seals = (flags & 2 ? F_SEAL_SHRINK : 0) |
                         (flags & 4 ? F_SEAL_GROW : 0) |
                         (flags & 8 ? F_SEAL_WRITE : 0) |
                         (file || (flags & 128) != 0 ? 0 : F_SEAL_SEAL);
  const bool token_at_start = (flags & 16) != 0;
  const bool answer_challenge = (flags & 32) == 0;
  const int64_t quota = (flags & 64) != 0 ? kQuotaBytes : 0;
  const int64_t real_size = static_cast<int64_t>(in.Varint() % kMaxFileBytes);
  const int64_t asked = in.Signed();
  const std::string token(in.LengthPrefixed());
  const std::string start(in.LengthPrefixed());

  // The memory, and a model of its bytes.
  std::string model(static_cast<size_t>(real_size), '\0');
  std::memcpy(model.data(), start.data(), std::min(start.size(), model.size()));
  if (token_at_start) {
    std::memcpy(model.data(), token.data(),
                std::min(token.size(), model.size()));
  }
  const std::string path = absl::StrCat(Directory(), "/", kName);
  const int fd =
      file ? open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)
           : memfd_create("tensorcast-fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  FUZZ_CHECK(fd >= 0);
  FUZZ_CHECK(ftruncate(fd, real_size) == 0);
  FUZZ_CHECK(PwriteAll(fd, 0, model.data(), real_size));
  if (!file && seals != 0) FUZZ_CHECK(fcntl(fd, F_ADD_SEALS, seals) == 0);

  SharedMemoryLimits limits;
  limits.max_region_bytes = kMaxRegionBytes;
  limits.max_per_owner = 2;
  limits.allow_own_process = true;  // the memory is this process's
  SharedMemoryRegistry registry(Directory(), limits);
  const TenantPtr tenant =
      std::make_shared<Tenant>("t", TenantLimits{quota, 0, 0});
  auto open_as = [&](absl::string_view owner) {
    return file ? registry.Open(kName, asked, token, owner, tenant)
                : registry.OpenMemfd(getpid(), fd, asked, token, owner, tenant);
  };
  absl::StatusOr<SharedMemoryGrant> grant = open_as("a");

  // What the open must say.
  const bool repeated =
      !token.empty() && token.find_first_not_of(token[0]) == std::string::npos;
  absl::StatusCode expected = absl::StatusCode::kOk;
  if (asked <= kHeader) {
    expected = absl::StatusCode::kInvalidArgument;
  } else if (asked > kMaxRegionBytes) {
    expected = absl::StatusCode::kResourceExhausted;
  } else if (token.size() < 16 || token.size() > 64 || repeated) {
    expected = absl::StatusCode::kInvalidArgument;
  } else if (quota > 0 && asked - kHeader > quota) {
    expected = absl::StatusCode::kResourceExhausted;
  } else if (real_size < asked ||
             (!file &&
              ((seals & F_SEAL_SHRINK) == 0 || (seals & F_SEAL_SEAL) == 0 ||
               (seals & F_SEAL_WRITE) != 0)) ||
             model.compare(0, token.size(), token) != 0) {
    expected = absl::StatusCode::kNotFound;
  }
  FUZZ_CHECK(grant.status().code() == expected);
  if (expected == absl::StatusCode::kNotFound) {
    CheckUnusable(grant.status(), asked);
  }
  FUZZ_CHECK(tenant->bytes() == (grant.ok() ? asked - kHeader : 0));

  if (grant.ok()) {
    FUZZ_CHECK(grant->challenge.size() == kSharedMemoryChallengeBytes);
    FUZZ_CHECK(registry.Find(grant->id, "b").status().code() ==
               absl::StatusCode::kNotFound);
    if (answer_challenge) {
      FUZZ_CHECK(PwriteAll(fd, kSharedMemoryChallengeOffset,
                           grant->challenge.data(),
                           kSharedMemoryChallengeBytes));
      model.replace(kSharedMemoryChallengeOffset, kSharedMemoryChallengeBytes,
                    grant->challenge);
    }
    const std::string header = model.substr(0, kHeader);
    absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>> region =
        registry.Find(grant->id, "a");
    if (!answer_challenge) {
      // Not shown writable: not given out, whatever the transfers.
      CheckUnusable(region.status(), asked);
    } else {
      FUZZ_CHECK(region.ok());
      FUZZ_CHECK((*region)->size() == asked);
      FUZZ_CHECK((*region)->mapped() == !file);
      FUZZ_CHECK((*region)->verified());
    }
    while (region.ok() && !in.empty()) {
      const bool write = (in.Byte() & 1) == 0;
      const int64_t offset = in.Signed();
      const int64_t length = in.Signed();
      const bool valid = InRange(offset, length, asked);
      FUZZ_CHECK((*region)->CheckRange(offset, length).ok() == valid);
      if (length < 0 || length > kMaxTransfer) continue;
      std::string buffer(static_cast<size_t>(length), '\0');
      if (write) {
        for (int64_t i = 0; i < length; ++i) {
          buffer[i] = static_cast<char>(static_cast<uint64_t>(offset) * 31 +
                                        static_cast<uint64_t>(i) * 7 + 1);
        }
        FUZZ_CHECK((*region)->Write(offset, buffer.data(), length).ok() ==
                   valid);
        if (valid) model.replace(offset, length, buffer);
      } else {
        FUZZ_CHECK((*region)->Read(offset, buffer.data(), length).ok() ==
                   valid);
        if (valid) FUZZ_CHECK(model.compare(offset, length, buffer) == 0);
      }
    }
    // The memory is the model, header and all.
    std::string now(static_cast<size_t>(real_size), '\0');
    FUZZ_CHECK(PreadAll(fd, 0, now.data(), real_size));
    FUZZ_CHECK(now == model);
    FUZZ_CHECK(now.compare(0, kHeader, header) == 0);

    // Lent once at a time: not again, by another owner or this one. (With a
    // quota that cannot hold a second charge, the quota refuses first: it is
    // checked before anything is opened.)
    for (const char* again : {"b", "a"}) {
      const absl::Status status = open_as(again).status();
      if (quota > 0 && 2 * (asked - kHeader) > quota) {
        FUZZ_CHECK(status.code() == absl::StatusCode::kResourceExhausted);
      } else {
        CheckUnusable(status, asked);
      }
    }
    FUZZ_CHECK(tenant->bytes() == asked - kHeader);

    // Gone once closed and let go: a memfd shown writable is punched out
    // past the header (a file too, where its file system can), one that was
    // not is left alone; the charge goes back, and it can be lent again.
    const bool verified = region.ok();
    region = absl::NotFoundError("let go");
    FUZZ_CHECK(registry.Close(grant->id) != nullptr);
    FUZZ_CHECK(tenant->bytes() == 0);
    FUZZ_CHECK(PreadAll(fd, 0, now.data(), real_size));
    FUZZ_CHECK(now.compare(0, kHeader, header) == 0);
    if (!verified) {
      FUZZ_CHECK(now == model);
    } else if (!file) {
      FUZZ_CHECK(now.find_first_not_of('\0', kHeader) == std::string::npos);
    }
    absl::StatusOr<SharedMemoryGrant> again = open_as("a");
    FUZZ_CHECK(again.ok());
    registry.Close(again->id);
  }
  FUZZ_CHECK(registry.size() == 0);
  FUZZ_CHECK(tenant->bytes() == 0);

  // The server's own process is never a region's owner.
  if (!file && expected == absl::StatusCode::kOk) {
    limits.allow_own_process = false;
    SharedMemoryRegistry strict(Directory(), limits);
    CheckUnusable(
        strict.OpenMemfd(getpid(), fd, asked, token, "a", nullptr).status(),
        asked);
  }
  close(fd);
  if (file) unlink(path.c_str());
  return 0;
}

}  // namespace tensorcast::fuzz
