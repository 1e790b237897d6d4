"""CUDA IPC in the Python client through real device memory: torch CUDA
tensors fetched into and put from regions lent to a tensorcast-server on
this host (tensorcast/_cuda_ipc.py). Needs a CUDA GPU and torch (skipped
otherwise); tests/gpu/run.sh runs it on a GPU machine. Each test starts its
own server with --shared-memory (the session's external one may not have
it). The paths without a GPU: test_cuda_ipc.py."""

from __future__ import annotations

import asyncio
import gc
from typing import Any, Iterator

import numpy as np
import pytest

import tensorcast as tc
import tensorcast.aio as tca
from tensorcast import _cuda_ipc

from conftest import running_server

try:
    import torch
    _GPU = bool(torch.cuda.is_available())
except ImportError:  # pragma: no cover - the machine decides
    torch = None
    _GPU = False

pytestmark = pytest.mark.skipif(not _GPU, reason="needs a CUDA GPU and torch")


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with running_server(tmp_path_factory.mktemp("gpu-server"), "--shared-memory",
                        "--devices=auto") as s:
        yield s


def test_libcudart_sees_the_gpu() -> None:
    rt = _cuda_ipc.load_runtime()
    assert rt.device_count() == torch.cuda.device_count()
    assert rt.pci_bus_id(0)


def test_fetch_lands_on_the_gpu(gpu_server: Any) -> None:
    with tc.connect(gpu_server.target, default=False, cuda_ipc=True) as c:
        values = np.random.default_rng(1).standard_normal((512, 1024)).astype(np.float32)
        t = c.from_numpy(values)
        x = t.torch(device="cuda")
        assert x.device.type == "cuda" and x.dtype == torch.float32
        assert x.shape == (512, 1024)
        np.testing.assert_array_equal(x.cpu().numpy(), values)
        status = c.cuda_ipc_status
        assert status["transfers"] == 1 and status["regions"] == 1, status
        # A second fetch reuses the region (one open at the server).
        y = t.torch(device="cuda:0")
        assert c.cuda_ipc_status["regions"] == 1
        assert y.data_ptr() != x.data_ptr()  # x still holds its slot
        np.testing.assert_array_equal(y.cpu().numpy(), values)


def test_put_from_a_cuda_tensor(gpu_server: Any) -> None:
    with tc.connect(gpu_server.target, default=False, cuda_ipc=True) as c:
        x = torch.arange(1 << 20, dtype=torch.int64, device="cuda") * 3
        t = c.from_torch(x, device="cpu")
        assert c.cuda_ipc_status["transfers"] == 1
        np.testing.assert_array_equal(t.numpy(), (np.arange(1 << 20) * 3))
        # Non-contiguous and requiring grad: detached, made contiguous.
        w = torch.ones((64, 32), device="cuda", requires_grad=True).t()
        u = c.from_torch(w, device="cpu")
        assert u.requires_grad and tuple(u.shape) == (32, 64)
        np.testing.assert_array_equal(u.detach().numpy(), np.ones((32, 64), np.float32))


def test_dtypes_round_trip(gpu_server: Any) -> None:
    with tc.connect(gpu_server.target, default=False, cuda_ipc=True) as c:
        for dt in (torch.bfloat16, torch.float16, torch.uint8, torch.bool,
                   torch.complex64, torch.float64):
            x = (torch.arange(3000, device="cuda") % 7).to(dt)
            back = c.from_torch(x).torch(device="cuda")
            assert back.dtype == dt and back.device.type == "cuda"
            assert torch.equal(back, x), dt


def test_tensor_outlives_its_client(gpu_server: Any) -> None:
    with tc.connect(gpu_server.target, default=False, cuda_ipc=True) as c:
        t = c.from_numpy(np.full(1 << 16, 7, np.int32))
        x = t.torch(device="cuda")
    gc.collect()
    assert int(x.sum().item()) == 7 << 16  # memory and contents kept


def test_cupy_takes_the_array(gpu_server: Any) -> None:
    cupy = pytest.importorskip("cupy")
    with tc.connect(gpu_server.target, default=False, cuda_ipc=True) as c:
        t = c.from_numpy(np.arange(100, dtype=np.float32))
        a = t.cuda_array()
        assert isinstance(a, _cuda_ipc.CudaArray)
        np.testing.assert_array_equal(cupy.asnumpy(cupy.asarray(a)),
                                      np.arange(100, dtype=np.float32))


def test_cuda_array_without_torch_api(gpu_server: Any) -> None:
    with tc.connect(gpu_server.target, default=False, cuda_ipc="auto") as c:
        t = c.from_numpy(np.arange(12, dtype=np.int32).reshape(3, 4))
        a = t.cuda_array("cuda:0")
        assert a.__cuda_array_interface__["shape"] == (3, 4)
        x = torch.as_tensor(a, device="cuda:0")
        assert x.data_ptr() == a.ptr  # a view, no copy
        assert torch.equal(x.cpu(), torch.arange(12, dtype=torch.int32).reshape(3, 4))


class Exported:
    """Any producer of __cuda_array_interface__ (as CuPy's arrays), here
    over a torch tensor's memory."""

    def __init__(self, x: Any) -> None:
        self.x = x
        self.__cuda_array_interface__ = x.__cuda_array_interface__


def test_tensor_of_a_cuda_array(gpu_server: Any) -> None:
    with tc.connect(gpu_server.target, default=False, cuda_ipc=True) as c:
        x = torch.arange(40000, dtype=torch.float32, device="cuda").reshape(200, 200)
        t = c.tensor(Exported(x))
        assert c.cuda_ipc_status["transfers"] == 1
        np.testing.assert_array_equal(t.numpy(), x.cpu().numpy())
        u = c.tensor(x)  # a torch CUDA tensor: the same way
        assert c.cuda_ipc_status["transfers"] == 2
        np.testing.assert_array_equal(u.numpy(), x.cpu().numpy())
    with tc.connect(gpu_server.target, default=False) as c:  # off: downloaded
        np.testing.assert_array_equal(c.tensor(Exported(x)).numpy(), x.cpu().numpy())


def test_aio(gpu_server: Any) -> None:
    async def main() -> None:
        async with tca.connect(gpu_server.target, default=False, cuda_ipc=True) as c:
            x = torch.linspace(0, 1, 4096, device="cuda")
            t = await c.from_torch(x)
            y = await t.torch(device="cuda")
            assert torch.equal(x, y)
            assert c.cuda_ipc_status["transfers"] == 2
    asyncio.run(main())
