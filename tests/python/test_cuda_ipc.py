"""CUDA IPC in the Python client (tensorcast/_cuda_ipc.py) on a machine
without a GPU or torch: every fallback to the host path with its reason,
the server's refusal of a region (the real server process), the
``__cuda_array_interface__`` handed to torch/CuPy, the region's header, and
the device arena's bookkeeping.

``FakeRuntime`` is a STAND-IN FOR THE ABSENT GPU: it has the methods of
``_cuda_ipc.Runtime`` but hands out host memory (ctypes buffers) as if it
were a device's, and 64 made-up bytes as the IPC handle. It is passed in
through the ``runtime`` parameters, never patched over the real one. The
same paths through real device memory and torch are in
test_cuda_ipc_gpu.py, which runs on a GPU machine (tests/gpu/run.sh)."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
from typing import Any, Iterator

import numpy as np
import pytest

import tensorcast as tc
import tensorcast.aio as tca
from tensorcast import _cuda_ipc, _dtypes
from tensorcast.v1 import tensor_service_pb2 as pb

from conftest import running_server


class FakeRuntime:
    """A stand-in for the absent GPU (see the module's docstring)."""

    def __init__(self, devices: int = 1) -> None:
        self.devices = devices
        self.buffers: dict[int, Any] = {}
        self.freed: list[int] = []
        self.copies: list[tuple[int, int, int]] = []
        self.synced: list[tuple[int, int]] = []

    def device_count(self) -> int:
        return self.devices

    def pci_bus_id(self, device: int) -> str:
        return f"0000:{0x65 + device:02x}:00.0"

    def malloc(self, device: int, nbytes: int) -> int:
        buf = ctypes.create_string_buffer(nbytes)
        ptr = ctypes.addressof(buf)
        self.buffers[ptr] = buf
        return ptr

    def free(self, device: int, ptr: int) -> None:
        del self.buffers[ptr]
        self.freed.append(ptr)

    def ipc_handle(self, device: int, ptr: int) -> bytes:
        return bytes(range(64))

    def upload(self, device: int, dst: int, data: bytes) -> None:
        ctypes.memmove(dst, data, len(data))

    def download(self, device: int, src: int, nbytes: int) -> bytes:
        return ctypes.string_at(src, nbytes)

    def copy(self, device: int, dst: int, src: int, nbytes: int) -> None:
        self.copies.append((dst, src, nbytes))
        ctypes.memmove(dst, src, nbytes)

    def pointer_device(self, ptr: int) -> int:
        return 0

    def stream_synchronize(self, device: int, stream: int) -> None:
        self.synced.append((device, stream))

    def synchronize(self, device: int) -> None:
        self.synced.append((device, -1))  # -1: the whole device


def fake_source(data: np.ndarray, device: int = 0) -> _cuda_ipc.Source:
    """A Put source whose "device memory" is ``data``'s (host) memory."""
    return _cuda_ipc.Source(int(data.ctypes.data), data.nbytes, device, data.shape,
                            _dtypes.from_numpy_dtype(data.dtype), lambda: None, data)


@pytest.fixture()
def debug_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG, logger="tensorcast"):
        yield caplog


def fallback_logged(caplog: pytest.LogCaptureFixture, why: str) -> bool:
    return any(r.name == "tensorcast" and r.levelno == logging.DEBUG
               and "CUDA IPC not used" in r.getMessage() and why in r.getMessage()
               for r in caplog.records)


# -- the option ----------------------------------------------------------------------


def test_option_values_are_checked() -> None:
    with pytest.raises(ValueError, match='cuda_ipc is False, True or "auto"'):
        tc.Client("127.0.0.1:1", cuda_ipc="yes", connect_timeout=0)
    with pytest.raises(ValueError, match="CUDA IPC needs a server on this host"):
        tc.Client("10.1.2.3:50051", cuda_ipc=True, connect_timeout=0)
    c = tc.Client("10.1.2.3:50051", cuda_ipc="auto", connect_timeout=0)
    try:
        assert c.cuda_ipc_status["mode"] is False
        assert "not on this host" in c.cuda_ipc_status["why"]
    finally:
        c._closed = True  # never connected: nothing to delete
        c._channel.close()


