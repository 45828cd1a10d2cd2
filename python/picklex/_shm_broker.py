"""The segment broker: the one place a shared-memory segment lives between sender and receiver.

A segment is an anonymous memfd, so the kernel frees it when its last descriptor and mapping
are gone; nothing about it can leak past the processes that hold it. Between the moment a
sender has written it and the moment a receiver maps it, someone must hold a descriptor: the
broker does. It is a thread in one process (the root of a process tree: the first process
that needed one, whose address its children inherit), listening on an abstract Unix socket
(no file-system name to leave behind). Senders hand it descriptors with ``SCM_RIGHTS``;
receivers ask for them by a random 128-bit token and get a duplicate the same way.

Two kinds of entry:

* **message** — claimed exactly once: the broker gives the descriptor away and forgets it.
  It survives the death of its sender (the message may still sit in a pipe); an unclaimed one
  lives until the broker's process exits. Messages count against ``max_pending_bytes``; a
  deposit over that budget is refused and the sender falls back to an ordinary pickle.
* **shared** — owned by the connection that deposited it, claimed any number of times,
  dropped when its owner releases it or its owner's connection closes (the owner exited or
  was killed).

It also keeps **spare** segments: a receiver whose mapping of a message has died (and that
has not forked since it mapped it, so nobody else can still see that memory) gives the
segment back, and the next sender of a message that fits takes it instead of creating a new
one. Spare pages are already allocated: writing into them costs a memcpy, not a page fault
and a page allocation per 4 KiB, and dropping the receiver's last view frees nothing. Spares
count against ``max_spare_bytes`` and are dropped after ``SPARE_IDLE_SECONDS`` unused.

Every connection is checked with ``SO_PEERCRED``: only processes of the same user are served.
"""

from __future__ import annotations

import array
import bisect
import fcntl
import os
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple, Union

# op, kind, 6 reserved, token, size
REQUEST = struct.Struct("<BB6x16sQ")
# status, 7 reserved, six counters (stats) or zeros
REPLY = struct.Struct("<B7xQQQQQQ")

DEPOSIT, CLAIM, RELEASE, STATS, TAKE, RECYCLE, TRIM = 1, 2, 3, 4, 5, 6, 7
MESSAGE, SHARED = 1, 2
OK, GONE, REFUSED, BAD = 0, 1, 2, 3
_NO_COUNTERS = (0, 0, 0, 0, 0, 0)

_FD_SPACE = socket.CMSG_SPACE(4 * array.array("i").itemsize)
# Descriptors received over a socket are close-on-exec like every descriptor Python opens.
_RECV_FLAGS = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
_UCRED = struct.Struct("3i")
#: Seconds a client waits for the broker's answer before giving up on it.
REPLY_TIMEOUT = 60.0
#: A spare segment unused for this long is dropped.
SPARE_IDLE_SECONDS = 5.0
#: A spare is handed out for a request of at least this fraction of its size.
_SPARE_MIN_FILL = 0.5


class Entry(NamedTuple):
    fd: int
    size: int
    kind: int
    owner: object  # the depositing connection (or LOCAL_OWNER), for shared entries


#: Owner of the shared entries deposited by the broker's own process.
LOCAL_OWNER = "this process"


def _take_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds = array.array("i")
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % fds.itemsize
            fds.frombytes(data[:usable])
    return list(fds)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _is_segment(fd: int) -> bool:
    """A sealed memfd (regular files and others have no seals to read)."""
    try:
        return bool(fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK)
    except OSError:
        return False


def _reply(
    conn: socket.socket, status: int, counters: tuple[int, ...] = _NO_COUNTERS, fd: int = -1
) -> None:
    data = REPLY.pack(status, *counters)
    if fd >= 0:
        conn.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    else:
        conn.send(data)


