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
                    FetchStreamDecoder* out) {
  return out->Next(b, [&](absl::string_view piece) {
    data->append(piece.data(), piece.size());
    return absl::OkStatus();
  });
}

TEST(FetchDecoderTest, EverySplitPointGivesTheProtobufParse) {
  const v1::FetchResponse r = WithHeaderAndData(300);  // 2-byte length
  const std::string bytes = Serialized(r);
  for (size_t cut = 0; cut <= bytes.size(); ++cut) {
    std::string data;
    FetchStreamDecoder out;
    ASSERT_TRUE(Decode(Sliced(bytes, {cut}), &data, &out).ok()) << cut;
    EXPECT_EQ(data, r.data()) << cut;
    EXPECT_EQ(out.data_bytes(), static_cast<int64_t>(r.data().size()));
    ASSERT_TRUE(out.has_header());
    EXPECT_EQ(out.header().SerializeAsString(), r.header().SerializeAsString());
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
    FetchStreamDecoder out;
    ASSERT_TRUE(Decode(Sliced(bytes, cuts), &data, &out).ok());
    EXPECT_EQ(data, r.data());
  }
}

TEST(FetchDecoderTest, HeaderThenDataOnlyAndEmptyMessages) {
  FetchStreamDecoder out;
  std::string data;
  ASSERT_TRUE(Decode(Sliced("", {}), &data, &out).ok());
  EXPECT_FALSE(out.has_header());

  v1::FetchResponse header_only;
  header_only.mutable_header()->set_length(5);
  ASSERT_TRUE(Decode(Sliced(Serialized(header_only), {}), &data, &out).ok());
  EXPECT_TRUE(data.empty());
  EXPECT_EQ(out.data_bytes(), 0);
  ASSERT_TRUE(out.has_header());
  EXPECT_EQ(out.header().length(), 5);

  v1::FetchResponse data_only;
  data_only.set_data("xyz");
  ASSERT_TRUE(Decode(Sliced(Serialized(data_only), {1}), &data, &out).ok());
  ASSERT_TRUE(Decode(Sliced(Serialized(data_only), {}), &data, &out).ok());
  EXPECT_EQ(data, "xyzxyz");
  EXPECT_EQ(out.data_bytes(), 6);
  EXPECT_EQ(out.header().length(), 5);
}

TEST(FetchDecoderTest, HeaderAfterDataInOneMessageIsReadFirst) {
  // data = "ab", then header {length: 2}: the header is handled first.
  std::string bytes = {char(1 << 3 | 2), char(2), 'a', 'b'};
  v1::FetchResponse header_only;
  header_only.mutable_header()->set_length(2);
  bytes += Serialized(header_only);
  FetchStreamDecoder out;
  std::string data;
  bool had_header_at_data = false;
  ASSERT_TRUE(out.Next(Sliced(bytes, {3}),
                       [&](absl::string_view piece) {
                         had_header_at_data = out.has_header();
                         data.append(piece.data(), piece.size());
                         return absl::OkStatus();
                       })
                  .ok());
  EXPECT_TRUE(had_header_at_data);
  EXPECT_EQ(data, "ab");
  EXPECT_EQ(out.header().length(), 2);
}

TEST(FetchDecoderTest, DataBeforeTheHeaderOrASecondHeaderIsDataLoss) {
  v1::FetchResponse data_only;
  data_only.set_data("xyz");
  std::string data;
  FetchStreamDecoder first;
  absl::Status s = Decode(Sliced(Serialized(data_only), {}), &data, &first);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("before its header"), absl::string_view::npos);
  EXPECT_TRUE(data.empty());

  FetchStreamDecoder twice;
  const std::string bytes = Serialized(WithHeaderAndData(10));
  ASSERT_TRUE(Decode(Sliced(bytes, {}), &data, &twice).ok());
  s = Decode(Sliced(bytes, {}), &data, &twice);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("second header"), absl::string_view::npos);
}

TEST(CodecTest, PutDataPrefixAndDataParseAsAPutRequest) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{127}, size_t{128},
                   size_t{16384}, size_t{1} << 20}) {
    char prefix[codec::kMaxPutDataPrefixBytes];
    const size_t k = codec::PutDataPrefix(n, prefix);
    std::string bytes(prefix, k);
    bytes += std::string(n, 'q');
    v1::PutRequest r;
    ASSERT_TRUE(r.ParseFromString(bytes)) << n;
    EXPECT_EQ(r.data(), std::string(n, 'q')) << n;
  }
  char varint[codec::kMaxVarintBytes];
  EXPECT_EQ(codec::EncodeVarint(~uint64_t{0}, varint), codec::kMaxVarintBytes);
}

TEST(FetchDecoderTest, UnknownFieldsAreSkipped) {
  // field 9 varint 300, field 10 fixed64, field 11 fixed32, field 12 bytes,
  // then data = "ok", then a header (read first).
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
  v1::FetchResponse header_only;
  header_only.mutable_header()->set_length(2);
  bytes += Serialized(header_only);
  std::string data;
  FetchStreamDecoder out;
  ASSERT_TRUE(Decode(Sliced(bytes, {2, 9}), &data, &out).ok());
  EXPECT_EQ(data, "ok");
}

TEST(FetchDecoderTest, TruncatedOrGarbledIsDataLoss) {
  const std::string bytes = Serialized(WithHeaderAndData(1000));
  for (size_t n : {size_t{1}, size_t{10}, bytes.size() - 1}) {
    std::string data;
    FetchStreamDecoder out;
    absl::Status s = Decode(Sliced(bytes.substr(0, n), {}), &data, &out);
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << n << ": " << s;
  }
  std::string bad_wire_type = {char(1 << 3 | 7)};
  std::string data;
  FetchStreamDecoder out;
  EXPECT_EQ(Decode(Sliced(bad_wire_type, {}), &data, &out).code(),
            absl::StatusCode::kDataLoss);
}

TEST(FetchDecoderTest, ASinkErrorStopsAndIsReturned) {
  const std::string bytes = Serialized(WithHeaderAndData(1000));
  int calls = 0;
  FetchStreamDecoder out;
  absl::Status s =
      out.Next(Sliced(bytes, {20, 40, 60}), [&](absl::string_view) {
        ++calls;
        return absl::CancelledError("enough");
      });
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(calls, 1);
}

TEST(FetchDecoderTest, AHeaderCheckRunsBeforeAnyData) {
  const std::string bytes = Serialized(WithHeaderAndData(1000));
  int calls = 0;
  FetchStreamDecoder out;
  out.set_header_check([](const v1::FetchHeader& h) {
    return h.total_bytes() == 12345 ? absl::InvalidArgumentError("no")
                                    : absl::OkStatus();
  });
  absl::Status s = out.Next(Sliced(bytes, {}), [&](absl::string_view) {
    ++calls;
    return absl::OkStatus();
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(calls, 0);
}

}  // namespace
}  // namespace tensorcast
