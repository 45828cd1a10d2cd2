"""Binary layout of the picklex container file (see docs/FORMAT.md, "Container file").

Only packing, unpacking and validation live here: the I/O is in files.py. Every length and
offset read from a file is checked against the real file size before it is used.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from . import _checksum, _codecs
from ._buffers import ALIGNMENT
from ._errors import FileFormatError

MAGIC = b"\x89PKX\r\n\x1a\n"
VERSION = 1

# magic, version, header size, flags, checksum algorithm, protocol, file size, buffer count,
# entry size, stream offset, stream length, stream checksum, reserved, metadata CRC-32.
HEADER = struct.Struct("<8sHHHBBQIIQQQII")
# offset, stored length, length, checksum, flags, codec, 6 reserved bytes.
ENTRY = struct.Struct("<QQQQBB6x")
assert HEADER.size == 64 and ENTRY.size == 40

#: Entry flag: the buffer was read-only when it was saved.
READONLY = 0x01
_KNOWN_ENTRY_FLAGS = READONLY
_CRC_FIELD = HEADER.size - 4  # the metadata CRC covers everything before it, then the table


class Entry(NamedTuple):
    """One out-of-band buffer as stored in the file."""

    offset: int
    stored_length: int  # bytes in the file
    length: int  # bytes once decompressed (== stored_length when codec is NONE)
    checksum: int
    readonly: bool
    codec: int

    @property
    def end(self) -> int:
        return self.offset + self.stored_length


class Layout(NamedTuple):
    """Everything the header and table say about a file."""

    checksum_algorithm: int
    protocol: int
    file_size: int
    stream_offset: int
    stream_length: int
    stream_checksum: int
    entries: tuple[Entry, ...]

    @property
    def stream_end(self) -> int:
        return self.stream_offset + self.stream_length


def table_size(count: int) -> int:
    """Bytes of a table of ``count`` entries."""
    return count * ENTRY.size


def pack(layout: Layout) -> bytes:
    """Header and table bytes for ``layout``, metadata CRC included."""
    table = b"".join(
        ENTRY.pack(
            e.offset,
            e.stored_length,
            e.length,
            e.checksum,
            READONLY if e.readonly else 0,
            e.codec,
        )
        for e in layout.entries
    )
    fields = (
        MAGIC,
        VERSION,
        HEADER.size,
        0,
        layout.checksum_algorithm,
        layout.protocol,
        layout.file_size,
        len(layout.entries),
        ENTRY.size,
        layout.stream_offset,
        layout.stream_length,
        layout.stream_checksum,
        0,
    )
    unsigned = HEADER.pack(*fields, 0)
    crc = _checksum.metadata_crc(memoryview(unsigned)[:_CRC_FIELD], table)
    return HEADER.pack(*fields, crc) + table


def parse_header(head: bytes, file_size: int) -> tuple[tuple, int]:
    """Check the fixed header against the real file size; returns its fields and table size."""
    if len(head) < HEADER.size or file_size < HEADER.size:
        if not MAGIC.startswith(bytes(head[: len(MAGIC)])):
            raise FileFormatError("not a picklex file (bad magic number)")
        raise FileFormatError(
            f"truncated picklex file: {file_size} bytes, shorter than its {HEADER.size}-byte header"
        )
    fields = HEADER.unpack_from(head)
    magic, version, header_size, flags, algorithm, _protocol, stored_size, count, entry_size = (
        fields[:9]
    )
    if magic != MAGIC:
        raise FileFormatError("not a picklex file (bad magic number)")
    if version != VERSION:
        raise FileFormatError(
            f"unsupported picklex file version {version} (this reader knows {VERSION})"
        )
    if header_size != HEADER.size or entry_size != ENTRY.size:
        raise FileFormatError(
            f"corrupt picklex header: header/entry sizes {header_size}/{entry_size}, "
            f"expected {HEADER.size}/{ENTRY.size}"
        )
    if stored_size != file_size:
        what = "truncated" if file_size < stored_size else "corrupt"
        raise FileFormatError(
            f"{what} picklex file: header records {stored_size} bytes, file has {file_size}"
        )
    if count > (file_size - HEADER.size) // ENTRY.size:
        raise FileFormatError(f"corrupt picklex header: {count} buffers cannot fit the file")
    if flags != 0:
        raise FileFormatError(f"corrupt picklex header: unknown flags {flags:#x}")
    return fields, table_size(count)


def parse(head: bytes, table: bytes, file_size: int) -> Layout:
    """Validate header + table bytes (as read from a file of ``file_size`` bytes)."""
    fields, expected_table = parse_header(head, file_size)
    if len(table) != expected_table:
        raise FileFormatError("truncated picklex file: buffer table cut short")
    crc = _checksum.metadata_crc(memoryview(head)[:_CRC_FIELD], table)
    if crc != fields[-1]:
        raise FileFormatError("corrupt picklex file: header or buffer table checksum mismatch")
    (_m, _v, _hs, _f, algorithm, protocol, _size, count, _es) = fields[:9]
    stream_offset, stream_length, stream_checksum = fields[9:12]
    if algorithm not in _checksum.NAMES:
        raise FileFormatError(f"corrupt picklex header: unknown checksum algorithm {algorithm}")
    table_end = HEADER.size + expected_table
    if stream_offset < table_end or stream_length > file_size - stream_offset:
        raise FileFormatError(
            f"corrupt picklex header: pickle stream [{stream_offset}, +{stream_length}) "
            f"outside the file's {file_size} bytes"
        )
    entries = []
    previous_end = stream_offset + stream_length
    for index in range(count):
        offset, stored, length, checksum, flags, codec = ENTRY.unpack_from(
            table, index * ENTRY.size
        )
        where = f"corrupt picklex table: buffer {index}"
        if flags & ~_KNOWN_ENTRY_FLAGS:
            raise FileFormatError(f"{where} has unknown flags {flags:#x}")
        if codec not in _codecs.NAMES:
            raise FileFormatError(f"{where} has unknown compression {codec}")
        if offset % ALIGNMENT or offset < previous_end or stored > file_size - offset:
            raise FileFormatError(
                f"{where} at [{offset}, +{stored}) is misaligned, overlaps, or lies outside "
                f"the file's {file_size} bytes"
            )
        if codec == _codecs.NONE and length != stored:
            raise FileFormatError(f"{where}: length {length} != stored length {stored}")
        if codec != _codecs.NONE and length > _codecs.max_decompressed(codec, stored):
            raise FileFormatError(
                f"{where} claims {length} bytes from {stored} {_codecs.NAMES[codec]} bytes"
            )
        entries.append(Entry(offset, stored, length, checksum, bool(flags & READONLY), codec))
        previous_end = offset + stored
    return Layout(
        algorithm,
        protocol,
        file_size,
        stream_offset,
        stream_length,
        stream_checksum,
        tuple(entries),
    )
