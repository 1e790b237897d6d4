"""tensorcast for asyncio: the API of ``tensorcast`` as coroutines, on
``grpc.aio``.

    import tensorcast.aio as tca

    async with tca.connect("127.0.0.1:50051"):
        t = await tca.tensor([[2., 3.], [4., 5.]], requires_grad=True)
        a = await t.detach().cpu().numpy()      # one Fetch
        h = await tca.from_numpy(a)
        print(await tca.stats())

What does I/O is a coroutine: the module functions, ``numpy()``,
``tolist()``, ``item()``, ``to()``, ``cuda()``, ``clone()``, ``torch()``,
``materialize()``, ``copy_to()``, ``delete()``. The lazy conversions (``detach()``,
``cpu()``, ``float()`` and the other casts) do none and stay plain methods,
so chains read as in PyTorch: ``await t.detach().cpu().numpy()``.
``t.handle`` of a lazy proxy needs ``await t.materialize()`` first.

Both APIs run the same plans (_plans.py), so they check arguments, raise
errors and route calls in a cluster alike; tests/python/test_plans.py
checks that their methods match. A Client belongs to the event loop it was
first used on. Proxies own their
server tensors as in the blocking API; dropped ones are deleted in batches by
the client's next call (and by ``stats()``, ``list()``, ``close()``).
"""

from __future__ import annotations

import asyncio
from typing import Any, Dict, Generator, List, Optional, Sequence, TypeVar, cast

import grpc
import grpc.aio
import numpy as np

from tensorcast import _core
from tensorcast._core import Meta
from tensorcast._dtypes import DTypeLike
from tensorcast._errors import UnavailableError, from_rpc_error
from tensorcast._plans import Call, ClientBase, Fetch, Flush, Plan, Put, Wait
from tensorcast._proxy import Pending, TensorBase
from tensorcast._transport import (
    HEALTH_CHECK,
    AioCudaIpcTransport,
    AioGrpcioTransport,
    AioNativeTransport,
    AioSharedMemoryTransport,
    Pem,
    failure_text,
    not_ready,
    wait_out,
)

__all__ = [
    "connect", "default_client", "Client", "RemoteTensor", "tensor", "from_numpy",
    "from_torch", "zeros", "ones", "full", "arange", "eye", "rand", "get", "list",
    "delete", "shared_empty", "stats", "server_info", "cuda_is_available", "empty_cache",
]

T = TypeVar("T")

# The unary calls that make or delete a tensor: a task cancelled during one
# waits it out (Client._run).
_WAITED_OUT = frozenset({"Create", "To", "Detach", "Copy", "Delete"})


