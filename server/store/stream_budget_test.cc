// Tests what streams hold beyond tensor storage and who pays for it: the
// tenant's quota charges (ByteCharge) of a host Fetch's chunk buffers --
// the first when the stream opens, each later one as it is made, never more
// than FetchStream::kHostBuffers -- the server-wide StagingBudget, and the
// registry's share of --max-staging-bytes for it. (The GPU path's charges
// and staging are tested on the fake GPU in device_path_test.cc.)
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "server/core/caller_message.h"
#include "server/store/conversions.h"
#include "server/store/device.h"
#include "server/store/fetch_source.h"
#include "server/store/fetch_stream.h"
#include "server/store/staging_budget.h"
#include "server/store/store_test_util.h"
#include "server/store/tenant.h"

namespace tensorcast {
namespace {

constexpr int64_t kMiB = 1 << 20;

using Clock = std::chrono::steady_clock;

TEST(ByteChargeTest, ChargesUntilReleasedAndRefusesPastTheQuota) {
  auto tenant =
      std::make_shared<Tenant>("alice", TenantLimits{10 * kMiB, 0, 0});
  ByteCharge a;
  ASSERT_TRUE(ByteCharge::Take(tenant, 6 * kMiB, "buffers", &a).ok());
  EXPECT_EQ(tenant->bytes(), 6 * kMiB);
  ByteCharge b;
  absl::Status s = ByteCharge::Take(tenant, 5 * kMiB, "buffers", &b);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "10.00 MiB")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "for buffers")) << s;
  EXPECT_EQ(b.bytes(), 0);
  EXPECT_EQ(tenant->bytes(), 6 * kMiB);
  {
    ByteCharge moved = std::move(a);
    EXPECT_EQ(tenant->bytes(), 6 * kMiB);
  }
  EXPECT_EQ(tenant->bytes(), 0);
  // The default tenant is charged nothing.
  ByteCharge none;
  EXPECT_TRUE(ByteCharge::Take(nullptr, 100 * kMiB, "buffers", &none).ok());
  EXPECT_EQ(none.bytes(), 0);
}

TEST(StagingBudgetTest, ReservesUpToTheLimitAndWaitsBrieflyForRoom) {
  StagingBudget budget(10 * kMiB);
  StagingBudget::Reservation a, b;
  ASSERT_TRUE(budget.Reserve(6 * kMiB, absl::ZeroDuration(), &a).ok());
  EXPECT_EQ(budget.reserved(), 6 * kMiB);
  // No room: refused after the wait, naming the flag, nothing reserved.
  const auto start = Clock::now();
  absl::Status s = budget.Reserve(5 * kMiB, absl::Milliseconds(200), &b);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "--max-staging-bytes=10.00 MiB"))
      << s;
  // What other streams hold is for admins: other callers are told only
  // what this one needs.
  EXPECT_TRUE(absl::StrContains(s.message(), "other streams hold 6.00 MiB"));
  std::optional<std::string> theirs = CallerMessage(s);
  ASSERT_TRUE(theirs.has_value());
  EXPECT_TRUE(absl::StrContains(*theirs, "this stream needs 5.00 MiB"));
  EXPECT_FALSE(absl::StrContains(*theirs, "6.00 MiB")) << *theirs;
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(150));
  EXPECT_EQ(budget.reserved(), 6 * kMiB);
  // More than the whole limit: refused at once, however long it may wait.
  const auto at_once = Clock::now();
  EXPECT_EQ(budget.Reserve(11 * kMiB, absl::Seconds(10), &b).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_LT(Clock::now() - at_once, std::chrono::seconds(5));
  // Room made while it waits: granted.
  std::thread releaser([&a] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    a.Release();
  });
  s = budget.Reserve(5 * kMiB, absl::Seconds(10), &b);
  releaser.join();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(budget.reserved(), 5 * kMiB);
  b.Release();
  EXPECT_EQ(budget.reserved(), 0);
}

