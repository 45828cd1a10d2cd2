"""Shared-memory segments: one anonymous memfd per pickled object, mapped without copying.

A segment holds what a framed message holds (docs/FORMAT.md, "Shared-memory segment"): the
header and table of :mod:`picklex._framing`, the pickle stream, then every out-of-band buffer,
each starting on a 64-byte boundary so that a mapping of the segment can hand the unpickler
aligned views. The segment is a ``memfd``: it has no name in any file system, so nothing can
outlive the last descriptor or mapping of it, and it is sealed against shrinking and growing,
so a mapping can never fault past its end.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap as _mmap
import os
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from . import _framing
from ._buffers import _numpy, padding, write_views
from ._errors import MessageError

_ZEROS = memoryview(bytes(64))
# Shrinking is what could make a mapping fault past the end; growing is harmless.
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL

#: memfd names start with this; they show in /proc/<pid>/maps as "/memfd:picklex-... (deleted)".
NAME_PREFIX = "picklex-"


def available() -> bool:
    """Whether this system can create sealed memfd segments (Linux 3.17+)."""
    return hasattr(os, "memfd_create") and hasattr(fcntl, "F_ADD_SEALS")


class Written(NamedTuple):
    """A freshly written segment: its descriptor (the caller closes it), size and inode."""

    fd: int
    size: int
    inode: int


def layout(stream_length: int, lengths: Sequence[int]) -> tuple[int, list[int]]:
    """Offsets of the stream and of each buffer in a segment, and the segment's size."""
    position = _framing.HEADER.size + len(lengths) * _framing.ENTRY.size
    stream_offset = position
    position += stream_length
    offsets = []
    for length in lengths:
        position += padding(position)
        offsets.append(position)
        position += length
    return stream_offset, [*offsets, position]


def size_of(stream_length: int, buffers: Sequence[memoryview]) -> int:
    """Bytes a segment holding this stream and these buffers needs."""
    return layout(stream_length, [view.nbytes for view in buffers])[1][-1]


def write(
    name: str,
    stream: bytes,
    buffers: Sequence[memoryview],
    readonly: Sequence[bool],
    spare: int = -1,
) -> Written:
    """Write ``stream`` and ``buffers`` in the segment layout into a sealed memfd.

    The memfd is ``spare`` (a descriptor of an unused segment at least this large, whose
    ownership passes to the result) or a new one. The data goes in with ``pwritev`` straight
    from the objects' memory: the kernel copies each byte once into the segment's pages, and
    this process never maps them.
    """
    lengths = [view.nbytes for view in buffers]
    head = _framing.encode(len(stream), list(zip(lengths, readonly)))
    _stream_offset, offsets = layout(len(stream), lengths)
    size = offsets[-1]
    pieces: list[memoryview] = [memoryview(head), memoryview(stream)]
    position = len(head) + len(stream)
    for view, offset in zip(buffers, offsets):
        pieces.append(_ZEROS[: offset - position])
        pieces.append(view)
        position = offset + view.nbytes
    fd = spare if spare >= 0 else os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        if spare >= 0:
            info = os.fstat(fd)
            size, inode = info.st_size, info.st_ino
            if size < offsets[-1]:
                raise OSError("spare shared-memory segment too small")
        else:
            os.ftruncate(fd, size)
            inode = -1
        written = 0

        def emit(batch: list[memoryview]) -> int:
            nonlocal written
            got = os.pwritev(fd, batch, written)
            written += got
            return got

        write_views(emit, pieces)
        if spare < 0:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            inode = os.fstat(fd).st_ino
    except BaseException:
        os.close(fd)
        raise
    return Written(fd, size, inode)


# ---------------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------------

_libc: Any = None


def _mmap_function() -> Any:
    global _libc
    if _libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc = libc
    return _libc


_MAP_FAILED = ctypes.c_void_p(-1).value

# Forks seen by this process (bumped in parent and child). A mapping alive across a fork is
# also in the child, so its segment must never be reused: see Mapping's ``recycle``.
_forks = [0]
# Descriptors kept by live recyclable mappings; past MAX_KEPT a mapping keeps none.
_kept: set[int] = set()
MAX_KEPT = 64


def _count_fork() -> None:
    _forks[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_parent=_count_fork, after_in_child=_count_fork)


def _unmap(
    libc: Any, address: int, size: int, fd: int, forks: int, recycle: Callable[[int, int], None]
) -> None:
    libc.munmap(address, size)
    if fd < 0:
        return
    _kept.discard(fd)
    try:
        if forks == _forks[0]:  # nobody else can see this memory: let it be reused
            recycle(fd, size)
    finally:
        os.close(fd)


