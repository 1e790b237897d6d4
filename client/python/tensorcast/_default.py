"""The default client used by the module-level functions (``tc.tensor``...),
set by ``tc.connect``. One per process, shared by all threads."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from tensorcast._client import Client

_lock = threading.Lock()
_client: Optional[Any] = None


def set_default(client: Any) -> None:
    global _client
    with _lock:
        _client = client


def forget(client: Any) -> None:
    """Unset the default if it is ``client`` (called when it closes)."""
    global _client
    with _lock:
        if _client is client:
            _client = None


def get_default() -> "Client":
    client = _client
    if client is None:
        raise RuntimeError("no tensorcast server: call tc.connect('host:port') first")
    return client
