// Tests PutSink (put_sink.h): RAW and .npy uploads in pieces of any size,
// byte counts checked early and last, big-endian and Fortran-order files
// (hand-made and written by NumPy), and that nothing becomes visible or
// stays allocated unless the upload finishes.
#include "server/store/put_sink.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/npy.h"
#include "server/store/device.h"
#include "server/store/fetch_source.h"
#include "server/store/store_test_util.h"
#include "server/store/tensor_store.h"
#include "tests/support/test_support.h"

namespace tensorcast {
namespace {

using ::testing::HasSubstr;

class PutSinkTest : public testing::HostStoreTest {
 protected:
  std::unique_ptr<PutSink> MustStart(PutSpec spec) {
    absl::StatusOr<std::unique_ptr<PutSink>> sink =
        PutSink::Start(ctx_, std::move(spec));
    EXPECT_TRUE(sink.ok()) << sink.status();
    return sink.ok() ? *std::move(sink) : nullptr;
  }

  static PutSpec Raw(DType dtype, Shape shape) {
    PutSpec spec;
    spec.format = WireFormat::kRaw;
    spec.dtype = dtype;
    spec.shape = std::move(shape);
    return spec;
  }
  static PutSpec Npy() {
    PutSpec spec;
    spec.format = WireFormat::kNpy;
    return spec;
  }

  // Writes `bytes` in pieces of `piece` bytes; the first error, if any.
  static absl::Status WriteInPieces(PutSink& sink, const std::string& bytes,
                                    size_t piece) {
    for (size_t pos = 0; pos < bytes.size(); pos += piece) {
      absl::Status s = sink.Write(absl::string_view(bytes).substr(pos, piece));
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // The tensor's elements in C order, as a RAW Fetch gives them.
  static std::string COrderBytes(const TensorPtr& t) {
    FetchSpec raw;
    raw.format = WireFormat::kRaw;
    absl::StatusOr<FetchSource> src = FetchSource::Open(t, raw);
    EXPECT_TRUE(src.ok()) << src.status();
    if (!src.ok()) return "";
    std::string out(static_cast<size_t>(src->total_bytes()), '\0');
    src->Read(0, src->total_bytes(), out.data());
    return out;
  }

  template <typename T>
  static std::string Bytes(const std::vector<T>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()),
                       v.size() * sizeof(T));
  }

  static std::string Iota32(int n) {
    std::vector<int32_t> v(n);
    for (int i = 0; i < n; ++i) v[i] = i * 1000 - 7;
    return Bytes(v);
  }
};

TEST_F(PutSinkTest, RawExactCountIsStoredOnlyAtFinish) {
  const std::string data = Iota32(6);
  PutSpec spec = Raw(DType::kInt32, {2, 3});
  spec.name = "up";
  std::unique_ptr<PutSink> sink = MustStart(spec);
  ASSERT_NE(sink, nullptr);
  EXPECT_GE(Allocated(), 24);  // RAW reserves at Start
  ASSERT_TRUE(WriteInPieces(*sink, data, 5).ok());
  EXPECT_EQ(sink->received_bytes(), 24);
  EXPECT_EQ(store_.size(), 0);  // nothing visible yet
  EXPECT_EQ(store_.Get("up").status().code(), absl::StatusCode::kNotFound);

  absl::StatusOr<TensorPtr> t = sink->Finish();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->dtype, DType::kInt32);
  EXPECT_EQ((*t)->layout.shape, (Shape{2, 3}));
  EXPECT_TRUE((*t)->layout.IsContiguous());
  EXPECT_EQ(std::string((*t)->storage_bytes(), 24), data);
  EXPECT_EQ(*store_.Get("up"), *t);
  sink.reset();
  EXPECT_GE(Allocated(), 24);  // the stored tensor owns it now
}

TEST_F(PutSinkTest, RawShortFailsAtFinish) {
  std::unique_ptr<PutSink> sink = MustStart(Raw(DType::kInt32, {2, 3}));
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Write(Iota32(5)).ok());
  absl::StatusOr<TensorPtr> t = sink->Finish();
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("byte count mismatch"));
  EXPECT_THAT(t.status().message(), HasSubstr("24"));
  EXPECT_THAT(t.status().message(), HasSubstr("20"));
  EXPECT_EQ(store_.size(), 0);
  sink.reset();
  EXPECT_EQ(Allocated(), 0);
}

