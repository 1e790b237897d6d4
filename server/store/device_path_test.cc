// Tests the store's non-host data paths -- the ones a GPU takes -- on the
// CPU alone. Two fake "GPUs" (cuda:0, cuda:1) keep their tensors in host
// memory but have an Engine whose is_host() is false, so CopyView, ToTensor,
// CreateTensor, FetchStream and PutSink go through Engine::Upload and
// ChunkReader exactly as they do with CUDA. The fake engine is strict where
// the CUDA one would be silent or asynchronous:
//  - Upload produces in pieces of an odd number of elements into a staging
//    buffer of its own (poisoned before every piece), then copies them out;
//  - a reader produces a slot's chunk only at Wait (as if the GPU had been
//    working meanwhile) and poisons the slot at Start, so a caller that reads
//    a slot it has not waited for, or one it restarted, reads garbage;
//  - every pointer it is handed must be its own device's memory;
//  - any breach of engine.h's protocol returns FAILED_PRECONDITION and is
//    recorded; TearDown fails the test if anything was recorded.
// Every result is compared byte for byte with the plain host path.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"
#include "gtest/gtest.h"
#include "server/core/npy.h"
#include "server/core/shape.h"
#include "server/memory/host_memory_resource.h"
#include "server/memory/memory_resource.h"
#include "server/ops/engine.h"
#include "server/ops/gather.h"
#include "server/store/conversions.h"
#include "server/store/device.h"
#include "server/store/fetch_source.h"
#include "server/store/fetch_stream.h"
#include "server/store/put_sink.h"
#include "server/store/staging_budget.h"
#include "server/store/tenant.h"
#include "server/store/tensor_store.h"
#include "server/store/transfer.h"

namespace tensorcast {
namespace {

constexpr int64_t kMiB = 1 << 20;

// ---------------------------------------------------------------------------
// The fake GPU.

// Host memory that remembers its live blocks, so that an engine can check
// that the pointers it is handed are its own device's memory.
class TrackingResource final : public MemoryResource {
 public:
  absl::string_view Name() const override { return "fake-gpu"; }

  // True when p lies in (or at the end of) a live block.
  bool Contains(const void* p) const {
    const auto a = reinterpret_cast<uintptr_t>(p);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = blocks_.upper_bound(a);
    if (it == blocks_.begin()) return false;
    --it;
    return a <= it->first + it->second;
  }

 private:
  absl::StatusOr<void*> DoAllocate(size_t bytes) override {
    absl::StatusOr<void*> p = host_.Allocate(bytes);
    if (p.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      blocks_[reinterpret_cast<uintptr_t>(*p)] = bytes;
    }
    return p;
  }
  void DoDeallocate(void* p, size_t bytes) noexcept override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      blocks_.erase(reinterpret_cast<uintptr_t>(p));
    }
    host_.Deallocate(p, bytes);
  }

  HostMemoryResource host_;
  mutable std::mutex mu_;
  std::map<uintptr_t, size_t> blocks_;
};

class FakeGpuEngine;

// A ChunkReader that enforces engine.h's protocol and produces a slot's
// chunk only when it is waited for.
class FakeReader final : public ChunkReader {
 public:
  FakeReader(FakeGpuEngine* engine, const void* storage, DType src_dtype,
             Layout layout, DType out_dtype, int64_t slot_elements, int slots,
             int64_t numel)
      : engine_(engine),
        storage_(storage),
        src_dtype_(src_dtype),
        layout_(std::move(layout)),
        out_dtype_(out_dtype),
        slot_elements_(slot_elements),
        numel_(numel),
        slots_(slots) {
    for (Slot& s : slots_) {
      s.buffer.assign(static_cast<size_t>(slot_elements * ItemSize(out_dtype)),
                      '\xEE');
    }
  }

  int slots() const override { return static_cast<int>(slots_.size()); }
  int64_t slot_elements() const override { return slot_elements_; }
  absl::Status Start(int slot, int64_t first, int64_t count) override;
  absl::StatusOr<const char*> Wait(int slot) override;

 private:
  struct Slot {
    std::vector<char> buffer;
    bool in_flight = false;
    int64_t first = 0;
    int64_t count = 0;
  };
  FakeGpuEngine* const engine_;
  const void* const storage_;
  const DType src_dtype_;
  const Layout layout_;
  const DType out_dtype_;
  const int64_t slot_elements_;
  const int64_t numel_;
  std::vector<Slot> slots_;
};

class FakeGpuEngine final : public Engine {
 public:
  explicit FakeGpuEngine(const TrackingResource* memory)
      : memory_(memory), host_(NewHostEngine()) {}

  bool is_host() const override { return false; }

  absl::Status Fill(const FillOp& op, void* dst, DType dtype,
                    int64_t n) override {
    if (absl::Status s = CheckMine(dst, "Fill dst"); !s.ok()) return s;
    return host_->Fill(op, dst, dtype, n);
  }

  absl::Status GatherCast(const void* storage, DType src_dtype,
                          const Layout& layout, int64_t start, int64_t count,
                          void* dst, DType dst_dtype) override {
    if (absl::Status s = CheckMine(storage, "GatherCast storage"); !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckMine(dst, "GatherCast dst"); !s.ok()) return s;
    return host_->GatherCast(storage, src_dtype, layout, start, count, dst,
                             dst_dtype);
  }

