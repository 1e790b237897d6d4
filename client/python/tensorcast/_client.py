"""The blocking client: ``Client`` (channels to one server or a cluster)
and ``RemoteTensor`` (a proxy for one server tensor). Both are drivers: each
public method runs a plan of _plans.py / _proxy.py (shared with
tensorcast.aio) by making the calls it yields; Fetch and Put go through the
transports of _transport.py.

Thread safety: a Client and its proxies may be used from many threads at
once. Ownership: a proxy that the client made (tc.tensor, from_numpy, zeros,
a conversion...) owns its server tensor and deletes it on ``.delete()``, at
the end of a ``with`` block, or when garbage-collected; collected handles are
queued (the weakref callback does no I/O and takes no lock) and deleted in
batches by a background thread. Proxies from ``get()``/``list()`` own
nothing. Closing the client deletes what its proxies still own.
"""

from __future__ import annotations

import atexit
import threading
import weakref
from typing import Any, Dict, List, Optional, Sequence, TypeVar, cast

import grpc
import grpc.experimental
import numpy as np

from tensorcast import _core, _default
from tensorcast._core import Meta
from tensorcast._dtypes import DTypeLike
from tensorcast._errors import UnavailableError, from_rpc_error
from tensorcast._plans import (
    Call,
    ClientBase,
    Fetch,
    Flush,
    Plan,
    Put,
    Wait,
    run,
)
from tensorcast._proxy import Pending, TensorBase
from tensorcast._transport import (  # noqa: F401 - the channel settings, also public here
    DEFAULT_TARGET,
    CudaIpcTransport,
    GrpcioTransport,
    NativeTransport,
    Pem,
    SharedMemoryTransport,
    auth_metadata,
    channel_credentials,
    channel_options,
    connect_failure,
    default_target,
    not_ready,
)

T = TypeVar("T")


