// Tests TensorStore against the contract in tensor_store.h, with the real
// host pool: handles, names, Get, Delete, List paging, expiry, and storage
// that lives as long as its last reference.
#include "server/store/tensor_store.h"

#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/conversions.h"
#include "server/store/device.h"
#include "server/store/store_test_util.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;

class TensorStoreTest : public testing::HostStoreTest {
 protected:
  // A contiguous float32 tensor of `n` elements 0, 1, 2...
  NewTensor Floats(int64_t n, std::string name = "") {
    NewTensor t;
    t.dtype = DType::kFloat32;
    t.layout = Layout::Contiguous({n});
    absl::StatusOr<std::shared_ptr<Storage>> storage =
        Storage::Allocate(host(), n * 4);
    EXPECT_TRUE(storage.ok()) << storage.status();
    if (storage.ok()) {
      t.storage = *std::move(storage);
      auto* f = static_cast<float*>(t.storage->data());
      for (int64_t i = 0; i < n; ++i) f[i] = static_cast<float>(i);
    }
    t.name = std::move(name);
    return t;
  }

  TensorPtr AddFloats(TensorStore& store, int64_t n, std::string name = "") {
    absl::StatusOr<TensorPtr> t = store.Add(Floats(n, std::move(name)));
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : nullptr;
  }
};

// A clock the test moves by hand, so that TTLs pass without waiting.
class FakeClock {
 public:
  explicit FakeClock(int64_t start = 1'700'000'000) : now_(start) {}
  TensorStore::Clock clock() {
    return [this] { return now_.load(); };
  }
  void Advance(int64_t seconds) { now_ += seconds; }
  int64_t now() const { return now_.load(); }

 private:
  std::atomic<int64_t> now_;
};

bool IsLowerHex32(const std::string& s) {
  if (s.size() != 32) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return false;
  }
  return true;
}

TEST_F(TensorStoreTest, HandlesAre32HexDigitsAndDistinct) {
  TensorStore store;
  std::set<std::string> handles;
  for (int i = 0; i < 200; ++i) {
    TensorPtr t = AddFloats(store, 1);
    ASSERT_NE(t, nullptr);
    EXPECT_TRUE(IsLowerHex32(t->handle)) << t->handle;
    handles.insert(t->handle);
  }
  EXPECT_EQ(handles.size(), 200u);
  EXPECT_EQ(store.size(), 200);
  EXPECT_EQ(store.CountOnDevice(host()), 200);
}

TEST_F(TensorStoreTest, AddFillsInTheTensor) {
  TensorStore store;
  TensorPtr t = AddFloats(store, 6, "six");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->name, "six");
  EXPECT_EQ(t->numel, 6);
  EXPECT_EQ(t->nbytes(), 24);
  EXPECT_EQ(t->device(), "cpu");
  EXPECT_FALSE(t->requires_grad);
  EXPECT_EQ(t->expires_unix_s, 0);
  int64_t now = TensorStore::NowUnixSeconds();
  EXPECT_LE(t->created_unix_s, now);
  EXPECT_GE(t->created_unix_s, now - 5);
}

TEST_F(TensorStoreTest, GetByHandleAndByName) {
  TensorStore store;
  TensorPtr a = AddFloats(store, 3, "weights");
  TensorPtr b = AddFloats(store, 4);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);

  absl::StatusOr<TensorPtr> by_handle = store.Get(a->handle);
  ASSERT_TRUE(by_handle.ok()) << by_handle.status();
  EXPECT_EQ(*by_handle, a);
  absl::StatusOr<TensorPtr> by_name = store.Get("weights");
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_EQ(*by_name, a);
  absl::StatusOr<TensorPtr> other = store.Get(b->handle);
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(*other, b);

  absl::StatusOr<TensorPtr> missing = store.Get("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("nope"));
  // A handle that was never issued.
  EXPECT_EQ(store.Get(std::string(32, '0')).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TensorStoreTest, DuplicateNameIsAlreadyExistsAndNothingIsAdded) {
  TensorStore store;
  TensorPtr a = AddFloats(store, 2, "x");
  ASSERT_NE(a, nullptr);
  absl::StatusOr<TensorPtr> again = store.Add(Floats(2, "x"));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr(a->handle));
  EXPECT_EQ(store.CheckNameAvailable("x").code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store.size(), 1);
  EXPECT_EQ(*store.Get("x"), a);

  // Once deleted, the name is free again.
  std::vector<std::string> refs = {"x"};
  ASSERT_TRUE(store.Delete(refs).ok());
  EXPECT_TRUE(store.CheckNameAvailable("x").ok());
  EXPECT_TRUE(store.Add(Floats(2, "x")).ok());
}

