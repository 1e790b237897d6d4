"""The transports: how the drivers carry one Fetch or Put stream (the
``Fetch`` and ``Put`` steps of a plan, _plans.py). Three ways, each for the
blocking client and for the asyncio one, all with the interface of
``_plans.Transport`` (``fetch`` and ``put``; the asyncio ones' are
coroutines):

- grpcio: the stream's messages through grpcio (``grpc`` or ``grpc.aio``),
  assembled by ``_core.FetchSink`` / cut by ``_core.iter_put_messages``;
- native: the extension ``tensorcast._native`` (_fastpath.Call), data copied
  straight between the socket and the array with the GIL released; the
  asyncio client runs it in a worker thread;
- shared memory: a region this client lends the server (_fastpath.SharedMemory);
  the stream carries the header alone.

A transport answers None for "not this way" (shared memory refused in
"auto" mode, an array the native path cannot send from); the driver then
tries the next one (``_plans.stream_order``).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Iterator, Optional, cast

import grpc
import numpy as np

from tensorcast import _core, _fastpath
from tensorcast._core import Progress
from tensorcast._errors import from_rpc_error
from tensorcast.v1 import tensor_service_pb2 as pb


class GrpcioTransport:
    """Fetch and Put through grpcio (blocking)."""

    def __init__(self, client: Any, channel: Any) -> None:
        self._client = client
        self.put_call, self.fetch_call = _core.bulk_calls(channel)

    def fetch(self, request: pb.FetchRequest, *, nbytes: int, bits: bool, out: Any,
              progress: bool) -> np.ndarray:
        c = self._client
        call = self.fetch_call(request, timeout=c.stream_timeout, metadata=c._metadata)
        bar: Optional[Progress] = None
        try:
            it = iter(call)
            first = next(it)
            header = first.header
            if header is None:
                raise RuntimeError("the Fetch stream did not start with its header")
            bar = Progress(progress, int(header.total_bytes), "fetch")
            sink = _core.FetchSink(header, progress=bar if bar else None, bits=bits, out=out)
            sink.write(first.data)
            del first
            for msg in it:
                sink.write(msg.data)
            return sink.result()
        except grpc.RpcError as e:
            raise from_rpc_error(e, c.target) from None
        except BaseException:
            call.cancel()
            raise
        finally:
            if bar is not None:
                bar.close()

    def put(self, header: Any, array: np.ndarray, progress: bool) -> pb.PutResponse:
        c = self._client
        bar = Progress(progress, int(header.header.total_bytes), "put")
        chunk = c.put_chunk_bytes

        def requests() -> Iterator[Any]:
            yield header
            for message, n in _core.iter_put_messages(array, chunk):
                yield message
                bar.update(n)

        try:
            return cast(pb.PutResponse, self.put_call(requests(), timeout=c.stream_timeout,
                                                      metadata=c._metadata))
        except grpc.RpcError as e:
            raise from_rpc_error(e, c.target) from None
        finally:
            bar.close()


class NativeTransport:
    """Fetch and Put in the native extension (blocking, GIL released)."""

    def __init__(self, client: Any, call: _fastpath.Call) -> None:
        self._client = client
        self.call = call

    def fetch(self, request: pb.FetchRequest, *, nbytes: int, bits: bool, out: Any,
              progress: bool) -> np.ndarray:
        return self.call.fetch(request, bits, self._client.stream_timeout, out)

    def put(self, header: Any, array: np.ndarray, progress: bool) -> Optional[pb.PutResponse]:
        flat = _core.wire_bytes(array)
        if flat is None:
            return None  # not one contiguous run of wire bytes: grpcio cuts it
        c = self._client
        return self.call.put(header, flat, c.put_chunk_bytes, c.stream_timeout)


class Lender:
    """The shared-memory region a client lends its server, opened or grown
    on demand; blocking (the asyncio client calls it in a worker thread).
    Not thread-safe: the transports hold a lock around each use, so one
    transfer at a time goes through it."""

    def __init__(self, client: Any, stub: Any, mode: Any) -> None:
        self._client = client
        self._stub = stub
        self.mode = mode  # True or "auto"; False once "auto" found it refused
        self.memory: Optional[_fastpath.SharedMemory] = None

    def region(self, nbytes: int) -> Optional[_fastpath.SharedMemory]:
        """The region, of at least ``nbytes``; None when the server refuses
        shared memory and the mode is "auto"."""
        if not self.mode:
            return None
        if self.memory is not None and self.memory.size >= nbytes:
            return self.memory
        size = max(nbytes, 2 * self.memory.size if self.memory is not None else 0)
        self.close()
        try:
            self.memory = _fastpath.SharedMemory(self._stub, self._client._metadata, size)
        except grpc.RpcError as e:
            if self.mode == "auto" and e.code() in (
                    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.PERMISSION_DENIED):
                self.mode = False  # not this server: the socket it is
                return None
            if self.mode == "auto" and e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return None  # at the server's region limits: the socket, this time
            raise from_rpc_error(e, self._client.target) from None
        return self.memory

    def close(self) -> None:
        if self.memory is not None:
            self.memory.close()
            self.memory = None


def shared_fetch_request(request: pb.FetchRequest,
                         memory: _fastpath.SharedMemory) -> pb.FetchRequest:
    request.shm_region = memory.region
    request.shm_offset = memory.data_offset
    return request


def shared_fetch_result(messages: list[Any], memory: _fastpath.SharedMemory, bits: bool,
                        out: Any) -> np.ndarray:
    if not messages or messages[0].header is None:
        raise RuntimeError("the Fetch stream did not start with its header")
    sink = _core.FetchSink(messages[0].header, bits=bits, out=out)
    n = sink.expected
    sink.writable()[:n] = memory.data(n)
    sink.received = n
    return sink.result()


def shared_put_header(header: Any, memory: _fastpath.SharedMemory, flat: memoryview) -> Any:
    memory.data(flat.nbytes)[:] = flat
    header.header.shm_region = memory.region
    header.header.shm_offset = memory.data_offset
    header.header.shm_bytes = flat.nbytes
    return header


def shared_flat(array: np.ndarray) -> Optional[memoryview]:
    """The bytes a shared-memory Put copies, or None to take the socket."""
    flat = _core.wire_bytes(array)
    return flat if flat is not None and flat.nbytes >= _fastpath.SHM_MIN_BYTES else None


class SharedMemoryTransport:
    """Fetch and Put through the lent region (blocking); the stream itself
    goes through grpcio."""

    def __init__(self, client: Any, stub: Any, grpcio: GrpcioTransport, mode: Any) -> None:
        self._client = client
        self._grpcio = grpcio
        self.lender = Lender(client, stub, mode)
        self._lock = threading.Lock()

    def fetch(self, request: pb.FetchRequest, *, nbytes: int, bits: bool, out: Any,
              progress: bool) -> Optional[np.ndarray]:
        c = self._client
        with self._lock:  # one region: one transfer at a time
            memory = self.lender.region(nbytes)
            if memory is None:
                return None
            call = self._grpcio.fetch_call(shared_fetch_request(request, memory),
                                           timeout=c.stream_timeout, metadata=c._metadata)
            try:
                messages = list(call)
            except grpc.RpcError as e:
                raise from_rpc_error(e, c.target) from None
            return shared_fetch_result(messages, memory, bits, out)

    def put(self, header: Any, array: np.ndarray, progress: bool) -> Optional[pb.PutResponse]:
        flat = shared_flat(array)
        if flat is None:
            return None
        c = self._client
        with self._lock:
            memory = self.lender.region(flat.nbytes)
            if memory is None:
                return None
            try:
                return cast(pb.PutResponse, self._grpcio.put_call(
                    iter([shared_put_header(header, memory, flat)]),
                    timeout=c.stream_timeout, metadata=c._metadata))
            except grpc.RpcError as e:
                raise from_rpc_error(e, c.target) from None

    def close(self) -> None:
        with self._lock:
            self.lender.close()


# -- asyncio -------------------------------------------------------------------


class AioGrpcioTransport:
    """Fetch and Put through grpc.aio."""

    def __init__(self, client: Any, channel: Any) -> None:
        self._client = client
        self.put_call, self.fetch_call = _core.bulk_calls(channel)

    async def fetch(self, request: pb.FetchRequest, *, nbytes: int, bits: bool, out: Any,
                    progress: bool) -> np.ndarray:
        import grpc.aio
        c = self._client
        call = self.fetch_call(request, timeout=c.stream_timeout, metadata=c._metadata)
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
            raise from_rpc_error(e, c.target) from None
        except BaseException:
            call.cancel()
            raise
        finally:
            if bar is not None:
                bar.close()

    async def put(self, header: Any, array: np.ndarray, progress: bool) -> pb.PutResponse:
        c = self._client
        bar = Progress(progress, int(header.header.total_bytes), "put")
        call = self.put_call(None, timeout=c.stream_timeout, metadata=c._metadata)
        try:
            await call.write(header)
            for message, n in _core.iter_put_messages(array, c.put_chunk_bytes):
                await call.write(message)
                bar.update(n)
            await call.done_writing()
            return cast(pb.PutResponse, await call)
        except grpc.RpcError as e:
            # A write fails once the server has answered; its status says why.
            raise from_rpc_error(await _final_error(call, e), c.target) from None
        except BaseException:
            call.cancel()
            raise
        finally:
            bar.close()


async def _final_error(call: Any, error: grpc.RpcError) -> grpc.RpcError:
    try:
        await call
    except grpc.RpcError as e:
        return e
    except Exception:
        pass
    return error


async def _in_thread(fn: Callable[[], Any], undo: Optional[Callable[[Any], Any]] = None) -> Any:
    """``fn()`` in a worker thread. The thread cannot be stopped: when the
    task is cancelled it still finishes, and ``undo`` (a coroutine function)
    gets its result, as a cancelled grpcio Put stores nothing."""
    work = asyncio.ensure_future(asyncio.to_thread(fn))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        if undo is not None:
            try:
                await undo(await work)
            except Exception:
                pass
        raise


class AioNativeTransport:
    """The native extension's calls, in a worker thread."""

    def __init__(self, client: Any, call: _fastpath.Call, stub: Any) -> None:
        self._client = client
        self.call = call
        self._stub = stub

    async def fetch(self, request: pb.FetchRequest, *, nbytes: int, bits: bool, out: Any,
                    progress: bool) -> np.ndarray:
        return cast(np.ndarray, await asyncio.to_thread(
            self.call.fetch, request, bits, self._client.stream_timeout, out))

    async def put(self, header: Any, array: np.ndarray,
                  progress: bool) -> Optional[pb.PutResponse]:
        flat = _core.wire_bytes(array)
        if flat is None:
            return None
        c = self._client
        return cast(pb.PutResponse, await _in_thread(
            lambda: self.call.put(header, flat, c.put_chunk_bytes, c.stream_timeout),
            self._delete_stored))

    async def _delete_stored(self, resp: pb.PutResponse) -> None:
        await self._stub.Delete(pb.DeleteRequest(refs=[resp.tensor.handle]),
                                timeout=self._client.timeout,
                                metadata=self._client._metadata)


