"""Named benchmark workloads: what gets pickled, and how each is timed.

A :class:`Workload` builds its object once (``make``, seeded, so every run pickles the same
data) and says whether one ``dumps`` call covers the whole object (``per_item=False``) or each
element of a list is pickled on its own (``per_item=True``: many small messages, where the
fixed cost of a call is what counts). ``oob`` workloads pickle with a ``buffer_callback`` and
load with ``buffers=`` (PEP 574, protocol 5 only).

Add a workload by appending to :data:`WORKLOADS`; ``python -m bench --list`` shows them all.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import pyperformance_data as pyperf
from bench.classes import DataRecord, Record, ReducedRecord, SlottedRecord, TupleRecord

DEFAULT_PROTOCOLS = (2, 4, 5)
PLAIN_CLASS = "plain-class"  # tag: counts towards the "plain class instances >= 2x" target
# tag: the object's shape lives in shared references, which JSON and MessagePack expand into
# copies (exponentially for a layered DAG), so those peers are not run on it.
SHARED = "shared-refs"


@dataclass(frozen=True)
class Workload:
    """One benchmark case."""

    name: str
    description: str
    make: Callable[[], Any]
    per_item: bool = False
    protocols: tuple[int, ...] = DEFAULT_PROTOCOLS
    requires: tuple[str, ...] = ()  # importable modules the workload needs
    tags: tuple[str, ...] = ()
    oob: bool = False  # buffers out of band (buffer_callback / buffers=)


def _rng() -> random.Random:
    return random.Random(574)


def _words(rng: random.Random, n: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "qu"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(n)]


# ---- pyperformance and documents ----


def pyperformance_objects() -> list[Any]:
    """bm_pickle's three objects, each pickled on its own as pyperformance does."""
    return [pyperf.DICT, pyperf.TUPLE, pyperf.DICT_GROUP]


def nested_records() -> list[dict[str, Any]]:
    """200 user records: dicts of lists and tuples of ints, floats, str, dates and datetimes."""
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


# ---- scalars in bulk ----


def small_ints() -> list[int]:
    rng = _rng()
    return [rng.randrange(1000) for _ in range(100_000)]


def floats() -> list[float]:
    rng = _rng()
    return [rng.uniform(-1e6, 1e6) for _ in range(100_000)]


def str_key_dict() -> dict[str, int]:
    return {f"key:{i:06d}": i for i in range(100_000)}


# ---- text by the widest character it holds (CPython's 1/2/4-byte string kinds) ----

_ASCII = [chr(c) for c in range(ord("a"), ord("z") + 1)]
_LATIN1_EXTRA = [chr(c) for c in range(0xE0, 0x100) if c != 0xF7]  # à..ÿ without ÷
_BMP_SCRIPTS = [
    [chr(c) for c in range(0x0430, 0x0450)],  # Cyrillic
    [chr(c) for c in range(0x03B1, 0x03CA)],  # Greek
    [chr(c) for c in range(0x4E00, 0x4E00 + 2000)],  # CJK ideographs
]
_ASTRAL_SCRIPTS = [
    [chr(c) for c in range(0x1F600, 0x1F650)],  # emoji
    [chr(c) for c in range(0x1D400, 0x1D6A4)],  # mathematical alphanumerics
    [chr(c) for c in range(0x20000, 0x20000 + 2000)],  # CJK extension B
]


def _word_maker(script: str, rng: random.Random) -> Callable[[], str]:
    """A function drawing one word whose characters all belong to the script class."""

    def ascii_word() -> str:
        return "".join(rng.choice(_ASCII) for _ in range(rng.randint(2, 9)))

    def latin1_word() -> str:  # mostly ASCII letters with accents, as in French or German
        return "".join(
            rng.choice(_LATIN1_EXTRA if rng.random() < 0.3 else _ASCII)
            for _ in range(rng.randint(2, 9))
        )

    def alphabet_word(alphabets: list[list[str]]) -> Callable[[], str]:
        def word() -> str:
            alphabet = rng.choice(alphabets)
            return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6)))

        return word

    makers = {
        "ascii": ascii_word,
        "latin1": latin1_word,
        "bmp": alphabet_word(_BMP_SCRIPTS),
        "astral": alphabet_word(_ASTRAL_SCRIPTS),
    }
    return makers[script]


def unicode_text(script: str) -> Callable[[], list[Any]]:
    """One long text (about 100k characters) and 5,000 short strings of one script class."""

    def make() -> list[Any]:
        rng = _rng()
        word = _word_maker(script, rng)
        long_text = " ".join(word() for _ in range(20_000))
        short = [" ".join(word() for _ in range(rng.randint(1, 6))) for _ in range(5_000)]
        return [long_text, short]

    return make


# ---- many small messages ----


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


# ---- instances of user classes ----


def records(cls: Callable[..., Any]) -> Callable[[], list[Any]]:
    """10,000 instances of cls built from the same seeded fields."""

    def make() -> list[Any]:
        rng = _rng()
        return [cls(i, f"name-{i}", rng.random(), _words(rng, 3)) for i in range(10_000)]

    return make


# ---- sets and shared graphs ----


def sets() -> dict[str, Any]:
    """A set of 20k ints, a set of 20k str and 2,000 small frozensets of str."""
    rng = _rng()
    words = [f"w{i}" for i in range(5_000)]
    return {
        "ints": set(rng.sample(range(1_000_000), 20_000)),
        "strs": {f"member-{i}" for i in rng.sample(range(1_000_000), 20_000)},
        "frozen": [frozenset(rng.sample(words, 5)) for _ in range(2_000)],
    }


