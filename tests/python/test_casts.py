"""Casts on the server (.float() .double() .half() .bfloat16() .int()
.long() .bool() and .to(dtype=...)) against NumPy's astype (ml_dtypes for
bfloat16), and the promise that chained conversions cost one Fetch."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import pytest

import tensorcast as tc

pytestmark = pytest.mark.usefixtures("client")

ml_dtypes = pytest.importorskip("ml_dtypes")

NAMES = ["bool", "uint8", "int8", "int16", "int32", "int64", "uint16", "uint32",
         "uint64", "float16", "bfloat16", "float32", "float64", "complex64", "complex128"]
METHODS = {"float": "float32", "double": "float64", "half": "float16",
           "bfloat16": "bfloat16", "int": "int32", "long": "int64", "bool": "bool",
           "short": "int16", "char": "int8", "byte": "uint8", "cfloat": "complex64",
           "cdouble": "complex128"}


def npd(name: str) -> np.dtype:
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def source(name: str, target: str) -> np.ndarray:
    """Values whose cast NumPy defines: floats going to integers stay in the
    target's range (NaN and out-of-range float -> int are tensorcast's own
    documented rules, tested in the C++ suites)."""
    rng = np.random.default_rng(42)
    dt, tt = npd(name), npd(target)
    if name == "bool":
        return np.array([True, False, True, True, False, False])
    if dt.kind in "iu":
        info = np.iinfo(dt)
        if tt == np.float16 or target == "bfloat16":
            lo, hi = max(info.min, -60000), min(info.max, 60000)  # no double rounding
        else:
            lo, hi = info.min, info.max
        a = rng.integers(lo, hi, 64, dtype=dt, endpoint=True)
        a[:3] = [lo, hi, 0]
        return a
    if tt.kind in "iub":
        lo, hi = (0, 250) if tt.kind == "u" else (-120, 120)
        if tt.kind == "b":
            lo, hi = -3, 3
        real = rng.uniform(lo, hi, 64)
        real[:3] = [0.0, 0.5, hi - 0.75]
        if dt.kind == "c":
            return (real + 1j * rng.uniform(-5, 5, 64)).astype(dt)
        return real.astype(dt)
    a = rng.standard_normal(64) * 1e3
    a[:6] = [np.nan, np.inf, -np.inf, -0.0, 1e30, 65519.0]
    with np.errstate(over="ignore"):  # 1e30 is inf in the narrow types
        if dt.kind == "c":
            return (a + 1j * rng.standard_normal(64)).astype(dt)
        return a.astype(dt)


def expected(a: np.ndarray, target: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if a.dtype.kind == "c" and npd(target).kind != "c" and target != "bool":
            a = a.real  # complex -> real drops the imaginary part
        if a.dtype.kind == "c" and target == "bfloat16":
            a = a.real
        if target == "bfloat16" and a.dtype.kind in "iu" and a.dtype.itemsize >= 4:
            a = a.astype(np.float64)
        return a.astype(npd(target))


def equal(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    if want.dtype.kind in "fc" or want.dtype.name == "bfloat16":
        np.testing.assert_array_equal(got.astype(np.complex128) if want.dtype.kind == "c"
                                      else got.astype(np.float64),
                                      want.astype(np.complex128) if want.dtype.kind == "c"
                                      else want.astype(np.float64))
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("target", NAMES)
@pytest.mark.parametrize("name", NAMES)
def test_to_dtype_matches_astype(name: str, target: str) -> None:
    a = source(name, target)
    t = tc.from_numpy(a)
    equal(t.to(dtype=getattr(tc, target)).numpy(), expected(a, target))


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("name", ["int64", "float32", "float64", "complex64", "bfloat16"])
def test_cast_methods(name: str, method: str) -> None:
    target = METHODS[method]
    a = source(name, target)
    t = tc.from_numpy(a.reshape(8, 8))
    lazy = getattr(t, method)()
    assert lazy.dtype is getattr(tc, target)
    equal(lazy.numpy(), expected(a, target).reshape(8, 8))
    # Materialised on the server (To) gives the same bytes as the stream cast.
    eager = t.to(dtype=target, copy=True)
    assert not eager.is_lazy
    equal(eager.numpy(), expected(a, target).reshape(8, 8))


def test_dtype_spellings() -> None:
    t = tc.tensor([1.5, -2.25])
    for spelling in (tc.float16, "float16", "half", np.float16, np.dtype("<f2"),
                     "torch.float16"):
        assert t.to(spelling).numpy().dtype == np.float16
    assert t.to("cpu", "float64").dtype is tc.float64
    assert t.to(t.int()).dtype is tc.int32
    assert t.float() is t and t.cpu() is t and t.to("cpu") is t


def test_chained_casts_follow_each_step() -> None:
    a = np.array([0.1, 1 / 3, 65504.5, 1e-8, -2.7, 3.9], np.float32)
    t = tc.from_numpy(a)
    np.testing.assert_array_equal(t.half().float().numpy(),
                                  a.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(t.int().float().numpy(), a.astype(np.int32).astype(np.float32))
    np.testing.assert_array_equal(t.double().half().numpy(), a.astype(np.float16))
    np.testing.assert_array_equal(t.bfloat16().half().numpy(),
                                  a.astype(ml_dtypes.bfloat16).astype(np.float16))
    np.testing.assert_array_equal(t.int().bool().long().numpy(),
                                  a.astype(np.int32).astype(bool).astype(np.int64))


def test_int_through_float_back_to_int_saturates_as_the_steps_do() -> None:
    # int -> float is exact, but folding it away would turn the float -> int
    # saturation into int -> int wrapping: lazy and materialised agree.
    t = tc.from_numpy(np.array([300, -200], dtype=np.int16))
    lazy = t.float().char().numpy()
    stepped = t.float().materialize().char().numpy()
    np.testing.assert_array_equal(stepped, np.array([127, -128], np.int8))
    np.testing.assert_array_equal(lazy, stepped)
    u = tc.from_numpy(np.array([-1], dtype=np.int8))
    assert u.float().byte().numpy()[0] == 0
    assert u.float().materialize().byte().numpy()[0] == 0


def test_grad_rules_through_casts() -> None:
    t = tc.tensor([1.5, 2.5], requires_grad=True)
    assert t.float().requires_grad and t.double().requires_grad
    with pytest.raises(RuntimeError, match="requires grad"):
        t.double().numpy()
    assert not t.int().requires_grad  # integer casts drop requires_grad
    np.testing.assert_array_equal(t.int().numpy(), [1, 2])
    np.testing.assert_array_equal(t.long().float().numpy(), [1.0, 2.0])
    m = t.half()
    assert m.handle and m.requires_grad  # materialised: To keeps it
    assert not t.detach().half().requires_grad


def test_chained_conversions_cost_one_fetch(client: tc.Client) -> None:
    """detach, cpu and casts that fold into one travel in the FetchRequest:
    no server tensor is made. (A lossy chain such as .half().float() needs
    one temporary server tensor, as each step must round.)"""
    t = tc.tensor([[1.5, 2.5], [3.5, 4.5]], requires_grad=True)
    gc.collect()
    client._flush()  # earlier tests' tensors, deleted in the background
    before = client.stats()["cpu"]
    for chain in (lambda: t.detach().cpu().numpy(),
                  lambda: t.cpu().detach().float().numpy(),
                  lambda: t.to(tc.float16).detach().numpy(),
                  lambda: t.detach().double().int().numpy(),
                  lambda: t.detach().double().bfloat16().numpy()):
        chain()
    after = client.stats()["cpu"]
    assert after["tensors"] == before["tensors"]
    assert after["alloc_count"] == before["alloc_count"]  # no server-side copies


def test_materialising_makes_one_tensor(client: tc.Client) -> None:
    t = tc.tensor([1.0, 2.0], requires_grad=True)
    # Earlier tests' tensors are deleted in the background as they are
    # collected: finish that first, so the count moves only by this test.
    gc.collect()
    client._flush()
    before = client.stats()["cpu"]["tensors"]
    d = t.detach()
    assert d.is_lazy and client.stats()["cpu"]["tensors"] == before
    h = d.handle  # Detach on the server
    assert not d.is_lazy and h != t.handle and not d.requires_grad
    assert client.get(h).requires_grad is False
    assert client.stats()["cpu"]["tensors"] == before + 1
    np.testing.assert_array_equal(d.numpy(), [1.0, 2.0])
