"""Container files: a pickle stream plus its out-of-band buffers, loadable by memory mapping.

:func:`dump_file` writes the pickle stream and every PEP 574 buffer, each buffer on a 64-byte
boundary, behind a checksummed header and table (layout in docs/FORMAT.md). :func:`load_file`
maps the file and hands the unpickler views of the mapping, so a large numpy array loads in
constant time and memory, backed by the file, and stays valid for as long as anything uses it.
Saving is atomic: a reader sees the old file or the complete new one, never a partial one.
"""

from __future__ import annotations

import errno
import mmap as _mmap
import os
import pickle
import struct
import sys
from collections.abc import Iterator
from typing import Any, Union

from . import _checksum, _codecs, _container
from ._buffers import IOV_MAX, aligned_empty, byte_view, padding, read_views, write_views
from ._container import Entry, Layout
from ._errors import FileFormatError, MissingPackageError
from ._oob import dumps_out_of_band, loads_consuming_all

StrPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

__all__ = ["dump_file", "load_file", "FileFormatError", "MissingPackageError"]

_ZEROS = memoryview(bytes(64))
# Compressed data is held in memory until written; flush the gather list past this much.
_PENDING_OWNED_LIMIT = 64 << 20
# Python 3.13+ can map without keeping a duplicate descriptor open per mapping.
_MMAP_KWARGS: dict[str, Any] = {"trackfd": False} if sys.version_info >= (3, 13) else {}


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------


class _AtomicFile:
    """A new file that replaces ``path`` only once it is completely written and synced.

    On Linux the data goes to an unnamed ``O_TMPFILE`` inode in the target directory, so a
    process killed mid-save leaves nothing behind; elsewhere (or where the file system
    lacks it) to a hidden temporary name that is removed on any exception.
    """

    use_o_tmpfile = hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd")

    def __init__(self, path: StrPath) -> None:
        self.path = os.path.abspath(os.fsdecode(path))
        self.directory = os.path.dirname(self.path)
        self.temp_name: str | None = None
        self.fd = -1
        if _AtomicFile.use_o_tmpfile:
            try:
                self.fd = os.open(self.directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o666)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
        if self.fd < 0:
            self.temp_name = self._fresh_name()
            self.fd = os.open(
                self.temp_name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
            )

    def _fresh_name(self) -> str:
        base = os.path.basename(self.path)
        return os.path.join(self.directory, f".{base}.{os.urandom(6).hex()}.tmp")

    def commit(self) -> None:
        """fsync the data, move it into place, fsync the directory."""
        os.fsync(self.fd)
        directory_fd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            if self.temp_name is None:
                # Name the unnamed inode, then move that name over the target. A directory
                # descriptor makes os.link use linkat(AT_SYMLINK_FOLLOW), which resolves
                # the /proc link to the inode instead of linking the symlink itself.
                temp_name = self._fresh_name()
                os.link(
                    f"/proc/self/fd/{self.fd}",
                    os.path.basename(temp_name),
                    dst_dir_fd=directory_fd,
                    follow_symlinks=True,
                )
                self.temp_name = temp_name
            os.replace(self.temp_name, self.path)
            self.temp_name = None
            self._close()
            _fsync_directory(directory_fd)
        finally:
            os.close(directory_fd)

    def abort(self) -> None:
        """Close and forget the new file; the target is untouched."""
        self._close()
        if self.temp_name is not None:
            try:
                os.unlink(self.temp_name)
            except FileNotFoundError:
                pass
            self.temp_name = None

    def _close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> _AtomicFile:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


def _fsync_directory(directory_fd: int) -> None:
    try:
        os.fsync(directory_fd)
    except OSError as exc:  # pragma: no cover - some file systems cannot sync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise


