"""Deep nesting: dumps raises RecursionError like the stdlib, loads never recurses in C.

Pickling walks the object graph recursively, as CPython's pickler does, so very deep
structures must end in RecursionError -- never in a C stack overflow, even when the
interpreter's recursion limit has been raised far beyond what the C stack can hold (the
stdlib itself crashes there; the project's rule is stricter). Unpickling is a stack
machine: hand-built pickles nested a million levels deep load without recursion.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from typing import Any

import picklex
import pytest
from helpers import PROTOCOLS, assert_same_bytes, run_python

DEPTH = 100_000


class Link:
    """A node of a singly linked chain of instances."""

    def __init__(self, next_link: Any = None) -> None:
        self.next = next_link


class Reducing:
    """A node whose own __reduce__ nests the next one."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner

    def __reduce__(self) -> Any:
        return (Reducing, (self.inner,))


MAKERS: dict[str, Callable[[Any], Any]] = {
    "list": lambda x: [x],
    "dict": lambda x: {"k": x},
    "tuple": lambda x: (x,),
    "tuple2": lambda x: (x, 1),
    "frozenset-in-tuple": lambda x: (frozenset([1]), x),
    "instance": Link,
    "reduce": Reducing,
}


def nest(depth: int, make: Callable[[Any], Any]) -> Any:
    obj = None
    for _ in range(depth):
        obj = make(obj)
    return obj


@pytest.fixture(scope="module")
def deep_objects() -> dict[str, Any]:
    return {name: nest(DEPTH, make) for name, make in MAKERS.items()}


@pytest.mark.parametrize("proto", [0, 2, 4, 5])
@pytest.mark.parametrize("kind", list(MAKERS))
def test_dumps_deep_nesting_raises_recursion_error(
    deep_objects: dict[str, Any], kind: str, proto: int
) -> None:
    obj = deep_objects[kind]
    with pytest.raises(RecursionError):
        pickle.dumps(obj, proto)  # the reference behaviour
    with pytest.raises(RecursionError):
        picklex.dumps(obj, proto)
    f = io.BytesIO()
    p = picklex.Pickler(f, proto)
    with pytest.raises(RecursionError):
        p.dump(obj)
    # Both the module function and the Pickler object recover fully afterwards.
    small = [1, {"two": (3,)}]
    assert_same_bytes(picklex.dumps(small, proto), pickle.dumps(small, proto))
    f.seek(0)
    f.truncate()
    p.clear_memo()
    p.dump(small)
    assert pickle.loads(f.getvalue()) == small


@pytest.mark.parametrize("kind", ["list", "dict", "tuple", "instance"])
def test_moderate_nesting_is_identical(kind: str) -> None:
    obj = nest(200, MAKERS[kind])
    for proto in PROTOCOLS:
        data = picklex.dumps(obj, proto)
        assert_same_bytes(data, pickle.dumps(obj, proto))
        assert picklex.dumps(picklex.loads(data), proto) == data