class Books:
    """What the broker holds: entries, owners, spares, budgets. Thread-safe, no I/O.

    Every method that takes a descriptor takes ownership of it (keeps or closes it); every
    descriptor returned belongs to the caller. Releases and recycles that come from
    finalizers are queued (:meth:`defer`) rather than locked, because a finalizer may run
    while its thread is inside a locked section; the next operation applies them.
    """

    def __init__(self, max_pending_bytes: int, max_spare_bytes: int) -> None:
        self.max_pending_bytes = max_pending_bytes
        self.max_spare_bytes = max_spare_bytes
        self.lock = threading.Lock()
        self.entries: dict[bytes, Entry] = {}
        self.owned: dict[object, set[bytes]] = {LOCAL_OWNER: set()}
        self.message_bytes = 0
        self.shared_bytes = 0
        # Spare segments, sorted by size: (size, last use, descriptor).
        self.spares: list[tuple[int, float, int]] = []
        self.spare_bytes = 0
        self.deferred: deque[tuple[int, bytes, int, object]] = deque()
        # Called (under the lock, must not block) when the first spare arrives, so that the
        # broker's thread starts timing spares out.
        self.on_first_spare: Callable[[], None] = lambda: None

    # ---- queued work -------------------------------------------------------------------

    def defer(self, op: int, token: bytes, fd: int, owner: object) -> None:
        """Queue a RELEASE or RECYCLE; safe anywhere, finalizers included (no lock)."""
        self.deferred.append((op, token, fd, owner))

    def _apply_deferred(self) -> None:
        while self.deferred:
            op, token, fd, owner = self.deferred.popleft()
            if op == RELEASE:
                self._release(token, owner)
            elif op == RECYCLE:
                self._recycle(fd)

    # ---- operations ---------------------------------------------------------------------

    def deposit(self, kind: int, token: bytes, fd: int, owner: object) -> int:
        with self.lock:
            self._apply_deferred()
            if kind not in (MESSAGE, SHARED) or token in self.entries or owner not in self.owned:
                os.close(fd)
                return BAD
            size = os.fstat(fd).st_size  # the truth, whatever a request said
            if kind == MESSAGE:
                if self.message_bytes + size > self.max_pending_bytes:
                    os.close(fd)
                    return REFUSED
                self.entries[token] = Entry(fd, size, kind, None)
                self.message_bytes += size
            else:
                self.entries[token] = Entry(fd, size, kind, owner)
                self.owned[owner].add(token)
                self.shared_bytes += size
            return OK

    def claim(self, token: bytes) -> int:
        """A descriptor of the segment (a message is given away and forgotten), or -1."""
        with self.lock:
            self._apply_deferred()
            entry = self.entries.get(token)
            if entry is None:
                return -1
            if entry.kind == MESSAGE:
                self._remove(token)
                return entry.fd
            try:
                return os.dup(entry.fd)
            except OSError:  # out of descriptors here: the claimer sees it as unavailable
                return -1

    def take(self, size: int) -> int:
        """The smallest spare of at least ``size`` bytes (not much larger), or -1."""
        with self.lock:
            self._apply_deferred()
            index = bisect.bisect_left(self.spares, (size, -1.0, -1))
            if index == len(self.spares) or self.spares[index][0] * _SPARE_MIN_FILL > size:
                return -1
            spare_size, _, fd = self.spares.pop(index)
            self.spare_bytes -= spare_size
            return fd

    def release(self, token: bytes, owner: object) -> None:
        with self.lock:
            self._apply_deferred()
            self._release(token, owner)

    def recycle(self, fd: int) -> None:
        with self.lock:
            self._apply_deferred()
            self._recycle(fd)

    def add_owner(self, owner: object) -> None:
        with self.lock:
            self.owned[owner] = set()

    def drop_owner(self, owner: object) -> None:
        """The owner is gone (its connection closed): its shared entries go with it."""
        with self.lock:
            self._apply_deferred()
            for token in self.owned.pop(owner, ()):
                entry = self._remove(token)
                if entry is not None:
                    os.close(entry.fd)

    def trim(self, unused_since: float = 0.0) -> None:
        """Close the spares last used before ``unused_since`` (all of them for 0)."""
        with self.lock:
            self._apply_deferred()
            keep = []
            for spare in self.spares:
                if unused_since > 0 and spare[1] >= unused_since:
                    keep.append(spare)
                else:
                    os.close(spare[2])
                    self.spare_bytes -= spare[0]
            self.spares = keep

    def counters(self) -> tuple[int, ...]:
        with self.lock:
            self._apply_deferred()
            counts = [0, 0]
            for entry in self.entries.values():
                counts[entry.kind == SHARED] += 1
            return (
                counts[0],
                self.message_bytes,
                counts[1],
                self.shared_bytes,
                len(self.spares),
                self.spare_bytes,
            )

    def close_all(self) -> None:
        """Close every descriptor held (lock-free: also used in a forked child)."""
        fds = [entry.fd for entry in self.entries.values()] + [s[2] for s in self.spares]
        fds += [fd for op, _, fd, _ in self.deferred if op == RECYCLE]
        self.entries.clear()
        self.spares = []
        self.deferred.clear()
        self.message_bytes = self.shared_bytes = self.spare_bytes = 0
        _close_all(fds)

    # ---- under the lock ------------------------------------------------------------------

    def _remove(self, token: bytes) -> Entry | None:
        entry = self.entries.pop(token, None)
        if entry is not None:
            if entry.kind == MESSAGE:
                self.message_bytes -= entry.size
            else:
                self.shared_bytes -= entry.size
                owned = self.owned.get(entry.owner)
                if owned is not None:
                    owned.discard(token)
        return entry

    def _release(self, token: bytes, owner: object) -> None:
        if token in self.owned.get(owner, ()):
            entry = self._remove(token)
            if entry is not None:
                os.close(entry.fd)

    def _recycle(self, fd: int) -> None:
        if not _is_segment(fd):
            os.close(fd)
            return
        size = os.fstat(fd).st_size
        if size > self.max_spare_bytes:
            os.close(fd)
            return
        while self.spare_bytes + size > self.max_spare_bytes:  # make room: oldest out
            oldest = min(range(len(self.spares)), key=lambda i: self.spares[i][1])
            old_size, _, old_fd = self.spares.pop(oldest)
            os.close(old_fd)
            self.spare_bytes -= old_size
        bisect.insort(self.spares, (size, time.monotonic(), fd))
        self.spare_bytes += size
        if len(self.spares) == 1:
            self.on_first_spare()