def test_option_off_takes_the_host_path(server: Any, debug_log: Any) -> None:
    with tc.connect(server.target, default=False) as c:
        assert c.cuda_ipc_status == {"mode": False, "regions": 0, "transfers": 0,
                                     "why": 'cuda_ipc is off (connect with cuda_ipc=True '
                                            'or "auto")'}
        t = c.from_numpy(np.arange(6, dtype=np.float32))
        got = c._run(t._device_fetch_plan(0))
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, np.arange(6, dtype=np.float32))
        assert fallback_logged(debug_log, "cuda_ipc is off")


# -- the reasons, one by one ---------------------------------------------------------


def why(state: _cuda_ipc.Device, device: int = 0, **kw: Any) -> Any:
    args = {"nbytes": 1 << 20, "seed": True, "clustered": False, "progress": False}
    args.update(kw)
    return state.why_not(device, **args)


def test_no_libcudart() -> None:
    with pytest.raises(_cuda_ipc.Unavailable, match=r"^libcudart not found \(tried "):
        _cuda_ipc.load_runtime(["libcudart-not-here.so.0"])

    def missing() -> Any:
        return _cuda_ipc.load_runtime(["libcudart-not-here.so.0"])
    state = _cuda_ipc.Device("auto", load=missing)
    assert why(state).startswith("libcudart not found (tried libcudart-not-here.so.0)")


def test_no_device() -> None:
    assert why(_cuda_ipc.Device("auto", FakeRuntime(devices=0))) == (
        "no CUDA device visible (cudaGetDeviceCount: 0)")
    assert why(_cuda_ipc.Device("auto", FakeRuntime(devices=1)), device=1) == (
        "no CUDA device 1 in this process (it sees 1)")

    class Failing(FakeRuntime):
        def device_count(self) -> int:
            raise _cuda_ipc.CudaError("cudaGetDeviceCount: cudaErrorNoDevice: no CUDA-"
                                      "capable device is detected")
    assert why(_cuda_ipc.Device("auto", Failing())) == (
        "no CUDA device visible (cudaGetDeviceCount: cudaErrorNoDevice: no CUDA-capable "
        "device is detected)")


def test_this_machine_has_no_usable_gpu() -> None:
    """The real loader and runtime here: libcudart missing or no device."""
    state = _cuda_ipc.Device("auto")
    reason = why(state)
    if reason is None:
        pytest.skip("a CUDA device is visible here: test_cuda_ipc_gpu.py covers it")
    assert reason.startswith(("libcudart not found", "no CUDA device visible ("))


def test_other_reasons() -> None:
    state = _cuda_ipc.Device("auto", FakeRuntime())
    assert why(state) is None
    assert why(state, clustered=True).startswith("a cluster")
    assert why(state, seed=False).startswith("a cluster")
    assert why(state, progress=True).startswith("progress=True")
    assert why(state, nbytes=0) == "no bytes to move"


def test_mode_true_raises_the_reason() -> None:
    state = _cuda_ipc.Device(True, FakeRuntime(devices=0))
    with pytest.raises(RuntimeError, match=r"cuda_ipc=True, but CUDA IPC cannot be used: "
                                           r"no CUDA device visible"):
        state.fallback(why(state))


def test_torch_missing() -> None:
    try:
        import torch  # noqa: F401
        pytest.skip("torch is installed here")
    except ImportError:
        pass
    c = tc.Client("127.0.0.1:1", cuda_ipc="auto", connect_timeout=0)
    try:
        t = tc.RemoteTensor(c, tc._core.Meta(handle="0" * 32, shape=(2,),
                                              dtype=_dtypes.float32, device="cpu",
                                              requires_grad=False, name=""))
        with pytest.raises(ImportError, match="needs PyTorch"):
            t.torch(device="cuda")
        with pytest.raises(TypeError, match="expected a torch.Tensor"):
            c.from_torch(np.zeros(2))
        with pytest.raises(TypeError, match="expected a torch.Tensor"):
            c.from_torch([1.0])
    finally:
        c._closed = True
        c._channel.close()


