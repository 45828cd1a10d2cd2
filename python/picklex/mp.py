"""multiprocessing with shared-memory buffers: large arrays cross processes without the pipe.

One line of setup::

    ctx = picklex.mp.get_context("spawn")      # or "fork", "forkserver", None (default)
    with ctx.Pool(4) as pool: ...               # Pool, Queue, SimpleQueue, Pipe, Process
    with ProcessPoolExecutor(4, mp_context=ctx) as ex: ...

or ``picklex.mp.install()`` to switch the current process (and children it forks) over
while using the stock contexts.

What it changes: multiprocessing pickles every message with
``multiprocessing.reduction.ForkingPickler.dumps`` and unpickles it with
``ForkingPickler.loads`` (``Connection.send``/``recv``, ``Queue`` and ``SimpleQueue``, hence
``Pool`` and ``ProcessPoolExecutor``). :func:`install` replaces those two with picklex's:
the pickler is picklex's, at protocol 5, with ForkingPickler's dispatch table (so
connections, sockets and the other objects multiprocessing registers reducers for still
pickle as before). A message whose pickle stream and PEP 574 buffers of 64 KiB or more add
up to at least ``threshold`` bytes (default 1 MiB) goes into a shared-memory segment through
:func:`picklex.shm.dumps`, and the pipe carries a 147-byte message naming it. The receiver
maps it: received arrays are views of the segment, no copy. The unpickler is ``picklex.loads``.

When it goes through the pipe instead: a message under ``threshold`` (a small message is
the ordinary pickle, from picklex's pickler; one with buffers of 64 KiB or more carries them
in band, one copy each as before); a ``dumps`` call with an explicit protocol below 5; no
``memfd_create`` (not Linux); the broker's budget of unclaimed bytes (``max_pending_bytes``,
default a quarter of RAM) spent, or descriptors or memory exhausted. The process object a
``spawn``/``forkserver`` child starts from, and so a Process's arguments, are pickled by
``multiprocessing.reduction.dump`` and are not affected.

Any process can receive without installing anything (the message unpickles by calling into
:mod:`picklex.shm`); installing changes how a process *sends*. The contexts from
:func:`get_context` install in every child they start, before the child runs.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context as _mpc
import sys
from multiprocessing.reduction import ForkingPickler
from typing import Any

from . import _picklex, shm
from ._oob import resolve_protocol
from ._shm_runtime import RUNTIME

__all__ = ["install", "uninstall", "installed", "get_context", "threshold"]

_ORIGINAL = {"dumps": ForkingPickler.__dict__["dumps"], "loads": ForkingPickler.__dict__["loads"]}
_state = {"installed": False, "threshold": shm.DEFAULT_THRESHOLD}


def threshold() -> int:
    """The message size from which messages go through shared memory (when installed)."""
    return _state["threshold"]


# (copyreg's table, ForkingPickler's reducers, the merged table): the pickler caches per-type
# decisions for as long as it sees the same table object, so it is rebuilt only on change.
_tables: list[tuple[dict, dict, dict]] = []


def _dispatch_table(cls: Any) -> dict:
    """ForkingPickler's dispatch table (copyreg's plus its own reducers), as it builds it."""
    copyreg_table, extra = cls._copyreg_dispatch_table, cls._extra_reducers
    if _tables:
        seen_copyreg, seen_extra, merged = _tables[0]
        if seen_copyreg == copyreg_table and seen_extra == extra:
            return merged
    merged = dict(copyreg_table)
    merged.update(extra)
    _tables[:] = [(dict(copyreg_table), dict(extra), merged)]
    return merged


def _forking_dumps(cls: type, obj: Any, protocol: int | None = None) -> Any:
    """ForkingPickler.dumps, with large buffers sent through shared memory."""
    if protocol is not None and resolve_protocol(protocol) < 5:
        return _ORIGINAL["dumps"].__func__(cls, obj, protocol)
    data, _used_segment = shm.encode(
        obj, protocol=5, threshold=_state["threshold"], dispatch_table=_dispatch_table(cls)
    )
    return data


def install(*, threshold: int | None = None, max_pending_bytes: int | None = None) -> None:
    """Make this process's multiprocessing send large buffers through shared memory.

    ``threshold``: the smallest message (pickle stream plus buffers of 64 KiB or more, in
    bytes) that goes through shared memory (default 1 MiB).
    ``max_pending_bytes``: if this process is the root of its tree (it runs the broker),
    the most bytes of sent-but-not-yet-received messages held at once; beyond it messages
    go through the pipe. Idempotent; children forked afterwards inherit it. Also connects
    to (or starts) the process tree's broker now, so that children started later share it.
    """
    if threshold is not None:
        if threshold < 0:
            raise ValueError("threshold must be >= 0")
        _state["threshold"] = threshold
    if max_pending_bytes is not None:
        shm.configure(max_pending_bytes=max_pending_bytes)
    if not _state["installed"]:
        ForkingPickler.dumps = classmethod(_forking_dumps)  # type: ignore[assignment]
        ForkingPickler.loads = staticmethod(_picklex.loads)  # type: ignore[assignment]
        _state["installed"] = True
    if shm.available():
        try:
            RUNTIME.home_link()
        except OSError:  # pragma: no cover - messages then fall back to the pipe
            pass


def uninstall() -> None:
    """Restore multiprocessing's own pickling in this process."""
    if _state["installed"]:
        ForkingPickler.dumps = _ORIGINAL["dumps"]  # type: ignore[assignment]
        ForkingPickler.loads = _ORIGINAL["loads"]  # type: ignore[assignment]
        _state["installed"] = False


