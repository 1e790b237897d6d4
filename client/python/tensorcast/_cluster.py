"""The client side of a tensorcast cluster, shared by the sync and asyncio
clients: the member table, the placement of new tensors and the routing of
calls by handle (docs/cluster.md#clients). Pure logic, no channels: the
clients feed it Cluster answers and call failures and ask it which node a
call goes to.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

from tensorcast._errors import UnavailableError

_HANDLE = re.compile(r"^[0-9a-f]{32}\.([a-z0-9-]{1,63})$")
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
