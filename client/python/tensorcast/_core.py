"""The parts of the client that do no I/O, shared by the blocking client and
tensorcast.aio: request building, the upload chunker, the fetch assembler,
literal parsing for tc.tensor, and argument parsing for ``.to()``."""

from __future__ import annotations

import dataclasses
import math
import numbers
import sys
import warnings
from typing import Any, Iterator, Optional, Sequence, cast

import numpy as np

from tensorcast import _dtypes
from tensorcast._dtypes import dtype
from tensorcast.v1 import tensor_service_pb2 as pb

# Fetch messages the server sends carry at most this much data.
MAX_CHUNK_BYTES = 64 << 20
# The channel's own cap, above the server's largest message.
MAX_MESSAGE_BYTES = 70 << 20
# Put messages carry at most this much: the server refuses any message over
# 1 MiB + 64 KiB unparsed.
MAX_PUT_CHUNK_BYTES = 1 << 20
DEFAULT_PUT_CHUNK_BYTES = 1 << 20
# The server deletes at most this many refs per Delete call.
MAX_DELETE_REFS = 1000
# Literal values at or below this count go in a Create request; above it the
# values are packed into an array locally and uploaded with Put (a proto
# message must stay under the message cap).
MAX_LITERAL_ELEMENTS = 1 << 16


@dataclasses.dataclass(frozen=True)
class Meta:
    """What the client knows about a server tensor (or a pending conversion
    of one)."""

    shape: tuple[int, ...]
    dtype: dtype
    device: str
    requires_grad: bool
    handle: Optional[str] = None
    name: str = ""
    nbytes: int = 0

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def meta_from_info(info: pb.TensorInfo) -> Meta:
    """A Meta from the server's TensorInfo."""
    return Meta(shape=tuple(int(s) for s in info.shape),
                dtype=_dtypes.from_proto(info.dtype), device=info.device,
                requires_grad=info.requires_grad, handle=info.handle,
                name=info.name, nbytes=int(info.nbytes))


def normalize_device(device: Any) -> str:
    """``"cuda"`` -> ``"cuda:0"``, None/"" -> ``"cpu"``; accepts torch.device
    and integers (a CUDA index) as torch does."""
    if device is None:
        return "cpu"
    if isinstance(device, int) and not isinstance(device, bool):
        return f"cuda:{device}"
    text = str(device).strip().lower()
    if text in ("", "cpu"):
        return "cpu"
    if text == "cuda":
        return "cuda:0"
    return text


def cuda_index(device: Any) -> int:
    """The ordinal of a CUDA device given as N, "cuda", "cuda:N" or a
    torch.device (``"cuda"``: 0); ValueError for anything else."""
    name = normalize_device(device)
    if not name.startswith("cuda:"):
        raise ValueError(f"not a CUDA device: {device!r}")
    return int(name.split(":", 1)[1])


