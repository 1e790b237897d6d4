// CUDA IPC regions end to end, on a machine with a GPU: this process lends
// device memory (CudaIpcRegion) to the real tensorcast-server
// (--shared-memory --devices=auto) and Fetch writes into it, Put reads from
// it -- the same bytes the socket gives -- for a cpu tensor and a cuda:0
// one; the caller's own allocation lends as well; an allocation is lent
// once at a time; a closed region is gone. A GPU tensor goes device to
// device both ways (gathered and cast straight into the region, through a
// temporary and a peer copy for a range that cuts elements or another GPU),
// byte for byte what the socket gives, and a 1 GiB Fetch into a region is
// timed against a cudaMemcpy of the same bytes. Skips (ctest: skipped)
// without a CUDA device.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/cpp/cuda_ipc_region.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

absl::Status NoBytes(absl::string_view) { return absl::OkStatus(); }

// A .npy file (version 1.0) of rows x cols float32 `data`, in Fortran
// order: stored as it comes, a view with Fortran strides, so a Fetch of it
// gathers.
std::string FortranNpy(int64_t rows, int64_t cols, const std::string& data) {
  std::string dict =
      absl::StrCat("{'descr': '<f4', 'fortran_order': True, 'shape': (", rows,
                   ", ", cols, "), }");
  const size_t unpadded = 10 + dict.size() + 1;
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict.push_back('\n');
  std::string out("\x93NUMPY\x01\x00", 8);
  out.push_back(static_cast<char>(dict.size() & 0xff));
  out.push_back(static_cast<char>(dict.size() >> 8));
  return out + dict + data;
}

std::string FloatValues(int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    v[i] = static_cast<float>(i % 4099) * 0.125f - 200.0f;
  }
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

class CudaIpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      (void)cudaGetLastError();
      GTEST_SKIP() << "no CUDA device here";
    }
    server_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"--shared-memory", "--devices=auto"});
  }
  Client& client() { return server_->client(); }

  std::string Arange(int64_t n, const std::string& device) {
    v1::CreateRequest create;
    create.set_dtype(v1::DTYPE_FLOAT32);
    create.add_shape(n);
    create.mutable_arange()->set_step(1);
    create.set_device(device);
    absl::StatusOr<v1::TensorInfo> t = client().Create(create);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? t->handle() : "";
  }

  static std::string Download(const void* device, int64_t n) {
    std::string out(static_cast<size_t>(n), '\0');
    EXPECT_EQ(
        cudaMemcpy(out.data(), device, out.size(), cudaMemcpyDeviceToHost),
        cudaSuccess);
    return out;
  }

  std::unique_ptr<ServerProcess> server_;
};