TEST(StagingBudgetTest, ManyThreadsNeverPassTheLimit) {
  constexpr int64_t kLimit = 8 * kMiB;
  StagingBudget budget(kLimit);
  std::atomic<int64_t> held{0}, peak{0};
  std::atomic<int> granted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 50; ++k) {
        StagingBudget::Reservation r;
        if (!budget.Reserve(3 * kMiB, absl::Milliseconds(50), &r).ok()) {
          continue;
        }
        ++granted;
        const int64_t now = held += 3 * kMiB;
        int64_t p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        held -= 3 * kMiB;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_GT(granted.load(), 0);
  EXPECT_LE(peak.load(), kLimit);
  EXPECT_EQ(budget.reserved(), 0);
}

TEST(StagingBudgetTest, RegistryTakesItsShareOfMaxStagingBytes) {
  DeviceOptions options;
  options.devices = "cpu";
  EXPECT_EQ(options.max_staging_bytes, 1024 * kMiB);  // the default
  options.max_staging_bytes = 64 * kMiB;
  absl::StatusOr<std::unique_ptr<DeviceRegistry>> registry =
      DeviceRegistry::Create(options);
  ASSERT_TRUE(registry.ok()) << registry.status();
  ASSERT_NE((*registry)->staging(), nullptr);
  EXPECT_EQ((*registry)->staging()->limit(), 56 * kMiB);
  options.max_staging_bytes = -1;
  EXPECT_EQ(DeviceRegistry::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A host Fetch that casts produces its chunks into buffers charged to the
// tenant.
class HostStreamChargeTest : public testing::HostStoreTest {
 protected:
  // A uint8 tensor of `n` elements owned by `tenant_` (charged n bytes).
  TensorPtr Bytes(int64_t n) {
    CreateSpec spec;
    spec.dtype = DType::kUInt8;
    spec.shape = {n};
    spec.init = CreateSpec::Init::kArange;
    ConversionContext ctx = ctx_;
    ctx.tenant = tenant_;
    absl::StatusOr<TensorPtr> t = CreateTensor(ctx, spec);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : nullptr;
  }

  // A RAW Fetch of `t` cast to float64 (8 bytes out per byte in).
  absl::StatusOr<std::unique_ptr<FetchStream>> OpenCast(const TensorPtr& t,
                                                        int64_t chunk) {
    FetchSpec spec;
    spec.format = WireFormat::kRaw;
    spec.dtype = DType::kFloat64;
    absl::StatusOr<FetchSource> src = FetchSource::Open(t, spec);
    if (!src.ok()) return src.status();
    return FetchStream::Open(*std::move(src), chunk, StreamBudget{tenant_});
  }

  TenantPtr tenant_ =
      std::make_shared<Tenant>("alice", TenantLimits{80 * kMiB, 0, 0});
};

// The finding: 12 casting streams never read, each holding a 64 MiB chunk,
// against an 80 MiB quota. Only what fits is opened; the rest are refused
// when they open, before anything is produced, naming the quota.
TEST_F(HostStreamChargeTest, UnreadStreamsCannotPassTheQuota) {
  TensorPtr t = Bytes(8 * kMiB);  // 64 MiB as float64
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(tenant_->bytes(), 8 * kMiB);
  std::vector<std::unique_ptr<FetchStream>> open;
  std::vector<FetchChunk> held;
  int refused = 0;
  for (int i = 0; i < 12; ++i) {
    absl::StatusOr<std::unique_ptr<FetchStream>> s = OpenCast(t, 64 * kMiB);
    if (!s.ok()) {
      EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted)
          << s.status();
      EXPECT_TRUE(absl::StrContains(s.status().message(), "quota"))
          << s.status();
      EXPECT_TRUE(absl::StrContains(s.status().message(), "Fetch"))
          << s.status();
      ++refused;
      continue;
    }
    // Its first chunk, held as gRPC holds one the client does not read.
    held.emplace_back();
    ASSERT_TRUE((*s)->NextChunk(&held.back()).ok());
    EXPECT_EQ(held.back().size, 64 * kMiB);
    open.push_back(*std::move(s));
  }
  EXPECT_EQ(open.size(), 1u);
  EXPECT_EQ(refused, 11);
  EXPECT_EQ(tenant_->bytes(), 8 * kMiB + 64 * kMiB);
  // The buffer is paid for until the stream and its chunk are both gone.
  open.clear();
  EXPECT_EQ(tenant_->bytes(), 72 * kMiB);
  held.clear();
  EXPECT_EQ(tenant_->bytes(), 8 * kMiB);
  EXPECT_TRUE(OpenCast(t, 64 * kMiB).ok());
}

// Later buffers are charged as they are made, at most kHostBuffers of them;
// one the quota cannot take waits for one of the stream's own to come back
// instead of failing the stream midway.
TEST_F(HostStreamChargeTest, LaterBuffersAreChargedOrWaitedFor) {
  TensorPtr t = Bytes(1 * kMiB);  // 8 MiB as float64: 8 chunks of 1 MiB
  ASSERT_NE(t, nullptr);
  absl::StatusOr<std::unique_ptr<FetchStream>> s = OpenCast(t, kMiB);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(tenant_->bytes(), 2 * kMiB);  // the tensor and one buffer
  // Chunks held by the consumer: a buffer each, up to kHostBuffers.
  std::vector<FetchChunk> held(FetchStream::kHostBuffers);
  for (FetchChunk& c : held) ASSERT_TRUE((*s)->NextChunk(&c).ok());
  EXPECT_EQ(tenant_->bytes(), (1 + FetchStream::kHostBuffers) * kMiB);
  // All held: the next one waits for a release rather than make a fourth.
  std::thread releaser([&held] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    held[0].keepalive.reset();
  });
  FetchChunk next;
  absl::Status st = (*s)->NextChunk(&next);
  releaser.join();
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(tenant_->bytes(), (1 + FetchStream::kHostBuffers) * kMiB);
  next.keepalive.reset();
  held.clear();
  s->reset();
  EXPECT_EQ(tenant_->bytes(), kMiB);

  // A quota with room for one buffer: the second chunk waits for the
  // first's buffer rather than fail.
  tenant_->Update(TenantLimits{2 * kMiB, 0, 0});
  s = OpenCast(t, kMiB);
  ASSERT_TRUE(s.ok()) << s.status();
  FetchChunk first;
  ASSERT_TRUE((*s)->NextChunk(&first).ok());
  std::thread giver([&first] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    first.keepalive.reset();
  });
  FetchChunk second;
  st = (*s)->NextChunk(&second);
  giver.join();
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(tenant_->bytes(), 2 * kMiB);
  // Read to the end with one buffer, each chunk released before the next.
  second.keepalive.reset();
  int64_t chunks = 2;
  while (!(*s)->done()) {
    FetchChunk c;
    ASSERT_TRUE((*s)->NextChunk(&c).ok());
    ++chunks;
  }
  EXPECT_EQ(chunks, 8);
  s->reset();
  EXPECT_EQ(tenant_->bytes(), kMiB);
}

// A stream that sends the storage as it lies holds no buffer: no charge.
TEST_F(HostStreamChargeTest, ByReferenceStreamsAreNotCharged) {
  TensorPtr t = Bytes(8 * kMiB);
  ASSERT_NE(t, nullptr);
  FetchSpec spec;
  spec.format = WireFormat::kRaw;
  absl::StatusOr<FetchSource> src = FetchSource::Open(t, spec);
  ASSERT_TRUE(src.ok());
  absl::StatusOr<std::unique_ptr<FetchStream>> s =
      FetchStream::Open(*std::move(src), 64 * kMiB, StreamBudget{tenant_});
  ASSERT_TRUE(s.ok()) << s.status();
  FetchChunk c;
  ASSERT_TRUE((*s)->NextChunk(&c).ok());
  EXPECT_EQ(tenant_->bytes(), 8 * kMiB);
}

}  // namespace
}  // namespace tensorcast