TEST_F(TensorStoreTest, BadNamesAreRefused) {
  TensorStore store;
  const std::vector<std::string> bad = {
      "0123456789abcdef0123456789abcdef",  // looks like a handle
      "0123456789ABCDEF0123456789ABCDEF",  // so does upper case hex
      "has space",
      " leading",
      "tab\there",
      "new\nline",
      std::string(257, 'n'),
  };
  for (const std::string& name : bad) {
    SCOPED_TRACE(absl::StrCat("name '", name, "'"));
    EXPECT_EQ(store.CheckNameAvailable(name).code(),
              absl::StatusCode::kInvalidArgument);
    absl::StatusOr<TensorPtr> t = store.Add(Floats(1, name));
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_THAT(store.CheckNameAvailable(bad[0]).message(),
              HasSubstr("looks like a handle"));
  EXPECT_EQ(store.size(), 0);
  // Near misses are fine: 31 or 33 hex digits, a non-hex character, and
  // the longest allowed name.
  for (const std::string& name :
       {std::string(31, 'a'), std::string(33, 'a'), std::string(31, 'a') + "g",
        std::string(256, 'n'), std::string("a.b-c_d/e:f")}) {
    SCOPED_TRACE(name);
    EXPECT_TRUE(store.Add(Floats(1, name)).ok());
  }
  EXPECT_EQ(store.size(), 5);
}

TEST_F(TensorStoreTest, AddRefusesRequiresGradOnIntegersAndLayoutsOutside) {
  TensorStore store;
  NewTensor ints;
  ints.dtype = DType::kInt32;
  ints.layout = Layout::Contiguous({4});
  ints.storage = *Storage::Allocate(host(), 16);
  ints.requires_grad = true;
  absl::StatusOr<TensorPtr> t = store.Add(ints);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(),
              HasSubstr("Only Tensors of floating point and complex dtype"));

  NewTensor too_big = Floats(4);
  too_big.layout = Layout::Contiguous({5});
  EXPECT_EQ(store.Add(too_big).status().code(),
            absl::StatusCode::kInvalidArgument);

  NewTensor offset_past = Floats(4);
  offset_past.layout.offset = 1;
  EXPECT_EQ(store.Add(offset_past).status().code(),
            absl::StatusCode::kInvalidArgument);

  NewTensor negative_ttl = Floats(4);
  negative_ttl.ttl_seconds = -1;
  EXPECT_EQ(store.Add(negative_ttl).status().code(),
            absl::StatusCode::kInvalidArgument);

  NewTensor no_storage;
  no_storage.layout = Layout::Contiguous({1});
  EXPECT_FALSE(store.Add(no_storage).ok());
  EXPECT_EQ(store.size(), 0);
}

TEST(CheckRequiresGradTest, PyTorchRuleAndMessage) {
  for (const DTypeInfo& info : AllDTypes()) {
    SCOPED_TRACE(info.name);
    EXPECT_TRUE(CheckRequiresGrad(info.dtype, false).ok());
    absl::Status s = CheckRequiresGrad(info.dtype, true);
    if (info.kind == DTypeKind::kFloat || info.kind == DTypeKind::kComplex) {
      EXPECT_TRUE(s.ok()) << s;
    } else {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_EQ(s.message(),
                "Only Tensors of floating point and complex dtype can require "
                "gradients");
    }
  }
}