TEST_F(PutSinkTest, RawLongFailsAtWrite) {
  std::unique_ptr<PutSink> sink = MustStart(Raw(DType::kInt32, {2, 3}));
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Write(Iota32(4)).ok());
  absl::Status s = sink->Write(Iota32(3));  // 28 of 24 bytes
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("byte count mismatch"));
  EXPECT_EQ(store_.size(), 0);
  sink.reset();
  EXPECT_EQ(Allocated(), 0);
}

// WriteFrom on a host RAW upload hands `read` the tensor's own storage, at
// the next data byte; the counts and errors are Write's.
TEST_F(PutSinkTest, WriteFromReadsStraightIntoHostStorage) {
  const std::string data = Iota32(6);
  std::unique_ptr<PutSink> sink = MustStart(Raw(DType::kInt32, {2, 3}));
  ASSERT_NE(sink, nullptr);
  std::vector<char*> given;
  for (size_t pos : {size_t{0}, size_t{10}}) {
    const size_t n = pos == 0 ? 10 : 14;
    ASSERT_TRUE(sink->WriteFrom(static_cast<int64_t>(n),
                                [&](char* dst) {
                                  given.push_back(dst);
                                  std::memcpy(dst, data.data() + pos, n);
                                  return absl::OkStatus();
                                })
                    .ok());
  }
  EXPECT_EQ(sink->received_bytes(), 24);
  absl::StatusOr<TensorPtr> t = sink->Finish();
  ASSERT_TRUE(t.ok()) << t.status();
  ASSERT_EQ(given.size(), 2u);
  EXPECT_EQ(given[0], (*t)->storage_bytes());
  EXPECT_EQ(given[1], (*t)->storage_bytes() + 10);
  EXPECT_EQ(std::string((*t)->storage_bytes(), 24), data);
}

TEST_F(PutSinkTest, WriteFromChecksBeforeReading) {
  std::unique_ptr<PutSink> sink = MustStart(Raw(DType::kInt32, {2, 3}));
  ASSERT_NE(sink, nullptr);
  bool called = false;
  absl::Status s = sink->WriteFrom(28, [&](char*) {
    called = true;
    return absl::OkStatus();
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("byte count mismatch"));
  EXPECT_FALSE(called);
  // The reader's own failure is the call's.
  s = sink->WriteFrom(
      4, [](char*) { return absl::DataLossError("the region shrank"); });
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(store_.size(), 0);
  sink.reset();
  EXPECT_EQ(Allocated(), 0);
}

// A read that fails once its bytes are counted (the region went away
// midway) leaves the upload unusable: Finish stores nothing even though
// every byte was counted.
TEST_F(PutSinkTest, WriteFromFailedReadIsNeverStored) {
  const std::string data = Iota32(6);
  std::unique_ptr<PutSink> sink = MustStart(Raw(DType::kInt32, {2, 3}));
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->WriteFrom(12,
                              [&](char* dst) {
                                std::memcpy(dst, data.data(), 12);
                                return absl::OkStatus();
                              })
                  .ok());
  absl::Status s = sink->WriteFrom(12, [&](char* dst) {
    std::memcpy(dst, data.data() + 12, 4);  // part, then the failure
    return absl::DataLossError("the region shrank");
  });
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  absl::StatusOr<TensorPtr> t = sink->Finish();
  EXPECT_EQ(t.status().code(), absl::StatusCode::kFailedPrecondition)
      << t.status();
  EXPECT_EQ(store_.size(), 0);
  sink.reset();
  EXPECT_EQ(Allocated(), 0);
}

