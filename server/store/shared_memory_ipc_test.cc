// CUDA IPC regions of the SharedMemoryRegistry on a machine without a GPU:
// a stand-in IpcMemoryOpener hands out host memory as if it were a
// device's, so the registry's rules (validation before any open, one
// NOT_FOUND text, quota, caps, ids bound to their owner, bounds, lent once,
// closed with the session) are tested here; tests/gpu runs the real one.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "server/memory/ipc_memory.h"
#include "server/store/shared_memory.h"
#include "server/store/tenant.h"

namespace tensorcast {
namespace {

constexpr absl::string_view kBus = "0000:3b:00.0";
constexpr int64_t kSize = kSharedMemoryHeaderBytes + 8192;

std::string Handle(char c) { return std::string(kCudaIpcHandleBytes, c); }
std::string Token() { return "0123456789abcdef-token"; }

// "Device" allocations in host memory, by handle, on the GPU at kBus (this
// process's device 0). Counts opens and closes.
class StandInOpener final : public IpcMemoryOpener {
 public:
  // An allocation of `size` bytes for `handle`, starting with `token`.
  char* Allocate(const std::string& handle, int64_t size,
                 const std::string& token) {
    std::string& memory = memory_[handle];
    memory.assign(static_cast<size_t>(size), '\0');
    memory.replace(0, token.size(), token);
    return memory.data();
  }

  std::unique_ptr<IpcDeviceRegion> Open(absl::string_view handle,
                                        absl::string_view pci_bus_id,
                                        int64_t size,
                                        std::string* why) const override {
    ++asked;
    auto it = memory_.find(std::string(handle));
    if (pci_bus_id != kBus || it == memory_.end() ||
        static_cast<int64_t>(it->second.size()) < size) {
      *why = "stand-in: no such allocation";
      return nullptr;
    }
    ++open;
    return std::make_unique<Region>(const_cast<char*>(it->second.data()), size,
                                    &open);
  }

  mutable std::atomic<int> asked{0};
  mutable std::atomic<int> open{0};

 private:
  class Region final : public IpcDeviceRegion {
   public:
    Region(char* data, int64_t size, std::atomic<int>* open)
        : data_(data), size_(size), open_(open) {}
    ~Region() override { --*open_; }
    int device() const override { return 0; }
    uintptr_t address() const override {
      return reinterpret_cast<uintptr_t>(data_);
    }
    int64_t size() const override { return size_; }
    absl::Status CopyToHost(int64_t offset, void* dst,
                            int64_t n) const override {
      std::memcpy(dst, data_ + offset, static_cast<size_t>(n));
      return absl::OkStatus();
    }
    absl::Status CopyFromHost(int64_t offset, const void* src,
                              int64_t n) const override {
      std::memcpy(data_ + offset, src, static_cast<size_t>(n));
      return absl::OkStatus();
    }

   private:
    char* const data_;
    const int64_t size_;
    std::atomic<int>* const open_;
  };

  std::map<std::string, std::string> memory_;
};

class CudaIpcRegistryTest : public testing::Test {
 protected:
  CudaIpcRegistryTest()
      : opener_(std::make_shared<StandInOpener>()),
        registry_("/nonexistent-tensorcast-test", Limits(), opener_) {}

  static SharedMemoryLimits Limits() {
    SharedMemoryLimits limits;
    limits.max_region_bytes = int64_t{1} << 20;
    limits.max_per_owner = 2;
    return limits;
  }

  absl::StatusOr<SharedMemoryGrant> Open(const std::string& handle,
                                         absl::string_view owner = "conn-a",
                                         const TenantPtr& tenant = nullptr,
                                         int64_t size = kSize) {
    return registry_.OpenCudaIpc(handle, kBus, size, Token(), owner, tenant,
                                 &why_);
  }

