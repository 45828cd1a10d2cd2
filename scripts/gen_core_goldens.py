#!/usr/bin/env python3
"""Write the golden files that the C++ core tests compare against (tests/core/data/).

Every expected byte comes from the running interpreter's own ``pickle`` and ``pickletools``,
so the C++ tests check the core against CPython rather than against our reading of it.
Regenerate after a change here with ``python scripts/gen_core_goldens.py``; the test script
runs ``--check`` so a golden that no longer matches the interpreter fails the build.

Files:
  pickletools_opcodes.txt  name, code, argument kind, protocol, stack before/after per opcode
  float_repr.txt           IEEE-754 bits and Python's repr() of that double
  writer_atoms.txt         one Writer call per line and the exact bytes pickle writes for it
  writer_streams.txt       whole pickles of lists (framing, batching, large payloads):
                           size, CRC-32 and frame lengths
"""

from __future__ import annotations

import argparse
import collections
import copyreg
import io
import math
import pickle
import pickletools
import random
import struct
import sys
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "tests" / "core" / "data"

# Opcodes that frame or wrap a pickle, or memoize a value, rather than encode it.
WRAPPER_OPS = {"PROTO", "FRAME", "STOP"}
MEMO_PUT_OPS = {"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"}
MEMO_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}


def ops_with_bytes(data: bytes) -> Iterator[tuple[str, object, bytes]]:
    """Yield (opcode name, argument, raw bytes of the opcode and its argument) for a pickle."""
    ops = list(pickletools.genops(data))
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        yield op.name, arg, data[pos:end]


def atom_bytes(data: bytes) -> bytes:
    """The bytes of a pickle without its PROTO/FRAME/STOP wrapper and memo PUTs."""
    return b"".join(
        raw for name, _, raw in ops_with_bytes(data) if name not in WRAPPER_OPS | MEMO_PUT_OPS
    )


# ---- pickletools_opcodes.txt ----


def opcode_lines() -> list[str]:
    """One tab-separated line per pickletools opcode, sorted by code."""
    lines = ["# name\tcode(hex)\targ\tproto\tstack_before\tstack_after"]
    for op in sorted(pickletools.opcodes, key=lambda o: o.code):
        lines.append(
            "\t".join(
                [
                    op.name,
                    f"{ord(op.code):02x}",
                    op.arg.name if op.arg is not None else "none",
                    str(op.proto),
                    " ".join(s.name for s in op.stack_before),
                    " ".join(s.name for s in op.stack_after),
                ]
            )
        )
    return lines


# ---- float_repr.txt ----


def interesting_floats() -> Iterable[float]:
    """Specials, notation switch points, boundaries, and seeded random bit patterns."""
    yield from (0.0, -0.0, math.inf, -math.inf, math.nan, 1.0, -1.0, 0.1, 0.5, 1.5, 2.5)
    yield from (sys.float_info.max, -sys.float_info.max, sys.float_info.min, 5e-324, -5e-324)
    yield from (sys.float_info.epsilon, 2.2250738585072009e-308, 1.7976931348623157e308)
    for e in range(-30, 31):
        for mantissa in (1.0, 1.5, 9.999999999999999, 1.2345678901234567, 3.0, 7.0):
            yield mantissa * 10.0**e
            yield -mantissa * 10.0**e
    for e in (-5, -4, -3, 15, 16, 17):  # repr switches notation around 1e-4 and 1e16
        base = 10.0**e
        yield base
        yield math.nextafter(base, 0.0)
        yield math.nextafter(base, math.inf)
        yield base * 1.1
    for e in range(-1074, 1024, 7):
        yield math.ldexp(1.0, e)
    for n in (2**53 - 1, 2**53, 2**53 + 2, 2**63, 2**64, 10**15, 10**16 - 1, 10**16, 10**17):
        yield float(n)
        yield float(-n)
    for n in range(0, 1000, 37):
        yield n / 7.0
        yield n * 0.01
    rng = random.Random(574)
    for _ in range(2500):
        bits = rng.getrandbits(64)
        value = struct.unpack("<d", struct.pack("<Q", bits))[0]
        if not math.isnan(value):
            yield value
    for _ in range(1000):  # short decimals, as real data has them
        yield round(rng.uniform(-1e6, 1e6), rng.randint(0, 6))
        yield rng.uniform(0.0, 1.0) * 10.0 ** rng.randint(-320, 308)


