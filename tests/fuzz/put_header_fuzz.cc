// Fuzzes what a Put's header and bytes go through before anything is stored,
// and the shape/stride math under it. The first byte picks the mode:
//
// even: a Put. A varint length and that many bytes of binary v1.PutHeader,
//   one byte of piece size (0: one piece), then the upload's bytes. The
//   header goes through PutSpecFromProto and PutSink as the Put reactor
//   does, on a cpu-only registry with a small pool. A stored tensor must be
//   what the header and bytes say, lie inside its storage and hold the bytes
//   sent; once the sink and tensor are gone, the pool has nothing allocated.
//
// odd: layout math. A rank byte, then shape and strides (zigzag varints),
//   offset, storage size and a dtype byte. NumElements, NumBytes and
//   CheckLayoutInBounds must agree with the same sums done in 128 bits; a
//   layout that validates addresses only elements inside the storage,
//   enumerated one by one when small, and Coalesced() visits the same
//   elements in the same order.
#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/npy.h"
#include "server/core/shape.h"
#include "server/service/proto_convert.h"
#include "server/store/conversions.h"
#include "server/store/device.h"
#include "server/store/put_sink.h"
#include "server/store/tensor_store.h"
#include "tensorcast/v1/tensor_service.pb.h"
#include "tests/fuzz/fuzz_input.h"
#include "tests/fuzz/fuzz_targets.h"