// Before the .npy header is complete there is no storage yet: the bytes go
// through a buffer and Write, header and data alike.
TEST_F(PutSinkTest, WriteFromBeforeTheNpyHeader) {
  const std::string data = Iota32(12);
  const std::string file = *EncodeNpyHeader(DType::kInt32, Shape{3, 4}) + data;
  std::unique_ptr<PutSink> sink = MustStart(Npy());
  ASSERT_NE(sink, nullptr);
  for (size_t pos = 0; pos < file.size(); pos += 50) {
    const size_t n = std::min<size_t>(50, file.size() - pos);
    ASSERT_TRUE(sink->WriteFrom(static_cast<int64_t>(n),
                                [&](char* dst) {
                                  std::memcpy(dst, file.data() + pos, n);
                                  return absl::OkStatus();
                                })
                    .ok());
  }
  absl::StatusOr<TensorPtr> t = sink->Finish();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(COrderBytes(*t), data);
}

TEST_F(PutSinkTest, RawHeaderChecks) {
  PutSpec no_dtype = Raw(DType::kInt32, {2});
  no_dtype.dtype.reset();
  EXPECT_EQ(PutSink::Start(ctx_, no_dtype).status().code(),
            absl::StatusCode::kInvalidArgument);

  PutSpec grad = Raw(DType::kInt64, {2});
  grad.requires_grad = true;
  absl::StatusOr<std::unique_ptr<PutSink>> s = PutSink::Start(ctx_, grad);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("can require gradients"));

  PutSpec bad_shape = Raw(DType::kFloat32, {-3});
  EXPECT_EQ(PutSink::Start(ctx_, bad_shape).status().code(),
            absl::StatusCode::kInvalidArgument);

  PutSpec gpu = Raw(DType::kFloat32, {2});
  gpu.device = "cuda:1";
  EXPECT_EQ(PutSink::Start(ctx_, gpu).status().code(),
            absl::StatusCode::kFailedPrecondition);

  PutSpec negative = Raw(DType::kFloat32, {2});
  negative.ttl_seconds = -1;
  EXPECT_EQ(PutSink::Start(ctx_, negative).status().code(),
            absl::StatusCode::kInvalidArgument);

  ctx_.max_tensor_bytes = 100;
  absl::StatusOr<std::unique_ptr<PutSink>> big =
      PutSink::Start(ctx_, Raw(DType::kFloat32, {26}));
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(big.status().message(), HasSubstr("--max-tensor-bytes"));
  EXPECT_TRUE(PutSink::Start(ctx_, Raw(DType::kFloat32, {25})).ok());
  EXPECT_EQ(Allocated(), 0);
}

TEST_F(PutSinkTest, RawAnnouncedTotalMustMatch) {
  PutSpec wrong = Raw(DType::kInt32, {2, 3});
  wrong.total_bytes = 25;
  absl::StatusOr<std::unique_ptr<PutSink>> s = PutSink::Start(ctx_, wrong);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("announces 25"));
  EXPECT_EQ(Allocated(), 0);

  PutSpec right = Raw(DType::kInt32, {2, 3});
  right.total_bytes = 24;
  std::unique_ptr<PutSink> sink = MustStart(right);
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Write(Iota32(6)).ok());
  EXPECT_EQ(sink->Write("x").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PutSinkTest, PoolLimitIsResourceExhausted) {
  SetUpRegistry(4 << 20);
  absl::StatusOr<std::unique_ptr<PutSink>> s =
      PutSink::Start(ctx_, Raw(DType::kFloat32, {2 << 20}));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Allocated(), 0);

  // For .npy the reservation happens when the header is complete.
  std::unique_ptr<PutSink> npy = MustStart(Npy());
  ASSERT_NE(npy, nullptr);
  absl::Status w =
      npy->Write(*EncodeNpyHeader(DType::kFloat32, Shape{2 << 20}));
  EXPECT_EQ(w.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Allocated(), 0);
}

