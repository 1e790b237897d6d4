"""CUDA IPC for the Python client: device memory this client lends a server
on the same host (``OpenSharedMemory`` with ``cuda_ipc_handle``, see
docs/shared-memory.md), so that ``t.torch(device="cuda")`` gets the server's
bytes written straight into GPU memory and ``from_torch(x_cuda)`` has them
read from it, with no bytes on the socket and no pass through host memory
on the client's side.

No hard dependency: the CUDA runtime (libcudart) is loaded with ctypes on
first use, and torch only where the caller passes or asks for a torch
tensor. Anything missing makes the transfer take the host path; the reason
is logged at DEBUG on the ``tensorcast`` logger and kept in
``Client.cuda_ipc_status["why"]``.

The pieces:

- ``Runtime``: the few libcudart calls used (device count, PCI bus id,
  cudaMalloc/cudaFree, cudaIpcGetMemHandle, cudaMemcpy + synchronise);
  ``load_runtime`` finds the library.
- ``CudaRegion``: one dedicated cudaMalloc allocation, a 4096-byte header
  (the token, then the server's challenge at [64, 80), as host regions)
  and the data after it, lent over an ``OpenSharedMemory`` call that stays
  open while the region lives. A torch allocation is never lent itself:
  the header would overwrite the caching allocator's neighbours.
- ``DeviceArena``: a region carved into slots (``_arena.Slots``), so a
  region is opened at the server once and reused by every transfer, not
  opened per fetch.
- ``CudaArray``: a fetched tensor's slot as an object with
  ``__cuda_array_interface__`` (version 3, ``"stream": None``: the server
  synchronised its copies before its final message), which
  ``torch.as_tensor`` and ``cupy.asarray`` take without copying; they keep
  the object, and so the slot, alive as long as their tensor.
- ``Device`` state per client: mode, runtime, arenas and the last reason;
  the transports of _transport.py do the I/O.
- ``Source``: a Put's bytes on a GPU, from a torch tensor
  (``torch_source``) or any ``__cuda_array_interface__`` object
  (``cai_source``: CuPy's arrays...), with what to synchronise first;
  ``download`` reads one to the host for the fallback.

A Put from a torch CUDA tensor takes one device-to-device copy on the
client, into a slot (the tensor's own memory cannot be lent, see above);
the server then downloads the slot. A Fetch takes none: the server uploads
into the slot the returned tensor views.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import secrets
import threading
import weakref
from typing import Any, Callable, Generator, NamedTuple, Optional, Sequence

import grpc

from tensorcast import _arena, _dtypes, _fastpath
from tensorcast.v1 import tensor_service_pb2 as pb

log = logging.getLogger("tensorcast")

HEADER_BYTES = _fastpath.SHM_HEADER_BYTES
CHALLENGE_OFFSET = _fastpath.SHM_CHALLENGE_OFFSET
_MAX_CHALLENGE_BYTES = 64
_TOKEN_BYTES = 32
IPC_HANDLE_BYTES = 64  # sizeof(cudaIpcMemHandle_t)
# The size of a device region, unless the transfer needs more
# (Client.cuda_arena_bytes).
DEFAULT_ARENA_BYTES = 256 << 20

_MEMCPY_HOST_TO_DEVICE = 1
_MEMCPY_DEVICE_TO_HOST = 2
_MEMCPY_DEVICE_TO_DEVICE = 3

# The names tried for libcudart, after $TENSORCAST_CUDART and one this
# process has loaded already (torch's, say: the same runtime as its own).
_CUDART_NAMES = ("libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0")


class Unavailable(Exception):
    """CUDA IPC cannot be used here; ``str(e)`` says why."""


class CudaError(RuntimeError):
    """A libcudart call failed: ``call: cudaErrorName: text``."""


class Runtime:
    """The libcudart calls CUDA IPC needs, through ctypes. Each call that
    names a device makes it current for its duration and restores the one
    before (as torch expects its current device kept). Copies to the
    device are synchronised before they return."""

    def __init__(self, lib: Any, name: str = "libcudart") -> None:
        self.name = name
        self._lib = lib
        lib.cudaGetErrorName.restype = ctypes.c_char_p
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        lib.cudaFree.argtypes = [ctypes.c_void_p]
        lib.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                   ctypes.c_int]
        lib.cudaIpcGetMemHandle.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.cudaDeviceGetPCIBusId.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
        lib.cudaPointerGetAttributes.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        self._lock = threading.Lock()

    def _check(self, err: int, call: str) -> None:
        if err != 0:
            self._lib.cudaGetLastError()  # not sticky: clear it
            name = (self._lib.cudaGetErrorName(err) or b"?").decode()
            text = (self._lib.cudaGetErrorString(err) or b"").decode()
            raise CudaError(f"{call}: {name}: {text}")

    def _on(self, device: int, fn: Callable[[], Any]) -> Any:
        previous = ctypes.c_int(-1)
        if self._lib.cudaGetDevice(ctypes.byref(previous)) != 0:
            self._lib.cudaGetLastError()
            previous.value = -1
        self._check(self._lib.cudaSetDevice(device), "cudaSetDevice")
        try:
            return fn()
        finally:
            if previous.value >= 0 and previous.value != device:
                self._lib.cudaSetDevice(previous.value)

    def device_count(self) -> int:
        n = ctypes.c_int(0)
        self._check(self._lib.cudaGetDeviceCount(ctypes.byref(n)), "cudaGetDeviceCount")
        return n.value

    def pci_bus_id(self, device: int) -> str:
        buf = ctypes.create_string_buffer(32)
        self._check(self._lib.cudaDeviceGetPCIBusId(buf, len(buf), device),
                    "cudaDeviceGetPCIBusId")
        return buf.value.decode()

    def malloc(self, device: int, nbytes: int) -> int:
        def run() -> int:
            p = ctypes.c_void_p()
            self._check(self._lib.cudaMalloc(ctypes.byref(p), nbytes), "cudaMalloc")
            return int(p.value or 0)
        return int(self._on(device, run))

    def free(self, device: int, ptr: int) -> None:
        self._on(device, lambda: self._check(self._lib.cudaFree(ptr), "cudaFree"))

    def ipc_handle(self, device: int, ptr: int) -> bytes:
        handle = ctypes.create_string_buffer(IPC_HANDLE_BYTES)
        self._on(device, lambda: self._check(self._lib.cudaIpcGetMemHandle(handle, ptr),
                                             "cudaIpcGetMemHandle"))
        return handle.raw

    def _copy(self, device: int, dst: int, src: int, nbytes: int, kind: int) -> None:
        def run() -> None:
            self._check(self._lib.cudaMemcpy(dst, src, nbytes, kind), "cudaMemcpy")
            # A pageable or device-to-device cudaMemcpy may return before the
            # device has the bytes: wait for the legacy default stream it ran
            # on (not the process's other streams).
            self._check(self._lib.cudaStreamSynchronize(None), "cudaStreamSynchronize")
        self._on(device, run)

    def upload(self, device: int, dst: int, data: bytes) -> None:
        """``data`` (host bytes) to device memory at ``dst``."""
        buf = ctypes.create_string_buffer(data, len(data))
        self._copy(device, dst, ctypes.addressof(buf), len(data), _MEMCPY_HOST_TO_DEVICE)

    def download(self, device: int, src: int, nbytes: int) -> bytes:
        buf = ctypes.create_string_buffer(nbytes)
        self._copy(device, ctypes.addressof(buf), src, nbytes, _MEMCPY_DEVICE_TO_HOST)
        return buf.raw

    def copy(self, device: int, dst: int, src: int, nbytes: int) -> None:
        """Device to device on ``device``, finished when it returns."""
        self._copy(device, dst, src, nbytes, _MEMCPY_DEVICE_TO_DEVICE)

    def pointer_device(self, ptr: int) -> int:
        """The ordinal of the GPU device memory at ``ptr`` lies on
        (ValueError for memory that is not a device's)."""
        attrs = _PointerAttributes()
        self._check(self._lib.cudaPointerGetAttributes(ctypes.byref(attrs), ptr),
                    "cudaPointerGetAttributes")
        if attrs.type != _MEMORY_TYPE_DEVICE:
            raise ValueError("the __cuda_array_interface__ pointer is not device memory "
                             f"(cudaMemoryType {attrs.type})")
        return int(attrs.device)

    def synchronize(self, device: int) -> None:
        """Wait for all work this process queued on ``device``."""
        self._on(device, lambda: self._check(self._lib.cudaDeviceSynchronize(),
                                             "cudaDeviceSynchronize"))

    def stream_synchronize(self, device: int, stream: int) -> None:
        """Wait for ``stream`` (a cudaStream_t; 1 and 2: the legacy and the
        per-thread default streams, as __cuda_array_interface__ names them)."""
        self._on(device, lambda: self._check(
            self._lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize"))


_MEMORY_TYPE_DEVICE = 2  # cudaMemoryTypeDevice


class _PointerAttributes(ctypes.Structure):
    """cudaPointerAttributes (CUDA 11 on): the four fields read here, then
    the ``reserved`` words CUDA 13 adds (``long reserved[8]``) and as much
    again to spare, so that the runtime never writes past the buffer."""
    _fields_ = [("type", ctypes.c_int), ("device", ctypes.c_int),
                ("devicePointer", ctypes.c_void_p), ("hostPointer", ctypes.c_void_p),
                ("reserved", ctypes.c_long * 8), ("spare", ctypes.c_byte * 128)]


_runtime: Optional[Runtime] = None
_runtime_error: Optional[str] = None
_runtime_lock = threading.Lock()


def _loaded_cudart() -> list[str]:
    """The libcudart files this process has mapped already (torch's)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libcudart" in line}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def load_runtime(names: Optional[Sequence[str]] = None) -> Runtime:
    """libcudart, loaded once: $TENSORCAST_CUDART, else one this process
    has loaded, else the usual names. Raises Unavailable("libcudart not
    found ...") when none loads. ``names`` (tests): try only these, and
    do not keep the result."""
    global _runtime, _runtime_error
    if names is None:
        with _runtime_lock:
            if _runtime is not None:
                return _runtime
            if _runtime_error is not None:
                raise Unavailable(_runtime_error)
    env = os.environ.get("TENSORCAST_CUDART")
    tried = list(names) if names is not None else (
        [env] if env else [*_loaded_cudart(), *_CUDART_NAMES,
                           *filter(None, [ctypes.util.find_library("cudart")])])
    for name in tried:
        try:
            lib = ctypes.CDLL(name)
            runtime = Runtime(lib, name)
        except (OSError, AttributeError):
            continue
        if names is None:
            with _runtime_lock:
                _runtime = runtime
        return runtime
    why = f"libcudart not found (tried {', '.join(tried)})"
    if names is None:
        with _runtime_lock:
            _runtime_error = why
    raise Unavailable(why)


# -- what torch and CuPy take --------------------------------------------------------


def typestr(dt: _dtypes.dtype) -> Optional[str]:
    """The ``__cuda_array_interface__`` typestr of ``dt`` (bfloat16: its raw
    bits, ``<i2``, as torch's ``view(torch.int16)``), or None."""
    if dt is _dtypes.bfloat16:
        return "<i2"
    np_dt = dt.numpy_dtype
    if np_dt.kind not in "biufc":
        return None
    return np_dt.newbyteorder("<").str if np_dt.itemsize > 1 else np_dt.str


class CudaArray:
    """A fetched tensor's bytes in a lent device region, for torch or CuPy
    without a copy: ``torch.as_tensor(a, device="cuda:N")``,
    ``cupy.asarray(a)``. Both keep this object while their tensor lives,
    and this object keeps its slot of the region (given back when the last
    reference goes). ``device`` is this process's ordinal of the GPU."""

    def __init__(self, ptr: int, shape: Sequence[int], typestr: str, device: int,
                 nbytes: int) -> None:
        self.ptr = ptr
        self.shape = tuple(int(s) for s in shape)
        self.typestr = typestr
        self.device = device
        self.nbytes = nbytes

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        # C-contiguous (strides None), writable, and no stream to wait on:
        # the server synchronised its copies before its final message.
        return {"shape": self.shape, "typestr": self.typestr, "data": (self.ptr, False),
                "version": 3, "strides": None, "stream": None}

    def __repr__(self) -> str:
        return (f"<tensorcast CudaArray {self.shape} {self.typestr} on cuda:{self.device} "
                f"at 0x{self.ptr:x}>")


# -- a region --------------------------------------------------------------------------


class CudaRegion:
    """One cudaMalloc allocation, ``HEADER_BYTES`` of header then ``size``
    data bytes, lent to the server (``lend`` / ``lend_async``, or drive
    ``lending()``). ``close()`` ends the session (the server closes its
    mapping); ``free()`` gives the memory back."""

    def __init__(self, runtime: Any, device: int, size: int) -> None:
        if size <= 0:
            raise ValueError(f"a CUDA IPC region needs a size, not {size}")
        self.runtime = runtime
        self.device = device
        self.size = size
        self.data_offset = HEADER_BYTES
        self.ptr = runtime.malloc(device, HEADER_BYTES + size)
        self.region = ""
        self.server_device = ""  # the server's name of the GPU ("cuda:N")
        self._call: Any = None
        self._freed = False

    def request(self) -> pb.OpenSharedMemoryRequest:
        """The OpenSharedMemory request, the token written first."""
        rt = self.runtime
        token = secrets.token_bytes(_TOKEN_BYTES)
        handle = rt.ipc_handle(self.device, self.ptr)
        if len(handle) != IPC_HANDLE_BYTES:
            raise RuntimeError(f"cudaIpcGetMemHandle gave {len(handle)} bytes")
        bus = rt.pci_bus_id(self.device)
        rt.upload(self.device, self.ptr, token)
        return pb.OpenSharedMemoryRequest(size=HEADER_BYTES + self.size, token=token,
                                          cuda_ipc_handle=handle, cuda_pci_bus_id=bus)

    def lending(self) -> Generator[pb.OpenSharedMemoryRequest, Any, None]:
        """The lending without I/O: yields the request, receives (the call,
        its first event) or has the call's error thrown in; writes the
        challenge."""
        request = self.request()
        self._call, event = yield request
        if event.data_offset > self.data_offset:
            raise RuntimeError(
                f"the server reserves {event.data_offset} bytes of each region; this "
                f"client leaves {self.data_offset}")
        challenge = bytes(event.challenge)
        if len(challenge) > _MAX_CHALLENGE_BYTES:
            raise RuntimeError(f"the server's challenge has {len(challenge)} bytes; this "
                               f"client takes at most {_MAX_CHALLENGE_BYTES}")
        if challenge:
            self.runtime.upload(self.device, self.ptr + CHALLENGE_OFFSET, challenge)
        self.region = event.region
        self.server_device = event.device

    def lend(self, stub: Any, metadata: Sequence[tuple[str, str]]) -> None:
        """Lend it over a blocking stub (grpc.RpcError when refused)."""
        steps = self.lending()
        request = next(steps)
        call = stub.OpenSharedMemory(request, metadata=metadata)
        try:
            event = next(call)
        except BaseException:
            call.cancel()
            raise
        try:
            steps.send((call, event))
        except StopIteration:
            return
        raise RuntimeError("the lending asked more than one call")  # pragma: no cover

    async def lend_async(self, stub: Any, metadata: Sequence[tuple[str, str]]) -> None:
        """``lend`` over an asyncio stub."""
        import grpc.aio
        steps = self.lending()
        request = next(steps)
        call = stub.OpenSharedMemory(request, metadata=metadata)
        try:
            event = await call.read()
            if event is grpc.aio.EOF:
                raise RuntimeError("OpenSharedMemory ended without an answer")
        except BaseException:
            call.cancel()
            raise
        try:
            steps.send((call, event))
        except StopIteration:
            return
        raise RuntimeError("the lending asked more than one call")  # pragma: no cover

    def close(self) -> None:
        """End the session: the server closes its mapping."""
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def free(self) -> None:
        if not self._freed:
            self._freed = True
            try:
                self.runtime.free(self.device, self.ptr)
            except CudaError as e:  # at exit the context may be gone
                log.debug("cudaFree of a CUDA IPC region: %s", e)


class DeviceArena(_arena.Slots):
    """A lent ``CudaRegion`` carved into slots: fetched tensors hold theirs
    (``hold``) while they live; a Put takes one for its copy. ``close()``
    ends the session at once (the server closes its mapping); the memory is
    freed with the last slot still held, so tensors that outlive their
    client stay valid, contents included (the server never discards device
    memory) -- unless a transfer into it was cut short (a quarantined slot:
    the server may still be copying), then it is kept until the process
    ends. A slot given back is written again only after the device has
    synchronised (``allocate``)."""

    what = "CUDA IPC region"

    def __init__(self, region: CudaRegion) -> None:
        super().__init__(region.data_offset, region.data_offset + region.size)
        self.region = region
        self.device = region.device
        self.base = region.ptr
        self._gone = False
        # A slot given back since the device last synchronised: work the
        # program queued on its tensor (on any stream) may still read it.
        self._reused_unsynced = False

    def allocate(self, nbytes: int) -> int:
        """A slot, safe to write: when a slot has been given back since the
        last time, the device is synchronised first (the tensor that held
        it may still be read by queued kernels the server cannot see)."""
        off = super().allocate(nbytes)
        with self._lock:
            sync, self._reused_unsynced = self._reused_unsynced, False
        if sync:
            try:
                self.region.runtime.synchronize(self.device)
            except BaseException:
                super().release(off)
                raise
        return off

    def _last(self) -> bool:
        """Under the lock: whether the region may be freed now -- closed,
        no slot held, none quarantined (the server may still be copying
        there: such a region is kept until the process ends)."""
        last = (self.closed and not self._used and not self._quarantined
                and not self._gone)
        if last:
            self._gone = True
        return last

    def release(self, off: int) -> None:
        super().release(off)
        with self._lock:
            self._reused_unsynced = True
            last = self._last()
        if last:
            self.region.free()

    def hold(self, off: int, shape: Sequence[int], typestr: str, nbytes: int) -> CudaArray:
        """The slot at ``off`` as a CudaArray that gives it back when it
        goes."""
        a = CudaArray(self.base + off, shape, typestr, self.device, nbytes)
        weakref.finalize(a, self.release, off)
        return a

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._free = []
            last = self._last()
        self.region.close()
        if last:
            self.region.free()


# -- a client's state ---------------------------------------------------------------

# The server's answers to an OpenSharedMemory that mean "not for this
# client": no CUDA there, another host's GPU, --shared-memory off...
_REFUSED = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNIMPLEMENTED,
            grpc.StatusCode.INVALID_ARGUMENT)


class Source(NamedTuple):
    """A Put's bytes in device memory: ``nbytes`` at ``ptr`` on this
    process's GPU ``device``; ``sync()`` waits for the work that wrote them
    (torch: its current stream). ``keep`` holds the tensor."""
    ptr: int
    nbytes: int
    device: int
    shape: tuple[int, ...]
    dtype: _dtypes.dtype
    sync: Callable[[], None]
    keep: Any = None


class Device:
    """A client's CUDA IPC state, I/O-free: its mode (False, True or
    "auto"), the runtime (``runtime``, or loaded on first use by ``load``;
    tests pass stand-ins), the device arenas, and why the last transfer
    that asked for it did not use it. The transports (_transport.py) lend
    regions and make the transfers."""

    def __init__(self, mode: Any, runtime: Any = None,
                 load: Callable[[], Any] = lambda: load_runtime()) -> None:
        if mode not in (False, True, "auto"):
            raise ValueError('cuda_ipc is False, True or "auto"')
        self.mode = mode
        self.runtime = runtime  # a Runtime, or a stand-in with its methods
        self._load = load
        self.arenas: list[DeviceArena] = []
        self.why = "" if mode else "cuda_ipc is off (connect with cuda_ipc=True or \"auto\")"
        self.transfers = 0  # transfers that went through a region
        self.lock = threading.Lock()

    @property
    def status(self) -> dict[str, Any]:
        return {"mode": self.mode, "regions": len(self.arenas), "transfers": self.transfers,
                "why": self.why}

    def fallback(self, why: str) -> None:
        """The host path, for ``why``: logged, kept; raised in mode True."""
        self.why = why
        log.debug("CUDA IPC not used: %s; taking the host path", why)
        if self.mode is True:
            raise RuntimeError(f"cuda_ipc=True, but CUDA IPC cannot be used: {why}")

    def used(self) -> None:
        with self.lock:
            self.transfers += 1

    def load(self) -> Any:
        """The runtime, loaded on first use (Unavailable: why not)."""
        if self.runtime is None:
            self.runtime = self._load()
        return self.runtime

    def why_not(self, device: int, *, nbytes: int, seed: bool, clustered: Optional[bool],
                progress: bool) -> Optional[str]:
        """Why a transfer of ``nbytes`` on this process's GPU ``device``
        cannot use CUDA IPC (None: it can), loading the runtime on first
        use."""
        if not self.mode:
            return self.why or "cuda_ipc is off"
        if clustered or not seed:
            return "a cluster: regions are lent to one server, the client's first"
        if progress:
            return "progress=True: the bytes go over the socket"
        if nbytes <= 0:
            return "no bytes to move"
        try:
            runtime = self.load()
        except Unavailable as e:
            return str(e)
        try:
            count = runtime.device_count()
        except CudaError as e:
            return f"no CUDA device visible ({e})"
        if count <= 0:
            return "no CUDA device visible (cudaGetDeviceCount: 0)"
        if not 0 <= device < count:
            return f"no CUDA device {device} in this process (it sees {count})"
        return None

    def refused(self, error: grpc.RpcError) -> str:
        """The reason for a region the server did not open; in mode "auto",
        an answer that means "never on this server" turns CUDA IPC off."""
        code = error.code()
        why = f"the server refused the CUDA IPC region ({code.name}: {error.details()})"
        if code in _REFUSED and self.mode == "auto":
            self.mode = False
        return why

    def slot(self, device: int, nbytes: int) -> Optional[tuple[DeviceArena, int]]:
        """A free slot of ``nbytes`` in a region on ``device``, or None
        (a new region is needed)."""
        for arena in self.arenas:
            if arena.device == device and not arena.closed:
                try:
                    return arena, arena.allocate(nbytes)
                except MemoryError:
                    continue
        return None

    def new_region(self, device: int, nbytes: int, arena_bytes: int) -> CudaRegion:
        """A region for ``nbytes`` on ``device`` (``arena_bytes``, or more),
        not yet lent; regions of that device with no slot held (and none
        quarantined: the server may still be copying there) are retired
        first."""
        for arena in [a for a in self.arenas
                      if a.device == device and a.live() == 0 and not a.quarantined()]:
            self.arenas.remove(arena)
            arena.close()
        assert self.runtime is not None
        return CudaRegion(self.runtime, device, max(int(arena_bytes),
                                                    _arena.ALIGNMENT + nbytes))

    def add(self, region: CudaRegion) -> DeviceArena:
        arena = DeviceArena(region)
        self.arenas.append(arena)
        return arena

    def close(self) -> None:
        arenas, self.arenas = self.arenas, []
        for arena in arenas:
            arena.close()


# -- torch (imported only by callers that have a torch tensor) ------------------------


def torch_device_index(torch: Any, device: Any) -> Optional[int]:
    """This process's ordinal of ``device`` when it names a CUDA device
    (``"cuda"``: torch's current one), else None."""
    if device is None:
        return None
    try:
        d = torch.device(device) if not isinstance(device, int) else torch.device(
            "cuda", device)
    except (RuntimeError, TypeError, ValueError):
        return None
    if d.type != "cuda":
        return None
    return int(d.index) if d.index is not None else int(torch.cuda.current_device())


def torch_source(x: Any) -> Optional[Source]:
    """A CUDA torch tensor's bytes as a Put source (contiguous: a copy by
    torch when it is not), or None for any other tensor."""
    dev = getattr(x, "device", None)
    if getattr(dev, "type", None) != "cuda":
        return None
    import torch
    t = x.detach().contiguous()
    dt = _dtypes.as_dtype(t.dtype)
    stream = torch.cuda.current_stream(t.device)
    return Source(int(t.data_ptr()), int(t.numel()) * int(t.element_size()),
                  int(t.device.index), tuple(int(s) for s in t.shape), dt,
                  stream.synchronize, t)


def to_torch(torch: Any, a: CudaArray, dt: _dtypes.dtype) -> Any:
    """The torch tensor viewing ``a`` (no copy)."""
    t = torch.as_tensor(a, device=torch.device("cuda", a.device))
    if dt is _dtypes.bfloat16:
        t = t.view(torch.bfloat16)
    return t


# -- any __cuda_array_interface__ object (CuPy's arrays, numba's...) -------------------


def is_cuda_array(x: Any) -> bool:
    """Whether ``x`` exports ``__cuda_array_interface__`` (and is not a
    torch tensor: those take torch's own path)."""
    if type(x).__module__.startswith("torch"):
        return False
    try:
        return hasattr(x, "__cuda_array_interface__")
    except Exception:  # a property that refuses (host memory, say)
        return False


def cai_source(x: Any, runtime: Any) -> Source:
    """The bytes of a ``__cuda_array_interface__`` object as a Put source:
    C-contiguous only (ValueError otherwise), any little-endian typestr
    tensorcast has; its ``stream`` is synchronised before the bytes are
    read (absent: the legacy default stream; None: nothing to wait for)."""
    import numpy as np
    cai = x.__cuda_array_interface__
    shape = tuple(int(s) for s in cai["shape"])
    np_dt = np.dtype(cai["typestr"])
    if np_dt.byteorder == ">":
        raise ValueError(f"big-endian __cuda_array_interface__ data ({cai['typestr']}): "
                         "convert it first")
    dt = _dtypes.from_numpy_dtype(np_dt)
    strides = cai.get("strides")
    if strides is not None:
        want, step = [], np_dt.itemsize
        for n in reversed(shape):
            want.append(step)
            step *= n
        if any(n > 1 and int(s) != w for s, w, n in zip(strides, reversed(want), shape)):
            raise ValueError("a non-contiguous __cuda_array_interface__ array: make it "
                             "C-contiguous first (cupy.ascontiguousarray)")
    nbytes = int(np.prod(shape, dtype=np.int64)) * np_dt.itemsize
    ptr = int(cai["data"][0])
    device = runtime.pointer_device(ptr) if nbytes else 0
    stream = cai.get("stream", 1) if int(cai.get("version", 0)) >= 3 else 1

    def sync() -> None:
        if stream is not None:
            runtime.stream_synchronize(device, int(stream))
    return Source(ptr, nbytes, device, shape, dt, sync, x)


def download(runtime: Any, src: Source) -> Any:
    """``src``'s bytes as a host NumPy array (the host path)."""
    import numpy as np
    src.sync()
    raw = runtime.download(src.device, src.ptr, src.nbytes) if src.nbytes else b""
    np_dt = np.dtype("<u2") if src.dtype is _dtypes.bfloat16 else src.dtype.numpy_dtype
    return np.frombuffer(bytearray(raw), dtype=np_dt.newbyteorder("<") if np_dt.itemsize > 1
                         else np_dt).reshape(src.shape)
