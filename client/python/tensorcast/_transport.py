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
  the stream carries the header alone;
- CUDA IPC: device memory this client lends the server (_cuda_ipc), for the
  Fetch and Put steps that name a GPU (``t.torch(device="cuda")``,
  ``from_torch`` of a CUDA tensor); the stream carries the header alone.

A transport answers None for "not this way" (shared memory refused in
"auto" mode, an array the native path cannot send from); the driver then
tries the next one (``_plans.stream_order``). The channels' settings
(address, options, credentials, token) are here too.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional, Sequence, cast

import grpc
import numpy as np

from tensorcast import _arena, _core, _cuda_ipc, _dtypes, _fastpath
from tensorcast._core import Progress
from tensorcast._errors import UnavailableError, from_rpc_error
from tensorcast.v1 import tensor_service_pb2 as pb
from tensorcast.v1 import tensor_service_pb2_grpc as pb_grpc

# -- channels ------------------------------------------------------------------

DEFAULT_TARGET = "127.0.0.1:50051"


def default_target() -> str:
    """``$TENSORCAST_SERVER``, else 127.0.0.1:50051."""
    return os.environ.get("TENSORCAST_SERVER") or DEFAULT_TARGET


def channel_options(extra: Optional[Sequence[tuple[str, Any]]] = None) -> list[tuple[str, Any]]:
    """Channel arguments: message caps above the server's 65 MiB."""
    opts: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", _core.MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", _core.MAX_MESSAGE_BYTES),
    ]
    opts.extend(extra or [])
    return opts


def auth_metadata(token: Optional[str]) -> tuple[tuple[str, str], ...]:
    """The bearer-token metadata (empty without a token)."""
    if token is None:
        token = os.environ.get("TENSORCAST_TOKEN") or None
    return (("authorization", f"Bearer {token}"),) if token else ()


Pem = Optional[Any]  # PEM text: bytes or str


def _pem(value: Pem, what: str) -> Optional[bytes]:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode("ascii")
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} is PEM text (bytes or str), not {type(value).__name__}")
    value = bytes(value)
    if b"-----BEGIN " not in value:
        raise ValueError(f"{what} is not PEM text (no -----BEGIN line): pass the "
                         "file's contents, not its path")
    return value


def channel_credentials(tls: bool, root_certificates: Pem = None,
                        certificate_chain: Pem = None,
                        private_key: Pem = None) -> Optional[grpc.ChannelCredentials]:
    """TLS credentials when ``tls`` or any PEM is given, else None
    (plaintext). Root certificates None: the system's (grpcio's bundle)."""
    roots = _pem(root_certificates, "root_certificates")
    chain = _pem(certificate_chain, "certificate_chain")
    key = _pem(private_key, "private_key")
    if (chain is None) != (key is None):
        raise ValueError("certificate_chain and private_key go together")
    if not tls and roots is None and chain is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key,
                                        certificate_chain=chain)


HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def connect_failure(channel: grpc.Channel, tls: bool) -> str:
    """Why a channel that never became ready failed, as the end of a
    message: one health check (no token needed, no wait for the connection)
    gives gRPC's reason, and a hint when it looks like TLS on one side
    only."""
    check = channel.unary_unary(HEALTH_CHECK, request_serializer=bytes,
                                response_deserializer=bytes)
    try:
        check(b"", timeout=1.0)
        return ""
    except grpc.RpcError as e:
        return failure_text(e.details() or "", tls)
    except Exception:  # never mask the UnavailableError being raised
        return ""


def not_ready(target: str, connect_timeout: float, why: str) -> UnavailableError:
    """The error of a client whose server did not answer in time."""
    return UnavailableError(
        f"could not connect to the tensorcast server at {target} "
        f"within {connect_timeout:g} s: is it running? (start it "
        f"with `make run` or build/bin/tensorcast-server){why}")


