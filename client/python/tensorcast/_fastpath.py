"""The glue between the clients (sync and asyncio) and the native extension
``tensorcast._native``: choosing the path, and running Fetch and Put on it.
The calls block (with the GIL released inside); the asyncio client runs
them in a worker thread."""

from __future__ import annotations

import mmap
import os
import secrets
from typing import Any, Generator, Optional, Sequence

import grpc
import numpy as np

from tensorcast import _core
from tensorcast._errors import from_status
from tensorcast.v1 import tensor_service_pb2 as pb

# Whether the native path prefaults a fresh array of 16 MiB or more it
# fetches into (MADV_HUGEPAGE, then MADV_POPULATE_WRITE, before the data
# comes): $TENSORCAST_PREFAULT=1. Off by default: on the 2-core test
# machine it did not help (256 MiB, medians of 5: 1.56 GB/s with it, 1.75
# without, 1.81 into numpy(out=); noisy, docs/python.md).
PREFAULT = os.environ.get("TENSORCAST_PREFAULT", "0") == "1"

# grpc.StatusCode by number, for the extension's errors.
_STATUS_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def open_channel(target: str, native: Optional[bool], *, tls: bool) -> Any:
    """The extension's channel to ``target``, or None for the grpcio path.

    native None: use it when built, the channel is not TLS and
    $TENSORCAST_NATIVE is not "0". True: require it (ImportError if it was
    not built; ValueError with TLS). False: never. The native channel is
    its own connection with default arguments: the client's ``options``
    (authority, keepalive, proxies) apply to its grpcio channel only."""
    if native is None:
        native = os.environ.get("TENSORCAST_NATIVE", "1") != "0" and not tls
        required = False
    else:
        required = native
    if not native:
        return None
    if tls:
        raise ValueError("the native path has no TLS yet: use native=False")
    try:
        import tensorcast._native as _native
    except ImportError:
        if required:
            raise ImportError(
                "native=True, but tensorcast._native was not built (install "
                "the binary wheel, `make wheel`, or have the gRPC C++ library "
                "when the package is built)") from None
        return None
    return _native.Channel(target, _core.MAX_CHUNK_BYTES + (1 << 20))


def open_call(target: str, native: Optional[bool], *, tls: bool,
              metadata: Sequence[tuple[str, str]]) -> Optional["Call"]:
    """A client's bulk calls on the native path, or None for grpcio (see
    open_channel)."""
    channel = open_channel(target, native, tls=tls)
    return None if channel is None else Call(channel, target, metadata)


def canceller() -> Any:
    """A ``tensorcast._native.Canceller``: passed to ``Call.fetch``, its
    ``cancel()`` (from any thread) cancels that call, and once it returns
    the call writes nothing more into its array; passed to ``Call.put``,
    it cancels that call unless its stream is half-closed already."""
    import tensorcast._native as _native
    return _native.Canceller()


