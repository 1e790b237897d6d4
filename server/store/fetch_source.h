// FetchSource: the bytes a Fetch streams — a .npy file or RAW elements, cast
// on the fly — produced on demand for any byte range, so a stream holds only
// the chunk it is sending, whatever the tensor size.
//
// Open() applies the rules of Tensor.numpy(): without detach/cpu/force, a
// GPU tensor or one that requires grad is refused with PyTorch's message.
// A FetchSource keeps its tensor (and so its storage) alive; it is immutable
// and Read() may be called from any thread.
#ifndef TENSORCAST_SERVER_STORE_FETCH_SOURCE_H_
#define TENSORCAST_SERVER_STORE_FETCH_SOURCE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "server/store/tensor_store.h"

namespace tensorcast {

enum class WireFormat { kNpy, kRaw };

struct FetchSpec {
  WireFormat format = WireFormat::kNpy;
  std::optional<DType> dtype;  // cast on the fly
  bool detach = false;
  bool cpu = false;
  bool force = false;  // = detach + cpu
  int64_t offset = 0;  // byte range of the output
  int64_t length = 0;  // 0 = to the end
};

class FetchSource {
 public:
  // FAILED_PRECONDITION for the Tensor.numpy() refusals; INVALID_ARGUMENT
  // for bfloat16 as NPY or a negative range; OUT_OF_RANGE for an offset past
  // the end.
  static absl::StatusOr<FetchSource> Open(TensorPtr tensor,
                                          const FetchSpec& spec);

  const TensorPtr& tensor() const { return tensor_; }
  DType out_dtype() const { return out_dtype_; }
  // Size of the whole output (.npy header + data, or data alone).
  int64_t total_bytes() const { return total_bytes_; }
  // The range this Fetch sends: [begin, end).
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }

  // The .npy header that starts the output (empty for RAW).
  const std::string& header() const { return header_; }

  // Writes output bytes [pos, pos + n) into dst; the range must lie within
  // [0, total_bytes()). Host tensors only: a GPU tensor's bytes are read
  // through a FetchStream (fetch_stream.h).
  void Read(int64_t pos, int64_t n, char* dst) const;

 private:
  FetchSource() = default;
  // Elements [first, first + count) of the output, cast, into dst.
  void ReadElements(int64_t first, int64_t count, char* dst) const;

  TensorPtr tensor_;
  DType out_dtype_ = DType::kFloat32;
  std::string header_;  // the .npy header, empty for RAW
  int64_t total_bytes_ = 0;
  int64_t begin_ = 0;
  int64_t end_ = 0;
  bool plain_copy_ = false;  // contiguous and no cast: memcpy from storage
};

// PyTorch's messages, for clients that map them back to its exceptions.
inline constexpr char kRequiresGradMessage[] =
    "Can't call numpy() on Tensor that requires grad. Use "
    "tensor.detach().numpy() instead.";

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_FETCH_SOURCE_H_