def failure_text(details: str, tls: bool) -> str:
    hint = ""
    if "refused" not in details.lower():
        hint = ("; if the server runs with --tls-cert, connect with "
                "root_certificates=... (or tls=True)") if not tls else (
                "; check that root_certificates holds the CA that signed the "
                "server's certificate, and that the server runs with --tls-cert")
    return f" [{details}{hint}]" if details else ""


class Conn(NamedTuple):
    """One server's channel, its stub and its transports (blocking or
    asyncio ones)."""
    channel: Any
    stub: Any
    grpcio: Any
    native: Any


# -- blocking ----------------------------------------------------------------------


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

    def __init__(self, client: Any, call: _fastpath.Call, stub: Any = None) -> None:
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


# Codes only the server's own answer carries: its copies into or out of a
# lent region have ended before it sends one.
_SERVER_ANSWERS = frozenset({
    grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.UNAUTHENTICATED,
})


class Lender:
    """The shared-memory region a client lends its server, opened or grown
    on demand (``region``, or ``region_async`` on an asyncio stub). Not
    thread-safe: the transports hold a lock around each use, so one
    transfer at a time goes through it."""

    def __init__(self, client: Any, stub: Any, mode: Any) -> None:
        self._client = client
        self._stub = stub
        self.mode = mode  # True or "auto"; False once "auto" found it refused
        self.memory: Optional[_fastpath.SharedMemory] = None
        self.lent = False  # a region was lent (one may be retired since)
        # The region shared arrays live in (shared_empty), lent on first use.
        self.arena: Optional[_arena.Arena] = None

    def _arena_size(self, nbytes: int) -> int:
        if not self.mode:
            raise RuntimeError(
                "shared arrays need shared memory, which the server refused (start it "
                "with --shared-memory)")
        return max(int(self._client.shared_arena_bytes), _arena.ALIGNMENT + nbytes)

    def arena_for(self, nbytes: int) -> _arena.Arena:
        """The arena, lent now when it is not yet (of the client's
        shared_arena_bytes, or ``nbytes`` if larger); the caller holds a
        lock."""
        if self.arena is None:
            size = self._arena_size(nbytes)
            try:
                memory = _fastpath.SharedMemory(self._stub, self._client._metadata, size)
            except grpc.RpcError as e:
                raise from_rpc_error(e, self._client.target) from None
            self.arena = _arena.Arena(memory)
        return self.arena

    async def arena_async(self, nbytes: int) -> _arena.Arena:
        """``arena_for`` over an asyncio stub."""
        if self.arena is None:
            memory = _fastpath.SharedMemory(None, (), self._arena_size(nbytes))
            try:
                await memory.lend_async(self._stub, self._client._metadata)
            except grpc.RpcError as e:
                memory.close()
                raise from_rpc_error(e, self._client.target) from None
            except BaseException:
                memory.close()
                raise
            self.arena = _arena.Arena(memory)
        return self.arena

    def locate(self, array: Any, nbytes: int) -> Optional[tuple[_arena.Arena, int]]:
        """The arena and region offset of ``array`` when it is a shared
        array (or C-contiguous bytes of one), else None."""
        arena = self.arena
        if arena is None or array is None:
            return None
        off = arena.locate(array, nbytes)
        return None if off is None else (arena, off)

    def _size(self, nbytes: int) -> int:
        """The size of a new region for ``nbytes`` (the old one is closed),
        or 0 when the open one will do."""
        if self.memory is not None and self.memory.size >= nbytes:
            return 0
        size = max(nbytes, 2 * self.memory.size if self.memory is not None else 0)
        if self.memory is not None:  # the copying region only: not the arena
            self.memory.close()
            self.memory = None
        return size

    def _refused(self, e: grpc.RpcError) -> None:
        """Returns when the socket is to be used ("auto" mode); else raises."""
        if self.mode == "auto" and e.code() in (
                grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.PERMISSION_DENIED):
            self.mode = False  # not this server: the socket it is
            return
        if self.mode == "auto" and e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return  # at the server's region limits: the socket, this time
        raise from_rpc_error(e, self._client.target) from None

    def region(self, nbytes: int) -> Optional[_fastpath.SharedMemory]:
        """The region, of at least ``nbytes``; None when the server refuses
        shared memory and the mode is "auto"."""
        if not self.mode:
            return None
        size = self._size(nbytes)
        if size:
            try:
                self.memory = _fastpath.SharedMemory(self._stub, self._client._metadata, size)
            except grpc.RpcError as e:
                self._refused(e)
                return None
            self.lent = True
        return self.memory

    async def region_async(self, nbytes: int) -> Optional[_fastpath.SharedMemory]:
        """``region`` for the asyncio client: lent over its own (asyncio)
        connection, as the server ties a region to the connection."""
        if not self.mode:
            return None
        size = self._size(nbytes)
        if size:
            memory = _fastpath.SharedMemory(None, (), size)
            try:
                await memory.lend_async(self._stub, self._client._metadata)
            except grpc.RpcError as e:
                memory.close()
                self._refused(e)
                return None
            self.memory = memory
            self.lent = True
        return self.memory

    def close(self) -> None:
        if self.memory is not None:
            self.memory.close()
            self.memory = None
        if self.arena is not None:
            self.arena.close()
            self.arena = None

    def discard(self, error: Optional[grpc.RpcError] = None) -> None:
        """After a transfer that failed or was cancelled. When the client
        may have seen the end first (a local deadline or cancellation, a
        lost connection, an exception here), the server may still be
        copying a piece into (Fetch) or out of (Put) the region on its
        workers, so the region is never used again: the next transfer lends
        a new one (the server keeps the old mapping until its copy ends).
        An error the server answered with ends its copies before it is
        sent: the region is kept."""
        if error is not None and error.code() in _SERVER_ANSWERS:
            return
        if self.memory is not None:  # the copying region; shared arrays: Arena
            self.memory.close()
            self.memory = None


