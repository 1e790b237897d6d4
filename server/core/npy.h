// The NumPy `.npy` header codec: parse the header at the start of a file (or
// of a stream's first bytes) and write the header that `np.save` writes.
//
// Contract: pure functions, thread-safe. The parser builds a small value
// tree of the header's dict while it reads it -- bounded whatever the input
// (at most a few hundred values, nesting 16 deep, its text within
// kMaxNpyHeaderBytes) and freed before it returns. Malformed input never
// crashes: it yields INVALID_ARGUMENT with a message that says what is wrong
// and where. Only the 14 dtypes in dtype.h that have an `npy_descr` are
// supported (not bfloat16, strings, objects, datetimes, structured or void
// dtypes). Data is assumed to follow the header immediately, as the format
// says; the codec never touches it except through ByteSwapElements.
//
// Format reference: numpy/lib/_format_impl.py (NumPy 2.x). Versions 1.0
// (uint16 header length), 2.0 (uint32) and 3.0 (uint32, utf-8 text).
#ifndef TENSORCAST_SERVER_CORE_NPY_H_
#define TENSORCAST_SERVER_CORE_NPY_H_

#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"
#include "server/core/shape.h"

namespace tensorcast {

// The longest header (the dict text, after the length field) we accept,
// refused from its length field alone, before its bytes are awaited.
// NumPy's own reader stops at 10000 bytes unless told otherwise; a valid
// header of rank kMaxRank is under 2 KiB.
inline constexpr int64_t kMaxNpyHeaderBytes = int64_t{64} << 10;

struct NpyHeader {
  DType dtype;
  bool fortran_order;
  // The data is big-endian and must be swapped to native (little-endian)
  // order; false for 1-byte dtypes whatever the descr says.
  bool byteswap;
  Shape shape;
  int64_t header_bytes;  // offset of the data from the start of the file
  int64_t data_bytes;    // NumBytes(shape, dtype)
  int version_major;     // 1, 2 or 3
};

// Parses the header at the start of `prefix` (which may also hold data).
// Returns std::nullopt when `prefix` ends before the header does (read more
// and call again), the header when it is complete and valid, and
// INVALID_ARGUMENT when the bytes read so far cannot be a supported header:
// bad magic, an unsupported version, a header longer than
// kMaxNpyHeaderBytes, dict syntax errors, missing or unknown keys, an
// unsupported descr, a negative or overflowing shape, a shape of more than
// kMaxRank dimensions. The dict is parsed by ParsePyLiteral (py_literal.h),
// whose limits hold while parsing: a tuple is refused at its (kMaxRank + 1)th
// item, and no more than a few hundred values are ever built, whatever the
// header holds. Input quoted in a message goes through EchoInput (escaped,
// cut short).
absl::StatusOr<std::optional<NpyHeader>> ParseNpyHeader(
    absl::string_view prefix);

// The header bytes (magic through the final '\n') that NumPy 2.x's np.save
// writes for an array of this dtype, shape and order: version 1.0, or 2.0
// when the text does not fit 65535 bytes; padded with spaces so that the data
// starts at a multiple of 64. INVALID_ARGUMENT for bfloat16 (no .npy dtype)
// and for shapes NumElements refuses.
absl::StatusOr<std::string> EncodeNpyHeader(DType dtype,
                                            std::span<const int64_t> shape,
                                            bool fortran_order = false);

// Reverses the byte order of `n` elements of `dtype` at `data`, in place;
// complex numbers are swapped per component. A no-op for 1-byte dtypes.
void ByteSwapElements(void* data, int64_t n, DType dtype);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_CORE_NPY_H_