def is_device_like(value: Any) -> bool:
    """Whether ``value`` names a device (for ``.to(device)``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return True
    text = str(value).strip().lower()
    return text == "cpu" or text.startswith("cuda") or type(value).__name__ == "device"


# ---------------------------------------------------------------------------
# Upload.

def _little_endian(np_dtype: np.dtype) -> np.dtype:
    return np_dtype.newbyteorder("<") if np_dtype.byteorder not in ("|", "<") else np_dtype


def _wire_view(array: np.ndarray) -> np.ndarray:
    """The array with a dtype whose bytes the wire carries as-is: bfloat16
    (an ml_dtypes type) as uint16, anything else unchanged."""
    if array.dtype.name == "bfloat16":
        return array.view(np.uint16)
    return array


def iter_c_order_bytes(array: np.ndarray, chunk_bytes: int) -> Iterator[bytes]:
    """The elements of ``array`` in C order, little-endian, as byte chunks of
    about ``chunk_bytes``: whatever its strides, order or byte order, without
    ever copying the whole array (memory stays at about one chunk)."""
    a = _wire_view(array)
    wire = _little_endian(a.dtype)
    if a.size == 0:
        return
    if a.flags.c_contiguous and (a.dtype == wire or a.dtype.itemsize == 1):
        flat = memoryview(cast(Any, a.reshape(-1).view(np.uint8)))
        for start in range(0, flat.nbytes, chunk_bytes):
            yield bytes(flat[start:start + chunk_bytes])
        return
    # Strided, Fortran-order or byte-swapped: NumPy's buffered iterator
    # gathers (and swaps) one chunk at a time in C order.
    elements = max(1, chunk_bytes // a.dtype.itemsize)
    it = np.nditer(a, flags=["external_loop", "buffered", "zerosize_ok"],  # type: ignore[call-overload]
                   op_flags=[["readonly"]], op_dtypes=[wire], order="C",
                   casting="equiv", buffersize=elements)
    pending: list[bytes] = []
    size = 0
    for block in it:
        pending.append(block.tobytes())
        size += block.nbytes
        if size >= chunk_bytes:
            yield b"".join(pending) if len(pending) > 1 else pending[0]
            pending, size = [], 0
    if pending:
        yield b"".join(pending) if len(pending) > 1 else pending[0]


def put_header(array: np.ndarray, *, device: Any, requires_grad: bool,
               name: Optional[str], ttl: Optional[float],
               wire_dtype: Optional[dtype] = None) -> pb.PutRequest:
    """The first Put message for uploading ``array`` in RAW format
    (``wire_dtype`` overrides the array's dtype: bfloat16 bits in uint16)."""
    tdtype = wire_dtype or _dtypes.from_numpy_dtype(array.dtype)
    if tdtype.itemsize != array.dtype.itemsize:
        raise ValueError(f"{array.dtype} data cannot be sent as {tdtype.name}")
    return put_header_for(array.shape, tdtype, device=device, requires_grad=requires_grad,
                          name=name, ttl=ttl)


def put_header_for(shape: Sequence[int], tdtype: dtype, *, device: Any,
                   requires_grad: bool, name: Optional[str],
                   ttl: Optional[float]) -> pb.PutRequest:
    """The first Put message for ``shape`` ``tdtype`` values in RAW format."""
    header = pb.PutHeader(
        dtype=tdtype.proto, shape=[int(s) for s in shape], device=normalize_device(device),
        requires_grad=bool(requires_grad), name=name or "",
        ttl_seconds=_ttl(ttl), format=pb.FORMAT_RAW,
        total_bytes=math.prod(int(s) for s in shape) * tdtype.itemsize)
    return pb.PutRequest(header=header)


def _ttl(ttl: Optional[float]) -> int:
    if ttl is None:
        return 0
    if ttl <= 0:
        raise ValueError("ttl must be positive (seconds); None means the "
                         "server's default")
    return max(1, int(math.ceil(ttl)))


def as_upload_array(data: Any) -> np.ndarray:
    """An ndarray to upload; refuses object and other unsupported dtypes with
    torch.from_numpy's TypeError."""
    if not isinstance(data, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(data).__name__})")
    _dtypes.from_numpy_dtype(data.dtype)  # raises TypeError when unsupported
    return data


# ---------------------------------------------------------------------------
# Fetch.

class FetchSink:
    """Receives one Fetch stream in RAW format into a single preallocated
    array: ``np.empty`` of the announced dtype and shape, each chunk written
    into its place through a memoryview, so peak memory is the array plus one
    message."""

    def __init__(self, header: pb.FetchHeader, *, progress: Any = None,
                 bits: bool = False, out: Optional[np.ndarray] = None) -> None:
        info = header.tensor
        self.dtype = _dtypes.from_proto(info.dtype)
        self.shape = tuple(int(s) for s in info.shape)
        if bits and self.dtype is _dtypes.bfloat16:
            np_dtype = np.dtype("<u2")  # the raw bits, for torch
        else:
            np_dtype = _little_endian(self.dtype.numpy_dtype)
        if out is not None:
            # The caller's array (checked before the call, again here
            # against what the stream says it holds).
            self.array = check_out(out, self.dtype, self.shape)
        else:
            self.array = np.empty(self.shape, dtype=np_dtype)
        self.expected = int(self.array.nbytes)
        if header.format != pb.FORMAT_RAW or header.total_bytes != self.expected:
            raise RuntimeError(
                f"unexpected Fetch stream: format {header.format}, "
                f"{header.total_bytes} bytes for {self.shape} {self.dtype.name}")
        self._view = memoryview(cast(Any, self.array.reshape(-1).view(np.uint8)))
        self.received = 0
        self._progress = progress

    def write(self, data: bytes) -> None:
        n = len(data)
        if n == 0:
            return
        end = self.received + n
        if end > self.expected:
            raise RuntimeError(f"Fetch stream sent {end} bytes, more than the "
                               f"{self.expected} announced")
        self._view[self.received:end] = data
        self.received = end
        if self._progress is not None:
            self._progress.update(n)

    def writable(self) -> memoryview:
        """The array's bytes, for a writer that fills them itself (the
        native path); set ``received`` to the count it wrote."""
        return self._view

    def result(self) -> np.ndarray:
        if self.received != self.expected:
            raise RuntimeError(f"Fetch stream ended after {self.received} of "
                               f"{self.expected} bytes")
        self._view.release()
        a = self.array
        if sys.byteorder == "big" and a.dtype.byteorder == "<":  # pragma: no cover
            a = a.astype(a.dtype.newbyteorder("="))
        return a