# -- the real server refuses the region -----------------------------------------------


def test_server_refuses_the_region(server: Any, debug_log: Any) -> None:
    """The session's server (--shared-memory) cannot open the stand-in's
    handle (no such GPU, or no CUDA at all): the host regions' generic
    NOT_FOUND; the fetch and the put take the host path."""
    fake = FakeRuntime()
    with tc.connect(server.target, default=False, cuda_ipc="auto") as c:
        c._cuda.runtime = fake  # the stand-in for the absent GPU
        values = np.arange(1 << 18, dtype=np.float32)
        t = c.from_numpy(values)
        got = c._run(t._device_fetch_plan(0))
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, values)
        status = c.cuda_ipc_status
        assert status["mode"] is False  # "auto": not this server, from now on
        assert status["regions"] == 0 and status["transfers"] == 0
        assert status["why"].startswith(
            "the server refused the CUDA IPC region (NOT_FOUND: shared memory region not "
            "usable: it must exist")
        assert fallback_logged(debug_log, "the server refused the CUDA IPC region")
        # The region it made was freed, after its token was written.
        assert len(fake.freed) == 1 and not fake.buffers
        # The put: answered None (the plan then puts from the host).
        c._cuda.mode = "auto"
        resp = c._run(c._put_device(fake_source(values), device="cpu", requires_grad=False,
                                    name=None, ttl=None, progress=False, node=None))
        assert resp is None
        assert len(fake.freed) == 2 and not fake.copies  # refused before the copy
        # Off now: the reason stays, no region is tried.
        assert c._run(t._device_fetch_plan(0)) is not None
        assert len(fake.freed) == 2


def test_server_refuses_the_region_mode_true(server: Any) -> None:
    with tc.connect(server.target, default=False, cuda_ipc=True) as c:
        c._cuda.runtime = FakeRuntime()  # the stand-in for the absent GPU
        t = c.from_numpy(np.arange(1024, dtype=np.int64))
        with pytest.raises(RuntimeError, match=r"cuda_ipc=True, but CUDA IPC cannot be "
                                               r"used: the server refused the CUDA IPC "
                                               r"region \(NOT_FOUND"):
            c._run(t._device_fetch_plan(0))
        assert c.cuda_ipc_status["mode"] is True


def test_server_without_shared_memory_refuses(tmp_path: Any) -> None:
    with running_server(tmp_path) as s:
        with tc.connect(s.target, default=False, cuda_ipc="auto") as c:
            c._cuda.runtime = FakeRuntime()  # the stand-in for the absent GPU
            t = c.from_numpy(np.ones(300, dtype=np.float64))
            got = c._run(t._device_fetch_plan(0))
            np.testing.assert_array_equal(got, np.ones(300))
            assert c.cuda_ipc_status["why"].startswith(
                "the server refused the CUDA IPC region (FAILED_PRECONDITION")


def test_aio_server_refuses_the_region(server: Any) -> None:
    async def main() -> None:
        fake = FakeRuntime()
        async with tca.connect(server.target, default=False, cuda_ipc="auto") as c:
            c._cuda.runtime = fake  # the stand-in for the absent GPU
            values = np.arange(5000, dtype=np.int32)
            t = await c.from_numpy(values)
            got = await c._run(t._device_fetch_plan(0))
            np.testing.assert_array_equal(got, values)
            assert c.cuda_ipc_status["why"].startswith(
                "the server refused the CUDA IPC region (NOT_FOUND")
            c._cuda.mode = "auto"
            assert await c._run(c._put_device(
                fake_source(values), device="cpu", requires_grad=False, name=None,
                ttl=None, progress=False, node=None)) is None
            assert len(fake.freed) == 2
    asyncio.run(main())


# -- what torch and CuPy are handed ---------------------------------------------------