TEST_F(PutSinkTest, NameIsCheckedAtStartAndAgainAtFinish) {
  std::unique_ptr<PutSink> empty = MustStart(Raw(DType::kUInt8, {0}));
  ASSERT_NE(empty, nullptr);
  ASSERT_TRUE(empty->Finish().ok());
  PutSpec named = Raw(DType::kUInt8, {4});
  named.name = "taken";
  std::unique_ptr<PutSink> first = MustStart(named);
  std::unique_ptr<PutSink> second = MustStart(named);  // still free now
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  ASSERT_TRUE(first->Write("abcd").ok());
  ASSERT_TRUE(second->Write("efgh").ok());
  ASSERT_TRUE(first->Finish().ok());
  EXPECT_EQ(PutSink::Start(ctx_, named).status().code(),
            absl::StatusCode::kAlreadyExists);
  absl::StatusOr<TensorPtr> late = second->Finish();
  EXPECT_EQ(late.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(std::string((*store_.Get("taken"))->storage_bytes(), 4), "abcd");
  EXPECT_EQ(store_.size(), 2);
  named.name = "has space";
  EXPECT_EQ(PutSink::Start(ctx_, named).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PutSinkTest, NpyHeaderSplitAcrossOneByteWrites) {
  const std::string data = Iota32(12);
  const std::string file = *EncodeNpyHeader(DType::kInt32, Shape{3, 4}) + data;
  PutSpec spec = Npy();
  spec.total_bytes = static_cast<int64_t>(file.size());
  std::unique_ptr<PutSink> sink = MustStart(spec);
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(Allocated(), 0);  // NPY reserves once the header is read
  ASSERT_TRUE(WriteInPieces(*sink, file, 1).ok());
  EXPECT_EQ(sink->received_bytes(), static_cast<int64_t>(file.size()));
  absl::StatusOr<TensorPtr> t = sink->Finish();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->dtype, DType::kInt32);
  EXPECT_EQ((*t)->layout.shape, (Shape{3, 4}));
  EXPECT_TRUE((*t)->layout.IsContiguous());
  EXPECT_EQ(COrderBytes(*t), data);
}

TEST_F(PutSinkTest, NpyInAnyPieceSize) {
  const std::string data = Iota32(100);
  const std::string file =
      *EncodeNpyHeader(DType::kInt32, Shape{10, 10}) + data;
  for (size_t piece : {2, 3, 7, 63, 64, 65, 127, 128, 200, 10000}) {
    SCOPED_TRACE(piece);
    std::unique_ptr<PutSink> sink = MustStart(Npy());
    ASSERT_NE(sink, nullptr);
    ASSERT_TRUE(WriteInPieces(*sink, file, piece).ok());
    absl::StatusOr<TensorPtr> t = sink->Finish();
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ(COrderBytes(*t), data);
  }
}

TEST_F(PutSinkTest, NpyBigEndianIsSwapped) {
  const std::vector<double> values = {1.5, -2.25, 1e10, 0.0, -0.0, 3.0};
  std::string header = *EncodeNpyHeader(DType::kFloat64, Shape{2, 3});
  ASSERT_NE(header.find("'<f8'"), std::string::npos);
  header = absl::StrReplaceAll(header, {{"'<f8'", "'>f8'"}});
  std::string data = Bytes(values);
  for (size_t i = 0; i < values.size(); ++i) {
    std::reverse(data.begin() + 8 * i, data.begin() + 8 * (i + 1));
  }
  std::unique_ptr<PutSink> sink = MustStart(Npy());
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(WriteInPieces(*sink, header + data, 5).ok());
  absl::StatusOr<TensorPtr> t = sink->Finish();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->dtype, DType::kFloat64);
  EXPECT_EQ(COrderBytes(*t), Bytes(values));
}

