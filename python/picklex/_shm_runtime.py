"""This process's link to its segment broker: which broker it deposits into, its connections.

The broker a process deposits into (its *home*) is, in order: the one it inherited over
``fork``; the one named by the ``PICKLEX_SHM_BROKER`` environment variable (set by the
process that started it, so spawned children find it); otherwise one this process starts
itself, whereupon it sets that variable for its own children. A process tree therefore
shares one broker in its root, and messages sent by a child stay receivable after the child
exits. If the home broker has gone away, the process starts its own.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from ._shm_broker import Broker, BrokerUnavailable, Connection, LocalLink

#: Environment variable naming the broker a process tree shares.
ENV = "PICKLEX_SHM_BROKER"
# Connections kept open to brokers other than home (handles from unrelated processes).
_MAX_FOREIGN = 8


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - Linux has both
        return 16 << 30


#: Default budget of sent-but-unclaimed message bytes a broker holds: a quarter of RAM.
DEFAULT_MAX_PENDING_BYTES = max(1 << 30, _physical_memory() // 4)
#: Default budget of spare segments kept for reuse: a sixteenth of RAM, at least 256 MiB.
DEFAULT_MAX_SPARE_BYTES = max(256 << 20, _physical_memory() // 16)


class Runtime:
    """Process-wide state; one instance, reset in forked children."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.broker: Broker | None = None
        self.home: str | None = os.environ.get(ENV) or None
        self.home_connection: Connection | LocalLink | None = None
        self.foreign: OrderedDict[str, Connection] = OrderedDict()
        self.max_pending_bytes = DEFAULT_MAX_PENDING_BYTES
        self.max_spare_bytes = DEFAULT_MAX_SPARE_BYTES
        self.pid = os.getpid()

    def home_link(self) -> Connection | LocalLink:
        """The connection to this process's home broker, starting a broker if need be.

        In the broker's own process it is a :class:`LocalLink`: direct calls, no socket.
        """
        with self.lock:
            if self.home_connection is not None:
                return self.home_connection
            if self.broker is not None:
                self.home_connection = LocalLink(self.broker)
                return self.home_connection
            if self.home is not None:
                try:
                    self.home_connection = Connection(self.home)
                    return self.home_connection
                except BrokerUnavailable:
                    self.home = None  # the root has gone: become a root ourselves
            self.broker = Broker(self.max_pending_bytes, self.max_spare_bytes)
            self.home = self.broker.address
            os.environ[ENV] = self.home
            self.home_connection = LocalLink(self.broker)
            return self.home_connection

    def link(self, address: str) -> Connection | LocalLink:
        """A connection to the broker at ``address`` (home or foreign)."""
        if address == self.home:
            return self.home_link()
        with self.lock:
            conn = self.foreign.get(address)
            if conn is not None:
                self.foreign.move_to_end(address)
                return conn
        conn = Connection(address)
        with self.lock:
            self.foreign[address] = conn
            while len(self.foreign) > _MAX_FOREIGN:
                _old, stale = self.foreign.popitem(last=False)
                stale.close()
        return conn

    def forget(self, conn: Connection | LocalLink) -> None:
        """Drop a connection that failed, so the next request reconnects."""
        with self.lock:
            if conn is self.home_connection:
                self.home_connection = None
            elif self.foreign.get(conn.address) is conn:
                del self.foreign[conn.address]
        conn.close()

    def after_fork_in_child(self) -> None:
        """The child keeps the parent's broker as home but none of its descriptors."""
        self.lock = threading.Lock()
        self.pid = os.getpid()
        if self.broker is not None:
            self.broker.forget_in_child()
            self.broker = None
        for conn in [self.home_connection, *self.foreign.values()]:
            if conn is not None:
                conn.close()
        self.home_connection = None
        self.foreign.clear()


RUNTIME = Runtime()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=RUNTIME.after_fork_in_child)
