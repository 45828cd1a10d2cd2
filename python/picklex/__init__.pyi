"""Type stubs for picklex: the same surface as the standard pickle module."""

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from pickle import (
    DEFAULT_PROTOCOL as DEFAULT_PROTOCOL,
)
from pickle import (
    PickleBuffer as PickleBuffer,
)
from pickle import (
    PickleError as PickleError,
)
from pickle import (
    PicklingError as PicklingError,
)
from pickle import (
    UnpicklingError as UnpicklingError,
)
from typing import Any, Protocol

__version__: str
HIGHEST_PROTOCOL: int

class _ReadableFileobj(Protocol):
    def read(self, n: int, /) -> bytes: ...
    def readline(self) -> bytes: ...

class _WritableFileobj(Protocol):
    def write(self, b: bytes, /) -> Any: ...

class _ReadintoFileobj(Protocol):
    def readinto(self, b: memoryview, /) -> int | None: ...

_BufferCallback = Callable[[PickleBuffer], Any] | None
_ReducedType = str | tuple[Any, ...]

def dumps(
    obj: Any,
    protocol: int | None = None,
    *,
    fix_imports: bool = True,
    buffer_callback: _BufferCallback = None,
) -> bytes:
    """Return the pickle of obj as bytes: the same bytes as pickle.dumps()."""

def dump(
    obj: Any,
    file: _WritableFileobj,
    protocol: int | None = None,
    *,
    fix_imports: bool = True,
    buffer_callback: _BufferCallback = None,
) -> None:
    """Write the pickle of obj to file, streaming frame by frame."""

def loads(
    data: bytes | bytearray | memoryview,
    /,
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = None,
) -> Any:
    """Rebuild an object from a pickle held in a bytes-like object."""

def load(
    file: _ReadableFileobj,
    *,
    fix_imports: bool = True,
    encoding: str = "ASCII",
    errors: str = "strict",
    buffers: Iterable[Any] | None = None,
) -> Any:
    """Read one pickle from file and rebuild its object; stops at its STOP opcode."""

# ---- beyond the pickle module: container files and framed messages ----

_StrPath = str | bytes | os.PathLike[str] | os.PathLike[bytes]

class FileFormatError(UnpicklingError):
    """A picklex container file is corrupt, truncated, or not a picklex file.

    Also a pickle stream inside one that is damaged or fails to decode (the unpickler's
    exception is the ``__cause__``).
    """

class MissingPackageError(ModuleNotFoundError):
    """An optional package this file or call needs (lz4, zstandard, xxhash) is missing.

    Not a FileFormatError: the file is fine. ``pip install picklex[files]`` installs them.
    """

class MessageError(UnpicklingError):
    """A framed message is malformed or exceeds the receiver's limits."""

class TruncatedMessageError(MessageError, EOFError):
    """The peer or stream ended part-way through a message."""

DEFAULT_MAX_MESSAGE_SIZE: int
DEFAULT_MAX_BUFFERS: int

def dump_file(
    obj: Any, path: _StrPath, *, protocol: int | None = 5, compress: str | None = None
) -> None:
    """Pickle obj into a container file atomically, out-of-band buffers 64-byte aligned.

    compress="lz4"/"zstd" raises MissingPackageError when its package is not installed.
    """

def load_file(
    path: _StrPath, *, mmap: bool = True, writable: bool = False, verify: bool = False
) -> Any:
    """Load a container file; buffers are views of a memory mapping of it by default.

    Any bad file (header, table, checksums, compressed data, a damaged or malformed pickle
    stream) raises FileFormatError; a missing lz4/zstandard (compressed buffers) or xxhash
    (verify=True on an xxh3 file) raises MissingPackageError before any data is read.
    """

class BufferPool:
    """Aligned receive buffers that return to the pool when the objects using them die."""

    max_bytes: int
    hits: int
    misses: int
    def __init__(self, max_bytes: int = 268435456) -> None: ...
    @property
    def reserved_bytes(self) -> int: ...
    def allocate(self, size: int) -> memoryview: ...
    def clear(self) -> None: ...