  absl::Status Upload(void* dst, int64_t n, int64_t granule,
                      Producer produce) override {
    ++uploads_;
    if (absl::Status s = CheckMine(dst, "Upload dst"); !s.ok()) return s;
    if (n < 0 || granule <= 0) {
      return Violation(
          absl::StrCat("Upload of ", n, " bytes, granule ", granule));
    }
    if (n == 0) return absl::OkStatus();
    // engine.h lets the last piece be partial, but every store caller
    // uploads whole elements: anything else would hand a producer half an
    // element to cast or swap.
    if (n % granule != 0) {
      return Violation(absl::StrCat("Upload of ", n,
                                    " bytes is not whole elements of ", granule,
                                    " bytes"));
    }
    // An odd number of elements per piece, so that pieces never line up
    // with anybody's power-of-two chunks: 3 for small uploads, about 61
    // pieces for big ones (to keep Debug runs quick).
    const int64_t elements = n / granule;
    const int64_t per = elements <= 3 * 4096 ? 3 : ((elements / 61) | 1);
    const int64_t piece = per * granule;
    std::vector<char> staging(static_cast<size_t>(std::min(piece, n)));
    char* out = static_cast<char*>(dst);
    for (int64_t offset = 0; offset < n; offset += piece) {
      const int64_t len = std::min(piece, n - offset);
      if (offset + len < n && len % granule != 0) {
        return Violation("an upload piece but the last cuts an element");
      }
      std::memset(staging.data(), 0xA5, static_cast<size_t>(len));
      produce(offset, len, staging.data());
      std::memcpy(out + offset, staging.data(), static_cast<size_t>(len));
      ++upload_pieces_;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<ChunkReader>> NewReader(
      const void* storage, DType src_dtype, const Layout& layout,
      DType out_dtype, int64_t slot_elements, int slots) override {
    if (slot_elements <= 0 || slots <= 0) {
      return absl::InvalidArgumentError("a reader needs slots");
    }
    if (absl::Status s = CheckMine(storage, "NewReader storage"); !s.ok()) {
      return s;
    }
    absl::StatusOr<int64_t> numel = NumElements(layout.shape);
    if (!numel.ok()) return Violation("NewReader of a malformed layout");
    ++readers_;
    last_slot_elements_ = slot_elements;
    return std::make_unique<FakeReader>(this, storage, src_dtype, layout,
                                        out_dtype, slot_elements, slots,
                                        *numel);
  }

  // Records a breach of the protocol; FAILED_PRECONDITION for the caller.
  absl::Status Violation(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu_);
    if (violations_++ == 0) first_violation_ = what;
    return absl::FailedPreconditionError(
        absl::StrCat("fake GPU protocol violation: ", what));
  }
  int violations() const {
    std::lock_guard<std::mutex> lock(mu_);
    return violations_;
  }
  std::string first_violation() const {
    std::lock_guard<std::mutex> lock(mu_);
    return first_violation_;
  }
  void CountStart() { ++reader_starts_; }

  int64_t uploads() const { return uploads_; }
  int64_t upload_pieces() const { return upload_pieces_; }
  int64_t readers() const { return readers_; }
  int64_t reader_starts() const { return reader_starts_; }
  int64_t last_slot_elements() const { return last_slot_elements_; }

 private:
  absl::Status CheckMine(const void* p, absl::string_view what) {
    if (memory_->Contains(p)) return absl::OkStatus();
    return Violation(absl::StrCat(what, " is not this device's memory"));
  }

  const TrackingResource* const memory_;
  const std::unique_ptr<Engine> host_;
  mutable std::mutex mu_;
  int violations_ = 0;
  std::string first_violation_;
  std::atomic<int64_t> uploads_{0};
  std::atomic<int64_t> upload_pieces_{0};
  std::atomic<int64_t> readers_{0};
  std::atomic<int64_t> reader_starts_{0};
  std::atomic<int64_t> last_slot_elements_{0};
};

absl::Status FakeReader::Start(int slot, int64_t first, int64_t count) {
  engine_->CountStart();
  if (slot < 0 || slot >= slots()) {
    return engine_->Violation(
        absl::StrCat("Start on slot ", slot, " of ", slots()));
  }
  Slot& s = slots_[slot];
  if (s.in_flight) {
    return engine_->Violation(
        absl::StrCat("Start on slot ", slot, " while it is in flight"));
  }
  if (count < 0 || count > slot_elements_) {
    return engine_->Violation(absl::StrCat(
        "Start of ", count, " elements in a slot of ", slot_elements_));
  }
  if (first < 0 || first + count > numel_) {
    return engine_->Violation(absl::StrCat("Start of elements [", first, ", ",
                                           first + count, ") of ", numel_));
  }
  s.in_flight = true;
  s.first = first;
  s.count = count;
  // Whatever the slot held is gone from now on.
  std::fill(s.buffer.begin(), s.buffer.end(), '\xEE');
  return absl::OkStatus();
}

absl::StatusOr<const char*> FakeReader::Wait(int slot) {
  if (slot < 0 || slot >= slots()) {
    return engine_->Violation(
        absl::StrCat("Wait on slot ", slot, " of ", slots()));
  }
  Slot& s = slots_[slot];
  if (!s.in_flight) {
    return engine_->Violation(
        absl::StrCat("Wait on slot ", slot, " that is not in flight"));
  }
  // The "GPU" does the work now, as if it had been busy since Start.
  tensorcast::GatherCast(storage_, src_dtype_, layout_, s.first, s.count,
                         s.buffer.data(), out_dtype_);
  s.in_flight = false;
  return s.buffer.data();
}

// ---------------------------------------------------------------------------
// Test data.

// Values that exercise every cast: NaN, infinities, out-of-range for ints
// and float16, negative zero, float16 subnormals, rounding ties, and
// ordinary numbers.
double PatternValue(int64_t i) {
  switch (i % 16) {
    case 0:
      return std::numeric_limits<double>::quiet_NaN();
    case 1:
      return std::numeric_limits<double>::infinity();
    case 2:
      return -std::numeric_limits<double>::infinity();
    case 3:
      return 3e9;
    case 4:
      return -3e9;
    case 5:
      return 70000.0;  // past float16's max
    case 6:
      return 1e-6;  // a float16 subnormal
    case 7:
      return -0.0;
    case 8:
      return 255.5;
    case 9:
      return 256.0;
    case 10:
      return -1.0;
    case 11:
      return 0.0;
    default:
      return static_cast<double>(i % 1009) * 0.37 - 150.0;
  }
}

// Bytes of the C-order float64 (or complex128) literal with `n` pattern
// values.
std::string PatternLiteral(int64_t n, bool complex) {
  std::string out;
  if (complex) {
    std::vector<std::complex<double>> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      v[i] = {PatternValue(i), PatternValue(i * 7 + 3)};
    }
    out.assign(reinterpret_cast<const char*>(v.data()), v.size() * 16);
  } else {
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = PatternValue(i);
    out.assign(reinterpret_cast<const char*>(v.data()), v.size() * 8);
  }
  return out;
}

// Deterministic bytes of any kind (for uploads that are not cast).
std::string PatternBytes(int64_t n, uint32_t seed) {
  std::string out(static_cast<size_t>(n), '\0');
  uint32_t x = seed * 2654435761u + 12345u;
  for (int64_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    out[i] = static_cast<char>(x >> 24);
  }
  return out;
}

// Where two byte strings first differ, instead of printing megabytes.
::testing::AssertionResult SameBytes(const std::string& got,
                                     const std::string& want) {
  if (got == want) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < got.size() && i < want.size() && got[i] == want[i]) ++i;
  return ::testing::AssertionFailure()
         << "got " << got.size() << " bytes, want " << want.size()
         << "; first difference at byte " << i;
}

// Reverses each component (each element, each half of a complex) in place:
// a .npy big-endian file from native bytes, independently of npy.h.
std::string SwapComponents(std::string bytes, DType dtype) {
  size_t width = ItemSize(dtype);
  if (Kind(dtype) == DTypeKind::kComplex) width /= 2;
  for (size_t i = 0; i + width <= bytes.size(); i += width) {
    std::reverse(bytes.begin() + i, bytes.begin() + i + width);
  }
  return bytes;
}

// ---------------------------------------------------------------------------
// The fixture: cpu (the real host engine), cuda:0 and cuda:1 (fake GPUs).

class DevicePathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<std::unique_ptr<Device>> devices;
    devices.push_back(std::make_unique<Device>(
        "cpu", "host memory", std::make_unique<HostMemoryResource>(), 0,
        [](CachingPool*) { return NewHostEngine(); }));
    for (int i = 0; i < 2; ++i) {
      auto memory = std::make_unique<TrackingResource>();
      const TrackingResource* tracked = memory.get();
      FakeGpuEngine** engine = &gpu_[i];
      devices.push_back(std::make_unique<Device>(
          absl::StrCat("cuda:", i), "fake GPU over host memory",
          std::move(memory), 0,
          [tracked, engine](CachingPool*) -> std::unique_ptr<Engine> {
            auto e = std::make_unique<FakeGpuEngine>(tracked);
            *engine = e.get();
            return e;
          }));
    }
    registry_ = DeviceRegistry::FromDevices(std::move(devices),
                                            "two fake GPUs over host memory");
    ctx_ = ConversionContext{&store_, registry_.get(), 0, nullptr};
    ASSERT_EQ(registry_->all().size(), 3u);
    ASSERT_TRUE(registry_->cuda_available());
    ASSERT_TRUE(registry_->host()->engine().is_host());
    absl::StatusOr<Device*> d0 = registry_->Get("cuda:0");
    absl::StatusOr<Device*> d1 = registry_->Get("cuda:1");
    ASSERT_TRUE(d0.ok() && d1.ok());
    cuda0_ = *d0;
    cuda1_ = *d1;
    ASSERT_FALSE(cuda0_->engine().is_host());
    ASSERT_EQ(&cuda0_->engine(), gpu_[0]);
    ASSERT_EQ(&cuda1_->engine(), gpu_[1]);
  }

  void TearDown() override {
    for (int i = 0; i < 2; ++i) {
      if (gpu_[i] == nullptr) continue;
      EXPECT_EQ(gpu_[i]->violations(), 0)
          << "cuda:" << i << ": " << gpu_[i]->first_violation();
    }
  }

  int64_t Allocated(Device* d) { return d->pool().Stats().allocated_bytes; }

  void Drop(const TensorPtr& t) {
    ASSERT_TRUE(store_.Delete(std::vector<std::string>{t->handle}).ok());
  }

  // A contiguous tensor's bytes, read straight from memory (the fake GPU's
  // is host memory too).
  static std::string Bytes(const TensorPtr& t) {
    EXPECT_TRUE(t->layout.IsContiguous());
    const int64_t item = static_cast<int64_t>(ItemSize(t->dtype));
    return std::string(t->storage_bytes() + t->layout.offset * item,
                       static_cast<size_t>(t->nbytes()));
  }

  TensorPtr MustCreate(CreateSpec spec) {
    absl::StatusOr<TensorPtr> t = CreateTensor(ctx_, std::move(spec));
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : nullptr;
  }

  // src.to(device, dtype, copy=True).
  TensorPtr MustTo(const TensorPtr& src, const std::string& device,
                   DType dtype) {
    ToSpec spec;
    spec.device = device;
    spec.dtype = dtype;
    spec.copy = true;
    absl::StatusOr<TensorPtr> t = ToTensor(ctx_, src, spec);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return nullptr;
    EXPECT_EQ((*t)->device(), device);
    EXPECT_EQ((*t)->dtype, dtype);
    EXPECT_EQ((*t)->layout.shape, src->layout.shape);
    EXPECT_TRUE((*t)->layout.IsContiguous());
    return *t;
  }

  // A contiguous cpu tensor of pattern values, cast to dtype.
  TensorPtr HostPattern(DType dtype, const Shape& shape) {
    int64_t n = *NumElements(shape);
    CreateSpec spec;
    spec.dtype = dtype;
    spec.shape = shape;
    spec.init = CreateSpec::Init::kLiteral;
    spec.literal_dtype = Kind(dtype) == DTypeKind::kComplex ? DType::kComplex128
                                                            : DType::kFloat64;
    spec.literal_bytes =
        PatternLiteral(n, spec.literal_dtype == DType::kComplex128);
    return MustCreate(std::move(spec));
  }

  // A view of base's storage with another layout (same dtype).
  TensorPtr View(const TensorPtr& base, Layout layout) {
    NewTensor t;
    t.dtype = base->dtype;
    t.layout = std::move(layout);
    t.storage = base->storage;
    absl::StatusOr<TensorPtr> v = store_.Add(std::move(t));
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : nullptr;
  }

  struct NamedLayout {
    std::string name;
    Layout layout;
  };
  // Views of a contiguous {r, c} storage: itself, transposed, Fortran
  // strides, every other row with the columns reversed (a negative stride
  // and an offset), a broadcast row (stride 0), and a contiguous tail with
  // an offset. Only the first two when `few`.
  static std::vector<NamedLayout> Views(int64_t r, int64_t c, bool few) {
    std::vector<NamedLayout> out;
    out.push_back({"contiguous", Layout::Contiguous({r, c})});
    out.push_back({"transposed", Layout{{c, r}, {1, c}, 0}});
    if (few || r < 2 || c < 2) return out;
    out.push_back({"fortran", Layout{{r, c}, FortranStrides(Shape{r, c}), 0}});
    out.push_back(
        {"strided_reversed", Layout{{(r + 1) / 2, c - 1}, {2 * c, -1}, c - 1}});
    out.push_back({"broadcast", Layout{{3, c}, {0, 1}, c}});
    out.push_back({"tail", Layout{{r * c - 5}, {1}, 5}});
    return out;
  }

  // The same data on cpu and on cuda:0, contiguous; the cuda:0 copy comes
  // from an upload and is checked against the cpu one.
  struct Twins {
    TensorPtr cpu;
    TensorPtr gpu;
  };
  Twins MakeTwins(DType dtype, const Shape& shape) {
    Twins t;
    t.cpu = HostPattern(dtype, shape);
    if (t.cpu == nullptr) return t;
    t.gpu = MustTo(t.cpu, "cuda:0", dtype);
    if (t.gpu != nullptr) {
      EXPECT_TRUE(SameBytes(Bytes(t.gpu), Bytes(t.cpu)));
    }
    return t;
  }

  FakeGpuEngine* gpu_[2] = {nullptr, nullptr};
  Device* cuda0_ = nullptr;
  Device* cuda1_ = nullptr;
  // Declared before the store: the pools must outlive the tensors.
  std::unique_ptr<DeviceRegistry> registry_;
  TensorStore store_;
  ConversionContext ctx_{&store_, nullptr, 0, nullptr};
};

// ---------------------------------------------------------------------------
// CopyView / ToTensor.

class CopyViewTest : public DevicePathTest {
 protected:
  // Copies src_cpu (a cpu view) and src_gpu (the same view on cuda:0) to
  // out_dtype every way a GPU is involved, and compares each result with
  // the cpu -> cpu copy.
  void CheckEveryDirection(const TensorPtr& src_cpu, const TensorPtr& src_gpu,
                           DType out) {
    ASSERT_NE(src_cpu, nullptr);
    ASSERT_NE(src_gpu, nullptr);
    ASSERT_EQ(src_gpu->device(), "cuda:0");
    TensorPtr ref = MustTo(src_cpu, "cpu", out);
    ASSERT_NE(ref, nullptr);
    const std::string want = Bytes(ref);
    struct Direction {
      const char* name;
      const TensorPtr& src;
      const char* device;
    };
    for (const Direction& d :
         {Direction{"cpu->cuda:0", src_cpu, "cuda:0"},
          Direction{"cuda:0->cpu", src_gpu, "cpu"},
          Direction{"cuda:0->cuda:1", src_gpu, "cuda:1"},
          Direction{"cuda:0->cuda:0", src_gpu, "cuda:0"}}) {
      SCOPED_TRACE(d.name);
      TensorPtr got = MustTo(d.src, d.device, out);
      ASSERT_NE(got, nullptr);
      EXPECT_TRUE(SameBytes(Bytes(got), want));
      Drop(got);
    }
    Drop(ref);
  }

  void CheckViews(DType from, DType to, const Shape& shape, bool few_views) {
    Twins base = MakeTwins(from, shape);
    ASSERT_NE(base.gpu, nullptr);
    if (shape.size() != 2) {
      CheckEveryDirection(base.cpu, base.gpu, to);
      return;
    }
    for (const NamedLayout& v : Views(shape[0], shape[1], few_views)) {
      SCOPED_TRACE(v.name);
      TensorPtr cpu_view = View(base.cpu, v.layout);
      TensorPtr gpu_view = View(base.gpu, v.layout);
      CheckEveryDirection(cpu_view, gpu_view, to);
      Drop(cpu_view);
      Drop(gpu_view);
    }
    Drop(base.cpu);
    Drop(base.gpu);
  }
};

TEST_F(CopyViewTest, EveryDirectionMatchesHostForEveryDTypePairAndView) {
  const std::pair<DType, DType> pairs[] = {
      {DType::kFloat32, DType::kFloat16},
      {DType::kFloat64, DType::kInt32},
      {DType::kUInt8, DType::kFloat32},
      {DType::kComplex64, DType::kComplex128},
      {DType::kBool, DType::kFloat32},
      {DType::kFloat32, DType::kFloat32},
      {DType::kInt64, DType::kUInt8},
      {DType::kFloat16, DType::kFloat64},
      {DType::kComplex128, DType::kFloat32},
      {DType::kBFloat16, DType::kInt16},
      {DType::kFloat64, DType::kBool},
  };
  const Shape shapes[] = {{}, {0, 5}, {5, 0}, {1, 1}, {3, 5}, {37, 41}};
  for (const auto& [from, to] : pairs) {
    for (const Shape& shape : shapes) {
      SCOPED_TRACE(absl::StrCat(DTypeName(from), " -> ", DTypeName(to), " ",
                                ShapeToString(shape)));
      CheckViews(from, to, shape, /*few_views=*/false);
    }
  }
}