def server_answered(error: BaseException) -> bool:
    """Whether ``error`` (a TensorcastError) is the server's own answer,
    sent after its copies into or out of a region ended."""
    return getattr(error, "code", None) in _SERVER_ANSWERS


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


def direct_fetch_request(request: pb.FetchRequest, arena: _arena.Arena, off: int,
                         nbytes: int) -> pb.FetchRequest:
    """A Fetch the server writes straight into a shared array at ``off``:
    at most ``nbytes`` (``length``), so a tensor larger than the array
    cannot spill past it (the header then disagrees: an error)."""
    request.shm_region = arena.region
    request.shm_offset = off
    request.length = nbytes
    return request


def direct_fetch_result(messages: list[Any], bits: bool, out: Any) -> np.ndarray:
    if not messages or messages[0].header is None:
        raise RuntimeError("the Fetch stream did not start with its header")
    sink = _core.FetchSink(messages[0].header, bits=bits, out=out)
    sink.received = sink.expected  # the server wrote them in place
    return sink.result()


def direct_put_header(header: Any, arena: _arena.Arena, off: int, nbytes: int) -> Any:
    """A Put the server reads straight from a shared array at ``off``."""
    header.header.shm_region = arena.region
    header.header.shm_offset = off
    header.header.shm_bytes = nbytes
    return header


def direct_put(array: np.ndarray, lender: Lender) -> Optional[tuple[_arena.Arena, int, int]]:
    """(arena, offset, bytes) when ``array``'s wire bytes are a shared
    array's memory, else None."""
    if lender.arena is None:
        return None
    flat = _core.wire_bytes(array)
    if flat is None:
        return None
    found = lender.locate(flat, flat.nbytes)
    return None if found is None else (found[0], found[1], flat.nbytes)


