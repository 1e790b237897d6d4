#include "client/cpp/fetch_decoder.h"

#include <grpcpp/support/slice.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace tensorcast {
namespace {

// The bytes of `message`, cut into slices at `cuts` (sorted offsets).
grpc::ByteBuffer Sliced(const std::string& bytes, std::vector<size_t> cuts) {
  std::vector<grpc::Slice> slices;
  size_t begin = 0;
  cuts.push_back(bytes.size());
  for (size_t end : cuts) {
    slices.emplace_back(bytes.data() + begin, end - begin);
    begin = end;
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

std::string Serialized(const v1::FetchResponse& response) {
  std::string bytes;
  EXPECT_TRUE(response.SerializeToString(&bytes));
  return bytes;
}

v1::FetchResponse WithHeaderAndData(size_t n) {
  v1::FetchResponse r;
  r.mutable_header()->set_total_bytes(12345);
  r.mutable_header()->mutable_tensor()->set_handle("abc");
  r.mutable_header()->mutable_tensor()->add_shape(7);
  std::string data(n, '\0');
  for (size_t i = 0; i < n; ++i) data[i] = static_cast<char>(i * 31 + 7);
  r.set_data(data);
  return r;
}

absl::Status Decode(const grpc::ByteBuffer& b, std::string* data,
                    DecodedFetchResponse* out) {
  return DecodeFetchResponse(
      b,
      [&](absl::string_view piece) {
        data->append(piece.data(), piece.size());
        return absl::OkStatus();
      },
      out);
}

TEST(FetchDecoderTest, EverySplitPointGivesTheProtobufParse) {
  const v1::FetchResponse r = WithHeaderAndData(300);  // 2-byte length
  const std::string bytes = Serialized(r);
  for (size_t cut = 0; cut <= bytes.size(); ++cut) {
    std::string data;
    DecodedFetchResponse out;
    ASSERT_TRUE(Decode(Sliced(bytes, {cut}), &data, &out).ok()) << cut;
    EXPECT_EQ(data, r.data()) << cut;
    EXPECT_EQ(out.data_bytes, static_cast<int64_t>(r.data().size()));
    ASSERT_TRUE(out.has_header);
    EXPECT_EQ(out.header.SerializeAsString(), r.header().SerializeAsString());
  }
}

TEST(FetchDecoderTest, ManySmallAndEmptySlices) {
  const v1::FetchResponse r = WithHeaderAndData(100000);
  const std::string bytes = Serialized(r);
  std::mt19937 rng(1);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<size_t> cuts;
    for (int i = 0; i < 50; ++i) cuts.push_back(rng() % (bytes.size() + 1));
    cuts.push_back(cuts.front());  // an empty slice
    std::sort(cuts.begin(), cuts.end());
    std::string data;
    DecodedFetchResponse out;
    ASSERT_TRUE(Decode(Sliced(bytes, cuts), &data, &out).ok());
    EXPECT_EQ(data, r.data());
  }
}

TEST(FetchDecoderTest, DataOnlyHeaderOnlyAndEmpty) {
  v1::FetchResponse data_only;
  data_only.set_data("xyz");
  std::string data;
  DecodedFetchResponse out;
  ASSERT_TRUE(Decode(Sliced(Serialized(data_only), {}), &data, &out).ok());
  EXPECT_EQ(data, "xyz");
  EXPECT_FALSE(out.has_header);

  v1::FetchResponse header_only;
  header_only.mutable_header()->set_length(5);
  data.clear();
  ASSERT_TRUE(Decode(Sliced(Serialized(header_only), {}), &data, &out).ok());
  EXPECT_TRUE(data.empty());
  EXPECT_EQ(out.data_bytes, 0);
  ASSERT_TRUE(out.has_header);
  EXPECT_EQ(out.header.length(), 5);

  ASSERT_TRUE(Decode(Sliced("", {}), &data, &out).ok());
  EXPECT_FALSE(out.has_header);
  EXPECT_EQ(out.data_bytes, 0);
}

TEST(FetchDecoderTest, UnknownFieldsAreSkipped) {
  // field 9 varint 300, field 10 fixed64, field 11 fixed32, field 12 bytes,
  // then data = "ok".
  std::string bytes = {char(9 << 3 | 0), char(0xac), char(0x02)};
  bytes += char(10 << 3 | 1);
  bytes += std::string(8, 'a');
  bytes += char(11 << 3 | 5);
  bytes += std::string(4, 'b');
  bytes += char(12 << 3 | 2);
  bytes += char(3);
  bytes += "zzz";
  bytes += char(1 << 3 | 2);
  bytes += char(2);
  bytes += "ok";
  std::string data;
  DecodedFetchResponse out;
  ASSERT_TRUE(Decode(Sliced(bytes, {2, 9}), &data, &out).ok());
  EXPECT_EQ(data, "ok");
}

TEST(FetchDecoderTest, TruncatedOrGarbledIsDataLoss) {
  const std::string bytes = Serialized(WithHeaderAndData(1000));
  for (size_t n : {size_t{1}, size_t{10}, bytes.size() - 1}) {
    std::string data;
    DecodedFetchResponse out;
    absl::Status s = Decode(Sliced(bytes.substr(0, n), {}), &data, &out);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << n << ": " << s;
  }
  std::string bad_wire_type = {char(1 << 3 | 7)};
  std::string data;
  DecodedFetchResponse out;
  EXPECT_EQ(Decode(Sliced(bad_wire_type, {}), &data, &out).code(),
            absl::StatusCode::kDataLoss);
}

TEST(FetchDecoderTest, ASinkErrorStopsAndIsReturned) {
  const std::string bytes = Serialized(WithHeaderAndData(1000));
  int calls = 0;
  DecodedFetchResponse out;
  absl::Status s = DecodeFetchResponse(
      Sliced(bytes, {20, 40, 60}),
      [&](absl::string_view) {
        ++calls;
        return absl::CancelledError("enough");
      },
      &out);
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 1);
}

}  // namespace
}  // namespace tensorcast
