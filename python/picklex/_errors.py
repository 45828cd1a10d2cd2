"""Exceptions raised by the file container and the message framing.

Both derive from :class:`pickle.UnpicklingError`, so code that already guards ``pickle.load``
with ``except pickle.UnpicklingError`` also catches a corrupt container or a malformed message.
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
