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
``materialize()``, ``delete()``. The lazy conversions (``detach()``,
``cpu()``, ``float()`` and the other casts) do none and stay plain methods,
so chains read as in PyTorch: ``await t.detach().cpu().numpy()``.
``t.handle`` of a lazy proxy needs ``await t.materialize()`` first.

A Client belongs to the event loop it was first used on. Proxies own their
server tensors as in the blocking API; dropped ones are deleted in batches by
the client's next call (and by ``stats()``, ``list()``, ``close()``).
"""

from __future__ import annotations

import asyncio
import queue
import random
import weakref
from typing import Any, Dict, Generator, List, Optional, Sequence, cast

import grpc
import grpc.aio
import numpy as np

from tensorcast import _core, _dtypes, _fastpath
from tensorcast._client import (
    _HEALTH_CHECK,
    _UNARY,
    Pem,
    _failure_text,
    _float_default,
    _require_torch,
    _server_info,
    _stats_dict,
    auth_metadata,
    channel_credentials,
    channel_options,
    default_target,
)
from tensorcast._core import Meta, Progress, meta_from_info
from tensorcast._dtypes import DTypeLike, dtype
from tensorcast._errors import NotFoundError, UnavailableError, from_rpc_error
from tensorcast._proxy import Op, Plan, TensorBase, plan_materialize
from tensorcast.v1 import tensor_service_pb2 as pb
from tensorcast.v1 import tensor_service_pb2_grpc as pb_grpc

__all__ = [
    "connect", "default_client", "Client", "RemoteTensor", "tensor", "from_numpy",
    "from_torch", "zeros", "ones", "full", "arange", "eye", "rand", "get", "list",
    "delete", "stats", "server_info", "empty_cache",
]


class Client:
    """An asyncio connection to one tensorcast server; the arguments are
    those of :class:`tensorcast.Client`.

    ``await`` it (or ``async with`` it) to wait for the server: one that does
    not answer within ``connect_timeout`` raises UnavailableError.
    """

    def __init__(self, target: Optional[str] = None, token: Optional[str] = None, *,
                 timeout: float = 30.0, stream_timeout: Optional[float] = None,
                 connect_timeout: float = 5.0, chunk_bytes: int = 4 << 20,
                 put_chunk_bytes: int = _core.DEFAULT_PUT_CHUNK_BYTES,
                 tls: bool = False, secure: bool = False, root_certificates: Pem = None,
                 certificate_chain: Pem = None, private_key: Pem = None,
                 options: Optional[Sequence[tuple[str, Any]]] = None,
                 native: Optional[bool] = None) -> None:
        self.target = target or default_target()
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.connect_timeout = connect_timeout
        self.chunk_bytes = int(chunk_bytes)
        self.put_chunk_bytes = max(1, min(int(put_chunk_bytes), _core.MAX_PUT_CHUNK_BYTES))
        self._metadata = auth_metadata(token)
        opts = channel_options(options)
        creds = channel_credentials(tls or secure, root_certificates, certificate_chain,
                                    private_key)
        self.tls = creds is not None
        if creds is not None:
            self._channel = grpc.aio.secure_channel(self.target, creds, options=opts)
        else:
            self._channel = grpc.aio.insecure_channel(self.target, options=opts)
        self._stub = pb_grpc.TensorServiceStub(self._channel)
        self._put_call, self._fetch_call = _core.bulk_calls(self._channel)
        # The native calls block: they run in a worker thread.
        self._native = _fastpath.open_call(self.target, native, tls=self.tls,
                                           metadata=self._metadata)
        self._closed = False
        self._ready = False
        self._owned: set[str] = set()
        # Handles of collected proxies (put by weakref callbacks: no I/O, no lock).
        self._released: "queue.SimpleQueue[str]" = queue.SimpleQueue()
        self._flushing: Optional["asyncio.Task[None]"] = None

    @property
    def native(self) -> bool:
        """Whether Put and Fetch use the native extension (in a worker thread)."""
        return self._native is not None

    # -- lifecycle ------------------------------------------------------------

    async def wait_ready(self) -> "Client":
        """Wait for the server (``connect_timeout``); returns self."""
        if self._ready or not self.connect_timeout or self.connect_timeout <= 0:
            self._ready = True
            return self
        try:
            await asyncio.wait_for(self._channel.channel_ready(), self.connect_timeout)
        except asyncio.TimeoutError:
            why = ""
            check = self._channel.unary_unary(_HEALTH_CHECK, request_serializer=bytes,
                                              response_deserializer=bytes)
            try:
                await check(b"", timeout=1.0)
            except grpc.RpcError as e:
                why = _failure_text(e.details() or "", self.tls)
            except Exception:
                pass
            await self._channel.close(None)
            self._closed = True
            raise UnavailableError(
                f"could not connect to the tensorcast server at {self.target} within "
                f"{self.connect_timeout:g} s: is it running?{why}") from None
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

    async def close(self) -> None:
        """Delete what this client's proxies still own, and close the
        channel; unsets the default client if this was it."""
        if self._closed:
            return
        try:
            await self._flush()
            left = sorted(self._owned)
            self._owned.clear()
            await self._delete_quietly(left)
        finally:
            self._closed = True
            await self._channel.close(None)
            global _default
            if _default is self:
                _default = None

    # -- RPC plumbing --------------------------------------------------------

    async def _call(self, method: Any, request: Any, timeout: Any = _UNARY) -> Any:
        if self._closed:
            raise UnavailableError(f"the client for {self.target} is closed")
        self._reap_soon()
        if timeout is _UNARY:
            timeout = self.timeout
        try:
            return await method(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.target) from None

    def _wrap(self, meta: Meta, *, owned: bool) -> "RemoteTensor":
        t = RemoteTensor(self, meta)
        if owned:
            self._own(t)
        return t

    def _own(self, t: "RemoteTensor") -> None:
        handle = t._meta.handle
        assert handle is not None
        self._owned.add(handle)
        f = weakref.finalize(t, self._released.put, handle)
        f.atexit = False
        t._finalizer = f

    def _take_released(self) -> List[str]:
        out: List[str] = []
        while True:
            try:
                h = self._released.get_nowait()
            except queue.Empty:
                return out
            if h in self._owned:
                self._owned.discard(h)
                out.append(h)

    def _reap_soon(self) -> None:
        if self._released.empty() or (self._flushing and not self._flushing.done()):
            return
        self._flushing = asyncio.ensure_future(self._delete_quietly(self._take_released()))

    async def _flush(self) -> None:
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
        await self._delete_quietly(self._take_released())

    async def _delete_quietly(self, handles: List[str]) -> None:
        if not handles or self._closed:
            return
        if len(handles) > _core.MAX_DELETE_REFS:  # the server's cap per call
            for at in range(0, len(handles), _core.MAX_DELETE_REFS):
                await self._delete_quietly(handles[at:at + _core.MAX_DELETE_REFS])
            return
        try:
            await self._stub.Delete(pb.DeleteRequest(refs=handles), metadata=self._metadata,
                                    timeout=self.timeout)
            return
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND or len(handles) == 1:
                return
        except Exception:
            return
        for h in handles:
            await self._delete_quietly([h])

    async def _run(self, plan: Plan) -> Any:
        result: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                op = plan.throw(error) if error is not None else plan.send(result)
            except StopIteration as stop:
                return stop.value
            error = None
            try:
                result = await self._execute(op)
            except BaseException as e:
                error, result = e, None

    async def _execute(self, op: Op) -> Any:
        kind = op[0]
        if kind == "to":
            _, ref, device, dt, copy = op
            req = pb.ToRequest(ref=ref, device=device or "", copy=copy,
                               dtype=dt.proto if dt is not None else pb.DTYPE_UNSPECIFIED)
            return meta_from_info((await self._call(self._stub.To, req)).tensor)
        if kind == "detach":
            resp = await self._call(self._stub.Detach, pb.DetachRequest(ref=op[1]))
            return meta_from_info(resp.tensor)
        if kind == "delete":
            await self._delete_quietly([*op[1]])
            return None
        if kind == "fetch":
            return await self._fetch(op[1], progress=op[2], bits=op[3], out=op[5])
        raise ValueError(f"unknown op {kind}")  # pragma: no cover

    async def _fetch(self, req: pb.FetchRequest, *, progress: bool = False,
                     bits: bool = False, out: Optional[np.ndarray] = None) -> np.ndarray:
        if self._closed:
            raise UnavailableError(f"the client for {self.target} is closed")
        if req.chunk_bytes == 0 and self.chunk_bytes:
            req.chunk_bytes = self.chunk_bytes
        if self._native is not None and not progress:
            return await asyncio.to_thread(self._native.fetch, req, bits,
                                           self.stream_timeout, out)
        call = self._fetch_call(req, timeout=self.stream_timeout, metadata=self._metadata)
        bar: Optional[Progress] = None
        try:
            first = cast(Any, await call.read())
            if first is grpc.aio.EOF or first.header is None:
                raise RuntimeError("the Fetch stream did not start with its header")
            bar = Progress(progress, int(first.header.total_bytes), "fetch")
            sink = _core.FetchSink(first.header, progress=bar if bar else None, bits=bits,
                                   out=out)
            sink.write(first.data)
            del first
            while True:
                msg = cast(Any, await call.read())
                if msg is grpc.aio.EOF:
                    break
                sink.write(msg.data)
            return sink.result()
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.target) from None
        except BaseException:
            call.cancel()
            raise
        finally:
            if bar is not None:
                bar.close()

    async def _put(self, array: np.ndarray, *, device: Any, requires_grad: bool,
                   name: Optional[str], ttl: Optional[float], progress: bool,
                   wire_dtype: Optional[dtype] = None) -> "RemoteTensor":
        header = _core.put_header(array, device=device, requires_grad=requires_grad,
                                  name=name, ttl=ttl, wire_dtype=wire_dtype)
        if self._closed:
            raise UnavailableError(f"the client for {self.target} is closed")
        flat = _core.wire_bytes(array) if self._native is not None and not progress else None
        if flat is not None and self._native is not None:
            upload = asyncio.ensure_future(asyncio.to_thread(
                self._native.put, header, flat, self.put_chunk_bytes, self.stream_timeout))
            try:
                resp = await asyncio.shield(upload)
            except asyncio.CancelledError:
                # The thread cannot be stopped: let it finish, and delete the
                # tensor it stored, as a cancelled grpcio Put stores nothing.
                try:
                    stored = await upload
                    await self._call(self._stub.Delete,
                                     pb.DeleteRequest(refs=[stored.tensor.handle]))
                except Exception:
                    pass
                raise
            return self._wrap(meta_from_info(resp.tensor), owned=True)
        bar = Progress(progress, int(header.header.total_bytes), "put")
        call = self._put_call(None, timeout=self.stream_timeout, metadata=self._metadata)
        try:
            await call.write(header)
            for message, n in _core.iter_put_messages(array, self.put_chunk_bytes):
                await call.write(message)
                bar.update(n)
            await call.done_writing()
            resp = await call
        except grpc.RpcError as e:
            # A write fails once the server has answered; its status says why.
            raise from_rpc_error(await _final_error(call, e), self.target) from None
        except BaseException:
            call.cancel()
            raise
        finally:
            bar.close()
        return self._wrap(meta_from_info(resp.tensor), owned=True)

    async def _create(self, req: pb.CreateRequest) -> "RemoteTensor":
        resp = await self._call(self._stub.Create, req)
        return self._wrap(meta_from_info(resp.tensor), owned=True)

    # -- making tensors -------------------------------------------------------

    async def tensor(self, data: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                     requires_grad: bool = False, *, name: Optional[str] = None,
                     ttl: Optional[float] = None, progress: bool = False) -> "RemoteTensor":
        """As :meth:`tensorcast.Client.tensor`."""
        dt = _dtypes.as_dtype(dtype) if dtype is not None else None
        if isinstance(data, RemoteTensor):
            return await data.to(device=device, dtype=dt, copy=True)
        src = _core.tensor_source(data, dt, device=device, requires_grad=requires_grad,
                                  name=name, ttl=ttl)
        if src.request is not None:
            return await self._create(src.request)
        assert src.array is not None
        return await self._put(src.array, device=device, requires_grad=requires_grad,
                               name=name, ttl=ttl, progress=progress,
                               wire_dtype=src.wire_dtype)

    async def from_numpy(self, array: np.ndarray, device: Any = "cpu", *,
                         requires_grad: bool = False, name: Optional[str] = None,
                         ttl: Optional[float] = None, progress: bool = False) -> "RemoteTensor":
        """As :meth:`tensorcast.Client.from_numpy`."""
        a = _core.as_upload_array(array)
        return await self._put(a, device=device, requires_grad=requires_grad, name=name,
                               ttl=ttl, progress=progress)

    async def from_torch(self, x: Any, device: Any = None, *, name: Optional[str] = None,
                         ttl: Optional[float] = None, progress: bool = False) -> "RemoteTensor":
        """As :meth:`tensorcast.Client.from_torch`."""
        array, wire = _core.torch_to_numpy(x)
        return await self._put(array, device=str(x.device) if device is None else device,
                               requires_grad=bool(x.requires_grad), name=name, ttl=ttl,
                               progress=progress, wire_dtype=wire)

    async def zeros(self, *size: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                    requires_grad: bool = False, name: Optional[str] = None,
                    ttl: Optional[float] = None) -> "RemoteTensor":
        """As ``torch.zeros``."""
        return await self._create(_core.create_request(
            shape=_core.size_args(size), dtype_=_float_default(dtype), device=device,
            requires_grad=requires_grad, name=name, ttl=ttl, zeros=True))

    async def ones(self, *size: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                   requires_grad: bool = False, name: Optional[str] = None,
                   ttl: Optional[float] = None) -> "RemoteTensor":
        """As ``torch.ones``."""
        return await self._create(_core.create_request(
            shape=_core.size_args(size), dtype_=_float_default(dtype), device=device,
            requires_grad=requires_grad, name=name, ttl=ttl, ones=True))

    async def full(self, size: Sequence[int], fill_value: Any, *,
                   dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                   requires_grad: bool = False, name: Optional[str] = None,
                   ttl: Optional[float] = None) -> "RemoteTensor":
        """As ``torch.full``."""
        if isinstance(fill_value, complex):
            raise ValueError("full() takes a real fill value")
        dt = _dtypes.as_dtype(dtype) if dtype is not None else _core.fill_dtype(fill_value)
        return await self._create(_core.create_request(
            shape=_core.size_args((size,)), dtype_=dt, device=device,
            requires_grad=requires_grad, name=name, ttl=ttl, full=float(fill_value)))

    async def arange(self, start: float, end: Optional[float] = None, step: float = 1, *,
                     dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                     requires_grad: bool = False, name: Optional[str] = None,
                     ttl: Optional[float] = None) -> "RemoteTensor":
        """As ``torch.arange``."""
        dt = _dtypes.as_dtype(dtype) if dtype is not None else None
        numel, dt, s, st = _core.arange_args(start, end, step, dt)
        return await self._create(_core.create_request(
            shape=(numel,), dtype_=dt, device=device, requires_grad=requires_grad,
            name=name, ttl=ttl, arange=(s, st)))

    async def eye(self, n: int, m: Optional[int] = None, *,
                  dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                  requires_grad: bool = False, name: Optional[str] = None,
                  ttl: Optional[float] = None) -> "RemoteTensor":
        """As ``torch.eye``."""
        return await self._create(_core.create_request(
            shape=(n, n if m is None else m), dtype_=_float_default(dtype), device=device,
            requires_grad=requires_grad, name=name, ttl=ttl, eye=True))

    async def rand(self, *size: Any, seed: Optional[int] = None,
                   dtype: Optional[DTypeLike] = None, device: Any = "cpu",
                   requires_grad: bool = False, name: Optional[str] = None,
                   ttl: Optional[float] = None) -> "RemoteTensor":
        """As ``torch.rand``; ``seed`` makes it reproducible."""
        return await self._create(_core.create_request(
            shape=_core.size_args(size), dtype_=_float_default(dtype), device=device,
            requires_grad=requires_grad, name=name, ttl=ttl,
            rand_seed=random.getrandbits(63) if seed is None else seed))

    # -- finding and managing -------------------------------------------------

    async def get(self, ref: str) -> "RemoteTensor":
        """A non-owning proxy for an existing tensor (handle or name)."""
        resp = await self._call(self._stub.Info, pb.InfoRequest(ref=ref))
        return self._wrap(meta_from_info(resp.tensor), owned=False)

    async def fetch_into(self, ref: Any, out: Any, *, force: bool = False) -> np.ndarray:
        """As :meth:`tensorcast.Client.fetch_into`."""
        t = ref if isinstance(ref, RemoteTensor) else await self.get(ref)
        return await t.numpy(force=force, out=out)

    async def list(self, name_prefix: str = "") -> "List[RemoteTensor]":
        """Every tensor on the server, as non-owning proxies."""
        await self._flush()
        out: List[RemoteTensor] = []
        token = ""
        while True:
            resp = await self._call(self._stub.List, pb.ListRequest(
                page_size=1000, page_token=token, name_prefix=name_prefix))
            out.extend(self._wrap(meta_from_info(i), owned=False) for i in resp.tensors)
            token = resp.next_page_token
            if not token:
                return out

    async def delete(self, *refs: Any) -> int:
        """Delete tensors by handle, name or proxy (all or nothing)."""
        names: List[str] = []
        for r in refs:
            if isinstance(r, RemoteTensor):
                names.append(r._release_for_delete())
            else:
                names.append(str(r))
                self._owned.discard(str(r))
        names = [n for n in names if n]
        if not names:
            return 0
        resp = await self._call(self._stub.Delete, pb.DeleteRequest(refs=names))
        return int(resp.deleted)

    async def stats(self) -> Dict[str, Dict[str, Any]]:
        """Pool figures per device (``(await stats())["cpu"]["allocated_bytes"]``)."""
        await self._flush()
        return _stats_dict(await self._call(self._stub.Stats, pb.StatsRequest()))

    async def server_info(self) -> Dict[str, Any]:
        """The server's version, CUDA availability and totals."""
        return _server_info(await self._call(self._stub.Stats, pb.StatsRequest()))

    async def empty_cache(self, device: Optional[str] = None) -> int:
        """Release cached pool blocks; returns the bytes released."""
        await self._flush()
        req = pb.EmptyCacheRequest(device=_core.normalize_device(device) if device else "")
        return int((await self._call(self._stub.EmptyCache, req)).released_bytes)