TEST_F(CudaIpcTest, FetchAndPutThroughDeviceMemoryMatchTheSocket) {
  absl::StatusOr<std::unique_ptr<CudaIpcRegion>> r =
      CudaIpcRegion::Allocate(client(), 8 << 20, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->server_device().rfind("cuda:", 0), 0u)
      << (*r)->server_device();
  for (const std::string device : {"cpu", "cuda:0"}) {
    const std::string ref = Arange((3 << 20) / 4, device);
    for (v1::DType dtype : {v1::DTYPE_UNSPECIFIED, v1::DTYPE_FLOAT16}) {
      FetchOptions f;
      f.format = v1::FORMAT_RAW;
      f.dtype = dtype;
      absl::StatusOr<std::string> wire = client().FetchBytes(ref, f);
      ASSERT_TRUE(wire.ok()) << wire.status();
      ASSERT_EQ(cudaMemset((*r)->data(), 0, wire->size()), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      f.shm_region = (*r)->region();
      f.shm_offset = (*r)->offset();
      absl::StatusOr<v1::FetchHeader> h = client().Fetch(ref, f, NoBytes);
      ASSERT_TRUE(h.ok()) << h.status();
      EXPECT_EQ(h->length(), static_cast<int64_t>(wire->size()));
      // No synchronisation here: the bytes are in place when Fetch returns.
      EXPECT_EQ(Download((*r)->data(), h->length()), *wire) << device;
    }
  }
  // Put from the region: written and synchronised first.
  const int64_t n = 1 << 20;
  std::string bytes(static_cast<size_t>(n), '\0');
  for (int64_t i = 0; i < n; ++i) bytes[i] = static_cast<char>(i * 7);
  ASSERT_EQ(cudaMemcpy((*r)->data(), bytes.data(), bytes.size(),
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  for (const std::string device : {"cpu", "cuda:0"}) {
    PutOptions p;
    p.dtype = v1::DTYPE_UINT8;
    p.shape = {n};
    p.device = device;
    p.shm_region = (*r)->region();
    p.shm_offset = (*r)->offset();
    p.shm_bytes = n;
    absl::StatusOr<v1::TensorInfo> put = client().Put(p, nullptr, n);
    ASSERT_TRUE(put.ok()) << put.status();
    FetchOptions raw;
    raw.format = v1::FORMAT_RAW;
    absl::StatusOr<std::string> back = client().FetchBytes(put->handle(), raw);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, bytes) << device;
  }
  // Out of bounds: refused, nothing written.
  FetchOptions f;
  f.format = v1::FORMAT_RAW;
  f.shm_region = (*r)->region();
  f.shm_offset = 0;  // the header
  EXPECT_EQ(client().Fetch(Arange(16, "cpu"), f, NoBytes).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(CudaIpcTest, GpuTensorsMoveDeviceToDeviceByteForByte) {
  int gpus = 0;
  ASSERT_EQ(cudaGetDeviceCount(&gpus), cudaSuccess);
  // A cuda:0 tensor with Fortran strides: a Fetch gathers (and casts) it.
  const int64_t rows = 300, cols = 200;
  const std::string file = FortranNpy(rows, cols, FloatValues(rows * cols));
  PutOptions npy;
  npy.format = v1::FORMAT_NPY;
  npy.device = "cuda:0";
  absl::StatusOr<v1::TensorInfo> t = client().PutBuffer(npy, file);
  ASSERT_TRUE(t.ok()) << t.status();
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  absl::StatusOr<std::string> c_order = client().FetchBytes(t->handle(), raw);
  ASSERT_TRUE(c_order.ok()) << c_order.status();

  struct Case {
    std::string name;
    v1::Format format;
    v1::DType dtype;
    int64_t offset;  // the Fetch's byte range
    int64_t length;
    int64_t shift;  // from the region's offset(): 2 misaligns the elements
  };
  const std::vector<Case> cases = {
      {"raw", v1::FORMAT_RAW, v1::DTYPE_UNSPECIFIED, 0, 0, 0},
      {"raw as float16", v1::FORMAT_RAW, v1::DTYPE_FLOAT16, 0, 0, 0},
      {"raw as float64", v1::FORMAT_RAW, v1::DTYPE_FLOAT64, 0, 0, 0},
      {"raw as bfloat16, a range that cuts elements", v1::FORMAT_RAW,
       v1::DTYPE_BFLOAT16, 3, 1001, 0},
      {"npy", v1::FORMAT_NPY, v1::DTYPE_UNSPECIFIED, 0, 0, 0},
      {"npy as int32, misaligned", v1::FORMAT_NPY, v1::DTYPE_INT32, 0, 0, 2},
  };
  for (int device = 0; device < std::min(gpus, 2); ++device) {
    absl::StatusOr<std::unique_ptr<CudaIpcRegion>> r =
        CudaIpcRegion::Allocate(client(), 4 << 20, device);
    ASSERT_TRUE(r.ok()) << r.status();
    for (const Case& c : cases) {
      SCOPED_TRACE(absl::StrCat(c.name, ", region on GPU ", device));
      FetchOptions f;
      f.format = c.format;
      f.dtype = c.dtype;
      f.offset = c.offset;
      f.length = c.length;
      absl::StatusOr<std::string> wire = client().FetchBytes(t->handle(), f);
      ASSERT_TRUE(wire.ok()) << wire.status();
      ASSERT_EQ(cudaSetDevice(device), cudaSuccess);
      ASSERT_EQ(cudaMemset((*r)->data(), 0xAB, wire->size() + 8), cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      f.shm_region = (*r)->region();
      f.shm_offset = (*r)->offset() + c.shift;
      absl::StatusOr<v1::FetchHeader> h =
          client().Fetch(t->handle(), f, NoBytes);
      ASSERT_TRUE(h.ok()) << h.status();
      ASSERT_EQ(h->length(), static_cast<int64_t>(wire->size()));
      const std::string got =
          Download((*r)->data(), static_cast<int64_t>(wire->size()) + 8);
      EXPECT_EQ(got.substr(c.shift, wire->size()), *wire);
      // Nothing written outside the range.
      EXPECT_EQ(got.substr(0, c.shift), std::string(c.shift, '\xAB'));
      EXPECT_EQ(got.substr(c.shift + wire->size()),
                std::string(8 - c.shift, '\xAB'));
    }
    // Put from the region into cuda:0: the .npy file (its header read
    // through the host, its data device to device), then RAW bytes.
    ASSERT_EQ(cudaSetDevice(device), cudaSuccess);
    ASSERT_EQ(cudaMemcpy((*r)->data(), file.data(), file.size(),
                         cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    PutOptions p = npy;
    p.shm_region = (*r)->region();
    p.shm_offset = (*r)->offset();
    p.shm_bytes = static_cast<int64_t>(file.size());
    absl::StatusOr<v1::TensorInfo> put = client().Put(p, nullptr);
    ASSERT_TRUE(put.ok()) << put.status();
    absl::StatusOr<std::string> back = client().FetchBytes(put->handle(), raw);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, *c_order) << "npy Put from GPU " << device;
    PutOptions q;
    q.format = v1::FORMAT_RAW;
    q.dtype = v1::DTYPE_FLOAT32;
    q.shape = {rows * cols};
    q.device = "cuda:0";
    q.shm_region = (*r)->region();
    q.shm_offset = (*r)->offset() + 4;  // need not be aligned
    q.shm_bytes = rows * cols * 4;
    put = client().Put(q, nullptr);
    ASSERT_TRUE(put.ok()) << put.status();
    back = client().FetchBytes(put->handle(), raw);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, file.substr(4, rows * cols * 4))
        << "raw Put from GPU " << device;
  }
  if (gpus < 2) std::printf("one GPU here: the peer path was not run\n");
}

// The figure: a 1 GiB Fetch of a cuda:0 tensor into a region on
// cuda:0 against a cudaMemcpy (device to device) of the bytes it writes,
// medians of 5, interleaved. Goal: >= 0.8x, >= 0.7x with a cast; the check
// here is only that it is nowhere near a copy through host memory.
TEST_F(CudaIpcTest, OneGibFetchIntoARegionAgainstADeviceCopy) {
  constexpr int64_t kBytes = int64_t{1} << 30;
  const std::string ref = Arange(kBytes / 4, "cuda:0");
  ASSERT_FALSE(ref.empty());
  absl::StatusOr<std::unique_ptr<CudaIpcRegion>> r =
      CudaIpcRegion::Allocate(client(), kBytes, 0);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  void* src = nullptr;
  ASSERT_EQ(cudaMalloc(&src, kBytes), cudaSuccess);
  ASSERT_EQ(cudaMemset(src, 1, kBytes), cudaSuccess);
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  for (v1::DType dtype : {v1::DTYPE_UNSPECIFIED, v1::DTYPE_FLOAT16}) {
    const bool cast = dtype != v1::DTYPE_UNSPECIFIED;
    const int64_t out_bytes = cast ? kBytes / 2 : kBytes;
    FetchOptions f;
    f.format = v1::FORMAT_RAW;
    f.dtype = dtype;
    f.shm_region = (*r)->region();
    f.shm_offset = (*r)->offset();
    ASSERT_TRUE(client().Fetch(ref, f, NoBytes).ok());  // warm-up
    std::vector<double> fetch_s, copy_s;
    for (int i = 0; i < 5; ++i) {
      Clock::time_point t0 = Clock::now();
      absl::StatusOr<v1::FetchHeader> h = client().Fetch(ref, f, NoBytes);
      Clock::time_point t1 = Clock::now();
      ASSERT_TRUE(h.ok()) << h.status();
      ASSERT_EQ(h->length(), out_bytes);
      fetch_s.push_back(seconds(t0, t1));
      t0 = Clock::now();
      ASSERT_EQ(
          cudaMemcpy((*r)->data(), src, out_bytes, cudaMemcpyDeviceToDevice),
          cudaSuccess);
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      t1 = Clock::now();
      copy_s.push_back(seconds(t0, t1));
    }
    const double fetch = Median(fetch_s);
    const double copy = Median(copy_s);
    const double ratio = copy / fetch;
    std::printf(
        "1 GiB float32 on cuda:0 fetched %s into a CUDA IPC region: %.3f ms "
        "(%.0f GB/s of output); cudaMemcpy D2D of the same %lld bytes: "
        "%.3f ms; ratio %.2fx (goal >= %.1fx)\n",
        cast ? "as float16" : "as it is", fetch * 1e3, out_bytes / fetch / 1e9,
        static_cast<long long>(out_bytes), copy * 1e3, ratio, cast ? 0.7 : 0.8);
    RecordProperty(cast ? "ratio_float16" : "ratio", absl::StrCat(ratio));
    EXPECT_GT(ratio, 0.3) << "far below a device copy: staged through host?";
    // The bytes: both ends against the socket's.
    ASSERT_TRUE(client().Fetch(ref, f, NoBytes).ok());
    for (int64_t at : {int64_t{0}, out_bytes - 4096}) {
      FetchOptions w;
      w.format = v1::FORMAT_RAW;
      w.dtype = dtype;
      w.offset = at;
      w.length = 4096;
      absl::StatusOr<std::string> wire = client().FetchBytes(ref, w);
      ASSERT_TRUE(wire.ok()) << wire.status();
      EXPECT_EQ(Download(static_cast<char*>((*r)->data()) + at, 4096), *wire);
    }
  }
  EXPECT_EQ(cudaFree(src), cudaSuccess);
}

TEST_F(CudaIpcTest, TheCallersAllocationLendsOnceAtATime) {
  void* p = nullptr;
  const int64_t bytes = 4096 + (1 << 20);
  ASSERT_EQ(cudaMalloc(&p, bytes), cudaSuccess);
  {
    absl::StatusOr<std::unique_ptr<CudaIpcRegion>> r =
        CudaIpcRegion::Lend(client(), p, bytes);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ((*r)->data(), static_cast<char*>(p) + 4096);
    absl::StatusOr<std::unique_ptr<CudaIpcRegion>> again =
        CudaIpcRegion::Lend(client(), p, bytes);
    EXPECT_EQ(again.status().code(), absl::StatusCode::kNotFound)
        << again.status();
    FetchOptions f;
    f.format = v1::FORMAT_RAW;
    f.shm_region = (*r)->region();
    f.shm_offset = (*r)->offset();
    const std::string ref = Arange(1000, "cuda:0");
    absl::StatusOr<v1::FetchHeader> h = client().Fetch(ref, f, NoBytes);
    ASSERT_TRUE(h.ok()) << h.status();
    FetchOptions raw;
    raw.format = v1::FORMAT_RAW;
    absl::StatusOr<std::string> wire = client().FetchBytes(ref, raw);
    ASSERT_TRUE(wire.ok());
    EXPECT_EQ(Download((*r)->data(), 4000), *wire);
  }
  // Closed with its session: lent again (the server lets go at once or
  // shortly after).
  absl::StatusOr<std::unique_ptr<CudaIpcRegion>> later;
  for (int i = 0; i < 50; ++i) {
    later = CudaIpcRegion::Lend(client(), p, bytes);
    if (later.ok()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(later.ok()) << later.status();
  later = absl::UnknownError("released");
  EXPECT_EQ(cudaFree(p), cudaSuccess);
}

}  // namespace
}  // namespace tensorcast::testing