class Call:
    """The bulk calls of one client on the native path."""

    def __init__(self, channel: Any, target: str,
                 metadata: Sequence[tuple[str, str]]) -> None:
        self._channel = channel
        self._target = target
        self._metadata = list(metadata)

    def _run(self, fn: Any, timeout: Optional[float], **kwargs: Any) -> Any:
        import tensorcast._native as _native
        try:
            return fn(metadata=self._metadata, timeout=timeout or 0.0, **kwargs)
        except _native.RpcError as e:
            code, details = e.args
            raise from_status(_STATUS_BY_VALUE.get(code, grpc.StatusCode.UNKNOWN),
                              details, self._target) from None

    def fetch(self, req: pb.FetchRequest, bits: bool, timeout: Optional[float],
              out: Optional[np.ndarray] = None, cancel: Any = None) -> np.ndarray:
        """Fetch into one new array, or into ``out`` (checked by the plan),
        as FetchSink does on the grpcio path. ``cancel``: a ``canceller()``
        another thread may stop the call with (the asyncio client's, when
        its task is cancelled)."""
        sinks: list[_core.FetchSink] = []

        def on_header(raw: bytes) -> memoryview:
            sinks.append(_core.FetchSink(pb.FetchHeader.FromString(raw), bits=bits))
            return sinks[-1].writable()

        def on_header_into(raw: bytes) -> int:
            sinks.append(_core.FetchSink(pb.FetchHeader.FromString(raw), bits=bits,
                                         out=out))
            return sinks[-1].expected

        if out is None:
            written = self._run(self._channel.fetch, timeout,
                                request=req.SerializeToString(), on_header=on_header,
                                prefault=PREFAULT, cancel=cancel)
        else:
            # The native side writes the bytes; a uint8 view of the same
            # memory (dtypes such as bfloat16 export no buffer format).
            written = self._run(self._channel.fetch_into, timeout,
                                request=req.SerializeToString(),
                                out=out.reshape(-1).view(np.uint8),
                                on_header=on_header_into, cancel=cancel)
        if not sinks:
            raise RuntimeError("the Fetch stream did not start with its header")
        sinks[-1].received = int(written)
        return sinks[-1].result()

    def put(self, header: Any, data: memoryview, chunk_bytes: int,
            timeout: Optional[float], cancel: Any = None) -> pb.PutResponse:
        """Put ``data`` (the array's wire bytes) after ``header``.
        ``cancel``: a ``canceller()`` that stops the call until its stream
        is half-closed (the server then stores nothing); after that the
        call goes on to the server's answer."""
        raw = self._run(self._channel.put, timeout, header=header.SerializeToString(),
                        data=data, chunk_bytes=chunk_bytes, cancel=cancel)
        return pb.PutResponse.FromString(raw)


# Fetches smaller than this go over the socket even when shared memory is on.
SHM_MIN_BYTES = 1 << 20
_SHM_DIR = "/dev/shm"
# A region's first bytes are its header, where the token and the server's
# challenge go; the server never reads data from or writes into it
# (SharedMemoryEvent.data_offset).
SHM_HEADER_BYTES = 4096
# Where the challenge goes (after the token's at most 64 bytes), and its
# most bytes.
SHM_CHALLENGE_OFFSET = 64
_SHM_MAX_CHALLENGE_BYTES = 64


def is_local(target: str) -> bool:
    """Whether ``target`` names this host (loopback)."""
    host = target.rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "127.0.0.1", "::1") or host.startswith("127.")


