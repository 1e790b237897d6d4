// Fetch and Put between GPU tensors and CUDA IPC regions, device to device
// (DeviceFetch, PutSink::WriteFromDevice), on a machine without a GPU. Two
// stand-in GPUs (cuda:0, cuda:1) keep their memory in host memory behind an
// Engine whose is_host() is false and which counts every call; a stand-in
// IpcMemoryOpener hands out host memory as device allocations on either GPU
// and counts its host copies. So the tests see which way the bytes went --
// straight into the region, through a temporary and a peer copy, or staged
// through host memory -- and compare every byte with the host's own
// FetchSource over the same data. tests/gpu/cuda_ipc_test.cc runs the real
// thing on a card.
#include "server/store/device_fetch.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/dtype.h"
#include "server/core/npy.h"
#include "server/core/shape.h"
#include "server/memory/host_memory_resource.h"
#include "server/memory/ipc_memory.h"
#include "server/ops/engine.h"
#include "server/store/device.h"
#include "server/store/fetch_source.h"
#include "server/store/put_sink.h"
#include "server/store/shared_memory.h"
#include "server/store/tenant.h"
#include "server/store/tensor_store.h"

namespace tensorcast {
namespace {

// The stand-in GPUs' bus ids: cuda:0 and cuda:1 of this process.
constexpr absl::string_view kBus[2] = {"0000:3b:00.0", "0000:86:00.0"};
constexpr int64_t kRegionData = int64_t{1} << 20;
constexpr int64_t kRegionSize = kSharedMemoryHeaderBytes + kRegionData;

std::string Token() { return "0123456789abcdef-token"; }

// Deterministic bytes (NaN payloads and all: both sides cast them with the
// same host code).
std::string PatternBytes(int64_t n, uint32_t seed) {
  std::string out(static_cast<size_t>(n), '\0');
  uint32_t x = seed * 2654435761u + 12345u;
  for (int64_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

// Float32 values that every dtype can hold approximately.
std::string FloatPattern(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    v[i] = static_cast<float>(i % 997) * 0.25f - 100.0f;
  }
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

::testing::AssertionResult SameBytes(const std::string& got,
                                     const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return ::testing::AssertionFailure()
         << "got " << got.size() << " bytes, want " << want.size()
         << "; first difference at byte " << i;
}

// A GPU over host memory that counts what it is asked to do.
class StandInGpu final : public Engine {
 public:
  explicit StandInGpu(int index) : index_(index), host_(NewHostEngine()) {}

  bool is_host() const override { return false; }

  absl::Status Fill(const FillOp& op, void* dst, DType dtype,
                    int64_t n) override {
    return host_->Fill(op, dst, dtype, n);
  }

  absl::Status GatherCast(const void* storage, DType src_dtype,
                          const Layout& layout, int64_t start, int64_t count,
                          void* dst, DType dst_dtype) override {
    ++gathers;
    gather_dst.push_back(static_cast<const char*>(dst));
    return host_->GatherCast(storage, src_dtype, layout, start, count, dst,
                             dst_dtype);
  }

  absl::Status Upload(void* dst, int64_t n, int64_t /*granule*/,
                      Producer produce) override {
    ++uploads;
    if (n <= 0) return absl::OkStatus();
    std::vector<char> staging(static_cast<size_t>(n), '\xA5');
    produce(0, n, staging.data());
    std::memcpy(dst, staging.data(), static_cast<size_t>(n));
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<ChunkReader>> NewReader(
      const void* storage, DType src_dtype, const Layout& layout,
      DType out_dtype, int64_t slot_elements, int slots) override {
    ++readers;
    return host_->NewReader(storage, src_dtype, layout, out_dtype,
                            slot_elements, slots);
  }

  absl::Status CopyDevice(void* dst, int dst_device, const void* src,
                          int src_device, int64_t n) override {
    if (dst_device != index_ && src_device != index_) {
      return absl::InvalidArgumentError("neither GPU is this one");
    }
    if (fail_copies) return absl::InternalError("stand-in: the copy failed");
    ++copies;
    copy_devices.emplace_back(src_device, dst_device);
    copied_bytes += n;
    std::memcpy(dst, src, static_cast<size_t>(n));
    return absl::OkStatus();
  }

  int gathers = 0;
  std::vector<const char*> gather_dst;
  int uploads = 0;
  int readers = 0;
  int copies = 0;
  std::vector<std::pair<int, int>> copy_devices;  // (src, dst)
  int64_t copied_bytes = 0;
  bool fail_copies = false;

 private:
  const int index_;
  const std::unique_ptr<Engine> host_;
};

// Device allocations in host memory, by handle, on either stand-in GPU;
// counts the copies between them and host memory.
class StandInOpener final : public IpcMemoryOpener {
 public:
  char* Allocate(const std::string& handle, int64_t size) {
    std::string& memory = memory_[handle];
    memory.assign(static_cast<size_t>(size), '\0');
    memory.replace(0, Token().size(), Token());
    return memory.data();
  }

  std::unique_ptr<IpcDeviceRegion> Open(absl::string_view handle,
                                        absl::string_view pci_bus_id,
                                        int64_t size,
                                        std::string* why) const override {
    auto it = memory_.find(std::string(handle));
    const int device =
        pci_bus_id == kBus[0] ? 0 : (pci_bus_id == kBus[1] ? 1 : -1);
    if (device < 0 || it == memory_.end()) {
      *why = "stand-in: no such allocation";
      return nullptr;
    }
    return std::make_unique<Region>(const_cast<char*>(it->second.data()), size,
                                    device, this);
  }

  mutable std::atomic<int> to_host{0};
  mutable std::atomic<int> from_host{0};
  mutable std::atomic<int64_t> from_host_bytes{0};

 private:
  class Region final : public IpcDeviceRegion {
   public:
    Region(char* data, int64_t size, int device, const StandInOpener* opener)
        : data_(data), size_(size), device_(device), opener_(opener) {}
    int device() const override { return device_; }
    uintptr_t address() const override {
      return reinterpret_cast<uintptr_t>(data_);
    }
    int64_t size() const override { return size_; }
    absl::Status CopyToHost(int64_t offset, void* dst,
                            int64_t n) const override {
      // The header's token and challenge are read by the registry: only
      // the transfers' reads count.
      if (offset >= kSharedMemoryHeaderBytes) ++opener_->to_host;
      std::memcpy(dst, data_ + offset, static_cast<size_t>(n));
      return absl::OkStatus();
    }
    absl::Status CopyFromHost(int64_t offset, const void* src,
                              int64_t n) const override {
      ++opener_->from_host;
      opener_->from_host_bytes += n;
      std::memcpy(data_ + offset, src, static_cast<size_t>(n));
      return absl::OkStatus();
    }

   private:
    char* const data_;
    const int64_t size_;
    const int device_;
    const StandInOpener* const opener_;
  };

  std::map<std::string, std::string> memory_;
};

class DeviceTransferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<std::unique_ptr<Device>> devices;
    devices.push_back(std::make_unique<Device>(
        "cpu", "host memory", std::make_unique<HostMemoryResource>(), 0,
        [](CachingPool*) { return NewHostEngine(); }));
    for (int i = 0; i < 2; ++i) {
      StandInGpu** gpu = &gpu_[i];
      devices.push_back(std::make_unique<Device>(
          absl::StrCat("cuda:", i), "stand-in GPU over host memory",
          std::make_unique<HostMemoryResource>(), 0,
          [i, gpu](CachingPool*) -> std::unique_ptr<Engine> {
            auto e = std::make_unique<StandInGpu>(i);
            *gpu = e.get();
            return e;
          }));
    }
    registry_ = DeviceRegistry::FromDevices(std::move(devices), "stand-ins");
    ctx_ = ConversionContext{&store_, registry_.get(), 0, nullptr};
  }

  Device* Get(const std::string& name) {
    absl::StatusOr<Device*> d = registry_->Get(name);
    EXPECT_TRUE(d.ok()) << d.status();
    return *d;
  }

  // A region of device memory on stand-in GPU `gpu`, its challenge in
  // place; *data gets its bytes (the whole allocation, header included).
  std::shared_ptr<const SharedMemoryRegion> Region(int gpu, char** data) {
    const std::string handle(kCudaIpcHandleBytes, static_cast<char>('a' + n_));
    ++n_;
    char* memory = opener_->Allocate(handle, kRegionSize);
    absl::StatusOr<SharedMemoryGrant> grant = shm_.OpenCudaIpc(
        handle, kBus[gpu], kRegionSize, Token(), "conn", nullptr);
    EXPECT_TRUE(grant.ok()) << grant.status();
    if (!grant.ok()) return nullptr;
    EXPECT_EQ(grant->device, gpu);
    std::memcpy(memory + kSharedMemoryChallengeOffset, grant->challenge.data(),
                grant->challenge.size());
    absl::StatusOr<std::shared_ptr<const SharedMemoryRegion>> region =
        shm_.Find(grant->id, "conn");
    EXPECT_TRUE(region.ok()) << region.status();
    *data = memory;
    return region.ok() ? *region : nullptr;
  }

  // A tensor on `device` over a storage holding `bytes`, viewed by layout.
  static TensorPtr TensorOn(Device* device, DType dtype, const Layout& layout,
                            const std::string& bytes) {
    absl::StatusOr<std::shared_ptr<Storage>> storage =
        Storage::Allocate(device, static_cast<int64_t>(bytes.size()));
    EXPECT_TRUE(storage.ok()) << storage.status();
    std::memcpy((*storage)->data(), bytes.data(), bytes.size());
    auto t = std::make_shared<Tensor>();
    t->dtype = dtype;
    t->layout = layout;
    t->numel = *NumElements(layout.shape);
    t->storage = *std::move(storage);
    return t;
  }

  // The output the host gives for the same data, view and spec.
  std::string Reference(DType dtype, const Layout& layout,
                        const std::string& bytes, const FetchSpec& spec) {
    absl::StatusOr<FetchSource> host = FetchSource::Open(
        TensorOn(registry_->host(), dtype, layout, bytes), spec);
    EXPECT_TRUE(host.ok()) << host.status();
    std::string out(static_cast<size_t>(host->end() - host->begin()), '\0');
    host->Read(host->begin(), host->end() - host->begin(), out.data());
    return out;
  }

  static FetchSpec Spec(WireFormat format, std::optional<DType> dtype,
                        int64_t offset = 0, int64_t length = 0) {
    FetchSpec spec;
    spec.format = format;
    spec.dtype = dtype;
    spec.force = true;  // a GPU tensor, as Tensor.numpy(force=True)
    spec.offset = offset;
    spec.length = length;
    return spec;
  }

  // Copies the whole output in pieces of at most max_bytes.
  static absl::Status Drain(DeviceFetch& fetch, int64_t max_bytes,
                            int* pieces = nullptr) {
    while (!fetch.done()) {
      int64_t moved = 0;
      if (absl::Status s = fetch.CopyNext(max_bytes, &moved); !s.ok()) {
        return s;
      }
      if (moved <= 0) return absl::InternalError("no progress");
      if (pieces != nullptr) ++*pieces;
    }
    return absl::OkStatus();
  }

  std::unique_ptr<DeviceRegistry> registry_;
  TensorStore store_;  // after the devices: its tensors go back to them first
  ConversionContext ctx_;
  StandInGpu* gpu_[2] = {nullptr, nullptr};
  std::shared_ptr<StandInOpener> opener_ = std::make_shared<StandInOpener>();
  SharedMemoryRegistry shm_{"/nonexistent-tensorcast-test", {}, opener_};
  int n_ = 0;
};

// ---------------------------------------------------------------------------
// Fetch.

TEST_F(DeviceTransferTest, SameGpuGathersAndCastsStraightIntoTheRegion) {
  const std::string bytes = FloatPattern(48 * 40);
  struct Case {
    std::string name;
    Layout layout;
  };
  Layout transposed = Layout::Contiguous({48, 40});
  std::swap(transposed.shape[0], transposed.shape[1]);
  std::swap(transposed.strides[0], transposed.strides[1]);
  const std::vector<Case> views = {{"contiguous", Layout::Contiguous({48, 40})},
                                   {"transposed", transposed}};
  for (const Case& view : views) {
    for (std::optional<DType> cast :
         {std::optional<DType>(), std::optional<DType>(DType::kFloat16),
          std::optional<DType>(DType::kFloat64)}) {
      for (WireFormat format : {WireFormat::kRaw, WireFormat::kNpy}) {
        SCOPED_TRACE(absl::StrCat(view.name, " ",
                                  cast ? DTypeName(*cast) : "no cast", " ",
                                  format == WireFormat::kNpy ? "npy" : "raw"));
        char* memory = nullptr;
        auto region = Region(0, &memory);
        ASSERT_NE(region, nullptr);
        const FetchSpec spec = Spec(format, cast);
        absl::StatusOr<FetchSource> source = FetchSource::Open(
            TensorOn(Get("cuda:0"), DType::kFloat32, view.layout, bytes), spec);
        ASSERT_TRUE(source.ok()) << source.status();
        const int64_t header = static_cast<int64_t>(source->header().size());
        ASSERT_TRUE(DeviceFetch::Applies(*source, *region));
        const int gathers = gpu_[0]->gathers;
        const int from_host = opener_->from_host;
        absl::StatusOr<std::unique_ptr<DeviceFetch>> fetch = DeviceFetch::Open(
            *source, region, kSharedMemoryHeaderBytes, nullptr);
        ASSERT_TRUE(fetch.ok()) << fetch.status();
        EXPECT_TRUE((*fetch)->direct());
        EXPECT_EQ((*fetch)->temporary_bytes(), 0);
        int pieces = 0;
        ASSERT_TRUE(Drain(**fetch, int64_t{1} << 30, &pieces).ok());
        EXPECT_EQ(pieces, 1);
        // One gather (one kernel) whose destination is the region itself.
        ASSERT_EQ(gpu_[0]->gathers, gathers + 1);
        EXPECT_EQ(gpu_[0]->gather_dst.back(),
                  memory + kSharedMemoryHeaderBytes + header);
        // Nothing staged through host memory but the .npy header's bytes.
        EXPECT_EQ(opener_->to_host.load(), 0);
        EXPECT_EQ(opener_->from_host.load(), from_host + (header > 0 ? 1 : 0));
        const std::string want =
            Reference(DType::kFloat32, view.layout, bytes, spec);
        EXPECT_TRUE(SameBytes(
            std::string(memory + kSharedMemoryHeaderBytes, want.size()), want));
      }
    }
  }
  EXPECT_EQ(gpu_[0]->copies + gpu_[1]->copies, 0);
  EXPECT_EQ(gpu_[0]->uploads + gpu_[0]->readers, 0);
}

TEST_F(DeviceTransferTest, PiecesFollowEachOtherInWholeElements) {
  const std::string bytes = FloatPattern(5000);
  const Layout layout = Layout::Contiguous({5000});
  char* memory = nullptr;
  auto region = Region(0, &memory);
  const FetchSpec spec = Spec(WireFormat::kNpy, DType::kFloat16);
  absl::StatusOr<FetchSource> source = FetchSource::Open(
      TensorOn(Get("cuda:0"), DType::kFloat32, layout, bytes), spec);
  ASSERT_TRUE(source.ok());
  auto fetch =
      DeviceFetch::Open(*source, region, kSharedMemoryHeaderBytes, nullptr);
  ASSERT_TRUE(fetch.ok()) << fetch.status();
  ASSERT_TRUE((*fetch)->direct());
  int pieces = 0;
  ASSERT_TRUE(Drain(**fetch, 1001, &pieces).ok());  // 500 float16 a piece
  EXPECT_EQ(pieces, 10);
  EXPECT_EQ(gpu_[0]->gathers, 10);
  const std::string want = Reference(DType::kFloat32, layout, bytes, spec);
  EXPECT_TRUE(SameBytes(
      std::string(memory + kSharedMemoryHeaderBytes, want.size()), want));
}

TEST_F(DeviceTransferTest, AnotherGpuGoesThroughABoundedChargedTemporary) {
  const std::string bytes = FloatPattern(64 * 50);
  Layout layout = Layout::Contiguous({64, 50});
  std::swap(layout.shape[0], layout.shape[1]);
  std::swap(layout.strides[0], layout.strides[1]);
  auto alice = std::make_shared<Tenant>(
      "alice",
      TenantLimits{.max_bytes = 4096, .max_tensors = 0, .max_streams = 0});
  char* memory = nullptr;
  auto region = Region(1, &memory);  // on cuda:1; the tensor on cuda:0
  const FetchSpec spec = Spec(WireFormat::kRaw, DType::kFloat16);
  absl::StatusOr<FetchSource> source = FetchSource::Open(
      TensorOn(Get("cuda:0"), DType::kFloat32, layout, bytes), spec);
  ASSERT_TRUE(source.ok());
  ASSERT_TRUE(DeviceFetch::Applies(*source, *region));
  {
    auto fetch = DeviceFetch::Open(*source, region, kSharedMemoryHeaderBytes,
                                   alice, /*max_temporary=*/1000);
    ASSERT_TRUE(fetch.ok()) << fetch.status();
    EXPECT_FALSE((*fetch)->direct());
    EXPECT_EQ((*fetch)->temporary_bytes(), 1000);  // 500 float16
    EXPECT_EQ(alice->bytes(), 1000);               // charged while it lives
    ASSERT_TRUE(Drain(**fetch, int64_t{1} << 30).ok());
  }
  EXPECT_EQ(alice->bytes(), 0);
  // 3200 elements, 500 at a time: each gathered into the temporary on
  // cuda:0, then one peer copy into cuda:1's region.
  EXPECT_EQ(gpu_[0]->gathers, 7);
  EXPECT_EQ(gpu_[0]->copies, 7);
  EXPECT_EQ(gpu_[0]->copied_bytes, 6400);
  for (const auto& [src, dst] : gpu_[0]->copy_devices) {
    EXPECT_EQ(src, 0);
    EXPECT_EQ(dst, 1);
  }
  EXPECT_EQ(opener_->to_host.load() + opener_->from_host.load(), 0);
  EXPECT_EQ(gpu_[0]->uploads + gpu_[0]->readers, 0);
  const std::string want = Reference(DType::kFloat32, layout, bytes, spec);
  EXPECT_TRUE(SameBytes(
      std::string(memory + kSharedMemoryHeaderBytes, want.size()), want));

  // Over the quota: refused before any work; the direct way needs no
  // temporary and is not.
  auto refused = DeviceFetch::Open(*source, region, kSharedMemoryHeaderBytes,
                                   alice, /*max_temporary=*/8192);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(gpu_[0]->gathers, 7);
  char* same_gpu_memory = nullptr;
  auto same_gpu = Region(0, &same_gpu_memory);
  auto direct = DeviceFetch::Open(*source, same_gpu, kSharedMemoryHeaderBytes,
                                  alice, /*max_temporary=*/8192);
  ASSERT_TRUE(direct.ok()) << direct.status();
  EXPECT_TRUE((*direct)->direct());
  EXPECT_EQ(alice->bytes(), 0);
}

TEST_F(DeviceTransferTest, RangesThatCutElementsOrMisalignedGoThroughATemp) {
  const std::string bytes = FloatPattern(3000);
  const Layout layout = Layout::Contiguous({3000});
  struct Case {
    std::string name;
    FetchSpec spec;
    int64_t at;
  };
  const std::vector<Case> cases = {
      {"a range that cuts elements", Spec(WireFormat::kRaw, {}, 3, 1001),
       kSharedMemoryHeaderBytes},
      {"a misaligned destination", Spec(WireFormat::kRaw, DType::kFloat64),
       kSharedMemoryHeaderBytes + 4},
      {"npy, a range inside the header and the data",
       Spec(WireFormat::kNpy, DType::kFloat16, 100, 333),
       kSharedMemoryHeaderBytes + 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    char* memory = nullptr;
    auto region = Region(0, &memory);
    absl::StatusOr<FetchSource> source = FetchSource::Open(
        TensorOn(Get("cuda:0"), DType::kFloat32, layout, bytes), c.spec);
    ASSERT_TRUE(source.ok()) << source.status();
    const int to_host = opener_->to_host;
    auto fetch = DeviceFetch::Open(*source, region, c.at, nullptr,
                                   /*max_temporary=*/256);
    ASSERT_TRUE(fetch.ok()) << fetch.status();
    EXPECT_FALSE((*fetch)->direct());
    ASSERT_TRUE(Drain(**fetch, 700).ok());
    EXPECT_EQ(opener_->to_host.load(), to_host);
    const std::string want = Reference(DType::kFloat32, layout, bytes, c.spec);
    EXPECT_TRUE(SameBytes(std::string(memory + c.at, want.size()), want));
    // Nothing before or after the range was touched.
    EXPECT_EQ(memory[c.at - 1], '\0');
    EXPECT_EQ(memory[c.at + static_cast<int64_t>(want.size())], '\0');
  }
  for (const auto& [src, dst] : gpu_[0]->copy_devices) {
    EXPECT_EQ(src, 0);
    EXPECT_EQ(dst, 0);
  }
}

TEST_F(DeviceTransferTest, OnlyAGpuTensorIntoDeviceMemoryGoesThisWay) {
  const std::string bytes = FloatPattern(100);
  char* memory = nullptr;
  auto region = Region(0, &memory);
  absl::StatusOr<FetchSource> host =
      FetchSource::Open(TensorOn(registry_->host(), DType::kFloat32,
                                 Layout::Contiguous({100}), bytes),
                        Spec(WireFormat::kRaw, {}));
  ASSERT_TRUE(host.ok());
  EXPECT_FALSE(DeviceFetch::Applies(*host, *region));
  EXPECT_EQ(DeviceFetch::Open(*host, region, kSharedMemoryHeaderBytes, nullptr)
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
  // The bounds are the region's: checked before anything is written.
  absl::StatusOr<FetchSource> gpu =
      FetchSource::Open(TensorOn(Get("cuda:0"), DType::kFloat32,
                                 Layout::Contiguous({100}), bytes),
                        Spec(WireFormat::kRaw, {}));
  ASSERT_TRUE(gpu.ok());
  auto late = DeviceFetch::Open(*gpu, region, kRegionSize - 200, nullptr);
  ASSERT_TRUE(late.ok());
  int64_t moved = 0;
  EXPECT_EQ((*late)->CopyNext(1 << 20, &moved).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(moved, 0);
  EXPECT_EQ(gpu_[0]->gathers, 0);
  EXPECT_EQ(region->CheckRange(0, 400).code(),
            absl::StatusCode::kInvalidArgument);  // the header
}

// ---------------------------------------------------------------------------
// Put.

class DevicePutTest : public DeviceTransferTest {
 protected:
  absl::StatusOr<std::unique_ptr<PutSink>> Start(WireFormat format,
                                                 const std::string& device,
                                                 int64_t n) {
    PutSpec spec;
    spec.format = format;
    if (format == WireFormat::kRaw) {
      spec.dtype = DType::kFloat32;
      spec.shape = {n};
    }
    spec.device = device;
    return PutSink::Start(ctx_, spec);
  }

  static std::string Stored(const TensorPtr& t) {
    return std::string(t->storage_bytes(), static_cast<size_t>(t->nbytes()));
  }
};

TEST_F(DevicePutTest, RawFromTheSameOrAnotherGpuIsOneDeviceCopy) {
  for (int region_gpu : {0, 1}) {
    SCOPED_TRACE(absl::StrCat("region on cuda:", region_gpu));
    char* memory = nullptr;
    auto region = Region(region_gpu, &memory);
    const std::string bytes = PatternBytes(4000, region_gpu + 1);
    std::memcpy(memory + kSharedMemoryHeaderBytes, bytes.data(), bytes.size());
    auto sink = Start(WireFormat::kRaw, "cuda:0", 1000);
    ASSERT_TRUE(sink.ok()) << sink.status();
    ASSERT_TRUE((*sink)->TakesDeviceBytes());
    const int copies = gpu_[0]->copies;
    ASSERT_TRUE(
        (*sink)
            ->WriteFromDevice(4000, region_gpu,
                              region->device_data(kSharedMemoryHeaderBytes))
            .ok());
    EXPECT_EQ(gpu_[0]->copies, copies + 1);
    EXPECT_EQ(gpu_[0]->copy_devices.back(), std::make_pair(region_gpu, 0));
    absl::StatusOr<TensorPtr> t = (*sink)->Finish();
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_TRUE(SameBytes(Stored(*t), bytes));
  }
  EXPECT_EQ(opener_->to_host.load(), 0);  // never staged through the host
  EXPECT_EQ(gpu_[0]->uploads, 0);
}

TEST_F(DevicePutTest, NpyHeaderOnTheHostThenTheDataDeviceToDevice) {
  const std::string data = PatternBytes(4 * 3000, 7);
  absl::StatusOr<std::string> header =
      EncodeNpyHeader(DType::kFloat32, std::vector<int64_t>{3000});
  ASSERT_TRUE(header.ok());
  const std::string file = *header + data;
  char* memory = nullptr;
  auto region = Region(0, &memory);
  std::memcpy(memory + kSharedMemoryHeaderBytes, file.data(), file.size());
  auto sink = Start(WireFormat::kNpy, "cuda:0", 0);
  ASSERT_TRUE(sink.ok()) << sink.status();
  EXPECT_FALSE((*sink)->reserved());
  EXPECT_FALSE((*sink)->TakesDeviceBytes());
  EXPECT_EQ((*sink)
                ->WriteFromDevice(10, 0,
                                  region->device_data(kSharedMemoryHeaderBytes))
                .code(),
            absl::StatusCode::kFailedPrecondition);
  // As the Put reactor does: a small read through the host until the
  // header is whole (some data comes with it), then the rest on the device.
  int64_t at = kSharedMemoryHeaderBytes;
  const int64_t first = 1001;  // cuts an element
  ASSERT_TRUE(
      (*sink)
          ->WriteFrom(first,
                      [&](char* dst) { return region->Read(at, dst, first); })
          .ok());
  at += first;
  ASSERT_TRUE((*sink)->reserved());
  ASSERT_TRUE((*sink)->TakesDeviceBytes());
  const int64_t rest = static_cast<int64_t>(file.size()) - first;
  ASSERT_TRUE((*sink)->WriteFromDevice(rest, 0, region->device_data(at)).ok());
  EXPECT_EQ(gpu_[0]->uploads, 1);  // the bytes after the header, staged
  EXPECT_EQ(gpu_[0]->copies, 1);
  EXPECT_EQ(gpu_[0]->copied_bytes, rest);
  absl::StatusOr<TensorPtr> t = (*sink)->Finish();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE(SameBytes(Stored(*t), data));
}

TEST_F(DevicePutTest, BigEndianAndCpuTensorsStayOnTheHostPath) {
  absl::StatusOr<std::string> header =
      EncodeNpyHeader(DType::kFloat32, std::vector<int64_t>{16});
  ASSERT_TRUE(header.ok());
  std::string big = absl::StrReplaceAll(*header, {{"'<f4'", "'>f4'"}});
  ASSERT_NE(big, *header);
  auto sink = Start(WireFormat::kNpy, "cuda:0", 0);
  ASSERT_TRUE(sink.ok());
  ASSERT_TRUE((*sink)->Write(big).ok());
  EXPECT_TRUE((*sink)->reserved());
  EXPECT_FALSE((*sink)->TakesDeviceBytes());  // the bytes need a swap
  auto host = Start(WireFormat::kRaw, "cpu", 16);
  ASSERT_TRUE(host.ok());
  EXPECT_FALSE((*host)->TakesDeviceBytes());
  EXPECT_EQ((*host)->WriteFromDevice(64, 0, big.data()).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(DevicePutTest, NothingIsStoredUnlessEveryByteCopied) {
  char* memory = nullptr;
  auto region = Region(0, &memory);
  const char* src = region->device_data(kSharedMemoryHeaderBytes);
  {
    // Too many bytes: refused before the copy.
    auto sink = Start(WireFormat::kRaw, "cuda:0", 10);
    ASSERT_TRUE(sink.ok());
    EXPECT_EQ((*sink)->WriteFromDevice(44, 0, src).code(),
              absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(gpu_[0]->copies, 0);
  }
  {
    // A copy that fails: the upload is unusable.
    auto sink = Start(WireFormat::kRaw, "cuda:0", 10);
    ASSERT_TRUE(sink.ok());
    gpu_[0]->fail_copies = true;
    EXPECT_EQ((*sink)->WriteFromDevice(40, 0, src).code(),
              absl::StatusCode::kInternal);
    gpu_[0]->fail_copies = false;
    EXPECT_EQ((*sink)->Finish().status().code(),
              absl::StatusCode::kFailedPrecondition);
  }
  {
    // Bytes missing.
    auto sink = Start(WireFormat::kRaw, "cuda:0", 10);
    ASSERT_TRUE(sink.ok());
    ASSERT_TRUE((*sink)->WriteFromDevice(36, 0, src).ok());
    EXPECT_EQ((*sink)->Finish().status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(store_.size(), 0);
}

}  // namespace
}  // namespace tensorcast
