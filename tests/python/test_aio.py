"""tensorcast.aio: the same API as coroutines on grpc.aio."""

from __future__ import annotations

import asyncio
import gc

import numpy as np
import pytest

import tensorcast as tc
import tensorcast.aio as tca

GRAD_TEXT = ("Can't call numpy() on Tensor that requires grad. "
             "Use tensor.detach().numpy() instead.")


def run(coro):  # no plugin needed: each test is one event loop
    return asyncio.run(coro)


def test_tutorial_async(server, cuda: bool) -> None:
    async def main() -> None:
        async with tca.connect(server.target) as c:
            m = await tca.tensor([12.14, 22.58, 32.02, 42.5, 52.6])
            assert (await m.numpy()).dtype == np.float32
            t = await tca.tensor([[15, 25, 35], [45, 55, 65], [75, 85, 95]])
            assert (await t.cpu().detach().numpy()).dtype == np.int64
            g = await tca.tensor([[2., 3, 4], [5, 6, 7], [8, 9, 10]], requires_grad=True)
            with pytest.raises(RuntimeError) as e:
                await g.numpy()
            assert str(e.value) == GRAD_TEXT
            np.testing.assert_array_equal(await g.detach().numpy(),
                                          np.arange(2, 11, dtype=np.float32).reshape(3, 3))
            if cuda:
                a = await (await tca.eye(2)).to("cuda")
                np.testing.assert_array_equal(await (await a.to("cpu")).numpy(), np.eye(2))
            else:
                with pytest.raises(tc.FailedPreconditionError, match="cpu only"):
                    await (await tca.eye(2)).to("cuda")
            assert c is tca.default_client()
        assert c._closed
    run(main())


def test_api_surface(server) -> None:
    async def main() -> None:
        async with tca.connect(server.target):
            a = np.arange(24, dtype=">i4").reshape(2, 3, 4)[:, ::-1]
            t = await tca.from_numpy(a, name="aio-surface")
            np.testing.assert_array_equal(await t.numpy(), a)
            np.testing.assert_array_equal(await t.half().numpy(), a.astype(np.float16))
            assert await (await tca.full((2,), 3)).tolist() == [3, 3]
            assert await (await tca.arange(3)).tolist() == [0, 1, 2]
            assert (await (await tca.zeros(2, 2)).numpy()).sum() == 0
            assert (await (await tca.ones(2)).numpy()).sum() == 2
            r = await tca.rand(3, seed=1)
            again = await tca.rand(3, seed=1)
            np.testing.assert_array_equal(await r.numpy(), await again.numpy())
            assert (await tca.get("aio-surface")).shape == (2, 3, 4)
            assert any(x.name == "aio-surface" for x in await tca.list("aio-"))
            lazy = t.float()
            with pytest.raises(RuntimeError, match="materialize"):
                lazy.handle
            await lazy.materialize()
            assert len(lazy.handle) == 32 and lazy.handle != t.handle
            eager = await t.to(dtype=tc.float64, copy=True)
            assert eager.dtype is tc.float64 and not eager.is_lazy
            with pytest.raises(TypeError, match="await t.numpy"):
                np.asarray(t)
            with pytest.raises(tc.NotFoundError):
                await tca.get("nope")
            assert "cpu" in await tca.stats()
            assert isinstance(await tca.empty_cache(), int)
            info = await tca.server_info()
            assert "cuda_available" in info
            assert await tca.delete("aio-surface") == 1
    run(main())


def test_concurrent_tasks_and_ownership(server) -> None:
    async def main() -> None:
        async with tca.connect(server.target) as c:
            gc.collect()
            base = (await c.stats())["cpu"]["allocated_bytes"]

            async def one(i: int) -> None:
                a = np.full((300_000,), i, np.float32)  # > 1 MiB: several chunks
                t = await c.from_numpy(a)
                got = await t.double().numpy()
                assert got.dtype == np.float64 and (got == i).all()

            await asyncio.gather(*(one(i) for i in range(8)))
            async with await c.zeros(1000) as z:
                assert z.owns_handle
            assert z._deleted
            gc.collect()
            # Collected proxies are deleted in the background, and a Fetch's
            # last chunks hold storage until the server has sent them. (At
            # most base: other tests' garbage may be freed meanwhile.)
            for _ in range(100):
                if (await c.stats())["cpu"]["allocated_bytes"] <= base:
                    break
                await asyncio.sleep(0.05)
            assert (await c.stats())["cpu"]["allocated_bytes"] <= base
    run(main())