def test_cuda_array_interface() -> None:
    a = _cuda_ipc.CudaArray(0x7f0000001000, (2, 3), "<f4", 0, 24)
    assert a.__cuda_array_interface__ == {
        "shape": (2, 3), "typestr": "<f4", "data": (0x7f0000001000, False), "version": 3,
        "strides": None, "stream": None}
    assert _cuda_ipc.CudaArray(16, (), "|b1", 1, 1).__cuda_array_interface__["shape"] == ()


def test_typestr() -> None:
    assert {n: _cuda_ipc.typestr(getattr(_dtypes, n)) for n in (
        "bool_", "uint8", "int8", "int16", "int64", "uint64", "float16", "bfloat16",
        "float32", "float64", "complex64", "complex128")} == {
        "bool_": "|b1", "uint8": "|u1", "int8": "|i1", "int16": "<i2", "int64": "<i8",
        "uint64": "<u8", "float16": "<f2", "bfloat16": "<i2", "float32": "<f4",
        "float64": "<f8", "complex64": "<c8", "complex128": "<c16"}


# -- the region's header --------------------------------------------------------------


def test_region_header_layout() -> None:
    fake = FakeRuntime()
    region = _cuda_ipc.CudaRegion(fake, 0, 1 << 16)
    assert fake.buffers[region.ptr]._length_ == 4096 + (1 << 16)
    steps = region.lending()
    request = next(steps)
    assert request.size == 4096 + (1 << 16)
    assert request.cuda_ipc_handle == bytes(range(64))
    assert request.cuda_pci_bus_id == "0000:65:00.0"
    assert not request.name and not request.memfd_fd and len(request.token) == 32
    assert fake.download(0, region.ptr, 32) == request.token  # written before the ask
    challenge = bytes(range(100, 116))
    with pytest.raises(StopIteration):
        steps.send((None, pb.SharedMemoryEvent(region="r1", data_offset=4096,
                                                  challenge=challenge, device="cuda:3")))
    assert fake.download(0, region.ptr + 64, 16) == challenge
    assert fake.download(0, region.ptr + 32, 32) == bytes(32)  # untouched between
    assert (region.region, region.server_device) == ("r1", "cuda:3")
    region.close()
    region.free()
    assert region.ptr in fake.freed


def test_region_refuses_a_larger_server_header() -> None:
    region = _cuda_ipc.CudaRegion(FakeRuntime(), 0, 4096)
    steps = region.lending()
    next(steps)
    with pytest.raises(RuntimeError, match="reserves 8192 bytes"):
        steps.send((None, pb.SharedMemoryEvent(region="r", data_offset=8192)))
    region = _cuda_ipc.CudaRegion(FakeRuntime(), 0, 4096)
    steps = region.lending()
    next(steps)
    with pytest.raises(RuntimeError, match="challenge has 65 bytes"):
        steps.send((None, pb.SharedMemoryEvent(region="r", challenge=b"x" * 65)))


# -- the device arena -----------------------------------------------------------------


def lent(fake: FakeRuntime, size: int, device: int = 0) -> _cuda_ipc.DeviceArena:
    region = _cuda_ipc.CudaRegion(fake, device, size)
    region.region = "r"
    return _cuda_ipc.DeviceArena(region)


def test_arena_slots_live_with_their_arrays() -> None:
    fake = FakeRuntime()
    arena = lent(fake, 1 << 12)
    off = arena.allocate(100)
    assert off == 4096  # after the header
    a = arena.hold(off, (25,), "<f4", 100)
    assert a.__cuda_array_interface__["data"] == (arena.base + 4096, False)
    assert a.device == 0 and arena.live() == 1
    off2 = arena.allocate(64)
    assert off2 == 4096 + 128  # 64-byte aligned after the first
    arena.release(off2)
    holder = [a]  # as torch.as_tensor keeps the object
    del a
    gc.collect()
    assert arena.live() == 1
    holder.clear()
    gc.collect()
    assert arena.live() == 0 and arena.free_bytes() == 1 << 12


