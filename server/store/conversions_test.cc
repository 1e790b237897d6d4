// Tests CreateTensor, ToTensor and DetachTensor (conversions.h) with the real
// host pool: fills, literals, size and pool limits, casts and the PyTorch
// rules for requires_grad.
#include "server/store/conversions.h"

#include <cmath>
#include <complex>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/store/device.h"
#include "server/store/store_test_util.h"
#include "server/store/tensor_store.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kMiB = 1 << 20;

class ConversionsTest : public testing::HostStoreTest {
 protected:
  TensorPtr MustCreate(CreateSpec spec) {
    absl::StatusOr<TensorPtr> t = CreateTensor(ctx_, std::move(spec));
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : nullptr;
  }

  template <typename T>
  static std::vector<T> Values(const TensorPtr& t) {
    std::vector<T> out(static_cast<size_t>(t->numel));
    EXPECT_EQ(sizeof(T), ItemSize(t->dtype));
    EXPECT_TRUE(t->layout.IsContiguous());
    std::memcpy(out.data(), t->storage_bytes() + t->layout.offset * sizeof(T),
                out.size() * sizeof(T));
    return out;
  }

  static CreateSpec Spec(DType dtype, Shape shape, CreateSpec::Init init) {
    CreateSpec spec;
    spec.dtype = dtype;
    spec.shape = std::move(shape);
    spec.init = init;
    return spec;
  }

  template <typename T>
  static CreateSpec Literal(DType dtype, Shape shape, DType literal_dtype,
                            const std::vector<T>& values) {
    CreateSpec spec = Spec(dtype, std::move(shape), CreateSpec::Init::kLiteral);
    spec.literal_dtype = literal_dtype;
    spec.literal_bytes.assign(reinterpret_cast<const char*>(values.data()),
                              values.size() * sizeof(T));
    return spec;
  }
};

TEST_F(ConversionsTest, ZerosOnesFull) {
  TensorPtr z =
      MustCreate(Spec(DType::kFloat32, {2, 3}, CreateSpec::Init::kZeros));
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->numel, 6);
  EXPECT_EQ(z->layout.shape, (Shape{2, 3}));
  EXPECT_EQ(z->layout.strides, (Strides{3, 1}));
  EXPECT_EQ(z->device(), "cpu");
  EXPECT_EQ(Values<float>(z), std::vector<float>(6, 0.0f));

  TensorPtr o = MustCreate(Spec(DType::kInt64, {4}, CreateSpec::Init::kOnes));
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(Values<int64_t>(o), std::vector<int64_t>(4, 1));

  CreateSpec full = Spec(DType::kFloat64, {3}, CreateSpec::Init::kFull);
  full.value = -2.5;
  TensorPtr f = MustCreate(full);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(Values<double>(f), std::vector<double>(3, -2.5));

  // Full saturates out-of-range values for integers (fill.h).
  CreateSpec sat = Spec(DType::kInt8, {2}, CreateSpec::Init::kFull);
  sat.value = 300;
  TensorPtr s = MustCreate(sat);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(Values<int8_t>(s), std::vector<int8_t>(2, 127));
  EXPECT_EQ(store_.size(), 4);
}

TEST_F(ConversionsTest, Arange) {
  CreateSpec spec = Spec(DType::kFloat32, {5}, CreateSpec::Init::kArange);
  spec.start = 1.5;
  spec.step = -0.5;
  TensorPtr t = MustCreate(spec);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(Values<float>(t),
            (std::vector<float>{1.5f, 1.0f, 0.5f, 0.0f, -0.5f}));

  CreateSpec ints = Spec(DType::kInt32, {2, 3}, CreateSpec::Init::kArange);
  ints.start = 10;
  ints.step = 3;
  TensorPtr i = MustCreate(ints);
  ASSERT_NE(i, nullptr);
  EXPECT_EQ(Values<int32_t>(i), (std::vector<int32_t>{10, 13, 16, 19, 22, 25}));
}

TEST_F(ConversionsTest, EyeIsTwoDimensionalOnly) {
  TensorPtr t =
      MustCreate(Spec(DType::kFloat32, {2, 3}, CreateSpec::Init::kEye));
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(Values<float>(t), (std::vector<float>{1, 0, 0, 0, 1, 0}));

  for (const Shape& shape : {Shape{4}, Shape{}, Shape{2, 2, 2}}) {
    absl::StatusOr<TensorPtr> bad = CreateTensor(
        ctx_, Spec(DType::kFloat32, shape, CreateSpec::Init::kEye));
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(bad.status().message(), HasSubstr("eye needs a 2-D shape"));
  }
  EXPECT_EQ(store_.size(), 1);
  t.reset();
  absl::StatusOr<TensorStore::Page> page = store_.List(100, "", "");
  ASSERT_TRUE(page.ok());
  std::vector<std::string> all;
  for (const TensorPtr& p : page->tensors) all.push_back(p->handle);
  page->tensors.clear();
  ASSERT_TRUE(store_.Delete(all).ok());
  EXPECT_EQ(Allocated(), 0);  // the refused ones left nothing behind
}

