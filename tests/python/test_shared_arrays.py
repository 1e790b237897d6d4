"""Shared arrays (Client.shared_empty): NumPy arrays in a shared-memory
region the client lends the server, which Put reads from and Fetch writes
into directly. Against the real server started with --shared-memory; a
transfer that took the copying path lends a second region, the one
``client._shm`` names, so ``_shm is None`` after a transfer proves it
went straight through the shared array."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time

import numpy as np
import pytest

import tensorcast as tc
import tensorcast.aio as tca

from conftest import running_server

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TENSORCAST_TEST_SERVER")),
    reason="an external server may not allow shared memory")

MiB = 1 << 20


def connect(server, **kwargs) -> tc.Client:
    return tc.connect(server.target, native=False, shared_memory=True, default=False,
                      **kwargs)


def fill(a: np.ndarray, seed: int) -> None:
    raw = a.reshape(-1).view(np.uint8)
    raw[:] = np.random.default_rng(seed).integers(0, 256, raw.size, dtype=np.uint8)
    if a.dtype == np.bool_:
        a[...] = raw.reshape(a.shape) & 1
    elif a.dtype.kind in "fc":
        a[~np.isfinite(a)] = 0  # NaN bit patterns need not survive a cast


@pytest.mark.parametrize("shape,dtype", [
    ((512, 1024), np.float32),
    ((3, MiB), np.uint8),
    ((1 << 18,), np.int64),
    ((1024, 1024), np.float16),
    ((2 * MiB,), np.bool_),
    ((256, 1024), np.complex64),
    ((2, 3, 4, 65536), np.float64),
])
def test_round_trip_without_copy(server, shape, dtype) -> None:
    with connect(server) as c:
        a = c.shared_empty(shape, dtype)
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous
        assert a.__array_interface__["data"][0] % 64 == 0
        fill(a, 1)
        t = c.from_numpy(a)
        out = c.shared_empty(shape, dtype)
        assert t.numpy(out=out) is out
        out2 = c.shared_empty(shape, dtype)
        assert c.fetch_into(t, out2) is out2
        assert c._shm is None  # neither went through the copying region
        assert out.tobytes() == a.tobytes() and out2.tobytes() == a.tobytes()
        # What the server stored, over the copying path.
        assert t.numpy().tobytes() == a.tobytes()
        assert c._shm is not None
        del a, out, out2, t


def test_module_level_and_views(server) -> None:
    with connect(server) as c:
        tc_default = tc.connect(server.target, native=False, shared_memory=True)
        try:
            a = tc.shared_empty((4, MiB // 4), np.float32)
            assert a.base is not None
            assert tc_default._shared.lender.arena is not None
        finally:
            del a
            tc_default.close()
        a = c.shared_empty((8, MiB // 2), np.float32)  # 16 MiB
        fill(a, 2)
        # A contiguous part of a shared array goes directly too.
        rows = c.from_numpy(a[2:6])
        assert c._shm is None
        np.testing.assert_array_equal(rows.numpy(), a[2:6])
        # A non-contiguous view is copied (over the socket, as any
        # non-contiguous array), not refused.
        c2 = connect(server)
        with c2:
            b = c2.shared_empty((8, MiB // 2), np.float32)
            fill(b, 3)
            strided = c2.from_numpy(b[:, ::2])
            np.testing.assert_array_equal(strided.numpy(), b[:, ::2])
            # numpy(out=) of a non-contiguous view is refused, as for any array.
            with pytest.raises(ValueError, match="contiguous"):
                strided.numpy(out=b[:, 1::2])
            del b
        # An ordinary array takes the copying path.
        plain = np.ones((MiB,), np.float32)
        p = c.from_numpy(plain)
        assert c._shm is not None
        np.testing.assert_array_equal(p.numpy(), plain)
        del a


def test_allocator_reuse_and_exhaustion(server) -> None:
    with connect(server) as c:
        c.shared_arena_bytes = 4 * MiB
        a = c.shared_empty((2 * MiB,), np.uint8)
        b = c.shared_empty((2 * MiB - 64,), np.uint8)
        arena = c._shared.lender.arena
        assert arena.memory.size == 4 * MiB
        with pytest.raises(MemoryError, match="shared_arena_bytes"):
            c.shared_empty((MiB,), np.uint8)
        where = a.__array_interface__["data"][0]
        view = a[10:]  # a view keeps the room
        del a
        gc.collect()
        with pytest.raises(MemoryError):
            c.shared_empty((MiB,), np.uint8)
        del view
        gc.collect()
        again = c.shared_empty((2 * MiB,), np.uint8)
        assert again.__array_interface__["data"][0] == where  # reused
        del again, b
        gc.collect()
        assert arena.free_bytes() == 4 * MiB
        assert arena.live() == 0


def test_allocator_threads(server) -> None:
    with connect(server) as c:
        c.shared_arena_bytes = 8 * MiB
        c.shared_empty((1,), np.uint8)  # lend it
        arena = c._shared.lender.arena
        errors: list[BaseException] = []

        def work(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                for _ in range(300):
                    n = int(rng.integers(1, 64 * 1024))
                    x = c.shared_empty((n,), np.uint8)
                    x[:] = seed
                    assert (x == seed).all()
                    del x
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        gc.collect()
        assert not errors
        assert arena.free_bytes() == 8 * MiB


def test_cut_transfer_quarantines_the_slot(server) -> None:
    """A transfer cut short by the client (here its deadline) may leave the
    server copying into the array: its room is never handed out again. An
    error the server answered with (its copies have ended) keeps it."""
    with connect(server) as c:
        c.shared_arena_bytes = 8 * MiB
        out = c.shared_empty((2 * MiB,), np.uint8)
        t = c.from_numpy(np.zeros(2 * MiB, np.uint8))
        arena = c._shared.lender.arena
        g = c.get(t.handle)  # its metadata known: numpy() goes straight to Fetch
        owner = c.from_numpy(np.ones(2 * MiB, np.uint8))
        gone = c.get(owner.handle)
        owner.delete()
        with pytest.raises(tc.NotFoundError):
            gone.numpy(out=out)  # the server's answer
        del out
        gc.collect()
        assert arena.free_bytes() == 8 * MiB
        saved = c.stream_timeout
        for _ in range(50):  # a deadline already passed; a fast call may beat it
            out = c.shared_empty((2 * MiB,), np.uint8)
            c.stream_timeout = 1e-9
            try:
                g.numpy(out=out)
            except tc.DeadlineExceededError:
                break
            finally:
                c.stream_timeout = saved
                del out
                gc.collect()
        else:
            pytest.fail("no Fetch was cut by its deadline")
        assert arena.free_bytes() == 8 * MiB - 2 * MiB


def test_needs_shared_memory(server) -> None:
    with tc.connect(server.target, default=False) as c:
        with pytest.raises(RuntimeError, match="shared arrays need shared memory"):
            c.shared_empty((4,), np.float32)
    c = connect(server)
    c.close()
    with pytest.raises(RuntimeError, match="closed"):
        c.shared_empty((4,), np.float32)


def test_region_released_at_close(tmp_path) -> None:
    """With one region allowed per tenant, a second client gets its arena
    only once the first has closed, even with one of its arrays alive."""
    with running_server(tmp_path, "--shared-memory",
                        "--shared-memory-max-per-tenant=1") as s:
        first = connect(s)
        kept = first.shared_empty((MiB,), np.float32)
        with connect(s) as second:
            with pytest.raises(tc.TensorcastError, match="(?i)region"):
                second.shared_empty((MiB,), np.float32)
        with pytest.warns(RuntimeWarning, match="outlive their client"):
            first.close()
        kept[:] = 1  # the memory is still valid
        assert kept.sum() == MiB
        deadline = time.monotonic() + 30
        while True:
            with connect(s) as third:
                try:
                    x = third.shared_empty((MiB,), np.float32)
                    del x
                    break
                except tc.TensorcastError:
                    if time.monotonic() > deadline:
                        raise
            time.sleep(0.1)
        del kept


def test_aio(server) -> None:
    async def main() -> None:
        async with tca.connect(server.target, native=False, shared_memory=True) as c:
            a = await c.shared_empty((512, 1024), np.float32)
            fill(a, 4)
            t = await c.from_numpy(a)
            out = await c.shared_empty((512, 1024), np.float32)
            assert await t.numpy(out=out) is out
            assert await c.fetch_into(t, out) is out
            assert c._shm is None
            assert out.tobytes() == a.tobytes()
            b = await tca.shared_empty((MiB,), np.uint8)  # the default client
            assert b.nbytes == MiB
            del a, out, b
        async with tca.connect(server.target, native=False) as c:
            with pytest.raises(RuntimeError, match="shared arrays need shared memory"):
                await c.shared_empty((4,), np.float32)
    asyncio.run(main())
