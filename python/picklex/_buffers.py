"""Raw byte plumbing shared by the file container and the transports.

Aligned allocation for received or read buffers, memory that grows with the bytes that
arrive (for lengths announced by a peer or a file, which may lie), and the two loops that
move a list of buffers through a vectored system call (``writev``/``sendmsg`` out,
``readv``/``recvmsg`` in) without ever joining them: partial transfers resume where they
stopped and no call is given more than ``IOV_MAX`` pieces.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from typing import Any

_numpy_module: Any = False  # not looked up yet


def _numpy() -> Any:
    """numpy if installed (imported on first use, not with picklex), else None.

    Its allocator leaves fresh pages untouched and asks for huge pages on big arrays, which
    makes it the better home for received or read buffers than a zero-filled bytearray.
    """
    global _numpy_module
    if _numpy_module is False:
        try:
            import numpy
        except ImportError:  # pragma: no cover - numpy is optional at run time
            numpy = None
        _numpy_module = numpy
    return _numpy_module


#: Alignment of every buffer handed to the unpickler (a cache line; numpy and SIMD friendly).
ALIGNMENT = 64


def _iov_max() -> int:
    try:
        value = os.sysconf("SC_IOV_MAX")
    except (AttributeError, ValueError, OSError):
        value = -1
    # Linux's UIO_MAXIOV is 1024; never trust a larger or missing answer.
    return 1024 if value <= 0 else min(value, 1024)


#: Most pieces one vectored call may carry (Linux UIO_MAXIOV).
IOV_MAX = _iov_max()


def padding(offset: int) -> int:
    """Bytes needed after ``offset`` to reach the next multiple of :data:`ALIGNMENT`."""
    return -offset % ALIGNMENT


def byte_view(obj: object) -> memoryview:
    """A flat, unsigned-byte memoryview of a contiguous buffer (no copy)."""
    view = obj if isinstance(obj, memoryview) else memoryview(obj)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    return view


def _address(obj: object) -> int:
    import ctypes

    return ctypes.addressof(ctypes.c_char.from_buffer(obj))


def aligned_empty(size: int) -> memoryview:
    """A writable, uninitialised ``size``-byte memoryview starting on a 64-byte boundary.

    The memory lives as long as any view or array made from the result does.
    """
    if size == 0:
        return memoryview(bytearray())
    np = _numpy()
    if np is not None:
        block = np.empty(size + ALIGNMENT, dtype=np.uint8)
        start = padding(block.__array_interface__["data"][0])
        return memoryview(block[start : start + size])
    block = bytearray(size + ALIGNMENT)
    start = padding(_address(block))
    return memoryview(block)[start : start + size]


def write_views(emit: Callable[[list[memoryview]], int], views: Iterable[memoryview]) -> int:
    """Push every byte of ``views`` through ``emit`` (a vectored write); returns the total.

    ``emit`` receives at most :data:`IOV_MAX` non-empty views and returns how many bytes it
    took; whatever it did not take is offered again, starting mid-view if need be.
    """
    pending = deque(v for v in views if v.nbytes)
    total = 0
    while pending:
        sent = emit(list(islice(pending, IOV_MAX)))
        if sent <= 0:
            raise OSError("vectored write made no progress")
        total += sent
        while sent:
            head = pending[0]
            if sent >= head.nbytes:
                sent -= head.nbytes
                pending.popleft()
            else:
                pending[0] = head[sent:]
                sent = 0
    return total


def read_views(fill: Callable[[list[memoryview]], int], views: Sequence[memoryview]) -> int:
    """Fill ``views`` completely through ``fill`` (a vectored read); returns the bytes read.

    Stops early, returning the short count, when ``fill`` reports end of input (0 bytes);
    the caller decides what a short read means.
    """
    pending = deque(v for v in views if v.nbytes)
    total = 0
    while pending:
        got = fill(list(islice(pending, IOV_MAX)))
        if got <= 0:
            return total
        total += got
        while got:
            head = pending[0]
            if got >= head.nbytes:
                got -= head.nbytes
                pending.popleft()
            else:
                pending[0] = head[got:]
                got = 0
    return total


#: A length announced by a peer or a file that is larger than this is not reserved at once:
#: :func:`read_growing` starts with this much memory and at most doubles it as bytes arrive.
GROWTH_STEP = 64 << 20


def _anonymous(size: int) -> mmap.mmap:
    """A fresh private anonymous mapping: page aligned, untouched until written."""
    try:
        block = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
    except OSError as exc:  # what mmap says when the memory (or address space) is not there
        if exc.errno == errno.ENOMEM:
            raise MemoryError(f"cannot reserve {size} bytes") from exc
        raise
    if hasattr(mmap, "MADV_HUGEPAGE"):  # as numpy asks for its large arrays
        try:
            block.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # pragma: no cover - kernels without transparent huge pages
            pass
    return block


def _grow(block: mmap.mmap, size: int, filled: int) -> mmap.mmap:
    """``block`` enlarged to ``size`` bytes, its first ``filled`` bytes kept."""
    try:
        block.resize(size)  # mremap: the pages move, their bytes are not copied
        return block
    except OSError as exc:
        if exc.errno == errno.ENOMEM:
            raise MemoryError(f"cannot reserve {size} bytes") from exc
        raise
    except (BufferError, SystemError):
        # A view of it is still alive (a file object's readinto kept the one it was given),
        # or this platform has no mremap: copy into a new block and leave the old one to
        # whoever still holds it.
        bigger = _anonymous(size)
        memoryview(bigger)[:filled] = memoryview(block)[:filled]
        return bigger


def read_growing(fill: Callable[[list[memoryview]], int], length: int) -> tuple[memoryview, int]:
    """Read ``length`` bytes through ``fill`` (as for :func:`read_views`) into fresh memory
    that is reserved as the bytes arrive; returns it and how many bytes were read.

    Up to :data:`GROWTH_STEP` bytes come from :func:`aligned_empty`. A longer buffer starts
    as an anonymous mapping of that size and, each time it is full, grows to at most twice
    its size, never past ``length`` rounded up to a page: whatever ``length`` claims, the
    memory held is at most :data:`GROWTH_STEP` or twice what arrived, whichever is larger.
    On Linux a mapping grows in place or by moving its pages (``mremap``), so no byte is
    copied, and once complete it is exactly the pages ``length`` needs. The view returned
    is ``length`` bytes long, page aligned when it is a mapping; a short count means
    ``fill`` reported end of input, and the caller decides what that means.
    """
    if length <= GROWTH_STEP:
        view = aligned_empty(length)
        return view, read_views(fill, [view])
    limit = -(-length // mmap.PAGESIZE) * mmap.PAGESIZE
    capacity = GROWTH_STEP
    block = _anonymous(capacity)
    filled = 0
    while True:
        end = min(capacity, length)
        filled += read_views(fill, [memoryview(block)[filled:end]])
        if filled < end or end == length:
            return memoryview(block)[:length], filled
        capacity = min(limit, 2 * capacity)
        block = _grow(block, capacity, filled)
