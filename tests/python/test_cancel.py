"""Cancellation and concurrent use against the real server: an asyncio
fetch into the caller's array that is cancelled (task.cancel(), a timeout)
writes nothing into it once the cancellation has returned, on every data
path, and leaves no stream held; a lazy proxy used from two threads or two
tasks at once makes one server tensor; a cancelled Put, Create or Delete,
or a Delete that fails beside a bad ref, leaves no tensor that nobody
owns."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
from typing import Any, Awaitable, Callable

import numpy as np
import pytest

import tensorcast as tc
import tensorcast.aio as tca

from conftest import native_built

# A fetch long enough to be cut: 64 MiB of float32 ones in messages of the
# server's smallest chunk (4 KiB), so its stream is thousands of messages.
N = 16 << 20
SMALL_CHUNKS = 4096

PATHS = ["grpcio", "native", "shm", "shared-array"]


def aio_client(target: str, path: str) -> tca.Client:
    if path == "native" and not native_built():
        pytest.skip("tensorcast._native was not built")
    return tca.Client(target, native=path == "native",
                      shared_memory=path in ("shm", "shared-array"),
                      chunk_bytes=SMALL_CHUNKS)


async def wait_streams(c: tca.Client, expected: int) -> int:
    """The server's open streams, once they are down to ``expected`` (or
    after 20 s): a cancelled stream ends on the server shortly after."""
    deadline = time.monotonic() + 20
    while True:
        n = int((await c.server_info())["active_streams"])
        if n <= expected or time.monotonic() > deadline:
            return n
        await asyncio.sleep(0.02)


async def cut_fetch(c: tca.Client, out: np.ndarray,
                    start: Callable[[], Awaitable[Any]],
                    cut: Callable[["asyncio.Task[Any]"], Awaitable[None]],
                    patience: float, stops_early: bool = True) -> None:
    """Start a fetch into ``out`` and cut it (``cut``) once its first bytes
    are there (``patience``: at most so many seconds; 0 cuts it at once,
    for the path that writes ``out`` only at the end); then check that
    nothing writes into ``out`` any more. Into a shared array the server
    writes itself, and only its stream's end says it stopped: that end is
    waited for (``stops_early`` False), so ``out`` may be whole then."""
    task = asyncio.ensure_future(start())
    began = time.monotonic()
    await asyncio.sleep(0)
    while not out[:1024].any() and not task.done() and time.monotonic() - began < patience:
        await asyncio.sleep(0.0005)
    assert not task.done(), "the fetch ended before it could be cut"
    await cut(task)
    assert task.done()
    first = np.count_nonzero(out)
    time.sleep(0.3)  # the event loop blocked: a worker thread would go on
    await asyncio.sleep(0.3)  # the event loop free: a grpc.aio read would go on
    assert np.count_nonzero(out) == first, "out was written after the fetch was cancelled"
    if stops_early:  # the call was cut, not waited out
        assert first < out.size


async def cancel_task(task: "asyncio.Task[Any]") -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("how", ["cancel", "timeout", "wait_for"])
def test_cancelled_fetch_into_stops_writing(server, path: str, how: str) -> None:
    async def main() -> None:
        async with aio_client(server.target, path) as c:
            t = await c.full((N,), 1.0)
            if path == "shared-array":
                out = await c.shared_empty((N,), np.float32)
                out[:] = 0
            else:
                out = np.zeros(N, np.float32)
            base = int((await c.server_info())["active_streams"])
            patience = 0.0 if path == "shm" else 5.0
            early = path != "shared-array"

            if how == "cancel":
                await cut_fetch(c, out, lambda: c.fetch_into(t, out), cancel_task, patience,
                                early)
            elif how == "timeout":
                # asyncio.timeout, rescheduled to expire now: a timeout's
                # cancellation, landing mid-stream.
                scope: list[Any] = []

                async def fetch() -> Any:
                    async with asyncio.timeout(None) as cm:
                        scope.append(cm)
                        return await t.numpy(out=out)

                async def expire(task: "asyncio.Task[Any]") -> None:
                    scope[0].reschedule(asyncio.get_running_loop().time())
                    with pytest.raises(TimeoutError):
                        await task

                await cut_fetch(c, out, fetch, expire, patience, early)
                scope.clear()  # it holds the task, and so the fetch's traceback
            else:
                # asyncio.wait_for whose timeout ends mid-stream (64 MiB take
                # far longer than 2 ms on every path).
                async def wait_for() -> Any:
                    return await asyncio.wait_for(c.fetch_into(t, out), 0.002)

                async def timed_out(task: "asyncio.Task[Any]") -> None:
                    with pytest.raises(asyncio.TimeoutError):
                        await task

                await cut_fetch(c, out, wait_for, timed_out, 0, early)

            assert await wait_streams(c, base) <= base, "a cancelled Fetch holds its stream"
            # The client and the tensor still work, and one fetch completes.
            again = np.zeros(N, np.float32) if path != "shared-array" else out
            assert (await c.fetch_into(t, again)).min() == 1.0
            await t.delete()
            out = again = None  # shared arrays go before their client (the
            gc.collect()        # tracebacks of the cancelled calls held them too)
    asyncio.run(main())


# -- lazy proxies: one materialisation ------------------------------------------------


def cpu_allocs(c: Any) -> int:
    return int(c.stats()["cpu"]["alloc_count"])


def handles_from_threads(lazy: tc.RemoteTensor, n: int) -> list[str]:
    """``lazy``'s handle, asked by ``n`` threads at once (half of them
    through ``materialize()``)."""
    handles: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def use(i: int) -> None:
        try:
            barrier.wait()
            handles.append(lazy.handle if i % 2 else lazy.materialize().handle)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=use, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    return handles


def test_lazy_proxy_materialized_once_from_threads(server) -> None:
    with tc.Client(server.target) as c:
        base = c.server_info()["tensors"]
        t = c.arange(1 << 16)  # int64
        for round_ in range(5):
            lazy = t.float()
            allocs = cpu_allocs(c)
            handles = handles_from_threads(lazy, 4)
            assert len(set(handles)) == 1, f"round {round_}: {handles}"
            assert cpu_allocs(c) - allocs == 1, f"round {round_}: materialised more than once"
            assert c.server_info()["tensors"] == base + 2
            lazy.delete()
        t.delete()
        assert c.server_info()["tensors"] == base


def test_lazy_proxy_materialized_once_from_tasks(server) -> None:
    async def main() -> None:
        async with tca.Client(server.target) as c:
            base = (await c.server_info())["tensors"]
            t = await c.arange(1 << 16)
            for round_ in range(5):
                lazy = t.float()
                allocs = int((await c.stats())["cpu"]["alloc_count"])
                results = await asyncio.gather(*(lazy.materialize() for _ in range(4)))
                assert all(r is lazy for r in results)
                np.testing.assert_array_equal(await lazy.numpy(),
                                              np.arange(1 << 16, dtype=np.float32))
                allocs_now = int((await c.stats())["cpu"]["alloc_count"])
                assert allocs_now - allocs == 1, f"round {round_}: materialised more than once"
                assert (await c.server_info())["tensors"] == base + 2
                await lazy.delete()
            await t.delete()
            assert (await c.server_info())["tensors"] == base
    asyncio.run(main())


# -- a cancelled Put leaves no tensor behind -------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_cancelled_put_leaves_no_tensor(server, path: str) -> None:
    """Puts cancelled at moments spread over a Put's length (and some
    cancelled twice, as a timeout around a cancelled task does): each
    either stored nothing or had its tensor deleted, so the server ends
    with the tensors it started with."""
    async def main() -> None:
        async with aio_client(server.target, path) as c:
            if path == "shared-array":
                a = await c.shared_empty((2 << 20,), np.float32)
                a[:] = 1.0
            else:
                a = np.ones(2 << 20, np.float32)  # 8 MiB
            base = (await c.server_info())["tensors"]
            began = time.monotonic()
            t = await c.from_numpy(a)
            length = time.monotonic() - began
            await t.delete()
            stored = 0
            for i in range(24):
                task = asyncio.ensure_future(c.from_numpy(a))
                await asyncio.sleep(length * (i % 12) / 10)
                task.cancel()
                if i >= 12:  # cancelled again while it winds down
                    await asyncio.sleep(0)
                    task.cancel()
                try:
                    t = await task
                except asyncio.CancelledError:
                    continue
                stored += 1  # it ended before the cancellation: ours to delete
                await t.delete()
            assert (await c.server_info())["tensors"] == base, f"{stored} completed"
            del a
            gc.collect()
    asyncio.run(main())


def test_cancelled_create_and_delete_leave_no_tensor(server) -> None:
    """A Create (rand: a while on the server for 32 Mi values) or a
    Delete cancelled mid-call: the server may do it all the same, so the
    call is waited out; the tensor it made is deleted (its proxy dropped),
    the one it was to delete is gone or still owned."""
    async def main() -> None:
        async with tca.Client(server.target) as c:
            base = (await c.server_info())["tensors"]
            began = time.monotonic()
            await (await c.rand(32 << 20)).delete()
            length = time.monotonic() - began
            for i in range(8):
                task = asyncio.ensure_future(c.rand(32 << 20))
                await asyncio.sleep(length * i / 8)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                else:
                    await task.result().delete()
            for i in range(8):
                t = await c.zeros(1 << 20)
                task = asyncio.ensure_future(t.delete())
                await asyncio.sleep(0.0005 * i)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                del t
            gc.collect()
            await c.stats()  # deletes what dropped proxies owned
            assert (await c.server_info())["tensors"] == base
    asyncio.run(main())


def test_failed_delete_still_deletes_the_proxies_tensors(server) -> None:
    """delete(proxy, bad ref): the call fails, all or nothing, but the
    proxy is given up already: its tensor is deleted all the same."""
    with tc.Client(server.target) as c:
        base = c.server_info()["tensors"]
        t = c.zeros(4)
        with pytest.raises(tc.NotFoundError, match="nothing was deleted"):
            c.delete(t, "test-cancel-no-such-name")
        assert not t.owns_handle
        assert c.server_info()["tensors"] == base

    async def main() -> None:
        async with tca.Client(server.target) as c:
            t = await c.zeros(4)
            with pytest.raises(tc.NotFoundError):
                await c.delete(t, "test-cancel-no-such-name")
            assert (await c.server_info())["tensors"] == base
    asyncio.run(main())
