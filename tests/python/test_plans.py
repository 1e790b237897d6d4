"""The plans (tensorcast/_plans.py) without a server: a fake driver answers
each step, so these check what the operations ask for (requests, routing,
cleanup, errors) -- the logic the blocking and the asyncio clients share --
and that the two APIs have the same methods with the same signatures."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import grpc
import numpy as np
import pytest

import tensorcast as tc
import tensorcast.aio as tca
from tensorcast import _plans
from tensorcast._cluster import DOWN_HOLD_S
from tensorcast._plans import Call, ClientBase, Fetch, Flush, Put
from tensorcast._proxy import TensorBase
from tensorcast._transport import Conn
from tensorcast.v1 import tensor_service_pb2 as pb

HEX = "8d7b0c0f5c6e4f1d2a9e77c1b3f04a21"


class FakeTensor(TensorBase):
    """A proxy whose I/O methods run plans on the fake driver."""

    def numpy(self, force: bool = False, out: Any = None) -> np.ndarray:
        return self._client.run(self._numpy_plan(force=force, progress=False, out=out))


class Fake(ClientBase):
    """A driver without I/O: ``answer(step)`` makes each step (it may raise),
    and ``steps`` records them. The Cluster refresh is answered from
    ``members`` (none: a plain server)."""

    _tensor_class = FakeTensor

    def __init__(self, answer: Callable[[Any], Any],
                 members: Optional[list[tuple[str, bool, int]]] = None) -> None:
        super().__init__("127.0.0.1:50051", None, timeout=30.0, stream_timeout=None,
                         connect_timeout=0, chunk_bytes=1 << 20, put_chunk_bytes=1 << 20,
                         shared_memory=False)
        self.answer = answer
        self.members = members
        self.steps: list[Any] = []

    def _conn_for(self, address: str) -> Conn:
        return Conn(None, None, None, None)  # no channels

    def run(self, plan: Any) -> Any:
        return _plans.run(plan, self.execute)

    def execute(self, step: Any) -> Any:
        if type(step) is Call and step.method == "Cluster":
            return cluster_response(self.members)
        self.steps.append(step)
        return self.answer(step)


def cluster_response(members: Optional[list[tuple[str, bool, int]]]) -> pb.ClusterResponse:
    if members is None:
        return pb.ClusterResponse()
    return pb.ClusterResponse(node_id=members[0][0], members=[
        pb.ClusterMember(node_id=n, address=f"{n}:1", healthy=h,
                         devices=[pb.DeviceStats(device="cpu", free_bytes=f)])
        for n, h, f in members])


def info(handle: str, shape: tuple[int, ...] = (2,),
         dtype: int = pb.DTYPE_FLOAT32) -> pb.TensorInfo:
    return pb.TensorInfo(handle=handle, shape=list(shape), dtype=dtype, device="cpu")


def tensor_answer(handle: str = HEX) -> Callable[[Any], Any]:
    """Answers Create/Info/To/Put with one tensor; Delete with a count."""
    def answer(step: Any) -> Any:
        if type(step) is Put:
            return pb.PutResponse(tensor=info(handle))
        if type(step) is Flush:
            return None
        if step.method == "Delete":
            return pb.DeleteResponse(deleted=len(step.request.refs))
        if step.method == "Info":
            return pb.InfoResponse(tensor=info(handle))
        if step.method == "List":
            return pb.ListResponse()
        return pb.CreateResponse(tensor=info(handle))
    return answer


def unary(steps: list[Any]) -> list[tuple[str, str]]:
    return [(s.method, s.address) for s in steps if type(s) is Call]


# -- argument checks: raised by the plan, before any call -----------------------

def test_checks_fail_before_any_call() -> None:
    c = Fake(tensor_answer())
    with pytest.raises(ValueError, match="real fill value"):
        c.run(c._plan_full((2,), 1 + 2j, None, "cpu", False, None, None, None))
    t = c._wrap(pb_meta(HEX, (2, 3)), owned=False)
    with pytest.raises(TypeError):
        c.run(t._numpy_plan(force=False, progress=False, out=np.empty((2, 3), np.int32)))
    with pytest.raises(ValueError):
        c.run(t._numpy_plan(force=False, progress=False, out=np.empty((3, 2), np.float32)))
    with pytest.raises(RuntimeError, match="6 elements cannot be converted"):
        c.run(t._item_plan())
    with pytest.raises(tc.InvalidArgumentError, match="not a cluster"):
        c.run(c._plan_zeros((2,), None, "cpu", False, None, None, "n1"))
    assert c.steps == []


def test_other_api_proxy_refused() -> None:
    c = Fake(tensor_answer())
    other = tca.RemoteTensor.__new__(tca.RemoteTensor)
    TensorBase.__init__(other, c, pb_meta(HEX, (2,)))
    with pytest.raises(TypeError, match="other API"):
        c.run(c._plan_tensor(other, None, "cpu", False, None, None, False, None))


def pb_meta(handle: str, shape: tuple[int, ...]) -> Any:
    from tensorcast._core import meta_from_info
    return meta_from_info(info(handle, shape))


# -- what the plans ask for ---------------------------------------------------------

def test_requests() -> None:
    c = Fake(tensor_answer())
    t = c.run(c._plan_zeros((2, 3), tc.float16, "cuda", True, "w", 5.0, None))
    create = c.steps[0].request
    assert (c.steps[0].method, list(create.shape), create.dtype, create.device,
            create.requires_grad, create.name, create.ttl_seconds) == (
        "Create", [2, 3], pb.DTYPE_FLOAT16, "cuda:0", True, "w", 5)
    assert t.owns_handle and t._meta.handle == HEX
    c.steps.clear()
    got = c.run(c._plan_get("weights"))
    assert unary(c.steps) == [("Info", "")] and c.steps[0].request.ref == "weights"
    assert not got.owns_handle
    c.steps.clear()
    c.run(c._plan_from_numpy(np.arange(6, dtype=np.int64).reshape(2, 3), "cpu", False,
                             None, None, False, None))
    (put,) = c.steps
    assert type(put) is Put and list(put.header.header.shape) == [2, 3]
    assert put.header.header.dtype == pb.DTYPE_INT64


def test_lazy_fetch_is_one_stream() -> None:
    """detach + cpu + cast travel in the FetchRequest: no To, no Detach."""
    out = np.zeros(2, np.float64)

    def answer(step: Any) -> Any:
        assert type(step) is Fetch
        return out

    c = Fake(answer)
    src = c._wrap(pb_meta(HEX, (2,)), owned=False)
    lazy = src.detach().cpu().double()
    assert lazy.is_lazy
    assert c.run(lazy._numpy_plan(force=False, progress=False, out=None)) is out
    (fetch,) = c.steps
    req = fetch.request
    assert (req.ref, req.detach, req.dtype, req.chunk_bytes) == (
        HEX, True, pb.DTYPE_FLOAT64, 1 << 20)
    assert fetch.nbytes == 16


def test_lazy_proxy_materialised_once() -> None:
    """Two plans materialising one lazy proxy, interleaved as two threads
    or tasks would run them: the second waits (a Wait step on the first's
    event) and takes the first's tensor; no second To."""
    made = "2" * 32
    c = Fake(tensor_answer(made))
    c.run(c._router.refresh())  # a plain server: the plans go straight to To
    src = c._wrap(pb_meta(HEX, (2,)), owned=False)
    lazy = src.double()
    first, second = lazy._materialize_plan(), lazy._materialize_plan()
    to = first.send(None)
    assert type(to) is Call and to.method == "To"
    wait = second.send(None)
    assert type(wait) is _plans.Wait and not wait.event.is_set()
    with pytest.raises(StopIteration) as done:
        first.send(pb.ToResponse(tensor=info(made)))
    assert done.value.value is lazy and wait.event.is_set()
    with pytest.raises(StopIteration) as done:
        second.send(None)  # woken: materialised already
    assert done.value.value is lazy
    assert lazy._meta.handle == made
    assert lazy.owns_handle and not lazy.is_lazy