TEST_F(ConversionsTest, RandIsReproducibleInUnitIntervalAndFloatOnly) {
  CreateSpec spec = Spec(DType::kFloat32, {1000}, CreateSpec::Init::kRand);
  spec.seed = 42;
  TensorPtr a = MustCreate(spec);
  TensorPtr b = MustCreate(spec);
  spec.seed = 43;
  TensorPtr c = MustCreate(spec);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  std::vector<float> va = Values<float>(a);
  EXPECT_EQ(va, Values<float>(b));
  EXPECT_NE(va, Values<float>(c));
  double sum = 0;
  for (float v : va) {
    EXPECT_GE(v, 0.0f);
    EXPECT_LT(v, 1.0f);
    sum += v;
  }
  EXPECT_NEAR(sum / va.size(), 0.5, 0.05);

  for (DType dtype : {DType::kInt64, DType::kUInt8, DType::kBool}) {
    absl::StatusOr<TensorPtr> bad =
        CreateTensor(ctx_, Spec(dtype, {4}, CreateSpec::Init::kRand));
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(bad.status().message(), HasSubstr("floating point"));
  }
  EXPECT_EQ(store_.size(), 3);
}

TEST_F(ConversionsTest, LiteralsConvertAndCountMustMatch) {
  TensorPtr t = MustCreate(Literal<double>(
      DType::kFloat32, {3}, DType::kFloat64, {12.14, 22.58, 32.02}));
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(Values<float>(t), (std::vector<float>{12.14f, 22.58f, 32.02f}));

  TensorPtr i = MustCreate(
      Literal<int64_t>(DType::kInt8, {2, 2}, DType::kInt64, {1, -2, 127, 128}));
  ASSERT_NE(i, nullptr);
  EXPECT_EQ(Values<int8_t>(i), (std::vector<int8_t>{1, -2, 127, -128}));

  TensorPtr scalar =
      MustCreate(Literal<double>(DType::kFloat64, {}, DType::kFloat64, {7.0}));
  ASSERT_NE(scalar, nullptr);
  EXPECT_EQ(scalar->numel, 1);
  EXPECT_EQ(Values<double>(scalar), std::vector<double>{7.0});

  TensorPtr c = MustCreate(Literal<std::complex<double>>(
      DType::kComplex64, {2}, DType::kComplex128, {{1, 2}, {-3, 4.5}}));
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(Values<std::complex<float>>(c),
            (std::vector<std::complex<float>>{{1, 2}, {-3, 4.5}}));

  for (const Shape& shape : {Shape{4}, Shape{2}, Shape{}, Shape{0}}) {
    absl::StatusOr<TensorPtr> bad =
        CreateTensor(ctx_, Literal<double>(DType::kFloat32, shape,
                                           DType::kFloat64, {1.0, 2.0, 3.0}));
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument)
        << ShapeToString(shape);
    EXPECT_THAT(bad.status().message(), HasSubstr("3 values were given"));
  }
  EXPECT_EQ(store_.size(), 4);
}

TEST_F(ConversionsTest, CreateHonoursRequiresGradNameAndDevice) {
  CreateSpec spec = Spec(DType::kFloat32, {2}, CreateSpec::Init::kOnes);
  spec.requires_grad = true;
  spec.name = "w";
  spec.device = "cpu";
  TensorPtr t = MustCreate(spec);
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(t->requires_grad);
  EXPECT_EQ(*store_.Get("w"), t);

  // The same name again, before any allocation.
  absl::StatusOr<TensorPtr> dup = CreateTensor(ctx_, spec);
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists);

  CreateSpec ints = Spec(DType::kInt32, {2}, CreateSpec::Init::kOnes);
  ints.requires_grad = true;
  absl::StatusOr<TensorPtr> bad = CreateTensor(ctx_, ints);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("can require gradients"));

  CreateSpec gpu = Spec(DType::kFloat32, {2}, CreateSpec::Init::kOnes);
  gpu.device = "cuda:0";
  EXPECT_EQ(CreateTensor(ctx_, gpu).status().code(),
            absl::StatusCode::kFailedPrecondition);
  gpu.device = "gpu";
  EXPECT_EQ(CreateTensor(ctx_, gpu).status().code(),
            absl::StatusCode::kInvalidArgument);

  CreateSpec negative = Spec(DType::kFloat32, {2, -1}, CreateSpec::Init::kOnes);
  EXPECT_EQ(CreateTensor(ctx_, negative).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_.size(), 1);
}

