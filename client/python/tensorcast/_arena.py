"""Arrays that live in a shared-memory region the client lends its server
(``Client.shared_empty``): Put from one, or Fetch into one, and the server
copies straight between the tensor and the array's memory, one copy, no
client-side copy. The I/O-free part both drivers share: the allocator, the
range check that finds an array's region offset, and the guard around a
transfer that uses it."""

from __future__ import annotations

import bisect
import contextlib
import math
import threading
import warnings
import weakref
from typing import Any, Callable, Iterator, Optional

import numpy as np

from tensorcast import _fastpath

# Where each array starts: a multiple of this from the region's start.
ALIGNMENT = 64
# The size of the region lent on the first shared_empty, unless that array is
# larger (Client.shared_arena_bytes).
DEFAULT_ARENA_BYTES = 256 << 20


def _round_up(n: int) -> int:
    return max(ALIGNMENT, (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT)


class Slots:
    """Data offsets ``[start, end)`` of a lent region carved into slots:
    first fit over a free list kept in offset order, neighbours merged on
    free; thread-safe. A slot may be quarantined (never reused while the
    region lives) when a transfer on it ended without the server's answer.
    The host arena (Arena) and the device one (_cuda_ipc.DeviceArena) are
    made of it."""

    what = "shared-memory arena"  # in errors

    def __init__(self, start: int, end: int) -> None:
        self.start = start  # region offsets [start, end) hold data
        self.end = end
        self._lock = threading.Lock()
        self._free: list[tuple[int, int]] = [(self.start, self.end - self.start)]
        self._used: dict[int, int] = {}  # offset -> bytes
        self._starts: list[int] = []  # the keys of _used, sorted
        self._quarantined: set[int] = set()
        self.closed = False

    # -- the allocator ---------------------------------------------------------------

    def allocate(self, nbytes: int) -> int:
        """A region offset with ``nbytes`` (rounded up to ALIGNMENT) free;
        MemoryError when no free run is large enough."""
        want = _round_up(nbytes)
        with self._lock:
            if self.closed:
                raise RuntimeError(f"the {self.what} is closed (its client closed)")
            for i, (off, size) in enumerate(self._free):
                if size >= want:
                    if size == want:
                        del self._free[i]
                    else:
                        self._free[i] = (off + want, size - want)
                    self._used[off] = want
                    bisect.insort(self._starts, off)
                    return off
            free = sum(s for _, s in self._free)
        raise MemoryError(
            f"the shared-memory arena ({self.end - self.start} bytes, {free} free) has no "
            f"free run of {want} bytes: free shared arrays, or set the client's "
            f"shared_arena_bytes larger before its first shared_empty")

    def release(self, off: int) -> None:
        """Give the slot at ``off`` back (a quarantined one is kept out)."""
        with self._lock:
            size = self._used.pop(off, None)
            if size is None:
                return
            del self._starts[bisect.bisect_left(self._starts, off)]
            if off in self._quarantined or self.closed:
                return  # never reused: the server may still touch it
            i = bisect.bisect_left(self._free, (off, 0))
            # Merge with the run after, then the one before.
            if i < len(self._free) and off + size == self._free[i][0]:
                size += self._free[i][1]
                del self._free[i]
            if i > 0 and self._free[i - 1][0] + self._free[i - 1][1] == off:
                prev = self._free[i - 1]
                self._free[i - 1] = (prev[0], prev[1] + size)
            else:
                self._free.insert(i, (off, size))

    def free_bytes(self) -> int:
        with self._lock:
            return sum(s for _, s in self._free)

    @contextlib.contextmanager
    def transfer(self, off: int,
                 answered: Callable[[BaseException], bool]) -> Iterator[None]:
        """Around a transfer the server makes at ``off``: if it ends
        abnormally, but not with the server's own answer (``answered``:
        sent once its copies ended), the slot holding ``off`` is
        quarantined."""
        try:
            yield
        except BaseException as e:
            if answered(e):
                raise
            with self._lock:
                i = bisect.bisect_right(self._starts, off) - 1
                if i >= 0:
                    self._quarantined.add(self._starts[i])
            raise

    def live(self) -> int:
        """How many slots are in use."""
        with self._lock:
            return len(self._used)

    def quarantined(self) -> int:
        """How many slots were quarantined (the server may still touch them)."""
        with self._lock:
            return len(self._quarantined)


class Arena(Slots):
    """A lent region (a ``_fastpath.SharedMemory``, its own, beside the one
    copying transfers use) carved into arrays. First fit over a free list
    kept in offset order, neighbours merged on free; thread-safe.

    An array's slot is freed when the last object holding its memory goes
    (weakref.finalize on the buffer object every view of it refers to), so a
    transfer that holds the array keeps the slot. A transfer cut short
    (a local deadline or cancellation, a lost connection: not an error the
    server answered, which ends its copies first) may leave the server
    still copying: its slot is then quarantined, never reused while the
    region lives.

    close() releases the region at the server at once, which discards its
    data; arrays still alive keep the mapping (their memory stays valid,
    its contents are not kept: close() warns) and the mapping goes with the
    last of them."""

    def __init__(self, memory: _fastpath.SharedMemory) -> None:
        assert memory.map is not None
        super().__init__(memory.data_offset, memory.data_offset + memory.size)
        self.memory = memory
        self.region: str = memory.region
        probe = np.frombuffer(memory.map, dtype=np.uint8, count=1)
        self.base: int = probe.__array_interface__["data"][0]
        del probe

    def empty(self, shape: Any, dtype: Any) -> np.ndarray:
        """A new C-contiguous array (uninitialised) in the region."""
        dt = np.dtype(dtype)
        shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(
            int(s) for s in shape)
        if any(s < 0 for s in shape):
            raise ValueError(f"negative dimension in shape {shape}")
        nbytes = math.prod(shape) * dt.itemsize
        off = self.allocate(nbytes)
        assert self.memory.map is not None
        try:
            flat = np.frombuffer(memoryview(self.memory.map)[off:off + nbytes], dtype=dt,
                                 count=math.prod(shape))
        except BaseException:
            self.release(off)
            raise
        # The memoryview NumPy made for the buffer: every view of the array
        # (and every export of one) holds it, so it goes with the last.
        weakref.finalize(flat.base, self.release, off)
        return flat.reshape(shape)

    # -- what transfers use ------------------------------------------------------------

    def locate(self, array: Any, nbytes: int) -> Optional[int]:
        """The region offset of ``array``'s ``nbytes`` when they lie, C-contiguous,
        inside one live array of this region; else None (the copying
        path)."""
        if self.closed or nbytes <= 0:
            return None
        try:
            a = array if isinstance(array, np.ndarray) else np.frombuffer(array, np.uint8)
        except (TypeError, ValueError, BufferError):
            return None
        if not a.flags.c_contiguous or a.nbytes != nbytes:
            return None
        off = int(a.__array_interface__["data"][0]) - self.base
        if off < self.start or off + nbytes > self.end:
            return None
        with self._lock:
            i = bisect.bisect_right(self._starts, off) - 1
            if i < 0:
                return None
            slot = self._starts[i]
            if off + nbytes > slot + self._used[slot]:
                return None
        return off

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._free = []
            alive = len(self._used)
        if alive:
            warnings.warn(
                f"{alive} shared arrays (shared_empty) outlive their client: the server "
                f"discards the region's data when it is released, so their contents are "
                f"lost (the memory itself stays valid until they go); copy what you keep "
                f"before close()", RuntimeWarning, stacklevel=5)
        self.memory.close()