def check_out(out: Any, dt: dtype, shape: tuple[int, ...]) -> np.ndarray:
    """``out`` as the array a fetch of ``shape`` ``dt`` values writes into:
    a NumPy array of that dtype (little-endian or native) and shape, or any
    other writable buffer (bytearray, memoryview) of exactly that many
    bytes; it must be C-contiguous and writable. TypeError for a wrong type
    or dtype, ValueError for the rest, each saying what was expected."""
    want = _little_endian(dt.numpy_dtype)
    nbytes = math.prod(shape) * want.itemsize
    if not isinstance(out, np.ndarray):
        try:
            view = memoryview(out)
        except TypeError:
            raise TypeError(f"out must be a NumPy array or a writable buffer, "
                            f"not {type(out).__name__}") from None
        if view.readonly:
            raise ValueError("out is read-only")
        if not view.c_contiguous:
            raise ValueError("out is not C-contiguous")
        if view.nbytes != nbytes:
            raise ValueError(f"out has {view.nbytes} bytes; the tensor "
                             f"({shape} {dt.name}) has {nbytes}")
        return np.frombuffer(view.cast("B"), dtype=want).reshape(shape)
    if _little_endian(out.dtype) != want or out.dtype.byteorder == ">":
        raise TypeError(f"out has dtype {out.dtype}; the tensor is {dt.name} "
                        f"(an array of dtype {want.newbyteorder('=')})")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out has shape {tuple(out.shape)}; the tensor has shape "
                         f"{tuple(shape)}")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if not out.flags.c_contiguous:
        raise ValueError("out is not C-contiguous (np.ascontiguousarray makes a "
                         "copy that is)")
    return out


def check_fetchable(out: dtype) -> None:
    """Raise before fetching a dtype that cannot become an array here."""
    _ = out.numpy_dtype  # bfloat16 without ml_dtypes: TypeError saying what to do


class Progress:
    """A tqdm bar when ``enabled`` and tqdm is installed; otherwise nothing."""

    def __init__(self, enabled: bool, total: int, desc: str) -> None:
        self._bar = None
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            warnings.warn("progress=True needs tqdm (`pip install tqdm`); "
                          "continuing without a progress bar", stacklevel=4)
            return
        self._bar = tqdm(total=total, unit="B", unit_scale=True,
                         unit_divisor=1024, desc=desc, leave=False)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __bool__(self) -> bool:
        return self._bar is not None


# ---------------------------------------------------------------------------
# tc.tensor(data): literals.

@dataclasses.dataclass
class Literal:
    """Nested Python data flattened: its shape, C-order values and the kind
    torch.tensor would infer (bool < int < float < complex)."""

    shape: tuple[int, ...]
    values: list[Any]
    kind: str  # "bool", "int", "float", "complex"


_KIND_RANK = {"bool": 0, "int": 1, "float": 2, "complex": 3}


def _scalar_kind(x: Any) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "bool"
    if isinstance(x, numbers.Integral):
        return "int"
    if isinstance(x, numbers.Real):
        return "float"
    if isinstance(x, numbers.Complex):
        return "complex"
    raise TypeError(f"Could not infer dtype of {type(x).__name__}")


def _is_sequence(x: Any) -> bool:
    return isinstance(x, (list, tuple)) or (
        isinstance(x, np.ndarray) and x.ndim > 0)


