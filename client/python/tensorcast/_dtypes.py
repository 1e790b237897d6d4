"""Element types: ``tc.float32`` and friends, and conversion from the names,
NumPy dtypes and torch dtypes that users pass instead."""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from tensorcast.v1 import tensor_service_pb2 as pb

try:  # bfloat16 has no NumPy dtype of its own; ml_dtypes provides one.
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - depends on the environment
    _ml_dtypes = None  # type: ignore[assignment]  # checked before each use

__all__ = ["dtype", "as_dtype", "DTypeLike", "ALL_DTYPES"]


def have_ml_dtypes() -> bool:
    """Whether ml_dtypes is installed: bfloat16 arrays need it."""
    return _ml_dtypes is not None


class dtype:
    """A tensorcast element type, the counterpart of ``torch.dtype``.

    Instances are singletons (``tc.float32 is tc.float32``); compare them with
    ``==`` or ``is``. ``numpy_dtype`` gives the NumPy dtype the client uses
    for this type (``ml_dtypes.bfloat16`` for bfloat16 when installed).
    """

    __slots__ = ("name", "itemsize", "is_floating_point", "is_complex",
                 "is_signed", "proto", "_np_str")

    proto: "pb.DType"

    def __init__(self, name: str, itemsize: int, proto: "pb.DType",
                 np_str: Optional[str],
                 *, floating: bool = False, complex_: bool = False,
                 signed: bool = False) -> None:
        self.name = name
        self.itemsize = itemsize
        self.proto = proto
        self.is_floating_point = floating
        self.is_complex = complex_
        self.is_signed = signed
        self._np_str = np_str

    @property
    def numpy_dtype(self) -> np.dtype:
        """The NumPy dtype of arrays of this type.

        Raises TypeError for bfloat16 when ml_dtypes is not installed.
        """
        if self._np_str is not None:
            return np.dtype(self._np_str)
        if _ml_dtypes is None:
            raise TypeError(
                "bfloat16 has no NumPy dtype and ml_dtypes is not installed: "
                "`pip install ml_dtypes` to get bfloat16 arrays, or fetch as "
                "float32 with t.float().numpy()")
        return np.dtype(_ml_dtypes.bfloat16)

    @property
    def can_require_grad(self) -> bool:
        """Whether tensors of this type may require gradients (floating or
        complex, as in PyTorch)."""
        return self.is_floating_point or self.is_complex

    def __repr__(self) -> str:
        return f"tensorcast.{self.name}"

    def __reduce__(self) -> str:
        return self.name  # pickle as the module-level singleton


bool_ = dtype("bool", 1, pb.DTYPE_BOOL, "bool")
uint8 = dtype("uint8", 1, pb.DTYPE_UINT8, "uint8")
int8 = dtype("int8", 1, pb.DTYPE_INT8, "int8", signed=True)
int16 = dtype("int16", 2, pb.DTYPE_INT16, "int16", signed=True)
int32 = dtype("int32", 4, pb.DTYPE_INT32, "int32", signed=True)
int64 = dtype("int64", 8, pb.DTYPE_INT64, "int64", signed=True)
uint16 = dtype("uint16", 2, pb.DTYPE_UINT16, "uint16")
uint32 = dtype("uint32", 4, pb.DTYPE_UINT32, "uint32")
uint64 = dtype("uint64", 8, pb.DTYPE_UINT64, "uint64")
float16 = dtype("float16", 2, pb.DTYPE_FLOAT16, "float16", floating=True, signed=True)
bfloat16 = dtype("bfloat16", 2, pb.DTYPE_BFLOAT16, None, floating=True, signed=True)
float32 = dtype("float32", 4, pb.DTYPE_FLOAT32, "float32", floating=True, signed=True)
float64 = dtype("float64", 8, pb.DTYPE_FLOAT64, "float64", floating=True, signed=True)
complex64 = dtype("complex64", 8, pb.DTYPE_COMPLEX64, "complex64", complex_=True,
                  signed=True)
complex128 = dtype("complex128", 16, pb.DTYPE_COMPLEX128, "complex128",
                   complex_=True, signed=True)

ALL_DTYPES: tuple[dtype, ...] = (
    bool_, uint8, int8, int16, int32, int64, uint16, uint32, uint64,
    float16, bfloat16, float32, float64, complex64, complex128)

_BY_PROTO: dict[int, dtype] = {int(d.proto): d for d in ALL_DTYPES}
_BY_NAME: dict[str, dtype] = {d.name: d for d in ALL_DTYPES}
# PyTorch's aliases.
_BY_NAME.update({
    "half": float16, "float": float32, "double": float64, "cfloat": complex64,
    "cdouble": complex128, "short": int16, "int": int32, "long": int64,
    "byte": uint8, "char": int8, "bool_": bool_,
})
# NumPy (kind, itemsize) -> dtype.
_BY_NUMPY = {
    ("b", 1): bool_, ("u", 1): uint8, ("i", 1): int8, ("i", 2): int16,
    ("i", 4): int32, ("i", 8): int64, ("u", 2): uint16, ("u", 4): uint32,
    ("u", 8): uint64, ("f", 2): float16, ("f", 4): float32, ("f", 8): float64,
    ("c", 8): complex64, ("c", 16): complex128,
}