async def _final_error(call: Any, error: grpc.RpcError) -> grpc.RpcError:
    try:
        await call
    except grpc.RpcError as e:
        return e
    except Exception:
        pass
    return error


class RemoteTensor(TensorBase):
    """A proxy for a server tensor (asyncio API). Lazy conversions
    (``detach()``, ``cpu()``, casts) are plain methods; the rest are
    coroutines. See :class:`tensorcast.RemoteTensor`."""

    _client: Client

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
        self._check_alive()
        if self._pending is None:
            return self
        source, pending = self._source, self._pending
        assert source is not None
        meta = await self._client._run(plan_materialize(source._meta, pending))
        if self._pending is pending:  # not materialised meanwhile
            self._meta, self._pending = meta, None
            if meta.handle != source._meta.handle:
                self._source = None
                self._client._own(self)
        return self

    async def numpy(self, force: bool = False, *, progress: bool = False,
                    out: Optional[np.ndarray] = None) -> np.ndarray:
        """As :meth:`tensorcast.RemoteTensor.numpy` (``out`` included)."""
        _core.check_fetchable(self._meta.dtype)
        return await self._client._run(self._fetch_plan(force=force, progress=progress,
                                                        out=out))

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        raise TypeError("an asyncio RemoteTensor cannot be converted synchronously: "
                        "use `await t.numpy()`")

    async def tolist(self) -> Any:
        """The values as (nested) Python numbers."""
        plan = self._fetch_plan(force=True, progress=False, cast=self._scalar_cast())
        return (await self._client._run(plan)).tolist()

    async def item(self) -> Any:
        """The value of a one-element tensor."""
        if self._meta.numel != 1:
            raise RuntimeError(f"a Tensor with {self._meta.numel} elements cannot be "
                               "converted to Scalar")
        plan = self._fetch_plan(force=True, progress=False, cast=self._scalar_cast())
        return (await self._client._run(plan)).item()

    async def torch(self, device: Any = None) -> Any:
        """As :meth:`tensorcast.RemoteTensor.torch`."""
        torch = _require_torch()
        array = await self._client._run(self._fetch_plan(force=True, progress=False,
                                                         bits=True))
        if self._meta.dtype is _dtypes.bfloat16:
            t = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(array)
        if device is not None:
            t = t.to(device)
        return t.requires_grad_(self._meta.requires_grad)

    async def to(self, *args: Any, **kwargs: Any) -> "RemoteTensor":
        """As :meth:`tensorcast.RemoteTensor.to` (awaitable: a GPU move or
        a copy runs on the server)."""
        device, dt, copy = _core.parse_to_args(args, kwargs)
        self._check_alive()
        if device is not None and device == self._meta.device:
            device = None
        if not copy and (device is None or device == "cpu"):
            return self._chain(cpu=device == "cpu", cast=dt)
        source, p = self._parts()
        if dt is not None:
            p = p.then_cast(source._meta.dtype, dt)
        meta = await self._client._run(plan_materialize(source._meta, p, device=device,
                                                        copy=copy))
        if meta.handle == source._meta.handle:
            return source
        return self._client._wrap(meta, owned=True)

    async def cuda(self, device: Optional[Any] = None) -> "RemoteTensor":
        """Move to a GPU on the server, now."""
        return await self.to(device="cuda" if device is None
                             else _core.normalize_device(device))

    async def clone(self) -> "RemoteTensor":
        """A copy on the server."""
        return await self.to(copy=True)

    def _release_for_delete(self) -> str:
        if self._deleted:
            return ""
        self._deleted = True
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._pending is not None or self._meta.handle is None or self._source is not None:
            self._source = None
            return ""
        self._client._owned.discard(self._meta.handle)
        return self._meta.handle

    async def delete(self) -> None:
        """Delete the server tensor now (see the blocking API)."""
        handle = self._release_for_delete()
        if handle:
            try:
                await self._client._call(self._client._stub.Delete,
                                         pb.DeleteRequest(refs=[handle]))
            except NotFoundError:
                pass

    async def __aenter__(self) -> "RemoteTensor":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self.owns_handle or self._pending is not None:
            await self.delete()


# -- module-level functions on the default client ----------------------------

_default: Optional[Client] = None


def connect(target: Optional[str] = None, token: Optional[str] = None, *,
            default: bool = True, **kwargs: Any) -> Client:
    """An asyncio client, made the default for this module's functions.
    ``await`` it, or use ``async with``, to wait for the server. The
    arguments are those of :func:`tensorcast.connect` (``token``, ``tls``,
    ``root_certificates``, ``certificate_chain``, ``private_key``...)."""
    global _default
    client = Client(target, token, **kwargs)
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


async def stats() -> "Dict[str, Dict[str, Any]]":
    """As ``tc.stats``."""
    return await default_client().stats()


async def server_info() -> "Dict[str, Any]":
    """As ``tc.server_info``."""
    return await default_client().server_info()


async def empty_cache(device: Optional[str] = None) -> int:
    """As ``tc.empty_cache``."""
    return await default_client().empty_cache(device)