TEST_F(CopyViewTest, BigCopiesSpanSeveralTransferChunks) {
  // uint8 -> float32: 11.4 MB out, 3 chunks of 4 MiB (the last partial).
  // float64 plain: 13.5 MB, 4 chunks. float32 -> float16 transposed.
  struct Case {
    DType from, to;
    Shape shape;
  };
  for (const Case& c : {Case{DType::kUInt8, DType::kFloat32, {1500, 1900}},
                        Case{DType::kFloat64, DType::kFloat64, {1300, 1300}},
                        Case{DType::kFloat32, DType::kFloat16, {1031, 2047}}}) {
    SCOPED_TRACE(absl::StrCat(DTypeName(c.from), " -> ", DTypeName(c.to), " ",
                              ShapeToString(c.shape)));
    const int64_t numel = c.shape[0] * c.shape[1];
    const int64_t item = static_cast<int64_t>(ItemSize(c.to));
    const int64_t per_chunk = kTransferChunkBytes / item;
    const int64_t chunks = (numel + per_chunk - 1) / per_chunk;
    const int64_t starts0 = gpu_[0]->reader_starts();
    const int64_t pieces1 = gpu_[1]->upload_pieces();
    CheckViews(c.from, c.to, c.shape, /*few_views=*/true);
    // Per view, cuda:0 is read three times (to cpu, to cuda:1, and -- not
    // through a reader -- to itself): two full pumps of `chunks` chunks.
    EXPECT_EQ(gpu_[0]->reader_starts() - starts0, 2 * 2 * chunks);
    // cuda:1 received each chunk as its own upload, in many pieces.
    EXPECT_GT(gpu_[1]->upload_pieces() - pieces1, 2 * chunks);
  }
}

TEST_F(CopyViewTest, ToSameDeviceWithoutChangeIsSelf) {
  Twins t = MakeTwins(DType::kFloat32, {4, 4});
  ASSERT_NE(t.gpu, nullptr);
  ToSpec spec;
  spec.device = "cuda:0";
  absl::StatusOr<TensorPtr> same = ToTensor(ctx_, t.gpu, spec);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, t.gpu);
}

// ---------------------------------------------------------------------------
// CreateTensor.

TEST_F(DevicePathTest, CreateOnFakeGpuMatchesHost) {
  const DType dtypes[] = {
      DType::kBool,    DType::kUInt8,     DType::kInt8,      DType::kInt16,
      DType::kInt32,   DType::kInt64,     DType::kUInt16,    DType::kUInt32,
      DType::kUInt64,  DType::kFloat16,   DType::kBFloat16,  DType::kFloat32,
      DType::kFloat64, DType::kComplex64, DType::kComplex128};
  const Shape shapes[] = {{}, {0, 3}, {5, 7}, {257, 3}};
  using Init = CreateSpec::Init;
  for (DType dtype : dtypes) {
    for (const Shape& shape : shapes) {
      for (Init init : {Init::kZeros, Init::kOnes, Init::kFull, Init::kArange,
                        Init::kEye, Init::kRand, Init::kLiteral}) {
        if (init == Init::kEye && shape.size() != 2) continue;
        if (init == Init::kRand && !IsFloatingOrComplex(dtype)) continue;
        CreateSpec spec;
        spec.dtype = dtype;
        spec.shape = shape;
        spec.init = init;
        spec.value = -2.75;
        spec.start = -3.5;
        spec.step = 0.75;
        spec.seed = 42 + static_cast<int>(dtype);
        if (init == Init::kLiteral) {
          const bool complex = Kind(dtype) == DTypeKind::kComplex;
          spec.literal_dtype = complex ? DType::kComplex128 : DType::kFloat64;
          spec.literal_bytes = PatternLiteral(*NumElements(shape), complex);
        }
        SCOPED_TRACE(absl::StrCat(DTypeName(dtype), " ", ShapeToString(shape),
                                  " init ", static_cast<int>(init)));
        CreateSpec on_gpu = spec;
        on_gpu.device = "cuda:0";
        TensorPtr want = MustCreate(spec);
        TensorPtr got = MustCreate(on_gpu);
        ASSERT_NE(want, nullptr);
        ASSERT_NE(got, nullptr);
        EXPECT_EQ(got->device(), "cuda:0");
        EXPECT_EQ(got->layout.shape, shape);
        EXPECT_TRUE(SameBytes(Bytes(got), Bytes(want)));
        // And back through the reader path.
        TensorPtr back = MustTo(got, "cpu", dtype);
        ASSERT_NE(back, nullptr);
        EXPECT_TRUE(SameBytes(Bytes(back), Bytes(want)));
        Drop(want);
        Drop(got);
        Drop(back);
      }
    }
  }
}

TEST_F(DevicePathTest, CreateLiteralOfOtherLiteralDTypes) {
  // int64, uint64 and bool literals into several dtypes, many upload pieces.
  std::vector<int64_t> i64(1001);
  std::vector<uint64_t> u64(1001);
  std::string b(1001, '\0');
  for (int i = 0; i < 1001; ++i) {
    i64[i] = (int64_t{1} << (i % 63)) * (i % 2 ? -1 : 1) + i;
    u64[i] = ~uint64_t{0} - static_cast<uint64_t>(i) * 977;
    b[i] = static_cast<char>(i % 3 == 0);
  }
  struct Lit {
    DType dtype;
    std::string bytes;
  };
  const Lit lits[] = {
      {DType::kInt64,
       std::string(reinterpret_cast<const char*>(i64.data()), i64.size() * 8)},
      {DType::kUInt64,
       std::string(reinterpret_cast<const char*>(u64.data()), u64.size() * 8)},
      {DType::kBool, b}};
  for (const Lit& lit : lits) {
    for (DType dtype : {DType::kInt8, DType::kUInt32, DType::kFloat16,
                        DType::kFloat64, DType::kComplex64, DType::kBool}) {
      SCOPED_TRACE(
          absl::StrCat(DTypeName(lit.dtype), " literal -> ", DTypeName(dtype)));
      CreateSpec spec;
      spec.dtype = dtype;
      spec.shape = {7, 11, 13};
      spec.init = CreateSpec::Init::kLiteral;
      spec.literal_dtype = lit.dtype;
      spec.literal_bytes = lit.bytes;
      CreateSpec on_gpu = spec;
      on_gpu.device = "cuda:1";
      const int64_t pieces = gpu_[1]->upload_pieces();
      TensorPtr want = MustCreate(spec);
      TensorPtr got = MustCreate(on_gpu);
      ASSERT_NE(want, nullptr);
      ASSERT_NE(got, nullptr);
      EXPECT_TRUE(SameBytes(Bytes(got), Bytes(want)));
      EXPECT_EQ(gpu_[1]->upload_pieces() - pieces, (1001 + 2) / 3);
      Drop(want);
      Drop(got);
    }
  }
}

TEST_F(DevicePathTest, CreateRejectsBadFillsBeforeAllocating) {
  using Init = CreateSpec::Init;
  CreateSpec rand_int;
  rand_int.dtype = DType::kInt32;
  rand_int.shape = {4, 4};
  rand_int.init = Init::kRand;
  rand_int.device = "cuda:0";
  CreateSpec rand_bool = rand_int;
  rand_bool.dtype = DType::kBool;
  CreateSpec eye_1d;
  eye_1d.dtype = DType::kFloat32;
  eye_1d.shape = {5};
  eye_1d.init = Init::kEye;
  eye_1d.device = "cuda:0";
  CreateSpec eye_3d = eye_1d;
  eye_3d.shape = {2, 2, 2};
  CreateSpec short_literal = eye_1d;
  short_literal.init = Init::kLiteral;
  short_literal.literal_dtype = DType::kFloat64;
  short_literal.literal_bytes = std::string(4 * 8, '\0');  // 4 of 5 values
  for (const CreateSpec& spec :
       {rand_int, rand_bool, eye_1d, eye_3d, short_literal}) {
    SCOPED_TRACE(absl::StrCat(DTypeName(spec.dtype), " ",
                              ShapeToString(spec.shape), " init ",
                              static_cast<int>(spec.init)));
    absl::StatusOr<TensorPtr> t = CreateTensor(ctx_, spec);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument)
        << t.status();
    EXPECT_EQ(Allocated(cuda0_), 0);
    EXPECT_EQ(cuda0_->pool().Stats().alloc_count, 0);
    EXPECT_EQ(store_.size(), 0);
  }
  EXPECT_EQ(gpu_[0]->uploads(), 0);
}

// ---------------------------------------------------------------------------
// FetchStream.