  std::shared_ptr<StandInOpener> opener_;
  SharedMemoryRegistry registry_;
  std::string why_;
};

TEST_F(CudaIpcRegistryTest, OpensVerifiesAndCopiesBothWays) {
  char* memory = opener_->Allocate(Handle('a'), kSize, Token());
  absl::StatusOr<SharedMemoryGrant> grant = Open(Handle('a'));
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(grant->device, 0);
  EXPECT_EQ(grant->id.size(), 32u);
  EXPECT_EQ(opener_->open.load(), 1);

  // No transfer before the challenge is in the header; nothing written.
  auto region = registry_.Find(grant->id, "conn-a");
  ASSERT_EQ(region.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(region.status().message(), SharedMemoryRegistry::Unusable(kSize));
  std::memcpy(memory + kSharedMemoryChallengeOffset, grant->challenge.data(),
              grant->challenge.size());
  region = registry_.Find(grant->id, "conn-a");
  ASSERT_TRUE(region.ok()) << region.status();
  EXPECT_EQ((*region)->device(), 0);

  // Fetch's direction, then Put's, within bounds only.
  const std::string bytes = "fetched bytes";
  ASSERT_TRUE(
      (*region)->Write(kSharedMemoryHeaderBytes + 8, bytes.data(), 13).ok());
  EXPECT_EQ(std::string(memory + kSharedMemoryHeaderBytes + 8, 13), bytes);
  std::string back(13, '\0');
  ASSERT_TRUE(
      (*region)->Read(kSharedMemoryHeaderBytes + 8, back.data(), 13).ok());
  EXPECT_EQ(back, bytes);
  EXPECT_EQ((*region)->Write(0, bytes.data(), 13).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*region)->Read(kSize - 4, back.data(), 13).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(memory, Token().size()), Token());  // header intact
}

TEST_F(CudaIpcRegistryTest, MalformedRequestsAreRefusedBeforeAnyOpen) {
  opener_->Allocate(Handle('a'), kSize, Token());
  std::string why;
  auto status = [&](absl::string_view handle, absl::string_view bus,
                    int64_t size, absl::string_view token) {
    return registry_
        .OpenCudaIpc(handle, bus, size, token, "conn-a", nullptr, &why)
        .status()
        .code();
  };
  using absl::StatusCode;
  EXPECT_EQ(status(Handle('a').substr(1), kBus, kSize, Token()),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(status(Handle('a') + "x", kBus, kSize, Token()),
            StatusCode::kInvalidArgument);
  for (absl::string_view bus :
       {"", "3b:00", "0000:3b:00.00", "000:3b:00.0", "0000:3g:00.0",
        "/dev/nvidia0", "0000:3b:00.0\n", "00000:3b:00.0"}) {
    EXPECT_EQ(status(Handle('a'), bus, kSize, Token()),
              StatusCode::kInvalidArgument)
        << bus;
  }
  EXPECT_EQ(status(Handle('a'), kBus, kSharedMemoryHeaderBytes, Token()),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(status(Handle('a'), kBus, (int64_t{1} << 20) + 1, Token()),
            StatusCode::kResourceExhausted);
  EXPECT_EQ(status(Handle('a'), kBus, kSize, "short"),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(status(Handle('a'), kBus, kSize, std::string(32, 'x')),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(opener_->asked.load(), 0);
  EXPECT_EQ(registry_.size(), 0);
}

TEST_F(CudaIpcRegistryTest, BusIdForms) {
  EXPECT_TRUE(ValidPciBusId("0000:3b:00.0"));
  EXPECT_TRUE(ValidPciBusId("00000000:3B:1f.7"));
  EXPECT_TRUE(ValidPciBusId("3b:00.0"));
  EXPECT_FALSE(ValidPciBusId("0000:3b:00:0"));
  EXPECT_FALSE(ValidPciBusId(":3b:00.0"));
  EXPECT_FALSE(ValidPciBusId("0000:0000:3b:00.0"));
}

TEST_F(CudaIpcRegistryTest, EveryRefusalIsTheHostRegionsNotFound) {
  opener_->Allocate(Handle('a'), kSize, Token());
  opener_->Allocate(Handle('s'), kSize - 1, Token());
  opener_->Allocate(Handle('t'), kSize, "another-token-0123");
  const std::string host = std::string(
      registry_
          .Open("tensorcast-nonexistent", kSize, Token(), "conn-a", nullptr)
          .status()
          .message());
  ASSERT_EQ(host, SharedMemoryRegistry::Unusable(kSize));
  for (const std::string& handle : {Handle('z'), Handle('s'), Handle('t')}) {
    absl::StatusOr<SharedMemoryGrant> grant = Open(handle);
    ASSERT_EQ(grant.status().code(), absl::StatusCode::kNotFound);
    EXPECT_EQ(grant.status().message(), host);
    EXPECT_FALSE(why_.empty());  // the reason, for the log
  }
  // Another GPU's bus id: the same.
  absl::StatusOr<SharedMemoryGrant> grant = registry_.OpenCudaIpc(
      Handle('a'), "0000:3c:00.0", kSize, Token(), "conn-a", nullptr);
  EXPECT_EQ(grant.status().message(), host);
  // The wrong token's region was opened, then closed again.
  EXPECT_EQ(opener_->open.load(), 0);
  EXPECT_EQ(registry_.size(), 0);
}

TEST_F(CudaIpcRegistryTest, QuotaIsChargedWhileLentAndReleasedOnClose) {
  opener_->Allocate(Handle('a'), kSize, Token());
  opener_->Allocate(Handle('b'), kSize, Token());
  auto alice = std::make_shared<Tenant>(
      "alice",
      TenantLimits{.max_bytes = 10000, .max_tensors = 0, .max_streams = 0});
  absl::StatusOr<SharedMemoryGrant> grant = Open(Handle('a'), "conn-a", alice);
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(alice->bytes(), kSize - kSharedMemoryHeaderBytes);
  // A second region would go over the quota: refused before the open.
  const int asked = opener_->asked.load();
  EXPECT_EQ(Open(Handle('b'), "conn-a", alice).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(opener_->asked.load(), asked);

  std::shared_ptr<const SharedMemoryRegion> region = registry_.Close(grant->id);
  ASSERT_NE(region, nullptr);
  EXPECT_EQ(opener_->open.load(), 1);  // a transfer may still hold it
  region.reset();
  EXPECT_EQ(opener_->open.load(), 0);
  EXPECT_EQ(alice->bytes(), 0);
  EXPECT_TRUE(Open(Handle('b'), "conn-a", alice).ok());
}

TEST_F(CudaIpcRegistryTest, IdsAreBoundToTheirOwner) {
  char* memory = opener_->Allocate(Handle('a'), kSize, Token());
  absl::StatusOr<SharedMemoryGrant> grant = Open(Handle('a'), "conn-a");
  ASSERT_TRUE(grant.ok()) << grant.status();
  std::memcpy(memory + kSharedMemoryChallengeOffset, grant->challenge.data(),
              grant->challenge.size());
  EXPECT_TRUE(registry_.Find(grant->id, "conn-a").ok());
  EXPECT_EQ(registry_.Find(grant->id, "conn-b").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(registry_.Find("0123456789abcdef0123456789abcdef", "conn-a")
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

TEST_F(CudaIpcRegistryTest, LentOnceAtATimeAndCapsHold) {
  opener_->Allocate(Handle('a'), kSize, Token());
  opener_->Allocate(Handle('b'), kSize, Token());
  opener_->Allocate(Handle('c'), kSize, Token());
  absl::StatusOr<SharedMemoryGrant> first = Open(Handle('a'), "conn-a");
  ASSERT_TRUE(first.ok()) << first.status();
  // The same allocation again, by anyone: the one NOT_FOUND.
  absl::StatusOr<SharedMemoryGrant> again = Open(Handle('a'), "conn-b");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(again.status().message(), SharedMemoryRegistry::Unusable(kSize));
  EXPECT_EQ(opener_->open.load(), 1);
  // Two per connection.
  ASSERT_TRUE(Open(Handle('b'), "conn-a").ok());
  EXPECT_EQ(Open(Handle('c'), "conn-a").status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(Open(Handle('c'), "conn-b").ok());
  // Closed: lent again.
  registry_.Close(first->id);
  EXPECT_TRUE(Open(Handle('a'), "conn-b").ok());
}

TEST(CudaIpcRegistryDefaultTest, WithoutAnOpenerEveryHandleIsRefused) {
  SharedMemoryRegistry registry("/nonexistent-tensorcast-test");
  std::string why;
  absl::StatusOr<SharedMemoryGrant> grant = registry.OpenCudaIpc(
      Handle('a'), kBus, kSize, Token(), "conn-a", nullptr, &why);
  EXPECT_EQ(grant.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(grant.status().message(), SharedMemoryRegistry::Unusable(kSize));
  EXPECT_NE(why.find("CUDA IPC"), std::string::npos) << why;
}

}  // namespace
}  // namespace tensorcast
