"""Helpers shared by the picklex test files.

The reference for every comparison is the stdlib's C implementation (``pickle.dumps`` /
``pickle.loads`` are ``_pickle``'s on CPython); picklex itself is always the implementation
under test.
"""

from __future__ import annotations

import enum
import io
import math
import os
import pickle
import pickletools
import reprlib
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import picklex

PROTOCOLS = tuple(range(pickle.HIGHEST_PROTOCOL + 1))
API_NAMES = ("Pickler", "Unpickler", "dump", "dumps", "load", "loads")


class PicklexMissing(Exception):
    """Raised by the stand-in for a picklex entry point that the build does not provide yet."""


def _missing(name: str) -> type:
    """A callable (and subclassable) stand-in that fails when used, so one missing entry
    point fails the tests that need it instead of the whole file at collection time."""

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        raise PicklexMissing(f"picklex.{name} is not available in this build")

    return type(f"Missing{name}", (), {"__new__": __new__, "__doc__": f"picklex.{name}"})


def picklex_api() -> SimpleNamespace:
    """picklex's Pickler, Unpickler, dump, dumps, load and loads (stand-ins where missing)."""
    api = {}
    for name in API_NAMES:
        try:
            api[name] = getattr(picklex, name)
        except AttributeError:
            api[name] = _missing(name)
    return SimpleNamespace(**api)


# --------------------------------------------------------------------------- comparisons


def _float_same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


_MUTABLE = (list, dict, set, bytearray)


def assert_same_graph(got: Any, want: Any, path: str = "obj") -> None:
    """Assert ``got`` is a faithful copy of the object graph ``want``.

    Types must match exactly, floats match bit-for-bit in sign (``-0.0``) and NaN-ness, and
    sharing is preserved: every mutable object or instance met twice in ``want`` must be one
    object met twice in ``got`` (a bijection), so cycles and shared references are checked
    rather than merely tolerated.
    """
    _GraphComparer().compare(got, want, path)


class _GraphComparer:
    def __init__(self) -> None:
        self.forward: dict[int, int] = {}
        self.backward: dict[int, int] = {}

    def fail(self, path: str, msg: str) -> None:
        raise AssertionError(f"{path[:300]}: {msg}")

    def compare(self, got: Any, want: Any, path: str) -> None:
        if type(got) is not type(want):
            self.fail(path, f"type {type(got).__qualname__} != {type(want).__qualname__}")
        tracked = (
            isinstance(want, _MUTABLE)
            or hasattr(want, "__dict__")
            and not isinstance(want, type)
            and not callable(want)
        )
        if tracked:
            seen = self.forward.get(id(want))
            if seen is not None:
                if seen != id(got):
                    self.fail(path, "sharing not preserved (a shared object was copied)")
                return
            if id(got) in self.backward:
                self.fail(path, "two distinct objects were merged into one")
            self.forward[id(want)] = id(got)
            self.backward[id(got)] = id(want)
        self._compare_values(got, want, path)

    def _compare_values(self, got: Any, want: Any, path: str) -> None:
        if isinstance(want, float):
            if not _float_same(got, want):
                self.fail(path, f"{_short_repr(got)} != {_short_repr(want)}")
        elif isinstance(want, complex):
            if not (_float_same(got.real, want.real) and _float_same(got.imag, want.imag)):
                self.fail(path, f"{_short_repr(got)} != {_short_repr(want)}")
        elif isinstance(want, Decimal):
            if str(got) != str(want):
                self.fail(path, f"{_short_repr(got)} != {_short_repr(want)}")
        elif isinstance(want, (list, tuple)):
            if len(got) != len(want):
                self.fail(path, f"length {len(got)} != {len(want)}")
            for i, (g, w) in enumerate(zip(got, want)):
                self.compare(g, w, f"{path}[{i}]")
            self._compare_instance_state(got, want, path)
        elif isinstance(want, dict):
            if len(got) != len(want):
                self.fail(path, f"length {len(got)} != {len(want)}")
            if list(map(canonical, got)) != list(map(canonical, want)):
                self.fail(path, f"keys {_short_repr(list(got))} != {_short_repr(list(want))}")
            for (gk, gv), (wk, wv) in zip(got.items(), want.items()):
                self.compare(gk, wk, f"{path}.key({_short_repr(wk)})")
                self.compare(gv, wv, f"{path}[{_short_repr(wk)}]")
            self._compare_instance_state(got, want, path)
        elif isinstance(want, (set, frozenset)):
            if sorted(map(canonical, got)) != sorted(map(canonical, want)):
                self.fail(path, f"{_short_repr(got)} != {_short_repr(want)}")
            self._compare_instance_state(got, want, path)
        elif hasattr(want, "__dict__") or hasattr(type(want), "__slots__"):
            # Instances compare by state (__dict__ and slots), not by their own __eq__,
            # which may not handle NaN or cycles.
            self._compare_instance_state(got, want, path)
        elif not got == want:
            self.fail(path, f"{_short_repr(got)} != {_short_repr(want)}")

    def _compare_instance_state(self, got: Any, want: Any, path: str) -> None:
        if isinstance(want, type) or callable(want) and not hasattr(want, "__slots__"):
            if got is not want:
                self.fail(path, f"{_short_repr(got)} is not {_short_repr(want)}")
            return
        want_dict = getattr(want, "__dict__", None)
        if isinstance(want_dict, dict):
            got_dict = getattr(got, "__dict__", None)
            self.compare_plain_dict(got_dict, want_dict, f"{path}.__dict__")
        for klass in type(want).__mro__:
            for slot in _slot_names(klass):
                has_w, has_g = hasattr(want, slot), hasattr(got, slot)
                if has_w != has_g:
                    self.fail(f"{path}.{slot}", "slot set on one side only")
                if has_w:
                    self.compare(getattr(got, slot), getattr(want, slot), f"{path}.{slot}")

    def compare_plain_dict(self, got: Any, want: dict, path: str) -> None:
        if not isinstance(got, dict) or set(got) != set(want):
            self.fail(path, f"{_short_repr(got)} != {_short_repr(want)}")
        for key in want:
            self.compare(got[key], want[key], f"{path}[{_short_repr(key)}]")


