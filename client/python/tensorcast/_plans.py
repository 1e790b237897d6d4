"""What the blocking and the asyncio clients share: every public operation
as a *plan*, with no I/O of its own (a sans-I/O design).

A plan is a generator. It yields the calls it needs -- :class:`Call` (a
unary RPC), :class:`Fetch` and :class:`Put` (a bulk stream), :class:`Flush`
(delete the handles of collected proxies now), :class:`Wait` (for another
plan's work: a proxy that plan materialises) -- receives each one's
answer (or has its error thrown in), and returns the operation's result.
Argument checks, error messages, cluster routing (``_cluster.Router``, whose
refreshes are plans too) and the cleanup of temporary tensors live here,
once. The drivers are thin: ``tensorcast.Client`` runs a plan by making each
call and ``tensorcast.aio.Client`` by awaiting it; each also owns its
channels and its transports -- grpcio, the native extension, shared memory
-- which carry Fetch and Put behind one interface (:class:`Transport`).

Plans compose with ``yield from``; a plan never blocks and never awaits, so
the same object can be driven by a test without a server
(tests/python/test_plans.py).
"""

from __future__ import annotations

import queue
import random
import threading
import weakref
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Generator,
    NamedTuple,
    Optional,
    Protocol,
    Sequence,
    TypeVar,
)

import numpy as np

from tensorcast import _arena, _cluster, _core, _cuda_ipc, _dtypes, _fastpath, _transport
from tensorcast._cluster import Dest
from tensorcast._core import Meta, meta_from_info
from tensorcast._dtypes import DTypeLike, dtype
from tensorcast._errors import NotFoundError, TensorcastError
from tensorcast.v1 import tensor_service_pb2 as pb
from tensorcast.v1 import tensor_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from tensorcast._proxy import TensorBase

T = TypeVar("T")
Plan = Generator[Any, Any, T]

class Call(NamedTuple):
    """A unary RPC: ``method`` of TensorService (``"Info"``...) with
    ``request``, on the connection to ``address`` ("" = the client's first
    one), with a deadline of ``timeout`` seconds (None: the client's unary
    timeout). Answers the response message; raises a TensorcastError."""
    method: str
    request: Any
    address: str = ""
    timeout: Optional[float] = None


class Fetch(NamedTuple):
    """A Fetch stream into a new array (or ``out``, already checked);
    ``nbytes`` is what it will carry, ``bits`` asks bfloat16 as raw
    uint16. Answers the array. With ``device`` (this process's ordinal of
    a GPU): into device memory through CUDA IPC when it can (answers a
    ``_cuda_ipc.CudaArray``), else as without it (an array)."""
    request: pb.FetchRequest
    address: str
    progress: bool
    bits: bool
    nbytes: int
    out: Any = None
    device: Optional[int] = None


class Put(NamedTuple):
    """A Put stream: ``header`` (a PutRequest) then ``array``'s bytes.
    Answers the PutResponse. With ``source`` (a ``_cuda_ipc.Source``, and
    no array): from device memory through CUDA IPC, answering None when
    it cannot (the plan then puts from the host)."""
    header: Any
    array: Optional[np.ndarray]
    address: str
    progress: bool
    source: Any = None


class Flush(NamedTuple):
    """Delete the handles of collected proxies now, waiting at most
    ``timeout`` (None: the unary timeout) for deletions under way (answers
    None)."""
    timeout: Optional[float] = None


class Wait(NamedTuple):
    """Wait until ``event`` (made by the client's ``_event()``) is set:
    another plan's work this one waits on has ended (a proxy's
    materialisation). Answers None."""
    event: Any


class Transport(Protocol):
    """How a driver carries one bulk stream: grpcio, the native extension
    or shared memory. None means "not this way" (the region is refused or
    the array is not contiguous): the driver tries the next transport.
    The asyncio driver's transports have the same methods as coroutines."""

    def fetch(self, request: pb.FetchRequest, *, nbytes: int, bits: bool, out: Any,
              progress: bool) -> Optional[np.ndarray]: ...

    def put(self, header: Any, array: np.ndarray,
            progress: bool) -> Optional[pb.PutResponse]: ...


