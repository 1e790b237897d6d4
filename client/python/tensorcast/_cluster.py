"""The client side of a tensorcast cluster, shared by the sync and asyncio
clients: the member table, the placement of new tensors and the routing of
calls by handle (docs/cluster.md#clients). No channels: the Router's
decisions are plans (see _plans.py) whose Cluster calls the client's driver
makes, and it learns of failures from the calls' errors.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Generator, NamedTuple, Optional, Sequence, Union

import grpc

from tensorcast._errors import InvalidArgumentError, TensorcastError, UnavailableError
from tensorcast.v1 import tensor_service_pb2 as pb

_HANDLE = re.compile(r"^[0-9a-f]{32}\.([a-z0-9-]{1,63})$")
# How the clients' errors begin for UNAVAILABLE (_errors.from_status); a
# node's failure names the node instead.
_SERVER_PREFIX = re.compile(r"^tensorcast server at \S+ is unavailable: ")
# A node this client saw fail stays down until an answer this long after.
DOWN_HOLD_S = 3.0
# Seconds between member-list refreshes.
REFRESH_S = 5.0
# Deadline of one Cluster call in a refresh.
REFRESH_DEADLINE_S = 1.0


def split_targets(target: Union[str, Sequence[str]]) -> list[str]:
    """``"a:1,b:2"`` or a list -> the addresses; ``dns:///...`` and
    ``host:port`` are one target each."""
    if not isinstance(target, str):
        return [t.strip() for t in target if t.strip()]
    if target.startswith("dns:") or "," not in target:
        return [target.strip()]
    return [t.strip() for t in target.split(",") if t.strip()]


def handle_node(ref: str) -> str:
    """The node id a handle names (``<32 hex>.<node>``); "" for a name or a
    plain server's handle."""
    m = _HANDLE.match(ref)
    return m.group(1) if m else ""


def normalize_device(device: Any) -> str:
    d = str(device) if device is not None else ""
    if d in ("", "None"):
        return "cpu"
    return "cuda:0" if d == "cuda" else d


def node_unavailable(node: str, address: str, why: str) -> UnavailableError:
    where = f" ({address})" if address else ""
    return UnavailableError(f"node '{node}'{where} is unavailable: {why}")


@dataclass
class Member:
    node_id: str
    address: str
    healthy: bool
    error: str = ""
    free_bytes: dict[str, int] = field(default_factory=dict)


