"""picklex: a faster, byte-identical drop-in for :mod:`pickle`, written in C++.

``import picklex as pickle`` works: the functions, classes, constants and exceptions here have
the names, signatures and behaviour of the standard module's, and ``dumps`` writes the same
bytes as CPython's own pickler for every protocol. The exception classes and
:class:`PickleBuffer` *are* the stdlib's, so code that catches ``pickle.UnpicklingError`` or
returns ``pickle.PickleBuffer`` from ``__reduce_ex__`` works unchanged.
"""

from __future__ import annotations

from pickle import DEFAULT_PROTOCOL, PickleBuffer, PickleError, PicklingError, UnpicklingError

from . import _picklex
from ._picklex import HIGHEST_PROTOCOL, Pickler, Unpickler, dump, dumps, load, loads

__version__ = "0.1.0"


def _export_opcodes() -> list[str]:
    """Publish every opcode as a bytes constant (``picklex.MARK == b'('``), as pickle does."""
    names = []
    for name, code, *_ in _picklex.OPCODES:
        globals()[name] = code
        names.append(name)
    return names


_OPCODE_NAMES = _export_opcodes()
# pickle's two protocol-0 spellings of booleans, which are not opcodes of their own.
TRUE = b"I01\n"
FALSE = b"I00\n"

__all__ = [
    "PickleError",
    "PicklingError",
    "UnpicklingError",
    "Pickler",
    "Unpickler",
    "dump",
    "dumps",
    "load",
    "loads",
    "PickleBuffer",
    "HIGHEST_PROTOCOL",
    "DEFAULT_PROTOCOL",
    "TRUE",
    "FALSE",
    *_OPCODE_NAMES,
    # Beyond the pickle module: container files and framed messages with zero-copy buffers.
    "dump_file",
    "load_file",
    "FileFormatError",
    "MissingPackageError",
    "send",
    "recv",
    "write_message",
    "read_message",
    "MessageError",
    "TruncatedMessageError",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_BUFFERS",
    "BufferPool",
]

# The features beyond the pickle module live in submodules that are imported on first use,
# so `import picklex` costs no more than `import pickle`.
_LAZY_EXPORTS = {
    "dump_file": "files",
    "load_file": "files",
    "FileFormatError": "_errors",
    "MissingPackageError": "_errors",
    "MessageError": "_errors",
    "TruncatedMessageError": "_errors",
    "send": "transport",
    "recv": "transport",
    "write_message": "transport",
    "read_message": "transport",
    "DEFAULT_MAX_MESSAGE_SIZE": "transport",
    "DEFAULT_MAX_BUFFERS": "transport",
    "BufferPool": "transport",
}


# Submodules reachable as attributes without an explicit import (`picklex.shm.share(...)`).
_LAZY_SUBMODULES = ("files", "transport", "shm", "mp")


def __getattr__(name: str):
    import importlib

    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    submodule = _LAZY_EXPORTS.get(name)
    if submodule is None:
        raise AttributeError(f"module 'picklex' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{submodule}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_EXPORTS) | set(_LAZY_SUBMODULES))