TEST_F(TensorStoreTest, DeleteIsAllOrNothing) {
  TensorStore store;
  TensorPtr a = AddFloats(store, 1, "a");
  TensorPtr b = AddFloats(store, 1, "b");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);

  std::vector<std::string> with_unknown = {a->handle, "ghost", "b"};
  absl::StatusOr<int> bad = store.Delete(with_unknown);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(bad.status().message(), HasSubstr("ghost"));
  EXPECT_THAT(bad.status().message(), HasSubstr("nothing was deleted"));
  EXPECT_EQ(store.size(), 2);
  EXPECT_TRUE(store.Get("a").ok());
  EXPECT_TRUE(store.Get("b").ok());

  std::vector<std::string> both = {a->handle, "b"};
  absl::StatusOr<int> ok = store.Delete(both);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, 2);
  EXPECT_EQ(store.size(), 0);
  EXPECT_EQ(store.Get("a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.Get(b->handle).status().code(), absl::StatusCode::kNotFound);

  // Deleting again: nothing there.
  EXPECT_EQ(store.Delete(both).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(TensorStoreTest, DeleteCountsTheSameTensorNamedTwiceOnce) {
  TensorStore store;
  TensorPtr a = AddFloats(store, 1, "a");
  TensorPtr b = AddFloats(store, 1);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  std::vector<std::string> refs = {a->handle, "a", a->handle, b->handle};
  absl::StatusOr<int> n = store.Delete(refs);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 2);
  EXPECT_EQ(store.size(), 0);
  std::vector<std::string> none;
  absl::StatusOr<int> zero = store.Delete(none);
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(*zero, 0);
}

TEST_F(TensorStoreTest, ListPagesInCreationOrder) {
  TensorStore store;
  std::vector<std::string> handles;
  for (int i = 0; i < 7; ++i) {
    TensorPtr t = AddFloats(store, 1, absl::StrCat("t", i));
    ASSERT_NE(t, nullptr);
    handles.push_back(t->handle);
  }
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    absl::StatusOr<TensorStore::Page> page = store.List(3, token, "");
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->tensors.size(), 3u);
    for (const TensorPtr& t : page->tensors) seen.push_back(t->handle);
    token = page->next_page_token;
    ++pages;
    ASSERT_LT(pages, 10);
  } while (!token.empty());
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, handles);

  // A page exactly the size of what is left has no next token.
  absl::StatusOr<TensorStore::Page> all = store.List(7, "", "");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->tensors.size(), 7u);
  EXPECT_EQ(all->next_page_token, "");
  // page_size 0 means the default (100).
  absl::StatusOr<TensorStore::Page> dflt = store.List(0, "", "");
  ASSERT_TRUE(dflt.ok());
  EXPECT_EQ(dflt->tensors.size(), 7u);
}

TEST_F(TensorStoreTest, ListSkipsDeletedTensorsBetweenPages) {
  TensorStore store;
  std::vector<TensorPtr> ts;
  for (int i = 0; i < 6; ++i) ts.push_back(AddFloats(store, 1));
  absl::StatusOr<TensorStore::Page> first = store.List(2, "", "");
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->tensors.size(), 2u);
  ASSERT_FALSE(first->next_page_token.empty());
  std::vector<std::string> doomed = {ts[2]->handle};
  ASSERT_TRUE(store.Delete(doomed).ok());
  absl::StatusOr<TensorStore::Page> second =
      store.List(2, first->next_page_token, "");
  ASSERT_TRUE(second.ok());
  ASSERT_EQ(second->tensors.size(), 2u);
  EXPECT_EQ(second->tensors[0], ts[3]);
  EXPECT_EQ(second->tensors[1], ts[4]);
}

