"""Container files: dump_file / load_file, with real files, real mappings, real processes.

Zero-copy is checked by where the loaded arrays' memory lives (inside the file's mapping in
/proc/self/maps), never by timing; lifetime by watching that mapping appear and disappear;
atomicity by failing and killing real saves; robustness by flipping and cutting real files.
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import picklex
import pytest
from picklex import _checksum, _codecs, _container
from picklex.files import _AtomicFile

ALIGN = 64
PACKAGE_ROOT = str(Path(picklex.__file__).resolve().parent.parent)
PACKAGE_PATH = str(Path(picklex.__file__).parent.parent)


# ------------------------------------------------------------------------------- helpers


def mappings_of(path: Path) -> list[tuple[int, int]]:
    """Address ranges of this process's mappings of ``path`` (from /proc/self/maps)."""
    target = os.path.realpath(path)
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() in (target, f"{target} (deleted)"):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def inside_mapping(array: np.ndarray, path: Path) -> bool:
    start = address(array)
    return any(lo <= start and start + array.nbytes <= hi for lo, hi in mappings_of(path))


def the_mmap(array: np.ndarray) -> Any:
    """The mmap object at the bottom of a loaded array's base chain."""
    base: Any = array
    while isinstance(base, np.ndarray):
        base = base.base
    assert isinstance(base, memoryview)
    return base.obj


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def read_layout(path: Path) -> _container.Layout:
    data = path.read_bytes()
    count = struct.unpack_from("<I", data, 24)[0]
    table_end = _container.HEADER.size + count * _container.ENTRY.size
    return _container.parse(data[: _container.HEADER.size], data[64:table_end], len(data))


def fix_crc(path: Path) -> None:
    """Recompute the metadata CRC after editing header or table bytes (a hostile writer)."""
    data = bytearray(path.read_bytes())
    count = struct.unpack_from("<I", data, 24)[0]
    table = data[64 : 64 + count * _container.ENTRY.size]
    struct.pack_into("<I", data, 60, _checksum.metadata_crc(data[:60], table))
    path.write_bytes(data)


def rewrite_layout(path: Path, layout: _container.Layout) -> None:
    """Replace header and table with ``layout``'s, with a correct CRC (a hostile writer)."""
    data = bytearray(path.read_bytes())
    packed = _container.pack(layout)
    data[: len(packed)] = packed
    path.write_bytes(data)