def parse_literal(data: Any) -> Literal:
    """Flatten nested lists/tuples of Python (or NumPy) scalars, checking that
    they are rectangular, as torch.tensor does."""
    shape: list[int] = []
    probe = data
    while _is_sequence(probe):
        shape.append(len(probe))
        if len(probe) == 0:
            break
        probe = probe[0]
    values: list[Any] = []
    kind_rank = -1

    def walk(x: Any, dim: int) -> None:
        nonlocal kind_rank
        if dim == len(shape):
            if _is_sequence(x):
                raise ValueError(f"expected a scalar at dim {dim} but got a "
                                 f"sequence of length {len(x)}")
            k = _KIND_RANK[_scalar_kind(x)]
            kind_rank = max(kind_rank, k)
            values.append(x)
            return
        if not _is_sequence(x):
            raise ValueError(f"expected sequence of length {shape[dim]} at dim "
                             f"{dim} (got {type(x).__name__})")
        if len(x) != shape[dim]:
            raise ValueError(f"expected sequence of length {shape[dim]} at dim "
                             f"{dim} (got {len(x)})")
        for item in x:
            walk(item, dim + 1)

    walk(data, 0)
    kind = {-1: "float", 0: "bool", 1: "int", 2: "float", 3: "complex"}[kind_rank]
    return Literal(tuple(shape), values, kind)


_DEFAULT_FOR_KIND = {"bool": _dtypes.bool_, "int": _dtypes.int64,
                     "float": _dtypes.float32, "complex": _dtypes.complex64}


def literal_dtype(lit: Literal, requested: Optional[dtype]) -> dtype:
    """The dtype torch.tensor would give."""
    return requested if requested is not None else _DEFAULT_FOR_KIND[lit.kind]


def literal_message(lit: Literal, requested: Optional[dtype] = None) -> pb.Literal:
    """The Create request's Literal, values in the one list of their kind.
    Integers past int64 go as uint64 only when a dtype was asked for (torch
    refuses them otherwise)."""
    if lit.kind == "bool":
        return pb.Literal(bool_values=[bool(v) for v in lit.values])
    if lit.kind == "int":
        ints = [int(v) for v in lit.values]
        if all(-(1 << 63) <= v < (1 << 63) for v in ints):
            return pb.Literal(int_values=ints)
        if requested is not None and all(0 <= v < (1 << 64) for v in ints):
            return pb.Literal(uint_values=ints)
        raise OverflowError("Overflow when unpacking long: values must fit "
                            "in int64 (or uint64)")
    if lit.kind == "float":
        return pb.Literal(float_values=[float(v) for v in lit.values])
    pairs: list[float] = []
    for v in lit.values:
        c = complex(v)
        pairs += (c.real, c.imag)
    return pb.Literal(complex_values=pairs)


def literal_array(lit: Literal, out: dtype) -> np.ndarray:
    """The literal as an array of dtype ``out`` (for large literals, which
    travel by Put). The conversion goes through the widest type of the kind,
    as the server's cast would."""
    wide = {"bool": np.bool_, "int": np.int64, "float": np.float64,
            "complex": np.complex128}[lit.kind]
    if lit.kind == "int" and not all(-(1 << 63) <= int(v) < (1 << 63) for v in lit.values):
        wide = np.uint64
    a: np.ndarray = np.array(lit.values, dtype=wide).reshape(lit.shape)
    return a.astype(out.numpy_dtype)


def create_request(*, shape: Sequence[int], dtype_: Optional[dtype], device: Any,
                   requires_grad: bool, name: Optional[str],
                   ttl: Optional[float], **init: Any) -> pb.CreateRequest:
    """A CreateRequest; ``init`` is one of zeros/ones/eye (True), full
    (float), arange ((start, step)), rand_seed (int), values (pb.Literal)."""
    req = pb.CreateRequest(
        dtype=dtype_.proto if dtype_ is not None else pb.DTYPE_UNSPECIFIED,
        shape=[int(s) for s in shape], device=normalize_device(device),
        requires_grad=bool(requires_grad), name=name or "", ttl_seconds=_ttl(ttl))
    (kind, value), = init.items()
    if kind in ("zeros", "ones", "eye"):
        getattr(req, kind).SetInParent()
    elif kind == "full":
        req.full = float(value)
    elif kind == "arange":
        req.arange.start, req.arange.step = value
    elif kind == "rand_seed":
        req.rand_seed = int(value)
    elif kind == "values":
        req.values.CopyFrom(value)
        req.values.SetInParent()
    else:  # pragma: no cover - internal misuse
        raise ValueError(kind)
    return req