namespace tensorcast::fuzz {
namespace {

using int128 = __int128;
constexpr int128 kInt64Max = INT64_MAX;

// Small enough that the fuzzer meets both limits with small inputs.
constexpr int64_t kPoolLimitBytes = 512 << 10;
constexpr int64_t kMaxTensorBytes = 1 << 20;
// Layouts with at most this many elements are checked element by element.
constexpr int64_t kMaxEnumerated = 4096;

struct PutWorld {
  std::unique_ptr<DeviceRegistry> registry;
  std::unique_ptr<TensorStore> store;  // after the registry: goes first
  // Uploads belong to a tenant whose quota is below the largest tensor, so
  // the quota's refusals are fuzzed too.
  TenantPtr tenant = std::make_shared<Tenant>(
      "fuzz", TenantLimits{/*max_bytes=*/768 << 10, /*max_tensors=*/1, 0});
  ConversionContext ctx{nullptr, nullptr, 0, nullptr};
};

PutWorld& World() {
  static PutWorld* world = [] {
    auto* w = new PutWorld;
    absl::StatusOr<std::unique_ptr<DeviceRegistry>> registry =
        DeviceRegistry::Create({"cpu", kPoolLimitBytes});
    FUZZ_CHECK(registry.ok());
    w->registry = *std::move(registry);
    w->store = std::make_unique<TensorStore>();
    w->ctx = ConversionContext{w->store.get(), w->registry.get(),
                               kMaxTensorBytes, w->tenant};
    return w;
  }();
  return *world;
}

void CheckStored(const PutSpec& spec, absl::string_view bytes,
                 const Tensor& t) {
  const absl::StatusOr<int64_t> nbytes = NumBytes(t.layout.shape, t.dtype);
  FUZZ_CHECK(nbytes.ok());
  FUZZ_CHECK(t.nbytes() == *nbytes);
  FUZZ_CHECK(*nbytes <= kMaxTensorBytes);
  FUZZ_CHECK(t.requires_grad == spec.requires_grad);
  FUZZ_CHECK(t.name == spec.name);
  FUZZ_CHECK(t.device() == "cpu");
  if (spec.dtype.has_value()) {
    FUZZ_CHECK(t.dtype == *spec.dtype);
    FUZZ_CHECK(t.layout.shape == spec.shape);
  }
  if (spec.total_bytes > 0) {
    FUZZ_CHECK(spec.total_bytes == static_cast<int64_t>(bytes.size()));
  }
  const int64_t item = static_cast<int64_t>(ItemSize(t.dtype));
  FUZZ_CHECK(t.storage->nbytes() >= *nbytes);
  FUZZ_CHECK(CheckLayoutInBounds(t.layout, t.storage->nbytes() / item).ok());

  absl::string_view data = bytes;
  if (spec.format == WireFormat::kNpy) {
    auto header = ParseNpyHeader(bytes);
    FUZZ_CHECK(header.ok() && header->has_value());
    const NpyHeader& h = **header;
    FUZZ_CHECK(h.dtype == t.dtype && h.shape == t.layout.shape);
    FUZZ_CHECK(h.header_bytes + h.data_bytes ==
               static_cast<int64_t>(bytes.size()));
    if (h.byteswap) return;  // stored swapped: compared by npy_fuzz
    data = bytes.substr(h.header_bytes);
  }
  FUZZ_CHECK(static_cast<int64_t>(data.size()) == *nbytes);
  FUZZ_CHECK(data.empty() ||
             std::memcmp(t.storage_bytes(), data.data(), data.size()) == 0);
}

void FuzzPut(FuzzInput& in) {
  PutWorld& w = World();
  v1::PutHeader header;
  absl::string_view header_bytes = in.LengthPrefixed();
  // The reactor refuses what does not parse, before PutSpecFromProto.
  if (!header.ParseFromArray(header_bytes.data(),
                             static_cast<int>(header_bytes.size()))) {
    return;
  }
  const size_t piece = in.Byte();
  const absl::string_view bytes = in.Rest();

  absl::StatusOr<PutSpec> spec = PutSpecFromProto(header);
  if (spec.ok()) {
    absl::StatusOr<std::unique_ptr<PutSink>> sink =
        PutSink::Start(w.ctx, *spec);
    if (sink.ok()) {
      absl::Status written;
      for (size_t pos = 0; written.ok() && pos < bytes.size();) {
        const size_t n = piece == 0 ? bytes.size() : piece;
        written = (*sink)->Write(bytes.substr(pos, n));
        pos += n;
      }
      if (written.ok()) {
        FUZZ_CHECK((*sink)->received_bytes() ==
                   static_cast<int64_t>(bytes.size()));
        absl::StatusOr<TensorPtr> tensor = (*sink)->Finish();
        if (tensor.ok()) {
          CheckStored(*spec, bytes, **tensor);
          FUZZ_CHECK(w.store->size() == 1);
          const Tenant* owner = w.tenant.get();
          absl::StatusOr<TensorPtr> found =
              w.store->Get((*tensor)->handle, owner);
          FUZZ_CHECK(found.ok() && *found == *tensor);
          // Not another tenant's.
          FUZZ_CHECK(!w.store->Get((*tensor)->handle).ok());
          if (!spec->name.empty()) {
            found = w.store->Get(spec->name, owner);
            FUZZ_CHECK(found.ok() && *found == *tensor);
          }
          FUZZ_CHECK(w.tenant->bytes() >= (*tensor)->nbytes());
          const std::string handle = (*tensor)->handle;
          absl::StatusOr<int> deleted =
              w.store->Delete(std::span<const std::string>(&handle, 1), owner);
          FUZZ_CHECK(deleted.ok() && *deleted == 1);
        }
      }
    }
  }
  // Nothing stays stored or allocated by a finished or failed upload.
  FUZZ_CHECK(w.store->size() == 0);
  FUZZ_CHECK(w.registry->host()->pool().Stats().allocated_bytes == 0);
  FUZZ_CHECK(w.tenant->bytes() == 0 && w.tenant->tensors() == 0);
}

// NumElements as the contract states it, in 128 bits.
std::optional<int64_t> ExpectedElements(const Shape& shape) {
  if (shape.size() > kMaxRank) return std::nullopt;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
  }
  int128 nonzero = 1;
  bool zero = false;
  for (int64_t d : shape) {
    if (d == 0) {
      zero = true;
      continue;
    }
    nonzero *= d;
    if (nonzero > kInt64Max) return std::nullopt;
  }
  return zero ? 0 : static_cast<int64_t>(nonzero);
}

// Element offsets in C order (n > 0 elements, n small).
std::vector<int64_t> Offsets(const Layout& layout, int64_t n) {
  std::vector<int64_t> out;
  out.reserve(n);
  std::vector<int64_t> index(layout.shape.size(), 0);
  for (int64_t k = 0; k < n; ++k) {
    int64_t off = layout.offset;
    for (size_t i = 0; i < index.size(); ++i) {
      off += index[i] * layout.strides[i];
    }
    out.push_back(off);
    for (size_t i = index.size(); i-- > 0;) {
      if (++index[i] < layout.shape[i]) break;
      index[i] = 0;
    }
  }
  return out;
}

void FuzzLayout(FuzzInput& in) {
  const uint8_t r = in.Byte();
  const size_t rank = r < 192 ? r % 8 : (r - 192) + 8;  // 8..71: past 64
  Layout layout;
  for (size_t i = 0; i < rank; ++i) {
    layout.shape.push_back(in.Signed());
    layout.strides.push_back(in.Signed());
  }
  layout.offset = in.Signed();
  const int64_t storage = in.Signed();
  const uint8_t flags = in.Byte();
  const DType dtype = static_cast<DType>(flags % kNumDTypes);
  if ((flags & 0x80) && rank > 0) layout.strides.pop_back();

  const std::optional<int64_t> n = ExpectedElements(layout.shape);
  const absl::StatusOr<int64_t> got = NumElements(layout.shape);
  FUZZ_CHECK(got.ok() == n.has_value());
  if (n.has_value()) FUZZ_CHECK(*got == *n);

  const absl::StatusOr<int64_t> nbytes = NumBytes(layout.shape, dtype);
  const bool bytes_fit =
      n.has_value() && int128{*n} * int128(ItemSize(dtype)) <= kInt64Max;
  FUZZ_CHECK(nbytes.ok() == bytes_fit);
  if (bytes_fit) {
    FUZZ_CHECK(*nbytes == *n * static_cast<int64_t>(ItemSize(dtype)));
  }

  // The layouts a tensor of this shape is stored with.
  if (n.has_value()) {
    for (Layout dense : {Layout::Contiguous(layout.shape),
                         Layout{layout.shape, FortranStrides(layout.shape)}}) {
      FUZZ_CHECK(CheckLayoutInBounds(dense, *n).ok());
      if (*n > 0) FUZZ_CHECK(!CheckLayoutInBounds(dense, *n - 1).ok());
    }
    FUZZ_CHECK(Layout::Contiguous(layout.shape).IsContiguous());
  }

  // The bounds check against the exact lowest and highest element.
  bool expect_ok =
      layout.shape.size() == layout.strides.size() && n.has_value();
  if (expect_ok && *n > 0) {
    int128 lo = layout.offset, hi = layout.offset;
    for (size_t i = 0; i < layout.shape.size(); ++i) {
      const int128 extent =
          int128{layout.shape[i] - 1} * int128{layout.strides[i]};
      (extent < 0 ? lo : hi) += extent;
    }
    expect_ok = lo >= 0 && hi < storage;
  }
  const bool ok = CheckLayoutInBounds(layout, storage).ok();
  FUZZ_CHECK(ok == expect_ok);
  if (!ok) return;

  const Layout coalesced = layout.Coalesced();
  const bool contiguous = layout.IsContiguous();
  FUZZ_CHECK(coalesced.shape.size() == coalesced.strides.size());
  FUZZ_CHECK(coalesced.shape.size() <= layout.shape.size());
  FUZZ_CHECK(CheckLayoutInBounds(coalesced, storage).ok());
  if (*n == 0 || *n > kMaxEnumerated) return;
  for (int64_t d : coalesced.shape) FUZZ_CHECK(d > 1);
  const std::vector<int64_t> offsets = Offsets(layout, *n);
  for (int64_t off : offsets) FUZZ_CHECK(off >= 0 && off < storage);
  FUZZ_CHECK(Offsets(coalesced, *n) == offsets);
  bool dense = true;
  // offsets[k] - k, not offset + k: the offset may be near INT64_MAX.
  for (int64_t k = 0; k < *n; ++k) dense &= offsets[k] - k == layout.offset;
  FUZZ_CHECK(contiguous == dense);
  if (contiguous) {
    FUZZ_CHECK(coalesced.shape.size() <= 1);
    if (coalesced.shape.size() == 1) FUZZ_CHECK(coalesced.strides[0] == 1);
  }
}

}  // namespace

int FuzzPutHeader(const uint8_t* data, size_t size) {
  FuzzInput in(data, size);
  if (in.Byte() % 2 == 0) {
    FuzzPut(in);
  } else {
    FuzzLayout(in);
  }
  return 0;
}

}  // namespace tensorcast::fuzz