class _GatherWriter:
    """Collects views and writes them with ``os.writev`` in as few calls as it can."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending: list[memoryview] = []
        self.owned = 0

    def add(self, view: memoryview, *, owned: bool = False) -> None:
        if not view.nbytes:
            return
        self.pending.append(view)
        if owned:
            self.owned += view.nbytes
        if len(self.pending) >= IOV_MAX or self.owned >= _PENDING_OWNED_LIMIT:
            self.flush()

    def flush(self) -> None:
        write_views(lambda batch: os.writev(self.fd, batch), self.pending)
        self.pending.clear()
        self.owned = 0


def dump_file(
    obj: Any, path: StrPath, *, protocol: int | None = 5, compress: str | None = None
) -> None:
    """Pickle ``obj`` into the container file ``path``, atomically.

    Out-of-band buffers (PEP 574: numpy arrays, ``PickleBuffer`` objects; protocol 5 only)
    are written after the pickle stream, each on a 64-byte boundary, straight from the
    objects' memory with ``os.writev``. Every buffer and the stream get a checksum.

    ``compress`` may be ``"lz4"`` or ``"zstd"`` (needs the ``lz4`` / ``zstandard`` package,
    :class:`MissingPackageError` without it; ``pip install picklex[files]``): each buffer
    is stored compressed when that saves at least 1/16 of its size. Compressed buffers
    cannot be memory-mapped on load.

    The file is written under a temporary name (or an unnamed inode) in the same directory,
    synced, and renamed over ``path``: an existing file is replaced only by a complete new
    one, and a failed save leaves no temporary file behind.
    """
    codec = _codecs.codec_id(compress)
    pickled = dumps_out_of_band(obj, protocol)
    stream = pickled.stream
    algorithm = _checksum.default_algorithm()
    checksum = _checksum.function(algorithm)

    with _AtomicFile(path) as out:
        stream_offset = _container.HEADER.size + _container.table_size(len(pickled.buffers))
        os.lseek(out.fd, stream_offset, os.SEEK_SET)
        writer = _GatherWriter(out.fd)
        writer.add(memoryview(stream))
        position = stream_offset + len(stream)
        entries = []
        for raw, is_readonly in zip(pickled.buffers, pickled.readonly):
            gap = padding(position)
            writer.add(_ZEROS[:gap])
            position += gap
            packed = _codecs.compress(codec, raw)
            stored = byte_view(packed.data)
            entries.append(
                Entry(
                    position, stored.nbytes, raw.nbytes, checksum(stored), is_readonly, packed.codec
                )
            )
            writer.add(stored, owned=packed.codec != _codecs.NONE)
            position += stored.nbytes
        writer.flush()
        layout = Layout(
            algorithm,
            pickled.protocol,
            position,
            stream_offset,
            len(stream),
            checksum(stream),
            tuple(entries),
        )
        metadata = memoryview(_container.pack(layout))
        written = 0
        while written < len(metadata):
            written += os.pwrite(out.fd, metadata[written:], written)


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _pread_into(fd: int, views: list[memoryview], offset: int) -> int:
    """Fill ``views`` from consecutive file bytes at ``offset``; returns the bytes read."""
    position = offset

    def fill(batch: list[memoryview]) -> int:
        nonlocal position
        got = os.preadv(fd, batch, position)
        position += got
        return got

    return read_views(fill, views)


def _read_exact(fd: int, size: int, offset: int, what: str) -> memoryview:
    view = aligned_empty(size)
    if _pread_into(fd, [view], offset) != size:
        raise FileFormatError(f"truncated picklex file: {what} cut short")
    return view


def _read_layout(fd: int, file_size: int) -> Layout:
    head = _read_exact(fd, min(file_size, _container.HEADER.size), 0, "header")
    _fields, table_bytes = _container.parse_header(head, file_size)
    table = _read_exact(fd, table_bytes, _container.HEADER.size, "buffer table")
    return _container.parse(head, table, file_size)


def _readonly(view: memoryview) -> memoryview:
    return view if view.readonly else view.toreadonly()


class _Source:
    """Where stored bytes come from: one mapping of the file, or ``preadv`` into memory."""

    def __init__(self, fd: int, layout: Layout, use_mmap: bool, writable: bool) -> None:
        self.map: memoryview | None = None
        self.fd = fd
        self.writable = writable
        self.stored: list[memoryview] = []
        mapped = use_mmap and any(
            e.codec == _codecs.NONE and e.stored_length for e in layout.entries
        )
        if mapped:
            access = _mmap.ACCESS_COPY if writable else _mmap.ACCESS_READ
            self.map = memoryview(_mmap.mmap(fd, 0, access=access, **_MMAP_KWARGS))
            self.stream = self.map[layout.stream_offset : layout.stream_end]
            self.stored = [self.map[e.offset : e.end] for e in layout.entries]
        else:
            self.stream, self.stored = self._read_all(layout)

    def _read_all(self, layout: Layout) -> tuple[memoryview, list[memoryview]]:
        # One vectored read of the whole file body: stream, padding (into scratch), buffers.
        stream = aligned_empty(layout.stream_length)
        views = [stream]
        stored = []
        scratch = memoryview(bytearray(64))
        position = layout.stream_end
        for entry in layout.entries:
            gap = entry.offset - position
            while gap:  # padding is < 64 bytes when written by dump_file, but do not assume
                chunk = min(gap, len(scratch))
                views.append(scratch[:chunk])
                gap -= chunk
            view = aligned_empty(entry.stored_length)
            views.append(view)
            stored.append(view)
            position = entry.end
        expected = position - layout.stream_offset
        if _pread_into(self.fd, views, layout.stream_offset) != expected:
            raise FileFormatError("truncated picklex file: data cut short while reading")
        return stream, stored


def _verify(layout: Layout, source: _Source) -> None:
    try:
        checksum = _checksum.function(layout.checksum_algorithm)
    except KeyError:  # pragma: no cover - parse() already rejects unknown ids
        raise FileFormatError("unknown checksum algorithm") from None
    if checksum(source.stream) != layout.stream_checksum:
        raise FileFormatError("corrupt picklex file: pickle stream checksum mismatch")
    for index, (entry, view) in enumerate(zip(layout.entries, source.stored)):
        if checksum(view) != entry.checksum:
            raise FileFormatError(f"corrupt picklex file: buffer {index} checksum mismatch")


def _buffers(layout: Layout, source: _Source, writable: bool) -> list[memoryview]:
    buffers = []
    for index, (entry, stored) in enumerate(zip(layout.entries, source.stored)):
        if entry.codec == _codecs.NONE:
            view = stored
        else:
            try:
                decompressed = _codecs.decompress(entry.codec, stored, entry.length)
            except ValueError as exc:
                raise FileFormatError(f"corrupt picklex file: buffer {index}: {exc}") from exc
            if decompressed is None:
                raise FileFormatError(
                    f"corrupt picklex file: buffer {index} does not decompress to "
                    f"{entry.length} bytes"
                )
            view = decompressed
        if entry.readonly or not writable:
            view = _readonly(view)
        buffers.append(view)
    return buffers


def _require_packages(layout: Layout, verify: bool) -> None:
    """Name a missing optional package before any data is read, not half-way through."""
    for codec in sorted({entry.codec for entry in layout.entries}):
        _codecs.require(codec, f"reading this file's {_codecs.NAMES[codec]}-compressed buffers")
    if verify:
        _checksum.function(layout.checksum_algorithm)


# What the unpickler raises for a malformed stream (tests/python/test_malformed.py lists
# them). ImportError and AttributeError are not among them: they say that a class or
# function the stream names is missing here, which is a fact about this environment, not
# about the file (pickle.load raises them too), unless the stream's checksum shows that the
# name itself was damaged.
_MALFORMED_STREAM = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    OverflowError,
    TypeError,
    LookupError,  # KeyError, IndexError, and an unknown codec name
    struct.error,
)


def _stream_damaged(layout: Layout, stream: memoryview) -> bool:
    """True when the stream no longer matches its checksum (False when that cannot be told)."""
    try:
        checksum = _checksum.function(layout.checksum_algorithm)
    except ModuleNotFoundError:  # an xxh3 file without xxhash: no evidence either way
        return False
    return checksum(stream) != layout.stream_checksum


def _unpickle(
    layout: Layout, stream: memoryview, buffers: Iterator[memoryview], verified: bool
) -> Any:
    """Unpickle the file's stream; a stream that is damaged or malformed is a FileFormatError."""
    try:
        return loads_consuming_all(stream, buffers, FileFormatError, "corrupt picklex file")
    except FileFormatError:
        raise
    except Exception as exc:
        what = f"{type(exc).__name__}: {exc}"
        if not verified and _stream_damaged(layout, stream):
            raise FileFormatError(
                f"corrupt picklex file: pickle stream checksum mismatch (loading it raised {what})"
            ) from exc
        if isinstance(exc, _MALFORMED_STREAM):
            raise FileFormatError(f"corrupt picklex file: pickle stream fails ({what})") from exc
        raise


