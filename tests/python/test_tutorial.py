"""The examples of the PyTorch tutorial this product grew from (design §1),
with `tc` in place of `torch`: same values, dtypes, exception types and texts.
The GPU lines run only on a server with CUDA; elsewhere the no-GPU error is
checked instead."""

from __future__ import annotations

import numpy as np
import pytest

import tensorcast as tc

pytestmark = pytest.mark.usefixtures("client")

GRAD_TEXT = ("Can't call numpy() on Tensor that requires grad. "
             "Use tensor.detach().numpy() instead.")
CUDA_TEXT = ("can't convert cuda:0 device type tensor to numpy. "
             "Use Tensor.cpu() to copy the tensor to host memory first.")


def test_float_list_is_float32() -> None:
    m = tc.tensor([12.14, 22.58, 32.02, 42.5, 52.6])
    a = m.numpy()
    assert a.dtype == np.float32 and m.dtype is tc.float32
    np.testing.assert_array_equal(a, np.array([12.14, 22.58, 32.02, 42.5, 52.6], np.float32))


def test_int_list_cpu_detach_numpy_is_int64() -> None:
    t = tc.tensor([[15, 25, 35], [45, 55, 65], [75, 85, 95]])
    a = t.cpu().detach().numpy()
    assert a.dtype == np.int64
    np.testing.assert_array_equal(a, [[15, 25, 35], [45, 55, 65], [75, 85, 95]])


def test_requires_grad_numpy_refused_then_detach() -> None:
    t = tc.tensor([[2., 3, 4], [5, 6, 7], [8, 9, 10]], requires_grad=True)
    assert t.requires_grad
    with pytest.raises(RuntimeError) as e:
        t.numpy()
    assert str(e.value) == GRAD_TEXT
    a = t.detach().numpy()
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, np.arange(2, 11, dtype=np.float32).reshape(3, 3))
    np.testing.assert_array_equal(t.numpy(force=True), a)


def test_eye_to_cuda_and_back(cuda: bool) -> None:
    if not cuda:
        with pytest.raises(tc.FailedPreconditionError, match="cpu only") as e:
            tc.eye(2).to("cuda")
        assert e.value.code.name == "FAILED_PRECONDITION"
        pytest.skip("no GPU on the server: checked that .to('cuda') fails with a clear error")
    a = tc.eye(2).to("cuda")
    assert a.device == "cuda:0"
    np.testing.assert_array_equal(a.to("cpu").numpy(), np.eye(2, dtype=np.float32))


def test_cuda_numpy_type_error(cuda: bool) -> None:
    if not cuda:
        with pytest.raises(tc.FailedPreconditionError, match="cpu only"):
            tc.tensor([2, 4, 6, 8, 10], dtype=tc.float32, requires_grad=True).cuda()
        pytest.skip("no GPU on the server: checked that .cuda() fails with a clear error")
    g = tc.tensor([2, 4, 6, 8, 10], dtype=tc.float32, requires_grad=True).cuda()
    with pytest.raises(TypeError) as e:
        g.numpy()
    assert str(e.value) == CUDA_TEXT
    np.testing.assert_array_equal(g.detach().cpu().numpy(),
                                  np.array([2, 4, 6, 8, 10], np.float32))


def test_asarray_refuses_as_numpy_does() -> None:
    t = tc.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="requires grad"):
        np.asarray(t)
    np.testing.assert_array_equal(np.asarray(t.detach()), [1.0, 2.0])
    assert np.asarray(t.detach(), dtype=np.float64).dtype == np.float64


def test_literal_inference_like_torch() -> None:
    assert tc.tensor([True, False]).dtype is tc.bool
    assert tc.tensor([1, 2]).dtype is tc.int64
    assert tc.tensor([1, 2.5]).dtype is tc.float32
    assert tc.tensor([True, 2]).dtype is tc.int64
    assert tc.tensor([1 + 2j, 3]).dtype is tc.complex64
    assert tc.tensor([]).shape == (0,) and tc.tensor([]).dtype is tc.float32
    assert tc.tensor(3.5).shape == () and tc.tensor(3.5).item() == 3.5
    c = tc.tensor([[1 + 2j], [3 - 1j]])
    np.testing.assert_array_equal(c.numpy(), np.array([[1 + 2j], [3 - 1j]], np.complex64))
    assert tc.tensor([1, 2], dtype="float64").numpy().dtype == np.float64
    assert tc.tensor(np.float64(2.0)).dtype is tc.float64
    with pytest.raises(ValueError, match="expected sequence of length 2"):
        tc.tensor([[1, 2], [3]])


def test_large_literal_goes_by_put() -> None:
    values = [float(i) / 3 for i in range(100_000)]
    t = tc.tensor(values)
    np.testing.assert_array_equal(t.numpy(), np.array(values, np.float32))


def test_factories() -> None:
    np.testing.assert_array_equal(tc.zeros(2, 3).numpy(), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(tc.ones((2, 3), dtype=tc.int32).numpy(),
                                  np.ones((2, 3), np.int32))
    np.testing.assert_array_equal(tc.full((2,), 7).numpy(), np.array([7, 7], np.int64))
    np.testing.assert_array_equal(tc.full((2,), 1.5).numpy(), np.array([1.5, 1.5], np.float32))
    np.testing.assert_array_equal(tc.arange(5).numpy(), np.arange(5))
    np.testing.assert_allclose(tc.arange(0, 1, 0.25).numpy(),
                               np.arange(0, 1, 0.25, dtype=np.float32))
    np.testing.assert_array_equal(tc.eye(2, 3, dtype=tc.float64).numpy(), np.eye(2, 3))
    r = tc.rand(4, 5, seed=7)
    assert r.shape == (4, 5) and r.dtype is tc.float32
    a = r.numpy()
    assert ((a >= 0) & (a < 1)).all()
    np.testing.assert_array_equal(tc.rand(4, 5, seed=7).numpy(), a)


def test_metadata_and_repr() -> None:
    t = tc.zeros(2, 3, dtype=tc.float16, name="tutorial-meta")
    assert t.shape == (2, 3) and t.ndim == 2 and t.numel() == 6 and len(t) == 2
    assert t.dtype is tc.float16 and t.device == "cpu" and not t.is_cuda
    assert t.nbytes == 12 and t.element_size() == 2 and t.size(1) == 3
    assert len(t.handle) == 32 and t.name == "tutorial-meta"
    assert "float16" in repr(t) and t.handle in repr(t)
    assert tc.get("tutorial-meta").handle == t.handle
    assert any(x.handle == t.handle for x in tc.list("tutorial-"))