TEST_F(TensorStoreTest, ListFiltersByNamePrefixAcrossPages) {
  TensorStore store;
  std::vector<std::string> wanted;
  for (int i = 0; i < 10; ++i) {
    std::string name = absl::StrCat(i % 2 == 0 ? "layer." : "opt.", i);
    TensorPtr t = AddFloats(store, 1, name);
    ASSERT_NE(t, nullptr);
    if (i % 2 == 0) wanted.push_back(name);
  }
  AddFloats(store, 1);  // unnamed: never matches a non-empty prefix

  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    absl::StatusOr<TensorStore::Page> page = store.List(2, token, "layer.");
    ASSERT_TRUE(page.ok()) << page.status();
    for (const TensorPtr& t : page->tensors) seen.push_back(t->name);
    token = page->next_page_token;
    ASSERT_LT(++pages, 10);
  } while (!token.empty());
  EXPECT_EQ(seen, wanted);
  EXPECT_EQ(pages, 3);

  absl::StatusOr<TensorStore::Page> none = store.List(10, "", "zzz");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->tensors.empty());
  EXPECT_EQ(none->next_page_token, "");
  absl::StatusOr<TensorStore::Page> all = store.List(100, "", "");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->tensors.size(), 11u);
}

TEST_F(TensorStoreTest, ListRefusesABadToken) {
  TensorStore store;
  AddFloats(store, 1);
  for (const char* token : {"abc", "-1", "1x", "99999999999999999999999"}) {
    SCOPED_TRACE(token);
    absl::StatusOr<TensorStore::Page> page = store.List(10, token, "");
    EXPECT_EQ(page.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(page.status().message(), HasSubstr(token));
  }
}

TEST_F(TensorStoreTest, ReapExpiredWithExplicitNowAndDefaultTtl) {
  TensorStore store(/*default_ttl_seconds=*/100);
  NewTensor short_lived = Floats(1, "short");
  short_lived.ttl_seconds = 10;
  absl::StatusOr<TensorPtr> s = store.Add(std::move(short_lived));
  ASSERT_TRUE(s.ok()) << s.status();
  TensorPtr d = AddFloats(store, 1, "default");
  ASSERT_NE(d, nullptr);
  NewTensor long_lived = Floats(1, "long");
  long_lived.ttl_seconds = 1000;  // may exceed the default
  absl::StatusOr<TensorPtr> l = store.Add(std::move(long_lived));
  ASSERT_TRUE(l.ok());

  EXPECT_EQ((*s)->expires_unix_s, (*s)->created_unix_s + 10);
  EXPECT_EQ(d->expires_unix_s, d->created_unix_s + 100);
  EXPECT_EQ((*l)->expires_unix_s, (*l)->created_unix_s + 1000);

  EXPECT_EQ(store.ReapExpired((*s)->expires_unix_s - 1), 0);
  EXPECT_EQ(store.size(), 3);
  // Expiry is "at or before now".
  EXPECT_EQ(store.ReapExpired((*s)->expires_unix_s), 1);
  EXPECT_EQ(store.Get("short").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store.Get("default").ok());
  EXPECT_EQ(store.ReapExpired(d->expires_unix_s), 1);
  EXPECT_EQ(store.size(), 1);
  EXPECT_EQ(store.ReapExpired((*l)->expires_unix_s), 1);
  EXPECT_EQ(store.size(), 0);
  // The caller's references still hold the storage; dropping them frees it.
  EXPECT_GT(Allocated(), 0);
  s->reset();
  d.reset();
  l->reset();
  EXPECT_EQ(Allocated(), 0);
}

// A huge ttl_seconds (any client may send one) saturates instead of
// overflowing into an expiry in the past.
TEST_F(TensorStoreTest, HugeTtlDoesNotOverflowIntoExpiry) {
  FakeClock clock;
  TensorStore store(/*default_ttl_seconds=*/0, clock.clock());
  NewTensor forever = Floats(1, "forever");
  forever.ttl_seconds = std::numeric_limits<int64_t>::max();
  absl::StatusOr<TensorPtr> t = store.Add(std::move(forever));
  if (!t.ok()) {
    // Refusing it is also acceptable, as long as it is INVALID_ARGUMENT.
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    return;
  }
  EXPECT_GT((*t)->expires_unix_s, (*t)->created_unix_s);
  EXPECT_TRUE(store.Get("forever").ok());
  clock.Advance(int64_t{1} << 40);  // some 35,000 years
  EXPECT_TRUE(store.Get("forever").ok());
  EXPECT_EQ(store.ReapExpired(), 0);
  EXPECT_EQ(store.size(), 1);
}

TEST_F(TensorStoreTest, NoDefaultTtlMeansNeverExpire) {
  TensorStore store;
  TensorPtr t = AddFloats(store, 1);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->expires_unix_s, 0);
  EXPECT_EQ(store.ReapExpired(std::numeric_limits<int64_t>::max()), 0);
  EXPECT_EQ(store.size(), 1);
}