def test_failed_conversion_deletes_its_temporaries() -> None:
    """A chain of two casts that cannot fold makes a temporary tensor; when
    the second step fails, the plan deletes it and raises the error."""
    temp = "1" * 32

    def answer(step: Any) -> Any:
        if step.method == "To" and step.request.ref == HEX:
            return pb.ToResponse(tensor=info(temp, dtype=pb.DTYPE_FLOAT16))
        if step.method == "To":
            raise tc.OutOfMemoryError("no room")
        return pb.DeleteResponse(deleted=1)

    c = Fake(answer)
    src = c._wrap(pb_meta(HEX, (2,)), owned=False)
    lazy = src.half().float()  # float32 -> float16 -> float32: loses bits, kept
    with pytest.raises(tc.OutOfMemoryError):
        c.run(lazy._to_plan(("cuda",), {}))
    assert [(s.method, list(s.request.refs) if s.method == "Delete" else s.request.ref)
            for s in c.steps] == [("To", HEX), ("To", temp), ("Delete", [temp])]


def test_failed_fetch_chain_deletes_its_temporaries() -> None:
    """A Fetch after three casts that cannot fold makes two temporaries on
    the server (the last cast travels in the FetchRequest); when the second
    To fails, the first temporary is deleted too, not left to its TTL."""
    temp = "1" * 32

    def answer(step: Any) -> Any:
        if step.method == "To" and step.request.ref == HEX:
            return pb.ToResponse(tensor=info(temp, dtype=pb.DTYPE_FLOAT16))
        if step.method == "To":
            raise tc.OutOfMemoryError("no room")
        return pb.DeleteResponse(deleted=1)

    c = Fake(answer)
    src = c._wrap(pb_meta(HEX, (2,)), owned=False)
    lazy = src.half().int().float()
    with pytest.raises(tc.OutOfMemoryError):
        c.run(lazy._numpy_plan(force=False, progress=False, out=None))
    assert [(s.method, list(s.request.refs) if s.method == "Delete" else s.request.ref)
            for s in c.steps] == [("To", HEX), ("To", temp), ("Delete", [temp])]


