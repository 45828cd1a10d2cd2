"""Send pickles with their out-of-band buffers over sockets, pipes and file streams.

A message (framing in docs/FORMAT.md) is a small header and table, the pickle stream, then
every PEP 574 buffer. :func:`send` passes them all to ``socket.sendmsg`` as a scatter-gather
list, straight from the objects' memory; :func:`recv` receives each buffer directly into
fresh 64-byte aligned memory with ``recvmsg_into`` and gives that memory to the unpickler,
so a numpy array crosses with exactly one copy: the kernel's.

The receiver trusts nothing it reads: the header is bounded by ``max_message_size`` and
``max_buffers`` before anything is allocated, memory is then reserved as the bytes arrive,
not as the header announces them, and a peer that closes mid-message raises
:class:`TruncatedMessageError` instead of blocking or returning a partial object. Waiting
for a peer that stays connected but silent is bounded by the socket's own timeout
(``sock.settimeout``); a timeout or error part-way through a message leaves the connection
unusable.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO

from . import _framing
from ._buffers import GROWTH_STEP, aligned_empty, read_growing, read_views, write_views
from ._errors import MessageError, TruncatedMessageError
from ._framing import DEFAULT_MAX_BUFFERS, DEFAULT_MAX_MESSAGE_SIZE
from ._oob import dumps_out_of_band, loads_consuming_all
from ._pool import BufferPool

if TYPE_CHECKING:
    import socket

__all__ = [
    "send",
    "recv",
    "write_message",
    "read_message",
    "MessageError",
    "TruncatedMessageError",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_BUFFERS",
    "BufferPool",
]

# Receive memory is allocated as the data arrives: buffers of up to this many bytes are
# allocated this many bytes of them at a time, and a longer one grows from this size with
# the bytes that reach it (read_growing). So a peer that announces a large message and then
# stops costs at most this much untouched memory beyond what it actually sent, however much
# it announced.
_RECEIVE_BATCH = GROWTH_STEP
# file.read(n) allocates n bytes before it reads: never ask a file without readinto for more.
_READ_CHUNK = 1 << 20

_Emit = Callable[[list[memoryview]], int]
_Fill = Callable[[list[memoryview]], int]


def _message_views(obj: Any, protocol: int | None) -> list[memoryview]:
    """Header + table, stream, buffers: the views that make up one message."""
    pickled = dumps_out_of_band(obj, protocol)
    table = [(view.nbytes, ro) for view, ro in zip(pickled.buffers, pickled.readonly)]
    head = _framing.encode(len(pickled.stream), table)
    return [memoryview(head), memoryview(pickled.stream), *pickled.buffers]


class _Receiver:
    """Fills the views of one message in order, allocating only as the bytes arrive.

    Views of up to :data:`_RECEIVE_BATCH` bytes are allocated exactly and received in
    vectored batches of at most that many bytes; a longer view first takes a recycled pool
    buffer if there is one, else grows with its bytes (:func:`read_growing`).
    """

    def __init__(self, fill: _Fill, payload_length: int, pool: BufferPool | None) -> None:
        self.fill = fill
        self.payload_length = payload_length
        self.pool = pool
        self.allocate = pool.allocate if pool is not None else aligned_empty
        self.received = 0
        self.batch: list[memoryview] = []
        self.batch_bytes = 0

    def take(self, length: int) -> memoryview:
        """A view that will hold the next ``length`` bytes (once :meth:`flush` has run)."""
        if self.batch_bytes + length > _RECEIVE_BATCH:
            self.flush()
        if length <= _RECEIVE_BATCH:
            view = self.allocate(length)
            self.batch.append(view)
            self.batch_bytes += length
            return view
        recycled = self.pool._recycled(length) if self.pool is not None else None
        if recycled is not None:
            self._check(read_views(self.fill, [recycled]), length)
            return recycled
        view, got = read_growing(self.fill, length)
        self._check(got, length)
        return self.pool._adopt(view) if self.pool is not None else view

    def flush(self) -> None:
        """Receive every view taken since the last flush."""
        self._check(read_views(self.fill, self.batch), self.batch_bytes)
        self.batch, self.batch_bytes = [], 0

    def _check(self, got: int, wanted: int) -> None:
        self.received += got
        if got != wanted:
            raise TruncatedMessageError(
                f"picklex message cut short: got {self.received} of {self.payload_length} "
                "payload bytes"
            )


def _read_message(
    fill: _Fill, max_message_size: int, max_buffers: int, pool: BufferPool | None
) -> Any:
    head = memoryview(bytearray(_framing.HEADER.size))
    got = read_views(fill, [head])
    if got == 0:
        raise EOFError("end of stream: no more picklex messages")
    if got < head.nbytes:
        raise TruncatedMessageError(
            f"picklex message cut short: got {got} of the {head.nbytes}-byte header"
        )
    frame = _framing.decode_header(head, max_message_size=max_message_size, max_buffers=max_buffers)
    # The table is bounded by max_buffers, which a caller may have raised: it grows as it
    # arrives too.
    table, got = read_growing(fill, frame.table_size)
    if got != frame.table_size:
        raise TruncatedMessageError("picklex message cut short in its buffer table")
    layout = _framing.decode_table(head, frame, table)
    del table

    receiver = _Receiver(fill, frame.payload_length, pool)
    stream = receiver.take(frame.stream_length)
    buffers = [receiver.take(length) for length, _readonly in layout]
    receiver.flush()

    handed = [view.toreadonly() if ro else view for view, (_n, ro) in zip(buffers, layout)]
    del buffers
    remaining = iter(handed)
    del handed
    return loads_consuming_all(stream, remaining, MessageError, "malformed picklex message")


# ---------------------------------------------------------------------------------------------
# Sockets
# ---------------------------------------------------------------------------------------------


def send(sock: socket.socket, obj: Any, *, protocol: int | None = 5) -> None:
    """Pickle ``obj`` and send it as one framed message on a connected stream socket.

    The header, the pickle stream and every out-of-band buffer go out through
    ``socket.sendmsg`` as one scatter-gather list (at most IOV_MAX pieces per call, looping
    on partial sends): the buffers are never copied or joined in user space. Works on TCP
    and Unix stream sockets, blocking or with a timeout.
    """
    write_views(sock.sendmsg, _message_views(obj, protocol))


def recv(
    sock: socket.socket,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_buffers: int = DEFAULT_MAX_BUFFERS,
    pool: BufferPool | None = None,
) -> Any:
    """Receive one message sent by :func:`send` and return its object.

    Out-of-band buffers are received straight into 64-byte aligned memory that the returned
    object then uses (numpy arrays are not copied again). Raises :class:`EOFError` when the
    peer closed the connection cleanly before a message started,
    :class:`TruncatedMessageError` when it closed part-way through one, and
    :class:`MessageError` for a malformed header or one that announces more than
    ``max_message_size`` bytes (default 4 GiB, header and table included) or more than
    ``max_buffers`` buffers (default 65536); both limits are checked before anything is
    allocated. Within them, memory follows the bytes that actually arrive: a buffer of more
    than 64 MiB starts at 64 MiB and at most doubles as it fills, so a header that
    announces gigabytes and is followed by nothing costs at most 64 MiB and raises
    :class:`TruncatedMessageError`. Socket timeouts and errors propagate as ``OSError``.

    With ``pool=`` (a :class:`BufferPool`) receive memory comes from the pool and returns
    to it once the received objects are gone, so repeated messages reuse memory that is
    already faulted in.
    """

    import socket  # here, not at module level: ``import picklex`` stays light

    def fill(batch: list[memoryview]) -> int:
        return sock.recvmsg_into(batch, 0, socket.MSG_WAITALL)[0]

    return _read_message(fill, max_message_size, max_buffers, pool)


# ---------------------------------------------------------------------------------------------
# File-like streams and pipes
# ---------------------------------------------------------------------------------------------


def _stream_emit(file: BinaryIO) -> _Emit:
    raw = isinstance(file, io.RawIOBase)

    def emit(batch: list[memoryview]) -> int:
        written = file.write(batch[0])
        if written is None:
            if raw:  # a non-blocking raw stream that could not take anything
                raise BlockingIOError("stream not ready for writing")
            return batch[0].nbytes  # file-likes that return None wrote everything
        return written

    return emit


def _stream_fill(file: BinaryIO) -> _Fill:
    readinto = getattr(file, "readinto", None)
    if readinto is not None:

        def fill(batch: list[memoryview]) -> int:
            got = readinto(batch[0])
            if got is None:
                raise BlockingIOError("stream has no data ready")
            return got

        return fill

    def fill_by_read(batch: list[memoryview]) -> int:
        data = file.read(min(batch[0].nbytes, _READ_CHUNK))
        batch[0][: len(data)] = data
        return len(data)

    return fill_by_read


def write_message(file: BinaryIO, obj: Any, *, protocol: int | None = 5) -> None:
    """Write ``obj`` as one framed message (the :func:`send` framing) to a binary stream.

    The header, stream and each buffer are passed to ``file.write`` in turn, without being
    joined; partial writes of raw streams are resumed.
    """
    write_views(_stream_emit(file), _message_views(obj, protocol))


def read_message(
    file: BinaryIO,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_buffers: int = DEFAULT_MAX_BUFFERS,
    pool: BufferPool | None = None,
) -> Any:
    """Read one message written by :func:`write_message` (or :func:`send`) from a stream.

    Uses ``file.readinto`` into aligned memory when the stream has it, ``file.read``
    otherwise. Errors, limits and ``pool`` as for :func:`recv`; :class:`EOFError` at a
    clean end of the stream.
    """
    return _read_message(_stream_fill(file), max_message_size, max_buffers, pool)
