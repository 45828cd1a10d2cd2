"""Type stubs for picklex.mp: multiprocessing with shared-memory buffers."""

import multiprocessing.context
from typing import Any

def threshold() -> int:
    """The buffer size from which messages go through shared memory."""

def install(*, threshold: int | None = None, max_pending_bytes: int | None = None) -> None:
    """Make this process's multiprocessing send large buffers through shared memory."""

def uninstall() -> None:
    """Restore multiprocessing's own pickling in this process."""

def installed() -> bool:
    """Whether install() is in effect in this process."""

def get_context(method: str | None = None, **install_options: Any) -> Any:
    """A multiprocessing context whose processes send large buffers through shared memory."""

class ForkProcess(multiprocessing.context.ForkProcess): ...
class SpawnProcess(multiprocessing.context.SpawnProcess): ...
class ForkServerProcess(multiprocessing.context.ForkServerProcess): ...

class ForkContext(multiprocessing.context.ForkContext):
    Process: type[ForkProcess]  # type: ignore[assignment]

class SpawnContext(multiprocessing.context.SpawnContext):
    Process: type[SpawnProcess]  # type: ignore[assignment]

class ForkServerContext(multiprocessing.context.ForkServerContext):
    Process: type[ForkServerProcess]  # type: ignore[assignment]