TEST_F(TensorStoreTest, ReapingFreesStorage) {
  FakeClock clock;
  TensorStore store(/*default_ttl_seconds=*/5, clock.clock());
  {
    TensorPtr t = AddFloats(store, 1 << 20);
    ASSERT_NE(t, nullptr);
  }
  EXPECT_GE(Allocated(), 4 << 20);
  clock.Advance(4);
  EXPECT_EQ(store.ReapExpired(), 0);
  EXPECT_GE(Allocated(), 4 << 20);
  clock.Advance(1);
  EXPECT_EQ(store.ReapExpired(), 1);
  EXPECT_EQ(Allocated(), 0);
}

// The store's own clock decides expiry everywhere, before any reaping: a
// tensor is there until the second its TTL ends, and gone from then on.
TEST_F(TensorStoreTest, ExpiryFollowsTheStoresClock) {
  FakeClock clock;
  TensorStore store(/*default_ttl_seconds=*/0, clock.clock());
  NewTensor ten = Floats(1, "ten");
  ten.ttl_seconds = 10;
  absl::StatusOr<TensorPtr> t = store.Add(std::move(ten));
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string handle = (*t)->handle;
  EXPECT_EQ((*t)->created_unix_s, clock.now());
  EXPECT_EQ((*t)->expires_unix_s, clock.now() + 10);
  EXPECT_EQ(store.Now(), clock.now());

  clock.Advance(9);
  EXPECT_TRUE(store.Get("ten").ok());
  EXPECT_TRUE(store.Get(handle).ok());
  EXPECT_EQ(store.List(10, "", "")->tensors.size(), 1u);
  EXPECT_EQ(store.CheckNameAvailable("ten").code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(store.ReapExpired(), 0);

  clock.Advance(1);  // expiry is "at or before now"
  EXPECT_EQ(store.Get("ten").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.Get(handle).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store.List(10, "", "")->tensors.empty());
  EXPECT_TRUE(store.CheckNameAvailable("ten").ok());
  const std::vector<std::string> refs = {handle};
  EXPECT_EQ(store.Delete(refs).status().code(), absl::StatusCode::kNotFound);
  // Hidden, but held until reaped.
  EXPECT_EQ(store.size(), 1);
  EXPECT_EQ(store.ReapExpired(), 1);
  EXPECT_EQ(store.size(), 0);
}

TEST_F(TensorStoreTest, ExpiredNameCanBeTakenAgain) {
  FakeClock clock;
  TensorStore store(/*default_ttl_seconds=*/0, clock.clock());
  NewTensor quick = Floats(1, "reused");
  quick.ttl_seconds = 1;
  ASSERT_TRUE(store.Add(std::move(quick)).ok());
  EXPECT_EQ(store.CheckNameAvailable("reused").code(),
            absl::StatusCode::kAlreadyExists);
  clock.Advance(1);
  EXPECT_EQ(store.Get("reused").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store.CheckNameAvailable("reused").ok());
  absl::StatusOr<TensorPtr> again = store.Add(Floats(1, "reused"));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*store.Get("reused"), *again);
  // The expired holder is gone for good, not just hidden.
  EXPECT_EQ(store.size(), 1);
}

