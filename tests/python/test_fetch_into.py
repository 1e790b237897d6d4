"""A destination the caller owns: ``t.numpy(out=...)`` and
``client.fetch_into(ref, out)``, on every path (the ``client`` fixture:
grpcio, native, shared memory) and in the asyncio client, against the
session's real server; NumPy arrays are the reference."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import tensorcast as tc
import tensorcast.aio as tca

from conftest import native_built


def test_numpy_out_fills_and_returns_the_callers_array(client: tc.Client) -> None:
    rng = np.random.default_rng(3)
    # 4 MiB: large enough for the shared-memory path and several messages.
    a = rng.standard_normal((1024, 1024)).astype(np.float32)
    t = client.from_numpy(a)
    out = np.full_like(a, np.nan)
    got = t.numpy(out=out)
    assert got is out
    np.testing.assert_array_equal(out, a)
    # Again into the same memory, with a cast folded into the stream.
    out64 = np.zeros(a.shape, dtype=np.float64)
    assert t.double().numpy(out=out64) is out64
    np.testing.assert_array_equal(out64, a.astype(np.float64))
    # fetch_into by handle, by proxy, and into a bytearray of the bytes.
    out[...] = 0
    assert client.fetch_into(t.handle, out) is out
    np.testing.assert_array_equal(out, a)
    out[...] = 0
    client.fetch_into(t, out)
    np.testing.assert_array_equal(out, a)
    raw = bytearray(a.nbytes)
    client.fetch_into(t, raw)
    assert bytes(raw) == a.tobytes()


def test_numpy_out_of_empty_and_scalar_tensors(client: tc.Client) -> None:
    for a in (np.zeros((0, 3), dtype=np.int16), np.array(7, dtype=np.uint8)):
        out = np.empty_like(a)
        np.testing.assert_array_equal(client.from_numpy(a).numpy(out=out), a)


@pytest.mark.parametrize("out, error, text", [
    (np.zeros((8, 4), dtype=np.float64), TypeError, "dtype float64; the tensor is float32"),
    (np.zeros((4, 8), dtype=np.float32), ValueError,
     r"shape \(4, 8\); the tensor has shape \(8, 4\)"),
    (np.zeros((4, 8), dtype=np.float32).T, ValueError, "not C-contiguous"),
    (np.zeros((8, 4), dtype=np.float32).view(), None, None),
    ("not an array", TypeError, "NumPy array or a writable buffer, not str"),
    (bytes(128), ValueError, "read-only"),
    (bytearray(100), ValueError, "out has 100 bytes; the tensor"),
])
def test_numpy_out_is_checked_before_the_fetch(client: tc.Client, out, error, text) -> None:
    a = np.arange(32, dtype=np.float32).reshape(8, 4)
    t = client.from_numpy(a)
    if error is None:
        np.testing.assert_array_equal(t.numpy(out=out), a)
        return
    before = np.array(out, copy=True) if isinstance(out, np.ndarray) else None
    with pytest.raises(error, match=text):
        t.numpy(out=out)
    if before is not None:
        np.testing.assert_array_equal(out, before)  # nothing written


def test_numpy_out_read_only_array(client: tc.Client) -> None:
    a = np.arange(6, dtype=np.int32)
    out = np.zeros(6, dtype=np.int32)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        client.from_numpy(a).numpy(out=out)
    assert not out.any()


@pytest.mark.skipif(not native_built(), reason="tensorcast._native was not built")
def test_native_fetch_into_checks_its_destination(server) -> None:
    """The extension's own checks, for a caller that skips the Python ones."""
    from tensorcast import _native
    from tensorcast.v1 import tensor_service_pb2 as pb

    with tc.connect(server.target, native=True, default=False) as c:
        a = np.arange(1000, dtype=np.float32)
        t = c.from_numpy(a)
        channel = _native.Channel(server.target, 8 << 20)
        req = pb.FetchRequest(ref=t.handle, format=pb.FORMAT_RAW).SerializeToString()

        def fetch(out, announced=4000):
            return channel.fetch_into(request=req, metadata=[], timeout=10.0, out=out,
                                      on_header=lambda raw: announced)

        out = np.zeros(1000, dtype=np.float32)
        assert fetch(out) == 4000
        np.testing.assert_array_equal(out, a)
        with pytest.raises(TypeError, match="writable buffer"):
            fetch(42)
        with pytest.raises(ValueError, match="read-only"):
            fetch(b"x" * 4000)
        with pytest.raises(ValueError, match="not C-contiguous"):
            fetch(np.zeros(2000, dtype=np.float32)[::2])
        small = np.zeros(999, dtype=np.float32)
        with pytest.raises(ValueError, match="has 4000 bytes; out has 3996"):
            fetch(small, announced=4000)
        assert not small.any()


def test_aio_numpy_out_and_fetch_into(server) -> None:
    async def main() -> None:
        async with tca.connect(server.target) as c:
            a = np.arange(4096, dtype=np.int64).reshape(64, 64)
            t = await c.from_numpy(a)
            out = np.zeros_like(a)
            assert await t.numpy(out=out) is out
            np.testing.assert_array_equal(out, a)
            out[...] = 0
            assert await c.fetch_into(t.handle, out) is out
            np.testing.assert_array_equal(out, a)
            with pytest.raises(TypeError, match="dtype int32; the tensor is int64"):
                await t.numpy(out=np.zeros((64, 64), dtype=np.int32))
    asyncio.run(main())
