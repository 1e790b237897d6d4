"""The module-level functions of ``tensorcast``: torch-like names that act
on the default client (set by :func:`connect`)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from tensorcast import _default
from tensorcast._client import Client, RemoteTensor
from tensorcast._dtypes import DTypeLike


def connect(target: Any = None, token: Optional[str] = None, *,
            timeout: float = 30.0, connect_timeout: float = 5.0,
            default: bool = True, **kwargs: Any) -> Client:
    """Connect to a tensorcast server and make it the default for the
    module-level functions (``tc.tensor``, ``tc.stats``...).

    ``target`` is ``host:port`` (default ``$TENSORCAST_SERVER`` or
    127.0.0.1:50051); ``token`` a bearer token, sent as ``authorization:
    Bearer TOKEN`` on every call (default ``$TENSORCAST_TOKEN``);
    ``timeout`` the seconds allowed for each unary call. A server that does
    not answer within ``connect_timeout`` raises :class:`UnavailableError`
    (so does a plaintext client against a TLS server, and the reverse).
    Other keyword arguments go to :class:`Client`, among them TLS:
    ``root_certificates=`` (PEM bytes or str of the CAs to trust; turns TLS
    on), ``tls=True`` (TLS with the system's roots), and
    ``certificate_chain=``/``private_key=`` (a client certificate, for
    mutual TLS). Use the client as a context manager to close it (and
    delete the tensors it owns) at the end of a block.
    """
    client = Client(target, token, timeout=timeout, connect_timeout=connect_timeout,
                    **kwargs)
    if default:
        _default.set_default(client)
    return client


def default_client() -> Client:
    """The client that module-level functions use (RuntimeError if none)."""
    return _default.get_default()


def tensor(data: Any, dtype: Optional[DTypeLike] = None, device: Any = "cpu",
           requires_grad: bool = False, **kwargs: Any) -> RemoteTensor:
    """As ``torch.tensor``: a new server tensor from (nested) Python numbers,
    a NumPy array or a torch tensor. See :meth:`Client.tensor`."""
    return _default.get_default().tensor(data, dtype, device, requires_grad, **kwargs)


def from_numpy(array: np.ndarray, device: Any = "cpu", **kwargs: Any) -> RemoteTensor:
    """As ``torch.from_numpy`` (but a copy on the server): upload any NumPy
    array. See :meth:`Client.from_numpy`."""
    return _default.get_default().from_numpy(array, device, **kwargs)


def from_torch(x: Any, device: Any = None, **kwargs: Any) -> RemoteTensor:
    """Upload a torch tensor. See :meth:`Client.from_torch`."""
    return _default.get_default().from_torch(x, device, **kwargs)


def zeros(*size: Any, **kwargs: Any) -> RemoteTensor:
    """As ``torch.zeros``. See :meth:`Client.zeros`."""
    return _default.get_default().zeros(*size, **kwargs)


def ones(*size: Any, **kwargs: Any) -> RemoteTensor:
    """As ``torch.ones``. See :meth:`Client.ones`."""
    return _default.get_default().ones(*size, **kwargs)


def full(size: Sequence[int], fill_value: Any, **kwargs: Any) -> RemoteTensor:
    """As ``torch.full``. See :meth:`Client.full`."""
    return _default.get_default().full(size, fill_value, **kwargs)


def arange(start: float, end: Optional[float] = None, step: float = 1,
           **kwargs: Any) -> RemoteTensor:
    """As ``torch.arange``. See :meth:`Client.arange`."""
    return _default.get_default().arange(start, end, step, **kwargs)


def eye(n: int, m: Optional[int] = None, **kwargs: Any) -> RemoteTensor:
    """As ``torch.eye``. See :meth:`Client.eye`."""
    return _default.get_default().eye(n, m, **kwargs)


def rand(*size: Any, **kwargs: Any) -> RemoteTensor:
    """As ``torch.rand`` (``seed=`` makes it reproducible). See
    :meth:`Client.rand`."""
    return _default.get_default().rand(*size, **kwargs)


def get(ref: str) -> RemoteTensor:
    """A non-owning proxy for an existing tensor, by handle or name."""
    return _default.get_default().get(ref)


def list(name_prefix: str = "") -> "List[RemoteTensor]":  # noqa: A001 - torch-like name
    """Every tensor on the server, as non-owning proxies."""
    return _default.get_default().list(name_prefix)


def delete(*refs: Any) -> int:
    """Delete tensors by handle, name or proxy."""
    return _default.get_default().delete(*refs)


def shared_empty(shape: Any, dtype: Any = float) -> np.ndarray:
    """A NumPy array in the default client's shared-memory region (see
    :meth:`Client.shared_empty`)."""
    return _default.get_default().shared_empty(shape, dtype)


def stats() -> "Dict[str, Dict[str, Any]]":
    """Pool figures per device: ``tc.stats()["cpu"]["allocated_bytes"]``."""
    return _default.get_default().stats()


def server_info() -> "Dict[str, Any]":
    """The server's version, CUDA availability and totals."""
    return _default.get_default().server_info()


def cuda_is_available() -> bool:
    """Whether the default server has CUDA."""
    return _default.get_default().cuda_is_available()


def empty_cache(device: Optional[str] = None) -> int:
    """Release cached pool blocks on the server; returns the bytes released."""
    return _default.get_default().empty_cache(device)