def shared_empty_size(shape: Any, dtype: Any) -> tuple[tuple[int, ...], np.dtype, int]:
    """The shape, NumPy dtype and bytes of a shared_empty array."""
    dt = np.dtype(getattr(dtype, "numpy_dtype", dtype))
    dims = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(
        int(s) for s in shape)
    if any(d < 0 for d in dims):
        raise ValueError(f"negative dimension in shape {dims}")
    n = 1
    for d in dims:
        n *= d
    return dims, dt, n * dt.itemsize


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
        self._arena_lock = threading.Lock()

    def empty(self, shape: Any, dtype: Any) -> np.ndarray:
        dims, dt, nbytes = shared_empty_size(shape, dtype)
        with self._arena_lock:
            arena = self.lender.arena_for(nbytes)
        return arena.empty(dims, dt)

    def fetch(self, request: pb.FetchRequest, *, nbytes: int, bits: bool, out: Any,
              progress: bool) -> Optional[np.ndarray]:
        c = self._client
        direct = self.lender.locate(out, nbytes)
        if direct is not None:  # into a shared array: no lock, no copy here
            arena, off = direct
            with arena.transfer(off, server_answered):
                call = self._grpcio.fetch_call(
                    direct_fetch_request(request, arena, off, nbytes),
                    timeout=c.stream_timeout, metadata=c._metadata)
                try:
                    messages = list(call)
                except grpc.RpcError as e:
                    raise from_rpc_error(e, c.target) from None
            return direct_fetch_result(messages, bits, out)
        with self._lock:  # one region: one transfer at a time
            memory = self.lender.region(nbytes)
            if memory is None:
                return None
            call = self._grpcio.fetch_call(shared_fetch_request(request, memory),
                                           timeout=c.stream_timeout, metadata=c._metadata)
            try:
                messages = list(call)
            except grpc.RpcError as e:
                self.lender.discard(e)
                raise from_rpc_error(e, c.target) from None
            except BaseException:
                call.cancel()
                self.lender.discard()
                raise
            return shared_fetch_result(messages, memory, bits, out)

    def put(self, header: Any, array: np.ndarray, progress: bool) -> Optional[pb.PutResponse]:
        c = self._client
        direct = direct_put(array, self.lender)
        if direct is not None:  # from a shared array: no lock, no copy here
            arena, off, n = direct
            with arena.transfer(off, server_answered):
                try:
                    return cast(pb.PutResponse, self._grpcio.put_call(
                        iter([direct_put_header(header, arena, off, n)]),
                        timeout=c.stream_timeout, metadata=c._metadata))
                except grpc.RpcError as e:
                    raise from_rpc_error(e, c.target) from None
        flat = shared_flat(array)
        if flat is None:
            return None
        with self._lock:
            memory = self.lender.region(flat.nbytes)
            if memory is None:
                return None
            try:
                return cast(pb.PutResponse, self._grpcio.put_call(
                    iter([shared_put_header(header, memory, flat)]),
                    timeout=c.stream_timeout, metadata=c._metadata))
            except grpc.RpcError as e:
                self.lender.discard(e)
                raise from_rpc_error(e, c.target) from None
            except BaseException:
                self.lender.discard()
                raise

    def close(self) -> None:
        with self._lock:
            self.lender.close()


def device_fetch_request(request: pb.FetchRequest, arena: _cuda_ipc.DeviceArena, off: int,
                         nbytes: int) -> pb.FetchRequest:
    """A Fetch the server writes into a device slot at ``off``: at most
    ``nbytes`` (``length``)."""
    request.shm_region = arena.region.region
    request.shm_offset = off
    request.length = nbytes
    return request


def device_fetch_result(messages: list[Any], arena: _cuda_ipc.DeviceArena, off: int,
                        nbytes: int) -> _cuda_ipc.CudaArray:
    """The slot the server wrote, as a CudaArray that holds it; raises
    (the caller gives the slot back) when the stream disagrees."""
    if not messages or messages[0].header is None:
        raise RuntimeError("the Fetch stream did not start with its header")
    header = messages[0].header
    dt = _dtypes.from_proto(header.tensor.dtype)
    ts = _cuda_ipc.typestr(dt)
    if header.format != pb.FORMAT_RAW or header.total_bytes != nbytes or ts is None:
        raise RuntimeError(
            f"unexpected Fetch stream: format {header.format}, {header.total_bytes} "
            f"bytes of {dt.name} where {nbytes} were asked")
    return arena.hold(off, header.tensor.shape, ts, nbytes)