def shared_graph() -> list[Any]:
    """A layered DAG where every node is reached about 8 times: mostly memo lookups.

    1,000 leaves (tuples, str, small dicts), then 5 layers of 1,000 lists, each list holding
    8 nodes drawn from the layer below. Depth stays at 7, far from any recursion limit.
    """
    rng = _rng()
    layer: list[Any] = []
    for i in range(1_000):
        kind = i % 3
        if kind == 0:
            layer.append((i, f"leaf-{i}", i * 0.5))
        elif kind == 1:
            layer.append(f"shared-string-{i}")
        else:
            layer.append({"id": i, "weight": i / 7})
    for _ in range(5):
        layer = [[rng.choice(layer) for _ in range(8)] for _ in range(1_000)]
    return layer


# ---- numpy and pandas ----


def numpy_small_arrays() -> list[Any]:
    """1,000 arrays of 16 float64: the per-array reduce path, not the copy, dominates."""
    import numpy as np

    rng = np.random.default_rng(574)
    return [rng.standard_normal(16) for _ in range(1_000)]


def numpy_arrays() -> dict[str, Any]:
    """Four 1 MiB arrays of different dtypes and shapes (4 MiB of data)."""
    import numpy as np

    rng = np.random.default_rng(574)
    mib = 1 << 20
    return {
        "float64": rng.standard_normal(mib // 8),
        "int32": rng.integers(-(1 << 31), 1 << 31, mib // 4, dtype=np.int32),
        "float32_2d": rng.standard_normal((512, 512), dtype=np.float32),
        "bool": rng.random(mib) < 0.5,
    }


def dataframe() -> Any:
    """A 20,000-row DataFrame of mixed dtypes: ints, floats, str, datetimes, category, bool."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(574)
    n = 20_000
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "price": rng.uniform(1, 500, n).round(2),
            "qty": rng.integers(1, 1000, n, dtype=np.int32),
            "symbol": [f"SYM{i % 500:03d}" for i in range(n)],
            "when": pd.date_range("2024-01-01", periods=n, freq="s"),
            "side": pd.Categorical(rng.choice(["buy", "sell"], n)),
            "filled": rng.random(n) < 0.8,
        }
    )


WORKLOADS: list[Workload] = [
    Workload(
        "pyperf_pickle",
        "pyperformance bm_pickle DICT, TUPLE, DICT_GROUP, one call each",
        pyperformance_objects,
        per_item=True,
    ),
    Workload(
        "pyperf_list", "pyperformance bm_pickle LIST (10x2 lists of 10 ints)", lambda: pyperf.LIST
    ),
    Workload(
        "pyperf_dict",
        "pyperformance bm_pickle MICRO_DICT (100 dicts of 10)",
        lambda: pyperf.MICRO_DICT,
    ),
    Workload("nested", "200 user records: dicts, lists, tuples, datetimes", nested_records),
    Workload("ints", "list of 1e5 small ints", small_ints),
    Workload("floats", "list of 1e5 floats", floats),
    Workload("str_dict", "dict of 1e5 str keys to ints", str_key_dict),
    Workload("text_ascii", "ASCII: 1 long text + 5e3 short strings", unicode_text("ascii")),
    Workload("text_latin1", "Latin-1: 1 long text + 5e3 short strings", unicode_text("latin1")),
    Workload("text_bmp", "BMP (Cyrillic, Greek, CJK): long + 5e3 short", unicode_text("bmp")),
    Workload(
        "text_astral", "astral (emoji, math, CJK ext B): long + 5e3 short", unicode_text("astral")
    ),
    Workload("messages", "1e4 ten-field dicts, one call each", small_messages, per_item=True),
    Workload(
        "instances", "1e4 plain class instances (__dict__)", records(Record), tags=(PLAIN_CLASS,)
    ),
    Workload("dataclasses", "1e4 dataclass instances", records(DataRecord), tags=(PLAIN_CLASS,)),
    Workload("slots", "1e4 __slots__ instances", records(SlottedRecord), tags=(PLAIN_CLASS,)),
    Workload("reduce", "1e4 instances with their own __reduce__", records(ReducedRecord)),
    Workload("namedtuples", "1e4 namedtuples", records(TupleRecord)),
    Workload("sets", "set of 2e4 ints, set of 2e4 str, 2e3 frozensets", sets),
    Workload(
        "shared_graph",
        "6e3-node DAG, each node shared ~8 times (memo)",
        shared_graph,
        tags=(SHARED,),
    ),
    Workload(
        "numpy_small", "1e3 float64 arrays of 16 elements", numpy_small_arrays, requires=("numpy",)
    ),
    Workload(
        "numpy_inband", "4 x 1 MiB arrays of 4 dtypes, in band", numpy_arrays, requires=("numpy",)
    ),
    Workload(
        "numpy_oob",
        "4 x 1 MiB arrays, out of band (buffer_callback)",
        numpy_arrays,
        protocols=(5,),
        requires=("numpy",),
        oob=True,
    ),
    Workload(
        "pandas", "DataFrame 2e4 rows x 7 mixed-dtype columns", dataframe, requires=("pandas",)
    ),
]


def by_name() -> dict[str, Workload]:
    """The workloads keyed by name."""
    return {w.name: w for w in WORKLOADS}
