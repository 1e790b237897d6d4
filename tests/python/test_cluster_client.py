"""Client-side cluster routing: the member table without a server, then the
sync client against three real servers on loopback (--node-id, --cluster
listing the three): placement spreads, calls go to the owner, a SIGKILLed
node's handles fail fast naming it while the others keep serving."""

from __future__ import annotations

import pathlib
import socket
import time

import numpy as np
import pytest

import tensorcast as tc
from tensorcast import _cluster
from tensorcast.v1 import tensor_service_pb2 as pb

from conftest import Server

HEX = "8d7b0c0f5c6e4f1d2a9e77c1b3f04a21"


def response(self_id: str, members: list[tuple[str, bool, int]]) -> pb.ClusterResponse:
    return pb.ClusterResponse(node_id=self_id, members=[
        pb.ClusterMember(node_id=n, address=f"h:{i}", healthy=h, error="" if h else "refused",
                         devices=[pb.DeviceStats(device="cpu", free_bytes=f)])
        for i, (n, h, f) in enumerate(members)])


def test_handle_and_targets() -> None:
    assert _cluster.handle_node(f"{HEX}.tensorcast-1") == "tensorcast-1"
    assert _cluster.handle_node(HEX) == ""
    assert _cluster.handle_node("weights") == ""
    assert _cluster.handle_node(f"{HEX}.A") == ""
    assert _cluster.handle_node(f"{HEX}.a.b") == ""
    assert _cluster.split_targets("a:1, b:2") == ["a:1", "b:2"]
    assert _cluster.split_targets(["a:1", "b:2"]) == ["a:1", "b:2"]
    assert _cluster.split_targets("dns:///tc.ns.svc:50051") == ["dns:///tc.ns.svc:50051"]


def test_placement_and_mark_down() -> None:
    t = _cluster.MemberTable()
    assert not t.update(response("", [("", True, 10)]))
    assert t.update(response("a", [("a", True, 1000), ("b", True, 5000), ("c", True, 4900)]),
                    now=0)
    picks = [t.place("cpu", 1) for _ in range(10)]
    assert picks.count("a") == 0 and picks.count("b") == 5 and picks.count("c") == 5
    with pytest.raises(tc.UnavailableError, match="cuda:0"):
        t.place("cuda")
    t.mark_down("b", "connection refused", now=10)
    assert all(t.place("cpu") == "c" for _ in range(3))
    with pytest.raises(tc.UnavailableError, match="node 'b' \\(h:1\\) is unavailable"):
        t.route("b")
    # The nodes' probes may lag: still down until the hold has passed.
    t.update(response("a", [("a", True, 10), ("b", True, 10), ("c", True, 10)]), now=11)
    assert not t.members["b"].healthy
    t.update(response("a", [("a", True, 10), ("b", True, 10), ("c", True, 10)]),
             now=10 + _cluster.DOWN_HOLD_S)
    assert t.members["b"].healthy
    with pytest.raises(tc.UnavailableError, match="'zz'"):
        t.route("zz")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    servers = []
    for i, address in enumerate(addresses):
        d = tmp_path / f"n{i}"
        d.mkdir()
        servers.append(Server(d, f"--listen={address}", f"--node-id=n{i}",
                              f"--cluster={','.join(addresses)}", "--cluster-probe-ms=200"))
    try:
        yield addresses, servers
    finally:
        for s in servers:
            if s.proc.poll() is None:
                s.stop()


def test_routing_against_three_servers(cluster) -> None:  # type: ignore[no-untyped-def]
    addresses, servers = cluster
    client = tc.Client(addresses)
    deadline = time.monotonic() + 15
    while len(client.nodes()) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(client.nodes()) == ["n0", "n1", "n2"]
    info = client.cluster()
    assert sorted(m["node_id"] for m in info["members"]) == ["n0", "n1", "n2"]

    arrays = [np.arange(1000, dtype=np.float32) * i for i in range(30)]
    ts = [client.from_numpy(a) for a in arrays]
    per_node = {n: sum(t.handle.endswith("." + n) for t in ts) for n in ("n0", "n1", "n2")}
    assert all(v >= 5 for v in per_node.values()), per_node
    for t, a in zip(ts, arrays):
        np.testing.assert_array_equal(t.numpy(), a)
    assert len(client.list()) == 30

    pinned = client.tensor([1.0, 2.0, 3.0], node="n2")
    assert pinned.handle.endswith(".n2")
    copy = pinned.copy_to("n0")
    assert copy.handle.endswith(".n0")
    np.testing.assert_array_equal(copy.numpy(), np.array([1, 2, 3], np.float32))
    moved = copy.to(tc.float64)  # To on the owner
    assert moved.handle.endswith(".n0")

    # SIGKILL n1: its handles fail fast naming it; the rest keep working.
    servers[1].proc.kill()
    servers[1].proc.wait()
    for t in [t for t in ts if t.handle.endswith(".n1")]:
        start = time.monotonic()
        with pytest.raises(tc.UnavailableError, match="node 'n1'"):
            t.numpy()
        assert time.monotonic() - start < 2
    for t, a in zip(ts, arrays):
        if not t.handle.endswith(".n1"):
            np.testing.assert_array_equal(t.numpy(), a)
    for _ in range(10):
        start = time.monotonic()
        assert not client.tensor(np.ones(100)).handle.endswith(".n1")
        assert time.monotonic() - start < 2
    for t in ts:
        t._finalizer.detach() if getattr(t, "_finalizer", None) else None
    client.close(timeout=5)


def test_plain_server_unchanged(server) -> None:  # type: ignore[no-untyped-def]
    client = tc.Client(server.target)
    t = client.tensor([1, 2, 3])
    assert "." not in t.handle
    assert client.nodes() == []
    np.testing.assert_array_equal(t.numpy(), [1, 2, 3])
    client.close()


def test_aio_routing_against_three_servers(cluster) -> None:  # type: ignore[no-untyped-def]
    """The asyncio client runs the same plans: placement, node= pinning,
    calls on the owner, and a lost node named at once."""
    import asyncio

    import tensorcast.aio as tca

    addresses, servers = cluster

    async def main() -> None:
        async with tca.connect(addresses, default=False) as client:
            deadline = time.monotonic() + 15
            while len(await client.nodes()) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert sorted(await client.nodes()) == ["n0", "n1", "n2"]
            arrays = [np.arange(100, dtype=np.float32) * i for i in range(12)]
            ts = [await client.from_numpy(a) for a in arrays]
            nodes = {t.handle.rsplit(".", 1)[1] for t in ts}
            assert nodes == {"n0", "n1", "n2"}, nodes
            for t, a in zip(ts, arrays):
                np.testing.assert_array_equal(await t.numpy(), a)
            pinned = await client.zeros(3, node="n2")
            assert pinned.handle.endswith(".n2")
            copy = await pinned.copy_to("n0")
            assert copy.handle.endswith(".n0")
            got = await client.get(copy.handle)
            assert got.shape == (3,)
            servers[1].proc.kill()
            servers[1].proc.wait()
            for t in [t for t in ts if t.handle.endswith(".n1")]:
                start = time.monotonic()
                with pytest.raises(tc.UnavailableError, match="node 'n1'"):
                    await t.numpy()
                assert time.monotonic() - start < 2
            for _ in range(6):
                t = await client.tensor(np.ones(100))
                assert not t.handle.endswith(".n1")
            for t in ts:
                if t._finalizer is not None:
                    t._finalizer.detach()
            await client.close(timeout=5)

    asyncio.run(main())
