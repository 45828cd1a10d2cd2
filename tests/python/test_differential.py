"""Differential testing of picklex against the stdlib C pickler with hypothesis.

Random object graphs (atoms at every size boundary, containers, class instances using every
reduction path, stdlib value types, globals by reference, shared references and cycles) are
pickled at every protocol. Properties:

* ``picklex.dumps(x, p) == pickle.dumps(x, p)``, or both raise the same exception type;
* ``pickle.loads(picklex.dumps(x, p))`` and ``picklex.loads(pickle.dumps(x, p))`` rebuild x
  (compared structurally, with sharing and cycles);
* the same through Pickler/Unpickler objects on ``io.BytesIO``, and with ``fix_imports=False``.

The default profile is deterministic (``derandomize=True``) with a bounded example count, so a
CI failure reproduces locally as is; Hypothesis prints the falsifying example and a
``@reproduce_failure`` blob. ``--runslow`` adds a longer run of the same properties.
"""

from __future__ import annotations

import _pickle
import collections
import dataclasses
import datetime
import enum
import io
import math
import pickle
import sys
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from typing import Any

import picklex
import pytest
from helpers import PROTOCOLS, assert_same_bytes, assert_same_graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CI = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LONG = settings(CI, max_examples=600)

# Big strings make Hypothesis warn about the size of its own example reprs.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")

FRAME_TARGET = 64 * 1024

# --------------------------------------------------------------------------- classes


class Plain:
    """An instance pickled through its __dict__."""


class Slotted:
    __slots__ = ("a", "b")


class SlottedWithDict:
    __slots__ = ("a", "__dict__")


class WithGetState:
    def __init__(self, payload: Any = None) -> None:
        self.payload = payload

    def __getstate__(self) -> Any:
        return ("v1", self.payload)

    def __setstate__(self, state: Any) -> None:
        self.payload = state[1]


class WithReduce:
    def __init__(self, a: Any, b: Any) -> None:
        self.a, self.b = a, b

    def __reduce__(self) -> Any:
        return (WithReduce, (self.a, self.b))


class WithReduceEx:
    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __reduce_ex__(self, proto: int) -> Any:
        if proto >= 2:
            return (WithReduceEx, (), {"value": self.value})
        return (WithReduceEx, (self.value,))


Pair = collections.namedtuple("Pair", "x y")


class Color(enum.Enum):
    RED = 1
    GREEN = "green"
    BLUE = (3, "b")


class Shade(enum.IntEnum):
    LIGHT = 1
    DARK = 2


class Perm(enum.IntFlag):
    R = 4
    W = 2
    X = 1


@dataclasses.dataclass
class Record:
    name: str
    size: int
    ratio: float = 0.5


@dataclasses.dataclass(frozen=True)
class FrozenRecord:
    key: str
    rank: int


def module_function(x: int) -> int:
    """A module-level function, pickled by reference."""
    return x


GLOBALS = [
    len, max, math.sqrt, pickle.dumps, module_function, Plain, Slotted, Record, Color, int,
    str, type(None), type(NotImplemented), collections.OrderedDict, datetime.datetime,
    Decimal, Fraction, io.BytesIO, sys.getrecursionlimit, NotImplemented, Ellipsis,
    Color.RED, Shade.DARK, enum.Enum, dict.fromkeys,
]  # fmt: skip

# --------------------------------------------------------------------------- atoms

BITS = [7, 8, 15, 16, 31, 32, 63, 64, 100, 255 * 8 - 1, 255 * 8, 255 * 8 + 1, 5000]


def _boundary_int(bits: int, delta: int, negative: bool) -> int:
    value = 2**bits + delta
    return -value if negative else value


ints = st.one_of(
    st.integers(),
    st.builds(_boundary_int, st.sampled_from(BITS), st.integers(-2, 1), st.booleans()),
    # Below 4300 digits: protocol 0 writes ints in decimal (sys.int_info's str limit).
    st.integers(min_value=-(2**14000), max_value=2**14000),
)

floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.sampled_from(
        [
            0.0,
            -0.0,
            math.nan,
            -math.nan,
            math.inf,
            -math.inf,
            5e-324,
            -5e-324,
            2.2250738585072014e-308,
            1.7976931348623157e308,
            1e16,
            1e-05,
            1e22,
            0.1,
            1 / 3,
        ]
    ),  # fmt: skip
)

