"""Pass objects between processes through shared memory, without copying their buffers.

Two ways, one mechanism. A large object's PEP 574 buffers (numpy arrays, ``PickleBuffer``s,
pandas blocks) and its pickle stream are written once into an anonymous shared-memory segment
(a sealed ``memfd``); what travels between processes is a small pickle that names it. The
receiver maps the segment and unpickles with buffers that are views of the mapping, so its
arrays are the segment's memory, not copies of it.

* :func:`dumps` / :func:`loads` — a one-shot message: ``dumps`` returns a pickle of a few
  hundred bytes (send it any way you like: a pipe, a queue, a socket); the first ``loads`` of
  it takes the segment and frees its slot, so it can be loaded exactly once. Small objects
  stay an ordinary pickle. This is what :mod:`picklex.mp` plugs into multiprocessing.
* :func:`share` — a segment with an owner: ``share(obj)`` returns a :class:`SharedHandle`
  that any number of processes can ``load()`` while the owner keeps it open; ``close()``
  (or leaving its ``with`` block, or the owner's exit) ends it.

Lifetime: a segment has no name anywhere, so the kernel frees it when the last process holding
a descriptor or a mapping of it lets go, whether that process exits, crashes or is killed.
Between sender and receiver a broker thread in the root process of the tree holds it (see
:mod:`picklex._shm_broker`). Nothing can be left in ``/dev/shm``; an unclaimed message lasts
at most as long as the broker's process. Linux only (``memfd_create``); elsewhere
:func:`available` is false, :func:`dumps` returns an ordinary pickle and :func:`share` raises.
"""

from __future__ import annotations

import io
import os
import pickle
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from . import _picklex, _shm_broker, _shm_segment
from ._buffers import byte_view
from ._errors import MessageError
from ._oob import loads_consuming_all, resolve_protocol
from ._shm_broker import BrokerUnavailable
from ._shm_handle import Handle, unpack
from ._shm_runtime import RUNTIME

__all__ = [
    "DEFAULT_THRESHOLD",
    "MIN_BUFFER_SIZE",
    "SegmentGoneError",
    "SharedHandle",
    "available",
    "configure",
    "dumps",
    "loads",
    "share",
    "stats",
    "trim",
]

#: A message goes through shared memory when its pickle stream and its out-of-band buffers
#: add up to at least this many bytes. Below about 1 MiB a pipe was faster here: a message
#: through shared memory costs a few local round trips and system calls, whatever its size.
DEFAULT_THRESHOLD = 1 << 20
#: Buffers smaller than this stay inside the pickle stream (so a message with only small
#: buffers is the ordinary pickle); larger ones count towards the threshold.
MIN_BUFFER_SIZE = 64 << 10


class SegmentGoneError(MessageError):
    """The segment a handle names is no longer available.

    A message was already loaded once, a shared handle was closed, or the process holding the
    segment (the owner, or the broker in the root process) has exited.
    """


def available() -> bool:
    """Whether shared-memory transfer works here (Linux with ``memfd_create``)."""
    return _shm_segment.available()


# ---------------------------------------------------------------------------------------------
# Pickling with a size threshold
# ---------------------------------------------------------------------------------------------


def _pickle(
    obj: Any,
    protocol: int,
    min_size: int,
    dispatch_table: Mapping[type, Callable[[Any], Any]] | None,
) -> tuple[bytes, list[memoryview], list[bool]]:
    """The stream, plus the raw bytes and read-only flags of the buffers of >= min_size."""
    large: list[Any] = []

    def keep_large(buffer: pickle.PickleBuffer) -> bool:
        # False: out of band; True: the pickler writes it into the stream.
        with memoryview(buffer) as view:
            if view.nbytes < min_size:
                return True
        large.append(buffer)
        return False

    callback = keep_large if protocol >= 5 else None
    if dispatch_table is None:
        stream = _picklex.dumps(obj, protocol, buffer_callback=callback)
    else:
        out = io.BytesIO()
        pickler = _picklex.Pickler(out, protocol, buffer_callback=callback)
        pickler.dispatch_table = dispatch_table
        pickler.dump(obj)
        stream = out.getvalue()
    if not large:
        return stream, [], []
    views = [byte_view(buffer.raw()) for buffer in large]
    readonly = [memoryview(buffer).readonly for buffer in large]
    return stream, views, readonly


def _segment_name() -> str:
    root = RUNTIME.home.rsplit("-", 2)[-2] if RUNTIME.home else str(os.getpid())
    return f"{_shm_segment.NAME_PREFIX}{root}-{os.getpid()}"


