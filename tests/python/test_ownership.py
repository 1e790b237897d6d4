"""Ownership: proxies the client made free their server tensors on
.delete(), at the end of a with block, and when garbage-collected; get()
proxies own nothing; closing a client frees what it owns."""

from __future__ import annotations

import gc
import subprocess
import sys

import numpy as np
import pytest

import tensorcast as tc

pytestmark = pytest.mark.usefixtures("client")


def allocated(client: tc.Client) -> int:
    gc.collect()
    return client.stats()["cpu"]["allocated_bytes"]


def test_dropped_proxies_are_freed(client: tc.Client, baseline: int) -> None:
    made = [tc.zeros(1000), tc.from_numpy(np.ones((300, 1000))), tc.tensor([1.0, 2.0]),
            tc.arange(10_000)]
    made.append(made[0].detach())
    made[-1].handle  # materialised: a handle sharing storage
    made.append(made[1].to(dtype=tc.float16, copy=True))
    made.append(made[2].double())  # lazy: no server tensor of its own
    made.append(made[3].float().half())
    made[-1].materialize()
    assert allocated(client) > baseline
    del made
    assert allocated(client) == baseline


def test_cycles_are_freed_too(client: tc.Client, baseline: int) -> None:
    class Holder:
        pass

    h = Holder()
    h.self = h  # a cycle: only gc.collect() frees it
    h.t = tc.zeros(5000)
    del h
    assert allocated(client) == baseline


def test_delete_and_with(client: tc.Client, baseline: int) -> None:
    t = tc.zeros(4096)
    t.delete()
    assert client.stats()["cpu"]["allocated_bytes"] == baseline
    with tc.ones(4096) as u:
        assert u.owns_handle
        assert client.stats()["cpu"]["allocated_bytes"] > baseline
    assert client.stats()["cpu"]["allocated_bytes"] == baseline
    with pytest.raises(tc.NotFoundError):
        u.numpy()


def test_get_does_not_own(client: tc.Client, baseline: int) -> None:
    t = tc.zeros(2048, name="own-named")
    ref = tc.get("own-named")
    assert not ref.owns_handle and t.owns_handle
    del ref
    assert allocated(client) > baseline  # still there
    with tc.get("own-named") as again:
        pass
    assert tc.get("own-named").shape == (2048,)  # the with block left it alone
    for x in tc.list("own-"):
        assert not x.owns_handle
    del t
    assert allocated(client) == baseline
    with pytest.raises(tc.NotFoundError):
        tc.get("own-named")
    assert again is not None


def test_explicit_delete_of_a_reference(client: tc.Client, baseline: int) -> None:
    t = tc.zeros(2048, name="own-explicit")
    tc.get("own-explicit").delete()  # explicit: deletes on the server
    with pytest.raises(tc.NotFoundError):
        tc.get("own-explicit")
    del t  # its finalizer finds nothing to delete, quietly
    assert allocated(client) == baseline


def test_close_frees_what_the_client_owns(server, client: tc.Client, baseline: int) -> None:
    other = tc.Client(server.target)
    kept = [other.zeros(10_000), other.tensor([1.0])]
    assert allocated(client) > baseline
    other.close()
    assert allocated(client) == baseline
    with pytest.raises(tc.UnavailableError):
        kept[0].numpy()


def test_close_frees_more_than_one_delete_takes(server, client: tc.Client,
                                                baseline: int) -> None:
    """The server deletes at most 1000 refs per call: a client that owns
    more frees them in batches when it closes."""
    other = tc.Client(server.target)
    kept = [other.zeros(4) for _ in range(1100)]
    held = client.server_info()["tensors"]
    assert held >= 1100
    other.close()
    assert client.server_info()["tensors"] == held - 1100
    assert allocated(client) == baseline
    del kept


def test_interpreter_exit_frees_and_never_raises(server, client: tc.Client,
                                                  baseline: int) -> None:
    script = (
        "import tensorcast as tc, numpy as np, sys\n"
        f"tc.connect({server.target!r})\n"
        "keep = [tc.zeros(50_000), tc.from_numpy(np.ones(1000)), tc.tensor([1.0]).detach()]\n"
        "cycle = []; cycle.append(cycle); cycle.append(tc.ones(7))\n"
        "print('ok')\n")
    env_path = ":".join(p for p in sys.path if p)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env={"PYTHONPATH": env_path})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok" and out.stderr == ""
    assert allocated(client) == baseline