class AioSharedMemoryTransport:
    """Fetch and Put through the lent region, the stream on grpc.aio. The
    region is lent over a blocking channel of its own, in a worker thread
    (its OpenSharedMemory call stays open while the region lives)."""

    def __init__(self, client: Any, lend_stub: Any, grpcio: AioGrpcioTransport,
                 mode: Any) -> None:
        self._client = client
        self._grpcio = grpcio
        self.lender = Lender(client, lend_stub, mode)
        self._lock = asyncio.Lock()

    async def fetch(self, request: pb.FetchRequest, *, nbytes: int, bits: bool, out: Any,
                    progress: bool) -> Optional[np.ndarray]:
        c = self._client
        async with self._lock:  # one region: one transfer at a time
            memory = await asyncio.to_thread(self.lender.region, nbytes)
            if memory is None:
                return None
            call = self._grpcio.fetch_call(shared_fetch_request(request, memory),
                                           timeout=c.stream_timeout, metadata=c._metadata)
            try:
                messages = [m async for m in call]
            except grpc.RpcError as e:
                raise from_rpc_error(e, c.target) from None
            return shared_fetch_result(messages, memory, bits, out)

    async def put(self, header: Any, array: np.ndarray,
                  progress: bool) -> Optional[pb.PutResponse]:
        flat = shared_flat(array)
        if flat is None:
            return None
        c = self._client
        async with self._lock:
            memory = await asyncio.to_thread(self.lender.region, flat.nbytes)
            if memory is None:
                return None
            call = self._grpcio.put_call(None, timeout=c.stream_timeout,
                                         metadata=c._metadata)
            try:
                await call.write(shared_put_header(header, memory, flat))
                await call.done_writing()
                return cast(pb.PutResponse, await call)
            except grpc.RpcError as e:
                raise from_rpc_error(await _final_error(call, e), c.target) from None
            except BaseException:
                call.cancel()
                raise

    def close(self) -> None:
        self.lender.close()