TEST_F(ConversionsTest, MaxTensorBytes) {
  ctx_.max_tensor_bytes = 1024;
  EXPECT_NE(MustCreate(Spec(DType::kFloat32, {256}, CreateSpec::Init::kZeros)),
            nullptr);
  absl::StatusOr<TensorPtr> big = CreateTensor(
      ctx_, Spec(DType::kFloat32, {257}, CreateSpec::Init::kZeros));
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(big.status().message(), HasSubstr("--max-tensor-bytes"));
  EXPECT_EQ(store_.size(), 1);

  EXPECT_TRUE(CheckTensorSize(1024, 1024).ok());
  EXPECT_FALSE(CheckTensorSize(1025, 1024).ok());
  EXPECT_TRUE(CheckTensorSize(int64_t{1} << 50, 0).ok());
}

TEST_F(ConversionsTest, PoolLimitIsResourceExhaustedAndLeavesNothing) {
  SetUpRegistry(8 * kMiB);
  absl::StatusOr<TensorPtr> huge = CreateTensor(
      ctx_, Spec(DType::kFloat32, {4 * kMiB}, CreateSpec::Init::kOnes));
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Allocated(), 0);
  EXPECT_EQ(store_.size(), 0);

  TensorPtr first =
      MustCreate(Spec(DType::kUInt8, {5 * kMiB}, CreateSpec::Init::kZeros));
  ASSERT_NE(first, nullptr);
  const int64_t in_use = Allocated();
  absl::StatusOr<TensorPtr> second = CreateTensor(
      ctx_, Spec(DType::kUInt8, {5 * kMiB}, CreateSpec::Init::kZeros));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Allocated(), in_use);
  EXPECT_EQ(store_.size(), 1);
  // A cast that does not fit fails the same way.
  ToSpec wider;
  wider.dtype = DType::kFloat32;
  EXPECT_EQ(ToTensor(ctx_, first, wider).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Allocated(), in_use);
  EXPECT_EQ(store_.size(), 1);
}

TEST_F(ConversionsTest, ToNoOpReturnsTheSamePointer) {
  TensorPtr t = MustCreate(Spec(DType::kFloat32, {3}, CreateSpec::Init::kOnes));
  ASSERT_NE(t, nullptr);
  const int64_t in_use = Allocated();
  ToSpec none;
  absl::StatusOr<TensorPtr> same = ToTensor(ctx_, t, none);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, t);
  ToSpec explicit_same;
  explicit_same.device = "cpu";
  explicit_same.dtype = DType::kFloat32;
  same = ToTensor(ctx_, t, explicit_same);
  ASSERT_TRUE(same.ok());
  EXPECT_EQ(*same, t);
  EXPECT_EQ(store_.size(), 1);
  EXPECT_EQ(Allocated(), in_use);

  explicit_same.copy = true;
  absl::StatusOr<TensorPtr> copy = ToTensor(ctx_, t, explicit_same);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_NE(*copy, t);
  EXPECT_NE((*copy)->storage, t->storage);
  EXPECT_NE((*copy)->handle, t->handle);
  EXPECT_EQ(Values<float>(*copy), Values<float>(t));
  EXPECT_EQ(store_.size(), 2);

  ToSpec gpu;
  gpu.device = "cuda";
  EXPECT_EQ(ToTensor(ctx_, t, gpu).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ConversionsTest, CastValuesAndRequiresGradRules) {
  CreateSpec spec = Literal<double>(DType::kFloat32, {5}, DType::kFloat64,
                                    {-1.7, 0.0, 2.5, 3.9, 65504.0 * 2});
  spec.requires_grad = true;
  TensorPtr t = MustCreate(spec);
  ASSERT_NE(t, nullptr);

  ToSpec to_double;
  to_double.dtype = DType::kFloat64;
  absl::StatusOr<TensorPtr> d = ToTensor(ctx_, t, to_double);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_TRUE((*d)->requires_grad);  // floating keeps it
  EXPECT_EQ((*d)->dtype, DType::kFloat64);
  EXPECT_EQ(Values<double>(*d)[0], static_cast<double>(-1.7f));

  ToSpec to_complex;
  to_complex.dtype = DType::kComplex64;
  absl::StatusOr<TensorPtr> c = ToTensor(ctx_, t, to_complex);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE((*c)->requires_grad);  // complex keeps it

  ToSpec to_half;
  to_half.dtype = DType::kFloat16;
  absl::StatusOr<TensorPtr> h = ToTensor(ctx_, t, to_half);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE((*h)->requires_grad);
  std::vector<uint16_t> halves = Values<uint16_t>(*h);
  EXPECT_EQ(halves[1], 0x0000);  // 0.0
  EXPECT_EQ(halves[2], 0x4100);  // 2.5
  EXPECT_EQ(halves[4], 0x7c00);  // overflow is +inf

  ToSpec to_int;
  to_int.dtype = DType::kInt32;
  absl::StatusOr<TensorPtr> i = ToTensor(ctx_, t, to_int);
  ASSERT_TRUE(i.ok()) << i.status();
  EXPECT_FALSE((*i)->requires_grad);      // integers drop it
  EXPECT_EQ(Values<int32_t>(*i)[0], -1);  // toward zero
  EXPECT_EQ(Values<int32_t>(*i)[3], 3);

  ToSpec to_bool;
  to_bool.dtype = DType::kBool;
  absl::StatusOr<TensorPtr> b = ToTensor(ctx_, t, to_bool);
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE((*b)->requires_grad);
  EXPECT_EQ(Values<uint8_t>(*b), (std::vector<uint8_t>{1, 0, 1, 1, 1}));
  EXPECT_EQ(store_.size(), 6);
}

