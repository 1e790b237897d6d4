// Test-only: HostStoreTest, a gtest fixture with a cpu-only DeviceRegistry
// (real host pool), an empty TensorStore and a ConversionContext over both.
// Header-only; include it from *_test.cc files only.
#ifndef TENSORCAST_SERVER_STORE_STORE_TEST_UTIL_H_
#define TENSORCAST_SERVER_STORE_STORE_TEST_UTIL_H_

#include <cstdint>
#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"
#include "server/store/conversions.h"
#include "server/store/device.h"
#include "server/store/tensor_store.h"

namespace tensorcast::testing {

class HostStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { SetUpRegistry(0); }

  // Replaces the registry with one whose host pool holds at most
  // `limit_bytes` (0 = no limit) and points ctx_ at it.
  void SetUpRegistry(int64_t limit_bytes) {
    absl::StatusOr<std::unique_ptr<DeviceRegistry>> registry =
        DeviceRegistry::Create({"cpu", limit_bytes});
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
    ctx_ = ConversionContext{&store_, registry_.get(), 0, nullptr};
  }

  Device* host() { return registry_->host(); }
  // Bytes the host pool has handed out and not had back.
  int64_t Allocated() { return host()->pool().Stats().allocated_bytes; }

  // Declared before the store: tensors return storage to these pools when
  // the store is destroyed, so the pools must outlive it.
  std::unique_ptr<DeviceRegistry> registry_;
  TensorStore store_;
  ConversionContext ctx_{&store_, nullptr, 0, nullptr};
};

}  // namespace tensorcast::testing

#endif  // TENSORCAST_SERVER_STORE_STORE_TEST_UTIL_H_
