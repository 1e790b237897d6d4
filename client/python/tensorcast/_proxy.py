"""What the blocking and the asyncio RemoteTensor share: metadata, the lazy
conversion chain, and the conversion plans.

A proxy is either *materialised* (it names a server tensor by handle) or
*lazy*: a materialised source plus pending conversions (detach, cpu, dtype
casts) that cost nothing until something needs their result. ``numpy()``
sends them with the Fetch (detach, cpu and the last cast travel in the
FetchRequest), so ``t.detach().cpu().float().numpy()`` is one Fetch and no
new server tensor. A lazy proxy becomes a server tensor only when one is
needed (its ``.handle``, a device move): that is *materialising*.

The plans below are generators that yield the calls they need through the
client's own plans (_plans.py) and receive their results, so the same logic
drives the blocking proxy and the asyncio one (a sans-I/O design): each
public I/O method of TensorBase's subclasses runs one ``_..._plan``.
"""

from __future__ import annotations

import builtins
import dataclasses
import math
import threading
from typing import Any, Optional, TypeVar

import numpy as np

from tensorcast import _core, _cuda_ipc, _dtypes
from tensorcast._core import Meta
from tensorcast._dtypes import DTypeLike, dtype
from tensorcast._errors import NotFoundError
from tensorcast._plans import Plan, Wait, require_torch
from tensorcast.v1 import tensor_service_pb2 as pb


@dataclasses.dataclass(frozen=True)
class Pending:
    """Conversions waiting on a lazy proxy, applied in this order: casts
    (each in turn), then cpu, with detach anywhere (it commutes)."""

    detach: bool = False
    cpu: bool = False
    casts: tuple[dtype, ...] = ()

    def then_cast(self, source: dtype, target: dtype) -> "Pending":
        """Add a cast, folding it into the previous one when that one loses
        nothing (float32 -> float64 -> float16 equals float32 -> float16) and
        dropping casts that end where they started."""
        casts = self.casts
        current = casts[-1] if casts else source
        if target is current:
            return self
        before = casts[-2] if len(casts) >= 2 else source
        if casts and _dtypes.casts_exactly(before, casts[-1]):
            casts = casts[:-1]
        casts = casts + (target,)
        if len(casts) == 1 and casts[0] is source:
            casts = ()
        return dataclasses.replace(self, casts=casts)

    @property
    def empty(self) -> bool:
        return not (self.detach or self.cpu or self.casts)


def pending_meta(source: Meta, p: Pending) -> Meta:
    """What the tensor would be once the pending conversions are done."""
    out = p.casts[-1] if p.casts else source.dtype
    requires_grad = (source.requires_grad and not p.detach
                     and all(c.can_require_grad for c in p.casts))
    return Meta(shape=source.shape, dtype=out,
                device="cpu" if p.cpu else source.device,
                requires_grad=requires_grad, handle=None, name="",
                nbytes=math.prod(source.shape) * out.itemsize)


def plan_materialize(client: Any, source: Meta, p: Pending, device: Optional[str] = None,
                     copy: bool = False) -> Plan[Meta]:
    """Make a server tensor for ``source`` + ``p`` (+ an optional device move
    and copy). Returns the new tensor's Meta; intermediates are deleted. The
    result's handle equals ``source.handle`` only when nothing changed."""
    target = device if device is not None else ("cpu" if p.cpu else None)
    if target == source.device and not copy:
        target = None
    cur = source
    temps: list[str] = []

    def step_done(new: Meta) -> Meta:
        if cur.handle != source.handle and cur.handle != new.handle:
            temps.append(cur.handle)  # type: ignore[arg-type]
        return new

    try:
        casts = p.casts
        for i, c in enumerate(casts):
            last = i == len(casts) - 1
            new = yield from client._to_meta(cur.handle, target if last else None, c,
                                             copy and last)
            cur = step_done(new)
        if not casts and (target is not None or copy):
            new = yield from client._to_meta(cur.handle, target, None, copy)
            cur = step_done(new)
        if p.detach and (cur.handle == source.handle or cur.requires_grad):
            new = yield from client._detach_meta(cur.handle)
            cur = step_done(new)
    except BaseException:
        if cur.handle != source.handle:
            temps.append(cur.handle)  # type: ignore[arg-type]
        if temps:
            yield from client._plan_delete_quietly(temps)
        raise
    if temps:
        yield from client._plan_delete_quietly(temps)
    return cur


