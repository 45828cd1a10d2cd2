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

from ._buffers import ALIGNMENT, _numpy, aligned_empty, padding

_PAGE = 4096


class BufferPool:
    """Aligned receive buffers that return to the pool when the objects using them die.

    Pass one to :func:`picklex.recv` or :func:`picklex.read_message` as ``pool=``. Each
    buffer handed out is 64-byte aligned; once every array, view or memoryview made from it
    is gone, its memory goes back to the pool (keeping at most ``max_bytes`` in reserve,
    default 256 MiB) and a later buffer of the same size (rounded up to 4 KiB) reuses it,
    already faulted in. Memory still in use is never reused. Thread-safe. Needs numpy.
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
        capacity = -(-size // _PAGE) * _PAGE
        with self._lock:
            blocks = self._free.get(capacity)
            block = blocks.pop() if blocks else None
            if block is not None:
                self._free_bytes -= capacity
                self.hits += 1
            else:
                self.misses += 1
        if block is None:
            block = _numpy().empty(capacity + ALIGNMENT, dtype=_numpy().uint8)
        start = padding(block.__array_interface__["data"][0])
        view = block[start : start + size]
        # The view is what every user of the buffer keeps alive (memoryview -> view -> block);
        # when it dies the block is free again.
        weakref.finalize(view, self._release, block, capacity).atexit = False
        return memoryview(view)

    def _release(self, block: object, capacity: int) -> None:
        with self._lock:
            if self._free_bytes + capacity > self.max_bytes:
                return  # over budget: let the block be freed
            self._free.setdefault(capacity, []).append(block)
            self._free_bytes += capacity