class FetchStreamTest : public DevicePathTest {
 protected:
  // What FetchSource::Read gives for the whole range of the cpu twin.
  static std::string Reference(const TensorPtr& cpu, const FetchSpec& spec) {
    absl::StatusOr<FetchSource> src = FetchSource::Open(cpu, spec);
    EXPECT_TRUE(src.ok()) << src.status();
    if (!src.ok()) return "";
    std::string out(static_cast<size_t>(src->end() - src->begin()), '\0');
    src->Read(src->begin(), src->end() - src->begin(), out.data());
    return out;
  }

  // Streams `gpu` with chunk size `chunk` and checks every chunk's size,
  // done(), the number of chunks the reader produced, and the bytes.
  void CheckStream(const TensorPtr& gpu, const TensorPtr& cpu,
                   const FetchSpec& spec, int64_t chunk) {
    SCOPED_TRACE(absl::StrCat("offset ", spec.offset, " length ", spec.length,
                              " chunk ", chunk));
    const std::string want = Reference(cpu, spec);
    absl::StatusOr<FetchSource> src = FetchSource::Open(gpu, spec);
    ASSERT_TRUE(src.ok()) << src.status();
    const int64_t begin = src->begin();
    const int64_t end = src->end();
    const int64_t header = static_cast<int64_t>(src->header().size());
    const int64_t item = static_cast<int64_t>(ItemSize(src->out_dtype()));
    const int64_t starts = gpu_[0]->reader_starts();
    const int64_t readers = gpu_[0]->readers();
    absl::StatusOr<std::unique_ptr<FetchStream>> stream =
        FetchStream::Open(*std::move(src), chunk);
    ASSERT_TRUE(stream.ok()) << stream.status();
    EXPECT_EQ(gpu_[0]->readers() - readers, 1);
    EXPECT_LE(gpu_[0]->last_slot_elements(), chunk / item + 2);

    std::string got;
    std::string piece;
    int64_t data_chunks = 0;
    for (int64_t pos = begin; pos < end;) {
      ASSERT_FALSE((*stream)->done()) << "at " << pos << " of " << end;
      absl::Status s = (*stream)->Next(&piece);
      ASSERT_TRUE(s.ok()) << s;
      const int64_t n = std::min(chunk, end - pos);
      ASSERT_EQ(static_cast<int64_t>(piece.size()), n) << "at " << pos;
      if (pos + n > header) ++data_chunks;
      got += piece;
      pos += n;
    }
    EXPECT_TRUE((*stream)->done());
    EXPECT_TRUE(SameBytes(got, want));
    ++streams_checked_;
    // Each chunk with data was started exactly once, none past the end.
    EXPECT_EQ(gpu_[0]->reader_starts() - starts, data_chunks);
  }

  void CheckRanges(const TensorPtr& gpu, const TensorPtr& cpu, FetchSpec spec,
                   bool many_chunk_sizes) {
    absl::StatusOr<FetchSource> probe = FetchSource::Open(cpu, spec);
    ASSERT_TRUE(probe.ok()) << probe.status();
    const int64_t total = probe->total_bytes();
    const int64_t h = static_cast<int64_t>(probe->header().size());
    const std::pair<int64_t, int64_t> ranges[] = {
        {0, 0},                                // everything
        {3, 1000},                             // cuts an element at each end
        {h / 2, h / 4},                        // inside the header only
        {h / 2, 0},                            // from inside the header
        {std::max<int64_t>(0, h - 3), 10},     // across the header's end
        {h, 0},                                // the data exactly
        {h + 5, 37},                           // inside the data
        {std::max<int64_t>(0, total - 5), 0},  // the last bytes
        {total, 0},                            // nothing
    };
    std::vector<int64_t> chunks = {7, 4096};
    if (many_chunk_sizes) chunks = {1, 7, 64, 4096, total + 100};
    for (const auto& [offset, length] : ranges) {
      if (offset > total) continue;
      spec.offset = offset;
      spec.length = length;
      for (int64_t chunk : chunks) {
        CheckStream(gpu, cpu, spec, chunk);
        if (HasFatalFailure()) return;
      }
    }
  }

  int streams_checked_ = 0;
};

TEST_F(FetchStreamTest, MatchesFetchSourceForEveryFormatCastRangeAndView) {
  Twins base = MakeTwins(DType::kFloat64, {13, 17});
  ASSERT_NE(base.gpu, nullptr);
  for (const NamedLayout& v : Views(13, 17, /*few=*/false)) {
    TensorPtr cpu = View(base.cpu, v.layout);
    TensorPtr gpu = View(base.gpu, v.layout);
    ASSERT_NE(gpu, nullptr);
    for (WireFormat format : {WireFormat::kNpy, WireFormat::kRaw}) {
      for (std::optional<DType> cast :
           {std::optional<DType>(), std::optional<DType>(DType::kFloat32),
            std::optional<DType>(DType::kComplex128),
            std::optional<DType>(DType::kInt16)}) {
        SCOPED_TRACE(absl::StrCat(
            v.name, format == WireFormat::kNpy ? " npy" : " raw", " as ",
            cast.has_value() ? DTypeName(*cast) : "itself"));
        FetchSpec spec;
        spec.format = format;
        spec.dtype = cast;
        spec.cpu = true;
        // All chunk sizes for the plain and one cast case on two views.
        const bool many = (v.name == "contiguous" || v.name == "transposed") &&
                          (!cast.has_value() || *cast == DType::kComplex128);
        CheckRanges(gpu, cpu, spec, many);
        if (HasFatalFailure()) return;
      }
    }
  }
  // 6 views x 2 formats x 4 casts x 9 ranges, 5 chunk sizes for 8 of the
  // 48 combinations and 2 for the rest.
  EXPECT_EQ(streams_checked_, (8 * 5 + 40 * 2) * 9);
}

TEST_F(FetchStreamTest, ForceOpensAndDeviceIsRefusedWithout) {
  Twins t = MakeTwins(DType::kFloat32, {3, 3});
  ASSERT_NE(t.gpu, nullptr);
  FetchSpec plain;
  EXPECT_EQ(FetchSource::Open(t.gpu, plain).status().code(),
            absl::StatusCode::kFailedPrecondition);
  FetchSpec force;
  force.force = true;
  CheckStream(t.gpu, t.cpu, force, 5);
}

TEST_F(FetchStreamTest, EmptyAnd0dTensors) {
  for (const Shape& shape : {Shape{}, Shape{0}, Shape{4, 0, 3}}) {
    SCOPED_TRACE(ShapeToString(shape));
    Twins t = MakeTwins(DType::kComplex64, shape);
    ASSERT_NE(t.gpu, nullptr);
    for (WireFormat format : {WireFormat::kNpy, WireFormat::kRaw}) {
      FetchSpec spec;
      spec.format = format;
      spec.cpu = true;
      for (std::optional<DType> cast :
           {std::optional<DType>(), std::optional<DType>(DType::kUInt8)}) {
        spec.dtype = cast;
        for (int64_t chunk : {1, 3, 4096}) {
          CheckStream(t.gpu, t.cpu, spec, chunk);
        }
        // From inside the header, or inside the 0-d tensor's one element.
        spec.offset = format == WireFormat::kNpy ? 2 : (shape.empty() ? 1 : 0);
        CheckStream(t.gpu, t.cpu, spec, 3);
        spec.offset = 0;
      }
    }
  }
}

TEST_F(FetchStreamTest, BigTensorInBigChunks) {
  // 12 MB of float32 as .npy float16 and RAW float64 in 1 MiB chunks, from
  // a transposed view: many slot reuses with real sizes.
  Twins base = MakeTwins(DType::kFloat32, {1500, 2000});
  ASSERT_NE(base.gpu, nullptr);
  Layout transposed{{2000, 1500}, {1, 2000}, 0};
  TensorPtr cpu = View(base.cpu, transposed);
  TensorPtr gpu = View(base.gpu, transposed);
  FetchSpec npy;
  npy.cpu = true;
  npy.dtype = DType::kFloat16;
  CheckStream(gpu, cpu, npy, kMiB);
  FetchSpec raw;
  raw.format = WireFormat::kRaw;
  raw.cpu = true;
  raw.offset = 12345;
  raw.length = 7 * kMiB + 3;
  CheckStream(base.gpu, base.cpu, raw, kMiB + 1);
}