def load_file(
    path: StrPath, *, mmap: bool = True, writable: bool = False, verify: bool = False
) -> Any:
    """Load the object saved in ``path`` by :func:`dump_file`.

    With ``mmap=True`` (the default) the file is memory-mapped and every uncompressed buffer
    reaches the unpickler as a view of the mapping: numpy arrays come back backed by the
    file, in time and memory independent of their size. The mapping lives as long as any of
    them does and is unmapped when the last one goes. With ``mmap=False`` each buffer is
    read into fresh 64-byte aligned memory.

    Buffers are read-only unless ``writable=True``; then buffers that were writable when
    saved are writable, and with ``mmap=True`` they are private copy-on-write mappings
    (writes never reach the file). Buffers saved read-only always stay read-only.

    The header and buffer table are always checked (magic, version, CRC-32, every offset and
    length against the real file size); ``verify=True`` also checks the checksum of the
    pickle stream and of every buffer, which reads all the data. Every problem with the
    file raises :class:`FileFormatError`: a bad header or table, a truncated file, a
    checksum mismatch, a compressed buffer that does not decompress, and a pickle stream
    that fails to load because it is damaged (its checksum is compared when loading fails,
    with or without ``verify``) or malformed (the unpickler raised ``UnpicklingError``,
    ``EOFError``, ``ValueError``, ``OverflowError``, ``TypeError``, ``LookupError``); the
    unpickler's exception is its ``__cause__``. An intact stream that names a class or
    function this environment lacks raises the ``ImportError`` or ``AttributeError`` that
    :func:`pickle.load` raises.

    A file with lz4 or zstd compressed buffers needs the ``lz4`` or ``zstandard`` package,
    and ``verify=True`` on a file checksummed with xxh3-64 (the default when ``xxhash`` was
    installed on the saving side) needs ``xxhash``: without it :class:`MissingPackageError`
    (a :class:`ModuleNotFoundError`, not a :class:`FileFormatError`: the file is fine)
    names the package before any data is read. ``pip install picklex[files]`` installs all
    three.
    """
    with open(path, "rb", buffering=0) as file:
        fd = file.fileno()
        layout = _read_layout(fd, os.fstat(fd).st_size)
        _require_packages(layout, verify)
        source = _Source(fd, layout, mmap, writable)
    if verify:
        _verify(layout, source)
    buffers = _buffers(layout, source, writable)
    stream = source.stream
    del source  # from here on only the views handed out keep the mapping alive
    remaining = iter(buffers)
    del buffers
    return _unpickle(layout, stream, remaining, verify)