class Client(ClientBase):
    """An asyncio connection to one tensorcast server or a cluster; the
    arguments are those of :class:`tensorcast.Client` (``shared_memory``
    and cluster targets included).

    ``await`` it (or ``async with`` it) to wait for the server: one that does
    not answer within ``connect_timeout`` raises UnavailableError.
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
            self._shared = AioSharedMemoryTransport(self, self._stub, self._seed.grpcio,
                                                    self._shm_mode)
        if self._cuda.mode:
            self._cuda_transport = AioCudaIpcTransport(self, self._stub, self._seed.grpcio,
                                                  self._cuda)
        self._ready = False
        self._flushing: Optional["asyncio.Task[None]"] = None

    def _event(self) -> Any:
        return asyncio.Event()

    _grpcio_transport = AioGrpcioTransport
    # The native calls block: they run in a worker thread.
    _native_transport = AioNativeTransport

    def _open_channel(self, address: str) -> Any:
        if self._creds is not None:
            return grpc.aio.secure_channel(address, self._creds, options=self._opts)
        return grpc.aio.insecure_channel(address, options=self._opts)

    # -- lifecycle ------------------------------------------------------------

    async def wait_ready(self) -> "Client":
        """Wait for the server (``connect_timeout``), then learn whether it
        is a cluster; returns self."""
        if self._ready:
            return self
        if self.connect_timeout and self.connect_timeout > 0:
            try:
                await asyncio.wait_for(self._channel.channel_ready(), self.connect_timeout)
            except asyncio.TimeoutError:
                why = ""
                check = self._channel.unary_unary(HEALTH_CHECK, request_serializer=bytes,
                                                  response_deserializer=bytes)
                try:
                    await check(b"", timeout=1.0)
                except grpc.RpcError as e:
                    why = failure_text(e.details() or "", self.tls)
                except Exception:
                    pass
                await self._close_channels()
                self._closed = True
                raise not_ready(self.target, self.connect_timeout, why) from None
        await self._run(self._router.refresh(), reap=False)
        self._ready = True
        return self

    def __await__(self) -> Generator[Any, None, "Client"]:
        return self.wait_ready().__await__()

    async def __aenter__(self) -> "Client":
        return await self.wait_ready()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<tensorcast.aio.Client {self.target} ({'closed' if self._closed else 'open'})>"

    async def close(self, *, timeout: Optional[float] = None) -> None:
        """Delete what this client's proxies still own, and close the
        channel. Idempotent; unsets the default client if this was it."""
        if self._closed:
            return
        try:
            await self._run(self._plan_close(timeout), reap=False)
        finally:
            self._closed = True
            await self._close_channels()
            global _default
            if _default is self:
                _default = None

    async def _close_channels(self) -> None:
        if self._shared is not None:
            self._shared.close()
        if self._cuda_transport is not None:
            self._cuda_transport.close()
        for conn in {id(c): c for c in self._conns.values()}.values():
            await conn.channel.close(None)

    # -- the driver: plans run here (see _plans.py) ------------------------------

    async def _run(self, plan: Plan[T], *, reap: bool = True) -> T:
        """Drive a plan: await each call it yields. A public operation
        (``reap``) also starts deleting what collected proxies owned, in
        the background.

        Cancelled during a call that makes or deletes a tensor
        (``_WAITED_OUT``), the call is waited out instead (it is short:
        the unary timeout bounds it), as the server may have done it
        already: its answer goes to the plan, the CancelledError to the
        plan's next step, so the plan cleans up (or its new proxy, dropped,
        is deleted) and no tensor is left that nobody owns."""
        if reap:
            self._reap_soon()
        result: Any = None
        error: Optional[BaseException] = None
        deferred = False  # a cancellation to throw into the plan at its next step
        cancelled = False  # cancelled during a call waited out: ends cancelled
        while True:
            try:
                step = plan.throw(error) if error is not None else plan.send(result)
            except StopIteration as stop:
                if cancelled:
                    raise asyncio.CancelledError from None
                return stop.value
            error = None
            if deferred:
                deferred = False
                error, result = asyncio.CancelledError(), None
                continue
            try:
                if type(step) is Call and not self._closed:  # the common step, inline
                    conn = self._conns.get(step.address) or self._conn_for(step.address)
                    call = getattr(conn.stub, step.method)(
                        step.request, metadata=self._metadata,
                        timeout=self.timeout if step.timeout is None else step.timeout)
                    if step.method in _WAITED_OUT:
                        work = asyncio.ensure_future(self._answer(call))
                        try:
                            result = await asyncio.shield(work)
                        except asyncio.CancelledError:
                            await wait_out(work)
                            if work.cancelled() or work.exception() is not None:
                                raise
                            result, deferred, cancelled = work.result(), True, True
                    else:
                        result = await self._answer(call)
                else:
                    result = await self._execute(step)
            except BaseException as e:  # handed to the plan, which cleans up
                error, result = e, None

    async def _answer(self, call: Any) -> Any:
        try:
            return await call
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.target) from None

    async def _execute(self, step: Any) -> Any:
        """A Fetch, Put or Flush step (Calls are made inline in _run)."""
        if self._closed:
            raise UnavailableError(f"the client for {self.target} is closed")
        kind = type(step)
        if kind is Fetch:
            if step.device is not None:
                device = self._device_transport(step)
                if device is not None:
                    got = await device.fetch(step.request, nbytes=step.nbytes,
                                             device=step.device)
                    if got is not None:
                        return got
            for t in self._order(step):
                array = await t.fetch(step.request, nbytes=step.nbytes, bits=step.bits,
                                      out=step.out, progress=step.progress)
                if array is not None:
                    return array
        if kind is Put:
            if step.source is not None:
                device = self._device_transport(step)
                return None if device is None else await device.put(step.header,
                                                                    step.source)
            for t in self._order(step):
                resp = await t.put(step.header, step.array, step.progress)
                if resp is not None:
                    return resp
        if kind is Flush:
            await self._flush()
            return None
        if kind is Wait:
            await step.event.wait()
            return None
        raise TypeError(f"not a plan step: {step!r}")  # pragma: no cover

    # -- deleting what collected proxies owned ------------------------------------

    def _reap_soon(self) -> None:
        if self._released.empty() or (self._flushing and not self._flushing.done()):
            return
        handles = self._take_released()
        if handles:
            self._flushing = asyncio.ensure_future(
                self._run(self._plan_delete_quietly(handles), reap=False))

    async def _flush(self) -> None:
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
        handles = self._take_released()
        if handles:
            await self._run(self._plan_delete_quietly(handles), reap=False)

    # -- cluster ----------------------------------------------------------------

    async def cluster(self) -> "Dict[str, Any]":
        """As :meth:`tensorcast.Client.cluster`."""
        return await self._run(self._plan_cluster())

    async def nodes(self) -> "List[str]":
        """As :meth:`tensorcast.Client.nodes`."""
        return await self._run(self._plan_nodes())

    # -- making tensors -------------------------------------------------------

    async def tensor(self, data: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                     requires_grad: bool = False, *, name: Optional[str] = None,
                     ttl: Optional[float] = None, progress: bool = False,
                     node: Optional[str] = None) -> "RemoteTensor":
        """As :meth:`tensorcast.Client.tensor`."""
        return await self._run(self._plan_tensor(data, dtype, device, requires_grad, name,
                                                 ttl, progress, node))

    async def from_numpy(self, array: np.ndarray, device: Any = "cpu", *,
                         requires_grad: bool = False, name: Optional[str] = None,
                         ttl: Optional[float] = None, progress: bool = False,
                         node: Optional[str] = None) -> "RemoteTensor":
        """As :meth:`tensorcast.Client.from_numpy`."""
        return await self._run(self._plan_from_numpy(array, device, requires_grad, name,
                                                     ttl, progress, node))

    async def from_torch(self, x: Any, device: Any = None, *, name: Optional[str] = None,
                         ttl: Optional[float] = None, progress: bool = False,
                         node: Optional[str] = None) -> "RemoteTensor":
        """As :meth:`tensorcast.Client.from_torch`."""
        return await self._run(self._plan_from_torch(x, device, name, ttl, progress, node))

    async def zeros(self, *size: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                    requires_grad: bool = False, name: Optional[str] = None,
                    ttl: Optional[float] = None, node: Optional[str] = None) -> "RemoteTensor":
        """As ``torch.zeros``."""
        return await self._run(self._plan_zeros(size, dtype, device, requires_grad, name,
                                                ttl, node))

    async def ones(self, *size: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                   requires_grad: bool = False, name: Optional[str] = None,
                   ttl: Optional[float] = None, node: Optional[str] = None) -> "RemoteTensor":
        """As ``torch.ones``."""
        return await self._run(self._plan_ones(size, dtype, device, requires_grad, name,
                                               ttl, node))

    async def full(self, size: Sequence[int], fill_value: Any, *,
                   dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                   requires_grad: bool = False, name: Optional[str] = None,
                   ttl: Optional[float] = None, node: Optional[str] = None) -> "RemoteTensor":
        """As ``torch.full``."""
        return await self._run(self._plan_full(size, fill_value, dtype, device,
                                               requires_grad, name, ttl, node))

    async def arange(self, start: float, end: Optional[float] = None, step: float = 1, *,
                     dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                     requires_grad: bool = False, name: Optional[str] = None,
                     ttl: Optional[float] = None, node: Optional[str] = None) -> "RemoteTensor":
        """As ``torch.arange``."""
        return await self._run(self._plan_arange(start, end, step, dtype, device,
                                                 requires_grad, name, ttl, node))

    async def eye(self, n: int, m: Optional[int] = None, *,
                  dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                  requires_grad: bool = False, name: Optional[str] = None,
                  ttl: Optional[float] = None, node: Optional[str] = None) -> "RemoteTensor":
        """As ``torch.eye``."""
        return await self._run(self._plan_eye(n, m, dtype, device, requires_grad, name, ttl,
                                              node))

    async def rand(self, *size: Any, seed: Optional[int] = None,
                   dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                   requires_grad: bool = False, name: Optional[str] = None,
                   ttl: Optional[float] = None, node: Optional[str] = None) -> "RemoteTensor":
        """As ``torch.rand``; ``seed`` makes it reproducible."""
        return await self._run(self._plan_rand(size, seed, dtype, device, requires_grad,
                                               name, ttl, node))

    # -- finding and managing -------------------------------------------------

    async def get(self, ref: str) -> "RemoteTensor":
        """A non-owning proxy for an existing tensor (handle or name)."""
        return await self._run(self._plan_get(ref))

    async def fetch_into(self, ref: Any, out: Any, *, force: bool = False) -> np.ndarray:
        """As :meth:`tensorcast.Client.fetch_into`."""
        return await self._run(self._plan_fetch_into(ref, out, force))

    async def shared_empty(self, shape: Any, dtype: Any = float) -> np.ndarray:
        """As :meth:`tensorcast.Client.shared_empty` (the region is lent on
        this client's connection)."""
        return cast(np.ndarray, await self._shared_transport().empty(shape, dtype))

    async def list(self, name_prefix: str = "") -> "List[RemoteTensor]":
        """Every tensor on the server (in a cluster, every healthy node's), as
        non-owning proxies."""
        return await self._run(self._plan_list(name_prefix))

    async def delete(self, *refs: Any) -> int:
        """As :meth:`tensorcast.Client.delete` (all or nothing; in a cluster,
        per node; a proxy passed is given up either way)."""
        return await self._run(self._plan_delete(refs))

    async def copy(self, ref: Any, node: str, *, device: Any = None,
                   dtype: Optional[DTypeLike] = None, name: Optional[str] = None,
                   ttl: Optional[float] = None) -> "RemoteTensor":
        """As :meth:`tensorcast.Client.copy`."""
        return await self._run(self._plan_copy(ref, node, device, dtype, name, ttl))

    async def stats(self) -> "Dict[str, Dict[str, Any]]":
        """Pool figures per device (``(await stats())["cpu"]["allocated_bytes"]``)."""
        return await self._run(self._plan_stats())

    async def server_info(self) -> "Dict[str, Any]":
        """The server's version, CUDA availability and totals."""
        return await self._run(self._plan_server_info())

    async def cuda_is_available(self) -> bool:
        """Whether the server has CUDA."""
        return await self._run(self._plan_cuda_is_available())

    async def empty_cache(self, device: Optional[str] = None) -> int:
        """Release cached pool blocks; returns the bytes released."""
        return await self._run(self._plan_empty_cache(device))


class RemoteTensor(TensorBase):
    """A proxy for a server tensor (asyncio API). Lazy conversions
    (``detach()``, ``cpu()``, casts) are plain methods; the rest are
    coroutines. See :class:`tensorcast.RemoteTensor`."""

    _client: Client

    def __init__(self, client: Client, meta: Meta, *, source: Optional[TensorBase] = None,
                 pending: Optional[Pending] = None) -> None:
        super().__init__(client, meta, source=source, pending=pending)

    @property
    def handle(self) -> str:
        """The server handle. A lazy proxy has none until ``await
        t.materialize()``."""
        self._check_alive()
        if self._pending is not None:
            raise RuntimeError("this proxy holds pending conversions: `await "
                               "t.materialize()` to make its server tensor first")
        assert self._meta.handle is not None
        return self._meta.handle

    async def materialize(self) -> "RemoteTensor":
        """Make the server tensor of a lazy proxy now; returns self."""
        return await self._client._run(self._materialize_plan())

    async def numpy(self, force: bool = False, *, progress: bool = False,
                    out: Optional[np.ndarray] = None) -> np.ndarray:
        """As :meth:`tensorcast.RemoteTensor.numpy` (``out`` included)."""
        return await self._client._run(self._numpy_plan(force=force, progress=progress,
                                                        out=out))

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        raise TypeError("an asyncio RemoteTensor cannot be converted synchronously: "
                        "use `await t.numpy()`")

    async def tolist(self) -> Any:
        """The values as (nested) Python numbers."""
        return await self._client._run(self._tolist_plan())

    async def item(self) -> Any:
        """The value of a one-element tensor."""
        return await self._client._run(self._item_plan())

    async def torch(self, device: Any = None) -> Any:
        """As :meth:`tensorcast.RemoteTensor.torch`."""
        return await self._client._run(self._torch_plan(device))

    async def cuda_array(self, device: Any = None) -> Any:
        """As :meth:`tensorcast.RemoteTensor.cuda_array`."""
        return await self._client._run(self._cuda_array_plan(device))

    async def to(self, *args: Any, **kwargs: Any) -> "RemoteTensor":
        """As :meth:`tensorcast.RemoteTensor.to` (awaitable: a GPU move or
        a copy runs on the server)."""
        return await self._client._run(self._to_plan(args, kwargs))

    async def cuda(self, device: Optional[Any] = None) -> "RemoteTensor":
        """Move to a GPU on the server, now."""
        return await self._client._run(self._cuda_plan(device))

    async def clone(self) -> "RemoteTensor":
        """A copy on the server."""
        return await self._client._run(self._to_plan((), {"copy": True}))

    async def copy_to(self, node: str, *, device: Any = None,
                      dtype: Optional[DTypeLike] = None, name: Optional[str] = None,
                      ttl: Optional[float] = None) -> "RemoteTensor":
        """As :meth:`tensorcast.RemoteTensor.copy_to`."""
        return await self._client._run(self._copy_to_plan(node, device, dtype, name, ttl))

    async def delete(self) -> None:
        """Delete the server tensor now (see the blocking API)."""
        await self._client._run(self._delete_plan())

    async def __aenter__(self) -> "RemoteTensor":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        """Delete the tensor if this proxy owns it."""
        await self._client._run(self._exit_plan())


Client._tensor_class = RemoteTensor


# -- module-level functions on the default client ----------------------------

_default: Optional[Client] = None


def connect(target: Any = None, token: Optional[str] = None, *,
            timeout: float = 30.0, connect_timeout: float = 5.0,
            default: bool = True, **kwargs: Any) -> Client:
    """An asyncio client, made the default for this module's functions.
    ``await`` it, or use ``async with``, to wait for the server. The
    arguments are those of :func:`tensorcast.connect` (``token``, ``tls``,
    ``root_certificates``, ``certificate_chain``, ``private_key``...)."""
    global _default
    client = Client(target, token, timeout=timeout, connect_timeout=connect_timeout,
                    **kwargs)
    if default:
        _default = client
    return client


def default_client() -> Client:
    """The client that module-level functions use."""
    if _default is None:
        raise RuntimeError("no tensorcast server: call tensorcast.aio.connect(...) first")
    return _default


async def tensor(data: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                 requires_grad: bool = False, **kwargs: Any) -> RemoteTensor:
    """As ``tc.tensor``."""
    return await default_client().tensor(data, dtype, device, requires_grad, **kwargs)


async def from_numpy(array: np.ndarray, device: Any = "cpu", **kwargs: Any) -> RemoteTensor:
    """As ``tc.from_numpy``."""
    return await default_client().from_numpy(array, device, **kwargs)


async def from_torch(x: Any, device: Any = None, **kwargs: Any) -> RemoteTensor:
    """As ``tc.from_torch``."""
    return await default_client().from_torch(x, device, **kwargs)


async def zeros(*size: Any, **kwargs: Any) -> RemoteTensor:
    """As ``tc.zeros``."""
    return await default_client().zeros(*size, **kwargs)


async def ones(*size: Any, **kwargs: Any) -> RemoteTensor:
    """As ``tc.ones``."""
    return await default_client().ones(*size, **kwargs)


async def full(size: Sequence[int], fill_value: Any, **kwargs: Any) -> RemoteTensor:
    """As ``tc.full``."""
    return await default_client().full(size, fill_value, **kwargs)


async def arange(start: float, end: Optional[float] = None, step: float = 1,
                 **kwargs: Any) -> RemoteTensor:
    """As ``tc.arange``."""
    return await default_client().arange(start, end, step, **kwargs)


async def eye(n: int, m: Optional[int] = None, **kwargs: Any) -> RemoteTensor:
    """As ``tc.eye``."""
    return await default_client().eye(n, m, **kwargs)


async def rand(*size: Any, **kwargs: Any) -> RemoteTensor:
    """As ``tc.rand``."""
    return await default_client().rand(*size, **kwargs)


async def get(ref: str) -> RemoteTensor:
    """As ``tc.get``."""
    return await default_client().get(ref)


async def list(name_prefix: str = "") -> "List[RemoteTensor]":  # noqa: A001
    """As ``tc.list``."""
    return await default_client().list(name_prefix)


async def delete(*refs: Any) -> int:
    """As ``tc.delete``."""
    return await default_client().delete(*refs)


async def shared_empty(shape: Any, dtype: Any = float) -> np.ndarray:
    """As ``tc.shared_empty``."""
    return await default_client().shared_empty(shape, dtype)


async def stats() -> "Dict[str, Dict[str, Any]]":
    """As ``tc.stats``."""
    return await default_client().stats()


async def server_info() -> "Dict[str, Any]":
    """As ``tc.server_info``."""
    return await default_client().server_info()


async def cuda_is_available() -> bool:
    """As ``tc.cuda_is_available``."""
    return await default_client().cuda_is_available()


async def empty_cache(device: Optional[str] = None) -> int:
    """As ``tc.empty_cache``."""
    return await default_client().empty_cache(device)