TEST_F(TensorStoreTest, DetachedStorageOutlivesTheOriginal) {
  TensorStore store;
  ConversionContext ctx{&store, registry_.get(), 0, nullptr};
  TensorPtr original = AddFloats(store, 1 << 20, "orig");
  ASSERT_NE(original, nullptr);
  const int64_t in_use = Allocated();
  EXPECT_GE(in_use, 4 << 20);

  absl::StatusOr<TensorPtr> detached = DetachTensor(ctx, original, "view", 0);
  ASSERT_TRUE(detached.ok()) << detached.status();
  EXPECT_EQ((*detached)->storage, original->storage);
  EXPECT_EQ(Allocated(), in_use);  // no copy
  const std::string detached_handle = (*detached)->handle;
  detached->reset();
  original.reset();

  std::vector<std::string> refs = {"orig"};
  ASSERT_TRUE(store.Delete(refs).ok());
  EXPECT_EQ(Allocated(), in_use);  // the view still holds the storage
  absl::StatusOr<TensorPtr> view = store.Get(detached_handle);
  ASSERT_TRUE(view.ok());
  const auto* f = reinterpret_cast<const float*>((*view)->storage_bytes());
  EXPECT_EQ(f[0], 0.0f);
  EXPECT_EQ(f[(1 << 20) - 1], static_cast<float>((1 << 20) - 1));
  view->reset();

  refs = {"view"};
  ASSERT_TRUE(store.Delete(refs).ok());
  EXPECT_EQ(Allocated(), 0);
}

TEST_F(TensorStoreTest, AHeldTensorPtrKeepsStorageAfterDelete) {
  TensorStore store;
  TensorPtr t = AddFloats(store, 1000, "held");
  ASSERT_NE(t, nullptr);
  const int64_t in_use = Allocated();
  EXPECT_GT(in_use, 0);
  TensorPtr in_flight = *store.Get("held");  // as a Fetch would hold it
  t.reset();
  std::vector<std::string> refs = {"held"};
  ASSERT_TRUE(store.Delete(refs).ok());
  EXPECT_EQ(store.Get("held").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Allocated(), in_use);
  const auto* f = reinterpret_cast<const float*>(in_flight->storage_bytes());
  EXPECT_EQ(f[999], 999.0f);
  in_flight.reset();
  EXPECT_EQ(Allocated(), 0);
}

TEST_F(TensorStoreTest, ConcurrentAddGetDeleteKeepsCountsRight) {
  TensorStore store;
  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int j = 0; j < kPerThread; ++j) {
        std::string name = absl::StrCat("w", i, "_", j);
        absl::StatusOr<TensorPtr> t = store.Add(Floats(16, name));
        if (!t.ok() || !store.Get(name).ok()) ++failures;
        if (j % 2 == 0) {
          std::vector<std::string> refs = {name};
          absl::StatusOr<int> n = store.Delete(refs);
          if (!n.ok() || *n != 1) ++failures;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store.size(), kThreads * kPerThread / 2);
  absl::StatusOr<TensorStore::Page> page = store.List(1000, "", "w0_");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->tensors.size(), static_cast<size_t>(kPerThread / 2));
}

}  // namespace
}  // namespace tensorcast