class Mapping:
    """One mapping of a segment, owned by this object and unmapped when it dies.

    It exposes the mapped bytes through ``__array_interface__``, so a numpy array made from
    it keeps it alive; every view handed to the unpickler descends from that array. It holds
    no file descriptor, so any number of mappings can be alive at once, unless ``recycle`` is
    given: then it keeps the segment's descriptor (at most :data:`MAX_KEPT` mappings do) and
    once unmapped passes it to ``recycle(fd, size)``, provided the process has not forked
    since (a forked child would still map the same memory). ``inode`` identifies the memfd
    (as in ``/proc/<pid>/maps``).
    """

    def __init__(
        self,
        fd: int,
        size: int,
        *,
        shared: bool,
        recycle: Callable[[int, int], None] | None = None,
        inode: int | None = None,
    ) -> None:
        libc = _mmap_function()
        flags = _mmap.MAP_SHARED if shared else _mmap.MAP_PRIVATE
        prot = _mmap.PROT_READ | _mmap.PROT_WRITE
        address = libc.mmap(None, size, prot, flags, fd, 0)
        if address in (None, _MAP_FAILED):
            errno = ctypes.get_errno()
            raise OSError(errno, f"mmap of a shared-memory segment failed: {os.strerror(errno)}")
        self.address = address
        self.size = size
        self.shared = shared
        self.inode = os.fstat(fd).st_ino if inode is None else inode
        self.__array_interface__ = {
            "data": (address, False),
            "shape": (size,),
            "typestr": "|u1",
            "version": 3,
        }
        kept = -1
        if recycle is not None and len(_kept) < MAX_KEPT:
            try:
                kept = os.dup(fd)  # close-on-exec, as every descriptor Python creates
            except OSError:  # out of descriptors: this one just will not be reused
                kept = -1
            else:
                _kept.add(kept)
        self.recyclable = kept >= 0
        # At interpreter exit the process unmaps everything anyway; running the finalizer
        # then could pull memory from under objects other exit handlers still use.
        finalizer = weakref.finalize(
            self, _unmap, libc, address, size, kept, _forks[0], recycle or _no_recycle
        )
        finalizer.atexit = False

    def view(self) -> memoryview:
        """A writable unsigned-byte view of the whole mapping that keeps it alive."""
        return memoryview(_numpy().asarray(self))


def _no_recycle(fd: int, size: int) -> None:
    """Never called: mappings without ``recycle`` keep no descriptor."""


class _MmapMapping:
    """Fallback without numpy: Python's mmap object (one duplicated descriptor per mapping)."""

    def __init__(self, fd: int, size: int, *, shared: bool) -> None:
        access = _mmap.ACCESS_WRITE if shared else _mmap.ACCESS_COPY
        self.map = _mmap.mmap(fd, size, access=access)
        self.size = size
        self.shared = shared
        self.inode = os.fstat(fd).st_ino

    def view(self) -> memoryview:
        return memoryview(self.map)


def map_segment(
    fd: int,
    size: int,
    *,
    shared: bool,
    recycle: Callable[[int, int], None] | None = None,
    inode: int | None = None,
) -> Mapping | _MmapMapping:
    """Map ``size`` bytes of a segment: ``shared`` (MAP_SHARED) or copy-on-write."""
    if _numpy() is not None:
        return Mapping(fd, size, shared=shared, recycle=recycle, inode=inode)
    return _MmapMapping(fd, size, shared=shared)  # pragma: no cover - numpy is installed in tests


def check_seals(fd: int) -> None:
    """Refuse a segment that could still shrink (touching a page past its end is SIGBUS)."""
    seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
    if not seals & fcntl.F_SEAL_SHRINK:
        raise MessageError("malformed picklex shared-memory segment: not sealed against shrinking")


def contents(view: memoryview) -> tuple[memoryview, list[memoryview]]:
    """The stream and the buffers of a mapped segment, as views of it, after every check.

    Read-only buffers come back as read-only views; the others are writable views of the
    mapping (shared or private, as mapped).
    """
    size = view.nbytes
    if size < _framing.HEADER.size:
        raise MessageError(f"malformed picklex shared-memory segment: only {size} bytes")
    head = view[: _framing.HEADER.size]
    frame = _framing.decode_header(
        head, max_message_size=1 << 63, max_buffers=size // _framing.ENTRY.size
    )
    table_end = _framing.HEADER.size + frame.table_size
    if table_end > size:
        raise MessageError("malformed picklex shared-memory segment: table past its end")
    table = _framing.decode_table(head, frame, view[_framing.HEADER.size : table_end])
    stream_offset, offsets = layout(frame.stream_length, [length for length, _ in table])
    if offsets[-1] > size:
        raise MessageError(
            f"malformed picklex shared-memory segment: its layout needs {offsets[-1]} bytes, "
            f"it has {size}"
        )
    stream = view[stream_offset : stream_offset + frame.stream_length].toreadonly()
    buffers = []
    for (length, readonly), offset in zip(table, offsets):
        piece = view[offset : offset + length]
        buffers.append(piece.toreadonly() if readonly else piece)
    return stream, buffers
