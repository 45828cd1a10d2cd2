"""Fuzz picklex's Unpickler through Python with atheris.

    python fuzz/fuzz_loads_atheris.py [libFuzzer options] [CORPUS_DIR...]
    e.g. python fuzz/fuzz_loads_atheris.py -max_total_time=60 build/test-fuzz/seeds/fuzz_reader

Arbitrary bytes go to ``Unpickler.load`` of both picklex and the stdlib's C unpickler, each
restricted to a small allowlist of harmless globals (a fuzzer must never be able to build a
call to ``os.system``). A finding is:

- a crash of the interpreter (the C++ front or core misbehaving);
- ``SystemError`` (a misuse of the C API);
- picklex and the stdlib disagreeing: one accepts what the other rejects, they raise
  exceptions of different types, or they return different values (compared by their
  pickles, so NaN and recursive values compare sensibly). Inputs the 3.11 stdlib cannot
  survive are checked for picklex alone (see reference_can_run).

The extension is used as imported (an installed wheel, or ``PYTHONPATH=build/NAME/pkg``).
Coverage feedback comes from the Python code only unless the extension is built with clang
and ``-fsanitize=fuzzer-no-link``; without it this is a mutation-based smoke test from the
seeds, which is still how it finds crashes and wrong exception types.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import sys

import atheris

with atheris.instrument_imports():
    import picklex

ALLOWED_GLOBALS = {
    ("builtins", name)
    for name in (
        "list",
        "dict",
        "set",
        "frozenset",
        "tuple",
        "bytearray",
        "complex",
        "int",
        "float",
        "str",
        "bytes",
        "slice",
        "range",
        "bool",
        "getattr",
    )
} | {
    ("collections", "OrderedDict"),
    ("collections", "deque"),
    ("copyreg", "_reconstructor"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("_codecs", "encode"),
}


def restricted(base: type) -> type:
    """An Unpickler subclass of `base` that resolves only allowlisted globals."""

    class Restricted(base):  # type: ignore[misc, valid-type]
        def find_class(self, module: str, name: str) -> object:
            if (module, name) not in ALLOWED_GLOBALS:
                raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")
            return super().find_class(module, name)

        def persistent_load(self, pid: object) -> object:
            return ("persistent", pid)

    return Restricted


PicklexLoader = restricted(picklex.Unpickler)
StdlibLoader = restricted(pickle.Unpickler)


def load(loader: type, data: bytes) -> tuple[bool, object]:
    buffers = [pickle.PickleBuffer(b"oob0"), pickle.PickleBuffer(bytearray(b"oob1"))]
    try:
        return True, loader(io.BytesIO(data), buffers=buffers).load()
    except SystemError:
        raise  # the C API was misused: always a bug
    except Exception as exc:  # bad input, or an allowlisted callable rejecting its arguments
        return False, exc


def canonical(value: object) -> bytes | None:
    try:
        return pickle.dumps(value, 5)
    except Exception:
        return None  # e.g. a value holding a PickleBuffer: compare acceptance only


def reference_can_run(data: bytes) -> bool:
    """False if the stdlib unpickler would try to allocate for a huge memo key.

    Python 3.11's C unpickler sizes its memo array by the largest PUT key, so four bytes of
    LONG_BINPUT can make it ask for gigabytes (fixed in later versions); picklex's memo is
    sparse. Such inputs are checked for picklex alone.
    """
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > 100_000:
                return False
    except Exception:
        pass  # genops stops at the first malformed opcode; what came before was checked
    return True


def test_one_input(data: bytes) -> None:
    ok, value = load(PicklexLoader, data)
    if not reference_can_run(data):
        return
    ref_ok, ref_value = load(StdlibLoader, data)
    if ok != ref_ok:
        ours = "accepted" if ok else f"rejected with {value!r}"
        theirs = "accepted" if ref_ok else f"rejected with {ref_value!r}"
        raise AssertionError(f"picklex {ours}, pickle {theirs}")
    if not ok:
        if type(value) is not type(ref_value):
            raise AssertionError(f"picklex raised {value!r}, pickle {ref_value!r}")
        return
    ours, theirs = canonical(value), canonical(ref_value)
    if ours is not None and theirs is not None and ours != theirs:
        raise AssertionError(f"different values: {value!r} != {ref_value!r}")


def main() -> None:
    sys.setrecursionlimit(10_000)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