def test_quiet_delete_groups_and_retries() -> None:
    a, b = f"{'a' * 32}.n1", f"{'b' * 32}.n1"
    gone = f"{'c' * 32}.n2"

    def answer(step: Any) -> Any:
        if gone in step.request.refs and len(step.request.refs) > 1:
            raise tc.NotFoundError("gone")
        if step.request.refs == [gone]:
            raise tc.NotFoundError("gone")
        return pb.DeleteResponse(deleted=len(step.request.refs))

    members = [("n1", True, 10), ("n2", True, 10)]
    c = Fake(answer, members)
    c.run(c._plan_delete_quietly([a, b, gone, "x" * 32]))
    # One Delete per node (names and plain handles go to any healthy node),
    # never raising.
    calls = [(s.address, list(s.request.refs)) for s in c.steps]
    assert calls == [("n1:1", [a, b]), ("n2:1", [gone]), ("n1:1", ["x" * 32])]


# -- cluster routing ------------------------------------------------------------------

def test_routing_in_a_cluster() -> None:
    members = [("n0", True, 1000), ("n1", True, 9000), ("n2", True, 500)]
    c = Fake(tensor_answer(f"{HEX}.n1"), members)
    c.run(c._plan_zeros((4,), None, "cpu", False, None, None, None))
    assert unary(c.steps) == [("Create", "n1:1")]  # the most free memory
    c.steps.clear()
    c.run(c._plan_ones((4,), None, "cpu", False, None, None, "n2"))  # pinned
    assert unary(c.steps) == [("Create", "n2:1")]
    c.steps.clear()
    c.run(c._plan_get(f"{HEX}.n0"))  # by handle: its owner
    assert unary(c.steps) == [("Info", "n0:1")]
    c.steps.clear()
    assert c.run(c._plan_nodes()) == ["n0", "n1", "n2"]
    c.run(c._plan_list(""))
    assert [a for m, a in unary(c.steps) if m == "List"] == ["n0:1", "n1:1", "n2:1"]
    c.steps.clear()
    with pytest.raises(tc.UnavailableError, match="node 'zz'.*not a member"):
        c.run(c._plan_get(f"{HEX}.zz"))
    with pytest.raises(tc.UnavailableError, match="cuda:0"):
        c.run(c._plan_zeros((4,), None, "cuda", False, None, None, None))
    assert c.steps == []


