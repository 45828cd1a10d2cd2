"""Raw byte plumbing shared by the file container and the transports.

Aligned allocation for received or read buffers, and the two loops that move a list of
buffers through a vectored system call (``writev``/``sendmsg`` out, ``readv``/``recvmsg``
in) without ever joining them: partial transfers resume where they stopped and no call is
given more than ``IOV_MAX`` pieces.
"""

from __future__ import annotations

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