def size_args(size: tuple[Any, ...]) -> tuple[int, ...]:
    """torch's ``zeros(2, 3)`` / ``zeros((2, 3))`` / ``zeros([2, 3])``."""
    if len(size) == 1 and isinstance(size[0], (list, tuple)):
        size = tuple(size[0])
    out = []
    for s in size:
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"size must be a sequence of ints, got {s!r}")
        if s < 0:
            raise ValueError(f"negative dimension {s} in size {tuple(size)}")
        out.append(int(s))
    return tuple(out)


def arange_args(start: float, end: Optional[float], step: float,
                dtype_: Optional[dtype]) -> tuple[int, dtype, float, float]:
    """(numel, dtype, start, step) for torch.arange's arguments."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("step must be nonzero")
    if (end - start) / step < 0:
        raise ValueError("upper bound and larger bound inconsistent with step sign")
    numel = int(math.ceil((end - start) / step))
    if dtype_ is None:
        is_int = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype_ = _dtypes.int64 if is_int else _dtypes.float32
    return numel, dtype_, float(start), float(step)


def fill_dtype(value: Any) -> dtype:
    """torch.full's inference from the fill value."""
    kind = _scalar_kind(value)
    return _DEFAULT_FOR_KIND[kind]


def parse_to_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[
        Optional[str], Optional[dtype], bool]:
    """``.to(device)``, ``.to(dtype)``, ``.to(device, dtype)``,
    ``.to(other)``, ``.to(device=..., dtype=..., copy=...)`` ->
    (device or None, dtype or None, copy)."""
    device = kwargs.pop("device", None)
    dtype_ = kwargs.pop("dtype", None)
    copy = bool(kwargs.pop("copy", False))
    kwargs.pop("non_blocking", None)
    if kwargs:
        raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
    for arg in args:
        if hasattr(arg, "_meta") and hasattr(arg, "dtype") and hasattr(arg, "device"):
            device, dtype_ = arg.device, arg.dtype  # .to(other_tensor)
        elif isinstance(arg, bool):
            copy = arg  # .to(dtype, non_blocking, copy) positional bools
        elif _dtypes.is_dtype_like(arg):
            dtype_ = arg
        elif is_device_like(arg):
            device = arg
        else:
            raise TypeError(f"to() received an invalid argument {arg!r}: expected "
                            "a device, a dtype or a tensor")
    return (normalize_device(device) if device is not None else None,
            _dtypes.as_dtype(dtype_) if dtype_ is not None else None, copy)


# ---------------------------------------------------------------------------
# torch interop (torch is imported only when a torch tensor is passed in).