def float_bits(value: float) -> str:
    return f"{struct.unpack('<Q', struct.pack('<d', value))[0]:016x}"


def float_repr_lines() -> list[str]:
    lines = ["# IEEE-754 bits (hex)\trepr()"]
    seen = set()
    for value in interesting_floats():
        bits = float_bits(value)
        if bits not in seen:
            seen.add(bits)
            lines.append(f"{bits}\t{value!r}")
    return lines


# ---- writer_atoms.txt ----


def int_boundaries() -> list[int]:
    edges = [0, 1, 2**7, 2**8, 2**15, 2**16, 2**31, 2**32, 2**39, 2**47, 2**55, 2**63, 2**64]
    values = {v + d for e in edges for v in (e, -e) for d in (-1, 0, 1)}
    values |= {12345, -12345, 10**9, -(10**9), 10**18, -(10**18)}
    return sorted(values)


def atom_lines() -> list[str]:
    """Lines: kind, protocol, argument, expected bytes (hex); tab-separated."""
    lines = ["# kind\tproto\targument\texpected(hex)"]

    def emit(kind: str, proto: int, arg: str, data: bytes) -> None:
        lines.append(f"{kind}\t{proto}\t{arg}\t{data.hex()}")

    for proto in range(6):
        emit("none", proto, "-", atom_bytes(pickle.dumps(None, proto)))
        for value in (False, True):
            emit("bool", proto, str(int(value)), atom_bytes(pickle.dumps(value, proto)))
        for value in int_boundaries():
            expected = atom_bytes(pickle.dumps(value, proto))
            if -(2**63) <= value < 2**63:
                emit("int", proto, str(value), expected)
            elif proto >= 2:
                # Beyond 64 bits the caller passes minimal two's-complement bytes.
                nbytes = (value.bit_length() >> 3) + 1
                raw = value.to_bytes(nbytes, "little", signed=True)
                if value < 0 and nbytes > 1 and raw[-1] == 0xFF and raw[-2] & 0x80:
                    raw = raw[:-1]
                emit("long_bytes", proto, raw.hex() or "-", expected)
            else:
                emit("long_text", proto, str(value), expected)
        for value in (
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            1e16,
            1e-5,
            123456.789,
            math.inf,
            -math.inf,
            math.nan,
            5e-324,
            1.7976931348623157e308,
        ):
            emit("float", proto, float_bits(value), atom_bytes(pickle.dumps(value, proto)))
        for text in string_cases():
            utf8 = text.encode("utf-8", "surrogatepass")
            emit("str", proto, utf8.hex() or "-", atom_bytes(pickle.dumps(text, proto)))
        if proto >= 3:
            for size in (0, 1, 255, 256, 1000):
                data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
                emit("bytes", proto, data.hex() or "-", atom_bytes(pickle.dumps(data, proto)))
        if proto >= 5:
            for size in (0, 3, 300):
                data = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
                emit(
                    "bytearray",
                    proto,
                    data.hex() or "-",
                    atom_bytes(pickle.dumps(bytearray(data), proto)),
                )
            for readonly in (True, False):
                buf = pickle.PickleBuffer(b"abc" if readonly else bytearray(b"abc"))
                raw = pickle.dumps(buf, proto, buffer_callback=lambda _: False)
                emit("next_buffer", proto, str(int(readonly)), atom_bytes(raw))
        emit_memo_lines(proto, emit)
        emit_global_lines(proto, emit)
        emit_persid_lines(proto, emit)
    return lines


def string_cases() -> list[str]:
    return [
        "",
        "a",
        "hello world",
        "x" * 255,
        "x" * 256,
        "é" * 127 + "a",  # 255 UTF-8 bytes
        "é" * 128,  # 256 UTF-8 bytes
        "caf\u00e9 \u20ac \U0001f600",
        "back\\slash new\nline cr\r nul\x00 sub\x1a del\x7f latin\xff",
        "\ud800 lone surrogate \udfff",
        "\u0100\uffff\U00010000\U0010ffff",
        "\x00" * 3 + "\x80\x9f\xa0",
    ]