def test_no_server_fails_fast() -> None:
    async def main() -> None:
        with pytest.raises(tc.UnavailableError):
            await tca.connect("127.0.0.1:1", connect_timeout=1.0)
    run(main())


def test_shared_memory_and_parity_features(server) -> None:
    """What the asyncio client shares with the blocking one: shared memory
    (the session's server allows it), cuda_is_available, copy errors and
    the same messages."""
    import os
    if os.environ.get("TENSORCAST_TEST_SERVER"):
        pytest.skip("an external server may not allow shared memory")

    async def main() -> None:
        async with tca.connect(server.target, native=False, shared_memory=True) as c:
            a = np.random.default_rng(3).standard_normal((512, 1024)).astype(np.float32)
            t = await c.from_numpy(a)  # 2 MiB: through the region
            assert c.shared_memory and c._shm is not None and c._shm.size >= a.nbytes
            np.testing.assert_array_equal(await t.numpy(), a)
            np.testing.assert_array_equal(await t.half().numpy(), a.astype(np.float16))
            out = np.empty_like(a)
            assert await c.fetch_into(t, out) is out
            np.testing.assert_array_equal(out, a)
            small = await c.tensor([1.0, 2.0])  # under 1 MiB: the socket
            assert await small.tolist() == [1.0, 2.0]
            assert isinstance(await tca.cuda_is_available(), bool)
            assert await c.nodes() == []
            with pytest.raises(tc.InvalidArgumentError, match="not a cluster"):
                await c.zeros(2, node="n1")
            with pytest.raises(ValueError, match="complex fills are not supported"):
                await c.full((2,), 1j)
        with pytest.raises(ValueError, match="shared memory needs a server on this host"):
            tca.Client("example.com:1", shared_memory=True)
    run(main())


def test_shared_memory_region_not_reused_after_a_cut_transfer(server) -> None:
    """A transfer the client gives up on (here at its deadline) may still
    have the server's worker copying into the region: the next transfer
    lends a new region rather than share the old one with that copy, and
    its bytes are right. Both drivers."""
    import os
    if os.environ.get("TENSORCAST_TEST_SERVER"):
        pytest.skip("an external server may not allow shared memory")
    a = np.random.default_rng(5).standard_normal((1024, 1024)).astype(np.float32)

    with tc.connect(server.target, native=False, shared_memory=True) as c:
        t = c.from_numpy(a)  # 4 MiB: through the region
        saved = c.stream_timeout
        for _ in range(50):  # a deadline already passed; a fast local call
            old = c._shm     # may still beat the timer, so until one is cut
            assert old is not None
            c.stream_timeout = 1e-9
            try:
                t.numpy()
            except tc.DeadlineExceededError:
                break
            finally:
                c.stream_timeout = saved
        else:
            pytest.fail("no Fetch was cut by its deadline")
        assert c._shm is not old and c.shared_memory
        np.testing.assert_array_equal(t.numpy(), a)
        assert c._shm is not None and c._shm is not old

    async def main() -> None:
        async with tca.connect(server.target, native=False, shared_memory=True) as c:
            t = await c.from_numpy(a)
            saved = c.stream_timeout
            for _ in range(50):
                old = c._shm
                assert old is not None
                c.stream_timeout = 1e-9
                try:
                    await t.numpy()
                except tc.DeadlineExceededError:
                    break
                finally:
                    c.stream_timeout = saved
            else:
                pytest.fail("no Fetch was cut by its deadline")
            assert c._shm is not old and c.shared_memory
            np.testing.assert_array_equal(await t.numpy(), a)
            assert c._shm is not None and c._shm is not old
    run(main())
