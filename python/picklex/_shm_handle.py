"""Binary layout of a shared-memory handle (docs/FORMAT.md, "Shared-memory handle").

A handle is 96 bytes: which broker holds the segment, the token that names it there, and the
segment's size and inode so the receiver can check it got the segment it was told about.
Nothing here does I/O.
"""

from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

from ._errors import MessageError

MAGIC = b"PKXH"
VERSION = 1
# magic, version, kind, reserved, segment size, inode, token, address length, address,
# creator pid, CRC-32 of everything before it.
LAYOUT = struct.Struct("<4sBBHQQ16sB47sII")
assert LAYOUT.size == 96
_CRC_FIELD = LAYOUT.size - 4
MAX_ADDRESS = 47


class Handle(NamedTuple):
    """What a receiver needs to find and check a segment."""

    kind: int  # _shm_broker.MESSAGE or SHARED
    size: int
    inode: int
    token: bytes
    address: str  # the broker's abstract socket name (without the leading NUL)
    pid: int  # the process that wrote the segment (informational)

    def pack(self) -> bytes:
        address = self.address.encode("ascii")
        if len(address) > MAX_ADDRESS:
            raise ValueError(f"broker address longer than {MAX_ADDRESS} bytes")
        fields = (
            MAGIC,
            VERSION,
            self.kind,
            0,
            self.size,
            self.inode,
            self.token,
            len(address),
            address,
            self.pid,
        )
        body = LAYOUT.pack(*fields, 0)[:_CRC_FIELD]
        return body + struct.pack("<I", zlib.crc32(body))


def unpack(data: bytes | bytearray | memoryview) -> Handle:
    """Check and decode a packed handle; raises :class:`MessageError` when it is damaged."""
    if len(data) != LAYOUT.size:
        raise MessageError(
            f"malformed picklex shared-memory handle: {len(data)} bytes, expected {LAYOUT.size}"
        )
    magic, version, kind, reserved, size, inode, token, length, address, pid, crc = LAYOUT.unpack(
        data
    )
    if magic != MAGIC:
        raise MessageError(f"not a picklex shared-memory handle (bad magic {bytes(magic)!r})")
    if version != VERSION:
        raise MessageError(f"unsupported picklex shared-memory handle version {version}")
    if zlib.crc32(memoryview(data)[:_CRC_FIELD]) != crc:
        raise MessageError("malformed picklex shared-memory handle: checksum mismatch")
    if reserved or kind not in (1, 2) or not 0 < length <= MAX_ADDRESS:
        raise MessageError("malformed picklex shared-memory handle: bad field values")
    if any(address[length:]) or b"\0" in address[:length]:
        raise MessageError("malformed picklex shared-memory handle: bad broker address")
    return Handle(kind, size, inode, token, address[:length].decode("ascii", "replace"), pid)