def run(plan: Plan[T], execute: Callable[[Any], Any]) -> T:
    """Drive ``plan`` to its result, ``execute`` making each step (the
    blocking driver; tests drive plans with a fake ``execute``)."""
    result: Any = None
    error: Optional[BaseException] = None
    while True:
        try:
            step = plan.throw(error) if error is not None else plan.send(result)
        except StopIteration as stop:
            return stop.value
        error = None
        try:
            result = execute(step)
        except BaseException as e:  # handed to the plan, which cleans up
            error, result = e, None


def stream_order(op: Any, *, shared: Any, native: Any, grpcio: Any,
                 clustered: Optional[bool]) -> list[Any]:
    """The transports to try for a Fetch or Put, in order: shared memory
    (when on, outside a cluster, large enough, no progress bar), the native
    extension (no progress bar), grpcio."""
    order = []
    if shared is not None and not op.progress and not clustered:
        if type(op) is Fetch:
            if op.nbytes >= _fastpath.SHM_MIN_BYTES:
                order.append(shared)
        elif op.array.nbytes >= _fastpath.SHM_MIN_BYTES:
            order.append(shared)
    if native is not None and not op.progress:
        order.append(native)
    order.append(grpcio)
    return order


class ClientBase:
    """The state and plans that both clients share: settings, the
    connection table (one per cluster member), the router, ownership, and a
    plan per operation. The drivers add how a channel is opened, their
    transports, and the public methods that run these plans.

    Ownership: handles of live owning proxies are in ``_owned``; a proxy's
    finalizer puts its handle in ``_released`` (no I/O, no lock), and the
    driver deletes those in batches (``_plan_delete_quietly``)."""

    _tensor_class: type

    # The driver's: its channel extras, how it opens a channel to an
    # address, and its grpcio and native transport classes.
    _channel_extras: Sequence[tuple[str, Any]] = ()
    _grpcio_transport: Any
    _native_transport: Any

    def __init__(self, target: Any, token: Optional[str], *, timeout: float,
                 stream_timeout: Optional[float], connect_timeout: float,
                 chunk_bytes: int, put_chunk_bytes: int, tls: bool = False,
                 secure: bool = False, root_certificates: Any = None,
                 certificate_chain: Any = None, private_key: Any = None,
                 options: Optional[Sequence[tuple[str, Any]]] = None,
                 native: Optional[bool] = None, shared_memory: Any = False,
                 cuda_ipc: Any = False) -> None:
        self._seeds = _cluster.split_targets(target or _transport.default_target())
        if not self._seeds:
            raise ValueError("no server address given")
        self.target = ",".join(self._seeds)
        if shared_memory not in (False, True, "auto"):
            raise ValueError('shared_memory is False, True or "auto"')
        if shared_memory is True and not _fastpath.is_local(self.target):
            raise ValueError(f"shared memory needs a server on this host, not {self.target}")
        self._shm_mode: Any = shared_memory if _fastpath.is_local(self.target) else False
        if cuda_ipc not in (False, True, "auto"):
            raise ValueError('cuda_ipc is False, True or "auto"')
        if cuda_ipc is True and not _fastpath.is_local(self.target):
            raise ValueError(f"CUDA IPC needs a server on this host, not {self.target}")
        self._cuda = _cuda_ipc.Device(cuda_ipc if _fastpath.is_local(self.target) else False)
        if cuda_ipc and not self._cuda.mode:
            self._cuda.why = f"the server ({self.target}) is not on this host"
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.connect_timeout = connect_timeout
        self.chunk_bytes = int(chunk_bytes)
        self.put_chunk_bytes = max(1, min(int(put_chunk_bytes), _core.MAX_PUT_CHUNK_BYTES))
        self._metadata = _transport.auth_metadata(token)
        self._router = _cluster.Router(self._seeds)
        self._closed = False
        self._owned: set[str] = set()
        self._owned_lock = threading.Lock()
        self._released: "queue.SimpleQueue[Optional[str]]" = queue.SimpleQueue()
        # Channels: one per cluster member, made on first use.
        self._opts = _transport.channel_options([*self._channel_extras, *(options or [])])
        self._creds = _transport.channel_credentials(tls or secure, root_certificates,
                                                     certificate_chain, private_key)
        self.tls = self._creds is not None
        self._native_mode = native
        self._conns: dict[str, _transport.Conn] = {}
        self._conns_lock = threading.Lock()
        seed = self._conn_for(self._seeds[0])
        self._conns[""] = seed
        self._seed = seed
        self._channel, self._stub = seed.channel, seed.stub

    # -- channels ------------------------------------------------------------------

    def _open_channel(self, address: str) -> Any:
        """The driver's channel to ``address`` (grpc or grpc.aio)."""
        raise NotImplementedError

    def _conn_for(self, address: str) -> _transport.Conn:
        """The connection to ``address`` ("" = the first), made on first use."""
        conn = self._conns.get(address)
        if conn is not None:
            return conn
        with self._conns_lock:
            conn = self._conns.get(address)
            if conn is not None:
                return conn
            channel = self._open_channel(address)
            stub = pb_grpc.TensorServiceStub(channel)
            call = _fastpath.open_call(address, self._native_mode, tls=self.tls,
                                       metadata=self._metadata)
            conn = _transport.Conn(
                channel, stub, self._grpcio_transport(self, channel),
                None if call is None else self._native_transport(self, call, stub))
            self._conns[address] = conn
            return conn

    def _order(self, step: Any) -> list[Any]:
        """The transports to try for a Fetch or Put, in order."""
        conn = self._conn_for(step.address)
        return stream_order(
            step, shared=self._shared if conn is self._seed else None,
            native=conn.native, grpcio=conn.grpcio, clustered=self._router.clustered)

    _shared: Any = None  # the driver's shared-memory transport, if any
    # The size of the region shared arrays live in (shared_empty), lent on
    # the first of them (larger if that array needs it); set it before.
    shared_arena_bytes: int = _arena.DEFAULT_ARENA_BYTES

    def _shared_transport(self) -> Any:
        """The shared-memory transport, for shared_empty."""
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._shared is None:
            raise RuntimeError(
                "shared arrays need shared memory: connect with shared_memory=True "
                "(or \"auto\") to a server on this host started with --shared-memory")
        return self._shared

    # The size of each device region CUDA IPC transfers use (larger when a
    # transfer needs it); set it before the first.
    cuda_arena_bytes: int = _cuda_ipc.DEFAULT_ARENA_BYTES
    _cuda_transport: Any = None  # the driver's CUDA IPC transport, if on

    @property
    def cuda_ipc_status(self) -> dict[str, Any]:
        """CUDA IPC at a glance: ``mode`` (False, True or "auto"; "auto"
        turns False once the server refused a region), ``regions`` (device
        regions lent), ``transfers`` (made through them) and ``why`` (why
        the last transfer that could have used it did not: "" if none)."""
        return self._cuda.status

    def _device_transport(self, step: Any) -> Any:
        """The CUDA IPC transport for a device Fetch or Put step, or None
        after logging why not (raises instead with cuda_ipc=True)."""
        if type(step) is Fetch:
            assert step.device is not None
            device, nbytes = step.device, step.nbytes
        else:
            device, nbytes = step.source.device, step.source.nbytes
        why = self._cuda.why_not(
            device, nbytes=nbytes, seed=self._conn_for(step.address) is self._seed,
            clustered=self._router.clustered, progress=step.progress)
        if why is None and self._cuda_transport is None:
            why = "no CUDA IPC transport"  # pragma: no cover - mode on means one
        if why is not None:
            self._cuda.fallback(why)
            return None
        return self._cuda_transport

    @property
    def native(self) -> bool:
        """Whether Put and Fetch use the native extension (the asyncio
        client runs its calls in a worker thread)."""
        return self._seed.native is not None

    @property
    def shared_memory(self) -> bool:
        """Whether large transfers use shared memory (known after the
        first)."""
        lender = self._shared.lender if self._shared is not None else None
        return lender is not None and bool(lender.mode) and lender.lent

    @property
    def _shm(self) -> Optional[_fastpath.SharedMemory]:
        """The lent region, while one is open."""
        return self._shared.lender.memory if self._shared is not None else None

    # -- ownership (no I/O) ----------------------------------------------------

    def _wrap(self, meta: Meta, *, owned: bool) -> Any:
        t = self._tensor_class(self, meta)
        if owned:
            self._own(t)
        return t

    def _own(self, t: "TensorBase") -> None:
        handle = t._meta.handle
        assert handle is not None
        with self._owned_lock:
            self._owned.add(handle)
        f = weakref.finalize(t, self._released.put, handle)
        f.atexit = False  # at exit, close() deletes what is left
        t._finalizer = f
        self._on_owned()

    def _on_owned(self) -> None:
        """The driver's hook: a proxy owns a handle now."""

    def _event(self) -> Any:
        """An event a :class:`Wait` step waits on (``set()`` ends the wait):
        a ``threading.Event`` here; the asyncio driver's is an
        ``asyncio.Event``."""
        return threading.Event()

    def _disown(self, handle: str) -> bool:
        with self._owned_lock:
            if handle in self._owned:
                self._owned.discard(handle)
                return True
            return False

    def _take_released(self) -> list[str]:
        """The released handles still owned (disowned now); a None (the
        blocking driver's stop mark) is put back."""
        out: list[str] = []
        while True:
            try:
                h = self._released.get_nowait()
            except queue.Empty:
                return out
            if h is None:
                self._released.put(None)
                return out
            if self._disown(h):
                out.append(h)

    def _take_owned(self) -> list[str]:
        with self._owned_lock:
            left = sorted(self._owned)
            self._owned.clear()
        return left

    # -- the steps every plan is made of ----------------------------------------

    def _unary(self, method: str, request: Any, ref: str = "", *,
               dest: Optional[Dest] = None) -> Plan[Any]:
        """``method`` on the node that holds ``ref`` (any node for "" or a
        name); a node's own failure is named and marks it down."""
        if dest is None:
            # A plain server (the common case) needs no routing plan.
            router = self._router
            dest = _cluster.PLAIN if router.clustered is False else (
                yield from router.route_ref(ref))
        try:
            return (yield Call(method, request, dest.address))
        except TensorcastError as e:
            raise self._router.failed(dest, e) from None

    def _to_meta(self, ref: str, device: Optional[str], dt: Optional[dtype],
                 copy: bool) -> Plan[Meta]:
        req = pb.ToRequest(ref=ref, device=device or "", copy=copy,
                           dtype=dt.proto if dt is not None else pb.DTYPE_UNSPECIFIED)
        return meta_from_info((yield from self._unary("To", req, ref)).tensor)

    def _detach_meta(self, ref: str) -> Plan[Meta]:
        resp = yield from self._unary("Detach", pb.DetachRequest(ref=ref), ref)
        return meta_from_info(resp.tensor)

    def _plan_delete_quietly(self, handles: Sequence[str],
                             timeout: Optional[float] = None) -> Plan[None]:
        """Delete, ignoring handles already gone (expired, deleted by name);
        never raises: one Delete per node and per MAX_DELETE_REFS, and one
        by one when a batch fails with NOT_FOUND (Delete is all or
        nothing)."""
        handles = list(handles)
        if not handles:
            return
        if len(handles) > _core.MAX_DELETE_REFS:  # the server's cap per call
            for at in range(0, len(handles), _core.MAX_DELETE_REFS):
                yield from self._plan_delete_quietly(
                    handles[at:at + _core.MAX_DELETE_REFS], timeout)
            return
        groups: dict[str, list[str]] = {}
        for h in handles:
            groups.setdefault(_cluster.handle_node(h), []).append(h)
        if len(groups) > 1:
            for group in groups.values():
                yield from self._plan_delete_quietly(group, timeout)
            return
        try:
            dest = yield from self._router.route_ref(handles[0])
            yield Call("Delete", pb.DeleteRequest(refs=handles), dest.address, timeout)
            return
        except NotFoundError:
            if len(handles) == 1:
                return
        except Exception:
            return
        for h in handles:
            yield from self._plan_delete_quietly([h], timeout)

    def _fetch(self, req: pb.FetchRequest, *, progress: bool, bits: bool, nbytes: int,
               out: Any, device: Optional[int] = None) -> Plan[Any]:
        if req.chunk_bytes == 0 and self.chunk_bytes:
            req.chunk_bytes = self.chunk_bytes
        router = self._router
        dest = _cluster.PLAIN if router.clustered is False else (
            yield from router.route_ref(req.ref))
        try:
            return (yield Fetch(req, dest.address, progress, bits, nbytes, out, device))
        except TensorcastError as e:
            raise self._router.failed(dest, e) from None

    def _put(self, array: np.ndarray, *, device: Any, requires_grad: bool,
             name: Optional[str], ttl: Optional[float], progress: bool,
             wire_dtype: Optional[dtype] = None, node: Optional[str] = None) -> Plan[Any]:
        header = _core.put_header(array, device=device, requires_grad=requires_grad,
                                  name=name, ttl=ttl, wire_dtype=wire_dtype)
        dest = yield from self._router.route_new(header.header.device,
                                                 int(header.header.total_bytes), node)
        try:
            resp = yield Put(header, array, dest.address, progress)
        except TensorcastError as e:
            raise self._router.failed(dest, e) from None
        return self._wrap(meta_from_info(resp.tensor), owned=True)

    def _put_device(self, src: "_cuda_ipc.Source", *, device: Any, requires_grad: bool,
                    name: Optional[str], ttl: Optional[float], progress: bool,
                    node: Optional[str]) -> Plan[Any]:
        """A Put from device memory through CUDA IPC; None when it cannot
        (the caller puts from the host)."""
        header = _core.put_header_for(src.shape, src.dtype, device=device,
                                      requires_grad=requires_grad, name=name, ttl=ttl)
        dest = yield from self._router.route_new(header.header.device,
                                                 int(header.header.total_bytes), node)
        try:
            resp = yield Put(header, None, dest.address, progress, src)
        except TensorcastError as e:
            raise self._router.failed(dest, e) from None
        return None if resp is None else self._wrap(meta_from_info(resp.tensor), owned=True)

    def _create(self, req: pb.CreateRequest, node: Optional[str]) -> Plan[Any]:
        dest = yield from self._router.route_new(req.device, 0, node)
        resp = yield from self._unary("Create", req, dest=dest)
        return self._wrap(meta_from_info(resp.tensor), owned=True)

    # -- making tensors ---------------------------------------------------------

    def _plan_tensor(self, data: Any, dtype: Optional[DTypeLike], device: Any,
                     requires_grad: bool, name: Optional[str], ttl: Optional[float],
                     progress: bool, node: Optional[str]) -> Plan[Any]:
        from tensorcast._proxy import TensorBase
        dt = _dtypes.as_dtype(dtype) if dtype is not None else None
        if isinstance(data, TensorBase):
            if not isinstance(data, self._tensor_class):
                raise TypeError("tensor() of a RemoteTensor of the other API (blocking "
                                "or asyncio): use that API's tensor()")
            return (yield from data._to_plan((), {"device": device, "dtype": dt,
                                                  "copy": True}))
        if _core.is_torch_tensor(data) and data.device.type == "cuda" and (
                dt is None or dt is _dtypes.as_dtype(data.dtype)):
            t = yield from self._put_torch_device(data, device, requires_grad, name, ttl,
                                                  progress, node)
            if t is not None:
                return t
        if _cuda_ipc.is_cuda_array(data):
            return (yield from self._plan_from_cuda_array(data, dt, device, requires_grad,
                                                          name, ttl, progress, node))
        src = _core.tensor_source(data, dt, device=device, requires_grad=requires_grad,
                                  name=name, ttl=ttl)
        if src.request is not None:
            return (yield from self._create(src.request, node))
        assert src.array is not None
        return (yield from self._put(src.array, device=device, requires_grad=requires_grad,
                                     name=name, ttl=ttl, progress=progress,
                                     wire_dtype=src.wire_dtype, node=node))

    def _plan_from_numpy(self, array: np.ndarray, device: Any, requires_grad: bool,
                         name: Optional[str], ttl: Optional[float], progress: bool,
                         node: Optional[str]) -> Plan[Any]:
        a = _core.as_upload_array(array)
        return (yield from self._put(a, device=device, requires_grad=requires_grad,
                                     name=name, ttl=ttl, progress=progress, node=node))

    def _plan_from_torch(self, x: Any, device: Any, name: Optional[str],
                         ttl: Optional[float], progress: bool,
                         node: Optional[str]) -> Plan[Any]:
        if not _core.is_torch_tensor(x):
            raise TypeError(f"expected a torch.Tensor (got {type(x).__name__})")
        dev = str(x.device) if device is None else device
        if x.device.type == "cuda":
            t = yield from self._put_torch_device(x, dev, bool(x.requires_grad), name, ttl,
                                                  progress, node)
            if t is not None:
                return t
        array, wire = _core.torch_to_numpy(x)
        return (yield from self._put(
            array, device=dev,
            requires_grad=bool(x.requires_grad), name=name, ttl=ttl, progress=progress,
            wire_dtype=wire, node=node))

    def _put_torch_device(self, x: Any, device: Any, requires_grad: bool,
                          name: Optional[str], ttl: Optional[float], progress: bool,
                          node: Optional[str]) -> Plan[Any]:
        """A CUDA torch tensor put through CUDA IPC, or None (the host
        path, the reason given)."""
        if not self._cuda.mode:
            self._cuda.fallback(self._cuda.why or "cuda_ipc is off")
            return None
        src = _cuda_ipc.torch_source(x)
        assert src is not None
        return (yield from self._put_device(src, device=device, requires_grad=requires_grad,
                                            name=name, ttl=ttl, progress=progress,
                                            node=node))

    def _plan_from_cuda_array(self, x: Any, dt: Optional[dtype], device: Any,
                              requires_grad: bool, name: Optional[str],
                              ttl: Optional[float], progress: bool,
                              node: Optional[str]) -> Plan[Any]:
        """tc.tensor of a ``__cuda_array_interface__`` object (CuPy...):
        through CUDA IPC when it can, else downloaded with libcudart and
        put from the host."""
        try:
            runtime = self._cuda.load()
        except _cuda_ipc.Unavailable as e:
            raise RuntimeError(f"reading a __cuda_array_interface__ array needs the CUDA "
                               f"runtime: {e}") from None
        src = _cuda_ipc.cai_source(x, runtime)
        if dt is not None and dt is not src.dtype:
            self._cuda.fallback(f"a cast ({src.dtype.name} to {dt.name}) is made on the host")
        elif not self._cuda.mode:
            self._cuda.fallback(self._cuda.why or "cuda_ipc is off")
        else:
            t = yield from self._put_device(src, device=device, requires_grad=requires_grad,
                                            name=name, ttl=ttl, progress=progress, node=node)
            if t is not None:
                return t
        host = _cuda_ipc.download(runtime, src)
        if dt is not None and dt is not src.dtype:
            host = host.astype(dt.numpy_dtype)
        return (yield from self._put(host, device=device, requires_grad=requires_grad,
                                     name=name, ttl=ttl, progress=progress, node=node))

    def _plan_create(self, node: Optional[str], **kwargs: Any) -> Plan[Any]:
        return (yield from self._create(_core.create_request(**kwargs), node))

    def _plan_zeros(self, size: tuple[Any, ...], dtype: Optional[DTypeLike], device: Any,
                    requires_grad: bool, name: Optional[str], ttl: Optional[float],
                    node: Optional[str]) -> Plan[Any]:
        return self._plan_create(node, shape=_core.size_args(size),
                                 dtype_=float_default(dtype), device=device,
                                 requires_grad=requires_grad, name=name, ttl=ttl,
                                 zeros=True)

    def _plan_ones(self, size: tuple[Any, ...], dtype: Optional[DTypeLike], device: Any,
                   requires_grad: bool, name: Optional[str], ttl: Optional[float],
                   node: Optional[str]) -> Plan[Any]:
        return self._plan_create(node, shape=_core.size_args(size),
                                 dtype_=float_default(dtype), device=device,
                                 requires_grad=requires_grad, name=name, ttl=ttl, ones=True)

    def _plan_full(self, size: Sequence[int], fill_value: Any, dtype: Optional[DTypeLike],
                   device: Any, requires_grad: bool, name: Optional[str],
                   ttl: Optional[float], node: Optional[str]) -> Plan[Any]:
        dt = _dtypes.as_dtype(dtype) if dtype is not None else _core.fill_dtype(fill_value)
        if isinstance(fill_value, complex):
            raise ValueError("full() takes a real fill value (complex fills are "
                             "not supported by the server's Create)")
        return (yield from self._plan_create(
            node, shape=_core.size_args((size,)), dtype_=dt, device=device,
            requires_grad=requires_grad, name=name, ttl=ttl, full=float(fill_value)))

    def _plan_arange(self, start: float, end: Optional[float], step: float,
                     dtype: Optional[DTypeLike], device: Any, requires_grad: bool,
                     name: Optional[str], ttl: Optional[float],
                     node: Optional[str]) -> Plan[Any]:
        dt = _dtypes.as_dtype(dtype) if dtype is not None else None
        numel, dt, s, st = _core.arange_args(start, end, step, dt)
        return (yield from self._plan_create(
            node, shape=(numel,), dtype_=dt, device=device, requires_grad=requires_grad,
            name=name, ttl=ttl, arange=(s, st)))

    def _plan_eye(self, n: int, m: Optional[int], dtype: Optional[DTypeLike], device: Any,
                  requires_grad: bool, name: Optional[str], ttl: Optional[float],
                  node: Optional[str]) -> Plan[Any]:
        return self._plan_create(node, shape=(n, n if m is None else m),
                                 dtype_=float_default(dtype), device=device,
                                 requires_grad=requires_grad, name=name, ttl=ttl, eye=True)

    def _plan_rand(self, size: tuple[Any, ...], seed: Optional[int],
                   dtype: Optional[DTypeLike], device: Any, requires_grad: bool,
                   name: Optional[str], ttl: Optional[float],
                   node: Optional[str]) -> Plan[Any]:
        return self._plan_create(node, shape=_core.size_args(size),
                                 dtype_=float_default(dtype), device=device,
                                 requires_grad=requires_grad, name=name, ttl=ttl,
                                 rand_seed=random.getrandbits(63) if seed is None else seed)

    # -- finding and managing ----------------------------------------------------

    def _plan_get(self, ref: str) -> Plan[Any]:
        resp = yield from self._unary("Info", pb.InfoRequest(ref=ref), ref)
        return self._wrap(meta_from_info(resp.tensor), owned=False)

    def _plan_fetch_into(self, ref: Any, out: Any, force: bool) -> Plan[np.ndarray]:
        from tensorcast._proxy import TensorBase
        t = ref if isinstance(ref, TensorBase) else (yield from self._plan_get(ref))
        return (yield from t._numpy_plan(force=force, progress=False, out=out))

    def _plan_list(self, name_prefix: str) -> Plan[list[Any]]:
        yield Flush()
        out: list[Any] = []
        dests = [self._router.route_node(n) for n in (yield from self._router.nodes())]
        for dest in dests or [_cluster.PLAIN]:
            token = ""
            while True:
                resp = yield from self._unary("List", pb.ListRequest(
                    page_size=1000, page_token=token, name_prefix=name_prefix), dest=dest)
                out.extend(self._wrap(meta_from_info(i), owned=False) for i in resp.tensors)
                token = resp.next_page_token
                if not token:
                    break
        return out

    def _plan_delete(self, refs: Sequence[Any]) -> Plan[int]:
        from tensorcast._proxy import TensorBase
        names: list[str] = []
        released: list[str] = []  # the handles of proxies given up here
        for r in refs:
            if isinstance(r, TensorBase):
                handle = r._release_for_delete()
                names.append(handle)
                if handle:
                    released.append(handle)
            else:
                names.append(str(r))
                self._disown(str(r))
        names = [n for n in names if n]
        groups: dict[str, list[str]] = {}
        for n in names:
            groups.setdefault(_cluster.handle_node(n), []).append(n)
        deleted = 0
        try:
            for group in groups.values():
                resp = yield from self._unary("Delete", pb.DeleteRequest(refs=group),
                                              group[0])
                deleted += int(resp.deleted)
        except BaseException:
            # Delete is all or nothing: a bad ref beside them kept the
            # proxies' tensors, which nothing owns any more. They go.
            yield from self._plan_delete_quietly(released)
            raise
        return deleted

    def _plan_copy(self, ref: Any, node: str, device: Any, dtype: Optional[DTypeLike],
                   name: Optional[str], ttl: Optional[float]) -> Plan[Any]:
        from tensorcast._proxy import TensorBase
        if isinstance(ref, TensorBase):
            r = yield from ref._handle_plan()
        else:
            r = str(ref)
        dt = _dtypes.as_dtype(dtype) if dtype is not None else None
        req = pb.CopyRequest(ref=r, node=node, name=name or "", ttl_seconds=int(ttl or 0),
                             device=_core.normalize_device(device) if device else "",
                             dtype=dt.proto if dt is not None else pb.DTYPE_UNSPECIFIED)
        resp = yield from self._unary("Copy", req, r)
        return self._wrap(meta_from_info(resp.tensor), owned=True)

    def _plan_stats(self) -> Plan[dict[str, dict[str, Any]]]:
        yield Flush()
        return stats_dict((yield from self._unary("Stats", pb.StatsRequest())))

    def _plan_server_info(self) -> Plan[dict[str, Any]]:
        return server_info_dict((yield from self._unary("Stats", pb.StatsRequest())))

    def _plan_cuda_is_available(self) -> Plan[bool]:
        return bool((yield from self._plan_server_info())["cuda_available"])

    def _plan_empty_cache(self, device: Optional[str]) -> Plan[int]:
        yield Flush()
        req = pb.EmptyCacheRequest(device=_core.normalize_device(device) if device else "")
        return int((yield from self._unary("EmptyCache", req)).released_bytes)

    def _plan_cluster(self) -> Plan[dict[str, Any]]:
        resp = yield from self._unary("Cluster", pb.ClusterRequest())
        return {"node_id": resp.node_id, "members": [
            {"node_id": m.node_id, "address": m.address, "healthy": m.healthy,
             "error": m.error, "self": m.self,
             "devices": {d.device: int(d.free_bytes) for d in m.devices}}
            for m in resp.members]}

    def _plan_nodes(self) -> Plan[list[str]]:
        return (yield from self._router.nodes())

    def _plan_close(self, timeout: Optional[float]) -> Plan[None]:
        """What closing does before the channels go: delete what the
        proxies still own."""
        yield Flush(timeout)
        yield from self._plan_delete_quietly(self._take_owned(), timeout)