def canonical(value: Any) -> str:
    """An order-independent text key for a hashable value, for comparing sets and dict keys.

    Plain ``==`` cannot be used: NaN never equals a copy of itself, ``-0.0 == 0.0``, and
    ``1 == 1.0 == True``. Ints are written in hex (decimal repr is length-limited).
    """
    kind = type(value).__qualname__
    if isinstance(value, int) and not isinstance(value, enum.Enum):
        return f"{kind}:{value:#x}"
    if isinstance(value, float):
        return f"{kind}:{value.hex() if not math.isnan(value) else 'nan'}"
    if isinstance(value, tuple):
        return f"{kind}({','.join(map(canonical, value))})"
    if isinstance(value, frozenset):
        return f"{kind}{{{','.join(sorted(map(canonical, value)))}}}"
    return f"{kind}:{value!r}"


def _short_repr(value: Any) -> str:
    return _REPR.repr(value)


class _ShortRepr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        # Decimal repr of a huge int raises ValueError (int_max_str_digits); hex never does.
        return super().repr_int(x, level) if x.bit_length() < 4000 else f"{hex(x)[:40]}..."


_REPR = _ShortRepr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlong = 60


def _slot_names(klass: type) -> Iterable[str]:
    slots = klass.__dict__.get("__slots__", ())
    if isinstance(slots, str):
        slots = (slots,)
    return [s for s in slots if s not in ("__dict__", "__weakref__")]


# --------------------------------------------------------------------------- byte diffs


def describe_mismatch(got: bytes, want: bytes, context: int = 6) -> str:
    """A readable account of where two pickles first differ, as disassembly of both."""
    if got == want:
        return "identical"
    first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return (
        f"pickles differ at byte {first} (len got={len(got)}, want={len(want)})\n"
        f"--- picklex ---\n{_dis_around(got, first, context)}\n"
        f"--- stdlib ---\n{_dis_around(want, first, context)}"
    )


def _dis_around(data: bytes, offset: int, context: int) -> str:
    lines = []
    try:
        for op, arg, pos in pickletools.genops(data):
            text = f"{pos:8}: {op.name} {_short(arg)}"
            lines.append((pos, text))
    except Exception as exc:  # the other side may be the broken one; show what decodes
        lines.append((len(data), f"<genops stopped: {exc!r}>"))
    idx = max((i for i, (pos, _) in enumerate(lines) if pos <= offset), default=0)
    window = lines[max(0, idx - context) : idx + context]
    return "\n".join(text for _, text in window)


def _short(arg: Any) -> str:
    text = repr(arg)
    return text if len(text) <= 60 else text[:57] + "..."


def assert_same_bytes(got: bytes, want: bytes) -> None:
    """Assert two pickles are byte-identical, explaining the first difference otherwise."""
    if got != want:
        raise AssertionError(describe_mismatch(got, want))


# --------------------------------------------------------------------------- interop


def check(
    obj: Any,
    protocols: Iterable[int] = PROTOCOLS,
    *,
    compare: Callable[[Any, Any], None] = assert_same_graph,
    **dumps_kwargs: Any,
) -> None:
    """Prove three-way interop for ``obj`` at each protocol.

    picklex.dumps must write exactly the stdlib's bytes; those bytes must load back through
    picklex and through the stdlib, and the stdlib's own pickle must load through picklex.
    """
    for proto in protocols:
        want = pickle.dumps(obj, proto, **dumps_kwargs)
        got = picklex.dumps(obj, proto, **dumps_kwargs)
        try:
            assert_same_bytes(got, want)
            compare(picklex.loads(got), obj)
            compare(pickle.loads(got), obj)
            compare(picklex.loads(want), obj)
        except AssertionError as exc:
            raise AssertionError(f"protocol {proto}: {exc}") from None


def dump_to_file(module_pickler: type, obj: Any, proto: int, **kwargs: Any) -> bytes:
    """Pickle through a Pickler object writing into a BytesIO."""
    f = io.BytesIO()
    module_pickler(f, proto, **kwargs).dump(obj)
    return f.getvalue()


# --------------------------------------------------------------------------- subprocesses


def picklex_search_path() -> str:
    """PYTHONPATH for a child interpreter that imports this very picklex and these helpers."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(picklex.__file__)))
    here = os.path.dirname(os.path.abspath(__file__))
    parts = [package_root, here, os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def run_python(code: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter that imports the same picklex as this one."""
    env = dict(os.environ, PYTHONPATH=picklex_search_path(), PYTHONFAULTHANDLER="1")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