def send(sock: socket.socket, obj: Any, *, protocol: int | None = 5) -> None:
    """Send obj as one framed message with sendmsg scatter-gather (buffers not copied)."""

def recv(
    sock: socket.socket,
    *,
    max_message_size: int = ...,
    max_buffers: int = ...,
    pool: BufferPool | None = None,
) -> Any:
    """Receive one framed message; buffers land directly in 64-byte aligned memory."""

def write_message(file: _WritableFileobj, obj: Any, *, protocol: int | None = 5) -> None:
    """Write obj as one framed message to a binary stream."""

def read_message(
    file: _ReadableFileobj | _ReadintoFileobj,
    *,
    max_message_size: int = ...,
    max_buffers: int = ...,
    pool: BufferPool | None = None,
) -> Any:
    """Read one framed message from a binary stream (readinto when available)."""

class Pickler:
    """Writes pickles to a binary file; subclass it to add hooks."""

    fast: int
    bin: int
    dispatch_table: Mapping[type, Callable[[Any], _ReducedType]]
    def __init__(
        self,
        file: _WritableFileobj,
        protocol: int | None = None,
        fix_imports: bool = True,
        buffer_callback: _BufferCallback = None,
    ) -> None: ...
    @property
    def memo(self) -> Any: ...
    @memo.setter
    def memo(self, value: Any) -> None: ...
    def dump(self, obj: Any, /) -> None: ...
    def clear_memo(self) -> None: ...
    def persistent_id(self, obj: Any) -> Any: ...
    def reducer_override(self, obj: Any) -> Any: ...

class Unpickler:
    """Reads pickles from a binary file; subclass it to add hooks."""

    def __init__(
        self,
        file: _ReadableFileobj,
        *,
        fix_imports: bool = True,
        encoding: str = "ASCII",
        errors: str = "strict",
        buffers: Iterable[Any] | None = None,
    ) -> None: ...
    @property
    def memo(self) -> Any: ...
    @memo.setter
    def memo(self, value: Any) -> None: ...
    def load(self) -> Any: ...
    def find_class(self, module_name: str, global_name: str, /) -> Any: ...
    def persistent_load(self, pid: Any) -> Any: ...

ADDITEMS: bytes
APPEND: bytes
APPENDS: bytes
BINBYTES: bytes
BINBYTES8: bytes
BINFLOAT: bytes
BINGET: bytes
BININT: bytes
BININT1: bytes
BININT2: bytes
BINPERSID: bytes
BINPUT: bytes
BINSTRING: bytes
BINUNICODE: bytes
BINUNICODE8: bytes
BUILD: bytes
BYTEARRAY8: bytes
DICT: bytes
DUP: bytes
EMPTY_DICT: bytes
EMPTY_LIST: bytes
EMPTY_SET: bytes
EMPTY_TUPLE: bytes
EXT1: bytes
EXT2: bytes
EXT4: bytes
FALSE: bytes
FLOAT: bytes
FRAME: bytes
FROZENSET: bytes
GET: bytes
GLOBAL: bytes
INST: bytes
INT: bytes
LIST: bytes
LONG: bytes
LONG1: bytes
LONG4: bytes
LONG_BINGET: bytes
LONG_BINPUT: bytes
MARK: bytes
MEMOIZE: bytes
NEWFALSE: bytes
NEWOBJ: bytes
NEWOBJ_EX: bytes
NEWTRUE: bytes
NEXT_BUFFER: bytes
NONE: bytes
OBJ: bytes
PERSID: bytes
POP: bytes
POP_MARK: bytes
PROTO: bytes
PUT: bytes
READONLY_BUFFER: bytes
REDUCE: bytes
SETITEM: bytes
SETITEMS: bytes
SHORT_BINBYTES: bytes
SHORT_BINSTRING: bytes
SHORT_BINUNICODE: bytes
STACK_GLOBAL: bytes
STOP: bytes
STRING: bytes
TRUE: bytes
TUPLE: bytes
TUPLE1: bytes
TUPLE2: bytes
TUPLE3: bytes
UNICODE: bytes