def test_lost_node_fails_fast_and_is_named() -> None:
    members = [("n0", True, 1000), ("n1", True, 9000)]

    def answer(step: Any) -> Any:
        if step.address == "n1:1":
            raise tc.UnavailableError(
                "tensorcast server at n0:1,n1:1 is unavailable: Connection refused")
        return tensor_answer(f"{HEX}.n0")(step)

    c = Fake(answer, members)
    with pytest.raises(tc.UnavailableError,
                       match=r"^node 'n1' \(n1:1\) is unavailable: Connection refused$"):
        c.run(c._plan_get(f"{HEX}.n1"))
    # Marked down: the next call fails without a call; placement avoids it
    # (the refresh, answered healthy, keeps it down for DOWN_HOLD_S).
    c.steps.clear()
    with pytest.raises(tc.UnavailableError, match="node 'n1'"):
        c.run(c._plan_get(f"{HEX}.n1"))
    assert c.steps == []
    c.run(c._plan_zeros((4,), None, "cpu", False, None, None, None))
    assert unary(c.steps) == [("Create", "n0:1")]
    assert DOWN_HOLD_S > 0


def test_error_about_another_node_marks_nothing_down() -> None:
    """The server's UNAVAILABLE that names another node (a Copy whose target
    is gone) is that node's, not the called one's."""
    members = [("n0", True, 1000), ("n1", True, 9000)]

    def answer(step: Any) -> Any:
        raise tc.UnavailableError("node 'n1' is unavailable: refused")

    c = Fake(answer, members)
    with pytest.raises(tc.UnavailableError, match="node 'n1'"):
        c.run(c._plan_copy(f"{HEX}.n0", "n1", None, None, None, None))
    assert c._router.members.members["n0"].healthy


def test_plain_server_old_server() -> None:
    """A server without the Cluster call (UNIMPLEMENTED) is a plain one."""
    c = Fake(tensor_answer())
    c.members = None

    def execute(step: Any) -> Any:
        if type(step) is Call and step.method == "Cluster":
            raise tc.TensorcastError("no", grpc.StatusCode.UNIMPLEMENTED)
        c.steps.append(step)
        return tensor_answer()(step)

    assert _plans.run(c._plan_get("w"), execute) is not None
    assert c._router.clustered is False
    assert unary(c.steps) == [("Info", "")]


# -- the two APIs match --------------------------------------------------------------

# Intentional differences, each with its reason.
ALLOWED = {
    "wait_ready": "asyncio only: the blocking constructor waits for the server "
                  "itself; an asyncio one is awaited (or used with `async with`)",
}
# Differences of behaviour under the same names and signatures:
# - context managers: the blocking API's __enter__/__exit__ are
#   __aenter__/__aexit__ in asyncio (checked below, not by name);
# - RemoteTensor.handle of a lazy proxy: the blocking one materialises it,
#   the asyncio one raises (a property cannot be awaited: `await
#   t.materialize()` first);
# - np.asarray(t) (__array__): refused for an asyncio proxy, which cannot
#   block on a Fetch.


def public(cls: type) -> dict[str, Any]:
    """Public attributes defined by the driver class itself (TensorBase's and
    ClientBase's are one object for both APIs)."""
    return {n: v for n, v in vars(cls).items() if not n.startswith("_")}


@pytest.mark.parametrize("sync_cls, aio_cls", [(tc.Client, tca.Client),
                                               (tc.RemoteTensor, tca.RemoteTensor)])
def test_same_methods_and_signatures(sync_cls: type, aio_cls: type) -> None:
    sync, aio = public(sync_cls), public(aio_cls)
    assert set(sync) ^ (set(aio) - set(ALLOWED)) == set()
    for name, s in sync.items():
        a = aio[name]
        if isinstance(s, property):
            assert isinstance(a, property), name
            continue
        assert not inspect.iscoroutinefunction(s), name
        assert inspect.iscoroutinefunction(a), f"aio {name} is not a coroutine"
        assert inspect.signature(s) == inspect.signature(a), name
    assert inspect.signature(sync_cls.__init__) == inspect.signature(aio_cls.__init__)
    for s, a in (("__enter__", "__aenter__"), ("__exit__", "__aexit__")):
        assert inspect.iscoroutinefunction(getattr(aio_cls, a))
        assert inspect.signature(getattr(sync_cls, s)) == inspect.signature(
            getattr(aio_cls, a))


def test_same_module_functions() -> None:
    names = {n for n in tca.__all__ if n not in ("Client", "RemoteTensor")}
    assert names <= set(tc.__all__)
    for name in names:
        s, a = getattr(tc, name), getattr(tca, name)
        assert inspect.signature(s) == inspect.signature(a), name
    assert {"cuda_is_available", "get", "list", "delete"} <= names
