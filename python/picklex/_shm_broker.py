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
from typing import NamedTuple

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
    owner: socket.socket | None  # the depositing connection, for shared entries


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


class Broker:
    """The server: a daemon thread holding segment descriptors for other processes."""

    def __init__(self, max_pending_bytes: int, max_spare_bytes: int) -> None:
        self.max_pending_bytes = max_pending_bytes
        self.max_spare_bytes = max_spare_bytes
        self.address = f"picklex-broker-{os.getpid()}-{os.urandom(8).hex()}"
        self.pid = os.getpid()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.listener.bind("\0" + self.address)  # abstract namespace
        self.listener.listen(128)
        self.entries: dict[bytes, Entry] = {}
        self.owned: dict[socket.socket, set[bytes]] = {}
        self.message_bytes = 0
        self.shared_bytes = 0
        # Spare segments, sorted by size: (size, last use, descriptor).
        self.spares: list[tuple[int, float, int]] = []
        self.spare_bytes = 0
        self._wake_r, self._wake_w = os.pipe()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.listener, selectors.EVENT_READ)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._uid = os.getuid()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="picklex-shm-broker", daemon=True)
        self._thread.start()

    # ---- lifetime ----------------------------------------------------------------------

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
        _close_all([entry.fd for entry in self.entries.values()])
        self.entries.clear()
        self.message_bytes = self.shared_bytes = 0
        self._drop_spares(0.0)
        for conn in list(self.owned):
            conn.close()
        self.owned.clear()
        self.listener.close()
        self._selector.close()
        _close_all([self._wake_r, self._wake_w])

    # ---- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            timeout = SPARE_IDLE_SECONDS if self.spares else None
            for key, _events in self._selector.select(timeout):
                if key.fileobj == self._wake_r:
                    return
                if key.fileobj is self.listener:
                    self._accept()
                else:
                    self._serve(key.fileobj)  # type: ignore[arg-type]
            if self.spares:
                self._drop_spares(time.monotonic() - SPARE_IDLE_SECONDS)

    # ---- spares ------------------------------------------------------------------------

    def _drop_spares(self, unused_since: float) -> None:
        """Close the spares last used before ``unused_since`` (all of them for 0 or less)."""
        keep = []
        for spare in self.spares:
            if unused_since > 0 and spare[1] >= unused_since:
                keep.append(spare)
            else:
                os.close(spare[2])
                self.spare_bytes -= spare[0]
        self.spares = keep

    def _add_spare(self, size: int, fd: int) -> None:
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

    def _take_spare(self, size: int) -> int:
        """The smallest spare of at least ``size`` bytes (not much larger), or -1."""
        index = bisect.bisect_left(self.spares, (size, -1.0, -1))
        if index == len(self.spares) or self.spares[index][0] * _SPARE_MIN_FILL > size:
            return -1
        spare_size, _, fd = self.spares.pop(index)
        self.spare_bytes -= spare_size
        return fd

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
        self.owned[conn] = set()
        self._selector.register(conn, selectors.EVENT_READ)

    def _drop(self, conn: socket.socket) -> None:
        try:
            self._selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        for token in self.owned.pop(conn, ()):
            entry = self._remove(token)
            if entry is not None:
                os.close(entry.fd)
        conn.close()

    def _remove(self, token: bytes) -> Entry | None:
        entry = self.entries.pop(token, None)
        if entry is not None:
            if entry.kind == MESSAGE:
                self.message_bytes -= entry.size
            else:
                self.shared_bytes -= entry.size
                owned = self.owned.get(entry.owner)  # type: ignore[arg-type]
                if owned is not None:
                    owned.discard(token)
        return entry

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
            if op == DEPOSIT:
                self._deposit(conn, kind, token, size, fds)
                fds = []  # kept or closed by _deposit
            elif op == CLAIM:
                self._claim(conn, token)
            elif op == RELEASE:
                if token in self.owned.get(conn, ()):
                    entry = self._remove(token)
                    if entry is not None:
                        os.close(entry.fd)
            elif op == TAKE:
                fd = self._take_spare(size)
                try:
                    _reply(conn, OK if fd >= 0 else GONE, fd=fd)
                finally:
                    if fd >= 0:
                        os.close(fd)
            elif op == RECYCLE:
                if len(fds) == 1 and _is_segment(fds[0]):
                    fd = fds.pop()
                    self._add_spare(os.fstat(fd).st_size, fd)
            elif op == TRIM:
                self._drop_spares(0.0)
                _reply(conn, OK)
            elif op == STATS:
                counts = [0, 0]
                for entry in self.entries.values():
                    counts[entry.kind == SHARED] += 1
                counters = (counts[0], self.message_bytes, counts[1], self.shared_bytes)
                _reply(conn, OK, (*counters, len(self.spares), self.spare_bytes))
            else:
                _reply(conn, BAD)
        except Exception:  # a broken or misbehaving client: never let the loop die
            self._drop(conn)
        finally:
            _close_all(fds)

    def _deposit(
        self, conn: socket.socket, kind: int, token: bytes, size: int, fds: list[int]
    ) -> None:
        if len(fds) != 1 or kind not in (MESSAGE, SHARED) or token in self.entries:
            _close_all(fds)
            _reply(conn, BAD)
            return
        size = os.fstat(fds[0]).st_size  # the truth, whatever the request said
        if kind == MESSAGE and self.message_bytes + size > self.max_pending_bytes:
            _close_all(fds)
            _reply(conn, REFUSED)
            return
        (fd,) = fds
        if kind == MESSAGE:
            self.entries[token] = Entry(fd, size, kind, None)
            self.message_bytes += size
        else:
            self.entries[token] = Entry(fd, size, kind, conn)
            self.owned[conn].add(token)
            self.shared_bytes += size
        _reply(conn, OK)

    def _claim(self, conn: socket.socket, token: bytes) -> None:
        entry = self.entries.get(token)
        if entry is None:
            _reply(conn, GONE)
            return
        if entry.kind == MESSAGE:
            self._remove(token)
            try:
                _reply(conn, OK, fd=entry.fd)
            finally:
                os.close(entry.fd)
        else:
            _reply(conn, OK, fd=entry.fd)


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
