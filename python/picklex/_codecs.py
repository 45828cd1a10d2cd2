"""Optional per-buffer compression for the file container (lz4 frames or zstd frames).

A codec is identified on disk by one byte. Compressed buffers are decompressed into fresh
aligned memory on load, so they give up the memory-mapped zero-copy path; :func:`compress`
therefore keeps a compressed copy only when it saves at least 1/16 of the size.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._buffers import read_growing
from ._errors import missing_package

NONE = 0
LZ4 = 1
ZSTD = 2

#: Names accepted by ``dump_file(compress=...)``.
BY_NAME = {"lz4": LZ4, "zstd": ZSTD}
NAMES = {NONE: "none", LZ4: "lz4", ZSTD: "zstd"}

# Largest expansion each format can encode (lz4: 255 bytes per length byte; zstd: a 4-byte
# RLE block per 128 KiB), plus slack for frame headers. A table entry that claims more
# decompressed bytes than this is corrupt, so its size is refused before anything is
# allocated.
_MAX_RATIO = {LZ4: 256, ZSTD: 32768}
_RATIO_SLACK = 1 << 16


#: The package each codec needs (pip and import names are the same).
PACKAGES = {LZ4: "lz4", ZSTD: "zstandard"}


def _import(codec: int, needed_for: str | None = None) -> Any:
    """The codec's module; :class:`MissingPackageError` naming the package when it is absent."""
    try:
        if codec == LZ4:
            import lz4.frame as module
        else:
            import zstandard as module
    except ImportError as exc:
        purpose = needed_for or f"{NAMES[codec]} compression"
        raise missing_package(PACKAGES[codec], purpose) from exc
    return module


def require(codec: int, needed_for: str) -> None:
    """Check that ``codec``'s package is importable before any data is read."""
    if codec != NONE:
        _import(codec, needed_for)


def codec_id(name: str | None) -> int:
    """The codec id for a ``compress=`` argument; checks that its package is importable
    (:class:`~picklex.MissingPackageError` if not)."""
    if name is None:
        return NONE
    try:
        codec = BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"compress must be None, 'lz4' or 'zstd', not {name!r}") from None
    _import(codec)
    return codec


def max_decompressed(codec: int, stored: int) -> int:
    """The most bytes ``stored`` compressed bytes can legitimately expand to."""
    return stored * _MAX_RATIO[codec] + _RATIO_SLACK


class Compressed(NamedTuple):
    """The outcome of trying to compress one buffer."""

    codec: int
    data: object  # the bytes to store: the compressed bytes, or the original view


def compress(codec: int, view: memoryview) -> Compressed:
    """Compress ``view`` if that pays, else return it unchanged with codec NONE."""
    if codec == NONE or view.nbytes == 0:
        return Compressed(NONE, view)
    module = _import(codec)
    if codec == LZ4:
        packed = module.compress(view, store_size=True)
    else:
        packed = module.ZstdCompressor(level=3).compress(view)
    if len(packed) > view.nbytes - view.nbytes // 16:
        return Compressed(NONE, view)
    return Compressed(codec, packed)


def decompress(codec: int, source: memoryview, length: int) -> memoryview | None:
    """Decompress ``source`` into fresh memory; None unless it gives exactly ``length`` bytes.

    ``length`` comes from the file: memory is reserved as output is produced
    (:func:`~picklex._buffers.read_growing`), never sized by the claim alone, and no output
    is held twice. Raises ``ValueError`` when the codec rejects the data.
    """
    module = _import(codec)
    try:
        decoder = _Lz4Decoder(module, source) if codec == LZ4 else _ZstdDecoder(module, source)
        view, got = read_growing(decoder.fill, length)
        complete = got == length and decoder.at_end()
    except MemoryError:
        raise
    except Exception as exc:  # each package has its own error types (ZstdError, RuntimeError)
        raise ValueError(f"{NAMES[codec]}: {exc}") from exc
    return view if complete else None


# lz4 hands out its output as new bytes objects; at most this many at a time.
_LZ4_CHUNK = 4 << 20


class _Lz4Decoder:
    """One lz4 frame, decoded chunk by chunk into the views given to :meth:`fill`."""

    def __init__(self, module: Any, source: memoryview) -> None:
        self.module = module
        self.context = module.create_decompression_context()
        self.source = source
        self.position = 0
        self.eof = False

    def _chunk(self, limit: int) -> bytes:
        data = b""
        while not data and not self.eof:
            data, used, self.eof = self.module.decompress_chunk(
                self.context, self.source[self.position :], max_length=limit
            )
            self.position += used
            if not data and not used:
                break  # no progress: the frame ends early
        return data

    def fill(self, batch: list[memoryview]) -> int:
        target = batch[0]
        data = self._chunk(min(target.nbytes, _LZ4_CHUNK))
        target[: len(data)] = data
        return len(data)

    def at_end(self) -> bool:
        """True when the frame ends here (no further output)."""
        return not self._chunk(1) and self.eof


class _ZstdDecoder:
    """One zstd frame, decoded straight into the views given to :meth:`fill`."""

    def __init__(self, module: Any, source: memoryview) -> None:
        self.reader = module.ZstdDecompressor().stream_reader(source, read_across_frames=False)

    def fill(self, batch: list[memoryview]) -> int:
        return self.reader.readinto(batch[0])

    def at_end(self) -> bool:
        """True when the frame ends here (no further output)."""
        return self.reader.read(1) == b""
