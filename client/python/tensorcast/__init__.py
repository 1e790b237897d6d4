"""tensorcast: tensors held by a tensorcast server, used like PyTorch's.

    import tensorcast as tc

    tc.connect("127.0.0.1:50051")
    m = tc.tensor([12.14, 22.58, 32.02])        # float32, on the server
    m.numpy()                                     # one Fetch
    t = tc.tensor([[2., 3], [4, 5]], requires_grad=True)
    t.detach().cpu().numpy()                      # still one Fetch
    a = tc.from_numpy(np.arange(6).reshape(2, 3))
    a.to(tc.float16).numpy()                      # cast in the stream

Errors that mirror PyTorch keep its type and text; the rest are
:class:`TensorcastError` subclasses with a ``.code``. See ``tensorcast.aio``
for the asyncio API.
"""

from tensorcast._api import (
    arange,
    connect,
    cuda_is_available,
    default_client,
    delete,
    empty_cache,
    eye,
    from_numpy,
    from_torch,
    full,
    get,
    list,
    ones,
    rand,
    server_info,
    shared_empty,
    stats,
    tensor,
    zeros,
)
from tensorcast._client import Client, RemoteTensor
from tensorcast._dtypes import (
    ALL_DTYPES,
    as_dtype,
    bfloat16,
    complex64,
    complex128,
    dtype,
    float16,
    float32,
    float64,
    int8,
    int16,
    int32,
    int64,
    uint8,
    uint16,
    uint32,
    uint64,
)
from tensorcast._dtypes import bool_ as bool  # noqa: A001 - torch's name
from tensorcast._errors import (
    AlreadyExistsError,
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutOfMemoryError,
    OutOfRangeError,
    PermissionDeniedError,
    TensorcastError,
    UnauthenticatedError,
    UnavailableError,
)

# PyTorch's dtype aliases.
half = float16
float = float32  # noqa: A001
double = float64
cfloat = complex64
cdouble = complex128
short = int16
int = int32  # noqa: A001
long = int64
bool_ = bool

__version__ = "0.1.0"

__all__ = [
    "connect", "default_client", "Client", "RemoteTensor",
    "tensor", "from_numpy", "from_torch", "zeros", "ones", "full", "arange", "eye",
    "rand", "get", "list", "delete", "shared_empty", "stats", "server_info", "cuda_is_available",
    "empty_cache", "dtype", "as_dtype", "ALL_DTYPES",
    "bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32", "uint64",
    "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
    "half", "float", "double", "cfloat", "cdouble", "short", "int", "long",
    "TensorcastError", "NotFoundError", "InvalidArgumentError", "AlreadyExistsError",
    "FailedPreconditionError", "OutOfMemoryError", "UnavailableError",
    "DeadlineExceededError", "CancelledError", "UnauthenticatedError",
    "PermissionDeniedError", "OutOfRangeError", "InternalError",
]