namespace tensorcast {
namespace {

class TenantStoreTest : public testing::HostStoreTest {
 protected:
  // n floats owned (and charged to) `tenant`.
  absl::StatusOr<TensorPtr> Add(const TenantPtr& tenant, int64_t n,
                                std::string name = "") {
    absl::StatusOr<std::shared_ptr<Storage>> storage =
        Storage::Allocate(host(), n * 4, tenant);
    if (!storage.ok()) return storage.status();
    NewTensor t;
    t.dtype = DType::kFloat32;
    t.layout = Layout::Contiguous({n});
    t.storage = *std::move(storage);
    t.name = std::move(name);
    t.tenant = tenant;
    return store_.Add(std::move(t));
  }
};

TEST_F(TenantStoreTest, AnotherTenantsTensorsDoNotExistForIt) {
  auto alice = std::make_shared<Tenant>("alice", TenantLimits{});
  auto bob = std::make_shared<Tenant>("bob", TenantLimits{});
  absl::StatusOr<TensorPtr> a = Add(alice, 4, "weights");
  ASSERT_TRUE(a.ok()) << a.status();
  // By handle or by name: NOT_FOUND for bob, with the message an unknown
  // ref gets.
  absl::StatusOr<TensorPtr> by_handle = store_.Get((*a)->handle, bob.get());
  EXPECT_EQ(by_handle.status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<TensorPtr> unknown =
      store_.Get("0123456789abcdef0123456789abcdef", bob.get());
  EXPECT_EQ(by_handle.status().message(),
            absl::StrCat("no tensor '", (*a)->handle, "'"));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Get("weights", bob.get()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_.Get("weights", nullptr).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_.Get("weights", alice.get()).ok());
  // Names are per tenant.
  absl::StatusOr<TensorPtr> b = Add(bob, 4, "weights");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*store_.Get("weights", bob.get()))->handle, (*b)->handle);
  EXPECT_EQ((*store_.Get("weights", alice.get()))->handle, (*a)->handle);
  EXPECT_EQ(Add(alice, 4, "weights").status().code(),
            absl::StatusCode::kAlreadyExists);
  // List shows one's own; Delete of another's is NOT_FOUND, all or nothing.
  absl::StatusOr<TensorStore::Page> page = store_.List(10, "", "", bob.get());
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->tensors.size(), 1u);
  EXPECT_EQ(page->tensors[0]->handle, (*b)->handle);
  const std::string both[] = {(*b)->handle, (*a)->handle};
  EXPECT_EQ(store_.Delete(both, bob.get()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_.Get((*b)->handle, bob.get()).ok());
  EXPECT_EQ(alice->tensors(), 1);
  EXPECT_EQ(bob->tensors(), 1);
  const std::string mine[] = {(*b)->handle};
  EXPECT_EQ(*store_.Delete(mine, bob.get()), 1);
  EXPECT_EQ(bob->tensors(), 0);
}

// Page tokens follow the tenant's own tensors: what bob makes between
// alice's tensors changes none of alice's tokens (they would tell her how
// many tensors others made), and alice's token means nothing to bob.
TEST_F(TenantStoreTest, PageTokensCountOnlyTheTenantsOwnTensors) {
  auto alice = std::make_shared<Tenant>("alice", TenantLimits{});
  auto bob = std::make_shared<Tenant>("bob", TenantLimits{});
  auto tokens_of = [&](const Tenant* t) {
    std::vector<std::string> tokens;
    std::string token;
    do {
      absl::StatusOr<TensorStore::Page> page = store_.List(1, token, "", t);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      token = page->next_page_token;
      tokens.push_back(token);
    } while (!token.empty());
    return tokens;
  };
  ASSERT_TRUE(Add(alice, 1).ok());
  ASSERT_TRUE(Add(alice, 1).ok());
  const std::vector<std::string> before = tokens_of(alice.get());
  ASSERT_EQ(before.size(), 2u);  // a token after the first, "" after the last
  for (int i = 0; i < 7; ++i) ASSERT_TRUE(Add(bob, 1).ok());
  ASSERT_TRUE(Add(alice, 1).ok());
  ASSERT_TRUE(Add(alice, 1).ok());
  std::vector<std::string> after = tokens_of(alice.get());
  ASSERT_EQ(after.size(), 4u);
  EXPECT_EQ(after[0], before[0]);
  // Alice's third and fourth tensors follow her second as if bob had made
  // nothing: a store without bob's tensors gives the same tokens.
  TensorStore quiet;
  std::vector<std::string> expected;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<std::shared_ptr<Storage>> storage =
        Storage::Allocate(host(), 4, alice);
    ASSERT_TRUE(storage.ok());
    NewTensor t;
    t.layout = Layout::Contiguous({1});
    t.storage = *std::move(storage);
    t.tenant = alice;
    ASSERT_TRUE(quiet.Add(std::move(t)).ok());
  }
  std::string token;
  do {
    absl::StatusOr<TensorStore::Page> page =
        quiet.List(1, token, "", alice.get());
    ASSERT_TRUE(page.ok());
    token = page->next_page_token;
    expected.push_back(token);
  } while (!token.empty());
  EXPECT_EQ(after, expected);
  // Bob's pages start at his own first tensor, whatever token he brings.
  absl::StatusOr<TensorStore::Page> his = store_.List(100, "", "", bob.get());
  ASSERT_TRUE(his.ok());
  EXPECT_EQ(his->tensors.size(), 7u);
  absl::StatusOr<TensorStore::Page> with_alices =
      store_.List(100, after[1], "", bob.get());
  ASSERT_TRUE(with_alices.ok());
  for (const TensorPtr& t : with_alices->tensors) EXPECT_EQ(t->tenant, bob);
}

