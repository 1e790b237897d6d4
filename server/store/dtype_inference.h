// The dtype a Create makes when the request names none, after PyTorch:
// torch.tensor infers it from the values given, the factories (zeros,
// ones, full, arange, eye, rand) make the default dtype, float32. Pure
// functions, thread-safe.
#ifndef TENSORCAST_SERVER_STORE_DTYPE_INFERENCE_H_
#define TENSORCAST_SERVER_STORE_DTYPE_INFERENCE_H_

#include "common/dtype.h"
#include "server/store/conversions.h"

namespace tensorcast {

// torch.tensor's inference from the dtype literal values are packed as
// (CreateSpec::literal_dtype): bools stay bool, integers (signed or not)
// become int64, complex numbers complex64 and anything else (floats) the
// default dtype, float32.
DType InferLiteralDType(DType packed);

// The dtype `spec` makes when none is asked for: InferLiteralDType of its
// literal for kLiteral, float32 for every other init. Reads only
// spec.init and spec.literal_dtype.
DType InferCreateDType(const CreateSpec& spec);

}  // namespace tensorcast

#endif  // TENSORCAST_SERVER_STORE_DTYPE_INFERENCE_H_
