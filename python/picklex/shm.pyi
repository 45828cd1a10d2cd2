"""Type stubs for picklex.shm: objects through shared memory without copying their buffers."""

from collections.abc import Callable, Mapping
from typing import Any

from ._errors import MessageError

DEFAULT_THRESHOLD: int
MIN_BUFFER_SIZE: int

class SegmentGoneError(MessageError):
    """The segment a handle names is no longer available (loaded, closed, or its holder exited)."""

class SharedHandle:
    """A small, picklable reference to an object placed in shared memory by share()."""

    @property
    def nbytes(self) -> int: ...
    @property
    def owner(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    def load(self, *, shared: bool = False, **loads_kwargs: Any) -> Any:
        """Map the segment and unpickle; buffers are views of the mapping (copy-on-write)."""
    def close(self) -> None:
        """Owner: release the segment (loaded objects keep their memory). Others: no-op."""
    def __enter__(self) -> SharedHandle: ...
    def __exit__(self, *exc_info: object) -> None: ...

def available() -> bool:
    """Whether shared-memory transfer works here (Linux with memfd_create)."""

def dumps(
    obj: Any,
    *,
    protocol: int | None = 5,
    threshold: int = ...,
    dispatch_table: Mapping[type, Callable[[Any], Any]] | None = None,
) -> bytes:
    """Pickle obj as a one-shot message whose large buffers are in shared memory."""

def loads(data: bytes | bytearray | memoryview, /, **kwargs: Any) -> Any:
    """Load a message made by dumps() (or any pickle)."""

def share(obj: Any, *, protocol: int | None = 5) -> SharedHandle:
    """Copy obj's buffers and stream into shared memory; return the owner handle."""

def stats() -> dict[str, int]:
    """Unclaimed messages, open shares and spare segments held by this tree's broker."""

def trim() -> None:
    """Drop the spare segments kept for reuse."""

def configure(*, max_pending_bytes: int | None = None, max_spare_bytes: int | None = None) -> None:
    """Set the budgets of the broker this process runs (or will run)."""