def is_torch_tensor(x: Any) -> bool:
    """Whether ``x`` is a torch.Tensor (without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach") and hasattr(
        x, "numpy")


def torch_to_numpy(x: Any, cast: Optional[dtype] = None) -> tuple[np.ndarray, Optional[dtype]]:
    """A torch tensor's values as an ndarray (bfloat16 as raw uint16 bits,
    with bfloat16 as the wire dtype)."""
    if not is_torch_tensor(x):
        raise TypeError(f"expected a torch.Tensor (got {type(x).__name__})")
    import torch

    t = x.detach()
    if cast is not None:
        t = t.to(getattr(torch, cast.name))
    if t.device.type != "cpu":
        t = t.cpu()
    if t.dtype == torch.bfloat16:
        return t.contiguous().view(torch.int16).numpy().view(np.uint16), _dtypes.bfloat16
    return t.numpy(), None


@dataclasses.dataclass
class TensorSource:
    """How tc.tensor(data) makes its tensor: a Create request (small
    literals) or an upload of an array (arrays, torch tensors, large
    literals)."""

    request: Optional[pb.CreateRequest] = None
    array: Optional[np.ndarray] = None
    wire_dtype: Optional[dtype] = None


def tensor_source(data: Any, dt: Optional[dtype], *, device: Any, requires_grad: bool,
                  name: Optional[str], ttl: Optional[float]) -> TensorSource:
    """Decide how tc.tensor(data, dtype=dt) builds its tensor."""
    if is_torch_tensor(data):
        array, wire = torch_to_numpy(data, dt)
        return TensorSource(array=array, wire_dtype=wire)
    if isinstance(data, (np.ndarray, np.generic)):
        a = np.asarray(data)
        as_upload_array(a)
        if dt is not None:
            a = a.astype(dt.numpy_dtype)
        return TensorSource(array=a)
    lit = parse_literal(data)
    out = literal_dtype(lit, dt)
    if len(lit.values) > MAX_LITERAL_ELEMENTS:
        return TensorSource(array=literal_array(lit, out))
    return TensorSource(request=create_request(
        shape=lit.shape, dtype_=dt, device=device, requires_grad=requires_grad,
        name=name, ttl=ttl, values=literal_message(lit, dt)))


# ---------------------------------------------------------------------------
# The hot path's wire format. Put data and Fetch data are framed by hand so
# that chunk bytes are copied once less each way than through protobuf
# messages (Fetch: the data field is a memoryview into the received message;
# Put: the framed message is built straight from the array's memory). The
# framing is protobuf's: PutRequest.data is field 2, FetchResponse.data
# field 1 and FetchResponse.header field 2, all length-delimited.

_PUT_DATA_TAG = b"\x12"  # field 2, wire type 2


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def frame_put_data(chunk: Any) -> bytes:
    """A serialized PutRequest carrying ``chunk`` (bytes or memoryview) as
    its data, in one copy."""
    return b"".join((_PUT_DATA_TAG, _varint(len(chunk)), chunk))


def serialize_put_request(message: Any) -> bytes:
    """Request serializer for Put: pre-framed bytes pass through."""
    if isinstance(message, bytes):
        return message
    return message.SerializeToString()


class FetchMessage:
    """A FetchResponse parsed without copying its data: ``data`` is a
    memoryview into the received bytes; ``header`` a FetchHeader or None."""

    __slots__ = ("data", "header")

    def __init__(self, data: Any, header: Optional[pb.FetchHeader]) -> None:
        self.data = data
        self.header = header


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def deserialize_fetch_response(raw: bytes) -> FetchMessage:
    """Response deserializer for Fetch (see the module comment); messages
    with anything but fields 1 and 2 go through protobuf."""
    view = memoryview(raw)
    data: Any = b""
    header = None
    pos, end = 0, len(raw)
    while pos < end:
        tag = raw[pos]
        if tag not in (0x0A, 0x12):
            msg = pb.FetchResponse.FromString(raw)
            return FetchMessage(msg.data, msg.header if msg.HasField("header") else None)
        length, pos = _read_varint(raw, pos + 1)
        if tag == 0x0A:
            data = view[pos:pos + length]
        else:
            header = pb.FetchHeader.FromString(bytes(view[pos:pos + length]))
        pos += length
    return FetchMessage(data, header)


def method_path(name: str) -> str:
    """``/tensorcast.v1.TensorService/<name>``, from the generated descriptor."""
    service = pb.DESCRIPTOR.services_by_name["TensorService"]
    return f"/{service.full_name}/{service.methods_by_name[name].name}"


def wire_bytes(array: np.ndarray) -> Optional[memoryview]:
    """The bytes ``array`` goes on the wire as, when they already lie in its
    memory (C-contiguous, little-endian or single-byte); else None."""
    a = _wire_view(array)
    wire = _little_endian(a.dtype)
    if a.size and a.flags.c_contiguous and (a.dtype == wire or a.dtype.itemsize == 1):
        return memoryview(cast(Any, a.reshape(-1).view(np.uint8)))
    return None


def iter_put_messages(array: np.ndarray, chunk_bytes: int) -> Iterator[tuple[bytes, int]]:
    """Framed Put data messages for ``array`` and the data bytes in each."""
    flat = wire_bytes(array)
    if flat is not None:
        for start in range(0, flat.nbytes, chunk_bytes):
            piece = flat[start:start + chunk_bytes]
            yield frame_put_data(piece), len(piece)
        return
    for chunk in iter_c_order_bytes(array, chunk_bytes):
        yield frame_put_data(chunk), len(chunk)


def bulk_calls(channel: Any) -> tuple[Any, Any]:
    """Put and Fetch on a grpcio channel (sync or aio), with their data
    framed by hand (serialize_put_request, deserialize_fetch_response): one
    copy less than through protobuf messages."""
    put = channel.stream_unary(
        method_path("Put"), request_serializer=serialize_put_request,
        response_deserializer=pb.PutResponse.FromString)
    fetch = channel.unary_stream(
        method_path("Fetch"), request_serializer=pb.FetchRequest.SerializeToString,
        response_deserializer=deserialize_fetch_response)
    return put, fetch
