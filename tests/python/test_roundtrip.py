"""from_numpy -> numpy() round trips for every NumPy dtype the server has,
over every layout an array can have, compared with NumPy byte for byte."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

import tensorcast as tc

pytestmark = pytest.mark.usefixtures("client")

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

DTYPES = ["bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32",
          "uint64", "float16", "float32", "float64", "complex64", "complex128"]
if ml_dtypes is not None:
    DTYPES.append("bfloat16")


def np_dtype(name: str) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def values(name: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Values that exercise the type: negatives, extremes, NaN/inf, fractions."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    dt = np_dtype(name)
    if name == "bool":
        a = rng.integers(0, 2, n).astype(bool)
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        if n >= 2:
            a[0], a[1] = info.min, info.max
    elif dt.kind == "c":
        a = (rng.standard_normal(n) * 100 + 1j * rng.standard_normal(n)).astype(dt)
    else:
        a = (rng.standard_normal(n) * 1000).astype(dt)
        if n >= 4:
            a[:4] = np.array([np.nan, np.inf, -np.inf, -0.0]).astype(dt)
    return a.reshape(shape)


def c_4d(name: str) -> np.ndarray:
    return values(name, (2, 3, 4, 5))


LAYOUTS: dict[str, Callable[[str], np.ndarray]] = {
    "0d": lambda n: values(n, ()),
    "empty": lambda n: values(n, (3, 0, 2)),
    "1d": lambda n: values(n, (17,)),
    "4d": c_4d,
    "noncontiguous": lambda n: c_4d(n)[:, ::2, 1:, ::-2],
    "fortran": lambda n: np.asfortranarray(values(n, (6, 7, 3))),
    "transposed": lambda n: values(n, (5, 6)).T,
    "bigendian": lambda n: values(n, (3, 5)).astype(np_dtype(n).newbyteorder(">")),
    "bigendian-strided": lambda n: values(n, (6, 8)).astype(
        np_dtype(n).newbyteorder(">"))[::2, ::-3],
}


def same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert got.dtype == want.dtype.newbyteorder("=")
    assert got.flags.c_contiguous
    assert np.ascontiguousarray(want).astype(got.dtype).tobytes() == got.tobytes()


# Every dtype x layout, but byte order only where a type has one (not the
# one-byte types, nor ml_dtypes' bfloat16).
CASES = [(name, layout) for name in DTYPES for layout in LAYOUTS
         if not (layout.startswith("bigendian")
                 and name in ("bool", "uint8", "int8", "bfloat16"))]


@pytest.mark.parametrize(("name", "layout"), CASES)
def test_round_trip(name: str, layout: str) -> None:
    want = LAYOUTS[layout](name)
    t = tc.from_numpy(want)
    assert t.shape == want.shape
    assert t.dtype is tc.as_dtype(np_dtype(name))
    same(t.numpy(), want)


@pytest.mark.parametrize("name", DTYPES)
def test_tolist_and_item(name: str) -> None:
    want = values(name, (2, 3))
    t = tc.from_numpy(want)
    got = t.tolist()
    if name == "bfloat16":  # Python floats, as torch gives
        np.testing.assert_array_equal(np.array(got, np.float32), want.astype(np.float32))
    else:
        np.testing.assert_array_equal(np.array(got, dtype=want.dtype), want)
    one = tc.from_numpy(want[:1, :1])
    assert one.item() == want[0, 0].item() or (np.isnan(one.item()) and np.isnan(want[0, 0]))
    with pytest.raises(RuntimeError, match="cannot be converted to Scalar"):
        t.item()


def test_unsupported_numpy_dtypes() -> None:
    for bad in (np.array(["a"]), np.array([object()]), np.array([1], "datetime64[s]"),
                np.zeros(2, [("a", "i4"), ("b", "f4")])):
        with pytest.raises(TypeError, match="can't convert np.ndarray of type"):
            tc.from_numpy(bad)
    with pytest.raises(TypeError, match="expected np.ndarray"):
        tc.from_numpy([1, 2, 3])  # type: ignore[arg-type]


def test_requires_grad_and_name_on_upload() -> None:
    a = np.linspace(0, 1, 12, dtype=np.float64).reshape(3, 4)
    t = tc.from_numpy(a, requires_grad=True, name="rt-upload")
    assert t.requires_grad and t.name == "rt-upload"
    np.testing.assert_array_equal(t.detach().numpy(), a)


def test_put_chunks_stay_under_the_servers_message_limit(server) -> None:
    """The server refuses any message over 1 MiB + 64 KiB unread: a client
    asked for bigger Put chunks sends 1 MiB ones."""
    a = np.arange(3 << 20, dtype=np.float32)  # 12 MiB
    with tc.Client(server.target, put_chunk_bytes=16 << 20) as c:
        t = c.from_numpy(a)
        np.testing.assert_array_equal(t.numpy(), a)
        t.delete()
