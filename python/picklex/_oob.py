"""Pickling into a stream plus out-of-band buffers, shared by files, transports and shm."""

from __future__ import annotations

from collections.abc import Iterator
from pickle import DEFAULT_PROTOCOL
from typing import Any, NamedTuple

from . import _picklex
from ._buffers import byte_view


def resolve_protocol(protocol: int | None) -> int:
    """The protocol number pickle would use for ``protocol`` (None: default, <0: highest)."""
    if protocol is None:
        return DEFAULT_PROTOCOL
    if protocol < 0:
        return _picklex.HIGHEST_PROTOCOL
    return protocol


class Pickled(NamedTuple):
    """A pickle stream and the raw bytes of the out-of-band buffers it refers to, in order."""

    protocol: int
    stream: bytes
    buffers: list[memoryview]  # flat unsigned-byte views of the objects' own memory
    readonly: list[bool]


def dumps_out_of_band(obj: Any, protocol: int | None) -> Pickled:
    """Pickle ``obj``, collecting every PEP 574 buffer out of band (protocol 5+).

    The buffers are views of the pickled objects' memory, not copies: they are valid only
    while ``obj`` is alive and unchanged.
    """
    protocol = resolve_protocol(protocol)
    collected: list[Any] = []
    if protocol >= 5:
        stream = _picklex.dumps(obj, protocol, buffer_callback=collected.append)
    else:
        stream = _picklex.dumps(obj, protocol)
    # The pickler only passes contiguous buffers out of band, so raw() never fails here.
    views = [byte_view(buf.raw()) for buf in collected]
    readonly = [memoryview(buf).readonly for buf in collected]
    return Pickled(protocol, stream, views, readonly)


def loads_consuming_all(
    stream: Any, buffers: Iterator[Any], error: type[Exception], container: str, **kwargs: Any
) -> Any:
    """Unpickle ``stream`` with ``buffers`` and insist that it used every one of them.

    ``buffers`` is an iterator so that the caller holds no list of views: once the objects
    are rebuilt, only they keep the underlying memory (a mapping, a segment) alive. A stream
    that uses fewer buffers than its container carries is corrupt: ``error`` is raised.
    """
    obj = _picklex.loads(stream, buffers=buffers, **kwargs)
    if next(buffers, None) is not None:
        raise error(f"{container}: the pickle stream uses fewer buffers than it carries")
    return obj