class MemberTable:
    """Members by node id; not thread-safe (the clients hold a lock)."""

    def __init__(self) -> None:
        self.members: dict[str, Member] = {}
        self._down: dict[str, tuple[float, str]] = {}
        self._turn = 0

    def update(self, response: Any, now: Optional[float] = None) -> bool:
        """Replace the table with a ClusterResponse; False when it names no
        node id (a plain server, not a cluster)."""
        if not response.node_id:
            return False
        now = time.monotonic() if now is None else now
        members: dict[str, Member] = {}
        for m in response.members:
            if not m.node_id:
                continue
            member = Member(m.node_id, m.address, m.healthy, m.error,
                            {normalize_device(d.device): int(d.free_bytes)
                             for d in m.devices})
            down = self._down.get(m.node_id)
            if down is not None:
                if member.healthy and now - down[0] >= DOWN_HOLD_S:
                    del self._down[m.node_id]
                elif member.healthy:
                    member.healthy, member.error = False, down[1]
            members[m.node_id] = member
        self.members = members
        return True

    def mark_down(self, node: str, error: str, now: Optional[float] = None) -> None:
        self._down[node] = (time.monotonic() if now is None else now, error)
        m = self.members.get(node)
        if m is not None:
            m.healthy, m.error = False, error

    def healthy(self) -> list[str]:
        return [n for n, m in self.members.items() if m.healthy]

    def place(self, device: Any, nbytes: int = 0) -> str:
        """The healthy nodes with the device whose free bytes are within 10%
        of the most take new tensors in turn; ``nbytes`` comes off the
        chosen one's figure until the next update."""
        dev = normalize_device(device)
        candidates = [m for m in self.members.values()
                      if m.healthy and dev in m.free_bytes]
        if not candidates:
            raise UnavailableError(f"no healthy node has device {dev}")
        best = max(m.free_bytes[dev] for m in candidates)
        eligible = [m for m in candidates if m.free_bytes[dev] >= best - best // 10]
        chosen = eligible[self._turn % len(eligible)]
        self._turn += 1
        chosen.free_bytes[dev] = max(0, chosen.free_bytes[dev] - max(0, int(nbytes)))
        return chosen.node_id

    def any_healthy(self, preferred: str) -> str:
        m = self.members.get(preferred)
        if m is not None and m.healthy:
            return preferred
        for node, member in self.members.items():
            if member.healthy:
                return node
        raise UnavailableError("no healthy tensorcast node")

    def route(self, node: str) -> Member:
        """The member to call for ``node``; UnavailableError naming it when
        it is unknown or down."""
        m = self.members.get(node)
        if m is None:
            raise node_unavailable(node, "", "not a member of the cluster")
        if not m.healthy:
            raise node_unavailable(node, m.address, m.error)
        return m


def is_node_failure(code: Any, details: str) -> bool:
    """A call's UNAVAILABLE that is the called node's own failure (not the
    server's message about another node, which names it as "node '...'")."""
    return getattr(code, "name", str(code)) == "UNAVAILABLE" and "node '" not in (details or "")


class Dest(NamedTuple):
    """Where one call goes: the node (\"\" outside a cluster) and its
    address (\"\" = the client's first connection)."""
    node: str
    address: str


PLAIN = Dest("", "")


class Router:
    """The routing state of one client, sync or asyncio: the member table,
    whether the server is a cluster at all, and when to refresh. Its
    decisions are plans (generators, see _plans.py) because a refresh is a
    Cluster call that the driver makes; the state sits under a lock that is
    never held across a call, so one Router serves threads and tasks
    alike."""

    def __init__(self, seeds: Sequence[str]) -> None:
        self.seeds = list(seeds)
        self.members = MemberTable()
        self.clustered: Optional[bool] = None  # None: not known yet
        self.first_node = ""
        self._last_refresh = 0.0
        self._due = True
        self._refreshing = False
        self._lock = threading.Lock()

    def refresh(self, force: bool = False) -> Generator[Any, Any, None]:
        """Ask a member (or a seed) for the member list when it is due: a
        plan yielding ``Call("Cluster", ..., address)`` steps. One refresh
        at a time once the cluster is known; before that every caller asks
        (it has nothing to route by)."""
        from tensorcast._plans import Call  # the steps' type (no cycle at import)
        now = time.monotonic()
        with self._lock:
            if self.clustered is False:
                return
            if not (force or self._due or self.clustered is None
                    or now - self._last_refresh >= REFRESH_S):
                return
            claimed = self.clustered is not None
            if claimed:
                if self._refreshing:
                    return  # another caller refreshes; go on with this table
                self._refreshing = True
            healthy = self.members.healthy()
            first = [self.members.members[n].address for n in healthy
                     if n == self.first_node]
            addresses = list(dict.fromkeys(
                first + [self.members.members[n].address for n in healthy] + self.seeds))
        try:
            for address in addresses:
                try:
                    resp = yield Call("Cluster", pb.ClusterRequest(), address,
                                      REFRESH_DEADLINE_S)
                except TensorcastError as e:
                    if (e.code == grpc.StatusCode.UNIMPLEMENTED
                            and self.clustered is None):
                        self.clustered = False  # a server from before clusters
                        return
                    continue
                with self._lock:
                    self._last_refresh, self._due = time.monotonic(), False
                    if not self.members.update(resp):
                        if self.clustered is None:
                            self.clustered = False
                        return
                    self.clustered = True
                    self.first_node = self.first_node or resp.node_id
                return
            with self._lock:
                self._last_refresh = time.monotonic()
        finally:
            if claimed:
                with self._lock:
                    self._refreshing = False

    def _dest(self, node: str) -> Dest:
        """Called under the lock, in a cluster."""
        return Dest(node, self.members.route(node).address)

    def route_ref(self, ref: str) -> Generator[Any, Any, Dest]:
        """Where a call on ``ref`` goes: the node its handle names; any
        healthy node for a name (or ``ref`` ""); PLAIN outside a cluster."""
        if self.clustered is False:
            return PLAIN
        yield from self.refresh()
        node = handle_node(ref)
        unseen = False
        with self._lock:
            if not self.clustered:
                return PLAIN
            if not node:
                node = self.members.any_healthy(self.first_node)
            elif node not in self.members.members:
                self._due = unseen = True  # a node this client has not seen yet
        if unseen:
            yield from self.refresh()
        with self._lock:
            return self._dest(node)

    def route_new(self, device: Any, nbytes: int,
                  node: Optional[str]) -> Generator[Any, Any, Dest]:
        """Where a new tensor goes: ``node`` when given, else the placement's
        choice (free memory on the device)."""
        yield from self.refresh()
        with self._lock:
            if not self.clustered:
                if node:
                    raise InvalidArgumentError(
                        f"node {node!r} was asked for, but the server is not a cluster")
                return PLAIN
            return self._dest(node or self.members.place(device, nbytes))

    def route_node(self, node: str) -> Dest:
        with self._lock:
            return self._dest(node) if self.clustered else PLAIN

    def nodes(self) -> Generator[Any, Any, list[str]]:
        """The healthy members' node ids after a refresh ([] outside a
        cluster)."""
        yield from self.refresh(force=True)
        with self._lock:
            return self.members.healthy() if self.clustered else []

    def failed(self, dest: Dest, error: BaseException) -> BaseException:
        """A call's error; a node's own UNAVAILABLE marks it down and names
        it (the next calls to it fail fast, new tensors go elsewhere)."""
        if dest.node and isinstance(error, UnavailableError) and is_node_failure(
                "UNAVAILABLE", error.details):
            why = _SERVER_PREFIX.sub("", error.details)
            with self._lock:
                self.members.mark_down(dest.node, why)
                self._due = True
            return node_unavailable(dest.node, dest.address, why)
        return error