def installed() -> bool:
    """Whether :func:`install` is in effect in this process."""
    return _state["installed"]


# ---------------------------------------------------------------------------------------------
# Contexts whose children install it before they run
# ---------------------------------------------------------------------------------------------


class _InstallInChild:
    """Process mixin: the child installs picklex (same threshold, same broker) first thing."""

    _picklex_settings: tuple[int, str | None] | None = None

    def start(self) -> None:
        # Part of the pickled process object for spawn/forkserver, inherited with fork.
        self._picklex_settings = (_state["threshold"], RUNTIME.home)
        super().start()  # type: ignore[misc]

    def _bootstrap(self, *args: Any, **kwargs: Any) -> Any:
        settings = self._picklex_settings
        if settings is not None:
            child_threshold, home = settings
            if home is not None and RUNTIME.home != home and RUNTIME.broker is None:
                RUNTIME.home = home
            install(threshold=child_threshold)
        return super()._bootstrap(*args, **kwargs)  # type: ignore[misc]


_CONTEXTS: dict[str, Any] = {}

if sys.platform != "win32":

    class ForkProcess(_InstallInChild, _mpc.ForkProcess):
        """A ``fork`` Process whose child sends through shared memory."""

    class SpawnProcess(_InstallInChild, _mpc.SpawnProcess):
        """A ``spawn`` Process whose child sends through shared memory."""

    class ForkServerProcess(_InstallInChild, _mpc.ForkServerProcess):
        """A ``forkserver`` Process whose child sends through shared memory."""

    class ForkContext(_mpc.ForkContext):
        """The ``fork`` context, with :class:`ForkProcess`."""

        Process = ForkProcess  # type: ignore[assignment]

    class SpawnContext(_mpc.SpawnContext):
        """The ``spawn`` context, with :class:`SpawnProcess`."""

        Process = SpawnProcess  # type: ignore[assignment]

    class ForkServerContext(_mpc.ForkServerContext):
        """The ``forkserver`` context, with :class:`ForkServerProcess`."""

        Process = ForkServerProcess  # type: ignore[assignment]

    _CONTEXTS = {
        "fork": ForkContext(),
        "spawn": SpawnContext(),
        "forkserver": ForkServerContext(),
    }


def get_context(method: str | None = None, **install_options: Any) -> Any:
    """A multiprocessing context whose messages carry large buffers through shared memory.

    ``method`` is ``"fork"``, ``"spawn"``, ``"forkserver"`` or None for the current default.
    Calls :func:`install` (options as there) in this process, and every process the context
    starts installs it too before running its target, so Pool/ProcessPoolExecutor workers
    send their results the same way. Use it wherever a context goes: ``ctx.Pool()``,
    ``ctx.Queue()``, ``ctx.Pipe()``, ``ctx.Process()``,
    ``ProcessPoolExecutor(mp_context=ctx)``.
    """
    install(**install_options)
    if method is None:
        method = multiprocessing.get_start_method()
    try:
        return _CONTEXTS[method]
    except KeyError:
        raise ValueError(f"cannot find context for {method!r}") from None
