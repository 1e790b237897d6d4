// CUDA IPC regions end to end, on a machine with a GPU: this process lends
// device memory (CudaIpcRegion) to the real tensorcast-server
// (--shared-memory --devices=auto) and Fetch writes into it, Put reads from
// it -- the same bytes the socket gives -- for a cpu tensor and a cuda:0
// one; the caller's own allocation lends as well; an allocation is lent
// once at a time; a closed region is gone. Skips (ctest: skipped) without
// a CUDA device.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/cpp/cuda_ipc_region.h"
#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

absl::Status NoBytes(absl::string_view) { return absl::OkStatus(); }

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