def plan_fetch(client: Any, source: Meta, p: Optional[Pending], *, force: bool,
               progress: bool, lazy: bool, bits: bool = False,
               out: Any = None, device: Optional[int] = None) -> Plan[Any]:
    """Fetch ``source`` + ``p`` as an array: every cast but the last becomes
    a temporary server tensor (only when casts cannot be folded); the last
    cast, detach and cpu travel in the FetchRequest. ``out``: the caller's
    array to fill (checked before any call), returned. ``device``: into
    this GPU through CUDA IPC when it can (a ``_cuda_ipc.CudaArray``),
    else an array as without it."""
    p = p or Pending()
    if out is not None:
        out = _core.check_out(out, p.casts[-1] if p.casts else source.dtype,
                              source.shape)
    casts = p.casts
    cur = source
    temps: list[str] = []
    try:
        for c in casts[:-1]:
            new = yield from client._to_meta(cur.handle, None, c, False)
            if new.handle != cur.handle and new.handle != source.handle:
                temps.append(new.handle)
            cur = new
        dt = casts[-1] if casts else cur.dtype
        wants_grad = pending_meta(source, p).requires_grad if lazy else source.requires_grad
        req = pb.FetchRequest(
            ref=cur.handle, format=pb.FORMAT_RAW,
            dtype=dt.proto if dt is not cur.dtype else pb.DTYPE_UNSPECIFIED,
            detach=lazy and not wants_grad, cpu=p.cpu, force=force)
        array = yield from client._fetch(req, progress=progress, bits=bits,
                                         nbytes=cur.numel * dt.itemsize, out=out,
                                         device=device)
    finally:
        if temps:
            yield from client._plan_delete_quietly(temps)
    return array


T = TypeVar("T", bound="TensorBase")

# Guards each proxy's ``_materializing`` (a check-and-set, no I/O).
_MATERIALIZING = threading.Lock()