TEST_F(FetchStreamTest, DestroyedMidwayAndAfterTheEnd) {
  Twins t = MakeTwins(DType::kInt32, {64, 64});
  ASSERT_NE(t.gpu, nullptr);
  FetchSpec spec;
  spec.format = WireFormat::kRaw;
  spec.cpu = true;
  absl::StatusOr<FetchSource> src = FetchSource::Open(t.gpu, spec);
  ASSERT_TRUE(src.ok());
  absl::StatusOr<std::unique_ptr<FetchStream>> stream =
      FetchStream::Open(*std::move(src), 100);
  ASSERT_TRUE(stream.ok());
  std::string piece;
  ASSERT_TRUE((*stream)->Next(&piece).ok());
  ASSERT_TRUE((*stream)->Next(&piece).ok());
  EXPECT_FALSE((*stream)->done());
  stream->reset();  // two slots still in flight

  // Next after done() gives an empty chunk and starts nothing.
  src = FetchSource::Open(t.gpu, spec);
  ASSERT_TRUE(src.ok());
  stream = FetchStream::Open(*std::move(src), 1 << 20);
  ASSERT_TRUE(stream.ok());
  ASSERT_TRUE((*stream)->Next(&piece).ok());
  EXPECT_EQ(piece.size(), 64u * 64u * 4u);
  EXPECT_TRUE((*stream)->done());
  const int64_t starts = gpu_[0]->reader_starts();
  ASSERT_TRUE((*stream)->Next(&piece).ok());
  EXPECT_TRUE(piece.empty());
  EXPECT_EQ(gpu_[0]->reader_starts(), starts);
}

// A GPU stream hands out its pinned slots themselves: a chunk the consumer
// still holds must keep its bytes while later chunks are produced.
TEST_F(FetchStreamTest, HeldChunksKeepTheirBytes) {
  Twins t = MakeTwins(DType::kFloat32, {64, 1000});
  ASSERT_NE(t.gpu, nullptr);
  FetchSpec spec;
  spec.format = WireFormat::kRaw;
  spec.cpu = true;
  spec.dtype = DType::kFloat64;  // a cast, so the slots hold produced bytes
  const std::string want = Reference(t.cpu, spec);
  constexpr int64_t kChunk = 4096;
  for (int hold = 1; hold < FetchStream::kSlots; ++hold) {
    SCOPED_TRACE(absl::StrCat("holding ", hold));
    absl::StatusOr<FetchSource> src = FetchSource::Open(t.gpu, spec);
    ASSERT_TRUE(src.ok());
    absl::StatusOr<std::unique_ptr<FetchStream>> stream =
        FetchStream::Open(*std::move(src), kChunk);
    ASSERT_TRUE(stream.ok());
    std::deque<std::pair<int64_t, FetchChunk>> held;  // (offset, chunk)
    std::string got;
    auto release_oldest = [&] {
      const auto& [at, chunk] = held.front();
      // Still the bytes it had when handed out.
      EXPECT_EQ(std::string(chunk.data, chunk.size),
                want.substr(static_cast<size_t>(at), chunk.size))
          << "chunk at " << at;
      held.pop_front();
    };
    int64_t at = 0;
    while (!(*stream)->done()) {
      FetchChunk chunk;
      absl::Status s = (*stream)->NextChunk(&chunk);
      ASSERT_TRUE(s.ok()) << s;
      got.append(chunk.data, static_cast<size_t>(chunk.size));
      held.emplace_back(at, std::move(chunk));
      at += held.back().second.size;
      if (static_cast<int>(held.size()) > hold - 1) release_oldest();
    }
    while (!held.empty()) release_oldest();
    EXPECT_TRUE(SameBytes(got, want));
  }
}

// Holding every slot: the stream waits for a release (here from another
// thread) instead of overwriting a held chunk, and gives up with
// RESOURCE_EXHAUSTED when none comes.
TEST_F(FetchStreamTest, AllSlotsHeldWaitsForARelease) {
  Twins t = MakeTwins(DType::kInt32, {64, 1000});
  ASSERT_NE(t.gpu, nullptr);
  FetchSpec spec;
  spec.format = WireFormat::kRaw;
  spec.cpu = true;
  const std::string want = Reference(t.cpu, spec);
  constexpr int64_t kChunk = 4096;
  for (bool release : {true, false}) {
    SCOPED_TRACE(release ? "released" : "never released");
    absl::StatusOr<FetchSource> src = FetchSource::Open(t.gpu, spec);
    ASSERT_TRUE(src.ok());
    absl::StatusOr<std::unique_ptr<FetchStream>> stream =
        FetchStream::Open(*std::move(src), kChunk);
    ASSERT_TRUE(stream.ok());
    std::vector<FetchChunk> held(FetchStream::kSlots);
    for (FetchChunk& chunk : held) {
      ASSERT_TRUE((*stream)->NextChunk(&chunk).ok());
    }
    const std::string first(held[0].data, held[0].size);
    std::thread releaser;
    if (release) {
      releaser = std::thread([&held] {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        held[0].keepalive.reset();
      });
    }
    FetchChunk next;
    absl::Status s = (*stream)->NextChunk(&next);
    if (releaser.joinable()) releaser.join();
    if (release) {
      ASSERT_TRUE(s.ok()) << s;
      EXPECT_EQ(std::string(next.data, next.size),
                want.substr(FetchStream::kSlots * kChunk, kChunk));
      EXPECT_EQ(first, want.substr(0, kChunk));
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
      // The held chunks kept their bytes.
      for (int k = 0; k < FetchStream::kSlots; ++k) {
        EXPECT_EQ(std::string(held[k].data, held[k].size),
                  want.substr(k * kChunk, kChunk));
      }
    }
  }
}