# Every code point, lone surrogates included (category Cs is excluded by default).
any_char = st.characters(exclude_categories=())
SPECIAL_CHARS = "\\\n\r\x00\x1a\x7f\x80\xe9\u20ac\ud800\udfff\U0001f600\U0010ffff"
BOUNDARY_LENGTHS = [254, 255, 256, 257, 65535, 65536, FRAME_TARGET - 10, FRAME_TARGET + 10]


def _repeat(ch: str, n: int) -> str:
    return ch * n


texts = st.one_of(
    st.text(any_char, max_size=24),
    st.text(st.sampled_from(SPECIAL_CHARS), max_size=24),
    st.builds(_repeat, st.sampled_from("a\xe9\u20ac\U0001f600"), st.sampled_from(BOUNDARY_LENGTHS)),
    st.builds(_repeat, any_char, st.integers(0, 600)),
)

raw_bytes = st.one_of(
    st.binary(max_size=40),
    st.builds(lambda b, n: bytes([b]) * n, st.integers(0, 255), st.sampled_from(BOUNDARY_LENGTHS)),
)

DATETIMES = st.one_of(
    st.datetimes(),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.builds(
        datetime.timezone,
        st.timedeltas(
            min_value=datetime.timedelta(hours=-23), max_value=datetime.timedelta(hours=23)
        ),
    ),
    st.builds(
        lambda dt, off: dt.replace(tzinfo=datetime.timezone(datetime.timedelta(minutes=off))),
        st.datetimes(),
        st.integers(-1439, 1439),
    ),
)

numbers = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.fractions(),
    st.complex_numbers(allow_nan=True, allow_infinity=True),
)

misc = st.one_of(
    st.builds(range, st.integers(-50, 50), st.integers(-50, 50), st.integers(1, 5)),
    st.builds(
        slice, st.none() | st.integers(), st.none() | st.integers(), st.none() | st.integers()
    ),
    st.sampled_from(list(Color) + list(Shade) + [Perm.R | Perm.W, Perm(0), Perm.X]),
    st.sampled_from(GLOBALS),
)

hashable_atoms = st.one_of(
    st.none(), st.booleans(), ints, floats, texts, raw_bytes, st.sampled_from(list(Color))
)

atoms = st.one_of(
    hashable_atoms,
    st.builds(bytearray, raw_bytes),
    DATETIMES,
    numbers,
    misc,
)

hashables = st.recursive(
    hashable_atoms,
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.frozensets(inner, max_size=4),
        st.builds(Pair, inner, inner),
        st.builds(FrozenRecord, st.text(max_size=5), st.integers()),
    ),
    max_leaves=6,
)

# --------------------------------------------------------------------------- instances


def _plain(attrs: dict[str, Any]) -> Plain:
    obj = Plain()
    obj.__dict__.update(attrs)
    return obj


def _slotted(a: Any, b: Any, set_b: bool) -> Slotted:
    obj = Slotted()
    obj.a = a
    if set_b:
        obj.b = b
    return obj


def _slotted_with_dict(a: Any, extra: Any) -> SlottedWithDict:
    obj = SlottedWithDict()
    obj.a = a
    obj.extra = extra
    return obj


def instances(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    names = st.text("abcxyz_", min_size=1, max_size=4)
    return st.one_of(
        st.builds(_plain, st.dictionaries(names, children, max_size=4)),
        st.builds(_slotted, children, children, st.booleans()),
        st.builds(_slotted_with_dict, children, children),
        st.builds(WithGetState, children),
        st.builds(WithReduce, children, children),
        st.builds(WithReduceEx, children),
        st.builds(Pair, children, children),
        st.builds(Record, st.text(max_size=8), st.integers(), floats),
    )


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=6),
        st.tuples(children),
        st.tuples(children, children, children),
        st.lists(children, max_size=6).map(tuple),
        st.dictionaries(hashables, children, max_size=5),
        st.sets(hashables, max_size=5),
        st.frozensets(hashables, max_size=5),
        st.builds(lambda x, n: [x] * n, children, st.integers(2, 4)),  # shared references
        # around the APPENDS/SETITEMS/ADDITEMS batch size of 1000
        st.builds(lambda x, n: [x] * n, children, st.sampled_from([999, 1000, 1001])),
        st.builds(lambda n: {i: i for i in range(n)}, st.sampled_from([999, 1000, 1001])),
        st.builds(lambda n: set(range(n)), st.sampled_from([999, 1000, 1001])),
        instances(children),
    )


