"""Recycled receive memory: the first write to a fresh page costs a page fault, reused
memory does not.

On a 2-vCPU VM a socket receive into fresh memory ran 20-30% slower than into memory already
touched (bench/bench_zero_copy.py), and a plain memcpy 2-3x slower. A :class:`BufferPool`
keeps blocks that received objects no longer use and hands them out again, so a
steady stream of similar messages stops paying for faults.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from ._buffers import ALIGNMENT, _numpy, aligned_empty, padding

_PAGE = 4096


def _capacity(size: int) -> int:
    """The block size that serves ``size`` bytes: whole pages, so similar sizes share."""
    return -(-size // _PAGE) * _PAGE


class BufferPool:
    """Aligned receive buffers that return to the pool when the objects using them die.

    Pass one to :func:`picklex.recv` or :func:`picklex.read_message` as ``pool=``. Each
    buffer handed out is 64-byte aligned; once every array, view or memoryview made from it
    is gone, its memory goes back to the pool (keeping at most ``max_bytes`` in reserve,
    default 256 MiB) and a later buffer of the same size (rounded up to 4 KiB) reuses it,
    already faulted in. Memory still in use is never reused. Thread-safe. Needs numpy.

    A received buffer of more than 64 MiB comes from the pool only when one of its size is
    free; otherwise it is received into memory that grows with its bytes (a length a peer
    announced is never reserved before the bytes come) and joins the pool afterwards.
    """

    def __init__(self, max_bytes: int = 256 << 20) -> None:
        if _numpy() is None:
            raise ModuleNotFoundError("BufferPool needs numpy")
        self.max_bytes = max_bytes
        self._free: dict[int, list[object]] = {}
        self._free_bytes = 0
        # Re-entrant: a garbage collection inside a locked section can run a finalizer
        # (_release) on this same thread.
        self._lock = threading.RLock()
        self.hits = 0  # allocations served from the pool
        self.misses = 0  # allocations that needed fresh memory

    @property
    def reserved_bytes(self) -> int:
        """Bytes held in reserve, not in use by any object."""
        return self._free_bytes

    def clear(self) -> None:
        """Drop every reserved block."""
        with self._lock:
            self._free.clear()
            self._free_bytes = 0

    def allocate(self, size: int) -> memoryview:
        """A writable, 64-byte aligned ``size``-byte buffer, recycled when possible."""
        if size < _PAGE:  # small buffers: faults are not the cost, bookkeeping would be
            return aligned_empty(size)
        view = self._recycled(size)
        if view is not None:
            return view
        block = _numpy().empty(_capacity(size) + ALIGNMENT, dtype=_numpy().uint8)
        return self._hand_out(block, size, hit=False)

    def _recycled(self, size: int) -> memoryview | None:
        """A reserved buffer for ``size`` bytes if the pool holds one, else None.

        Never allocates: the receiver asks this first for a buffer whose length a peer
        announced, since memory already in reserve costs nothing to use.
        """
        if size < _PAGE:
            return None
        capacity = _capacity(size)
        with self._lock:
            blocks = self._free.get(capacity)
            if not blocks:
                return None
            block = blocks.pop()
            self._free_bytes -= capacity
        return self._hand_out(block, size, hit=True)

    def _adopt(self, view: memoryview) -> memoryview:
        """The bytes of ``view``, received into a page-aligned mapping of their own (as
        :func:`picklex._buffers.read_growing` returns for long buffers), as a pool buffer:
        the mapping joins the pool once unused."""
        block = _numpy().frombuffer(view.obj, dtype=_numpy().uint8)
        return self._hand_out(block, view.nbytes, hit=False)

    def _hand_out(self, block: Any, size: int, *, hit: bool) -> memoryview:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1
        start = padding(block.__array_interface__["data"][0])
        view = block[start : start + size]
        # The view is what every user of the buffer keeps alive (memoryview -> view -> block);
        # when it dies the block is free again.
        weakref.finalize(view, self._release, block, _capacity(size)).atexit = False
        return memoryview(view)

    def _release(self, block: object, capacity: int) -> None:
        with self._lock:
            if self._free_bytes + capacity > self.max_bytes:
                return  # over budget: let the block be freed
            self._free.setdefault(capacity, []).append(block)
            self._free_bytes += capacity
