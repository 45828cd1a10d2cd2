"""Optional per-buffer compression for the file container (lz4 frames or zstd frames).

A codec is identified on disk by one byte. Compressed buffers are decompressed into fresh
aligned memory on load, so they give up the memory-mapped zero-copy path; :func:`compress`
therefore keeps a compressed copy only when it saves at least 1/16 of the size.
"""

from __future__ import annotations

from typing import NamedTuple

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


def _import(codec: int):
    try:
        if codec == LZ4:
            import lz4.frame as module
        else:
            import zstandard as module
    except ImportError as exc:
        package = "lz4" if codec == LZ4 else "zstandard"
        raise ModuleNotFoundError(
            f"{NAMES[codec]} compression needs the {package} package (pip install {package})"
        ) from exc
    return module


def codec_id(name: str | None) -> int:
    """The codec id for a ``compress=`` argument; checks that its package is importable."""
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


def decompress_into(codec: int, source: memoryview, target: memoryview) -> bool:
    """Decompress ``source`` into ``target``; True when it fills ``target`` exactly.

    Never writes past ``target`` nor allocates more than its size, whatever the input.
    Raises ``ValueError`` when the codec rejects the data.
    """
    module = _import(codec)
    try:
        return _decompress_into(module, codec, source, target)
    except MemoryError:
        raise
    except Exception as exc:  # each package has its own error types (ZstdError, RuntimeError)
        raise ValueError(f"{NAMES[codec]}: {exc}") from exc


def _decompress_into(module, codec: int, source: memoryview, target: memoryview) -> bool:
    if codec == LZ4:
        decompressor = module.LZ4FrameDecompressor()
        data = decompressor.decompress(source, max_length=target.nbytes)
        if len(data) != target.nbytes or not decompressor.eof:
            return False
        target[:] = data
        return True
    reader = module.ZstdDecompressor().stream_reader(source, read_across_frames=False)
    filled = 0
    while filled < target.nbytes:
        got = reader.readinto(target[filled:])
        if not got:
            return False
        filled += got
    return reader.read(1) == b""