class Client(ClientBase):
    """A connection to one tensorcast server, or to a cluster of them.

    Prefer :func:`tensorcast.connect`, which also makes the client the
    default used by the module-level functions (``tc.tensor`` ...).

    Args:
        target: ``host:port``; default ``$TENSORCAST_SERVER`` or
            127.0.0.1:50051. A cluster: a list of addresses (or
            ``"a:1,b:2"``) or ``"dns:///NAME:PORT"``; the client learns
            the members, places new tensors on the node with the most free
            memory on the device (``node=`` pins one) and sends every call
            on a handle to the node it names (docs/cluster.md#clients).
        token: bearer token sent in the ``authorization`` metadata (default
            ``$TENSORCAST_TOKEN``).
        timeout: seconds allowed for each unary call (Create, Info, To...).
        stream_timeout: seconds allowed for a whole Put or Fetch; None = no
            limit (a dead server still fails the stream at once).
        connect_timeout: seconds to wait for the server at connect; a server
            that is not there gives UnavailableError, not a hang. 0 skips the
            check.
        chunk_bytes: bytes per Fetch message asked of the server (0 = the
            server's default; clamped by it to 4 KiB..64 MiB).
        put_chunk_bytes: bytes per Put message.
        tls: TLS (``secure`` is the older name of this argument); on by
            itself when any of the three PEM arguments below is given.
        root_certificates: PEM (bytes or str) of the CAs to trust; None =
            the system's (grpcio's bundled roots).
        certificate_chain, private_key: PEM of a client certificate and its
            key, for a server that requires one (mutual TLS).
        options: extra gRPC channel arguments.
        native: whether Put and Fetch run in the native extension
            (``tensorcast._native``: gRPC C++, data copied straight into the
            array with the GIL released) rather than through grpcio. None
            (the default) uses it when it was built and the channel is not
            TLS (the native channel has no TLS: such clients use grpcio),
            unless ``$TENSORCAST_NATIVE`` is ``0``; True requires it.
            Calls with ``progress=True`` always use grpcio.
        shared_memory: False (the default), "auto" or True: fetches and puts
            of 1 MiB or more go through a shared-memory region (a sealed
            memfd, else a /dev/shm file) this client lends the server,
            which must run on this host with
            --shared-memory. "auto" falls back to the socket when the
            server does not allow it; True raises instead. The bytes are
            copied once more on the client: from the region into the array
            a fetch returns, or from the array into the region for a put.
        cuda_ipc: False (the default), "auto" or True: ``t.torch(device=
            "cuda")`` and ``from_torch`` of a CUDA tensor move the bytes
            through GPU memory this client lends the server over CUDA IPC
            (server on this host, with --shared-memory): the server writes
            the fetched tensor straight into device memory the returned
            torch tensor views, and reads a put from a device copy of the
            tensor. Where it cannot be used (no libcudart or GPU here, the
            server refused the region, a cluster...) "auto" takes the host
            path and says why at DEBUG on the ``tensorcast`` logger and in
            ``cuda_ipc_status``; True raises instead. docs/python.md.
    """
    def __init__(self, target: Any = None, token: Optional[str] = None, *,
                 timeout: float = 30.0, stream_timeout: Optional[float] = None,
                 connect_timeout: float = 5.0, chunk_bytes: int = 4 << 20,
                 put_chunk_bytes: int = _core.DEFAULT_PUT_CHUNK_BYTES,
                 tls: bool = False, secure: bool = False, root_certificates: Pem = None,
                 certificate_chain: Pem = None, private_key: Pem = None,
                 options: Optional[Sequence[tuple[str, Any]]] = None,
                 native: Optional[bool] = None,
                 shared_memory: Any = False, cuda_ipc: Any = False) -> None:
        super().__init__(target, token, timeout=timeout, stream_timeout=stream_timeout,
                         connect_timeout=connect_timeout, chunk_bytes=chunk_bytes,
                         put_chunk_bytes=put_chunk_bytes, tls=tls, secure=secure,
                         root_certificates=root_certificates,
                         certificate_chain=certificate_chain, private_key=private_key,
                         options=options, native=native, shared_memory=shared_memory,
                         cuda_ipc=cuda_ipc)
        if self._shm_mode:
            self._shared = SharedMemoryTransport(self, self._stub, self._seed.grpcio,
                                                 self._shm_mode)
        if self._cuda.mode:
            self._cuda_transport = CudaIpcTransport(self, self._stub, self._seed.grpcio,
                                                  self._cuda)
        self._reaper: Optional[threading.Thread] = None
        self._reaper_lock = threading.Lock()
        self._inflight = 0
        self._inflight_cv = threading.Condition()
        if connect_timeout and connect_timeout > 0:
            try:
                grpc.channel_ready_future(self._channel).result(timeout=connect_timeout)
            except grpc.FutureTimeoutError:
                why = connect_failure(self._channel, self.tls)
                self._channel.close()
                self._closed = True
                raise not_ready(self.target, connect_timeout, why) from None
        self._run(self._router.refresh())
        atexit.register(_close_at_exit, weakref.ref(self))

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<tensorcast.Client {self.target} ({state})>"

    def close(self, *, timeout: Optional[float] = None) -> None:
        """Delete the server tensors that this client's proxies still own,
        and close the channel. Idempotent; unsets the default client if this
        was it."""
        if self._closed:
            return
        try:
            self._run(self._plan_close(timeout))
        finally:
            self._closed = True
            self._released.put(None)  # stops the reaper
            if self._shared is not None:
                self._shared.close()
            if self._cuda_transport is not None:
                self._cuda_transport.close()
            for conn in {id(c): c for c in self._conns.values()}.values():
                conn.channel.close()
            _default.forget(self)

    # -- the driver: plans run here (see _plans.py) ------------------------------

    def _run(self, plan: Plan[T]) -> T:
        """Drive a plan: make each call it yields, on this thread."""
        return run(plan, self._execute)

    def _execute(self, step: Any) -> Any:
        if self._closed:
            raise UnavailableError(f"the client for {self.target} is closed")
        kind = type(step)
        if kind is Call:
            conn = self._conns.get(step.address) or self._conn_for(step.address)
            try:
                return getattr(conn.stub, step.method)(
                    step.request, metadata=self._metadata,
                    timeout=self.timeout if step.timeout is None else step.timeout)
            except grpc.RpcError as e:
                raise from_rpc_error(e, self.target) from None
        if kind is Fetch:
            if step.device is not None:
                device = self._device_transport(step)
                if device is not None:
                    got = device.fetch(step.request, nbytes=step.nbytes, device=step.device)
                    if got is not None:
                        return got
            for t in self._order(step):
                array = t.fetch(step.request, nbytes=step.nbytes, bits=step.bits,
                                out=step.out, progress=step.progress)
                if array is not None:
                    return array
        if kind is Put:
            if step.source is not None:
                device = self._device_transport(step)
                return None if device is None else device.put(step.header, step.source)
            for t in self._order(step):
                resp = t.put(step.header, step.array, step.progress)
                if resp is not None:
                    return resp
        if kind is Flush:
            self._flush(step.timeout)
            return None
        if kind is Wait:
            step.event.wait()
            return None
        raise TypeError(f"not a plan step: {step!r}")  # pragma: no cover

    # Fetch streams are consumed on the calling thread, so grpcio need not
    # start a thread per call: small fetches measured 250-300 us p50 without
    # this, ~190 us with it (and a much lower p99).
    _channel_extras = ((grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),)
    _grpcio_transport = GrpcioTransport
    _native_transport = NativeTransport

    def _open_channel(self, address: str) -> Any:
        if self._creds is not None:
            return grpc.secure_channel(address, self._creds, options=self._opts)
        return grpc.insecure_channel(address, options=self._opts)

    # -- deleting what collected proxies owned ------------------------------------

    def _on_owned(self) -> None:
        if self._reaper is not None:
            return
        with self._reaper_lock:
            if self._reaper is None:
                self._reaper = threading.Thread(
                    target=self._reap, name=f"tensorcast-reaper-{self.target}", daemon=True)
                self._reaper.start()

    def _reap(self) -> None:
        while True:
            first = self._released.get()
            if first is None:
                return
            self._released.put(first)
            with self._inflight_cv:
                self._inflight += 1
            try:
                handles = self._take_released()
                if handles and not self._closed:
                    self._run(self._plan_delete_quietly(handles))
            finally:
                with self._inflight_cv:
                    self._inflight -= 1
                    self._inflight_cv.notify_all()
            if self._closed:
                return

    def _flush(self, timeout: Optional[float] = None) -> None:
        """Delete every collected handle now (the reaper's work included)."""
        handles = self._take_released()
        if handles and not self._closed:
            self._run(self._plan_delete_quietly(handles))
        with self._inflight_cv:
            self._inflight_cv.wait_for(lambda: self._inflight == 0,
                                       timeout=timeout or self.timeout)

    # -- cluster ----------------------------------------------------------------

    def cluster(self) -> "Dict[str, Any]":
        """The cluster's members as a node knows them: ``{"node_id": ...,
        "members": [{"node_id", "address", "healthy", "error", "self",
        "devices": {device: free_bytes}}]}``; a plain server lists itself
        with an empty node id."""
        return self._run(self._plan_cluster())

    def nodes(self) -> "List[str]":
        """The healthy members' node ids after a refresh ([] for a plain
        server)."""
        return self._run(self._plan_nodes())

    # -- making tensors -------------------------------------------------------

    def tensor(self, data: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
               requires_grad: bool = False, *, name: Optional[str] = None,
               ttl: Optional[float] = None, progress: bool = False,
               node: Optional[str] = None) -> "RemoteTensor":
        """A new server tensor from data, as ``torch.tensor``: nested lists of
        Python numbers (floats infer float32, ints int64, bools bool, complex
        complex64), NumPy arrays and scalars (their dtype), or torch tensors.
        Small literals travel in one Create call, large ones by Put.
        ``node`` pins the cluster node (default: placement chooses)."""
        return self._run(self._plan_tensor(data, dtype, device, requires_grad, name, ttl,
                                           progress, node))

    def from_numpy(self, array: np.ndarray, device: Any = "cpu", *,
                   requires_grad: bool = False, name: Optional[str] = None,
                   ttl: Optional[float] = None, progress: bool = False,
                   node: Optional[str] = None) -> "RemoteTensor":
        """Upload a NumPy array (any strides, order or byte order; 0-d and
        empty too) as a new server tensor of the same dtype and shape;
        ``node`` pins the cluster node."""
        return self._run(self._plan_from_numpy(array, device, requires_grad, name, ttl,
                                               progress, node))

    def from_torch(self, x: Any, device: Any = None, *, name: Optional[str] = None,
                   ttl: Optional[float] = None, progress: bool = False,
                   node: Optional[str] = None) -> "RemoteTensor":
        """Upload a torch tensor: same dtype (bfloat16 included), shape and
        requires_grad; on ``device`` (default: the tensor's own device)."""
        return self._run(self._plan_from_torch(x, device, name, ttl, progress, node))

    def zeros(self, *size: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
              requires_grad: bool = False, name: Optional[str] = None,
              ttl: Optional[float] = None, node: Optional[str] = None) -> "RemoteTensor":
        """A tensor of zeros (default float32), as ``torch.zeros``."""
        return self._run(self._plan_zeros(size, dtype, device, requires_grad, name, ttl,
                                          node))

    def ones(self, *size: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
             requires_grad: bool = False, name: Optional[str] = None,
             ttl: Optional[float] = None, node: Optional[str] = None) -> "RemoteTensor":
        """A tensor of ones (default float32), as ``torch.ones``."""
        return self._run(self._plan_ones(size, dtype, device, requires_grad, name, ttl,
                                         node))

    def full(self, size: Sequence[int], fill_value: Any, *,
             dtype: Optional[DTypeLike] = None, device: Any = "cpu",
             requires_grad: bool = False, name: Optional[str] = None,
             ttl: Optional[float] = None, node: Optional[str] = None) -> "RemoteTensor":
        """A tensor filled with ``fill_value``; the dtype is inferred from it
        (bool, int64, float32) unless given, as ``torch.full``."""
        return self._run(self._plan_full(size, fill_value, dtype, device, requires_grad,
                                         name, ttl, node))

    def arange(self, start: float, end: Optional[float] = None, step: float = 1, *,
               dtype: Optional[DTypeLike] = None, device: Any = "cpu",
               requires_grad: bool = False, name: Optional[str] = None,
               ttl: Optional[float] = None, node: Optional[str] = None) -> "RemoteTensor":
        """``[start, end)`` by ``step``, as ``torch.arange`` (int64 when all
        arguments are ints, else float32)."""
        return self._run(self._plan_arange(start, end, step, dtype, device, requires_grad,
                                           name, ttl, node))

    def eye(self, n: int, m: Optional[int] = None, *, dtype: Optional[DTypeLike] = None,
            device: Any = "cpu", requires_grad: bool = False, name: Optional[str] = None,
            ttl: Optional[float] = None, node: Optional[str] = None) -> "RemoteTensor":
        """An ``n x m`` identity matrix (default float32), as ``torch.eye``."""
        return self._run(self._plan_eye(n, m, dtype, device, requires_grad, name, ttl,
                                        node))

    def rand(self, *size: Any, seed: Optional[int] = None, dtype: Optional[DTypeLike] = None,
             device: Any = "cpu", requires_grad: bool = False, name: Optional[str] = None,
             ttl: Optional[float] = None, node: Optional[str] = None) -> "RemoteTensor":
        """Uniform values in [0, 1) (default float32). The same ``seed``
        gives the same values on every device; None picks one at random."""
        return self._run(self._plan_rand(size, seed, dtype, device, requires_grad, name,
                                         ttl, node))

    # -- finding and managing -------------------------------------------------

    def get(self, ref: str) -> "RemoteTensor":
        """A proxy for an existing tensor (by handle or name) that does not
        own it: dropping it leaves the tensor on the server."""
        return self._run(self._plan_get(ref))

    def fetch_into(self, ref: Any, out: Any, *, force: bool = False) -> np.ndarray:
        """Fetch the tensor ``ref`` (handle, name or RemoteTensor) into
        ``out``, an array the caller owns, and return it: as
        ``get(ref).numpy(force=force, out=out)`` (its checks and errors)."""
        return self._run(self._plan_fetch_into(ref, out, force))

    def shared_empty(self, shape: Any, dtype: Any = float) -> np.ndarray:
        """A new, uninitialised C-contiguous NumPy array (as ``np.empty``)
        whose memory lies in a shared-memory region this client lends the
        server (needs ``shared_memory``): Put from it (``from_numpy``,
        ``tensor``) and Fetch into it (``numpy(out=...)``, ``fetch_into``)
        move its bytes with the server's one copy, none here. The region,
        of ``shared_arena_bytes`` (256 MiB; larger if the first array
        needs it), is lent on the first call; MemoryError when it has no
        room left. An array's room is reused once every view of it is gone.
        See docs/python.md, "Shared arrays"."""
        return cast(np.ndarray, self._shared_transport().empty(shape, dtype))

    def list(self, name_prefix: str = "") -> "List[RemoteTensor]":
        """Every tensor on the server (all pages), as non-owning proxies; in
        a cluster, every healthy node's, node after node."""
        return self._run(self._plan_list(name_prefix))

    def delete(self, *refs: Any) -> int:
        """Delete tensors by handle, name or proxy (all or nothing; in a
        cluster, one Delete per node, all or nothing per node); returns how
        many were deleted. A proxy passed is given up either way: when the
        call fails (a bad ref beside it), its tensor is deleted after."""
        return self._run(self._plan_delete(refs))

    def copy(self, ref: Any, node: str, *, device: Any = None,
             dtype: Optional[DTypeLike] = None, name: Optional[str] = None,
             ttl: Optional[float] = None) -> "RemoteTensor":
        """Copy a tensor (handle, name or proxy) to cluster node ``node``,
        server to server; the new tensor is owned by the returned proxy.
        Same as ``t.copy_to(node, ...)``."""
        return self._run(self._plan_copy(ref, node, device, dtype, name, ttl))

    def stats(self) -> "Dict[str, Dict[str, Any]]":
        """Pool figures per device, named as PyTorch's memory stats:
        ``stats()["cpu"]["allocated_bytes"]``. Tensors dropped before the
        call are deleted first, so the figures reflect them."""
        return self._run(self._plan_stats())

    def server_info(self) -> "Dict[str, Any]":
        """The server's version, CUDA availability and totals."""
        return self._run(self._plan_server_info())

    def cuda_is_available(self) -> bool:
        """Whether the server has CUDA (as ``torch.cuda.is_available()``)."""
        return self._run(self._plan_cuda_is_available())

    def empty_cache(self, device: Optional[str] = None) -> int:
        """Give cached pool blocks back to the system (one device, or all);
        returns the bytes released."""
        return self._run(self._plan_empty_cache(device))


