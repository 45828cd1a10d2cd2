"""Bind CPython's own ``test.pickletester`` suites to a pickle implementation.

This mirrors how ``Lib/test/test_pickle.py`` binds the abstract suites to the C
implementation (``CPickleTests``, ``CUnpicklerTests``, ``CPicklerTests``, ...): each class
here subclasses the stdlib's C binding and swaps in the implementation under test, so the
extra C-only cases that ``test_pickle.py`` adds (the reference-cycle tests, test_issue18339)
come along unchanged. ``bind_suites`` is called with picklex by ``test_pickletester.py``.

Out of scope: ``SizeofTests`` (``__sizeof__`` of ``_pickle``'s internal structs) and
``CompatPickleTests`` (consistency of the ``_compat_pickle`` tables, not of an
implementation); the ``test_pickle.py`` doctests are the Python implementation's.
"""

from __future__ import annotations

import io
import pickle
import unittest
from types import SimpleNamespace
from typing import Any

from test import pickletester
from test import test_pickle as stdlib_bindings

# Stricter than test_pickle.py's in-memory variant, which also accepts the pure-Python
# unpickler's errors: the C unpickler raises only UnpicklingError here, so must picklex.
STRICT_ERRORS = (pickle.UnpicklingError,)


def bind_suites(prefix: str, impl: SimpleNamespace, reference: Any) -> dict[str, type]:
    """Return the pickletester TestCase classes bound to ``impl``.

    ``impl`` provides Pickler, Unpickler, dump, dumps, load and loads. ``reference`` is the
    stdlib C module (``_pickle``), used as the other side of the two cross-direction suites.
    Class names start with ``prefix``.
    """
    suites: dict[str, type] = {}

    def add(name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> None:
        cls = type(prefix + name, bases, namespace)
        suites[cls.__name__] = cls

    # dump/dumps/load/loads/Pickler/Unpickler as module-level API.
    add(
        "PickleModuleTests",
        (pickletester.AbstractPickleModuleTests, unittest.TestCase),
        {
            "dump": staticmethod(impl.dump),
            "dumps": staticmethod(impl.dumps),
            "load": staticmethod(impl.load),
            "loads": staticmethod(impl.loads),
            "Pickler": impl.Pickler,
            "Unpickler": impl.Unpickler,
        },
    )
    # AbstractUnpickleTests through an Unpickler on a file, with the C unpickler's errors.
    add("UnpicklerTests", (stdlib_bindings.CUnpicklerTests,), {"unpickler": impl.Unpickler})
    # AbstractPickleTests through Pickler/Unpickler objects on files.
    add(
        "PicklerTests",
        (stdlib_bindings.CPicklerTests,),
        {"pickler": impl.Pickler, "unpickler": impl.Unpickler},
    )

    # AbstractPickleTests + AbstractUnpickleTests + BigmemPickleTests through dumps/loads.
    def dumps(self: Any, arg: Any, protocol: Any = None, **kwargs: Any) -> bytes:
        return impl.dumps(arg, protocol, **kwargs)

    def loads(self: Any, buf: Any, **kwargs: Any) -> Any:
        return impl.loads(buf, **kwargs)

    add(
        "InMemoryPickleTests",
        (stdlib_bindings.InMemoryPickleTests,),
        {
            "dumps": dumps,
            "loads": loads,
            "bad_stack_errors": STRICT_ERRORS,
            "truncated_errors": STRICT_ERRORS,
        },
    )
    add(
        "PersPicklerTests",
        (stdlib_bindings.CPersPicklerTests,),
        {"pickler": impl.Pickler, "unpickler": impl.Unpickler},
    )
    # Includes test_pickler_reference_cycle, test_unpickler_reference_cycle and
    # test_custom_pickler_dispatch_table_memleak from test_pickle.py.
    add(
        "IdPersPicklerTests",
        (stdlib_bindings.CIdPersPicklerTests,),
        {"pickler": impl.Pickler, "unpickler": impl.Unpickler},
    )
    # Cross directions, as CDumpPickle_LoadPickle / DumpPickle_CLoadPickle do.
    add(
        "Dump_StdlibCLoad",
        (stdlib_bindings.PyPicklerTests,),
        {"pickler": impl.Pickler, "unpickler": reference.Unpickler},
    )
    add(
        "StdlibCDump_Load",
        (stdlib_bindings.PyPicklerTests,),
        {"pickler": reference.Pickler, "unpickler": impl.Unpickler},
    )
    # Includes test_issue18339 (memo assignment validation).
    add(
        "PicklerUnpicklerObjectTests",
        (stdlib_bindings.CPicklerUnpicklerObjectTests,),
        {"pickler_class": impl.Pickler, "unpickler_class": impl.Unpickler},
    )
    add(
        "DispatchTableTests",
        (stdlib_bindings.CDispatchTableTests,),
        {"pickler_class": impl.Pickler},
    )
    add(
        "ChainDispatchTableTests",
        (stdlib_bindings.CChainDispatchTableTests,),
        {"pickler_class": impl.Pickler},
    )
    custom_pickler = type(
        prefix + "CustomPicklerClass",
        (impl.Pickler, pickletester.AbstractCustomPicklerClass),
        {},
    )
    add("PicklerHookTests", (stdlib_bindings.CPicklerHookTests,), {"pickler_class": custom_pickler})

    # Suites that newer interpreters add: error cases of the pickler (3.13) and the types
    # being GC-tracked, immutable heap types (3.12). Each is bound where this interpreter's
    # test_pickle has it, so every version runs its own.
    if hasattr(stdlib_bindings, "CPicklingErrorTests"):
        add(
            "PicklingErrorTests",
            (stdlib_bindings.CPicklingErrorTests,),
            {"pickler": impl.Pickler},
        )
    if hasattr(stdlib_bindings, "HeapTypesTests"):

        def set_up_heap_types(self: Any) -> None:
            # The stdlib's setUp names _pickle's types; the tests themselves are reused.
            pickler = impl.Pickler(io.BytesIO())
            unpickler = impl.Unpickler(io.BytesIO())
            self._types = (impl.Pickler, impl.Unpickler, type(pickler.memo), type(unpickler.memo))

        add("HeapTypesTests", (stdlib_bindings.HeapTypesTests,), {"setUp": set_up_heap_types})
    return suites
