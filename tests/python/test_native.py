"""The native path's own promises; the rest of the suite runs on both paths
(the `client` fixture's parameter)."""

from __future__ import annotations

import os

import numpy as np
import pytest

import tensorcast as tc
from tensorcast import _fastpath

from conftest import native_built


def test_native_extension_is_built_where_required() -> None:
    # `make test` sets this: there the extension must have been built.
    if os.environ.get("TENSORCAST_REQUIRE_NATIVE") != "1":
        pytest.skip("TENSORCAST_REQUIRE_NATIVE is not set")
    assert native_built(), "tensorcast._native was not built"


def test_the_client_says_which_path_it_takes(server) -> None:
    with tc.connect(server.target, native=False, default=False) as c:
        assert not c.native
    if native_built():
        with tc.connect(server.target, native=True, default=False) as c:
            assert c.native
            a = np.arange(1000, dtype=np.int16).reshape(10, 100)
            t = c.from_numpy(a)
            np.testing.assert_array_equal(t.numpy(), a)
            np.testing.assert_array_equal(t.float().numpy(), a.astype(np.float32))
            with pytest.raises(tc.NotFoundError):
                c.get("no-such-tensor").numpy()


def test_native_has_no_tls_yet(server) -> None:
    with pytest.raises(ValueError, match="native"):
        tc.Client(server.target, native=True, secure=True, connect_timeout=0)


def test_paths_agree_on_odd_arrays(server) -> None:
    """Non-contiguous and big-endian arrays take the grpcio Put even on the
    native path; fetched back, both paths give the same arrays."""
    arrays = [np.arange(60, dtype=">f8").reshape(3, 4, 5),
              np.arange(60, dtype=np.float32).reshape(3, 4, 5).transpose(2, 0, 1),
              np.zeros((0, 3), dtype=np.complex64),
              np.array(7, dtype=np.uint8)]
    results = []
    for native in ([False, True] if native_built() else [False]):
        with tc.connect(server.target, native=native, default=False) as c:
            results.append([c.from_numpy(a).numpy() for a in arrays])
    for got in results:
        for a, r in zip(arrays, got):
            np.testing.assert_array_equal(r, a)
            assert r.shape == a.shape


@pytest.fixture()
def fake_fetch_server():
    """An in-process grpcio server whose Fetch answers with protobuf's own
    encoding of one FetchResponse -- data (field 1) before header (field 2),
    the order a re-encoding peer or proxy would produce."""
    import concurrent.futures

    import grpc

    from tensorcast.v1 import tensor_service_pb2 as pb

    payload = np.arange(6, dtype=np.float32).tobytes()

    def fetch(request: bytes, context: grpc.ServicerContext):
        header = pb.FetchHeader(format=pb.FORMAT_RAW, total_bytes=len(payload),
                                length=len(payload))
        header.tensor.dtype = pb.DTYPE_FLOAT32
        header.tensor.shape.extend([2, 3])
        yield pb.FetchResponse(header=header, data=payload).SerializeToString()

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler("tensorcast.v1.TensorService", {
        "Fetch": grpc.unary_stream_rpc_method_handler(fetch)})
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.mark.skipif(not native_built(), reason="tensorcast._native was not built")
def test_native_fetch_takes_fields_in_any_order(fake_fetch_server) -> None:
    from tensorcast import _fastpath, _native
    from tensorcast.v1 import tensor_service_pb2 as pb

    call = _fastpath.Call(_native.Channel(fake_fetch_server, 1 << 20),
                          fake_fetch_server, [])
    got = call.fetch(pb.FetchRequest(ref="x", format=pb.FORMAT_RAW), False, 10)
    np.testing.assert_array_equal(got, np.arange(6, dtype=np.float32).reshape(2, 3))


