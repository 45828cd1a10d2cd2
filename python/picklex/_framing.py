"""Binary layout of a framed message (see docs/FORMAT.md, "Message framing").

A message is a 32-byte header, a table of one 16-byte entry per out-of-band buffer, the
pickle stream, then the buffers back to back. The same bytes serve sockets, pipes and file
streams, and any other byte transport (shared memory) can reuse :func:`encode` and
:class:`Decoder` as they are: nothing here does I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

from ._checksum import metadata_crc
from ._errors import MessageError

MAGIC = b"PKXM"
VERSION = 1
# magic, version, flags, reserved, buffer count, stream length, payload length, CRC-32.
HEADER = struct.Struct("<4sBBHIQQI")
# buffer length, flags, 7 reserved bytes.
ENTRY = struct.Struct("<QB7x")
assert HEADER.size == 32 and ENTRY.size == 16

#: Entry flag: the buffer was read-only on the sending side.
READONLY = 0x01
_CRC_FIELD = HEADER.size - 4

#: Default bound on one message (header + table + stream + buffers), in bytes: 4 GiB.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 32
#: Default bound on the number of out-of-band buffers in one message.
DEFAULT_MAX_BUFFERS = 1 << 16


class Frame(NamedTuple):
    """What a header announces, checked against the receiver's limits."""

    buffer_count: int
    stream_length: int
    payload_length: int  # stream + all buffers
    crc: int

    @property
    def table_size(self) -> int:
        return self.buffer_count * ENTRY.size


def encode(stream_length: int, buffers: Sequence[tuple[int, bool]]) -> bytes:
    """Header + table bytes for a stream and buffers given as (length, read-only) pairs."""
    table = b"".join(ENTRY.pack(length, READONLY if ro else 0) for length, ro in buffers)
    payload = stream_length + sum(length for length, _ in buffers)
    fields = (MAGIC, VERSION, 0, 0, len(buffers), stream_length, payload)
    crc = metadata_crc(memoryview(HEADER.pack(*fields, 0))[:_CRC_FIELD], table)
    return HEADER.pack(*fields, crc) + table


def decode_header(
    head: bytes | memoryview,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_buffers: int = DEFAULT_MAX_BUFFERS,
) -> Frame:
    """Check a 32-byte header; everything it announces is bounded before it is allocated."""
    magic, version, flags, reserved, count, stream_length, payload, crc = HEADER.unpack(head)
    if magic != MAGIC:
        raise MessageError(f"not a picklex message (bad magic {bytes(magic)!r})")
    if version != VERSION:
        raise MessageError(f"unsupported picklex message version {version} (expected {VERSION})")
    if flags or reserved:
        raise MessageError("malformed picklex message: reserved header bits are set")
    if count > max_buffers:
        raise MessageError(
            f"picklex message has {count} out-of-band buffers, more than the {max_buffers} allowed"
        )
    if stream_length > payload:
        raise MessageError(
            f"malformed picklex message: stream length {stream_length} exceeds the payload "
            f"length {payload}"
        )
    size = HEADER.size + count * ENTRY.size + payload
    if size > max_message_size:
        raise MessageError(
            f"picklex message of {size} bytes exceeds max_message_size={max_message_size}"
        )
    return Frame(count, stream_length, payload, crc)


def decode_table(
    head: bytes | memoryview, frame: Frame, table: bytes | memoryview
) -> list[tuple[int, bool]]:
    """Check the table against the header's CRC and lengths; returns (length, read-only)."""
    if metadata_crc(memoryview(head)[:_CRC_FIELD], table) != frame.crc:
        raise MessageError("malformed picklex message: header checksum mismatch")
    buffers = []
    total = frame.stream_length
    for index in range(frame.buffer_count):
        length, flags = ENTRY.unpack_from(table, index * ENTRY.size)
        if flags & ~READONLY:
            raise MessageError(f"malformed picklex message: buffer {index} has flags {flags:#x}")
        buffers.append((length, bool(flags & READONLY)))
        total += length
    if total != frame.payload_length:
        raise MessageError(
            f"malformed picklex message: stream and buffers add up to {total} bytes, "
            f"the header says {frame.payload_length}"
        )
    return buffers