def device_put_header(header: Any, arena: _cuda_ipc.DeviceArena, off: int,
                      nbytes: int) -> Any:
    header.header.shm_region = arena.region.region
    header.header.shm_offset = off
    header.header.shm_bytes = nbytes
    return header


class CudaIpcTransport:
    """Fetch and Put through device regions lent over CUDA IPC (blocking;
    the stream goes through grpcio). A region is lent once and carved into
    slots (``_cuda_ipc.DeviceArena``); a new one is lent when none has
    room. ``fetch`` answers a CudaArray, ``put`` a PutResponse; both answer
    None after ``Device.fallback`` when the server refuses a region."""

    def __init__(self, client: Any, stub: Any, grpcio: GrpcioTransport,
                 state: _cuda_ipc.Device) -> None:
        self._client = client
        self._stub = stub
        self._grpcio = grpcio
        self.state = state
        self._lock = threading.Lock()

    def _slot(self, device: int, nbytes: int) -> Optional[tuple[_cuda_ipc.DeviceArena, int]]:
        st = self.state
        with self._lock:
            found = st.slot(device, nbytes)
            if found is not None:
                return found
            try:
                region = st.new_region(device, nbytes, self._client.cuda_arena_bytes)
            except _cuda_ipc.CudaError as e:
                st.fallback(f"no device region: {e}")
                return None
            try:
                region.lend(self._stub, self._client._metadata)
            except grpc.RpcError as e:
                region.close()
                region.free()
                st.fallback(st.refused(e))
                return None
            except _cuda_ipc.CudaError as e:  # the handle, the header
                region.close()
                region.free()
                st.fallback(f"the CUDA IPC region was not lent: {e}")
                return None
            except BaseException:
                region.close()
                region.free()
                raise
            arena = st.add(region)
            return arena, arena.allocate(nbytes)

    def fetch(self, request: pb.FetchRequest, *, nbytes: int,
              device: int) -> Optional[_cuda_ipc.CudaArray]:
        c = self._client
        slot = self._slot(device, nbytes)
        if slot is None:
            return None
        arena, off = slot
        try:
            with arena.transfer(off, server_answered):
                call = self._grpcio.fetch_call(device_fetch_request(request, arena, off, nbytes),
                                               timeout=c.stream_timeout, metadata=c._metadata)
                try:
                    messages = list(call)
                except grpc.RpcError as e:
                    raise from_rpc_error(e, c.target) from None
                except BaseException:
                    call.cancel()
                    raise
            result = device_fetch_result(messages, arena, off, nbytes)
        except BaseException:
            arena.release(off)
            raise
        self.state.used()
        return result

    def put(self, header: Any, source: _cuda_ipc.Source) -> Optional[pb.PutResponse]:
        c = self._client
        slot = self._slot(source.device, source.nbytes)
        if slot is None:
            return None
        arena, off = slot
        try:
            source.sync()  # the bytes written before they are copied
            arena.region.runtime.copy(source.device, arena.base + off, source.ptr,
                                      source.nbytes)
            with arena.transfer(off, server_answered):
                try:
                    resp = cast(pb.PutResponse, self._grpcio.put_call(
                        iter([device_put_header(header, arena, off, source.nbytes)]),
                        timeout=c.stream_timeout, metadata=c._metadata))
                except grpc.RpcError as e:
                    raise from_rpc_error(e, c.target) from None
        finally:
            arena.release(off)
        self.state.used()
        return resp

    def close(self) -> None:
        with self._lock:
            self.state.close()


# -- asyncio -------------------------------------------------------------------