def test_arena_memory_outlives_its_client() -> None:
    fake = FakeRuntime()
    arena = lent(fake, 1 << 12)
    a = arena.hold(arena.allocate(8), (2,), "<i4", 8)
    arena.close()  # the session ends; the memory stays while a lives
    assert not fake.freed
    with pytest.raises(RuntimeError, match="the CUDA IPC region is closed"):
        arena.allocate(8)
    del a
    gc.collect()
    assert fake.freed == [arena.base]
    empty = lent(fake, 1 << 12)
    empty.close()
    assert fake.freed == [arena.base, empty.base]


def test_arena_quarantines_a_slot_cut_short() -> None:
    arena = lent(FakeRuntime(), 1 << 12)
    off = arena.allocate(1024)
    with pytest.raises(TimeoutError):
        with arena.transfer(off, lambda e: False):
            raise TimeoutError()
    arena.release(off)
    assert arena.free_bytes() == (1 << 12) - 1024  # never reused
    off2 = arena.allocate(1024)
    with pytest.raises(ValueError):
        with arena.transfer(off2, lambda e: True):  # the server's answer
            raise ValueError()
    arena.release(off2)
    assert arena.free_bytes() == (1 << 12) - 1024


def test_a_slot_given_back_is_written_only_after_the_device_synchronises() -> None:
    fake = FakeRuntime()
    arena = lent(fake, 1 << 12)
    a = arena.hold(arena.allocate(64), (16,), "<f4", 64)
    arena.allocate(64)  # nothing given back yet: no wait
    assert fake.synced == []
    del a  # kernels the program queued on it may still read it
    gc.collect()
    arena.allocate(64)
    assert fake.synced == [(0, -1)]
    arena.allocate(64)  # nothing given back since
    assert fake.synced == [(0, -1)]


def test_a_closed_region_with_a_quarantined_slot_is_never_freed() -> None:
    fake = FakeRuntime()
    arena = lent(fake, 1 << 12)
    off = arena.allocate(1024)
    with pytest.raises(TimeoutError):
        with arena.transfer(off, lambda e: False):  # the server may still copy
            raise TimeoutError()
    arena.release(off)
    arena.close()
    assert fake.freed == []  # kept until the process ends
    other = lent(fake, 1 << 12)
    other.release(other.allocate(8))
    other.close()
    assert fake.freed == [other.base]


def test_pointer_attributes_leave_room_for_cuda_13() -> None:
    # cudaPointerAttributes in CUDA 13: 4 + 4 + 8 + 8 + 8 * 8 bytes.
    assert ctypes.sizeof(_cuda_ipc._PointerAttributes) >= 88


def test_device_state_reuses_then_retires_regions() -> None:
    fake = FakeRuntime(devices=2)
    state = _cuda_ipc.Device("auto", fake)
    assert state.slot(0, 100) is None
    first = state.add(state.new_region(0, 100, 1 << 12))
    assert first.end - first.start == 1 << 12
    arena, off = state.slot(0, 100) or (None, 0)
    assert arena is first
    assert state.slot(1, 100) is None  # another device: its own regions
    assert state.slot(0, 1 << 13) is None  # too large for the first
    big = state.new_region(0, 1 << 13, 1 << 12)
    assert big.size == (1 << 13) + 64  # the transfer's size, not the default
    assert first in state.arenas  # a slot is held: kept
    first.release(off)
    state.add(big)
    third = state.new_region(0, 8, 1 << 12)  # regions with nothing held retire
    assert state.arenas == [] and fake.freed == [first.base, big.ptr]
    state.add(third)
    assert state.status == {"mode": "auto", "regions": 1, "transfers": 0, "why": ""}
    state.close()
    assert third.ptr in fake.freed


