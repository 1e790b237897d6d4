"""8 threads doing round trips at once on one shared client."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import tensorcast as tc

pytestmark = pytest.mark.usefixtures("client")


def test_eight_threads_round_trip(client: tc.Client) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            rng = np.random.default_rng(i)
            barrier.wait()
            for j in range(12):
                a = rng.standard_normal((64, 33 + i)).astype(np.float32)
                if j % 3 == 1:
                    a = a[::2, ::-1]
                t = tc.from_numpy(a, requires_grad=j % 2 == 0)
                np.testing.assert_array_equal(t.detach().numpy(), a)
                np.testing.assert_array_equal(t.detach().half().numpy(), a.astype(np.float16))
                s = tc.tensor([[i, j], [j, i]])
                assert s.tolist() == [[i, j], [j, i]]
                big = tc.from_numpy(np.full((1 << 18) + i, i, np.int32))  # > 1 MiB: chunks
                got = big.long().numpy()
                assert got.dtype == np.int64 and got.shape == ((1 << 18) + i,) and (got == i).all()
                t.delete()
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not any(th.is_alive() for th in threads)
    if errors:
        raise errors[0]