class AioGrpcioTransport:
    """Fetch and Put through grpc.aio."""

    def __init__(self, client: Any, channel: Any) -> None:
        self._client = client
        self.put_call, self.fetch_call = _core.bulk_calls(channel)
        self._stub = pb_grpc.TensorServiceStub(channel)

    async def put_stream(self, messages: Iterable[Any]) -> pb.PutResponse:
        """Send ``messages`` (the header, then the data) on a Put call and
        return its answer; raises the call's grpc.RpcError (the server's
        status when a write failed). Cancelled before the stream is
        half-closed, the call is cancelled: the server stores nothing then.
        Cancelled after, the answer is waited for and the tensor it names
        deleted, as the server may have stored it already: a cancelled Put
        leaves no tensor that nobody owns."""
        c = self._client
        call = self.put_call(None, timeout=c.stream_timeout, metadata=c._metadata)
        closing = False

        async def send() -> pb.PutResponse:
            nonlocal closing
            try:
                for message in messages:
                    await call.write(message)
                closing = True
                await call.done_writing()
                return cast(pb.PutResponse, await call)
            except grpc.RpcError as e:
                # A write fails once the server has answered; its status says why.
                raise await _final_error(call, e) from None

        work = asyncio.ensure_future(send())

        def stop() -> None:
            if not closing:
                call.cancel()
                work.cancel()  # a write pending on a cancelled call never ends

        try:
            return cast(pb.PutResponse, await _guarded(work, stop, self._delete_stored))
        except BaseException:
            call.cancel()
            raise

    async def _delete_stored(self, resp: pb.PutResponse) -> None:
        await _delete_stored(self._client, self._stub, resp)

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

        def messages() -> Iterator[Any]:
            yield header
            for message, n in _core.iter_put_messages(array, c.put_chunk_bytes):
                yield message
                bar.update(n)

        try:
            return await self.put_stream(messages())
        except grpc.RpcError as e:
            raise from_rpc_error(e, c.target) from None
        finally:
            bar.close()


async def _delete_stored(client: Any, stub: Any, resp: pb.PutResponse) -> None:
    """Delete the tensor a Put whose caller was cancelled stored."""
    await stub.Delete(pb.DeleteRequest(refs=[resp.tensor.handle]), timeout=client.timeout,
                      metadata=client._metadata)


async def _messages(call: Any) -> list[Any]:
    return [m async for m in call]


async def _final_error(call: Any, error: grpc.RpcError) -> grpc.RpcError:
    try:
        await call
    except grpc.RpcError as e:
        return e
    except Exception:
        pass
    return error


async def wait_out(work: "asyncio.Future[Any]") -> None:
    """Wait until ``work`` has ended, whatever it ends with, however often
    the waiting task is cancelled meanwhile (a cancellation that comes
    again, a timeout around a cancelled call)."""
    while not work.done():
        try:
            await asyncio.shield(work)
        except BaseException:
            pass
    if not work.cancelled():
        work.exception()  # retrieved: never "exception was never retrieved"


async def _guarded(work: "asyncio.Future[Any]", stop: Optional[Callable[[], Any]] = None,
                   undo: Optional[Callable[[Any], Any]] = None) -> Any:
    """Await ``work``, which runs outside the awaiting task (a worker thread,
    a task of its own). When the task is cancelled (``task.cancel()``, a
    timeout), ``stop()`` asks the work to end, and the CancelledError goes
    on only once it has: nothing the work does (writing into the caller's
    array, a stream it holds) outlives the cancellation. Work that
    completed all the same hands its result to ``undo`` (a coroutine
    function, run to its end too: a stored tensor deleted)."""
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        if stop is not None:
            stop()
        await wait_out(work)
        if undo is not None and not work.cancelled() and work.exception() is None:
            await wait_out(asyncio.ensure_future(_quietly(undo(work.result()))))
        raise


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except Exception:
        pass