def _close_at_exit(ref: "weakref.ReferenceType[Client]") -> None:
    client = ref()
    if client is None:
        return
    try:
        client.close(timeout=2.0)
    except BaseException:  # never raise at interpreter shutdown
        pass


class RemoteTensor(TensorBase):
    """A proxy for a tensor held by a tensorcast server (blocking API).

    It mirrors the ``torch.Tensor`` methods that move data to NumPy:
    ``.numpy(force=False)``, ``.detach()``, ``.cpu()``, ``.cuda()``,
    ``.to(device=..., dtype=...)``, ``.float()`` and the other casts,
    ``.tolist()``, ``.item()``, ``np.asarray(t)``. Detach, cpu and dtype
    casts are lazy: they are sent with the next Fetch (one stream, no extra
    server tensor); device moves are done at once.
    """

    _client: Client

    def __init__(self, client: Client, meta: Meta, *, source: Optional[TensorBase] = None,
                 pending: Optional[Pending] = None) -> None:
        super().__init__(client, meta, source=source, pending=pending)

    # -- the handle -----------------------------------------------------------

    @property
    def handle(self) -> str:
        """The server handle (32 hex digits). A lazy proxy is materialised
        first: its pending conversions run on the server (Detach/To)."""
        self.materialize()
        assert self._meta.handle is not None
        return self._meta.handle

    def materialize(self) -> "RemoteTensor":
        """Make the server tensor for a lazy proxy now (no-op otherwise);
        returns self."""
        self._check_alive()
        if self._pending is None:
            return self
        return self._client._run(self._materialize_plan())

    # -- data -----------------------------------------------------------------

    def numpy(self, force: bool = False, *, progress: bool = False,
              out: Optional[np.ndarray] = None) -> np.ndarray:
        """The values as a new NumPy array (one Fetch stream).

        As ``torch.Tensor.numpy``: a tensor that requires grad raises
        RuntimeError, one on a GPU TypeError (PyTorch's texts);
        ``force=True`` detaches and copies to the host in the stream.
        bfloat16 arrays use ``ml_dtypes.bfloat16``.

        ``out``: fill this array instead and return it -- for loops that
        fetch the same shapes again and again, into memory already touched.
        It must have the tensor's dtype and shape, be C-contiguous and
        writable (TypeError for a wrong dtype, ValueError otherwise, before
        anything is fetched); a bytearray or memoryview of exactly the
        tensor's bytes works too. A failed fetch may leave it partly written.
        """
        return self._client._run(self._numpy_plan(force=force, progress=progress, out=out))

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def tolist(self) -> Any:
        """The values as (nested) Python numbers; works whatever requires_grad
        and device, as in PyTorch."""
        return self._client._run(self._tolist_plan())

    def item(self) -> Any:
        """The one value of a one-element tensor, as a Python number."""
        return self._client._run(self._item_plan())

    def torch(self, device: Any = None) -> Any:
        """A ``torch.Tensor`` with the same values, dtype (bfloat16 too) and
        requires_grad, on the CPU or ``device``. Needs PyTorch."""
        return self._client._run(self._torch_plan(device))

    def cuda_array(self, device: Any = None) -> Any:
        """The values in GPU memory of this process, through CUDA IPC (needs
        ``cuda_ipc`` and no torch): an object with
        ``__cuda_array_interface__`` (version 3) that ``cupy.asarray`` or
        ``torch.as_tensor`` view without copying; it holds its slot of the
        lent region while it (or an array made from it) lives. ``device``:
        this process's ordinal (N, "cuda:N"; default 0). bfloat16 comes as
        its int16 bits. RuntimeError with the reason when CUDA IPC cannot be
        used (see ``Client.cuda_ipc_status``)."""
        return self._client._run(self._cuda_array_plan(device))

    # -- conversions ----------------------------------------------------------

    def to(self, *args: Any, **kwargs: Any) -> "RemoteTensor":
        """``.to(dtype)``, ``.to(device)``, ``.to(device, dtype)``,
        ``.to(other)``, ``.to(device=..., dtype=..., copy=False)``.

        Casts and moves to the CPU are lazy (sent with the Fetch); a move to
        a GPU, or ``copy=True``, runs on the server now (a server without
        CUDA fails here with FailedPreconditionError). Returns self when
        nothing changes, as PyTorch does.
        """
        return self._client._run(self._to_plan(args, kwargs))

    def cuda(self, device: Optional[Any] = None) -> "RemoteTensor":
        """Move to a GPU (``cuda:0`` by default) on the server, now."""
        return self._client._run(self._cuda_plan(device))

    def clone(self) -> "RemoteTensor":
        """A copy on the server (a new tensor)."""
        return self._client._run(self._to_plan((), {"copy": True}))

    def copy_to(self, node: str, *, device: Any = None, dtype: Optional[DTypeLike] = None,
                name: Optional[str] = None, ttl: Optional[float] = None) -> "RemoteTensor":
        """A copy of this tensor on cluster node ``node`` (optionally on
        another device or cast), sent server to server: the bytes never
        pass through this client. The new tensor's handle names ``node``."""
        return self._client._run(self._copy_to_plan(node, device, dtype, name, ttl))

    # -- ownership ------------------------------------------------------------

    def delete(self) -> None:
        """Delete the server tensor now (whether or not this proxy owns it;
        a lazy proxy just drops its pending conversions). Further use of the
        proxy raises NotFoundError; deleting twice is a no-op."""
        self._client._run(self._delete_plan())

    def __enter__(self) -> "RemoteTensor":
        return self

    def __exit__(self, *exc: Any) -> None:
        """Delete the tensor if this proxy owns it."""
        self._client._run(self._exit_plan())


Client._tensor_class = RemoteTensor