def run_child(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=PACKAGE_PATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def sample() -> dict[str, Any]:
    rng = np.random.default_rng(7)
    readonly = np.arange(100, dtype=np.int32)
    readonly.flags.writeable = False
    return {
        "f64": rng.random(1000),
        "f32_2d": rng.random((30, 7)).astype(np.float32),
        "fortran": np.asfortranarray(rng.random((5, 9))),
        "readonly": readonly,
        "empty": np.empty(0),
        "bytes": b"in band",
        "text": "héllo",
        "nested": [1, 2.5, None, (True, {"k": {1, 2}})],
        "pickle_buffer": pickle.PickleBuffer(bytearray(b"out of band bytes")),
    }


def assert_same(loaded: dict[str, Any], original: dict[str, Any]) -> None:
    assert loaded.keys() == original.keys()
    for key, value in original.items():
        if isinstance(value, np.ndarray):
            assert loaded[key].dtype == value.dtype, key
            assert loaded[key].shape == value.shape, key
            assert np.array_equal(loaded[key], value), key
        elif isinstance(value, pickle.PickleBuffer):
            assert bytes(loaded[key]) == bytes(value), key
        else:
            assert loaded[key] == value, key


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    obj = sample()
    path = tmp_path / "obj.pkx"
    picklex.dump_file(obj, path)
    return path, obj


# ------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("use_mmap", [True, False])
@pytest.mark.parametrize("writable", [False, True])
def test_round_trip(saved: tuple[Path, dict], use_mmap: bool, writable: bool) -> None:
    path, obj = saved
    loaded = picklex.load_file(path, mmap=use_mmap, writable=writable, verify=True)
    assert_same(loaded, obj)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_protocol(tmp_path: Path, protocol: int) -> None:
    obj = {"a": [1, 2, 3], "b": np.arange(10.0), "c": "x" * 300}
    path = tmp_path / "p.pkx"
    picklex.dump_file(obj, path, protocol=protocol)
    assert read_layout(path).protocol == protocol
    loaded = picklex.load_file(path, verify=True)
    assert np.array_equal(loaded["b"], obj["b"]) and loaded["a"] == obj["a"]
    # The stored stream is exactly what pickle writes for the same object and protocol.
    layout = read_layout(path)
    stream = path.read_bytes()[layout.stream_offset : layout.stream_end]
    expected = pickle.dumps(
        obj, protocol, buffer_callback=(lambda b: False) if protocol >= 5 else None
    )
    assert stream == expected


def test_protocol_none_and_negative(tmp_path: Path) -> None:
    path = tmp_path / "p.pkx"
    picklex.dump_file([1, 2], path, protocol=None)
    assert read_layout(path).protocol == pickle.DEFAULT_PROTOCOL
    picklex.dump_file([1, 2], path, protocol=-1)
    assert read_layout(path).protocol == pickle.HIGHEST_PROTOCOL
    assert picklex.load_file(path) == [1, 2]


def test_dict_of_100_arrays(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    arrays = {f"a{i}": rng.random(rng.integers(0, 5000)) for i in range(100)}
    path = tmp_path / "many.pkx"
    picklex.dump_file(arrays, path)
    layout = read_layout(path)
    assert len(layout.entries) == 100
    for use_mmap in (True, False):
        loaded = picklex.load_file(path, mmap=use_mmap, verify=True)
        assert loaded.keys() == arrays.keys()
        for key in arrays:
            assert np.array_equal(loaded[key], arrays[key])
    loaded = picklex.load_file(path)
    assert all(inside_mapping(a, path) for a in loaded.values() if a.nbytes)


def test_pandas_dataframe(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "x": np.arange(1000, dtype=np.int64),
            "y": np.linspace(0, 1, 1000),
            "s": [f"row{i}" for i in range(1000)],
            "c": pd.Categorical(["a", "b"] * 500),
        },
        index=pd.date_range("2024-01-01", periods=1000, freq="h"),
    )
    path = tmp_path / "frame.pkx"
    for use_mmap in (True, False):
        picklex.dump_file(frame, path)
        loaded = picklex.load_file(path, mmap=use_mmap, verify=True)
        pd.testing.assert_frame_equal(loaded, frame)
    loaded = picklex.load_file(path, writable=True)
    loaded.loc[loaded.index[0], "y"] = 42.0  # copy-on-write mapping: the file is untouched
    assert picklex.load_file(path)["y"].iloc[0] == 0.0


# ------------------------------------------------------------------------------- zero copy


def test_arrays_are_views_of_the_file_mapping(saved: tuple[Path, dict]) -> None:
    path, obj = saved
    loaded = picklex.load_file(path)
    for key in ("f64", "f32_2d", "fortran", "readonly"):
        assert inside_mapping(loaded[key], path), key
        assert address(loaded[key]) % ALIGN == 0
        assert not loaded[key].flags.owndata
    mapping = np.frombuffer(the_mmap(loaded["f64"]), dtype=np.uint8)
    assert np.shares_memory(loaded["f64"], mapping)
    assert np.shares_memory(loaded["f32_2d"], mapping)
    # All buffers of one file share one mapping.
    assert the_mmap(loaded["f64"]) is the_mmap(loaded["readonly"])


def test_buffers_are_64_byte_aligned_in_the_file(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    layout = read_layout(path)
    assert len(layout.entries) == 6  # 5 arrays (one empty) + the PickleBuffer
    assert all(entry.offset % ALIGN == 0 for entry in layout.entries)
    assert layout.entries[0].offset >= layout.stream_end


def test_load_without_mmap_is_aligned_private_memory(saved: tuple[Path, dict]) -> None:
    path, obj = saved
    loaded = picklex.load_file(path, mmap=False)
    assert mappings_of(path) == []
    for key in ("f64", "f32_2d", "fortran", "readonly"):
        assert address(loaded[key]) % ALIGN == 0, key
        assert not inside_mapping(loaded[key], path)
    assert_same(loaded, obj)


def test_load_is_constant_memory(tmp_path: Path) -> None:
    big = np.random.default_rng(3).random(16 << 20)  # 128 MiB
    path = tmp_path / "big.pkx"
    picklex.dump_file(big, path)
    del big
    gc.collect()
    before = rss_bytes()
    loaded = picklex.load_file(path)
    grew = rss_bytes() - before
    assert loaded.nbytes == 128 << 20
    assert inside_mapping(loaded, path)
    assert grew < 8 << 20, f"loading grew RSS by {grew} bytes"
    assert loaded[-1] == loaded[-1]  # pages fault in on use, from the file


def test_writable_semantics(saved: tuple[Path, dict]) -> None:
    path, _ = saved
    default = picklex.load_file(path)
    assert not default["f64"].flags.writeable
    assert not default["readonly"].flags.writeable
    with pytest.raises(ValueError):
        default["f64"][0] = 1.0

    cow = picklex.load_file(path, writable=True)
    assert cow["f64"].flags.writeable
    assert not cow["readonly"].flags.writeable  # saved read-only: stays read-only
    assert inside_mapping(cow["f64"], path)
    before = path.read_bytes()
    cow["f64"][:] = -1.0  # a private copy-on-write page: the file never changes
    assert path.read_bytes() == before
    assert picklex.load_file(path)["f64"][0] != -1.0

    private = picklex.load_file(path, mmap=False, writable=True)
    assert private["f64"].flags.writeable and not private["readonly"].flags.writeable
    assert not picklex.load_file(path, mmap=False)["f64"].flags.writeable


# ------------------------------------------------------------------------------- lifetime


def test_mapping_outlives_every_other_reference(tmp_path: Path) -> None:
    data = np.arange(1 << 20, dtype=np.float64)
    path = tmp_path / "life.pkx"
    picklex.dump_file({"a": data, "b": data * 2}, path)
    loaded = picklex.load_file(path)
    survivor = loaded["b"][1000:2000]  # a derived view is enough to keep the mapping
    mapping_ref = weakref.ref(the_mmap(loaded["b"]))
    del loaded
    gc.collect()
    os.unlink(path)  # even the file name can go: the mapping holds the inode
    assert mapping_ref() is not None
    assert len(mappings_of(path)) == 1
    assert np.array_equal(survivor, data[1000:2000] * 2)
    del survivor
    gc.collect()
    assert mapping_ref() is None
    assert mappings_of(path) == []


def test_replacing_the_file_keeps_loaded_arrays_valid(tmp_path: Path) -> None:
    path = tmp_path / "v.pkx"
    picklex.dump_file(np.full(1 << 16, 1.0), path)
    old = picklex.load_file(path)
    picklex.dump_file(np.full(1 << 16, 2.0), path)  # atomic replace: a new inode
    assert picklex.load_file(path)[0] == 2.0
    assert np.all(old == 1.0)


def test_one_mapping_per_live_load(tmp_path: Path) -> None:
    path = tmp_path / "m.pkx"
    picklex.dump_file([np.arange(1000.0)] * 2, path)
    loads = [picklex.load_file(path) for _ in range(5)]
    assert len(mappings_of(path)) == 5
    del loads
    gc.collect()
    assert mappings_of(path) == []


# ------------------------------------------------------------------------------- compression


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_compression_round_trip(tmp_path: Path, codec: str) -> None:
    pytest.importorskip("lz4" if codec == "lz4" else "zstandard")
    compressible = np.repeat(np.arange(1000, dtype=np.int64), 100)
    noise = np.random.default_rng(5).random(50_000)
    obj = {"compressible": compressible, "noise": noise}
    path = tmp_path / "c.pkx"
    picklex.dump_file(obj, path, compress=codec)
    codecs = [entry.codec for entry in read_layout(path).entries]
    assert codecs == [_codecs.BY_NAME[codec], _codecs.NONE]  # noise does not pay: stored raw
    assert path.stat().st_size < compressible.nbytes // 4 + noise.nbytes + 4096
    for use_mmap in (True, False):
        for writable in (False, True):
            loaded = picklex.load_file(path, mmap=use_mmap, writable=writable, verify=True)
            assert np.array_equal(loaded["compressible"], compressible)
            assert np.array_equal(loaded["noise"], noise)
            assert loaded["compressible"].flags.writeable == writable
            assert address(loaded["compressible"]) % ALIGN == 0
            assert not inside_mapping(loaded["compressible"], path)
    assert inside_mapping(picklex.load_file(path)["noise"], path)


def test_compress_argument_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="compress"):
        picklex.dump_file([1], tmp_path / "x.pkx", compress="gzip")
    assert not (tmp_path / "x.pkx").exists()


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_corrupt_compressed_buffer(tmp_path: Path, codec: str) -> None:
    pytest.importorskip("lz4" if codec == "lz4" else "zstandard")
    path = tmp_path / "c.pkx"
    picklex.dump_file(np.zeros(100_000), path, compress=codec)
    entry = read_layout(path).entries[0]
    data = bytearray(path.read_bytes())
    data[entry.offset : entry.end] = bytes(range(256)) * (entry.stored_length // 256) + bytes(
        entry.stored_length % 256
    )
    path.write_bytes(data)
    with pytest.raises(picklex.FileFormatError, match="checksum"):
        picklex.load_file(path, verify=True)
    with pytest.raises(picklex.FileFormatError, match="buffer 0"):
        picklex.load_file(path)


def test_crc32_files_when_xxhash_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "crc.pkx"
    result = run_child(
        """
        import sys
        sys.modules["xxhash"] = None  # as if the package were not installed
        import numpy as np, picklex
        picklex.dump_file({"a": np.arange(1000.0)}, sys.argv[1])
        assert picklex.load_file(sys.argv[1], verify=True)["a"][999] == 999.0
        """,
        str(path),
    )
    assert result.returncode == 0, result.stderr
    assert read_layout(path).checksum_algorithm == _checksum.CRC32
    assert picklex.load_file(path, verify=True)["a"][5] == 5.0
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(data)
    with pytest.raises(picklex.FileFormatError, match="checksum"):
        picklex.load_file(path, verify=True)


# ------------------------------------------------------------------------------- bad files


def small_file(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "small.pkx"
    picklex.dump_file(
        {"a": np.arange(20, dtype=np.int16), "b": np.ones(9), "t": "text", "n": 12345}, path
    )
    return path, path.read_bytes()


LOAD_KINDS = [dict(mmap=True), dict(mmap=False), dict(mmap=True, verify=True)]


def test_truncated_anywhere_raises(tmp_path: Path) -> None:
    path, data = small_file(tmp_path)
    assert len(data) < 1024
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        for kind in LOAD_KINDS:
            with pytest.raises(picklex.FileFormatError):
                picklex.load_file(path, **kind)


def test_trailing_garbage_raises(tmp_path: Path) -> None:
    path, data = small_file(tmp_path)
    path.write_bytes(data + b"\0")
    with pytest.raises(picklex.FileFormatError, match="corrupt"):
        picklex.load_file(path)


def test_bit_flips_in_header_and_table_always_raise(tmp_path: Path) -> None:
    path, data = small_file(tmp_path)
    layout = read_layout(path)
    for offset in range(layout.stream_offset):
        for bit in (0, 3, 7):
            damaged = bytearray(data)
            damaged[offset] ^= 1 << bit
            path.write_bytes(damaged)
            with pytest.raises(picklex.FileFormatError):
                picklex.load_file(path)


def test_bit_flips_in_stream_and_buffers(tmp_path: Path) -> None:
    path, data = small_file(tmp_path)
    layout = read_layout(path)
    for offset in range(layout.stream_offset, len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= 0x10
        path.write_bytes(damaged)
        in_padding = not (
            offset < layout.stream_end or any(e.offset <= offset < e.end for e in layout.entries)
        )
        if in_padding:  # padding is not covered by any checksum and is never read as data
            picklex.load_file(path, verify=True)
            continue
        with pytest.raises(picklex.FileFormatError, match="checksum"):
            picklex.load_file(path, verify=True)
        try:  # unverified: a wrong value or a clean exception, never a crash
            picklex.load_file(path)
        except Exception:
            pass


def test_not_a_picklex_file(tmp_path: Path) -> None:
    path = tmp_path / "x.pkx"
    for content in (b"", b"\x80\x05K\x01.", pickle.dumps(list(range(100))), b"PK\x03\x04" * 40):
        path.write_bytes(content)
        with pytest.raises(picklex.FileFormatError):
            picklex.load_file(path)
    path.write_bytes(pickle.dumps(list(range(100))))
    with pytest.raises(picklex.FileFormatError, match="not a picklex file"):
        picklex.load_file(path)
    assert issubclass(picklex.FileFormatError, pickle.UnpicklingError)


def test_unknown_version_is_named(tmp_path: Path) -> None:
    path, data = small_file(tmp_path)
    damaged = bytearray(data)
    struct.pack_into("<H", damaged, 8, 2)
    path.write_bytes(damaged)
    with pytest.raises(picklex.FileFormatError, match="version 2"):
        picklex.load_file(path)


@pytest.mark.parametrize(
    "change",
    [
        "offset_past_end",
        "length_past_end",
        "huge_length",
        "misaligned",
        "overlaps_stream",
        "overlapping_buffers",
        "stream_past_end",
        "huge_count_claim",
        "compressed_bomb",
        "unknown_codec",
        "unknown_flag",
        "raw_length_mismatch",
    ],
)
def test_hostile_tables_with_valid_checksums(tmp_path: Path, change: str) -> None:
    path, _ = small_file(tmp_path)
    layout = read_layout(path)
    entries = list(layout.entries)
    first, second = entries
    size = layout.file_size
    if change == "offset_past_end":
        entries[1] = second._replace(offset=size + 64 - size % 64)
    elif change == "length_past_end":
        entries[1] = second._replace(stored_length=size, length=size)
    elif change == "huge_length":
        entries[0] = first._replace(stored_length=2**63, length=2**63)
    elif change == "misaligned":
        entries[0] = first._replace(offset=first.offset + 8)
    elif change == "overlaps_stream":
        entries[0] = first._replace(offset=layout.stream_offset - layout.stream_offset % 64)
    elif change == "overlapping_buffers":
        entries[1] = second._replace(offset=first.offset)
    elif change == "stream_past_end":
        layout = layout._replace(stream_length=size)
    elif change == "huge_count_claim":
        data = bytearray(path.read_bytes())
        struct.pack_into("<I", data, 24, 2**32 - 1)
        path.write_bytes(data)
        fix_crc(path)
    elif change == "compressed_bomb":
        entries[0] = first._replace(codec=_codecs.ZSTD, length=2**60)
    elif change == "unknown_codec":
        entries[0] = first._replace(codec=9)
    elif change == "unknown_flag":
        data = bytearray(path.read_bytes())
        data[64 + 32] |= 0x80  # entry 0's flags byte
        path.write_bytes(data)
        fix_crc(path)
    elif change == "raw_length_mismatch":
        entries[0] = first._replace(length=first.stored_length + 1)
    if change not in ("huge_count_claim", "unknown_flag"):
        rewrite_layout(path, layout._replace(entries=tuple(entries)))
    for use_mmap in (True, False):
        with pytest.raises(picklex.FileFormatError):
            picklex.load_file(path, mmap=use_mmap)


def test_stream_using_fewer_buffers_than_listed(tmp_path: Path) -> None:
    path = tmp_path / "f.pkx"
    picklex.dump_file([np.arange(8.0), np.arange(4.0)], path)
    layout = read_layout(path)
    # Put a stream that takes one buffer where the two-buffer stream was; the table still
    # lists two.
    short = pickle.dumps(np.arange(8.0), 5, buffer_callback=lambda b: False)
    assert len(short) <= layout.stream_length
    data = bytearray(path.read_bytes())
    data[layout.stream_offset : layout.stream_offset + len(short)] = short
    path.write_bytes(data)
    rewrite_layout(path, layout._replace(stream_length=len(short)))
    with pytest.raises(picklex.FileFormatError, match="fewer buffers"):
        picklex.load_file(path)


def container_with_stream(path: Path, stream: bytes, *, recorded: bytes | None = None) -> None:
    """A container of just ``stream`` whose checksum is that of ``recorded`` (default: the
    stream itself, as a hostile writer would make it; another value: damage since saving)."""
    algorithm = _checksum.default_algorithm()
    checksum = _checksum.function(algorithm)(stream if recorded is None else recorded)
    offset = _container.HEADER.size
    layout = _container.Layout(
        algorithm, 4, offset + len(stream), offset, len(stream), checksum, ()
    )
    path.write_bytes(_container.pack(layout) + stream)


STREAM = pickle.dumps(["text", "ü" * 3, 1], 4)
MALFORMED_STREAMS = {
    "EOFError": STREAM[:-1] + b"N",  # no STOP: runs out of input
    "UnicodeDecodeError": STREAM.replace("ü".encode(), b"\xff\xfe", 1),
    "UnpicklingError": STREAM[:-3],  # shorter than its frame
}


@pytest.mark.parametrize("cause", sorted(MALFORMED_STREAMS))
def test_corrupt_stream_in_a_container_is_a_file_format_error(tmp_path: Path, cause: str) -> None:
    # A valid header and table around a stream the unpickler rejects: FileFormatError, as for
    # every other bad file, with the unpickler's exception as its cause. Damaged since it was
    # saved (checksum mismatch, found when loading fails even without verify=True), or
    # written malformed (checksum matches).
    path = tmp_path / "s.pkx"
    bad = MALFORMED_STREAMS[cause]
    for recorded, match in ((STREAM, "checksum mismatch"), (None, "pickle stream fails")):
        container_with_stream(path, bad, recorded=recorded)
        for kind in LOAD_KINDS:
            if kind.get("verify") and recorded is not None:
                match_here = "pickle stream checksum mismatch"
            else:
                match_here = match
            with pytest.raises(picklex.FileFormatError, match=match_here) as info:
                picklex.load_file(path, **kind)
            if not kind.get("verify") or recorded is None:
                assert type(info.value.__cause__).__name__ == cause
    container_with_stream(path, STREAM)
    assert picklex.load_file(path, verify=True) == ["text", "ü" * 3, 1]


def test_intact_stream_naming_a_missing_module_raises_what_pickle_raises(tmp_path: Path) -> None:
    # The file is fine, the environment lacks the class: not a FileFormatError, unless the
    # checksum shows that the name itself was damaged.
    path = tmp_path / "g.pkx"
    stream = b"\x80\x04cpicklex_test_no_such_module\nthing\n."
    container_with_stream(path, stream)
    with pytest.raises(ModuleNotFoundError) as info:
        picklex.load_file(path)
    assert not isinstance(info.value, picklex.FileFormatError)
    container_with_stream(path, stream, recorded=stream.replace(b"no_such", b"a_module"))
    with pytest.raises(picklex.FileFormatError, match="checksum mismatch") as damaged:
        picklex.load_file(path)
    assert isinstance(damaged.value.__cause__, ModuleNotFoundError)


def test_missing_optional_package_is_named_and_not_a_file_format_error(tmp_path: Path) -> None:
    # Compressed buffers without lz4/zstandard, verify=True on an xxh3 file without xxhash:
    # a MissingPackageError (a ModuleNotFoundError) that names the package and the pip extra,
    # raised before any data is read; never a FileFormatError, since the file is intact.
    pytest.importorskip("lz4")
    pytest.importorskip("zstandard")
    pytest.importorskip("xxhash")
    compressible = np.repeat(np.arange(1000, dtype=np.int64), 100)
    for codec in ("lz4", "zstd"):
        picklex.dump_file({"a": compressible}, tmp_path / f"{codec}.pkx", compress=codec)
    picklex.dump_file({"a": np.arange(10.0)}, tmp_path / "xxh3.pkx")
    assert read_layout(tmp_path / "xxh3.pkx").checksum_algorithm == _checksum.XXH3_64
    result = run_child(
        """
        import json, sys
        for name in ("lz4", "lz4.frame", "zstandard", "xxhash"):
            sys.modules[name] = None  # as if the package were not installed
        import picklex

        def outcome(call):
            try:
                call()
            except Exception as exc:
                return [type(exc).__name__, isinstance(exc, ModuleNotFoundError),
                        isinstance(exc, picklex.FileFormatError), exc.name, str(exc)]
            return "ok"

        folder = sys.argv[1]
        print(json.dumps({
            "lz4": outcome(lambda: picklex.load_file(f"{folder}/lz4.pkx")),
            "zstd": outcome(lambda: picklex.load_file(f"{folder}/zstd.pkx", mmap=False)),
            "xxhash": outcome(lambda: picklex.load_file(f"{folder}/xxh3.pkx", verify=True)),
            "xxhash unverified": outcome(lambda: picklex.load_file(f"{folder}/xxh3.pkx")),
            "save lz4": outcome(
                lambda: picklex.dump_file([1], f"{folder}/new.pkx", compress="lz4")
            ),
        }))
        """,
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout)
    assert outcomes.pop("xxhash unverified") == "ok"
    packages = {"lz4": "lz4", "zstd": "zstandard", "xxhash": "xxhash", "save lz4": "lz4"}
    for case, (kind, is_module_error, is_format_error, name, message) in outcomes.items():
        assert kind == "MissingPackageError" and is_module_error and not is_format_error, case
        assert name == packages[case], case
        assert f"the {name} package" in message and "pip install picklex[files]" in message
    assert issubclass(picklex.MissingPackageError, ModuleNotFoundError)
    assert not issubclass(picklex.MissingPackageError, picklex.FileFormatError)
    assert not (tmp_path / "new.pkx").exists()


BOMB_CHILD = """
import resource, sys
import picklex

with open("/proc/self/status") as status:
    vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20), resource.RLIM_INFINITY))
for use_mmap in (True, False):
    try:
        picklex.load_file(sys.argv[1], mmap=use_mmap)
    except Exception as exc:
        print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize("codec", ["lz4", "zstd"])
def test_compressed_entry_claiming_gigabytes_does_not_reserve_them(
    tmp_path: Path, codec: str
) -> None:
    # An entry may claim as many decompressed bytes as its codec could produce from its
    # stored bytes (lz4: 256x, zstd: 32768x): gigabytes from a small file. Memory must follow
    # the bytes that really come out: under a 256 MiB limit such a claim is a FileFormatError,
    # not a MemoryError.
    pytest.importorskip("lz4" if codec == "lz4" else "zstandard")
    noise = np.random.default_rng(6).integers(0, 256, 17 << 20 if codec == "lz4" else 1 << 18)
    data = np.concatenate([noise.astype(np.uint8), np.zeros(8 << 20, dtype=np.uint8)])
    path = tmp_path / "bomb.pkx"
    picklex.dump_file(data, path, compress=codec)
    layout = read_layout(path)
    (entry,) = layout.entries
    claim = _codecs.max_decompressed(entry.codec, entry.stored_length)
    assert entry.codec == _codecs.BY_NAME[codec] and claim >= 4 << 30
    rewrite_layout(path, layout._replace(entries=(entry._replace(length=claim),)))
    result = run_child(BOMB_CHILD, str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2, result.stdout
    for line in lines:
        assert line.startswith("FileFormatError") and "does not decompress to" in line, line
    rewrite_layout(path, layout)
    assert np.array_equal(picklex.load_file(path), data)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        picklex.load_file(tmp_path / "nope.pkx")
    with pytest.raises(FileNotFoundError):
        picklex.dump_file([1], tmp_path / "no" / "such" / "dir.pkx")


# ------------------------------------------------------------------------------- atomic saves


class Unpicklable:
    def __reduce__(self) -> Any:
        raise RuntimeError("cannot pickle this")


def directory_listing(path: Path) -> list[str]:
    return sorted(os.listdir(path))


@pytest.mark.parametrize("o_tmpfile", [True, False])
def test_failing_pickle_leaves_old_file(tmp_path: Path, o_tmpfile: bool, monkeypatch) -> None:
    monkeypatch.setattr(_AtomicFile, "use_o_tmpfile", o_tmpfile and _AtomicFile.use_o_tmpfile)
    path = tmp_path / "keep.pkx"
    picklex.dump_file({"v": 1, "a": np.arange(10.0)}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="cannot pickle"):
        picklex.dump_file({"a": np.arange(1e6), "bad": Unpicklable(), "z": 2}, path)
    assert path.read_bytes() == before
    assert directory_listing(tmp_path) == ["keep.pkx"]


@pytest.mark.parametrize("o_tmpfile", [True, False])
def test_write_failing_half_way_leaves_old_file(tmp_path: Path, o_tmpfile: bool) -> None:
    # A real short write: the child's file size limit stops the save part-way through.
    path = tmp_path / "keep.pkx"
    picklex.dump_file({"old": np.arange(100.0)}, path)
    before = path.read_bytes()
    result = run_child(
        """
        import errno, resource, signal, sys
        import numpy as np, picklex
        from picklex.files import _AtomicFile
        _AtomicFile.use_o_tmpfile = _AtomicFile.use_o_tmpfile and sys.argv[2] == "1"
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
        try:
            picklex.dump_file({"new": np.ones(1 << 20)}, sys.argv[1])
        except OSError as exc:
            assert exc.errno == errno.EFBIG, exc
            print("failed as expected")
        """,
        str(path),
        "1" if o_tmpfile else "0",
    )
    assert result.returncode == 0, result.stderr
    assert "failed as expected" in result.stdout
    assert path.read_bytes() == before
    assert directory_listing(tmp_path) == ["keep.pkx"]


def _open_temp_size(pid: int, directory: Path) -> int | None:
    """Size of the save-in-progress file the child has open in ``directory``, if any."""
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except FileNotFoundError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
            if target.startswith(str(directory)) and not target.endswith("keep.pkx"):
                return os.stat(f"{fd_dir}/{fd}").st_size
        except OSError:
            continue
    return None


@pytest.mark.parametrize("o_tmpfile", [True, False])
def test_killed_mid_save_leaves_old_file(tmp_path: Path, o_tmpfile: bool) -> None:
    path = tmp_path / "keep.pkx"
    old = {"generation": -1, "data": np.full(1 << 10, -1.0)}
    picklex.dump_file(old, path)
    env = dict(os.environ, PYTHONPATH=PACKAGE_PATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys
                import numpy as np, picklex
                from picklex.files import _AtomicFile
                _AtomicFile.use_o_tmpfile = _AtomicFile.use_o_tmpfile and sys.argv[2] == "1"
                big = np.random.default_rng(0).random(12 << 20)  # 96 MiB per save
                for generation in range(1000):
                    picklex.dump_file({"generation": generation, "data": big}, sys.argv[1])
                """
            ),
            str(path),
            "1" if o_tmpfile else "0",
        ],
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until a save is part-way through its data
            size = _open_temp_size(child.pid, tmp_path)
            if size is not None and 1 << 20 < size < 90 << 20:
                break
        else:
            pytest.fail("never saw a save in progress")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    loaded = picklex.load_file(path, verify=True)  # the old file or a complete new one
    assert loaded["generation"] == -1 or loaded["data"].nbytes == 96 << 20
    leftovers = [name for name in directory_listing(tmp_path) if name != "keep.pkx"]
    if o_tmpfile and _AtomicFile.use_o_tmpfile:
        assert leftovers == []  # an unnamed inode vanishes with the process
    else:
        assert all(name.startswith(".keep.pkx.") and name.endswith(".tmp") for name in leftovers)


def test_new_file_permissions_follow_umask(tmp_path: Path) -> None:
    old_umask = os.umask(0o027)
    try:
        picklex.dump_file([1], tmp_path / "perm.pkx")
    finally:
        os.umask(old_umask)
    assert (tmp_path / "perm.pkx").stat().st_mode & 0o777 == 0o640


def test_saving_does_not_copy_large_buffers(tmp_path: Path) -> None:
    import tracemalloc

    big = np.random.default_rng(2).random(8 << 20)  # 64 MiB
    tracemalloc.start()
    try:
        picklex.dump_file(big, tmp_path / "big.pkx")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"saving allocated {peak} bytes"
    assert np.array_equal(picklex.load_file(tmp_path / "big.pkx"), big)


def test_many_buffers_beyond_iov_max(tmp_path: Path) -> None:
    arrays = [np.full(i % 7 + 1, i, dtype=np.int64) for i in range(2500)]
    path = tmp_path / "many.pkx"
    picklex.dump_file(arrays, path)
    for use_mmap in (True, False):
        loaded = picklex.load_file(path, mmap=use_mmap, verify=True)
        assert all(np.array_equal(a, b) for a, b in zip(loaded, arrays))


# ------------------------------------------------------------------------------- properties

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

DTYPES = st.one_of(
    hnp.integer_dtypes(endianness="="),
    hnp.floating_dtypes(endianness="="),
    hnp.complex_number_dtypes(endianness="="),
    st.just(np.dtype(bool)),
)
ARRAYS = hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=3, max_side=40))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arrays=st.lists(ARRAYS, max_size=5),
    order=st.sampled_from("CF"),
    readonly=st.booleans(),
    compress=st.sampled_from([None, "lz4", "zstd"]),
)
def test_arrays_round_trip_property(
    arrays: list[np.ndarray], order: str, readonly: bool, compress: str | None
) -> None:
    import tempfile

    arrays = [np.asarray(a, order=order) for a in arrays]
    for array in arrays:
        array.flags.writeable = not readonly
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "p.pkx"
        picklex.dump_file(arrays, path, compress=compress)
        for use_mmap in (True, False):
            loaded = picklex.load_file(path, mmap=use_mmap, writable=True, verify=True)
            assert len(loaded) == len(arrays)
            for got, want in zip(loaded, arrays):
                assert got.dtype == want.dtype and got.shape == want.shape
                np.testing.assert_array_equal(got, want)
                if want.nbytes:
                    assert got.flags.writeable == (not readonly)
                    assert address(got) % ALIGN == 0


@pytest.mark.slow
def test_one_gib_array_loads_in_constant_time_and_memory(tmp_path: Path) -> None:
    array = np.ones(1 << 27)  # 1 GiB of float64
    path = tmp_path / "gib.pkx"
    picklex.dump_file(array, path)
    del array
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    loaded = picklex.load_file(path)
    elapsed = time.perf_counter() - start
    grew = rss_bytes() - before
    assert loaded.nbytes == 1 << 30 and inside_mapping(loaded, path)
    assert elapsed < 0.05, f"load took {elapsed:.3f} s"
    assert grew < 8 << 20, f"load grew RSS by {grew} bytes"
    assert loaded[123_456_789] == 1.0