TEST_F(PutSinkTest, NpyFortranOrderIsFetchedInCOrder) {
  // A 2x3 int16 array [[1, 2, 3], [4, 5, 6]] in column-major order.
  const std::vector<int16_t> fortran = {1, 4, 2, 5, 3, 6};
  const std::vector<int16_t> c_order = {1, 2, 3, 4, 5, 6};
  std::string file =
      *EncodeNpyHeader(DType::kInt16, Shape{2, 3}, /*fortran_order=*/true) +
      Bytes(fortran);
  std::unique_ptr<PutSink> sink = MustStart(Npy());
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Write(file).ok());
  absl::StatusOr<TensorPtr> t = sink->Finish();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->layout.shape, (Shape{2, 3}));
  EXPECT_EQ((*t)->layout.strides, FortranStrides(Shape{2, 3}));
  EXPECT_FALSE((*t)->layout.IsContiguous());
  EXPECT_EQ(COrderBytes(*t), Bytes(c_order));
}

TEST_F(PutSinkTest, NumPyWrittenFilesRoundTrip) {
  testing::TempDir dir;
  testing::CommandResult numpy = testing::RunPython(R"py(
import os, sys
import numpy as np
os.chdir(sys.argv[1])
a = (np.arange(60, dtype=np.float64) * 1.25 - 7).reshape(3, 4, 5)
np.save('fortran_be.npy', np.asfortranarray(a).astype('>f8', order='F'))
np.save('be_i4.npy', a.astype('>i4'))
np.save('c_c64.npy', (a + 0.5j).astype(np.complex64))
a.astype('<f8').tofile('want_f8.bin')
a.astype('<i4').tofile('want_i4.bin')
(a + 0.5j).astype(np.complex64).tofile('want_c64.bin')
print('ok')
)py",
                                                    {dir.path()});
  ASSERT_EQ(numpy.exit_code, 0) << numpy.err;
  struct Case {
    const char* file;
    const char* want;
    DType dtype;
  };
  for (const Case& c : {Case{"fortran_be.npy", "want_f8.bin", DType::kFloat64},
                        Case{"be_i4.npy", "want_i4.bin", DType::kInt32},
                        Case{"c_c64.npy", "want_c64.bin", DType::kComplex64}}) {
    SCOPED_TRACE(c.file);
    absl::StatusOr<std::string> file = testing::ReadFile(dir.File(c.file));
    absl::StatusOr<std::string> want = testing::ReadFile(dir.File(c.want));
    ASSERT_TRUE(file.ok() && want.ok());
    PutSpec spec = Npy();
    spec.dtype = c.dtype;  // optional for NPY; must match when given
    spec.shape = {3, 4, 5};
    spec.total_bytes = static_cast<int64_t>(file->size());
    std::unique_ptr<PutSink> sink = MustStart(spec);
    ASSERT_NE(sink, nullptr);
    ASSERT_TRUE(WriteInPieces(*sink, *file, 13).ok());
    absl::StatusOr<TensorPtr> t = sink->Finish();
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_EQ((*t)->dtype, c.dtype);
    EXPECT_EQ(COrderBytes(*t), *want);
    // And a .npy Fetch gives back what NumPy would have saved in C order.
    absl::StatusOr<FetchSource> src = FetchSource::Open(*t, {});
    ASSERT_TRUE(src.ok());
    std::string npy(static_cast<size_t>(src->total_bytes()), '\0');
    src->Read(0, src->total_bytes(), npy.data());
    EXPECT_EQ(npy, *EncodeNpyHeader(c.dtype, Shape{3, 4, 5}) + *want);
  }
}

TEST_F(PutSinkTest, NpyAnnouncedTotalMismatch) {
  const std::string file =
      *EncodeNpyHeader(DType::kFloat32, Shape{4}) + std::string(16, '\0');
  // Announcing more than the header implies: refused once the header is in.
  PutSpec more = Npy();
  more.total_bytes = static_cast<int64_t>(file.size()) + 4;
  std::unique_ptr<PutSink> sink = MustStart(more);
  ASSERT_NE(sink, nullptr);
  absl::Status s = sink->Write(file);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("byte count mismatch"));
  EXPECT_EQ(Allocated(), 0);

  // Announcing less: refused as soon as more arrives.
  PutSpec less = Npy();
  less.total_bytes = static_cast<int64_t>(file.size()) - 4;
  sink = MustStart(less);
  ASSERT_NE(sink, nullptr);
  s = WriteInPieces(*sink, file, 8);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("byte count mismatch"));
  EXPECT_EQ(store_.size(), 0);
}