class Broker:
    """The server: a daemon thread serving :class:`Books` to other processes."""

    def __init__(self, max_pending_bytes: int, max_spare_bytes: int) -> None:
        self.books = Books(max_pending_bytes, max_spare_bytes)
        self.address = f"picklex-broker-{os.getpid()}-{os.urandom(8).hex()}"
        self.pid = os.getpid()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind("\0" + self.address)  # abstract namespace
        self.listener.listen(128)
        self.connections: set[socket.socket] = set()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._uid = os.getuid()
        self._closed = False
        self.books.on_first_spare = self.wake
        self._thread = threading.Thread(target=self._run, name="picklex-shm-broker", daemon=True)
        self._thread.start()

    @property
    def max_pending_bytes(self) -> int:
        return self.books.max_pending_bytes

    @max_pending_bytes.setter
    def max_pending_bytes(self, value: int) -> None:
        self.books.max_pending_bytes = value

    @property
    def max_spare_bytes(self) -> int:
        return self.books.max_spare_bytes

    @max_spare_bytes.setter
    def max_spare_bytes(self, value: int) -> None:
        self.books.max_spare_bytes = value

    # ---- lifetime ----------------------------------------------------------------------

    def wake(self) -> None:
        """Have the thread apply queued work soon (safe in finalizers: never blocks)."""
        try:
            os.write(self._wake_w, b"w")
        except OSError:  # full (it will wake anyway) or closed
            pass

    def close(self) -> None:
        """Stop serving and drop every entry (their memory goes once receivers unmap it)."""
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        self._release_everything()

    def forget_in_child(self) -> None:
        """In a forked child: close this process's copies of the broker's descriptors.

        The thread did not survive the fork; the parent keeps serving with its own copies.
        Keeping ours would keep every pending segment alive for as long as the child lives.
        """
        self._closed = True
        self._release_everything()

    def _release_everything(self) -> None:
        self.books.close_all()
        for conn in list(self.connections):
            conn.close()
        self.connections.clear()
        self.listener.close()
        self._selector.close()
        _close_all([self._wake_r, self._wake_w])

    # ---- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            timeout = SPARE_IDLE_SECONDS if self.books.spares else None
            for key, _events in self._selector.select(timeout):
                if key.fileobj == self._wake_r:
                    if b"x" in os.read(self._wake_r, 4096):
                        return
                    self.books.counters()  # applies the queued releases and recycles
                elif key.fileobj is self.listener:
                    self._accept()
                else:
                    self._serve(key.fileobj)  # type: ignore[arg-type]
            if self.books.spares:
                self.books.trim(time.monotonic() - SPARE_IDLE_SECONDS)

    def _accept(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        try:
            _pid, uid, _gid = _UCRED.unpack(
                conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
            )
        except OSError:
            uid = -1
        if uid != self._uid:
            conn.close()
            return
        # Replies are small and clients read them at once; a client that does not is dropped.
        conn.settimeout(5.0)
        self.connections.add(conn)
        self.books.add_owner(conn)
        self._selector.register(conn, selectors.EVENT_READ)

    def _drop(self, conn: socket.socket) -> None:
        try:
            self._selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        self.connections.discard(conn)
        self.books.drop_owner(conn)
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            data, ancdata, flags, _ = conn.recvmsg(REQUEST.size, _FD_SPACE, _RECV_FLAGS)
            fds = _take_fds(ancdata)
            if not data:
                self._drop(conn)
                return
            if len(data) != REQUEST.size or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                _reply(conn, BAD)
                return
            op, kind, token, size = REQUEST.unpack(data)
            books = self.books
            if op == DEPOSIT:
                if len(fds) != 1:
                    _reply(conn, BAD)
                    return
                _reply(conn, books.deposit(kind, token, fds.pop(), conn))
            elif op in (CLAIM, TAKE):
                fd = books.claim(token) if op == CLAIM else books.take(size)
                try:
                    _reply(conn, OK if fd >= 0 else GONE, fd=fd)
                finally:
                    if fd >= 0:
                        os.close(fd)
            elif op == RELEASE:
                books.release(token, conn)
            elif op == RECYCLE:
                if len(fds) == 1:
                    books.recycle(fds.pop())
            elif op == TRIM:
                books.trim()
                _reply(conn, OK)
            elif op == STATS:
                _reply(conn, OK, books.counters())
            else:
                _reply(conn, BAD)
        except Exception:  # a broken or misbehaving client: never let the loop die
            self._drop(conn)
        finally:
            _close_all(fds)


# ---------------------------------------------------------------------------------------------
# Client side
# ---------------------------------------------------------------------------------------------


class BrokerUnavailable(OSError):
    """The broker could not be reached or did not answer."""


class Connection:
    """One client connection to a broker; requests and their replies are serialised."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.sock.settimeout(REPLY_TIMEOUT)
            self.sock.connect("\0" + address)
        except OSError as exc:
            self.sock.close()
            raise BrokerUnavailable(f"picklex shared-memory broker unreachable: {exc}") from exc
        self.lock = threading.Lock()

    def close(self) -> None:
        self.sock.close()

    def call(
        self, op: int, token: bytes = bytes(16), *, kind: int = 0, size: int = 0, fd: int = -1
    ) -> tuple[int, tuple[int, ...], int]:
        """Send one request and wait for its reply: (status, counters, received descriptor)."""
        request = REQUEST.pack(op, kind, token, size)
        with self.lock:
            try:
                if fd >= 0:
                    rights = array.array("i", [fd])
                    self.sock.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
                else:
                    self.sock.send(request)
                data, ancdata, _flags, _ = self.sock.recvmsg(REPLY.size, _FD_SPACE, _RECV_FLAGS)
            except OSError as exc:
                raise BrokerUnavailable(f"picklex shared-memory broker failed: {exc}") from exc
        fds = _take_fds(ancdata)
        if len(data) != REPLY.size:
            _close_all(fds)
            raise BrokerUnavailable("picklex shared-memory broker closed the connection")
        status, *counters = REPLY.unpack(data)
        received = fds.pop(0) if fds else -1
        _close_all(fds)
        return status, tuple(counters), received

    def notify(self, op: int, token: bytes = bytes(16), *, size: int = 0, fd: int = -1) -> bool:
        """Send a request that has no reply, without blocking (safe in finalizers)."""
        request = REQUEST.pack(op, 0, token, size)
        try:
            if fd >= 0:
                rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
                self.sock.sendmsg([request], rights, socket.MSG_DONTWAIT)
            else:
                self.sock.send(request, socket.MSG_DONTWAIT)
        except OSError:
            return False
        return True


class LocalLink:
    """The broker's own process talks to its :class:`Books` directly: no socket, no thread.

    Same interface as :class:`Connection`. Descriptors passed in are duplicated (a socket
    would have duplicated them too: the caller closes its own), descriptors returned belong
    to the caller.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.address = broker.address

    def close(self) -> None:
        """Nothing to close: the broker lives as long as its process."""

    def call(
        self, op: int, token: bytes = bytes(16), *, kind: int = 0, size: int = 0, fd: int = -1
    ) -> tuple[int, tuple[int, ...], int]:
        books = self.broker.books
        if op == DEPOSIT:
            if fd < 0:
                return BAD, _NO_COUNTERS, -1
            return books.deposit(kind, token, os.dup(fd), LOCAL_OWNER), _NO_COUNTERS, -1
        if op in (CLAIM, TAKE):
            got = books.claim(token) if op == CLAIM else books.take(size)
            return (OK if got >= 0 else GONE), _NO_COUNTERS, got
        if op == STATS:
            return OK, books.counters(), -1
        if op == TRIM:
            books.trim()
            return OK, _NO_COUNTERS, -1
        if op == RELEASE:
            books.release(token, LOCAL_OWNER)
            return OK, _NO_COUNTERS, -1
        if op == RECYCLE and fd >= 0:
            books.recycle(os.dup(fd))
            return OK, _NO_COUNTERS, -1
        return BAD, _NO_COUNTERS, -1

    def notify(self, op: int, token: bytes = bytes(16), *, size: int = 0, fd: int = -1) -> bool:
        """A RELEASE or RECYCLE that never blocks (safe in finalizers).

        Applied at once when the books are free; when they are locked (perhaps by this very
        thread, which a finalizer may interrupt) it is queued for the next operation, and the
        broker thread is woken to apply it in case none comes.
        """
        if op not in (RELEASE, RECYCLE) or (op == RECYCLE and fd < 0):
            return False
        try:
            kept = os.dup(fd) if op == RECYCLE else -1
        except OSError:
            return False
        books = self.broker.books
        books.defer(op, token, kept, LOCAL_OWNER)
        if books.lock.acquire(blocking=False):
            try:
                books._apply_deferred()
            finally:
                books.lock.release()
        else:
            self.broker.wake()
        return True


#: Either way of talking to a broker.
Link = Union[Connection, LocalLink]
