"""Exceptions raised by the file container and the message framing.

Both derive from :class:`pickle.UnpicklingError`, so code that already guards ``pickle.load``
with ``except pickle.UnpicklingError`` also catches a corrupt container or a malformed message.
A missing optional package is not a bad file: it raises :class:`MissingPackageError`, a
:class:`ModuleNotFoundError`, so ``except FileFormatError`` never mistakes an intact file
for a corrupt one.
"""

from __future__ import annotations

from pickle import UnpicklingError


class FileFormatError(UnpicklingError):
    """A picklex container file is corrupt, truncated, or not a picklex file at all."""


class MessageError(UnpicklingError):
    """A framed message is malformed or exceeds the receiver's limits."""


class TruncatedMessageError(MessageError, EOFError):
    """The peer or stream ended part-way through a message.

    It is also an :class:`EOFError`; a stream that ends cleanly *between* messages raises a
    plain :class:`EOFError` instead, as :func:`pickle.load` does at the end of a file.
    """


#: The pip extra that installs every optional package of container files.
FILES_EXTRA = "picklex[files]"


class MissingPackageError(ModuleNotFoundError):
    """An optional package that this file or call needs is not installed.

    ``name`` is the package's module (``lz4``, ``zstandard``, ``xxhash``); the message says
    what needs it and how to install it. The file itself is not at fault, so this is
    deliberately not a :class:`FileFormatError`.
    """


def missing_package(package: str, needed_for: str) -> MissingPackageError:
    """The error for ``package`` not being importable when ``needed_for`` needs it."""
    return MissingPackageError(
        f"{needed_for} needs the {package} package, which is not installed: "
        f"pip install {FILES_EXTRA} (or pip install {package})",
        name=package,
    )