DTypeLike = Union[dtype, str, np.dtype, type, Any]

_SUPPORTED_TEXT = ("float64, float32, float16, bfloat16, complex64, complex128, "
                   "int64, int32, int16, int8, uint64, uint32, uint16, uint8, "
                   "and bool")


def from_proto(value: int) -> dtype:
    """The dtype of a proto DType value (not DTYPE_UNSPECIFIED)."""
    try:
        return _BY_PROTO[value]
    except KeyError:
        raise ValueError(f"unknown DType value {value} from the server") from None


def from_numpy_dtype(np_dtype: np.dtype) -> dtype:
    """The tensorcast dtype of a NumPy dtype; TypeError when unsupported
    (the text follows torch.from_numpy's)."""
    np_dtype = np.dtype(np_dtype)
    if np_dtype.name == "bfloat16":
        return bfloat16
    found = _BY_NUMPY.get((np_dtype.kind, np_dtype.itemsize))
    if found is None or np_dtype.fields is not None:
        raise TypeError(
            f"can't convert np.ndarray of type numpy.{np_dtype.name}. The only "
            f"supported types are: {_SUPPORTED_TEXT}.")
    return found


def as_dtype(value: DTypeLike) -> dtype:
    """Turn anything dtype-like into a tensorcast dtype.

    Accepts ``tc.float32``, names and PyTorch aliases (``"float32"``,
    ``"half"``, ``"torch.int64"``), NumPy dtypes and scalar types
    (``np.float16``, ``np.dtype("<i4")``, Python ``float`` = float64), torch
    dtypes (``torch.bfloat16``) and ``ml_dtypes.bfloat16``.
    """
    if isinstance(value, dtype):
        return value
    if isinstance(value, str):
        name = value.strip()
        for prefix in ("torch.", "tensorcast.", "tc.", "np.", "numpy."):
            if name.startswith(prefix):
                name = name[len(prefix):]
        found = _BY_NAME.get(name.lower())
        if found is not None:
            return found
        try:
            return from_numpy_dtype(np.dtype(name))
        except TypeError:
            raise
        except Exception:
            raise TypeError(f"not a dtype: {value!r}; expected one of "
                            f"{', '.join(sorted(_BY_NAME))}") from None
    text = str(value)
    if text.startswith("torch."):  # a torch.dtype, without importing torch
        return as_dtype(text)
    try:
        np_dtype = np.dtype(value)
    except Exception:
        raise TypeError(f"not a dtype: {value!r}") from None
    return from_numpy_dtype(np_dtype)


def is_dtype_like(value: Any) -> bool:
    """Whether ``value`` names a dtype (used to tell ``.to(dtype)`` from
    ``.to(device)``)."""
    if isinstance(value, dtype):
        return True
    if isinstance(value, str):
        try:
            as_dtype(value)
            return True
        except TypeError:
            return False
    if isinstance(value, (np.dtype, type)) or str(value).startswith("torch."):
        try:
            as_dtype(value)
            return True
        except TypeError:
            return False
    return False


_INT_BITS = {uint8: 8, int8: 7, int16: 15, uint16: 16, int32: 31, uint32: 32,
             int64: 63, uint64: 64}
_FLOAT_RANK = {float16: 1, bfloat16: 1, float32: 2, float64: 3}


def casts_exactly(src: dtype, dst: dtype) -> bool:
    """True when every value of ``src`` converts to ``dst`` without change, so
    ``src -> dst -> x`` equals ``src -> x`` for any later cast ``x``.

    Integer -> floating is never folded, even when exact: a later cast back
    to an integer would then wrap (int -> int) where the step through the
    float saturates (float -> int), e.g. int16 300 -> float -> int8 is 127
    but int16 300 -> int8 is 44."""
    if src is dst or src is bool_:
        return True
    if dst is bool_:
        return False
    if src in _INT_BITS:
        if dst in _INT_BITS:
            if src.is_signed and not dst.is_signed:
                return False
            return _INT_BITS[dst] >= _INT_BITS[src]
        return False
    if src.is_floating_point:
        if dst.is_floating_point:
            if {src, dst} == {float16, bfloat16}:
                return False
            return _FLOAT_RANK[dst] > _FLOAT_RANK[src]
        if dst.is_complex:
            part = float32 if dst is complex64 else float64
            return src is part or casts_exactly(src, part)
        return False
    if src.is_complex:
        return src is complex64 and dst is complex128
    return False