TEST_F(ConversionsTest, ToGathersAViewIntoCOrder) {
  TensorPtr base =
      MustCreate(Spec(DType::kInt32, {2, 3}, CreateSpec::Init::kArange));
  ASSERT_NE(base, nullptr);
  NewTensor view;
  view.dtype = DType::kInt32;
  view.layout.shape = {3, 2};
  view.layout.strides = {1, 3};  // the transpose
  view.storage = base->storage;
  absl::StatusOr<TensorPtr> transposed = store_.Add(std::move(view));
  ASSERT_TRUE(transposed.ok()) << transposed.status();
  ToSpec to_long;
  to_long.dtype = DType::kInt64;
  to_long.name = "t64";
  absl::StatusOr<TensorPtr> out = ToTensor(ctx_, *transposed, to_long);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ((*out)->layout.shape, (Shape{3, 2}));
  EXPECT_EQ((*out)->layout.strides, (Strides{2, 1}));
  EXPECT_EQ(Values<int64_t>(*out), (std::vector<int64_t>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(*store_.Get("t64"), *out);

  // A name that is taken stops the cast before it allocates.
  const int64_t in_use = Allocated();
  EXPECT_EQ(ToTensor(ctx_, *transposed, to_long).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(Allocated(), in_use);
}

TEST_F(ConversionsTest, ToHonoursMaxTensorBytesOnTheResult) {
  TensorPtr t =
      MustCreate(Spec(DType::kUInt8, {1000}, CreateSpec::Init::kOnes));
  ASSERT_NE(t, nullptr);
  ctx_.max_tensor_bytes = 2000;
  ToSpec to_int;
  to_int.dtype = DType::kInt32;  // 4000 bytes
  EXPECT_EQ(ToTensor(ctx_, t, to_int).status().code(),
            absl::StatusCode::kInvalidArgument);
  to_int.dtype = DType::kInt16;  // 2000 bytes
  EXPECT_TRUE(ToTensor(ctx_, t, to_int).ok());
}

TEST_F(ConversionsTest, DetachSharesStorageAndDropsGrad) {
  CreateSpec spec = Spec(DType::kFloat64, {4}, CreateSpec::Init::kArange);
  spec.requires_grad = true;
  TensorPtr t = MustCreate(spec);
  ASSERT_NE(t, nullptr);
  const int64_t in_use = Allocated();
  absl::StatusOr<TensorPtr> d = DetachTensor(ctx_, t, "detached", 0);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_FALSE((*d)->requires_grad);
  EXPECT_TRUE(t->requires_grad);
  EXPECT_EQ((*d)->storage, t->storage);
  EXPECT_EQ((*d)->layout.shape, t->layout.shape);
  EXPECT_EQ((*d)->dtype, t->dtype);
  EXPECT_NE((*d)->handle, t->handle);
  EXPECT_EQ(Allocated(), in_use);
  EXPECT_EQ(*store_.Get("detached"), *d);
  EXPECT_EQ(DetachTensor(ctx_, t, "detached", 0).status().code(),
            absl::StatusCode::kAlreadyExists);
}

}  // namespace
}  // namespace tensorcast
