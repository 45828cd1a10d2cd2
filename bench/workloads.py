"""Named benchmark workloads: what gets pickled, and how each is timed.

A :class:`Workload` builds its object once (``make``) and says whether one ``dumps`` call
covers the whole object (``per_item=False``) or whether each element of a list is pickled
on its own (``per_item=True``: many small messages, where per-call overhead is what counts).
Classes used by workloads live at module level so ``loads`` can import them.

Add a workload by appending to :data:`WORKLOADS`; ``bench/run.py --list`` shows them all.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import random
from dataclasses import dataclass, field
from typing import Any, Callable

DEFAULT_PROTOCOLS = (2, 4, 5)


@dataclass(frozen=True)
class Workload:
    """One benchmark case."""

    name: str
    description: str
    make: Callable[[], Any]
    per_item: bool = False
    protocols: tuple[int, ...] = DEFAULT_PROTOCOLS
    requires: tuple[str, ...] = ()  # importable modules the workload needs
    tags: tuple[str, ...] = field(default=())


# ---- classes pickled by reference ----


class Record:
    """A plain class whose instances carry a __dict__."""

    def __init__(self, ident: int, name: str, score: float, tags: list[str]) -> None:
        self.ident = ident
        self.name = name
        self.score = score
        self.tags = tags

    def __eq__(self, other: object) -> bool:
        return type(other) is Record and vars(self) == vars(other)


class SlottedRecord:
    """The same fields in __slots__ (pickled as (None, slots) state)."""

    __slots__ = ("ident", "name", "score", "tags")

    def __init__(self, ident: int, name: str, score: float, tags: list[str]) -> None:
        self.ident = ident
        self.name = name
        self.score = score
        self.tags = tags


@dataclasses.dataclass
class DataRecord:
    """The same fields as a dataclass."""

    ident: int
    name: str
    score: float
    tags: list[str]


TupleRecord = collections.namedtuple("TupleRecord", "ident name score tags")


# ---- builders ----


def _rng() -> random.Random:
    return random.Random(574)  # every run pickles the same data


def _words(rng: random.Random, n: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "qu"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(n)]


def nested_records() -> list[dict[str, Any]]:
    """A pyperformance-style document: dicts of lists and tuples of ints, floats, str, datetimes."""
    rng = _rng()
    base = datetime.datetime(2024, 1, 1, 12, 0, 0)
    users = []
    for i in range(200):
        users.append(
            {
                "id": 10_000_000 + i * 7919,
                "name": " ".join(_words(rng, 2)).title(),
                "email": f"user{i}@example.org",
                "active": i % 3 != 0,
                "age": rng.randint(18, 90),
                "balance": round(rng.uniform(-1000, 100_000), 2),
                "created": base + datetime.timedelta(minutes=i * 37),
                "birthday": datetime.date(1950 + i % 50, 1 + i % 12, 1 + i % 28),
                "tags": _words(rng, rng.randint(0, 8)),
                "scores": [rng.random() for _ in range(10)],
                "history": [(j, rng.randint(0, 1 << 20), "event") for j in range(5)],
                "address": {
                    "city": _words(rng, 1)[0],
                    "zip": f"{rng.randint(0, 99999):05d}",
                    "geo": (rng.uniform(-90, 90), rng.uniform(-180, 180)),
                },
                "note": None,
            }
        )
    return users


def small_ints() -> list[int]:
    rng = _rng()
    return [rng.randrange(1000) for _ in range(100_000)]


def floats() -> list[float]:
    rng = _rng()
    return [rng.uniform(-1e6, 1e6) for _ in range(100_000)]


def str_key_dict() -> dict[str, int]:
    return {f"key:{i:06d}": i for i in range(100_000)}


def unicode_text() -> list[str]:
    """One long multilingual text and 10,000 short strings in several scripts."""
    rng = _rng()
    pieces = ["pickle", "données", "Größe", "скорость", "速度", "データ", "σχήμα", "🙂", "ascii"]
    long_text = " ".join(rng.choice(pieces) for _ in range(150_000))
    short = [" ".join(rng.choice(pieces) for _ in range(rng.randint(1, 6))) for _ in range(10_000)]
    return [long_text, short]


def small_messages() -> list[dict[str, Any]]:
    """10,000 ten-field messages, each pickled and unpickled on its own."""
    rng = _rng()
    return [
        {
            "id": i,
            "kind": "tick",
            "symbol": rng.choice(["AAA", "BBB", "CCC"]),
            "price": round(rng.uniform(1, 500), 2),
            "qty": rng.randint(1, 1000),
            "bid": rng.random(),
            "ask": rng.random(),
            "flags": (True, False),
            "venue": "X",
            "seq": i * 3,
        }
        for i in range(10_000)
    ]


def _fields(i: int, rng: random.Random) -> tuple[int, str, float, list[str]]:
    return i, f"name-{i}", rng.random(), _words(rng, 3)


def instances() -> list[Record]:
    rng = _rng()
    return [Record(*_fields(i, rng)) for i in range(10_000)]


def dataclass_instances() -> list[DataRecord]:
    rng = _rng()
    return [DataRecord(*_fields(i, rng)) for i in range(10_000)]


def slotted_instances() -> list[SlottedRecord]:
    rng = _rng()
    return [SlottedRecord(*_fields(i, rng)) for i in range(10_000)]


def namedtuples() -> list[TupleRecord]:
    rng = _rng()
    return [TupleRecord(*_fields(i, rng)) for i in range(10_000)]


def numpy_array() -> Any:
    import numpy as np

    return np.arange(10 * 1024 * 1024 // 8, dtype=np.float64)  # 10 MiB, pickled in band


WORKLOADS: list[Workload] = [
    Workload("nested", "200 user records: dicts, lists, tuples, datetimes", nested_records),
    Workload("ints", "list of 1e5 small ints", small_ints),
    Workload("floats", "list of 1e5 floats", floats),
    Workload("str_dict", "dict of 1e5 str keys to ints", str_key_dict),
    Workload("unicode", "1 long + 1e4 short non-ASCII strings", unicode_text),
    Workload("messages", "1e4 ten-field dicts, one call each", small_messages, per_item=True),
    Workload("instances", "1e4 plain class instances (__dict__)", instances),
    Workload("dataclasses", "1e4 dataclass instances", dataclass_instances),
    Workload("slots", "1e4 __slots__ instances", slotted_instances),
    Workload("namedtuples", "1e4 namedtuples", namedtuples),
    Workload("numpy", "10 MiB float64 array, in band", numpy_array, requires=("numpy",)),
]


def by_name() -> dict[str, Workload]:
    """The workloads keyed by name."""
    return {w.name: w for w in WORKLOADS}