def test_runtime_error_while_lending_falls_back(server: Any) -> None:
    class NoIpc(FakeRuntime):  # a stand-in for a GPU whose memory cannot be shared
        def ipc_handle(self, device: int, ptr: int) -> bytes:
            raise _cuda_ipc.CudaError("cudaIpcGetMemHandle: cudaErrorNotSupported: "
                                      "operation not supported")
    fake = NoIpc()
    with tc.connect(server.target, default=False, cuda_ipc="auto") as c:
        c._cuda.runtime = fake
        t = c.from_numpy(np.arange(10, dtype=np.int16))
        np.testing.assert_array_equal(c._run(t._device_fetch_plan(0)), np.arange(10))
        assert c.cuda_ipc_status["why"] == (
            "the CUDA IPC region was not lent: cudaIpcGetMemHandle: cudaErrorNotSupported: "
            "operation not supported")
        assert c.cuda_ipc_status["mode"] == "auto"  # not the server's answer: kept
        assert len(fake.freed) == 1 and not fake.buffers


def test_fetch_result_holds_the_slot() -> None:
    from tensorcast import _transport
    arena = lent(FakeRuntime(), 1 << 12)
    off = arena.allocate(24)
    header = pb.FetchHeader(tensor=pb.TensorInfo(shape=[2, 3], dtype=pb.DTYPE_BFLOAT16),
                            format=pb.FORMAT_RAW, total_bytes=12)
    with pytest.raises(RuntimeError, match="12 bytes of bfloat16 where 24 were asked"):
        _transport.device_fetch_result([pb.FetchResponse(header=header)], arena, off, 24)
    a = _transport.device_fetch_result([pb.FetchResponse(header=header)], arena, off, 12)
    assert a.__cuda_array_interface__ == {
        "shape": (2, 3), "typestr": "<i2", "data": (arena.base + off, False), "version": 3,
        "strides": None, "stream": None}
    assert arena.live() == 1
    del a
    gc.collect()
    assert arena.live() == 0
    request = _transport.device_fetch_request(pb.FetchRequest(ref="x"), arena, off, 12)
    assert (request.shm_region, request.shm_offset, request.length) == ("r", off, 12)


def test_cuda_array_needs_cuda_ipc(server: Any) -> None:
    with tc.connect(server.target, default=False) as c:
        t = c.from_numpy(np.arange(4, dtype=np.float32))
        with pytest.raises(RuntimeError, match=r"^cuda_array\(\) needs CUDA IPC, which "
                                               r"cannot be used: cuda_ipc is off"):
            t.cuda_array()
        with pytest.raises(ValueError, match="not a CUDA device: 'cpu'"):
            t.cuda_array("cpu")
    with tc.connect(server.target, default=False, cuda_ipc="auto") as c:
        c._cuda.runtime = FakeRuntime()  # the stand-in for the absent GPU
        t = c.from_numpy(np.arange(4, dtype=np.float32))
        with pytest.raises(RuntimeError, match=r"cannot be used: the server refused the "
                                               r"CUDA IPC region \(NOT_FOUND"):
            t.cuda_array("cuda:0")

    async def main() -> None:
        async with tca.connect(server.target, default=False) as c:
            t = await c.from_numpy(np.arange(4, dtype=np.float32))
            with pytest.raises(RuntimeError, match="cuda_ipc is off"):
                await t.cuda_array(0)
    asyncio.run(main())


def test_a_region_with_a_quarantined_slot_is_not_retired() -> None:
    fake = FakeRuntime()
    state = _cuda_ipc.Device("auto", fake)
    arena = state.add(state.new_region(0, 100, 1 << 12))
    off = arena.allocate(100)
    with pytest.raises(TimeoutError):
        with arena.transfer(off, lambda e: False):
            raise TimeoutError()
    arena.release(off)
    assert arena.live() == 0 and arena.quarantined() == 1
    state.add(state.new_region(0, 1 << 13, 1 << 12))
    assert arena in state.arenas and not fake.freed


class FakeCudaArray:
    """A STAND-IN for a CuPy array: ``__cuda_array_interface__`` over a
    NumPy array's (host) memory, which FakeRuntime reads as a device's."""

    def __init__(self, a: np.ndarray, stream: Any = 7, strides: Any = None) -> None:
        self.a = a
        self.stream = stream
        self.strides = strides

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        return {"shape": self.a.shape, "typestr": self.a.dtype.str,
                "data": (int(self.a.ctypes.data), False), "version": 3,
                "strides": self.strides, "stream": self.stream}