class AioNativeTransport:
    """The native extension's calls, in a worker thread."""

    def __init__(self, client: Any, call: _fastpath.Call, stub: Any) -> None:
        self._client = client
        self.call = call
        self._stub = stub

    async def fetch(self, request: pb.FetchRequest, *, nbytes: int, bits: bool, out: Any,
                    progress: bool) -> np.ndarray:
        # Cancelled, the native call is cancelled too, and waited for: once
        # the cancellation goes on, nothing writes into ``out`` and the
        # stream has ended.
        cancel = _fastpath.canceller()
        work = asyncio.ensure_future(asyncio.to_thread(
            self.call.fetch, request, bits, self._client.stream_timeout, out, cancel))
        return cast(np.ndarray, await _guarded(work, cancel.cancel))

    async def put(self, header: Any, array: np.ndarray,
                  progress: bool) -> Optional[pb.PutResponse]:
        flat = _core.wire_bytes(array)
        if flat is None:
            return None
        c = self._client
        # Cancelled, the native call stops unless its stream is half-closed
        # already; then its answer is waited for and the tensor deleted.
        cancel = _fastpath.canceller()
        work = asyncio.ensure_future(asyncio.to_thread(
            self.call.put, header, flat, c.put_chunk_bytes, c.stream_timeout, cancel))
        return cast(pb.PutResponse, await _guarded(work, cancel.cancel, self._delete_stored))

    async def _delete_stored(self, resp: pb.PutResponse) -> None:
        await _delete_stored(self._client, self._stub, resp)


class AioSharedMemoryTransport:
    """Fetch and Put through the lent region, the stream on grpc.aio (the
    region is lent on the same connection: the server ties it to it)."""

    def __init__(self, client: Any, stub: Any, grpcio: AioGrpcioTransport,
                 mode: Any) -> None:
        self._client = client
        self._grpcio = grpcio
        self.lender = Lender(client, stub, mode)
        self._lock = asyncio.Lock()
        self._arena_lock = asyncio.Lock()

    async def empty(self, shape: Any, dtype: Any) -> np.ndarray:
        dims, dt, nbytes = shared_empty_size(shape, dtype)
        async with self._arena_lock:
            arena = await self.lender.arena_async(nbytes)
        return arena.empty(dims, dt)

    async def fetch(self, request: pb.FetchRequest, *, nbytes: int, bits: bool, out: Any,
                    progress: bool) -> Optional[np.ndarray]:
        c = self._client
        direct = self.lender.locate(out, nbytes)
        if direct is not None:  # into a shared array: no lock, no copy here
            arena, off = direct
            cancelled = False
            with arena.transfer(off, server_answered):
                call = self._grpcio.fetch_call(
                    direct_fetch_request(request, arena, off, nbytes),
                    timeout=c.stream_timeout, metadata=c._metadata)
                work = asyncio.ensure_future(_messages(call))
                try:
                    messages = await asyncio.shield(work)
                except grpc.RpcError as e:
                    raise from_rpc_error(e, c.target) from None
                except asyncio.CancelledError:
                    # The server writes into ``out`` until its stream ends,
                    # and only that end says its copies did: it is waited
                    # for (bounded by the stream timeout), not cut short.
                    await wait_out(work)
                    error = None if work.cancelled() else work.exception()
                    if error is not None and not (isinstance(error, grpc.RpcError)
                                                  and error.code() in _SERVER_ANSWERS):
                        raise  # the copies may go on: the slot is quarantined
                    cancelled = True
                except BaseException:
                    call.cancel()
                    raise
            if cancelled:
                raise asyncio.CancelledError
            return direct_fetch_result(messages, bits, out)
        async with self._lock:  # one region: one transfer at a time
            memory = await self.lender.region_async(nbytes)
            if memory is None:
                return None
            call = self._grpcio.fetch_call(shared_fetch_request(request, memory),
                                           timeout=c.stream_timeout, metadata=c._metadata)
            try:
                messages = [m async for m in call]
            except grpc.RpcError as e:
                self.lender.discard(e)
                raise from_rpc_error(e, c.target) from None
            except BaseException:
                call.cancel()
                self.lender.discard()
                raise
            return shared_fetch_result(messages, memory, bits, out)

    async def put(self, header: Any, array: np.ndarray,
                  progress: bool) -> Optional[pb.PutResponse]:
        c = self._client
        direct = direct_put(array, self.lender)
        if direct is not None:  # from a shared array: no lock, no copy here
            arena, off, n = direct
            with arena.transfer(off, server_answered):
                try:
                    return await self._grpcio.put_stream(
                        [direct_put_header(header, arena, off, n)])
                except grpc.RpcError as e:
                    raise from_rpc_error(e, c.target) from None
        flat = shared_flat(array)
        if flat is None:
            return None
        async with self._lock:
            memory = await self.lender.region_async(flat.nbytes)
            if memory is None:
                return None
            try:
                return await self._grpcio.put_stream([shared_put_header(header, memory, flat)])
            except grpc.RpcError as e:
                self.lender.discard(e)
                raise from_rpc_error(e, c.target) from None
            except BaseException:
                self.lender.discard()
                raise

    def close(self) -> None:
        self.lender.close()


