"""picklex does its own pickling: it never hands the work to the stdlib.

In a child interpreter, every entry point of the stdlib's C and Python implementations is
replaced by a stub that records the call and raises -- before picklex is imported, so a
reference captured at import time is a stub too. picklex must still produce the right
bytes (computed beforehand with the real stdlib) and load them back, and no stub may have
been called. (``_pickle`` itself stays importable: ``pickle.PickleBuffer``, which picklex
reuses on purpose, is published by it.)
"""

from __future__ import annotations

import json

import pytest
from helpers import run_python

# Objects built the same way in the parent (for reference bytes) and in the child.
OBJECTS_SOURCE = """
import collections, datetime, decimal, fractions
OBJECTS = [
    None, True, 2**70, -1.5, "text \\u20ac", b"bytes", bytearray(b"ba"),
    [1, [2, (3, {4: "four"})]], {"k": {1, 2}, "f": frozenset([3])},
    collections.OrderedDict(a=1), datetime.datetime(2020, 1, 2, 3, 4, 5),
    decimal.Decimal("1.25"), fractions.Fraction(1, 3), complex(1, 2), range(5),
    collections.Counter("abca"), ["shared"] * 3, len, collections.OrderedDict,
]
_cycle = []
_cycle.append(_cycle)
OBJECTS.append(_cycle)
"""

STUB_SOURCE = """
import pickle, _pickle, io, sys
CALLS = []

def _stub(qualname):
    def stub(*args, **kwargs):
        CALLS.append(qualname)
        raise RuntimeError(qualname + " must not be used by picklex")
    return stub

for name in ("Pickler", "Unpickler", "dump", "dumps", "load", "loads"):
    setattr(_pickle, name, _stub("_pickle." + name))
for name in ("Pickler", "Unpickler", "dump", "dumps", "load", "loads",
             "_Pickler", "_Unpickler", "_dump", "_dumps", "_load", "_loads"):
    setattr(pickle, name, _stub("pickle." + name))
"""

CHECK_SOURCE = """
import io, json
import picklex

results = {"mismatch": [], "roundtrip_failed": []}
for i, obj in enumerate(OBJECTS):
    for proto in range(6):
        expected = bytes.fromhex(EXPECTED[i][proto])
        got = picklex.dumps(obj, proto)
        f = io.BytesIO()
        picklex.Pickler(f, proto).dump(obj)
        g = io.BytesIO()
        picklex.dump(obj, g, proto)
        if not (got == expected == f.getvalue() == g.getvalue()):
            results["mismatch"].append([i, proto])
        back = [picklex.loads(expected), picklex.Unpickler(io.BytesIO(expected)).load(),
                picklex.load(io.BytesIO(expected))]
        if any(picklex.dumps(b, proto) != expected for b in back):
            results["roundtrip_failed"].append([i, proto])
results["calls"] = CALLS
print(json.dumps(results))
"""


def _expected_hex() -> list[list[str]]:
    import pickle

    namespace: dict[str, object] = {}
    exec(OBJECTS_SOURCE, namespace)
    objects = namespace["OBJECTS"]
    assert isinstance(objects, list)
    return [[pickle.dumps(obj, proto).hex() for proto in range(6)] for obj in objects]


def _run_child(prelude: str) -> dict[str, list]:
    code = "\n".join([prelude, OBJECTS_SOURCE, f"EXPECTED = {_expected_hex()!r}", CHECK_SOURCE])
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_works_with_every_stdlib_entry_point_stubbed_out() -> None:
    report = _run_child(STUB_SOURCE)
    assert report["calls"] == []
    assert report["mismatch"] == []
    assert report["roundtrip_failed"] == []


def test_stubs_really_bite() -> None:
    # The stubbing itself must be effective, or the tests above prove nothing.
    result = run_python(
        STUB_SOURCE
        + """
import pickle
try:
    pickle.dumps(1)
except RuntimeError:
    print("stubbed")
"""
    )
    assert result.stdout.strip() == "stubbed", result.stderr


@pytest.mark.parametrize("name", ["Pickler", "Unpickler"])
def test_classes_do_not_derive_from_stdlib(name: str) -> None:
    import _pickle
    import pickle

    import picklex

    cls = getattr(picklex, name)
    stdlib_classes = (
        getattr(_pickle, name),
        getattr(pickle, "_" + name),
    )
    assert not any(base in stdlib_classes for base in cls.__mro__)
