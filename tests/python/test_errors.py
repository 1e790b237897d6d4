"""Error types and texts: PyTorch's where tensorcast mirrors PyTorch,
TensorcastError subclasses with .code elsewhere, and no hang when the server
is gone."""

from __future__ import annotations

import socket
import time

import grpc
import numpy as np
import pytest

import tensorcast as tc
import tensorcast._dtypes

from conftest import running_server

pytestmark = pytest.mark.usefixtures("client")

GRAD_TEXT = ("Can't call numpy() on Tensor that requires grad. "
             "Use tensor.detach().numpy() instead.")
INT_GRAD_TEXT = "Only Tensors of floating point and complex dtype can require gradients"


def test_numpy_on_requires_grad_is_runtime_error() -> None:
    t = tc.ones(3, requires_grad=True)
    for attempt in (t.numpy, t.float().numpy, t.cpu().numpy, lambda: np.asarray(t)):
        with pytest.raises(RuntimeError) as e:
            attempt()
        assert str(e.value) == GRAD_TEXT
        assert isinstance(e.value, tc.FailedPreconditionError)
        assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_integer_requires_grad_is_runtime_error() -> None:
    for make in (lambda: tc.tensor([1, 2], requires_grad=True),
                 lambda: tc.zeros(2, dtype=tc.int32, requires_grad=True),
                 lambda: tc.from_numpy(np.arange(3), requires_grad=True)):
        with pytest.raises(RuntimeError) as e:
            make()
        assert str(e.value) == INT_GRAD_TEXT
        assert isinstance(e.value, tc.InvalidArgumentError)


def test_not_found() -> None:
    with pytest.raises(tc.NotFoundError) as e:
        tc.get("no-such-tensor")
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert isinstance(e.value, LookupError) and isinstance(e.value, tc.TensorcastError)
    assert "no-such-tensor" in str(e.value)


def test_deleted_proxy() -> None:
    t = tc.tensor([1.0])
    t.delete()
    t.delete()  # idempotent
    with pytest.raises(tc.NotFoundError, match="deleted"):
        t.numpy()
    other = tc.tensor([2.0], name="err-deleted-by-name")
    tc.delete("err-deleted-by-name")
    with pytest.raises(tc.NotFoundError):
        other.numpy()


def test_invalid_argument() -> None:
    with pytest.raises(tc.InvalidArgumentError) as e:
        tc.rand(3, dtype=tc.int32)
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT and isinstance(e.value, ValueError)
    with pytest.raises(ValueError):
        tc.zeros(-1)


def test_already_exists() -> None:
    tc.zeros(1, name="err-dup")
    with pytest.raises(tc.AlreadyExistsError) as e:
        tc.zeros(1, name="err-dup")
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS


def test_no_gpu_is_a_clear_error(cuda: bool) -> None:
    if cuda:
        pytest.skip("the server has a GPU")
    t = tc.tensor([1.0])
    with pytest.raises(tc.FailedPreconditionError) as e:
        t.cuda()
    assert "cpu only" in str(e.value) and "cuda:0" in str(e.value)
    with pytest.raises(tc.FailedPreconditionError, match="cpu only"):
        tc.zeros(2, device="cuda")
    with pytest.raises(tc.FailedPreconditionError, match="cpu only"):
        tc.from_numpy(np.zeros(2), device="cuda:0")
    with pytest.raises(tc.FailedPreconditionError, match="cpu only"):
        t.detach().float().to("cuda")  # a lazy proxy moves eagerly too


def test_bfloat16_without_ml_dtypes(monkeypatch: pytest.MonkeyPatch) -> None:
    t = tc.tensor([1.5, -2.0]).bfloat16()
    monkeypatch.setattr(tensorcast._dtypes, "_ml_dtypes", None)
    with pytest.raises(TypeError) as e:
        t.numpy()
    assert "ml_dtypes" in str(e.value) and "t.float().numpy()" in str(e.value)
    assert t.tolist() == [1.5, -2.0]  # Python floats need no bfloat16 dtype
    np.testing.assert_array_equal(t.float().numpy(), [1.5, -2.0])


def test_out_of_memory(tmp_path) -> None:
    with running_server(tmp_path, "--memory-limit=1MiB") as small:
        with tc.Client(small.target) as c:
            c.zeros(1024)
            with pytest.raises(tc.OutOfMemoryError) as e:
                c.zeros(1 << 20)  # 4 MiB of float32
            assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert isinstance(e.value, RuntimeError)
            with pytest.raises(tc.OutOfMemoryError):
                c.from_numpy(np.zeros(1 << 20, np.float32))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_server_fails_fast() -> None:
    start = time.monotonic()
    with pytest.raises(tc.UnavailableError) as e:
        tc.Client(f"127.0.0.1:{free_port()}", connect_timeout=1.0)
    assert time.monotonic() - start < 5
    assert isinstance(e.value, ConnectionError) and "could not connect" in str(e.value)


def test_server_dies_mid_session(tmp_path) -> None:
    with running_server(tmp_path) as doomed:
        c = tc.Client(doomed.target, timeout=5)
        t = c.tensor([1.0, 2.0])
        doomed.stop()
        start = time.monotonic()
        with pytest.raises(tc.UnavailableError) as e:
            t.numpy()
        assert doomed.target in str(e.value)
        with pytest.raises(tc.UnavailableError):
            c.zeros(2)
        assert time.monotonic() - start < 10
        c.close()  # deleting what it owns fails quietly


def test_default_client_required() -> None:
    from tensorcast import _default
    saved = _default._client
    _default._client = None
    try:
        with pytest.raises(RuntimeError, match="tc.connect"):
            tc.zeros(1)
    finally:
        _default._client = saved