@pytest.mark.skipif(not native_built(), reason="tensorcast._native was not built")
def test_native_fetch_keeps_the_callers_exception(fake_fetch_server) -> None:
    from tensorcast import _native

    class Refused(Exception):
        pass

    def on_header(raw: bytes):
        raise Refused("no room")

    channel = _native.Channel(fake_fetch_server, 1 << 20)
    with pytest.raises(Refused, match="no room"):
        channel.fetch(request=b"", metadata=[], timeout=10.0, on_header=on_header)
    # Not a writable buffer: Python's own error, not a crash.
    with pytest.raises(TypeError, match="bytes-like"):
        channel.fetch(request=b"", metadata=[], timeout=10.0,
                      on_header=lambda raw: 42)
    with pytest.raises(BufferError, match="not writable"):
        channel.fetch(request=b"", metadata=[], timeout=10.0,
                      on_header=lambda raw: b"read-only")


def test_shared_memory_fetch(server) -> None:
    """Against the session's server (started with --shared-memory), large
    fetches go through /dev/shm and give the socket's arrays."""
    if os.environ.get("TENSORCAST_TEST_SERVER"):
        pytest.skip("an external server may not allow shared memory")
    a = np.random.default_rng(5).standard_normal((512, 1024)).astype(np.float32)  # 2 MiB
    memfds = _memfds()  # other clients' (the session's shm-path client)
    with tc.connect(server.target, native=False, shared_memory=True, default=False) as c:
        t = c.from_numpy(a)
        np.testing.assert_array_equal(t.numpy(), a)
        assert c.shared_memory
        np.testing.assert_array_equal(t.half().numpy(), a.astype(np.float16))
        big = np.arange(3 << 20, dtype=np.int32)  # 12 MiB: the region grows
        np.testing.assert_array_equal(c.from_numpy(big).numpy(), big)
        # The region's header holds the token and, at [64, 80), the server's
        # challenge, alone; transfers never touch it.
        assert c._shm.data_offset == 4096
        header = bytes(c._shm.map[:4096])
        assert header[:32] != bytes(32) and header[32:64] == bytes(32)
        assert header[64:80] != bytes(16) and header[80:] == bytes(4096 - 80)
        # Puts go through the region too; odd arrays take the socket.
        b = np.random.default_rng(6).integers(0, 255, 5 << 20, dtype=np.uint8)
        np.testing.assert_array_equal(c.from_numpy(b).numpy(), b)
        assert bytes(c._shm.map[:4096]) == header
        odd = np.arange(1 << 20, dtype=">f4").reshape(1024, 1024).T
        np.testing.assert_array_equal(c.from_numpy(odd).numpy(), odd)
        small = c.tensor([1.0, 2.0])  # under 1 MiB: the socket
        np.testing.assert_array_equal(small.numpy(), [1.0, 2.0])
        # A sealed memfd the server maps (open here once: the map's own
        # descriptor).
        assert c._shm.mapped and c._shm.path is None
        assert _memfds() == memfds + 1
        # The /dev/shm file kind, as a client in another pid namespace gets.
        f = _fastpath.SharedMemory(c._stub, c._metadata, 1 << 20, kind="file")
        try:
            assert not f.mapped and os.path.exists(f.path)
            path = f.path
        finally:
            f.close()
        assert not os.path.exists(path)  # close() removed the region's file
    assert _memfds() == memfds  # closing the client closed its memfd


def _memfds() -> int:
    """This process's open memfds made by the client."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:tensorcast")
        except OSError:
            pass
    return n


def test_shared_memory_needs_a_local_server() -> None:
    with pytest.raises(ValueError, match="this host"):
        tc.Client("10.1.2.3:50051", shared_memory=True, connect_timeout=0)
    with pytest.raises(ValueError, match="shared_memory"):
        tc.Client("127.0.0.1:50051", shared_memory="yes", connect_timeout=0)


def test_shared_memory_auto_falls_back_where_not_allowed(tmp_path) -> None:
    from conftest import running_server
    a = np.arange(1 << 19, dtype=np.float32)  # 2 MiB
    with running_server(tmp_path) as plain:
        with tc.connect(plain.target, shared_memory="auto", default=False) as c:
            np.testing.assert_array_equal(c.from_numpy(a).numpy(), a)
            assert not c.shared_memory
        with tc.connect(plain.target, shared_memory=True, default=False) as c:
            with pytest.raises(tc.FailedPreconditionError, match="--shared-memory"):
                c.from_numpy(a).numpy()
