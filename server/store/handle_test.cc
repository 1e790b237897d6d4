// The handle format (handle.h): "<32 hex>" or "<32 hex>.<node id>", the
// node-id rule (a DNS label), the name rule (a name may not read as a
// handle), and how the store answers malformed refs and names.
#include "server/store/handle.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/store/store_test_util.h"
#include "server/store/tensor_store.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;

const std::string kHex = "0123456789abcdef0123456789abcdef";

TEST(HandleTest, ParseSplitsAtTheDot) {
  std::optional<HandleParts> plain = ParseHandle(kHex);
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(plain->random, kHex);
  EXPECT_EQ(plain->node, "");

  const std::string with_node = kHex + ".tensorcast-1";
  std::optional<HandleParts> parts = ParseHandle(with_node);
  ASSERT_TRUE(parts.has_value());
  EXPECT_EQ(parts->random, kHex);
  EXPECT_EQ(parts->node, "tensorcast-1");
  EXPECT_EQ(RefNode(with_node), "tensorcast-1");
  EXPECT_EQ(RefNode(kHex), "");
  // Upper-case hex is a handle too (the store always accepted it).
  EXPECT_TRUE(ParseHandle("0123456789ABCDEF0123456789ABCDEF.n0").has_value());
}

TEST(HandleTest, MalformedRefsAreNotHandles) {
  for (const std::string& ref : std::vector<std::string>{
           std::string(),
           kHex.substr(0, 31),                 // too short
           kHex.substr(0, 31) + "g",           // not hex
           kHex + "0",                         // 33 digits, no dot
           kHex + ".",                         // empty node id
           kHex + ".-n0",                      // node id starts with '-'
           kHex + ".n0-",                      // ...or ends with it
           kHex + ".N0",                       // upper case node id
           kHex + ".n_0",                      // '_' is not in a DNS label
           kHex + ".a.b",                      // a '.' in the node id
           kHex + "." + std::string(64, 'x'),  // node id over 63 bytes
           "." + kHex,
       }) {
    SCOPED_TRACE(absl::StrCat("ref '", ref, "'"));
    EXPECT_FALSE(ParseHandle(ref).has_value());
    EXPECT_EQ(RefNode(ref), "");
  }
}

TEST(HandleTest, NodeIdIsADnsLabel) {
  for (const std::string& id : std::vector<std::string>{
           "a", "0", "n0", "tensorcast-1", "a-b-c", std::string(63, 'z')}) {
    EXPECT_TRUE(IsNodeId(id)) << id;
  }
  for (const std::string& id : std::vector<std::string>{
           std::string(), std::string(64, 'z'), "-a", "a-", "A", "a.b", "a_b",
           "a b", "é", std::string("a\0b", 3)}) {
    EXPECT_FALSE(IsNodeId(id)) << id;
  }
  EXPECT_EQ(kMaxNodeIdBytes, 63u);
}

TEST(HandleTest, SanitizeNodeIdMakesALabelOfAHostname) {
  EXPECT_EQ(SanitizeNodeId("tensorcast-0.tensorcast.ns.svc"), "tensorcast-0");
  EXPECT_EQ(SanitizeNodeId("My_Host"), "my-host");
  EXPECT_EQ(SanitizeNodeId("--x--"), "x");
  EXPECT_EQ(SanitizeNodeId(""), "node");
  EXPECT_EQ(SanitizeNodeId("___"), "node");
  EXPECT_EQ(SanitizeNodeId(std::string(100, 'h')), std::string(63, 'h'));
  for (const std::string& host :
       std::vector<std::string>{"a.b", "UPPER", "x y", std::string(80, '-')}) {
    EXPECT_TRUE(IsNodeId(SanitizeNodeId(host))) << host;
  }
}