trees = st.recursive(atoms, containers, max_leaves=24)

# --------------------------------------------------------------------------- sharing / cycles


def _walk_mutables(root: Any) -> list[Any]:
    """Lists, dicts and Plain instances reachable from root (each once)."""
    seen: set[int] = set()
    found: list[Any] = []
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, dict, Plain)) and type(obj) in (list, dict, Plain):
            found.append(obj)
        if isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (Plain, SlottedWithDict, WithGetState, WithReduceEx)):
            stack.extend(vars(obj).values())
    return found


@st.composite
def graphs(draw: st.DrawFn) -> Any:
    """A tree with extra edges between its mutable nodes: shared references and cycles."""
    root = draw(trees)
    mutables = _walk_mutables(root)
    if mutables and draw(st.booleans()):
        for _ in range(draw(st.integers(1, 4))):
            src = draw(st.sampled_from(mutables))
            dst = draw(st.sampled_from(mutables))
            if isinstance(src, list):
                src.append(dst)
            elif isinstance(src, dict):
                src[draw(hashables)] = dst
            else:
                src.__dict__[draw(st.sampled_from(["p", "q"]))] = dst
    return root


# --------------------------------------------------------------------------- properties


def _outcome(fn: Any, *args: Any, **kwargs: Any) -> tuple[bytes | None, type | None]:
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # the exception type is compared, not hidden
        return None, type(exc)


def _dumps_agree(obj: Any, proto: int, **kwargs: Any) -> bytes | None:
    want, want_exc = _outcome(pickle.dumps, obj, proto, **kwargs)
    got, got_exc = _outcome(picklex.dumps, obj, proto, **kwargs)
    if want_exc is not None:
        assert got_exc is want_exc, f"protocol {proto}: stdlib raised {want_exc}, picklex {got_exc}"
        return None
    assert got_exc is None, f"protocol {proto}: picklex raised {got_exc}, stdlib did not"
    assert_same_bytes(got, want)
    return want


def check_dumps_and_loads(obj: Any) -> None:
    """dumps is byte-identical (or fails alike) and the bytes load back both ways."""
    for proto in PROTOCOLS:
        data = _dumps_agree(obj, proto)
        if data is None:
            continue
        assert_same_graph(pickle.loads(data), obj)
        assert_same_graph(picklex.loads(data), obj)


def check_file_objects(obj: Any) -> None:
    """The same through Pickler/Unpickler objects on io.BytesIO."""
    for proto in PROTOCOLS:
        want = io.BytesIO()
        try:
            _pickle.Pickler(want, proto).dump(obj)
        except Exception as exc:
            with pytest.raises(type(exc)):
                picklex.Pickler(io.BytesIO(), proto).dump(obj)
            continue
        got = io.BytesIO()
        picklex.Pickler(got, proto).dump(obj)
        assert_same_bytes(got.getvalue(), want.getvalue())
        want.seek(0)
        assert_same_graph(picklex.Unpickler(want).load(), obj)
        got.seek(0)
        assert_same_graph(_pickle.Unpickler(got).load(), obj)


def check_fix_imports_false(obj: Any) -> None:
    """The same with fix_imports=False on both sides, at the protocols it affects."""
    for proto in (0, 1, 2, 3):
        data = _dumps_agree(obj, proto, fix_imports=False)
        if data is None:
            continue
        assert_same_graph(picklex.loads(data, fix_imports=False), obj)
        assert_same_graph(pickle.loads(data, fix_imports=False), obj)


@CI
@given(graphs())
def test_dumps_identical_and_loads_both_ways(obj: Any) -> None:
    check_dumps_and_loads(obj)


@CI
@given(graphs())
def test_pickler_and_unpickler_on_bytesio(obj: Any) -> None:
    check_file_objects(obj)


@CI
@given(graphs())
def test_fix_imports_false(obj: Any) -> None:
    check_fix_imports_false(obj)


@pytest.mark.slow
@LONG
@given(graphs())
def test_long_run_all_properties(obj: Any) -> None:
    check_dumps_and_loads(obj)
    check_file_objects(obj)
    check_fix_imports_false(obj)