def _deposit(
    kind: int, stream: bytes, views: list[memoryview], readonly: list[bool]
) -> tuple[Handle, _shm_broker.Link] | None:
    """Write a segment and give it to the home broker; None when the broker refuses it."""
    conn = RUNTIME.home_link()
    spare = -1
    needed = _shm_segment.size_of(len(stream), views)
    try:
        status, _, spare = conn.call(_shm_broker.TAKE, size=needed)
    except BrokerUnavailable:
        RUNTIME.forget(conn)
        conn = RUNTIME.home_link()
    written = _shm_segment.write(_segment_name(), stream, views, readonly, spare)
    token = os.urandom(16)
    try:
        try:
            status, _, _ = conn.call(
                _shm_broker.DEPOSIT, token, kind=kind, size=written.size, fd=written.fd
            )
        except BrokerUnavailable:
            RUNTIME.forget(conn)
            conn = RUNTIME.home_link()  # once more: the home broker may have gone
            status, _, _ = conn.call(
                _shm_broker.DEPOSIT, token, kind=kind, size=written.size, fd=written.fd
            )
    finally:
        os.close(written.fd)
    if status != _shm_broker.OK:
        return None
    handle = Handle(kind, written.size, written.inode, token, conn.address, os.getpid())
    return handle, conn


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def _claim(handle: Handle) -> int:
    """A descriptor of the segment ``handle`` names, checked to be that segment."""
    try:
        conn = RUNTIME.link(handle.address)
    except BrokerUnavailable as exc:
        raise SegmentGoneError(
            f"picklex shared-memory segment unavailable: its broker (process {handle.pid}'s "
            "process tree) has exited"
        ) from exc
    try:
        status, _, fd = conn.call(_shm_broker.CLAIM, handle.token)
    except BrokerUnavailable as exc:
        RUNTIME.forget(conn)
        raise SegmentGoneError(
            "picklex shared-memory segment unavailable: its broker has exited"
        ) from exc
    if status != _shm_broker.OK or fd < 0:
        if handle.kind == _shm_broker.MESSAGE:
            what = "message was already loaded"
        else:
            what = "shared object was closed by its owner"
        raise SegmentGoneError(f"picklex shared-memory segment unavailable: the {what}")
    try:
        info = os.fstat(fd)
        if info.st_ino != handle.inode or info.st_size != handle.size:
            raise MessageError("picklex shared-memory segment does not match its handle")
        _shm_segment.check_seals(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _recycle(fd: int, size: int) -> None:
    """Give a message's segment, no longer mapped anywhere, to the broker as a spare."""
    conn = RUNTIME.home_connection  # never connect from a finalizer
    if conn is not None:
        conn.notify(_shm_broker.RECYCLE, size=size, fd=fd)


def _load_handle(handle: Handle, *, shared: bool, **loads_kwargs: Any) -> Any:
    fd = _claim(handle)
    # A claimed message is this process's alone: once unmapped it can be reused.
    recycle = _recycle if handle.kind == _shm_broker.MESSAGE else None
    try:
        mapping = _shm_segment.map_segment(
            fd, handle.size, shared=shared, recycle=recycle, inode=handle.inode
        )
    finally:
        os.close(fd)
    stream, buffers = _shm_segment.contents(mapping.view())
    del mapping  # from here on only the views keep the mapping alive
    remaining = iter(buffers)
    del buffers
    return loads_consuming_all(
        stream, remaining, MessageError, "malformed picklex shared-memory segment", **loads_kwargs
    )


def _load_message(packed: bytes) -> Any:
    """Unpickling entry point of a :func:`dumps` message: claim, map, unpickle."""
    handle = unpack(packed)
    if handle.kind != _shm_broker.MESSAGE:
        raise MessageError("picklex shared-memory handle is not a message")
    # Copy-on-write, as for a shared handle: the object must behave as an unpickled copy even
    # where a mapping is shared on purpose, in a child forked while it is alive.
    return _load_handle(handle, shared=False)


def _load_inline(stream: bytes, buffers: tuple[Any, ...]) -> Any:
    """Unpickling entry point of the in-band fallback of a message (no shared memory)."""
    return _picklex.loads(stream, buffers=buffers)


class _Message:
    """Pickles as a call to :func:`_load_message`: what a :func:`dumps` message contains."""

    __slots__ = ("packed",)

    def __init__(self, packed: bytes) -> None:
        self.packed = packed

    def __reduce__(self) -> tuple[Any, ...]:
        return _load_message, (self.packed,)


class _Inline:
    """The fallback message: stream and buffers in band, loaded by :func:`_load_inline`."""

    __slots__ = ("stream", "buffers")

    def __init__(self, stream: bytes, buffers: list[Any]) -> None:
        self.stream = stream
        self.buffers = buffers

    def __reduce__(self) -> tuple[Any, ...]:
        return _load_inline, (self.stream, tuple(self.buffers))


# ---------------------------------------------------------------------------------------------
# One-shot messages
# ---------------------------------------------------------------------------------------------


def encode(
    obj: Any,
    *,
    protocol: int | None = 5,
    threshold: int = DEFAULT_THRESHOLD,
    dispatch_table: Mapping[type, Callable[[Any], Any]] | None = None,
) -> tuple[bytes, bool]:
    """:func:`dumps`, also saying whether a segment was used (for the multiprocessing hook)."""
    if protocol is None or protocol < 0:
        protocol = resolve_protocol(protocol)
    stream, views, readonly = _pickle(
        obj, protocol, min(threshold, MIN_BUFFER_SIZE), dispatch_table
    )
    if not views and len(stream) < threshold:
        return stream, False
    deposited = None
    if len(stream) + sum(view.nbytes for view in views) >= threshold and available():
        try:
            deposited = _deposit(_shm_broker.MESSAGE, stream, views, readonly)
        except (OSError, BrokerUnavailable):
            deposited = None  # no memory, no descriptors, no broker: go in band
    if deposited is None:
        if not views:
            return stream, False
        inline = [
            pickle.PickleBuffer(v.toreadonly() if ro else v) for v, ro in zip(views, readonly)
        ]
        return _picklex.dumps(_Inline(stream, inline), protocol), False
    handle, _conn = deposited
    return _picklex.dumps(_Message(handle.pack()), protocol), True


def dumps(
    obj: Any,
    *,
    protocol: int | None = 5,
    threshold: int = DEFAULT_THRESHOLD,
    dispatch_table: Mapping[type, Callable[[Any], Any]] | None = None,
) -> bytes:
    """Pickle ``obj`` as a one-shot message whose large buffers are in shared memory.

    When the pickle stream and the out-of-band buffers of 64 KiB or more add up to at least
    ``threshold`` bytes (default 1 MiB), they are copied once, by the kernel, into a
    shared-memory segment; the result is a pickle of 147 bytes naming it. Load it once, in any
    process of the same user on this machine, with :func:`loads` (or ``picklex.loads`` /
    ``pickle.loads``): the arrays it returns are views of the segment. A second load raises
    :class:`SegmentGoneError`; a message never loaded holds its memory until the process
    tree's root exits.

    A smaller message stays in the returned pickle: the ordinary pickle when it has no buffer
    of 64 KiB or more, else a pickle carrying its stream and buffers in band (one copy each,
    like an ordinary pickle). The same in-band form is used when shared memory cannot be
    (no ``memfd_create``, the broker's pending-bytes budget spent, out of descriptors); it
    loads the same way. ``dispatch_table`` works as on a :class:`pickle.Pickler`.
    """
    return encode(obj, protocol=protocol, threshold=threshold, dispatch_table=dispatch_table)[0]


def loads(data: bytes | bytearray | memoryview, /, **kwargs: Any) -> Any:
    """Load a message made by :func:`dumps` (or any pickle): ``picklex.loads``."""
    return _picklex.loads(data, **kwargs)


# ---------------------------------------------------------------------------------------------
# Owned shares
# ---------------------------------------------------------------------------------------------


def _release(conn: _shm_broker.Link, token: bytes, pid: int) -> None:
    if os.getpid() == pid:  # a forked child's copy of a handle owns nothing
        conn.notify(_shm_broker.RELEASE, token)


class SharedHandle:
    """A small, picklable reference to an object placed in shared memory by :func:`share`.

    The handle returned by :func:`share` is the *owner*: the segment stays available until
    its :meth:`close` (or the end of its ``with`` block, or its garbage collection, or the
    owner process's exit). Pickling a handle gives 96 bytes plus the pickle's framing; the
    copy unpickled in another process can :meth:`load` the object any number of times while
    the owner keeps it open. Objects already loaded stay valid after the owner closes: their
    memory lives as long as they do.
    """

    __slots__ = ("_handle", "_finalizer", "__weakref__")

    def __init__(self, handle: Handle, finalizer: weakref.finalize | None = None) -> None:
        self._handle = handle
        self._finalizer = finalizer

    @property
    def nbytes(self) -> int:
        """Size of the segment: the pickle stream and every buffer, with alignment padding."""
        return self._handle.size

    @property
    def owner(self) -> bool:
        """Whether this is the handle :func:`share` returned, in the process that called it."""
        return self._finalizer is not None and self._handle.pid == os.getpid()

    @property
    def closed(self) -> bool:
        """True once the owner closed it (always False on non-owner copies)."""
        return self._finalizer is not None and not self._finalizer.alive

    def load(self, *, shared: bool = False, **loads_kwargs: Any) -> Any:
        """Map the segment and unpickle the object; its buffers are views of the mapping.

        By default writable buffers are mapped copy-on-write: the loaded object behaves like
        an unpickled copy (writes stay in this process) but costs no copy until written.
        With ``shared=True`` they are mapped shared: writes are seen by every process that
        loads this handle with ``shared=True``. Buffers that were read-only stay read-only.
        Raises :class:`SegmentGoneError` when the owner has closed the handle or exited.
        """
        if self.closed:
            raise SegmentGoneError("picklex shared-memory segment unavailable: handle closed")
        return _load_handle(self._handle, shared=shared, **loads_kwargs)

    def close(self) -> None:
        """Owner: release the segment (loaded objects keep their memory). Others: no-op."""
        if self._finalizer is not None and self._handle.pid == os.getpid():
            self._finalizer()

    def __enter__(self) -> SharedHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        return _handle_from_bytes, (self._handle.pack(),)

    def __repr__(self) -> str:
        role = "owner" if self.owner else "closed" if self.closed else "reference"
        return f"<picklex.shm.SharedHandle {self._handle.size} bytes, {role}>"


def _handle_from_bytes(packed: bytes) -> SharedHandle:
    handle = unpack(packed)
    if handle.kind != _shm_broker.SHARED:
        raise MessageError("picklex shared-memory handle is not a shared object")
    return SharedHandle(handle)


def share(obj: Any, *, protocol: int | None = 5) -> SharedHandle:
    """Copy ``obj``'s buffers and pickle stream into shared memory; return the owner handle.

    Every PEP 574 buffer goes into the segment (no threshold), each 64-byte aligned. Pass the
    handle to other processes by any means (it pickles to about 150 bytes) and call
    ``handle.load()`` there; each load maps the same memory. The segment stays available
    until ``handle.close()``; use ``with share(obj) as handle:`` to bound it. It is held by
    the broker in the root of this process tree, tied to this process: it also goes when
    this process exits or is killed. Raises ``OSError`` where shared memory is unavailable.
    """
    if not available():
        raise OSError("picklex.shm needs Linux memfd_create")
    protocol = resolve_protocol(protocol)
    if protocol < 5:
        raise ValueError("share() needs pickle protocol 5 or higher (out-of-band buffers)")
    stream, views, readonly = _pickle(obj, protocol, 0, None)
    deposited = _deposit(_shm_broker.SHARED, stream, views, readonly)
    if deposited is None:  # pragma: no cover - shared entries are never refused
        raise OSError("picklex shared-memory broker refused the segment")
    handle, conn = deposited
    owner = SharedHandle(handle)
    finalizer = weakref.finalize(owner, _release, conn, handle.token, handle.pid)
    finalizer.atexit = False  # at exit the broker connection closes, which releases it
    owner._finalizer = finalizer
    return owner


def stats() -> dict[str, int]:
    """What this process tree's broker holds: unclaimed messages, open shares, spares.

    Keys: ``messages``, ``message_bytes``, ``shared``, ``shared_bytes``, ``spares``,
    ``spare_bytes``. Starts the broker if this process has none yet.
    """
    conn = RUNTIME.home_link()
    _status, counters, fd = conn.call(_shm_broker.STATS)
    if fd >= 0:  # pragma: no cover - the broker sends none with stats
        os.close(fd)
    names = ("messages", "message_bytes", "shared", "shared_bytes", "spares", "spare_bytes")
    return dict(zip(names, counters))


def trim() -> None:
    """Drop the spare segments this process tree's broker keeps for reuse, now.

    Spares are segments whose receivers are done with them; the next message that fits
    reuses one instead of allocating fresh memory. They are dropped anyway after a few
    seconds unused (``_shm_broker.SPARE_IDLE_SECONDS``) and never exceed ``max_spare_bytes``.
    """
    RUNTIME.home_link().call(_shm_broker.TRIM)


def configure(*, max_pending_bytes: int | None = None, max_spare_bytes: int | None = None) -> None:
    """Set the budgets of the broker this process runs (or will run, as a tree's root).

    ``max_pending_bytes``: most bytes of sent-but-unclaimed messages held at once (default a
    quarter of RAM); beyond it :func:`dumps` puts the buffers in the pickle instead.
    ``max_spare_bytes``: most bytes of spare segments kept for reuse (default a sixteenth of
    RAM, at least 256 MiB; 0 disables reuse). No effect in a process whose broker is its
    parent's.
    """
    for name, value in (
        ("max_pending_bytes", max_pending_bytes),
        ("max_spare_bytes", max_spare_bytes),
    ):
        if value is None:
            continue
        if value < 0:
            raise ValueError(f"{name} must be >= 0")
        setattr(RUNTIME, name, value)
        if RUNTIME.broker is not None:
            setattr(RUNTIME.broker, name, value)
