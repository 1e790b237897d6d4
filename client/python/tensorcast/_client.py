"""The blocking client: ``Client`` (a gRPC channel to one server) and
``RemoteTensor`` (a proxy for one server tensor).

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
import os
import queue
import random
import threading
import time
import weakref
from typing import Any, Iterator, NamedTuple, Optional, Sequence

import grpc
import grpc.experimental
import numpy as np

from tensorcast import _cluster, _core, _default, _dtypes, _fastpath
from tensorcast._core import Meta, Progress, meta_from_info
from tensorcast._dtypes import DTypeLike, dtype
from tensorcast._errors import (
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
    from_rpc_error,
)
from tensorcast._proxy import Op, Pending, Plan, TensorBase, plan_materialize
from tensorcast.v1 import tensor_service_pb2 as pb
from tensorcast.v1 import tensor_service_pb2_grpc as pb_grpc

DEFAULT_TARGET = "127.0.0.1:50051"
_UNARY = object()  # "use the client's unary timeout"


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


class _Conn(NamedTuple):
    """One server's channel and the calls made on it."""
    channel: Any
    stub: Any
    put_call: Any
    fetch_call: Any
    native: Any


class Client:
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
    """

    def __init__(self, target: Any = None, token: Optional[str] = None, *,
                 timeout: float = 30.0, stream_timeout: Optional[float] = None,
                 connect_timeout: float = 5.0, chunk_bytes: int = 4 << 20,
                 put_chunk_bytes: int = _core.DEFAULT_PUT_CHUNK_BYTES,
                 tls: bool = False, secure: bool = False, root_certificates: Pem = None,
                 certificate_chain: Pem = None, private_key: Pem = None,
                 options: Optional[Sequence[tuple[str, Any]]] = None,
                 native: Optional[bool] = None,
                 shared_memory: Any = False) -> None:
        self._seeds = _cluster.split_targets(target or default_target())
        if not self._seeds:
            raise ValueError("no server address given")
        self.target = ",".join(self._seeds)
        if shared_memory not in (False, True, "auto"):
            raise ValueError('shared_memory is False, True or "auto"')
        if shared_memory is True and not _fastpath.is_local(self.target):
            raise ValueError(f"shared memory needs a server on this host, not {self.target}")
        self._shm_mode = shared_memory if _fastpath.is_local(self.target) else False
        self._shm: Optional[_fastpath.SharedMemory] = None
        self._shm_lock = threading.Lock()
        self.timeout = timeout
        self.stream_timeout = stream_timeout
        self.chunk_bytes = int(chunk_bytes)
        self.put_chunk_bytes = max(1, min(int(put_chunk_bytes), _core.MAX_PUT_CHUNK_BYTES))
        self._metadata = auth_metadata(token)
        # Fetch streams are consumed on the calling thread, so grpcio need not
        # start a thread per call: small fetches measured 250-300 us p50
        # without this, ~190 us with it (and a much lower p99).
        opts = channel_options([(grpc.experimental.ChannelOptions.SingleThreadedUnaryStream, 1),
                                *(options or [])])
        creds = channel_credentials(tls or secure, root_certificates, certificate_chain,
                                    private_key)
        self.tls = creds is not None
        self._creds, self._opts, self._native_mode = creds, opts, native
        if creds is not None:
            self._channel = grpc.secure_channel(self._seeds[0], creds, options=opts)
        else:
            self._channel = grpc.insecure_channel(self._seeds[0], options=opts)
        self._stub = pb_grpc.TensorServiceStub(self._channel)
        self._put_call, self._fetch_call = _core.bulk_calls(self._channel)
        self._native = _fastpath.open_call(self._seeds[0], native, tls=self.tls,
                                           metadata=self._metadata)
        # Cluster (see _cluster.py): one connection per member address.
        self._seed_conn = _Conn(self._channel, self._stub, self._put_call,
                                self._fetch_call, self._native)
        self._conns: dict[str, _Conn] = {self._seeds[0]: self._seed_conn}
        self._members = _cluster.MemberTable()
        self._clustered: Optional[bool] = None  # None: not known yet
        self._first_node = ""
        self._last_refresh = 0.0
        self._refresh_due = True
        self._cluster_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._closed = False
        # Ownership: handles owned by live proxies; handles of collected
        # proxies go through the queue to the reaper thread.
        self._owned: set[str] = set()
        self._owned_lock = threading.Lock()
        self._released: "queue.SimpleQueue[Optional[str]]" = queue.SimpleQueue()
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
                raise UnavailableError(
                    f"could not connect to the tensorcast server at {self.target} "
                    f"within {connect_timeout:g} s: is it running? (start it "
                    f"with `make run` or build/bin/tensorcast-server){why}") from None
        self._refresh()
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
            self._flush(timeout=timeout)
            with self._owned_lock:
                left = sorted(self._owned)
                self._owned.clear()
            if left:
                self._delete_quietly(left, timeout=timeout)
        finally:
            self._closed = True
            self._released.put(None)  # stops the reaper
            with self._shm_lock:
                if self._shm is not None:
                    self._shm.close()
                    self._shm = None
            for conn in self._conns.values():
                conn.channel.close()
            _default.forget(self)

    # -- RPC plumbing --------------------------------------------------------

    def _call(self, method: Any, request: Any, timeout: Any = _UNARY) -> Any:
        """Call ``method``; ``timeout`` defaults to the unary timeout (None =
        no deadline)."""
        if self._closed:
            raise UnavailableError(f"the client for {self.target} is closed")
        if timeout is _UNARY:
            timeout = self.timeout
        try:
            return method(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.target) from None

    # -- cluster routing (docs/cluster.md#clients) -----------------------------

    def _conn_for(self, address: str) -> "_Conn":
        conn = self._conns.get(address)
        if conn is None:
            if self._creds is not None:
                channel = grpc.secure_channel(address, self._creds, options=self._opts)
            else:
                channel = grpc.insecure_channel(address, options=self._opts)
            put_call, fetch_call = _core.bulk_calls(channel)
            native = _fastpath.open_call(address, self._native_mode, tls=self.tls,
                                         metadata=self._metadata)
            conn = _Conn(channel, pb_grpc.TensorServiceStub(channel), put_call,
                         fetch_call, native)
            self._conns[address] = conn
        return conn

    def _refresh(self, force: bool = False) -> None:
        """Ask a member (or a seed) for the member list when it is due."""
        now = time.monotonic()
        with self._cluster_lock:
            if self._clustered is False:
                return
            if not (force or self._refresh_due or self._clustered is None
                    or now - self._last_refresh >= _cluster.REFRESH_S):
                return
            if not self._refresh_lock.acquire(blocking=self._clustered is None):
                return  # another thread refreshes; go on with this table
            healthy = self._members.healthy()
            first = [self._members.members[n].address for n in healthy
                     if n == self._first_node]
            addresses = list(dict.fromkeys(
                first + [self._members.members[n].address for n in healthy]
                + self._seeds))
            stubs = [(a, self._conn_for(a).stub) for a in addresses]
        try:
            for _address, stub in stubs:
                try:
                    resp = stub.Cluster(pb.ClusterRequest(), metadata=self._metadata,
                                        timeout=_cluster.REFRESH_DEADLINE_S)
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.UNIMPLEMENTED and self._clustered is None:
                        self._clustered = False  # a server from before clusters
                        return
                    continue
                with self._cluster_lock:
                    self._last_refresh, self._refresh_due = time.monotonic(), False
                    if not self._members.update(resp):
                        if self._clustered is None:
                            self._clustered = False
                        return
                    self._clustered = True
                    self._first_node = self._first_node or resp.node_id
                    if self._shm_mode:
                        self._shm_mode = False  # shared memory: one server only
                return
            with self._cluster_lock:
                self._last_refresh = time.monotonic()
        finally:
            self._refresh_lock.release()

    def _route(self, node: str) -> "tuple[_Conn, str, str]":
        with self._cluster_lock:
            if not self._clustered:
                return self._seed_conn, "", ""
            m = self._members.route(node)
            return self._conn_for(m.address), node, m.address

    def _route_ref(self, ref: str) -> "tuple[_Conn, str, str]":
        """The connection for a call on ``ref``: the node its handle names;
        any healthy node for a name."""
        self._refresh()
        node = _cluster.handle_node(ref)
        with self._cluster_lock:
            if not self._clustered:
                return self._seed_conn, "", ""
            if not node:
                node = self._members.any_healthy(self._first_node)
            elif node not in self._members.members:
                self._refresh_due = True  # a node this client has not seen yet
        self._refresh()
        return self._route(node)

    def _route_new(self, device: Any, nbytes: int, node: Optional[str]) -> "tuple[_Conn, str, str]":
        self._refresh()
        with self._cluster_lock:
            if not self._clustered:
                if node:
                    raise InvalidArgumentError(
                        f"node {node!r} was asked for, but the server is not a cluster")
                return self._seed_conn, "", ""
            chosen = node or self._members.place(device, nbytes)
        return self._route(chosen)

    def _failed(self, node: str, address: str, error: grpc.RpcError) -> BaseException:
        """A call's error; a node's own UNAVAILABLE marks it down and names it."""
        code, details = error.code(), error.details() or ""
        if node and _cluster.is_node_failure(code, details):
            with self._cluster_lock:
                self._members.mark_down(node, details)
                self._refresh_due = True
            return _cluster.node_unavailable(node, address, details)
        return from_rpc_error(error, self.target)

    def _rcall(self, ref: str, name: str, request: Any) -> Any:
        """A unary call on ``ref``, sent to the node that holds it."""
        conn, node, address = self._route_ref(ref)
        if self._closed:
            raise UnavailableError(f"the client for {self.target} is closed")
        try:
            return getattr(conn.stub, name)(request, timeout=self.timeout,
                                            metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._failed(node, address, e) from None

    def cluster(self) -> dict[str, Any]:
        """The cluster's members as a node knows them: ``{"node_id": ...,
        "members": [{"node_id", "address", "healthy", "error", "self",
        "devices": {device: free_bytes}}]}``; a plain server lists itself
        with an empty node id."""
        conn, node, address = self._route_ref("")
        try:
            resp = conn.stub.Cluster(pb.ClusterRequest(), timeout=self.timeout,
                                     metadata=self._metadata)
        except grpc.RpcError as e:
            raise self._failed(node, address, e) from None
        return {"node_id": resp.node_id, "members": [
            {"node_id": m.node_id, "address": m.address, "healthy": m.healthy,
             "error": m.error, "self": m.self,
             "devices": {d.device: int(d.free_bytes) for d in m.devices}}
            for m in resp.members]}

    def nodes(self) -> list[str]:
        """The healthy members' node ids after a refresh ([] for a plain
        server)."""
        self._refresh(force=True)
        with self._cluster_lock:
            return self._members.healthy() if self._clustered else []

    def _wrap(self, meta: Meta, *, owned: bool) -> "RemoteTensor":
        t = RemoteTensor(self, meta)
        if owned:
            self._own(t)
        return t

    def _own(self, t: "RemoteTensor") -> None:
        handle = t._meta.handle
        assert handle is not None
        with self._owned_lock:
            self._owned.add(handle)
        f = weakref.finalize(t, self._released.put, handle)
        f.atexit = False  # at exit, close() deletes what is left
        t._finalizer = f
        self._ensure_reaper()

    def _disown(self, handle: str) -> bool:
        with self._owned_lock:
            if handle in self._owned:
                self._owned.discard(handle)
                return True
            return False

    def _ensure_reaper(self) -> None:
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
            batch = [first]
            while True:
                try:
                    batch.append(self._released.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            handles = [h for h in batch if h is not None]
            if handles:
                with self._inflight_cv:
                    self._inflight += 1
                try:
                    self._delete_collected(handles)
                finally:
                    with self._inflight_cv:
                        self._inflight -= 1
                        self._inflight_cv.notify_all()
            if stop or self._closed:
                return

    def _delete_collected(self, handles: list[str]) -> None:
        owned = [h for h in handles if self._disown(h)]
        if owned and not self._closed:
            self._delete_quietly(owned)

    def _delete_quietly(self, handles: list[str], timeout: Optional[float] = None) -> None:
        """Delete, ignoring handles already gone (expired, deleted by name);
        never raises (used by finalizers, close and cleanup paths)."""
        if not handles:
            return
        if len(handles) > _core.MAX_DELETE_REFS:  # the server's cap per call
            for at in range(0, len(handles), _core.MAX_DELETE_REFS):
                self._delete_quietly(handles[at:at + _core.MAX_DELETE_REFS], timeout)
            return
        nodes = {_cluster.handle_node(h) for h in handles}
        if len(nodes) > 1:  # one Delete per node
            for n in nodes:
                self._delete_quietly([h for h in handles if _cluster.handle_node(h) == n],
                                     timeout)
            return
        try:
            stub = self._route_ref(handles[0])[0].stub
            stub.Delete(pb.DeleteRequest(refs=handles), metadata=self._metadata,
                              timeout=timeout or self.timeout)
            return
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND or len(handles) == 1:
                return
        except Exception:
            return
        for h in handles:  # Delete is all-or-nothing: retry one by one
            self._delete_quietly([h], timeout=timeout)

    def _flush(self, timeout: Optional[float] = None) -> None:
        """Delete every collected handle now (the reaper's work included)."""
        handles: list[str] = []
        while True:
            try:
                h = self._released.get_nowait()
            except queue.Empty:
                break
            if h is None:
                self._released.put(None)
                break
            handles.append(h)
        self._delete_collected(handles)
        with self._inflight_cv:
            self._inflight_cv.wait_for(lambda: self._inflight == 0, timeout=timeout or self.timeout)

    def _run(self, plan: Plan) -> Any:
        """Drive a sans-I/O plan (see _proxy): execute each RPC it yields."""
        result: Any = None
        error: Optional[BaseException] = None
        while True:
            try:
                op = plan.throw(error) if error is not None else plan.send(result)
            except StopIteration as stop:
                return stop.value
            error = None
            try:
                result = self._execute(op)
            except BaseException as e:  # handed to the plan, which cleans up
                error, result = e, None

    def _execute(self, op: Op) -> Any:
        kind = op[0]
        if kind == "to":
            _, ref, device, dt, copy = op
            return self._to_meta(ref, device, dt, copy)
        if kind == "detach":
            resp = self._rcall(op[1], "Detach", pb.DetachRequest(ref=op[1]))
            return meta_from_info(resp.tensor)
        if kind == "delete":
            self._delete_quietly(list(op[1]))
            return None
        if kind == "fetch":
            return self._fetch(op[1], progress=op[2], bits=op[3], nbytes=op[4],
                               out=op[5])
        raise ValueError(f"unknown op {kind}")  # pragma: no cover

    def _to_meta(self, ref: str, device: Optional[str], dt: Optional[dtype],
                 copy: bool) -> Meta:
        req = pb.ToRequest(ref=ref, device=device or "", copy=copy,
                           dtype=dt.proto if dt is not None else pb.DTYPE_UNSPECIFIED)
        return meta_from_info(self._rcall(ref, "To", req).tensor)

    @property
    def native(self) -> bool:
        """Whether Put and Fetch use the native extension."""
        return self._native is not None

    @property
    def shared_memory(self) -> bool:
        """Whether large fetches use shared memory (known after the first)."""
        return self._shm is not None

    def _region(self, nbytes: int) -> Optional[_fastpath.SharedMemory]:
        """The lent region, opened or grown to ``nbytes``; None when the
        server does not allow shared memory and the mode is "auto".
        Called under _shm_lock."""
        if not self._shm_mode:
            return None  # another thread found out the server refuses it
        if self._shm is not None and self._shm.size >= nbytes:
            return self._shm
        size = max(nbytes, 2 * self._shm.size if self._shm is not None else 0)
        if self._shm is not None:
            self._shm.close()
            self._shm = None
        try:
            self._shm = _fastpath.SharedMemory(self._stub, self._metadata, size)
        except grpc.RpcError as e:
            if self._shm_mode == "auto" and e.code() in (
                    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
                    grpc.StatusCode.PERMISSION_DENIED):
                self._shm_mode = False  # not this server: the socket it is
                return None
            if self._shm_mode == "auto" and e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return None  # at the server's region limits: the socket, this time
            raise from_rpc_error(e, self.target) from None
        return self._shm

    def _fetch_shared(self, req: pb.FetchRequest, bits: bool,
                      region: _fastpath.SharedMemory,
                      out: Optional[np.ndarray] = None) -> np.ndarray:
        req.shm_region = region.region
        req.shm_offset = region.data_offset
        call = self._fetch_call(req, timeout=self.stream_timeout, metadata=self._metadata)
        try:
            messages = list(call)
        except grpc.RpcError as e:
            raise from_rpc_error(e, self.target) from None
        if not messages or messages[0].header is None:
            raise RuntimeError("the Fetch stream did not start with its header")
        sink = _core.FetchSink(messages[0].header, bits=bits, out=out)
        n = sink.expected
        sink.writable()[:n] = region.data(n)
        sink.received = n
        return sink.result()

    def _fetch(self, req: pb.FetchRequest, *, progress: bool = False,
               bits: bool = False, nbytes: Optional[int] = None,
               out: Optional[np.ndarray] = None) -> np.ndarray:
        if req.chunk_bytes == 0 and self.chunk_bytes:
            req.chunk_bytes = self.chunk_bytes
        if self._closed:
            raise UnavailableError(f"the client for {self.target} is closed")
        conn, node, address = self._route_ref(req.ref)
        try:
            return self._fetch_on(conn, req, progress=progress, bits=bits, nbytes=nbytes,
                                  out=out)
        except UnavailableError as e:
            if node and _cluster.is_node_failure("UNAVAILABLE", str(e)):
                with self._cluster_lock:
                    self._members.mark_down(node, str(e))
                    self._refresh_due = True
                raise _cluster.node_unavailable(node, address, str(e)) from None
            raise

    def _fetch_on(self, conn: "_Conn", req: pb.FetchRequest, *, progress: bool,
                  bits: bool, nbytes: Optional[int],
                  out: Optional[np.ndarray] = None) -> np.ndarray:
        if (self._shm_mode and not progress and nbytes is not None
                and nbytes >= _fastpath.SHM_MIN_BYTES):
            with self._shm_lock:  # one region: one shared-memory fetch at a time
                region = self._region(nbytes)
                if region is not None:
                    return self._fetch_shared(req, bits, region, out)
        if conn.native is not None and not progress:
            return conn.native.fetch(req, bits, self.stream_timeout, out)
        call = conn.fetch_call(req, timeout=self.stream_timeout, metadata=self._metadata)
        bar: Optional[Progress] = None
        try:
            it = iter(call)
            first = next(it)
            header = first.header
            if header is None:
                raise RuntimeError("the Fetch stream did not start with its header")
            bar = Progress(progress, int(header.total_bytes), "fetch")
            sink = _core.FetchSink(header, progress=bar if bar else None, bits=bits,
                                   out=out)
            sink.write(first.data)
            del first
            for msg in it:
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

    def _put(self, array: np.ndarray, *, device: Any, requires_grad: bool,
             name: Optional[str], ttl: Optional[float], progress: bool,
             wire_dtype: Optional[dtype] = None, node: Optional[str] = None) -> "RemoteTensor":
        header = _core.put_header(array, device=device, requires_grad=requires_grad,
                                  name=name, ttl=ttl, wire_dtype=wire_dtype)
        conn, at, address = self._route_new(header.header.device,
                                            int(header.header.total_bytes), node)
        try:
            return self._put_on(conn, array, header, progress)
        except UnavailableError as e:
            if at and _cluster.is_node_failure("UNAVAILABLE", str(e)):
                with self._cluster_lock:
                    self._members.mark_down(at, str(e))
                    self._refresh_due = True
                raise _cluster.node_unavailable(at, address, str(e)) from None
            raise

    def _put_on(self, conn: _Conn, array: np.ndarray, header: Any,
                progress: bool) -> "RemoteTensor":
        if self._shm_mode and not progress:
            flat = _core.wire_bytes(array)
            if flat is not None and flat.nbytes >= _fastpath.SHM_MIN_BYTES:
                if self._closed:
                    raise UnavailableError(f"the client for {self.target} is closed")
                with self._shm_lock:  # one region: one transfer at a time
                    region = self._region(flat.nbytes)
                    if region is not None:
                        region.data(flat.nbytes)[:] = flat
                        header.header.shm_region = region.region
                        header.header.shm_offset = region.data_offset
                        header.header.shm_bytes = flat.nbytes
                        resp = self._call(self._put_call, iter([header]),
                                          timeout=self.stream_timeout)
                        return self._wrap(meta_from_info(resp.tensor), owned=True)
        flat = _core.wire_bytes(array) if conn.native is not None and not progress else None
        if flat is not None and conn.native is not None:
            if self._closed:
                raise UnavailableError(f"the client for {self.target} is closed")

            resp = conn.native.put(header, flat, self.put_chunk_bytes, self.stream_timeout)
            return self._wrap(meta_from_info(resp.tensor), owned=True)
        bar = Progress(progress, int(header.header.total_bytes), "put")
        chunk = self.put_chunk_bytes

        def requests() -> Iterator[Any]:
            yield header
            for message, n in _core.iter_put_messages(array, chunk):
                yield message
                bar.update(n)

        try:
            resp = self._call(conn.put_call, requests(), timeout=self.stream_timeout)
        finally:
            bar.close()
        return self._wrap(meta_from_info(resp.tensor), owned=True)

    def _create_on(self, req: pb.CreateRequest, node: Optional[str] = None) -> "RemoteTensor":
        conn, at, address = self._route_new(req.device, 0, node)
        try:
            resp = self._call(conn.stub.Create, req)
        except UnavailableError as e:
            if at and _cluster.is_node_failure("UNAVAILABLE", str(e)):
                with self._cluster_lock:
                    self._members.mark_down(at, str(e))
                    self._refresh_due = True
                raise _cluster.node_unavailable(at, address, str(e)) from None
            raise
        return self._wrap(meta_from_info(resp.tensor), owned=True)

    def _create(self, **kwargs: Any) -> "RemoteTensor":
        node = kwargs.pop("node", None)
        return self._create_on(_core.create_request(**kwargs), node)

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
        dt = _dtypes.as_dtype(dtype) if dtype is not None else None
        if isinstance(data, TensorBase):
            if not isinstance(data, RemoteTensor):
                raise TypeError("tensor() of an asyncio RemoteTensor: use tensorcast.aio")
            return data.to(device=device, dtype=dt, copy=True)
        src = _core.tensor_source(data, dt, device=device, requires_grad=requires_grad,
                                  name=name, ttl=ttl)
        if src.request is not None:
            return self._create_on(src.request, node)
        assert src.array is not None
        return self._put(src.array, device=device, requires_grad=requires_grad, name=name,
                         ttl=ttl, progress=progress, wire_dtype=src.wire_dtype, node=node)

    def from_numpy(self, array: np.ndarray, device: Any = "cpu", *,
                   requires_grad: bool = False, name: Optional[str] = None,
                   ttl: Optional[float] = None, progress: bool = False,
                   node: Optional[str] = None) -> "RemoteTensor":
        """Upload a NumPy array (any strides, order or byte order; 0-d and
        empty too) as a new server tensor of the same dtype and shape;
        ``node`` pins the cluster node."""
        a = _core.as_upload_array(array)
        return self._put(a, device=device, requires_grad=requires_grad, name=name,
                         ttl=ttl, progress=progress, node=node)

    def from_torch(self, x: Any, device: Any = None, *, name: Optional[str] = None,
                   ttl: Optional[float] = None, progress: bool = False) -> "RemoteTensor":
        """Upload a torch tensor: same dtype (bfloat16 included), shape and
        requires_grad; on ``device`` (default: the tensor's own device)."""
        array, wire = _core.torch_to_numpy(x)
        return self._put(array, device=str(x.device) if device is None else device,
                         requires_grad=bool(x.requires_grad), name=name, ttl=ttl,
                         progress=progress, wire_dtype=wire)

    def zeros(self, *size: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
              requires_grad: bool = False, name: Optional[str] = None,
              ttl: Optional[float] = None) -> "RemoteTensor":
        """A tensor of zeros (default float32), as ``torch.zeros``."""
        return self._create(shape=_core.size_args(size), dtype_=_float_default(dtype),
                            device=device, requires_grad=requires_grad, name=name,
                            ttl=ttl, zeros=True)

    def ones(self, *size: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
             requires_grad: bool = False, name: Optional[str] = None,
             ttl: Optional[float] = None) -> "RemoteTensor":
        """A tensor of ones (default float32), as ``torch.ones``."""
        return self._create(shape=_core.size_args(size), dtype_=_float_default(dtype),
                            device=device, requires_grad=requires_grad, name=name,
                            ttl=ttl, ones=True)

    def full(self, size: Sequence[int], fill_value: Any, *,
             dtype: Optional[DTypeLike] = None, device: Any = "cpu",
             requires_grad: bool = False, name: Optional[str] = None,
             ttl: Optional[float] = None) -> "RemoteTensor":
        """A tensor filled with ``fill_value``; the dtype is inferred from it
        (bool, int64, float32) unless given, as ``torch.full``."""
        dt = _dtypes.as_dtype(dtype) if dtype is not None else _core.fill_dtype(fill_value)
        if isinstance(fill_value, complex):
            raise ValueError("full() takes a real fill value (complex fills are "
                             "not supported by the server's Create)")
        return self._create(shape=_core.size_args((size,)), dtype_=dt, device=device,
                            requires_grad=requires_grad, name=name, ttl=ttl,
                            full=float(fill_value))

    def arange(self, start: float, end: Optional[float] = None, step: float = 1, *,
               dtype: Optional[DTypeLike] = None, device: Any = "cpu",
               requires_grad: bool = False, name: Optional[str] = None,
               ttl: Optional[float] = None) -> "RemoteTensor":
        """``[start, end)`` by ``step``, as ``torch.arange`` (int64 when all
        arguments are ints, else float32)."""
        dt = _dtypes.as_dtype(dtype) if dtype is not None else None
        numel, dt, s, st = _core.arange_args(start, end, step, dt)
        return self._create(shape=(numel,), dtype_=dt, device=device,
                            requires_grad=requires_grad, name=name, ttl=ttl,
                            arange=(s, st))

    def eye(self, n: int, m: Optional[int] = None, *, dtype: Optional[DTypeLike] = None,
            device: Any = "cpu", requires_grad: bool = False, name: Optional[str] = None,
            ttl: Optional[float] = None) -> "RemoteTensor":
        """An ``n x m`` identity matrix (default float32), as ``torch.eye``."""
        return self._create(shape=(n, n if m is None else m), dtype_=_float_default(dtype),
                            device=device, requires_grad=requires_grad, name=name,
                            ttl=ttl, eye=True)

    def rand(self, *size: Any, seed: Optional[int] = None, dtype: Optional[DTypeLike] = None,
             device: Any = "cpu", requires_grad: bool = False, name: Optional[str] = None,
             ttl: Optional[float] = None) -> "RemoteTensor":
        """Uniform values in [0, 1) (default float32). The same ``seed``
        gives the same values on every device; None picks one at random."""
        if seed is None:
            seed = random.getrandbits(63)
        return self._create(shape=_core.size_args(size), dtype_=_float_default(dtype),
                            device=device, requires_grad=requires_grad, name=name,
                            ttl=ttl, rand_seed=seed)

    # -- finding and managing -------------------------------------------------

    def get(self, ref: str) -> "RemoteTensor":
        """A proxy for an existing tensor (by handle or name) that does not
        own it: dropping it leaves the tensor on the server."""
        resp = self._rcall(ref, "Info", pb.InfoRequest(ref=ref))
        return self._wrap(meta_from_info(resp.tensor), owned=False)

    def fetch_into(self, ref: Any, out: Any, *, force: bool = False) -> np.ndarray:
        """Fetch the tensor ``ref`` (handle, name or RemoteTensor) into
        ``out``, an array the caller owns, and return it: as
        ``get(ref).numpy(force=force, out=out)`` (its checks and errors)."""
        t = ref if isinstance(ref, RemoteTensor) else self.get(ref)
        return t.numpy(force=force, out=out)

    def list(self, name_prefix: str = "") -> list["RemoteTensor"]:
        """Every tensor on the server (all pages), as non-owning proxies; in
        a cluster, every healthy node's, node after node."""
        self._flush()
        out: list[RemoteTensor] = []
        stubs = [self._route(n)[0].stub for n in self.nodes()] or [self._stub]
        for stub in stubs:
            token = ""
            while True:
                resp = self._call(stub.List, pb.ListRequest(
                    page_size=1000, page_token=token, name_prefix=name_prefix))
                out.extend(self._wrap(meta_from_info(i), owned=False) for i in resp.tensors)
                token = resp.next_page_token
                if not token:
                    break
        return out

    def delete(self, *refs: Any) -> int:
        """Delete tensors by handle, name or proxy (all or nothing; in a
        cluster, one Delete per node, all or nothing per node); returns how
        many were deleted."""
        names: list[str] = []
        for r in refs:
            if isinstance(r, RemoteTensor):
                names.append(r._release_for_delete())
            else:
                names.append(str(r))
                self._disown(str(r))
        names = [n for n in names if n]
        if not names:
            return 0
        groups: dict[str, list[str]] = {}
        for n in names:
            groups.setdefault(_cluster.handle_node(n), []).append(n)
        return sum(int(self._rcall(group[0], "Delete", pb.DeleteRequest(refs=group)).deleted)
                   for group in groups.values())

    def copy(self, ref: Any, node: str, *, device: Any = None,
             dtype: Optional[DTypeLike] = None, name: Optional[str] = None,
             ttl: Optional[float] = None) -> "RemoteTensor":
        """Copy a tensor (handle, name or proxy) to cluster node ``node``,
        server to server; the new tensor is owned by the returned proxy.
        Same as ``t.copy_to(node, ...)``."""
        r = ref.handle if isinstance(ref, RemoteTensor) else str(ref)
        dt = _dtypes.as_dtype(dtype) if dtype is not None else None
        req = pb.CopyRequest(ref=r, node=node, name=name or "",
                             ttl_seconds=int(ttl or 0),
                             device=_core.normalize_device(device) if device else "",
                             dtype=dt.proto if dt is not None else pb.DTYPE_UNSPECIFIED)
        return self._wrap(meta_from_info(self._rcall(r, "Copy", req).tensor), owned=True)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Pool figures per device, named as PyTorch's memory stats:
        ``stats()["cpu"]["allocated_bytes"]``. Tensors dropped before the
        call are deleted first, so the figures reflect them."""
        self._flush()
        resp = self._rcall("", "Stats", pb.StatsRequest())
        return _stats_dict(resp)

    def server_info(self) -> dict[str, Any]:
        """The server's version, CUDA availability and totals."""
        resp = self._rcall("", "Stats", pb.StatsRequest())
        return _server_info(resp)

    def cuda_is_available(self) -> bool:
        """Whether the server has CUDA (as ``torch.cuda.is_available()``)."""
        return bool(self.server_info()["cuda_available"])

    def empty_cache(self, device: Optional[str] = None) -> int:
        """Give cached pool blocks back to the system (one device, or all);
        returns the bytes released."""
        self._flush()
        req = pb.EmptyCacheRequest(device=_core.normalize_device(device) if device else "")
        return int(self._rcall("", "EmptyCache", req).released_bytes)


_HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def connect_failure(channel: grpc.Channel, tls: bool) -> str:
    """Why a channel that never became ready failed, as the end of a
    message: one health check (no token needed, no wait for the connection)
    gives gRPC's reason, and a hint when it looks like TLS on one side
    only."""
    check = channel.unary_unary(_HEALTH_CHECK, request_serializer=bytes,
                                response_deserializer=bytes)
    try:
        check(b"", timeout=1.0)
        return ""
    except grpc.RpcError as e:
        return _failure_text(e.details() or "", tls)
    except Exception:  # never mask the UnavailableError being raised
        return ""


def _failure_text(details: str, tls: bool) -> str:
    hint = ""
    if "refused" not in details.lower():
        hint = ("; if the server runs with --tls-cert, connect with "
                "root_certificates=... (or tls=True)") if not tls else (
                "; check that root_certificates holds the CA that signed the "
                "server's certificate, and that the server runs with --tls-cert")
    return f" [{details}{hint}]" if details else ""


def _close_at_exit(ref: "weakref.ReferenceType[Client]") -> None:
    client = ref()
    if client is None:
        return
    try:
        client.close(timeout=2.0)
    except BaseException:  # never raise at interpreter shutdown
        pass


def _float_default(dt: Optional[DTypeLike]) -> dtype:
    return _dtypes.as_dtype(dt) if dt is not None else _dtypes.float32


_STATS_FIELDS = ("allocated_bytes", "reserved_bytes", "peak_allocated_bytes",
                 "peak_reserved_bytes", "limit_bytes", "alloc_count", "free_count",
                 "cache_hits", "cache_misses", "segment_count", "tensors", "description")


def _stats_dict(resp: pb.StatsResponse) -> dict[str, dict[str, Any]]:
    return {d.device: {f: getattr(d, f) for f in _STATS_FIELDS} for d in resp.devices}


_TENANT_FIELDS = ("tenant", "bytes", "tensors", "active_streams", "quota_bytes",
                  "max_tensors", "max_streams")


def _tenant_dict(t: pb.TenantStats) -> dict[str, Any]:
    return {f: getattr(t, f) for f in _TENANT_FIELDS}


def _server_info(resp: pb.StatsResponse) -> dict[str, Any]:
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


def _require_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise ImportError("RemoteTensor.torch() needs PyTorch: `pip install torch`") from None
    return torch


class RemoteTensor(TensorBase):
    """A proxy for a tensor held by a tensorcast server (blocking API).

    It mirrors the ``torch.Tensor`` methods that move data to NumPy:
    ``.numpy(force=False)``, ``.detach()``, ``.cpu()``, ``.cuda()``,
    ``.to(device=..., dtype=...)``, ``.float()`` and the other casts,
    ``.tolist()``, ``.item()``, ``np.asarray(t)``. Detach, cpu and dtype
    casts are lazy: they are sent with the next Fetch (one stream, no extra
    server tensor); device moves are done at once.
    """

    def __init__(self, client: Client, meta: Meta, *, source: Optional[TensorBase] = None,
                 pending: Optional[Pending] = None) -> None:
        super().__init__(client, meta, source=source, pending=pending)
        self._init_extra()

    def _init_extra(self) -> None:
        self._lock = threading.Lock()

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
        with self._lock:
            if self._pending is None:
                return self
            source = self._source
            assert source is not None
            meta = self._client._run(plan_materialize(source._meta, self._pending))
            self._meta, self._pending = meta, None
            if meta.handle != source._meta.handle:
                self._source = None  # our own handle (shared storage is kept alive)
                self._client._own(self)
        return self

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
        _core.check_fetchable(self._meta.dtype)
        return self._client._run(self._fetch_plan(force=force, progress=progress,
                                                  out=out))

    def __array__(self, dtype: Any = None, copy: Optional[bool] = None) -> np.ndarray:
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def tolist(self) -> Any:
        """The values as (nested) Python numbers; works whatever requires_grad
        and device, as in PyTorch."""
        cast = self._scalar_cast()
        return self._client._run(self._fetch_plan(force=True, progress=False, cast=cast)).tolist()

    def item(self) -> Any:
        """The one value of a one-element tensor, as a Python number."""
        if self._meta.numel != 1:
            raise RuntimeError(f"a Tensor with {self._meta.numel} elements cannot be "
                               "converted to Scalar")
        cast = self._scalar_cast()
        return self._client._run(self._fetch_plan(force=True, progress=False, cast=cast)).item()

    def torch(self, device: Any = None) -> Any:
        """A ``torch.Tensor`` with the same values, dtype (bfloat16 too) and
        requires_grad, on the CPU or ``device``. Needs PyTorch."""
        torch = _require_torch()
        array = self._client._run(self._fetch_plan(force=True, progress=False, bits=True))
        if self._meta.dtype is _dtypes.bfloat16:
            t = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(array)
        if device is not None:
            t = t.to(device)
        return t.requires_grad_(self._meta.requires_grad)

    # -- conversions ----------------------------------------------------------

    def to(self, *args: Any, **kwargs: Any) -> "RemoteTensor":
        """``.to(dtype)``, ``.to(device)``, ``.to(device, dtype)``,
        ``.to(other)``, ``.to(device=..., dtype=..., copy=False)``.

        Casts and moves to the CPU are lazy (sent with the Fetch); a move to
        a GPU, or ``copy=True``, runs on the server now (a server without
        CUDA fails here with FailedPreconditionError). Returns self when
        nothing changes, as PyTorch does.
        """
        device, dt, copy = _core.parse_to_args(args, kwargs)
        self._check_alive()
        if device is not None and device == self._meta.device:
            device = None
        if not copy and (device is None or device == "cpu"):
            return self._chain(cpu=device == "cpu", cast=dt)
        source, p = self._parts()
        if dt is not None:
            p = p.then_cast(source._meta.dtype, dt)
        meta = self._client._run(plan_materialize(source._meta, p, device=device, copy=copy))
        if meta.handle == source._meta.handle:
            return source
        return self._client._wrap(meta, owned=True)

    def cuda(self, device: Optional[Any] = None) -> "RemoteTensor":
        """Move to a GPU (``cuda:0`` by default) on the server, now."""
        target = "cuda" if device is None else _core.normalize_device(device)
        return self.to(device=target)

    def clone(self) -> "RemoteTensor":
        """A copy on the server (a new tensor)."""
        return self.to(copy=True)

    # -- ownership ------------------------------------------------------------

    def _release_for_delete(self) -> str:
        """Stop owning; return the handle to delete ("" when there is none of
        our own: a lazy proxy, or one already deleted)."""
        if self._deleted:
            return ""
        self._deleted = True
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._pending is not None or self._meta.handle is None:
            self._source = None
            return ""
        if self._source is not None:  # shares its source's handle
            self._source = None
            return ""
        self._client._disown(self._meta.handle)
        return self._meta.handle

    def copy_to(self, node: str, *, device: Any = None, dtype: Optional[DTypeLike] = None,
                name: Optional[str] = None, ttl: Optional[float] = None) -> "RemoteTensor":
        """A copy of this tensor on cluster node ``node`` (optionally on
        another device or cast), sent server to server: the bytes never
        pass through this client. The new tensor's handle names ``node``."""
        return self._client.copy(self, node, device=device, dtype=dtype, name=name, ttl=ttl)

    def delete(self) -> None:
        """Delete the server tensor now (whether or not this proxy owns it;
        a lazy proxy just drops its pending conversions). Further use of the
        proxy raises NotFoundError; deleting twice is a no-op."""
        handle = self._release_for_delete()
        if not handle:
            return
        try:
            self._client._rcall(handle, "Delete", pb.DeleteRequest(refs=[handle]))
        except NotFoundError:
            pass  # already gone (expired, or deleted by name)

    def __enter__(self) -> "RemoteTensor":
        return self

    def __exit__(self, *exc: Any) -> None:
        """Delete the tensor if this proxy owns it."""
        if self.owns_handle or self._pending is not None:
            self.delete()