TEST_F(FetchStreamTest, ChunkSizeMustBePositive) {
  Twins t = MakeTwins(DType::kInt32, {2});
  ASSERT_NE(t.gpu, nullptr);
  FetchSpec spec;
  spec.cpu = true;
  absl::StatusOr<FetchSource> src = FetchSource::Open(t.gpu, spec);
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(FetchStream::Open(*std::move(src), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A GPU stream pays before its reader is made: its slots (pinned, plus as
// much device scratch when it casts) to the tenant's quota, its pinned
// slots from the staging budget. One the budget cannot take waits a moment
// and is RESOURCE_EXHAUSTED naming the flag; everything comes back once the
// last chunk handed out is released.
TEST_F(FetchStreamTest, GpuStreamsAreChargedAndBoundedByTheStagingBudget) {
  Twins t = MakeTwins(DType::kFloat32, {1000, 64});
  ASSERT_NE(t.gpu, nullptr);
  auto tenant = std::make_shared<Tenant>("alice", TenantLimits{});
  FetchSpec cast;
  cast.format = WireFormat::kRaw;
  cast.cpu = true;
  cast.dtype = DType::kFloat64;
  constexpr int64_t kChunk = 64 << 10;
  const int64_t pinned = FetchStream::kSlots * (kChunk / 8 + 2) * 8;
  StagingBudget budget(2 * pinned + pinned / 2);  // two streams, not three
  const StreamBudget pay{tenant, &budget};
  auto open = [&](const FetchSpec& spec) {
    absl::StatusOr<FetchSource> src = FetchSource::Open(t.gpu, spec);
    EXPECT_TRUE(src.ok()) << src.status();
    return FetchStream::Open(*std::move(src), kChunk, pay);
  };
  absl::StatusOr<std::unique_ptr<FetchStream>> a = open(cast);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(budget.reserved(), pinned);
  EXPECT_EQ(tenant->bytes(), 2 * pinned);  // a cast: scratch too
  absl::StatusOr<std::unique_ptr<FetchStream>> b = open(cast);
  ASSERT_TRUE(b.ok()) << b.status();
  const int64_t readers = gpu_[0]->readers();
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<FetchStream>> c = open(cast);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted)
      << c.status();
  EXPECT_NE(c.status().message().find("--max-staging-bytes"), std::string::npos)
      << c.status();
  // It waited for room, briefly, and made no reader.
  EXPECT_GE(std::chrono::steady_clock::now() - start,
            std::chrono::milliseconds(400));
  EXPECT_EQ(gpu_[0]->readers(), readers);
  EXPECT_EQ(budget.reserved(), 2 * pinned);
  EXPECT_EQ(tenant->bytes(), 4 * pinned);

  // A chunk still held keeps a's slots (and their charge) after a is gone.
  FetchChunk held;
  ASSERT_TRUE((*a)->NextChunk(&held).ok());
  a->reset();
  EXPECT_EQ(budget.reserved(), 2 * pinned);
  // A stream that waits gets the room a release makes meanwhile.
  std::thread releaser([&held] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    held.keepalive.reset();
  });
  c = open(cast);
  releaser.join();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(budget.reserved(), 2 * pinned);
  std::string got, piece;
  while (!(*c)->done()) {
    ASSERT_TRUE((*c)->Next(&piece).ok());
    got += piece;
  }
  EXPECT_TRUE(SameBytes(got, Reference(t.cpu, cast)));
  c->reset();
  b->reset();
  EXPECT_EQ(budget.reserved(), 0);
  EXPECT_EQ(tenant->bytes(), 0);

  // No cast, contiguous: the reader copies the storage as it lies, so only
  // its pinned slots are charged.
  FetchSpec plain = cast;
  plain.dtype.reset();
  const int64_t plain_pinned = FetchStream::kSlots * (kChunk / 4 + 2) * 4;
  absl::StatusOr<std::unique_ptr<FetchStream>> d = open(plain);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(tenant->bytes(), plain_pinned);
  EXPECT_EQ(budget.reserved(), plain_pinned);
  d->reset();
  EXPECT_EQ(tenant->bytes(), 0);
}

// Over the tenant's quota, a GPU stream is refused before it reserves
// staging or makes a reader.
TEST_F(FetchStreamTest, GpuStreamOverTheQuotaIsRefusedBeforeItsReader) {
  Twins t = MakeTwins(DType::kFloat32, {1000, 64});
  ASSERT_NE(t.gpu, nullptr);
  constexpr int64_t kChunk = 64 << 10;
  const int64_t pinned = FetchStream::kSlots * (kChunk / 8 + 2) * 8;
  // Room for the pinned slots, not for the scratch a cast needs as well.
  auto tenant =
      std::make_shared<Tenant>("alice", TenantLimits{pinned + 1000, 0, 0});
  StagingBudget budget(0);
  FetchSpec cast;
  cast.format = WireFormat::kRaw;
  cast.cpu = true;
  cast.dtype = DType::kFloat64;
  absl::StatusOr<FetchSource> src = FetchSource::Open(t.gpu, cast);
  ASSERT_TRUE(src.ok());
  const int64_t readers = gpu_[0]->readers();
  absl::StatusOr<std::unique_ptr<FetchStream>> s =
      FetchStream::Open(*std::move(src), kChunk, {tenant, &budget});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted)
      << s.status();
  EXPECT_NE(s.status().message().find("quota"), std::string::npos)
      << s.status();
  EXPECT_EQ(gpu_[0]->readers(), readers);
  EXPECT_EQ(budget.reserved(), 0);
  EXPECT_EQ(tenant->bytes(), 0);
}

// ---------------------------------------------------------------------------
// PutSink.

class PutSinkDeviceTest : public DevicePathTest {
 protected:
  static absl::Status WriteInPieces(PutSink& sink, const std::string& bytes,
                                    size_t piece) {
    for (size_t pos = 0; pos < bytes.size(); pos += piece) {
      absl::Status s = sink.Write(absl::string_view(bytes).substr(pos, piece));
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Uploads `bytes` with `spec` to cpu and to cuda:0 in pieces of `piece`
  // bytes; checks the two tensors have the same dtype, layout and storage
  // bytes, and returns the cuda:0 one.
  TensorPtr PutBoth(PutSpec spec, const std::string& bytes, size_t piece) {
    TensorPtr result[2];
    for (int i = 0; i < 2; ++i) {
      spec.device = i == 0 ? "cpu" : "cuda:0";
      absl::StatusOr<std::unique_ptr<PutSink>> sink =
          PutSink::Start(ctx_, spec);
      EXPECT_TRUE(sink.ok()) << sink.status();
      if (!sink.ok()) return nullptr;
      absl::Status s = WriteInPieces(**sink, bytes, piece);
      EXPECT_TRUE(s.ok()) << s;
      absl::StatusOr<TensorPtr> t = (*sink)->Finish();
      EXPECT_TRUE(t.ok()) << t.status();
      if (!t.ok()) return nullptr;
      result[i] = *t;
    }
    EXPECT_EQ(result[1]->device(), "cuda:0");
    EXPECT_EQ(result[1]->dtype, result[0]->dtype);
    EXPECT_EQ(result[1]->layout.shape, result[0]->layout.shape);
    EXPECT_EQ(result[1]->layout.strides, result[0]->layout.strides);
    EXPECT_EQ(result[1]->layout.offset, result[0]->layout.offset);
    EXPECT_TRUE(SameBytes(
        std::string(result[1]->storage_bytes(), result[1]->nbytes()),
        std::string(result[0]->storage_bytes(), result[0]->nbytes())));
    // And the C-order RAW fetch of the cuda:0 tensor through a reader.
    FetchSpec raw;
    raw.format = WireFormat::kRaw;
    raw.cpu = true;
    absl::StatusOr<FetchSource> src = FetchSource::Open(result[1], raw);
    EXPECT_TRUE(src.ok());
    if (src.ok()) {
      const std::string want = [&] {
        absl::StatusOr<FetchSource> ref = FetchSource::Open(result[0], raw);
        std::string out(static_cast<size_t>(ref->total_bytes()), '\0');
        ref->Read(0, ref->total_bytes(), out.data());
        return out;
      }();
      absl::StatusOr<std::unique_ptr<FetchStream>> stream =
          FetchStream::Open(*std::move(src), kMiB);
      EXPECT_TRUE(stream.ok());
      std::string got, piece_out;
      while (stream.ok() && !(*stream)->done()) {
        absl::Status s = (*stream)->Next(&piece_out);
        EXPECT_TRUE(s.ok()) << s;
        if (!s.ok()) break;
        got += piece_out;
      }
      EXPECT_TRUE(SameBytes(got, want));
    }
    Drop(result[0]);
    return result[1];
  }

  static std::string NpyFile(DType dtype, const Shape& shape, bool fortran,
                             bool big_endian, const std::string& native) {
    std::string header = *EncodeNpyHeader(dtype, shape, fortran);
    if (big_endian) {
      std::string le(GetDTypeInfo(dtype).npy_descr);
      std::string be = le;
      be[0] = '>';
      EXPECT_NE(header.find("'" + le + "'"), std::string::npos) << header;
      header = absl::StrReplaceAll(header, {{"'" + le + "'", "'" + be + "'"}});
      return header + SwapComponents(native, dtype);
    }
    return header + native;
  }
};

TEST_F(PutSinkDeviceTest, RawInOddPiecesMatchesHost) {
  struct Case {
    DType dtype;
    Shape shape;
    size_t piece;
  };
  const Case cases[] = {
      {DType::kInt32, {7, 9}, 1},
      {DType::kFloat64, {100}, 7},
      {DType::kComplex128, {3, 5}, 7},
      {DType::kUInt8, {0}, 1},
      {DType::kFloat16, {}, 1},
      // 12 MB in pieces of 5 MiB + 3: staging flushes mid-element, twice.
      {DType::kFloat32, {3 << 20}, static_cast<size_t>(5 * kMiB + 3)},
      // 9 MB of complex64, 5 MiB + 3 pieces: a partial 8-byte element.
      {DType::kComplex64, {1 << 20, 1}, static_cast<size_t>(5 * kMiB + 3)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(DTypeName(c.dtype), ShapeToString(c.shape),
                              " in pieces of ", c.piece));
    const int64_t nbytes = *NumBytes(c.shape, c.dtype);
    const std::string data =
        PatternBytes(nbytes, static_cast<uint32_t>(nbytes));
    PutSpec spec;
    spec.format = WireFormat::kRaw;
    spec.dtype = c.dtype;
    spec.shape = c.shape;
    spec.total_bytes = nbytes;
    const int64_t uploads = gpu_[0]->uploads();
    TensorPtr t = PutBoth(spec, data, c.piece);
    ASSERT_NE(t, nullptr);
    EXPECT_TRUE(SameBytes(Bytes(t), data));
    if (nbytes > 4 * kMiB) {  // flushed while writing, and at Finish
      EXPECT_GE(gpu_[0]->uploads() - uploads, 2);
    }
    Drop(t);
  }
  EXPECT_EQ(Allocated(cuda0_), 0);
}

// A GPU upload's host staging (4 MiB, or the tensor if smaller) is charged
// to the tenant with the storage, from Start to Finish, and never grows past
// it whatever the pieces' size.
TEST_F(PutSinkDeviceTest, HostStagingIsChargedToTheTenant) {
  const int64_t nbytes = 8 * kMiB;
  const std::string data = PatternBytes(nbytes, 7);
  PutSpec spec;
  spec.format = WireFormat::kRaw;
  spec.dtype = DType::kFloat32;
  spec.shape = {nbytes / 4};
  spec.total_bytes = nbytes;
  spec.device = "cuda:0";
  // Room for the storage, not for its staging too.
  ConversionContext ctx = ctx_;
  ctx.tenant =
      std::make_shared<Tenant>("alice", TenantLimits{nbytes + 2 * kMiB, 0, 0});
  absl::StatusOr<std::unique_ptr<PutSink>> refused = PutSink::Start(ctx, spec);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted)
      << refused.status();
  EXPECT_NE(refused.status().message().find("staging"), std::string::npos)
      << refused.status();
  EXPECT_EQ(ctx.tenant->bytes(), 0);
  EXPECT_EQ(Allocated(cuda0_), 0);

  ctx.tenant =
      std::make_shared<Tenant>("alice", TenantLimits{nbytes + 4 * kMiB, 0, 0});
  absl::StatusOr<std::unique_ptr<PutSink>> sink = PutSink::Start(ctx, spec);
  ASSERT_TRUE(sink.ok()) << sink.status();
  EXPECT_EQ(ctx.tenant->bytes(), nbytes + 4 * kMiB);
  const int64_t uploads = gpu_[0]->uploads();
  // Pieces bigger than the staging: uploaded 4 MiB at a time.
  ASSERT_TRUE(WriteInPieces(**sink, data, 5 * kMiB + 3).ok());
  EXPECT_EQ(gpu_[0]->uploads() - uploads, 2);
  absl::StatusOr<TensorPtr> t = (*sink)->Finish();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(ctx.tenant->bytes(), nbytes);
  EXPECT_TRUE(SameBytes(Bytes(*t), data));
  sink->reset();
  ASSERT_TRUE(
      store_.Delete(std::vector<std::string>{(*t)->handle}, ctx.tenant.get())
          .ok());
  t->reset();
  EXPECT_EQ(ctx.tenant->bytes(), 0);
}

TEST_F(PutSinkDeviceTest, NpyEndiannessAndOrderMatchHost) {
  struct Case {
    DType dtype;
    Shape shape;
    bool fortran;
    bool big_endian;
    size_t piece;
  };
  const Case cases[] = {
      {DType::kFloat32, {37, 41}, false, false, 7},
      {DType::kFloat32, {37, 41}, true, false, 64},
      {DType::kInt16, {37, 41}, true, true, 7},
      {DType::kFloat64, {13, 17}, false, true, 1},
      {DType::kComplex64, {13, 17}, true, true, 5},
      {DType::kComplex128, {9, 4}, false, true, 3},
      {DType::kUInt8, {10, 3}, false, false, 1},
      {DType::kBool, {10, 3}, true, false, 4},
      {DType::kInt64, {}, false, true, 3},
      {DType::kUInt32, {0, 4}, false, true, 1},
      // 5.6 MB of big-endian float64, Fortran order, in pieces of
      // 5 MiB + 3: the swap happens in two flushes split mid-element.
      {DType::kFloat64,
       {700, 1000},
       true,
       true,
       static_cast<size_t>(5 * kMiB + 3)},
      // And one big C-order big-endian int32 upload in 1 MiB + 1 pieces.
      {DType::kInt32, {3 << 20}, false, true, static_cast<size_t>(kMiB + 1)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat(DTypeName(c.dtype), ShapeToString(c.shape),
                              c.fortran ? " fortran" : " C",
                              c.big_endian ? " big-endian" : " little-endian",
                              " in pieces of ", c.piece));
    const int64_t nbytes = *NumBytes(c.shape, c.dtype);
    std::string native =
        PatternBytes(nbytes, static_cast<uint32_t>(nbytes + 1));
    if (c.dtype == DType::kBool) {
      for (char& ch : native) ch = static_cast<char>(ch & 1);
    }
    const std::string file =
        NpyFile(c.dtype, c.shape, c.fortran, c.big_endian, native);
    PutSpec spec;
    spec.format = WireFormat::kNpy;
    spec.total_bytes = static_cast<int64_t>(file.size());
    TensorPtr t = PutBoth(spec, file, c.piece);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, c.dtype);
    EXPECT_EQ(t->layout.strides,
              c.fortran ? FortranStrides(c.shape) : ContiguousStrides(c.shape));
    // Stored as it came, in native byte order.
    EXPECT_TRUE(SameBytes(std::string(t->storage_bytes(), nbytes), native));
    Drop(t);
  }
  EXPECT_EQ(Allocated(cuda0_), 0);
}

TEST_F(PutSinkDeviceTest, TruncatedUploadsFailAndFreeTheDevice) {
  struct Case {
    std::string name;
    PutSpec spec;
    std::string bytes;  // what arrives before the upload ends
  };
  std::vector<Case> cases;
  {
    PutSpec raw;
    raw.format = WireFormat::kRaw;
    raw.dtype = DType::kFloat32;
    raw.shape = {3 << 20};  // 12 MB
    cases.push_back(
        {"raw, 6 MiB + 1 of 12", raw, PatternBytes(6 * kMiB + 1, 1)});
    cases.push_back(
        {"raw, one byte short", raw, PatternBytes((12 << 20) - 1, 2)});
    cases.push_back({"raw, nothing", raw, ""});
  }
  {
    PutSpec npy;
    npy.format = WireFormat::kNpy;
    const std::string header =
        *EncodeNpyHeader(DType::kFloat64, Shape{700, 1000}, true);
    std::string be = absl::StrReplaceAll(header, {{"'<f8'", "'>f8'"}});
    cases.push_back({"npy, big-endian, 5 MiB + 3 of data", npy,
                     be + PatternBytes(5 * kMiB + 3, 3)});
    cases.push_back({"npy, inside the header", npy, be.substr(0, 40)});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    PutSpec spec = c.spec;
    spec.device = "cuda:0";
    absl::StatusOr<std::unique_ptr<PutSink>> sink = PutSink::Start(ctx_, spec);
    ASSERT_TRUE(sink.ok()) << sink.status();
    const size_t piece = 3 * kMiB + 1;
    for (size_t pos = 0; pos < c.bytes.size(); pos += piece) {
      ASSERT_TRUE(
          (*sink)->Write(absl::string_view(c.bytes).substr(pos, piece)).ok());
    }
    absl::StatusOr<TensorPtr> t = (*sink)->Finish();
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument)
        << t.status();
    EXPECT_EQ(store_.size(), 0);
    sink->reset();
    EXPECT_EQ(Allocated(cuda0_), 0);
  }
}

}  // namespace
}  // namespace tensorcast