TEST_F(PutSinkTest, NpyDataTooLongOrTooShort) {
  const std::string header = *EncodeNpyHeader(DType::kUInt8, Shape{10});
  std::unique_ptr<PutSink> sink = MustStart(Npy());
  ASSERT_NE(sink, nullptr);
  // The extra byte arrives in the same write as the header.
  absl::Status s = sink->Write(header + std::string(11, 'x'));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("byte count mismatch"));

  sink = MustStart(Npy());
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Write(header + std::string(9, 'x')).ok());
  EXPECT_EQ(sink->Finish().status().code(), absl::StatusCode::kInvalidArgument);

  sink = MustStart(Npy());
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Write(header.substr(0, 20)).ok());
  absl::StatusOr<TensorPtr> t = sink->Finish();
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(t.status().message(), HasSubstr("truncated"));
  EXPECT_EQ(store_.size(), 0);
}

TEST_F(PutSinkTest, NpyMalformedOrMismatchedHeader) {
  std::unique_ptr<PutSink> sink = MustStart(Npy());
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(sink->Write("not a numpy file at all").code(),
            absl::StatusCode::kInvalidArgument);

  PutSpec want_f32 = Npy();
  want_f32.dtype = DType::kFloat32;
  want_f32.shape = {4};
  sink = MustStart(want_f32);
  ASSERT_NE(sink, nullptr);
  absl::Status s = sink->Write(*EncodeNpyHeader(DType::kFloat64, Shape{4}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("float64"));

  sink = MustStart(want_f32);
  ASSERT_NE(sink, nullptr);
  s = sink->Write(*EncodeNpyHeader(DType::kFloat32, Shape{2, 2}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);

  PutSpec grad = Npy();
  grad.requires_grad = true;
  sink = MustStart(grad);
  ASSERT_NE(sink, nullptr);
  s = sink->Write(*EncodeNpyHeader(DType::kInt32, Shape{4}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("can require gradients"));
  EXPECT_EQ(Allocated(), 0);
  EXPECT_EQ(store_.size(), 0);
}

TEST_F(PutSinkTest, DestroyedUnfinishedSinkReturnsItsStorage) {
  {
    std::unique_ptr<PutSink> raw = MustStart(Raw(DType::kFloat32, {1 << 20}));
    ASSERT_NE(raw, nullptr);
    ASSERT_TRUE(raw->Write(std::string(1000, 'a')).ok());
    EXPECT_GE(Allocated(), 4 << 20);
  }
  EXPECT_EQ(Allocated(), 0);
  {
    std::unique_ptr<PutSink> npy = MustStart(Npy());
    ASSERT_NE(npy, nullptr);
    ASSERT_TRUE(
        npy->Write(*EncodeNpyHeader(DType::kFloat64, Shape{512, 512})).ok());
    EXPECT_GE(Allocated(), 2 << 20);
  }
  EXPECT_EQ(Allocated(), 0);
  EXPECT_EQ(store_.size(), 0);
}

TEST_F(PutSinkTest, RequiresGradAndTtlCarryOver) {
  PutSpec spec = Raw(DType::kFloat32, {2});
  spec.requires_grad = true;
  spec.ttl_seconds = 60;
  std::unique_ptr<PutSink> sink = MustStart(spec);
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Write(std::string(8, '\0')).ok());
  absl::StatusOr<TensorPtr> t = sink->Finish();
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_TRUE((*t)->requires_grad);
  EXPECT_EQ((*t)->expires_unix_s, (*t)->created_unix_s + 60);
}

}  // namespace
}  // namespace tensorcast