def test_cuda_array_source() -> None:
    fake = FakeRuntime()
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    src = _cuda_ipc.cai_source(FakeCudaArray(a, strides=(16, 4)), fake)
    assert (src.ptr, src.nbytes, src.device, src.shape, src.dtype) == (
        a.ctypes.data, 48, 0, (3, 4), _dtypes.float32)
    src.sync()
    assert fake.synced == [(0, 7)]  # the producer's stream
    _cuda_ipc.cai_source(FakeCudaArray(a, stream=None), fake).sync()
    assert fake.synced == [(0, 7)]  # None: nothing to wait for
    np.testing.assert_array_equal(_cuda_ipc.download(fake, src), a)
    with pytest.raises(ValueError, match="non-contiguous"):
        _cuda_ipc.cai_source(FakeCudaArray(a, strides=(4, 12)), fake)
    assert _cuda_ipc.is_cuda_array(FakeCudaArray(a)) and not _cuda_ipc.is_cuda_array(a)


def test_tensor_of_a_cuda_array_falls_back_to_the_host(server: Any) -> None:
    fake = FakeRuntime()
    a = np.arange(1 << 16, dtype=np.int32).reshape(256, 256)
    with tc.connect(server.target, default=False, cuda_ipc="auto") as c:
        c._cuda.runtime = fake  # the stand-in for the absent GPU
        t = c.tensor(FakeCudaArray(a))
        assert t.dtype == tc.int32 and tuple(t.shape) == (256, 256)
        np.testing.assert_array_equal(t.numpy(), a)
        assert c.cuda_ipc_status["why"].startswith(
            "the server refused the CUDA IPC region (NOT_FOUND")
        assert fake.synced == [(0, 7)] and not fake.copies
        d = c.tensor(FakeCudaArray(a), dtype="float64")
        np.testing.assert_array_equal(d.numpy(), a.astype(np.float64))
        assert c.cuda_ipc_status["why"] == "a cast (int32 to float64) is made on the host"
    with tc.connect(server.target, default=False) as c:
        c._cuda.runtime = fake
        np.testing.assert_array_equal(c.tensor(FakeCudaArray(a[:2])).numpy(), a[:2])
        assert c.cuda_ipc_status["why"].startswith("cuda_ipc is off")

    def missing() -> Any:
        return _cuda_ipc.load_runtime(["libcudart-not-here.so.0"])
    with tc.connect(server.target, default=False) as c:
        c._cuda = _cuda_ipc.Device(False, load=missing)
        with pytest.raises(RuntimeError, match="needs the CUDA runtime: libcudart not found"):
            c.tensor(FakeCudaArray(a))


def test_plan_asks_the_device_then_the_host() -> None:
    """The plan shared by both drivers, with test_plans.py's fake driver (no
    server): a device Put answered None is followed by a host Put of the
    same bytes; a device Fetch step names the GPU."""
    from test_plans import HEX, Fake, info

    from tensorcast._plans import Fetch, Put

    def answer(step: Any) -> Any:
        if type(step) is Put:
            return None if step.source is not None else pb.PutResponse(
                tensor=info(HEX, (2, 3), pb.DTYPE_INT64))
        if type(step) is Fetch:
            return np.zeros((2, 3), np.int64)
        raise AssertionError(step)
    fake = Fake(answer)
    fake._cuda = _cuda_ipc.Device("auto", FakeRuntime())  # the stand-in for the GPU
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    t = fake.run(fake._plan_tensor(FakeCudaArray(a), None, "cpu", False, None, None, False,
                                   None))
    assert t._meta.handle == HEX
    device_put, host_put = fake.steps
    assert device_put.array is None and device_put.source.nbytes == 48
    assert device_put.header.header.shape == [2, 3]
    assert host_put.source is None
    np.testing.assert_array_equal(host_put.array, a)
    fake.steps.clear()
    fake.run(t._device_fetch_plan(1))
    (fetch,) = fake.steps
    assert fetch.device == 1 and fetch.nbytes == 48 and fetch.request.force