def emit_memo_lines(proto: int, emit) -> None:
    """PUT/GET forms taken from a real pickle that memoizes and re-fetches many lists."""
    wanted = {0, 1, 2, 254, 255, 256, 257, 65535, 65536, 70001}
    inner = [[] for _ in range(70002)]
    data = pickle.dumps(inner + inner, proto)
    index = -1  # memo index of the object a PUT names, counted as the pickler assigns them
    for name, arg, raw in ops_with_bytes(data):
        if name in MEMO_PUT_OPS:
            index = arg if name != "MEMOIZE" else index + 1
            if index in wanted:
                emit("memo_put", proto, str(index), raw)
        elif name in MEMO_GET_OPS and arg in wanted:
            emit("memo_get", proto, str(arg), raw)
            wanted.discard(arg)


def emit_global_lines(proto: int, emit) -> None:
    if proto < 4:  # protocols 0-3 write GLOBAL text; 4+ use STACK_GLOBAL (walker's business)
        data = pickle.dumps(collections.OrderedDict, proto)
        for name, arg, raw in ops_with_bytes(data):
            if name == "GLOBAL":
                emit("global", proto, str(arg), raw)
    if proto >= 2:
        for code in (1, 255, 256, 65535, 65536, 2**31 - 1):
            copyreg.add_extension("collections", "OrderedDict", code)
            try:
                data = pickle.dumps(collections.OrderedDict, proto)
            finally:
                copyreg.remove_extension("collections", "OrderedDict", code)
            emit("ext", proto, str(code), atom_bytes(data))


def emit_persid_lines(proto: int, emit) -> None:
    if proto != 0:
        return  # binary protocols save the id as an object then BINPERSID

    class IdPickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> str | None:
            return "row-42" if obj == "tag" else None

    out = io.BytesIO()
    IdPickler(out, proto).dump("tag")
    emit("persid", proto, "row-42", atom_bytes(out.getvalue()))


# ---- writer_streams.txt ----


def stream_cases() -> Iterator[tuple[str, int, int, list]]:
    """(kind, protocol, n, the list) for pickles whose framing the C++ test re-creates."""
    for proto in range(6):
        for n in (0, 1, 2, 999, 1000, 1001, 2001, 30000, 100000):
            yield "ints", proto, n, list(range(n))
        for n in (3, 8, 40, 2001):
            yield "strs", proto, n, stream_strs(n)
        if proto >= 3:
            for n in (3, 12, 40):
                yield "bytes", proto, n, stream_bytes(n)


def stream_strs(n: int) -> list[str]:
    """Distinct strings: mostly short, a few at the 255/256-byte and 64 KiB boundaries."""
    out = []
    for i in range(n):
        size = {7: 70000, 300: 65536, 301: 65535, 5: 255, 6: 256}.get(i % 500, 2 + i % 40)
        stem = f"{i}:" + ("\u00e9" if i % 3 == 0 else "s")
        text = (stem * (size // len(stem) + 1))[:size]
        out.append(text)
    return out


def stream_bytes(n: int) -> list[bytes]:
    sizes = (3, 10, 65535, 65536, 70000, 255, 256, 2)
    return [bytes([i % 256]) * sizes[i % len(sizes)] for i in range(n)]


def stream_lines() -> list[str]:
    lines = ["# kind\tproto\tn\tsize\tcrc32\tframe lengths"]
    for kind, proto, n, obj in stream_cases():
        data = pickle.dumps(obj, proto)
        frames = [str(arg) for name, arg, _ in ops_with_bytes(data) if name == "FRAME"]
        crc = zlib.crc32(data)
        lines.append(f"{kind}\t{proto}\t{n}\t{len(data)}\t{crc:08x}\t{','.join(frames) or '-'}")
    return lines


GOLDENS = {
    "pickletools_opcodes.txt": opcode_lines,
    "float_repr.txt": float_repr_lines,
    "writer_atoms.txt": atom_lines,
    "writer_streams.txt": stream_lines,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with the committed files instead of writing them",
    )
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="output directory")
    args = parser.parse_args()
    header = (
        f"# generated by scripts/gen_core_goldens.py from Python "
        f"{sys.version_info.major}.{sys.version_info.minor}; do not edit"
    )
    stale = []
    for name, make in GOLDENS.items():
        text = "\n".join([header, *make()]) + "\n"
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path} ({text.count(chr(10))} lines)")
    if stale:
        print(
            "golden files differ from this interpreter's pickle: " + ", ".join(stale),
            file=sys.stderr,
        )
        print("regenerate with: python scripts/gen_core_goldens.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