def float_default(dt: Optional[DTypeLike]) -> dtype:
    return _dtypes.as_dtype(dt) if dt is not None else _dtypes.float32


_STATS_FIELDS = ("allocated_bytes", "reserved_bytes", "peak_allocated_bytes",
                 "peak_reserved_bytes", "limit_bytes", "alloc_count", "free_count",
                 "cache_hits", "cache_misses", "segment_count", "tensors", "description")


def stats_dict(resp: pb.StatsResponse) -> dict[str, dict[str, Any]]:
    return {d.device: {f: getattr(d, f) for f in _STATS_FIELDS} for d in resp.devices}


_TENANT_FIELDS = ("tenant", "bytes", "tensors", "active_streams", "quota_bytes",
                  "max_tensors", "max_streams")


def _tenant_dict(t: pb.TenantStats) -> dict[str, Any]:
    return {f: getattr(t, f) for f in _TENANT_FIELDS}


def server_info_dict(resp: pb.StatsResponse) -> dict[str, Any]:
    info = {"version": resp.version, "cuda_available": resp.cuda_available,
            "cuda_status": resp.cuda_status, "tensors": resp.tensors,
            "active_streams": resp.active_streams,
            "devices": [d.device for d in resp.devices]}
    # With --auth-tokens: the caller's tenant, and every tenant for admins.
    if resp.HasField("tenant"):
        info["tenant"] = _tenant_dict(resp.tenant)
    if resp.tenants:
        info["tenants"] = {t.tenant: _tenant_dict(t) for t in resp.tenants}
    return info


def require_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError("RemoteTensor.torch() needs PyTorch: `pip install torch`") from None
    return torch