def test_deep_nesting_with_a_huge_recursion_limit_does_not_crash() -> None:
    # With the limit at 10**6 the stdlib's C pickler overflows the C stack on this input;
    # picklex must stop with RecursionError (or succeed) instead.
    result = run_python(
        """
        import sys, picklex
        sys.setrecursionlimit(10**6)
        for make in (lambda x: [x], lambda x: {"k": x}, lambda x: (x,)):
            obj = None
            for _ in range(300_000):
                obj = make(obj)
            try:
                picklex.dumps(obj, 5)
                print("ok")
            except RecursionError:
                print("RecursionError")
        """,
        timeout=300,
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert set(result.stdout.split()) <= {"ok", "RecursionError"}


# --------------------------------------------------------------------------- loads


def _depth_of_lists(obj: Any) -> int:
    depth = 0
    while isinstance(obj, list) and obj:
        obj = obj[-1]
        depth += 1
    return depth


def _nested_lists_without_marks(depth: int) -> bytes:
    # EMPTY_LIST x depth, then APPEND x (depth - 1): each list appended into its parent.
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def _nested_tuples_with_marks(depth: int) -> bytes:
    return b"(" * depth + b"N" + b"t" * depth + b"."


def _nested_dicts(depth: int) -> bytes:
    # EMPTY_DICT, key, EMPTY_DICT, key, ... then SETITEM from the innermost outwards.
    return b"\x80\x02" + b"}K\x00" * depth + b"}" + b"s" * depth + b"."


def _nested_lists_with_appends(depth: int) -> bytes:
    return b"\x80\x02" + b"](" * depth + b"e" * depth + b"."


def _depth_of_tuples(obj: Any) -> int:
    depth = 0
    while isinstance(obj, tuple):
        obj = obj[0]
        depth += 1
    return depth


def _depth_of_dicts(obj: Any) -> int:
    depth = 0
    while isinstance(obj, dict) and obj:
        obj = obj[0]
        depth += 1
    return depth


LOAD_CASES = {
    "lists via APPEND": (_nested_lists_without_marks, _depth_of_lists),
    "lists via MARK/APPENDS": (_nested_lists_with_appends, _depth_of_lists),
    "tuples via MARK/TUPLE": (_nested_tuples_with_marks, _depth_of_tuples),
    "dicts via SETITEM": (_nested_dicts, _depth_of_dicts),
}


@pytest.mark.parametrize("case", list(LOAD_CASES))
def test_loads_deeply_nested_pickles(case: str) -> None:
    build, measure = LOAD_CASES[case]
    data = build(DEPTH)
    want = measure(pickle.loads(data))
    assert want >= DEPTH - 1
    for load in (picklex.loads, lambda d: picklex.Unpickler(io.BytesIO(d)).load()):
        try:
            got = load(data)
        except (pickle.UnpicklingError, RecursionError):
            continue  # a clean refusal is acceptable for nesting this deep
        assert measure(got) == want
        del got


def test_million_deep_linked_list_loads_without_recursion() -> None:
    # [0, [1, [2, ... [999999, []] ...]]]: EMPTY_LIST, BININT, APPEND per level, then one
    # APPEND per level to close it. Loading must not recurse; dumping it back must end in
    # RecursionError, not a crash; freeing it must not crash either.
    result = run_python(
        """
        import io, struct, pickle, picklex
        depth = 10**6
        body = b"".join(b"]J" + struct.pack("<i", i) + b"a" for i in range(depth))
        data = b"\\x80\\x02" + body + b"]" + b"a" * depth + b"."
        for load in (picklex.loads, lambda d: picklex.Unpickler(io.BytesIO(d)).load()):
            node = load(data)
            expected = 0
            while node:
                assert node[0] == expected, (node[0], expected)
                expected += 1
                node = node[1]
            assert expected == depth, expected
            node = load(data)
            try:
                picklex.dumps(node, 5)
                print("dumped")
            except RecursionError:
                print("RecursionError")
            del node
        print("done")
        """,
        timeout=300,
    )
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    lines = result.stdout.split()
    assert lines[-1] == "done"
    assert set(lines[:-1]) <= {"dumped", "RecursionError"}


def test_a_million_unclosed_marks_fail_cleanly() -> None:
    data = b"(" * 1_000_000 + b"."
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(data)
    with pytest.raises(pickle.UnpicklingError):
        picklex.loads(data)


def test_long_chain_of_built_instances() -> None:
    # Link(Link(...)) 50 000 deep, built bottom-up through the memo, so the pickle itself
    # is flat: the unpickler's stack stays shallow while the object graph is deep.
    depth = 50_000
    head = b"\x80\x02c" + Link.__module__.encode() + b"\nLink\nq\x00Nq\x01"
    # GET 0 (Link), EMPTY_TUPLE, NEWOBJ, EMPTY_DICT, 'next', GET 1 (the chain so far),
    # SETITEM, BUILD, BINPUT 1, POP
    step = b"h\x00)\x81}X\x04\x00\x00\x00nexth\x01sbq\x010"
    data = head + step * depth + b"h\x01."
    want = pickle.loads(data)
    got = picklex.loads(data)
    count = 0
    a, b = got, want
    while a is not None:
        assert type(a) is Link and type(b) is Link
        a, b = a.next, b.next
        count += 1
    assert b is None and count == depth
    with pytest.raises(RecursionError):
        picklex.dumps(got, 4)
