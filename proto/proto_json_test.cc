#include "proto/proto_json.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "tensorcast/v1/tensor_service.pb.h"

namespace tensorcast {
namespace {

// Parsed back with protobuf's own JSON parser (which takes numbers for
// 64-bit fields as well as strings): the same message.
template <typename M>
void ExpectRoundTrip(const M& message) {
  const std::string json = ProtoJson(message);
  M back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &back).ok())
      << json;
  EXPECT_EQ(back.SerializeAsString(), message.SerializeAsString()) << json;
}

TEST(ProtoJsonTest, IntegersAreNumbersAndEveryScalarIsPrinted) {
  v1::TensorInfo t;
  t.set_handle("0123456789abcdef0123456789abcdef");
  t.set_dtype(v1::DTYPE_FLOAT32);
  t.add_shape(2);
  t.add_shape(3);
  t.set_device("cpu");
  t.set_nbytes(std::numeric_limits<int64_t>::max());
  t.set_storage_offset(std::numeric_limits<int64_t>::min());
  t.set_is_contiguous(true);
  EXPECT_EQ(ProtoJson(t),
            "{\n"
            "  \"handle\": \"0123456789abcdef0123456789abcdef\",\n"
            "  \"name\": \"\",\n"
            "  \"dtype\": \"DTYPE_FLOAT32\",\n"
            "  \"shape\": [\n"
            "    2,\n"
            "    3\n"
            "  ],\n"
            "  \"strides\": [],\n"
            "  \"storage_offset\": -9223372036854775808,\n"
            "  \"device\": \"cpu\",\n"
            "  \"requires_grad\": false,\n"
            "  \"nbytes\": 9223372036854775807,\n"
            "  \"numel\": 0,\n"
            "  \"is_contiguous\": true,\n"
            "  \"storage_bytes\": 0,\n"
            "  \"expires_at_unix_s\": 0,\n"
            "  \"created_at_unix_s\": 0,\n"
            "  \"node\": \"\"\n"
            "}\n");
  ExpectRoundTrip(t);
}

TEST(ProtoJsonTest, UnsetMessagesAndOneofMembersAreLeftOut) {
  v1::StatsResponse stats;
  stats.set_version("1.0");
  v1::DeviceStats* d = stats.add_devices();
  d->set_device("cpu");
  d->set_allocated_bytes(4096);
  std::string json = ProtoJson(stats);
  EXPECT_EQ(json.find("\"tenant\":"), std::string::npos) << json;
  EXPECT_NE(json.find("\"tenants\": []"), std::string::npos) << json;
  EXPECT_NE(json.find("\"allocated_bytes\": 4096,"), std::string::npos) << json;
  EXPECT_NE(json.find("\"cuda_available\": false"), std::string::npos) << json;
  ExpectRoundTrip(stats);
  stats.mutable_tenant()->set_tenant("a");
  json = ProtoJson(stats);
  EXPECT_NE(json.find("\"tenant\": {\n    \"tenant\": \"a\",\n"),
            std::string::npos)
      << json;
  ExpectRoundTrip(stats);

  v1::CreateRequest create;
  create.set_rand_seed(std::numeric_limits<uint64_t>::max());
  json = ProtoJson(create);
  EXPECT_NE(json.find("\"rand_seed\": 18446744073709551615\n"),
            std::string::npos)
      << json;
  for (const char* absent : {"zeros", "full", "arange", "values"}) {
    EXPECT_EQ(json.find(absent), std::string::npos) << absent << json;
  }
  ExpectRoundTrip(create);
  create.mutable_zeros();
  json = ProtoJson(create);
  EXPECT_NE(json.find("\"zeros\": {}"), std::string::npos) << json;
  ExpectRoundTrip(create);
}

TEST(ProtoJsonTest, FloatsStringsAndBools) {
  v1::CreateRequest create;
  create.set_name("quote\" back\\ nl\n tab\t bell\x07 é");
  v1::Literal* values = create.mutable_values();
  for (double v : {0.1, -2.5, 1e300, 3.0, 5e-324}) values->add_float_values(v);
  values->add_int_values(std::numeric_limits<int64_t>::min());
  values->add_bool_values(true);
  values->add_bool_values(false);
  const std::string json = ProtoJson(create);
  EXPECT_NE(json.find("\"name\": \"quote\\\" back\\\\ nl\\n tab\\t "
                      "bell\\u0007 é\""),
            std::string::npos)
      << json;
  EXPECT_NE(json.find("0.1,\n"), std::string::npos) << json;
  EXPECT_NE(json.find("3,\n"), std::string::npos) << json;
  EXPECT_NE(json.find("\"bool_values\": [\n      true,\n      false\n"),
            std::string::npos)
      << json;
  ExpectRoundTrip(create);
  // NaN and the infinities have no JSON number: protobuf's names.
  create.mutable_values()->add_float_values(std::nan(""));
  create.mutable_values()->add_float_values(-INFINITY);
  EXPECT_NE(ProtoJson(create).find("\"NaN\",\n      \"-Infinity\"\n"),
            std::string::npos)
      << ProtoJson(create);
}

TEST(ProtoJsonTest, MapsAreObjects) {
  google::protobuf::Struct s;
  (*s.mutable_fields())["n"].set_number_value(2);
  EXPECT_EQ(ProtoJson(s),
            "{\n"
            "  \"fields\": {\n"
            "    \"n\": {\n"
            "      \"number_value\": 2\n"
            "    }\n"
            "  }\n"
            "}\n");
}

}  // namespace
}  // namespace tensorcast
