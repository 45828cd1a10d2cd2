"""User classes the workloads pickle by reference (module level, so ``loads`` can import them).

Each holds the same four fields so the workloads differ only in how the class reduces:
the default ``object.__reduce_ex__`` with a ``__dict__`` (plain, dataclass), with
``__slots__`` state, a ``__reduce__`` of its own, or a namedtuple's ``__getnewargs__``.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any


class Record:
    """A plain class whose instances carry a __dict__."""

    def __init__(self, ident: int, name: str, score: float, tags: list[str]) -> None:
        self.ident = ident
        self.name = name
        self.score = score
        self.tags = tags

    def __eq__(self, other: object) -> bool:
        return type(other) is Record and vars(self) == vars(other)


@dataclasses.dataclass
class DataRecord:
    """The same fields as a dataclass."""

    ident: int
    name: str
    score: float
    tags: list[str]


class SlottedRecord:
    """The same fields in __slots__ (pickled as (None, slots) state)."""

    __slots__ = ("ident", "name", "score", "tags")

    def __init__(self, ident: int, name: str, score: float, tags: list[str]) -> None:
        self.ident = ident
        self.name = name
        self.score = score
        self.tags = tags


class ReducedRecord:
    """The same fields, rebuilt from constructor arguments by its own __reduce__."""

    def __init__(self, ident: int, name: str, score: float, tags: list[str]) -> None:
        self.ident = ident
        self.name = name
        self.score = score
        self.tags = tags

    def __reduce__(self) -> tuple[Any, ...]:
        return (ReducedRecord, (self.ident, self.name, self.score, self.tags))


TupleRecord = collections.namedtuple("TupleRecord", "ident name score tags")
