// A tensor over 2 GiB: it is streamed in chunks, never one message, both
// ways. Labelled `large` (skipped in the sanitizer pass, which would need
// several times the memory and time).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "tests/integration/harness.h"

namespace tensorcast::testing {
namespace {

constexpr int64_t kBytes = (int64_t{2} << 30) + (3 << 20);  // 2 GiB + 3 MiB

TEST(LargeTensorTest, CreateAndFetchOver2GiB) {
  ServerProcess server;
  v1::CreateRequest create;
  create.set_dtype(v1::DTYPE_UINT8);
  create.add_shape(kBytes);
  create.set_full(7);
  absl::StatusOr<v1::TensorInfo> t = server.client().Create(create);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->nbytes(), kBytes);
  FetchOptions raw;
  raw.format = v1::FORMAT_RAW;
  raw.chunk_bytes = 4 << 20;
  int64_t received = 0;
  bool all_sevens = true;
  absl::StatusOr<v1::FetchHeader> h =
      server.client().Fetch(t->handle(), raw, [&](absl::string_view b) {
        // Sample a few bytes of each chunk: checking all would dominate.
        all_sevens &= b.empty() ||
                      (b.front() == 7 && b.back() == 7 && b[b.size() / 2] == 7);
        received += static_cast<int64_t>(b.size());
        return absl::OkStatus();
      });
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(received, kBytes);
  EXPECT_TRUE(all_sevens);
  EXPECT_EQ(h->total_bytes(), kBytes);
  ASSERT_TRUE(server.client().Delete({t->handle()}).ok());
}

TEST(LargeTensorTest, PutOver2GiB) {
  ServerProcess server;
  PutOptions put;
  put.dtype = v1::DTYPE_UINT8;
  put.shape = {kBytes};
  int64_t sent = 0;
  absl::StatusOr<v1::TensorInfo> t = server.client().Put(
      put,
      [&](char* buffer, size_t size) -> absl::StatusOr<size_t> {
        size_t n = static_cast<size_t>(
            std::min<int64_t>(static_cast<int64_t>(size), kBytes - sent));
        std::memset(buffer, static_cast<int>((sent >> 20) & 0xff), n);
        sent += static_cast<int64_t>(n);
        return n;
      },
      kBytes);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->nbytes(), kBytes);
  // The last MiB holds the value written for it.
  FetchOptions tail;
  tail.format = v1::FORMAT_RAW;
  tail.offset = kBytes - 16;
  absl::StatusOr<std::string> end =
      server.client().FetchBytes(t->handle(), tail);
  ASSERT_TRUE(end.ok());
  EXPECT_EQ(*end,
            std::string(16, static_cast<char>(((kBytes - 1) >> 20) & 0xff)));
}

}  // namespace
}  // namespace tensorcast::testing
