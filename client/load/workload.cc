#include "client/load/workload.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "client/load/gpu.h"
#include "common/dtype.h"
#include "common/size.h"

namespace tensorcast::load {

namespace {

DType CoreDType(v1::DType d) { return static_cast<DType>(d - 1); }

// Tensors made for a run outlive it by this much at most (duration mode).
constexpr int64_t kTtlMarginSeconds = 600;

}  // namespace

Workload::Workload(const LoadOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<Workload>> Workload::Setup(
    Client& control, const LoadOptions& options,
    const std::vector<std::string>& nodes) {
  std::unique_ptr<Workload> w(new Workload(options));
  for (const std::string& node : nodes) w->targets_.push_back({node, ""});
  if (w->targets_.empty()) w->targets_.push_back({"", ""});
  if (options.requests == 0) {
    w->ttl_seconds_ =
        (options.warmup_ns + options.duration_ns) / 1'000'000'000 +
        kTtlMarginSeconds;
  }
  const Mix& mix = options.mix;
  const auto uses = [&](RequestKind k) { return mix[static_cast<int>(k)] > 0; };
  w->to_target_ = options.to_dtype;
  if (w->to_target_ == v1::DTYPE_UNSPECIFIED) {
    w->to_target_ = options.dtype == v1::DTYPE_FLOAT16 ? v1::DTYPE_FLOAT32
                                                       : v1::DTYPE_FLOAT16;
  }
  w->fetch_.format = options.format;
  w->fetch_.dtype = options.to_dtype;
  if (uses(RequestKind::kPut)) {
    // Random bytes: a put must not be cheaper for being all zeros.
    w->payload_.resize(static_cast<size_t>(options.size_bytes));
    std::mt19937_64 rng(options.seed);
    for (size_t i = 0; i + 8 <= w->payload_.size(); i += 8) {
      const uint64_t v = rng();
      std::memcpy(&w->payload_[i], &v, 8);
    }
  }
  if (options.cuda_ipc()) {
    // Before anything is made: a build without CUDA, or no such GPU, is a
    // setup error, said once, not a failure of every request.
    if (absl::Status s = CheckGpu(options.cuda_ipc_device); !s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("--cuda-ipc=", options.cuda_ipc_device, ": ",
                                 s.message()));
    }
  }
  if (options.shared_memory || options.cuda_ipc()) {
    // Room for the largest fetch output (.npy header, any cast) and, apart
    // from it, the put payload.
    const int64_t out_item = static_cast<int64_t>(ItemSize(CoreDType(
        options.to_dtype == v1::DTYPE_UNSPECIFIED ? options.dtype
                                                  : options.to_dtype)));
    constexpr int64_t kHeaderRoom = 64 << 10;
    constexpr int64_t kAlign = 4096;
    w->put_offset_ =
        uses(RequestKind::kFetch)
            ? (options.elements() * out_item + kHeaderRoom + kAlign - 1) /
                  kAlign * kAlign
            : 0;
    w->region_bytes_ =
        w->put_offset_ + (uses(RequestKind::kPut) ? options.size_bytes : 0);
    // One region now, on the control connection: a server without
    // --shared-memory, or one that cannot open a CUDA IPC handle, says so
    // before anything is made on it.
    absl::StatusOr<Region> probe = w->OpenRegion(control);
    if (!probe.ok()) {
      return absl::Status(
          probe.status().code(),
          absl::StrCat(options.cuda_ipc()
                           ? absl::StrCat("--cuda-ipc: lending GPU ",
                                          options.cuda_ipc_device,
                                          "'s memory to the server: ")
                           : "opening shared memory: ",
                       probe.status().message()));
    }
  }
  if (uses(RequestKind::kFetch) || uses(RequestKind::kTo) ||
      uses(RequestKind::kInfo)) {
    v1::CreateRequest request;
    request.set_dtype(options.dtype);
    request.add_shape(options.elements());
    request.set_device(options.device);
    request.set_requires_grad(options.requires_grad);
    request.set_ttl_seconds(w->ttl_seconds_);
    if (IsFloatingOrComplex(CoreDType(options.dtype))) {
      request.set_rand_seed(options.seed);
    } else {
      request.mutable_ones();
    }
    for (Target& target : w->targets_) {
      request.set_name(absl::StrCat("tensorcast-load-", getpid(), "-",
                                    std::random_device()()));
      absl::StatusOr<v1::TensorInfo> info =
          control.Create(request, target.node);
      if (!info.ok()) {
        // What was made on the other nodes goes now, not at its TTL.
        (void)w->Teardown(control);
        return absl::Status(
            info.status().code(),
            absl::StrCat("creating the ", FormatSize(options.size_bytes),
                         " source tensor",
                         target.node.empty()
                             ? ""
                             : absl::StrCat(" on node '", target.node, "'"),
                         ": ", info.status().message()));
      }
      target.source = info->handle();
      // What Tensor.numpy() would refuse, fetched as users write it:
      // t.detach().cpu().numpy(), the conversions fused into the stream.
      if (!options.fetch_as_is) {
        w->fetch_.detach = info->requires_grad();
        w->fetch_.cpu = info->device() != "cpu";
      }
    }
  }
  return w;
}

absl::StatusOr<Workload::Region> Workload::OpenRegion(Client& client) const {
  Region region;
  if (options_.cuda_ipc()) {
    absl::StatusOr<std::unique_ptr<CudaIpcRegion>> device =
        CudaIpcRegion::Allocate(client, region_bytes_,
                                options_.cuda_ipc_device);
    if (!device.ok()) return device.status();
    region.device = *std::move(device);
    if (!payload_.empty()) {
      if (absl::Status s =
              CopyToGpu(options_.cuda_ipc_device,
                        static_cast<char*>(region.device->data()) + put_offset_,
                        payload_.data(), static_cast<int64_t>(payload_.size()));
          !s.ok()) {
        return s;
      }
    }
    return region;
  }
  absl::StatusOr<std::unique_ptr<SharedMemory>> host =
      SharedMemory::Open(client, region_bytes_);
  if (!host.ok()) return host.status();
  region.host = *std::move(host);
  if (!payload_.empty()) {
    std::memcpy(region.host->data() + put_offset_, payload_.data(),
                payload_.size());
  }
  return region;
}

absl::StatusOr<Workload::Region> Workload::TakeRegion(Client& client) const {
  {
    absl::MutexLock lock(&regions_mu_);
    std::vector<Region>& free = regions_[&client];
    if (!free.empty()) {
      Region region = std::move(free.back());
      free.pop_back();
      return region;
    }
  }
  return OpenRegion(client);
}

void Workload::GiveRegion(Client& client, Region region) const {
  absl::MutexLock lock(&regions_mu_);
  regions_[&client].push_back(std::move(region));
}

Outcome Workload::Issue(RequestKind kind, Client& client, int target,
                        const std::atomic<bool>& stop) const {
  const std::string& source = targets_[target].source;
  Outcome out;
  switch (kind) {
    case RequestKind::kFetch: {
      if (options_.shared_memory || options_.cuda_ipc()) {
        absl::StatusOr<Region> region = TakeRegion(client);
        if (!region.ok()) {
          out.status = region.status();
          break;
        }
        FetchOptions fetch = fetch_;
        fetch.shm_region = region->id();
        fetch.shm_offset = region->offset();
        absl::StatusOr<v1::FetchHeader> header = client.Fetch(
            source, fetch,
            [](absl::string_view) -> absl::Status { return absl::OkStatus(); });
        GiveRegion(client, *std::move(region));
        out.status = header.status();
        if (header.ok()) out.bytes = header->length();
        break;
      }
      int64_t received = 0;
      absl::StatusOr<v1::FetchHeader> header = client.Fetch(
          source, fetch_, [&](absl::string_view bytes) -> absl::Status {
            if (stop.load(std::memory_order_relaxed)) {
              return absl::CancelledError("interrupted");
            }
            received += static_cast<int64_t>(bytes.size());
            return absl::OkStatus();
          });
      out.status = header.status();
      if (header.ok()) out.bytes = received;
      break;
    }
    case RequestKind::kPut: {
      PutOptions put;
      put.format = v1::FORMAT_RAW;
      put.dtype = options_.dtype;
      put.shape = {options_.elements()};
      put.device = options_.device;
      put.requires_grad = options_.requires_grad;
      put.ttl_seconds = ttl_seconds_;
      put.node = targets_[target].node;
      const int64_t size = static_cast<int64_t>(payload_.size());
      absl::StatusOr<v1::TensorInfo> info;
      if (options_.shared_memory || options_.cuda_ipc()) {
        absl::StatusOr<Region> region = TakeRegion(client);
        if (!region.ok()) {
          out.status = region.status();
          break;
        }
        put.shm_region = region->id();
        put.shm_offset = region->offset() + put_offset_;
        put.shm_bytes = size;
        info = client.Put(put, nullptr, size);
        GiveRegion(client, *std::move(region));
      } else {
        size_t pos = 0;
        info = client.Put(
            put,
            [&](char* buffer, size_t n) -> absl::StatusOr<size_t> {
              if (stop.load(std::memory_order_relaxed)) {
                return absl::CancelledError("interrupted");
              }
              const size_t k = std::min(n, payload_.size() - pos);
              std::memcpy(buffer, payload_.data() + pos, k);
              pos += k;
              return k;
            },
            size);
      }
      out.status = info.status();
      if (info.ok()) {
        out.bytes = size;
        out.created = info->handle();
      }
      break;
    }
    case RequestKind::kTo: {
      v1::ToRequest request;
      request.set_ref(source);
      request.set_dtype(to_target_);
      request.set_ttl_seconds(ttl_seconds_);
      absl::StatusOr<v1::TensorInfo> info = client.To(request);
      out.status = info.status();
      if (info.ok() && info->handle() != source) out.created = info->handle();
      break;
    }
    case RequestKind::kInfo: {
      out.status = client.Info(source).status();
      break;
    }
  }
  return out;
}

void Workload::Discard(Client& client, const Outcome& outcome) {
  if (outcome.created.empty()) return;
  if (!client.Delete({outcome.created}).ok()) ++orphans_;
}

absl::Status Workload::Teardown(Client& control) {
  {
    absl::MutexLock lock(&regions_mu_);
    regions_.clear();  // ends their sessions while the connections are up
  }
  // One Delete per target: a node that fails leaves the others clean.
  absl::Status first;
  for (Target& target : targets_) {
    if (target.source.empty()) continue;
    absl::StatusOr<int> n = control.Delete({target.source});
    if (!n.ok()) {
      if (first.ok()) first = n.status();
      continue;
    }
    target.source.clear();
  }
  return first;
}

std::string Workload::source_handles() const {
  std::string out;
  for (const Target& target : targets_) {
    if (target.source.empty()) continue;
    absl::StrAppend(&out, out.empty() ? "" : ",", target.source);
  }
  return out;
}

std::string Workload::Describe() const {
  const LoadOptions& o = options_;
  const std::string tensor =
      absl::StrCat(FormatSize(o.size_bytes), " ", DTypeName(CoreDType(o.dtype)),
                   " [", o.elements(), "] on ", o.device,
                   o.requires_grad ? ", requires grad" : "");
  std::string out;
  for (int k = 0; k < kNumRequestKinds; ++k) {
    if (o.mix[k] == 0) continue;
    const RequestKind kind = static_cast<RequestKind>(k);
    std::string what;
    switch (kind) {
      case RequestKind::kFetch:
        what = absl::StrCat(
            "fetch as ", o.format == v1::FORMAT_RAW ? "raw" : "npy",
            o.to_dtype == v1::DTYPE_UNSPECIFIED
                ? ""
                : absl::StrCat(" cast to ", DTypeName(CoreDType(o.to_dtype))),
            fetch_.detach || fetch_.cpu
                ? absl::StrCat(" after ", fetch_.detach ? ".detach()" : "",
                               fetch_.cpu ? ".cpu()" : "")
                : "",
            o.fetch_as_is ? " as-is (as .numpy())" : "");
        break;
      case RequestKind::kPut:
        what = "put";
        break;
      case RequestKind::kTo:
        what = absl::StrCat("to ", DTypeName(CoreDType(to_target_)));
        break;
      case RequestKind::kInfo:
        what = "info";
        break;
    }
    if (o.scenario == "mixed") absl::StrAppend(&what, " x", o.mix[k]);
    absl::StrAppend(&out, out.empty() ? "" : ", ", what);
  }
  const std::string where =
      targets_.size() > 1 || !targets_[0].node.empty()
          ? absl::StrCat(", on each of ", targets_.size(), " node",
                         targets_.size() == 1 ? "" : "s")
          : "";
  const std::string via =
      o.cuda_ipc() ? absl::StrCat(" via CUDA IPC (GPU ", o.cuda_ipc_device, ")")
      : o.shared_memory ? " via shared memory"
                        : "";
  return absl::StrCat(out, via, " -- ", tensor, where);
}

}  // namespace tensorcast::load