class SharedMemory:
    """A region of same-host shared memory this client lends the server
    (server flag --shared-memory) for transfers to go through: the server
    copies the bytes in or out (one copy) and the stream carries the header
    alone; the client copies between the region and its array.

    The region is a memfd sealed against shrinking, which the server maps
    (``mapped`` is True): its copy runs at memcpy speed. Where the server
    cannot open it (another pid namespace or user) it is a file under
    /dev/shm instead, which the server reads and writes with pread/pwrite.
    The first ``data_offset`` bytes hold the token (proof this client can
    read the memory) and the challenge the server answers with (proof it
    can write it, written before any transfer); ``size`` bytes of data
    follow them, named by shm_offset ``data_offset`` on. It lives while its
    OpenSharedMemory call stays open; close() ends the call (the server then
    discards the data) and frees the memory."""

    # The server's answers that mean "not a memfd it can open": try a file.
    _FALL_BACK = (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                  grpc.StatusCode.PERMISSION_DENIED)

    def __init__(self, stub: Any, metadata: Sequence[tuple[str, str]], size: int,
                 kind: str = "auto") -> None:
        """Lend a region of ``size`` data bytes over ``stub`` (a blocking
        one; None: not yet, the asyncio client lends it with
        ``lend_async``)."""
        if kind not in ("auto", "memfd", "file"):
            raise ValueError(f"kind must be 'auto', 'memfd' or 'file', not {kind!r}")
        self.size = size  # data bytes, after the header
        self.kind = kind
        self.data_offset = SHM_HEADER_BYTES
        self.path: Optional[str] = None
        self.mapped = False
        self._fd = -1
        self._call: Any = None
        self.map: Optional[mmap.mmap] = None
        if stub is None:
            return
        steps = self._lending()
        answer: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                request = steps.throw(error) if error is not None else steps.send(answer)
            except StopIteration:
                return
            error = answer = None
            call = stub.OpenSharedMemory(request, metadata=metadata)
            try:
                answer = (call, next(call))
            except BaseException as e:
                call.cancel()
                error = e

    async def lend_async(self, stub: Any, metadata: Sequence[tuple[str, str]]) -> None:
        """Lend the region over an asyncio stub (``stub=None`` at
        construction)."""
        import grpc.aio
        steps = self._lending()
        answer: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                request = steps.throw(error) if error is not None else steps.send(answer)
            except StopIteration:
                return
            error = answer = None
            call = stub.OpenSharedMemory(request, metadata=metadata)
            try:
                event = await call.read()
                if event is grpc.aio.EOF:
                    raise RuntimeError("OpenSharedMemory ended without an answer")
                answer = (call, event)
            except BaseException as e:
                call.cancel()
                error = e

    def _lending(self) -> Generator[pb.OpenSharedMemoryRequest, Any, None]:
        """The lending, without I/O: yields the OpenSharedMemory request and
        receives (the call, its first event), or has its error thrown in;
        tries a memfd, then a /dev/shm file (see ``kind``)."""
        if self.kind != "file" and hasattr(os, "memfd_create"):
            try:
                yield from self._lend(memfd=True)
                return
            except grpc.RpcError as e:
                self.close()
                if self.kind == "memfd" or e.code() not in self._FALL_BACK:
                    raise
        elif self.kind == "memfd":
            raise OSError("memfd_create is not available on this platform")
        yield from self._lend(memfd=False)

    def _lend(self, memfd: bool) -> Generator[pb.OpenSharedMemoryRequest, Any, None]:
        total = self.data_offset + self.size
        request = pb.OpenSharedMemoryRequest(size=total)
        if memfd:
            import fcntl
            fd = os.memfd_create("tensorcast", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            self._fd = fd  # open until the server has opened it through /proc
            request.memfd_pid = os.getpid()
            request.memfd_fd = fd
        else:
            name = "tensorcast-" + secrets.token_hex(12)
            self.path = os.path.join(_SHM_DIR, name)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            request.name = name
        try:
            os.ftruncate(fd, total)
            if memfd:
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                            fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            self.map = mmap.mmap(fd, total)
        except BaseException:
            self.close()
            raise
        finally:
            if not memfd:
                os.close(fd)
        # Fault the pages in now, not inside the first transfer.
        if hasattr(self.map, "madvise") and hasattr(mmap, "MADV_POPULATE_WRITE"):
            try:
                self.map.madvise(mmap.MADV_POPULATE_WRITE)
            except OSError:
                pass
        token = secrets.token_bytes(32)
        self.map[:len(token)] = token
        request.token = token
        try:
            self._call, event = yield request
        except BaseException:
            self.close()
            raise
        self.region = event.region
        self.mapped = event.mapped
        # A server older than the header answers 0 and takes any offset.
        if event.data_offset > self.data_offset:
            self.close()
            raise RuntimeError(
                f"the server reserves {event.data_offset} bytes of each shared-memory "
                f"region; this client leaves {self.data_offset}")
        # The challenge, before any transfer: proof this client can write the
        # memory it named (a server older than it sends none).
        challenge = event.challenge
        if len(challenge) > _SHM_MAX_CHALLENGE_BYTES:
            self.close()
            raise RuntimeError(
                f"the server's shared-memory challenge has {len(challenge)} bytes; "
                f"this client takes at most {_SHM_MAX_CHALLENGE_BYTES}")
        self.map[SHM_CHALLENGE_OFFSET:SHM_CHALLENGE_OFFSET + len(challenge)] = challenge
        if self._fd >= 0:
            # The server has its own descriptor now; the map keeps its own.
            os.close(self._fd)
            self._fd = -1

    def data(self, n: int) -> memoryview:
        """The first ``n`` data bytes, as a view into the map (let it go
        before close())."""
        assert self.map is not None, "the region is closed"
        return memoryview(self.map)[self.data_offset:self.data_offset + n]

    def close(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()
        if self.map is not None and not self.map.closed:
            try:
                self.map.close()
            except BufferError:
                # Arrays made in it (Client.shared_empty) are alive: they
                # keep the mapping, which goes with the last of them.
                self.map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None
