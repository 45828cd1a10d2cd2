"""picklex inside subinterpreters that have their own GIL (PEP 684), several at once.

The extension keeps all its Python objects in per-interpreter module state, so every
interpreter gets its own types, caches and stdlib references, and frees them when it ends.
These tests run real isolated interpreters (which refuse single-phase extension modules)
side by side with the main one.
"""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import picklex
import pytest
import subinterpreters as sub

pytestmark = pytest.mark.skipif(not sub.AVAILABLE, reason=sub.WHY_NOT)

# A workload that touches every cache of the front: globals by name, plain instances, small
# ints and short strings, nested names, protocol 0 text, a Pickler subclass with hooks.
WORKLOAD = """
    import io, pickle, picklex, collections

    class Plain:
        def __init__(self, n):
            self.n = n
            self.tag = "t%d" % (n % 7)
        def __eq__(self, other):
            return type(other) is Plain and vars(self) == vars(other)

    Point = collections.namedtuple("Point", "x y")

    class WithPid(picklex.Pickler):
        def persistent_id(self, obj):
            return "pid" if obj == "external" else None

    class WithLoad(picklex.Unpickler):
        def persistent_load(self, pid):
            return "external"

    def check(rounds, seed):
        for i in range(rounds):
            obj = {"i": i + seed, "items": [Plain(i), Point(i, -i), "k%d" % (i % 13), 2.5],
                   "nested": collections.OrderedDict(a=1), "ext": "external"}
            for proto in range(pickle.HIGHEST_PROTOCOL + 1):
                data = picklex.dumps(obj, proto)
                assert data == pickle.dumps(obj, proto), (proto, data)
                assert picklex.loads(data) == obj
                f = io.BytesIO()
                WithPid(f, proto).dump(obj)
                f.seek(0)
                assert WithLoad(f).load() == obj
"""


def script(report: Path, body: str) -> str:
    """WORKLOAD, then `body`; "ok" lands in `report` only if everything passed."""
    return (
        WORKLOAD
        + body
        + f"""
    with open({str(report)!r}, "w") as out:
        out.write("ok")
"""
    )


def test_picklex_works_in_an_isolated_subinterpreter(tmp_path: Path) -> None:
    report = tmp_path / "report"
    interp = sub.create()
    try:
        sub.run(interp, script(report, "\n    check(20, 0)\n"))
    finally:
        sub.destroy(interp)
    assert report.read_text() == "ok"


def test_each_interpreter_has_its_own_types() -> None:
    interp = sub.create()
    try:
        sub.run(
            interp,
            f"""
            import picklex
            assert id(picklex.Pickler) != {id(picklex.Pickler)}
            assert picklex.Pickler.__module__ == "picklex"
            """,
        )
    finally:
        sub.destroy(interp)


def test_several_interpreters_with_their_own_gil_while_main_pickles(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    reports = [tmp_path / f"report{i}" for i in range(3)]

    def worker(i: int) -> None:
        try:
            interp = sub.create()
            try:
                sub.run(interp, script(reports[i], f"\n    check(150, {i * 1000})\n"))
            finally:
                sub.destroy(interp)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(reports))]
    for t in threads:
        t.start()
    # The main interpreter keeps pickling meanwhile, with its own state.
    while any(t.is_alive() for t in threads):
        obj = {"main": list(range(50)), "s": ["a", "bb", "ccc"] * 10}
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            data = picklex.dumps(obj, proto)
            assert data == pickle.dumps(obj, proto)
            assert picklex.loads(data) == obj
    for t in threads:
        t.join()
    assert not errors, errors
    assert [r.read_text() for r in reports] == ["ok"] * len(reports)


def test_module_state_is_freed_with_its_interpreter(tmp_path: Path) -> None:
    from picklex import _picklex

    before = _picklex._live_states()
    for i in range(8):
        interp = sub.create()
        try:
            sub.run(interp, script(tmp_path / f"r{i}", "\n    check(3, 0)\n"))
            sub.run(
                interp,
                f"""
                from picklex import _picklex
                assert _picklex._live_states() == {before + 1}, _picklex._live_states()
                """,
            )
        finally:
            sub.destroy(interp)
        assert _picklex._live_states() == before