class AioCudaIpcTransport:
    """``CudaIpcTransport`` for the asyncio client: regions lent over its
    own connection (the server ties a region to it), the device copies in
    a worker thread."""

    def __init__(self, client: Any, stub: Any, grpcio: AioGrpcioTransport,
                 state: _cuda_ipc.Device) -> None:
        self._client = client
        self._stub = stub
        self._grpcio = grpcio
        self.state = state
        self._lock = asyncio.Lock()

    async def _slot(self, device: int,
                    nbytes: int) -> Optional[tuple[_cuda_ipc.DeviceArena, int]]:
        st = self.state
        async with self._lock:
            found = st.slot(device, nbytes)
            if found is not None:
                return found
            try:
                region = st.new_region(device, nbytes, self._client.cuda_arena_bytes)
            except _cuda_ipc.CudaError as e:
                st.fallback(f"no device region: {e}")
                return None
            try:
                await region.lend_async(self._stub, self._client._metadata)
            except grpc.RpcError as e:
                region.close()
                region.free()
                st.fallback(st.refused(e))
                return None
            except _cuda_ipc.CudaError as e:  # the handle, the header
                region.close()
                region.free()
                st.fallback(f"the CUDA IPC region was not lent: {e}")
                return None
            except BaseException:
                region.close()
                region.free()
                raise
            arena = st.add(region)
            return arena, arena.allocate(nbytes)

    async def fetch(self, request: pb.FetchRequest, *, nbytes: int,
                    device: int) -> Optional[_cuda_ipc.CudaArray]:
        c = self._client
        slot = await self._slot(device, nbytes)
        if slot is None:
            return None
        arena, off = slot
        try:
            with arena.transfer(off, server_answered):
                call = self._grpcio.fetch_call(device_fetch_request(request, arena, off, nbytes),
                                               timeout=c.stream_timeout, metadata=c._metadata)
                try:
                    messages = [m async for m in call]
                except grpc.RpcError as e:
                    raise from_rpc_error(e, c.target) from None
                except BaseException:
                    call.cancel()
                    raise
            result = device_fetch_result(messages, arena, off, nbytes)
        except BaseException:
            arena.release(off)
            raise
        self.state.used()
        return result

    async def put(self, header: Any, source: _cuda_ipc.Source) -> Optional[pb.PutResponse]:
        c = self._client
        slot = await self._slot(source.device, source.nbytes)
        if slot is None:
            return None
        arena, off = slot
        try:
            def copy() -> None:
                source.sync()
                arena.region.runtime.copy(source.device, arena.base + off, source.ptr,
                                          source.nbytes)
            # A cancelled task leaves the thread copying: the slot is then
            # never reused.
            with arena.transfer(off, lambda e: False):
                await asyncio.to_thread(copy)
            with arena.transfer(off, server_answered):
                try:
                    resp = await self._grpcio.put_stream(
                        [device_put_header(header, arena, off, source.nbytes)])
                except grpc.RpcError as e:
                    raise from_rpc_error(e, c.target) from None
        finally:
            arena.release(off)
        self.state.used()
        return resp

    def close(self) -> None:
        self.state.close()