# --------------------------------------------------------------------------- every category once


def _shared_and_cyclic() -> Any:
    shared = [1, "s"]
    node = _plain({"shared": shared})
    node.__dict__["self"] = node
    cyclic: dict[str, Any] = {"node": node}
    cyclic["again"] = cyclic
    return [shared, shared, node, cyclic, (shared,)]


# One representative per category, so each is exercised whatever Hypothesis draws.
CATEGORY_EXAMPLES: dict[str, Callable[[], Any]] = {
    "int boundaries": lambda: [s * (2**b + d) for b in BITS for d in (-1, 0) for s in (1, -1)],
    "huge int": lambda: [2**14000 - 1, -(2**9000)],
    "floats": lambda: [0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324, 1e16, 1e-05, 0.1],
    "lone surrogates and astral": lambda: ["\ud800", "a\udfffb", "\U0001f600" * 3],
    "string lengths": lambda: ["x" * n for n in BOUNDARY_LENGTHS],
    "bytes lengths": lambda: [b"y" * n for n in BOUNDARY_LENGTHS],
    "bytearray": lambda: [bytearray(b"ab"), bytearray(300)],
    "none and bools": lambda: [None, True, False],
    "containers": lambda: [[1, (2,)], {"k": {3}}, frozenset({4}), (), [], {}, set()],
    "shared and cyclic": _shared_and_cyclic,
    "plain instance": lambda: _plain({"a": 1, "b": [2]}),
    "slots": lambda: [_slotted(1, 2, True), _slotted(1, 2, False), _slotted_with_dict(1, 2)],
    "getstate/setstate": lambda: WithGetState([1, 2]),
    "reduce": lambda: WithReduce("a", ("b",)),
    "reduce_ex": lambda: WithReduceEx({"v": 1}),
    "namedtuple": lambda: Pair(1, Pair(2, 3)),
    "enums": lambda: [Color.RED, Color.BLUE, Shade.DARK, Perm.R | Perm.X, Perm(0)],
    "dataclasses": lambda: [Record("r", 1, 0.25), FrozenRecord("k", 2)],
    "datetime family": lambda: [
        datetime.datetime(2024, 2, 29, 23, 59, 59, 999999),
        datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
        datetime.date(1, 1, 1),
        datetime.time(12, 30, tzinfo=datetime.timezone.utc),
        datetime.timedelta(days=-1, microseconds=5),
        datetime.timezone(datetime.timedelta(minutes=330), "IST"),
    ],
    "decimal and fraction": lambda: [
        Decimal("-0.00"),
        Decimal("NaN"),
        Decimal("1e-999"),
        Fraction(-7, 3),
    ],  # fmt: skip
    "complex, range, slice": lambda: [complex(-0.0, math.inf), range(-5, 5, 2), slice(1, None, 2)],
    "globals by reference": lambda: list(GLOBALS),
    "batch sizes": lambda: [[0] * 999, [1] * 1000, list(range(1001)), set(range(1001))],
}


@pytest.mark.parametrize("category", list(CATEGORY_EXAMPLES))
def test_every_category_once(category: str) -> None:
    obj = CATEGORY_EXAMPLES[category]()
    check_dumps_and_loads(obj)
    check_file_objects(obj)
    check_fix_imports_false(obj)


# --------------------------------------------------------------------------- the comparer


def _cycle() -> list[Any]:
    lst: list[Any] = []
    lst.append(lst)
    return lst


@pytest.mark.parametrize(
    ("got", "want"),
    [
        (0.0, -0.0),
        (1, 1.0),
        ({math.nan}, {1.0}),
        ([[1], [1]], (lambda s: [s, s])([1])),  # sharing lost
        ((lambda s: [s, s])([1]), [[1], [1]]),  # sharing invented
        ([[]], _cycle()),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),  # order matters for dicts
        (Record("x", 1, math.nan), Record("x", 1, 0.5)),
    ],
)
def test_comparer_rejects_differences(got: Any, want: Any) -> None:
    with pytest.raises(AssertionError):
        assert_same_graph(got, want)


def test_comparer_accepts_copies_with_nan_and_cycles() -> None:
    obj = [math.nan, {math.nan}, Record("n", 0, math.nan), _cycle()]
    obj.append(obj)
    assert_same_graph(pickle.loads(pickle.dumps(obj)), obj)