TEST(HandleTest, NamesThatReadAsHandlesAreRefused) {
  // 32 hex digits, alone or before a '.', whatever follows.
  for (const std::string& name : std::vector<std::string>{
           kHex, kHex + ".", kHex + ".n0", kHex + ".not a node id",
           std::string("0123456789ABCDEF0123456789ABCDEF")}) {
    EXPECT_TRUE(NameLooksLikeHandle(name)) << name;
  }
  for (const std::string& name : std::vector<std::string>{
           std::string("weights"), kHex.substr(0, 31), kHex + "0", kHex + "-n0",
           "x" + kHex, kHex.substr(0, 31) + "g.n0"}) {
    EXPECT_FALSE(NameLooksLikeHandle(name)) << name;
  }
}

class HandleStoreTest : public testing::HostStoreTest {
 protected:
  NewTensor One(std::string name = "") {
    NewTensor t;
    t.dtype = DType::kFloat32;
    t.layout = Layout::Contiguous({1});
    absl::StatusOr<std::shared_ptr<Storage>> storage =
        Storage::Allocate(host(), 4);
    EXPECT_TRUE(storage.ok()) << storage.status();
    if (storage.ok()) t.storage = *std::move(storage);
    t.name = std::move(name);
    return t;
  }
};

TEST_F(HandleStoreTest, FormatAndParseRoundTrip) {
  // The store's handles parse back into the node that made them.
  for (const std::string& node :
       std::vector<std::string>{"n0", "tensorcast-2", std::string(63, 'x')}) {
    SCOPED_TRACE(node);
    TensorStore store(0, nullptr, node);
    absl::StatusOr<TensorPtr> added = store.Add(One());
    ASSERT_TRUE(added.ok()) << added.status();
    const std::string handle = (*added)->handle;
    EXPECT_EQ(handle.size(), kHandleHexDigits + 1 + node.size());
    std::optional<HandleParts> parts = ParseHandle(handle);
    ASSERT_TRUE(parts.has_value()) << handle;
    EXPECT_EQ(parts->node, node);
    EXPECT_EQ(absl::StrCat(parts->random, ".", parts->node), handle);
    EXPECT_EQ(RefNode(handle), node);
    EXPECT_FALSE(NameLooksLikeHandle(node));
    EXPECT_TRUE(store.Get(handle).ok());
  }
  // Without a node id: the 32 digits alone.
  TensorStore plain;
  absl::StatusOr<TensorPtr> added = plain.Add(One());
  ASSERT_TRUE(added.ok()) << added.status();
  std::optional<HandleParts> parts = ParseHandle((*added)->handle);
  ASSERT_TRUE(parts.has_value());
  EXPECT_EQ(parts->random, (*added)->handle);
  EXPECT_EQ(parts->node, "");
}

TEST_F(HandleStoreTest, HandleShapedNamesAreInvalidArgument) {
  TensorStore store(0, nullptr, "n0");
  for (const std::string& name :
       std::vector<std::string>{kHex, kHex + ".n0", kHex + ".n1", kHex + "."}) {
    SCOPED_TRACE(name);
    absl::StatusOr<TensorPtr> t = store.Add(One(name));
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(t.status().message(), HasSubstr("looks like a handle"));
  }
  // The longest name allowed, and one byte more.
  EXPECT_TRUE(store.Add(One(std::string(256, 'n'))).ok());
  EXPECT_EQ(store.Add(One(std::string(257, 'n'))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store.size(), 1);
}

TEST_F(HandleStoreTest, MalformedAndForeignHandlesAreNotFound) {
  TensorStore store(0, nullptr, "n0");
  absl::StatusOr<TensorPtr> t = store.Add(One("w"));
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string handle = (*t)->handle;
  const std::string random = handle.substr(0, kHandleHexDigits);
  ASSERT_EQ(handle, random + ".n0");
  // The same random digits under another node, with no node, with a bad
  // node id, truncated or extended: none is this tensor.
  for (const std::string& ref : std::vector<std::string>{
           random + ".n1", random, random + ".", random + ".N0",
           handle.substr(0, handle.size() - 1), handle + "x", handle + ".n0"}) {
    SCOPED_TRACE(ref);
    absl::StatusOr<TensorPtr> got = store.Get(ref);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(got.status().message(), HasSubstr("no tensor"));
  }
  EXPECT_TRUE(store.Get(handle).ok());
  EXPECT_TRUE(store.Get("w").ok());
}

}  // namespace
}  // namespace tensorcast