class TensorBase:
    """Metadata and lazy chaining shared by both RemoteTensor classes.

    Subclasses provide the I/O. A proxy is materialised (``_meta.handle`` is
    set, ``_pending`` is None) or lazy (``_source`` is a materialised proxy
    and ``_pending`` the conversions waiting on it).
    """

    _client: Any
    _meta: Meta
    _source: Optional["TensorBase"]
    _pending: Optional[Pending]

    def __init__(self, client: Any, meta: Meta, *, source: Optional["TensorBase"] = None,
                 pending: Optional[Pending] = None) -> None:
        self._client = client
        self._meta = meta
        self._source = source
        self._pending = pending
        self._finalizer: Any = None
        self._deleted = False
        # While a plan materialises this lazy proxy: the client's event it
        # sets when done (guarded by _MATERIALIZING).
        self._materializing: Any = None

    # -- metadata (no I/O) ---------------------------------------------------

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape, a tuple of ints (torch.Size is a tuple too)."""
        return self._meta.shape

    @property
    def dtype(self) -> _dtypes.dtype:
        """The element type, e.g. ``tc.float32``."""
        return self._meta.dtype

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda:N"``."""
        return self._meta.device

    @property
    def requires_grad(self) -> builtins.bool:
        """Whether the tensor requires grad (so ``.numpy()`` refuses it)."""
        return self._meta.requires_grad

    @property
    def name(self) -> str:
        """The server-side name, or ``""`` (always ``""`` while lazy)."""
        return self._meta.name

    @property
    def is_cuda(self) -> builtins.bool:
        return self._meta.device.startswith("cuda")

    @property
    def is_lazy(self) -> builtins.bool:
        """True while conversions are pending and no server tensor exists for
        this proxy yet."""
        return self._pending is not None

    @property
    def owns_handle(self) -> builtins.bool:
        """Whether this proxy deletes its server tensor when dropped."""
        return self._finalizer is not None and self._finalizer.alive

    @property
    def ndim(self) -> int:
        return len(self._meta.shape)

    @property
    def nbytes(self) -> int:
        return self._meta.numel * self._meta.dtype.itemsize

    def is_floating_point(self) -> builtins.bool:
        return self._meta.dtype.is_floating_point

    def is_complex(self) -> builtins.bool:
        return self._meta.dtype.is_complex

    def dim(self) -> int:
        return len(self._meta.shape)

    def numel(self) -> int:
        return self._meta.numel

    def element_size(self) -> int:
        return self._meta.dtype.itemsize

    def size(self, dim: Optional[int] = None) -> Any:
        """The shape, or one dimension of it."""
        if dim is None:
            return self._meta.shape
        return self._meta.shape[dim]

    def __len__(self) -> int:
        if not self._meta.shape:
            raise TypeError("len() of a 0-d tensor")
        return self._meta.shape[0]

    def __repr__(self) -> str:
        cls = type(self).__name__
        if self._deleted:
            return f"<{cls} (deleted)>"
        where = (f"lazy conversion of {self._source._meta.handle}"
                 if self._pending is not None and self._source is not None
                 else f"handle={self._meta.handle}")
        extra = f", name={self._meta.name!r}" if self._meta.name else ""
        grad = ", requires_grad=True" if self._meta.requires_grad else ""
        return (f"{cls}({where}{extra}, shape={self._meta.shape}, "
                f"dtype={self._meta.dtype!r}, device={self._meta.device!r}{grad})")

    # -- lazy chaining (no I/O) ---------------------------------------------

    def _check_alive(self) -> None:
        if self._deleted:
            raise NotFoundError("this RemoteTensor was deleted")

    def _parts(self: T) -> tuple[T, Pending]:
        """(materialised source, pending) describing this proxy: a consistent
        snapshot even while another thread materialises it, since
        materialize() clears ``_pending`` before ``_source`` and this reads
        them in the other order."""
        source = self._source
        pending = self._pending
        if pending is not None and source is not None:
            return source, pending  # type: ignore[return-value]
        return self, Pending()

    def _chain(self: T, *, detach: builtins.bool = False, cpu: builtins.bool = False,
               cast: Optional[_dtypes.dtype] = None) -> T:
        """A lazy proxy with one more pending conversion, or self when it
        changes nothing that PyTorch would return a new tensor for."""
        self._check_alive()
        source, p = self._parts()
        new = p
        if detach:
            new = dataclasses.replace(new, detach=True)
        if cpu and self._meta.device != "cpu":
            new = dataclasses.replace(new, cpu=True)
        if cast is not None:
            new = new.then_cast(source._meta.dtype, cast)
        if new == p and not detach:
            return self  # .cpu() on a cpu tensor, .float() on float32
        if new.empty:
            return source
        child = type(self).__new__(type(self))
        TensorBase.__init__(child, self._client, pending_meta(source._meta, new),
                            source=source, pending=new)
        return child

    def detach(self: T) -> T:
        """A proxy that does not require grad (pending: costs nothing until
        used; ``.numpy()`` sends it with the Fetch)."""
        return self._chain(detach=True)

    def cpu(self: T) -> T:
        """This tensor on the host (pending; self when already there)."""
        return self._chain(cpu=True)

    def float(self: T) -> T:
        """Cast to float32 (pending; done in the Fetch stream)."""
        return self._chain(cast=_dtypes.float32)

    def double(self: T) -> T:
        """Cast to float64."""
        return self._chain(cast=_dtypes.float64)

    def half(self: T) -> T:
        """Cast to float16."""
        return self._chain(cast=_dtypes.float16)

    def bfloat16(self: T) -> T:
        """Cast to bfloat16 (fetched RAW; NumPy needs ml_dtypes for it)."""
        return self._chain(cast=_dtypes.bfloat16)

    def int(self: T) -> T:
        """Cast to int32 (drops requires_grad, as in PyTorch)."""
        return self._chain(cast=_dtypes.int32)

    def long(self: T) -> T:
        """Cast to int64."""
        return self._chain(cast=_dtypes.int64)

    def short(self: T) -> T:
        """Cast to int16."""
        return self._chain(cast=_dtypes.int16)

    def char(self: T) -> T:
        """Cast to int8."""
        return self._chain(cast=_dtypes.int8)

    def byte(self: T) -> T:
        """Cast to uint8."""
        return self._chain(cast=_dtypes.uint8)

    def bool(self: T) -> T:
        """Cast to bool (x != 0)."""
        return self._chain(cast=_dtypes.bool_)

    def cfloat(self: T) -> T:
        """Cast to complex64."""
        return self._chain(cast=_dtypes.complex64)

    def cdouble(self: T) -> T:
        """Cast to complex128."""
        return self._chain(cast=_dtypes.complex128)

    def type_as(self: T, other: "TensorBase") -> T:
        """Cast to ``other``'s dtype."""
        return self._chain(cast=other.dtype)

    def _fetch_plan(self, *, force: builtins.bool, progress: builtins.bool,
                    cast: Optional[_dtypes.dtype] = None,
                    bits: builtins.bool = False, out: Any = None,
                    device: Optional[builtins.int] = None) -> Plan[Any]:
        self._check_alive()
        source, p = self._parts()
        if cast is not None:
            p = p.then_cast(source._meta.dtype, cast)
        lazy = source is not self
        return plan_fetch(self._client, source._meta, p, force=force, progress=progress,
                          lazy=lazy, bits=bits, out=out, device=device)

    def _scalar_cast(self) -> Optional[_dtypes.dtype]:
        """For tolist()/item(): bfloat16 comes back as float32 (exact) when
        ml_dtypes is missing."""
        if self._meta.dtype is _dtypes.bfloat16 and not _dtypes.have_ml_dtypes():
            return _dtypes.float32
        return None

    # -- the plans of the I/O methods (the subclasses run them) ---------------

    def _materialize_plan(self: T) -> Plan[T]:
        """Make the server tensor of a lazy proxy (no-op otherwise), once:
        a plan that finds another one materialising the same proxy (on
        another thread, or another task) waits for it (a Wait step) and
        takes its result, or tries itself if that one failed."""
        while True:
            self._check_alive()
            source, pending = self._source, self._pending
            if pending is None or source is None:
                return self
            with _MATERIALIZING:
                running = self._materializing
                if running is None:
                    self._materializing = mine = self._client._event()
            if running is None:
                break
            yield Wait(running)
        try:
            meta = yield from plan_materialize(self._client, source._meta, pending)
            if self._deleted:  # delete() came meanwhile: the new tensor goes too
                if meta.handle != source._meta.handle and meta.handle is not None:
                    yield from self._client._plan_delete_quietly([meta.handle])
            else:
                self._meta, self._pending = meta, None
                if meta.handle != source._meta.handle:
                    self._source = None  # our own handle (shared storage is kept alive)
                    self._client._own(self)
        finally:
            # Only now, the proxy updated: a waiter then finds it materialised.
            with _MATERIALIZING:
                self._materializing = None
            mine.set()
        return self

    def _handle_plan(self) -> Plan[str]:
        """The handle, materialising a lazy proxy first."""
        yield from self._materialize_plan()
        assert self._meta.handle is not None
        return self._meta.handle

    def _numpy_plan(self, *, force: builtins.bool, progress: builtins.bool,
                    out: Any) -> Plan[np.ndarray]:
        _core.check_fetchable(self._meta.dtype)  # raised here, before any call
        return self._fetch_plan(force=force, progress=progress, out=out)

    def _tolist_plan(self) -> Plan[Any]:
        cast = self._scalar_cast()
        return (yield from self._fetch_plan(force=True, progress=False, cast=cast)).tolist()

    def _item_plan(self) -> Plan[Any]:
        if self._meta.numel != 1:
            raise RuntimeError(f"a Tensor with {self._meta.numel} elements cannot be "
                               "converted to Scalar")
        cast = self._scalar_cast()
        return (yield from self._fetch_plan(force=True, progress=False, cast=cast)).item()

    def _device_fetch_plan(self, device: builtins.int) -> Plan[Any]:
        """The values fetched for this process's GPU ``device``: a
        ``_cuda_ipc.CudaArray`` the server wrote through CUDA IPC, or a
        host array (bfloat16 as raw uint16) when that cannot be used."""
        return self._fetch_plan(force=True, progress=False, bits=True, device=device)

    def _cuda_array_plan(self, device: Any) -> Plan[Any]:
        index = 0 if device is None else _core.cuda_index(device)
        if _cuda_ipc.typestr(self.dtype) is None:  # pragma: no cover - every dtype has one
            raise TypeError(f"{self.dtype.name} has no __cuda_array_interface__ type")
        got = yield from self._device_fetch_plan(index)
        if not isinstance(got, _cuda_ipc.CudaArray):
            raise RuntimeError("cuda_array() needs CUDA IPC, which cannot be used: "
                               f"{self._client.cuda_ipc_status['why']} (fetch to the host "
                               "instead: numpy())")
        return got

    def _torch_plan(self, device: Any) -> Plan[Any]:
        torch = require_torch()
        local = _cuda_ipc.torch_device_index(torch, device)
        dt = self.dtype
        if local is not None and _cuda_ipc.typestr(dt) is not None:
            got = yield from self._device_fetch_plan(local)
            if isinstance(got, _cuda_ipc.CudaArray):
                t = _cuda_ipc.to_torch(torch, got, dt)
                return t.requires_grad_(self._meta.requires_grad)
            array = got
        else:
            array = yield from self._fetch_plan(force=True, progress=False, bits=True)
        if self._meta.dtype is _dtypes.bfloat16:
            t = torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        else:
            t = torch.from_numpy(array)
        if device is not None:
            t = t.to(device)
        return t.requires_grad_(self._meta.requires_grad)

    def _to_plan(self: T, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Plan[T]:
        device, dt, copy = _core.parse_to_args(args, kwargs)
        self._check_alive()
        if device is not None and device == self._meta.device:
            device = None
        if not copy and (device is None or device == "cpu"):
            return self._chain(cpu=device == "cpu", cast=dt)
        source, p = self._parts()
        if dt is not None:
            p = p.then_cast(source._meta.dtype, dt)
        meta = yield from plan_materialize(self._client, source._meta, p, device=device,
                                           copy=copy)
        if meta.handle == source._meta.handle:
            return source
        return self._client._wrap(meta, owned=True)

    def _cuda_plan(self: T, device: Optional[Any]) -> Plan[T]:
        target = "cuda" if device is None else _core.normalize_device(device)
        return self._to_plan((), {"device": target})

    def _release_for_delete(self) -> str:
        """Stop owning; return the handle to delete ("" when there is none of
        our own: a lazy proxy, or one already deleted)."""
        if self._deleted:
            return ""
        self._deleted = True
        if self._finalizer is not None:
            self._finalizer.detach()
        if self._pending is not None or self._meta.handle is None:
            self._source = None
            return ""
        if self._source is not None:  # shares its source's handle
            self._source = None
            return ""
        self._client._disown(self._meta.handle)
        return self._meta.handle

    def _delete_plan(self) -> Plan[None]:
        handle = self._release_for_delete()
        if not handle:
            return
        try:
            yield from self._client._unary("Delete", pb.DeleteRequest(refs=[handle]), handle)
        except NotFoundError:
            pass  # already gone (expired, or deleted by name)

    def _copy_to_plan(self, node: str, device: Any, dtype: Optional[DTypeLike],
                      name: Optional[str], ttl: Optional[builtins.float]) -> Plan[Any]:
        return self._client._plan_copy(self, node, device, dtype, name, ttl)

    def _exit_plan(self) -> Plan[None]:
        """The end of a ``with`` block: delete the tensor if this proxy owns
        it (or drop its pending conversions)."""
        if self.owns_handle or self._pending is not None:
            yield from self._delete_plan()