TEST_F(TenantStoreTest, QuotaAndTensorLimitAreChargedAndGivenBack) {
  auto t = std::make_shared<Tenant>(
      "t", TenantLimits{/*max_bytes=*/1 << 20, /*max_tensors=*/2, 0});
  absl::StatusOr<TensorPtr> a = Add(t, (512 << 10) / 4);  // 512 KiB
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(t->bytes(), 512 << 10);
  // 600 KiB more would pass the 1 MiB quota: refused, nothing charged or
  // allocated.
  const int64_t allocated = Allocated();
  absl::StatusOr<TensorPtr> over = Add(t, (600 << 10) / 4);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(over.status().message().find("memory quota"), std::string::npos)
      << over.status();
  EXPECT_EQ(t->bytes(), 512 << 10);
  EXPECT_EQ(Allocated(), allocated);
  // A view shares its storage: no new bytes.
  NewTensor view;
  view.dtype = DType::kFloat32;
  view.layout = Layout::Contiguous({4});
  view.storage = (*a)->storage;
  view.tenant = t;
  absl::StatusOr<TensorPtr> v = store_.Add(std::move(view));
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(t->bytes(), 512 << 10);
  // The third handle passes the tensor limit.
  absl::StatusOr<TensorPtr> third = Add(t, 1);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.status().message().find("tensor count"), std::string::npos);
  EXPECT_EQ(t->bytes(), 512 << 10) << "the refused tensor's storage is back";
  // Deleting gives both back.
  const std::string refs[] = {(*a)->handle, (*v)->handle};
  a = absl::NotFoundError("dropped");
  v = absl::NotFoundError("dropped");
  EXPECT_EQ(*store_.Delete(refs, t.get()), 2);
  EXPECT_EQ(t->tensors(), 0);
  EXPECT_EQ(t->bytes(), 0);
  EXPECT_TRUE(Add(t, (1 << 20) / 4).ok());
}

TEST(TenantTest, StreamSlotsHoldTheLimit) {
  auto t = std::make_shared<Tenant>("t", TenantLimits{0, 0, 2});
  StreamSlot a, b, c;
  EXPECT_TRUE(StreamSlot::Take(t, &a).ok());
  EXPECT_TRUE(StreamSlot::Take(t, &b).ok());
  absl::Status s = StreamSlot::Take(t, &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("concurrent stream limit of 2"), std::string::npos)
      << s;
  a.Release();
  EXPECT_TRUE(StreamSlot::Take(t, &c).ok());
  StreamSlot moved = std::move(c);
  EXPECT_EQ(t->streams(), 2);
  b.Release();
  moved.Release();
  EXPECT_EQ(t->streams(), 0);
  // The default tenant (null) has no limits.
  EXPECT_TRUE(StreamSlot::Take(nullptr, &a).ok());
}

}  // namespace
}  // namespace tensorcast
