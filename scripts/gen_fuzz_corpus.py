#!/usr/bin/env python3
"""Write seed corpora for the fuzz harnesses, and a libFuzzer dictionary of pickle opcodes.

    python scripts/gen_fuzz_corpus.py OUT_DIR

OUT_DIR/<harness>/ gets seeds for each harness in fuzz/ (fuzz_reader: real pickles of varied
objects at every protocol, optimized variants and hand-written legacy forms; fuzz_float_repr:
interesting doubles; fuzz_utf8: text of every width, with surrogates and broken sequences),
OUT_DIR/pickle.dict the opcode bytes and common argument shapes.
Everything is generated on the fly by the running interpreter; nothing here is committed
(regression inputs that once crashed a harness live in fuzz/regressions/<harness>/).
"""

from __future__ import annotations

import collections
import copyreg
import dataclasses
import datetime
import decimal
import enum
import fractions
import hashlib
import math
import os
import pickle
import pickletools
import struct
import sys
from pathlib import Path

MAX_SEED = 8192  # bigger seeds slow every mutation; framing past 64 KiB is unit-tested


class Plain:
    def __init__(self) -> None:
        self.x = 1
        self.name = "plain"


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a = 1.5
        self.b = [1, 2]


class WithState:
    def __getstate__(self) -> dict:
        return {"v": 3}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


class KwNew:
    def __new__(cls, *args: object, **kwargs: object) -> KwNew:
        return super().__new__(cls)

    def __getnewargs_ex__(self) -> tuple[tuple, dict]:
        return (1, 2), {"k": "v"}


class ReducesToCall:
    def __reduce__(self) -> tuple:
        return (complex, (1.0, 2.0))


class ReducesWithItems(list):
    def __reduce__(self) -> tuple:
        return (ReducesWithItems, (), {"s": 1}, iter([1, 2]), iter([]))


@dataclasses.dataclass
class Point:
    x: int
    y: float


class Color(enum.Enum):
    RED = 1


Pair = collections.namedtuple("Pair", "left right")


def sample_objects() -> list[object]:
    shared = [1, 2]
    recursive: list = []
    recursive.append(recursive)
    rdict: dict = {}
    rdict["self"] = rdict
    return [
        None,
        True,
        False,
        0,
        1,
        -1,
        255,
        256,
        65535,
        65536,
        2**31 - 1,
        -(2**31),
        2**31,
        2**63,
        -(2**63) - 1,
        2**64,
        2**1000,
        -(2**2000),
        0.0,
        -0.0,
        1.5,
        math.inf,
        -math.inf,
        math.nan,
        1e300,
        5e-324,
        "",
        "a",
        "héllo",
        "\u20ac\U0001f600",
        "\ud800",
        "x" * 300,
        "line\nbreak\\",
        b"",
        b"abc",
        b"\x00" * 300,
        bytearray(b"xyz"),
        bytearray(300),
        (),
        (1,),
        (1, 2),
        (1, 2, 3),
        (1, 2, 3, 4),
        [],
        [1],
        list(range(20)),
        [shared, shared],
        {},
        {"a": 1},
        {i: str(i) for i in range(30)},
        set(),
        {1, 2, 3},
        frozenset(),
        frozenset({4}),
        recursive,
        rdict,
        ([], [], {}),
        [[[[[[[[]]]]]]]],
        complex(1, 2),
        range(1, 10, 2),
        slice(1, 5),
        Ellipsis,
        NotImplemented,
        int,
        type(None),
        len,
        os.path.join,
        datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
        datetime.date(2020, 2, 29),
        datetime.timedelta(days=3, seconds=4),
        datetime.timezone.utc,
        decimal.Decimal("3.14"),
        fractions.Fraction(1, 3),
        collections.OrderedDict(a=1),
        collections.defaultdict(list, {1: [2]}),
        collections.deque([1, 2]),
        collections.Counter("hello"),
        Plain(),
        Slotted(),
        WithState(),
        KwNew(),
        ReducesToCall(),
        ReducesWithItems([7]),
        Point(1, 2.5),
        Color.RED,
        Pair(1, "r"),
        [Plain(), Plain()],
    ]


def pickles() -> list[bytes]:
    out = []
    for obj in sample_objects():
        for proto in range(pickle.HIGHEST_PROTOCOL + 1):
            try:
                data = pickle.dumps(obj, proto)
            except Exception:
                continue
            out.append(data)
            out.append(pickletools.optimize(data))
    # Out-of-band buffers (NEXT_BUFFER, READONLY_BUFFER) and in-band PickleBuffers.
    for buf in (pickle.PickleBuffer(b"ro" * 10), pickle.PickleBuffer(bytearray(b"rw" * 10))):
        out.append(pickle.dumps([buf, buf], 5, buffer_callback=lambda _: False))
        out.append(pickle.dumps(buf, 5))
    # Extension registry codes (EXT1/EXT2/EXT4).
    for code in (1, 300, 70000):
        copyreg.add_extension("collections", "OrderedDict", code)
        try:
            out.extend(pickle.dumps(collections.OrderedDict, p) for p in (2, 4))
        finally:
            copyreg.remove_extension("collections", "OrderedDict", code)
    # Persistent ids, text and binary.
    for proto in (0, 1, 5):
        out.append(persistent_pickle(proto))
    out.extend(LEGACY)
    # Hand-made misfits: truncated and corrupted copies of a rich pickle.
    rich = pickle.dumps(sample_objects()[:40], 4)
    out.extend(rich[:n] for n in (1, 2, 10, 11, len(rich) // 2, len(rich) - 1))
    return [p for p in out if len(p) <= MAX_SEED]


def persistent_pickle(proto: int) -> bytes:
    import io

    class IdPickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return "pid-7" if obj == "external" else None

    buf = io.BytesIO()
    IdPickler(buf, proto).dump(["external", 1])
    return buf.getvalue()


# Protocol 0-2 forms that the current pickler no longer writes but loaders must accept.
LEGACY = [
    b"S'abc'\np0\n.",
    b'S"q\\"uote"\n.',
    b"S'\\x00\\n\\t'\n.",
    b"U\x03abcq\x00.",
    b"T\x03\x00\x00\x00abc.",
    b"(lp0\nI1\naI2\na.",
    b"(I1\nI2\ntp0\n.",
    b"(dp0\nS'k'\np1\nI5\ns.",
    b"(S'a'\nS'b'\nd.",
    b"(i__main__\nPlain\np0\n(dp1\nS'x'\nI1\nsb.",
    b"(c__main__\nPlain\no}b.",
    b"ccopy_reg\n_reconstructor\n(c__main__\nPlain\nc__builtin__\nobject\nNtR.",
    b"F1.5\n.",
    b"F-inf\n.",
    b"L123456789012345678901234567890L\n.",
    b"L-5\n.",
    b"I01\n.",
    b"I00\n.",
    b"Vunicode \\u20ac\n.",
    b"(I1\nI2\n1N.",
    b"I1\n2.",
    b"I1\nI2\n0.",
    b"Ppid\n.",
    b"S'pid'\nQ.",
    b"\x80\x02]q\x00(K\x01h\x00e.",
    b"\x80\x02(K\x01K\x02K\x03t.",
    b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00\x8c\x01a\x94\x8c\x01b\x94\x93.",
    b"\x80\x05\x97\x98.",
    b"\x80\x02}q\x00(K\x01K\x02u.",
    b"\x80\x04\x8f(K\x01\x90.",
    b"\x80\x04(K\x01\x91.",
    b"\x80\x02cbuiltins\nint\n)\x81.",
    b"\x80\x04cbuiltins\nint\n)}\x92.",
    b"\x80\x02g0\n.",
    b"\x80\x02j\xff\xff\xff\x7f.",
]


def doubles() -> list[bytes]:
    values = [
        0.0,
        -0.0,
        math.inf,
        -math.inf,
        math.nan,
        1e16,
        1e-5,
        0.1,
        5e-324,
        sys.float_info.max,
        1e22,
        9007199254740993.0,
        123456.789,
    ]
    return [struct.pack("<d", v) for v in values]


def utf8_texts() -> list[bytes]:
    """Text of each string width at block-sized lengths, lone surrogates and broken forms."""
    samples = [
        "",
        "a",
        "ascii only " * 3,
        "caf\xe9 cr\xe8me",
        "\xff" * 17,
        "\u0100",
        "\u4e2d\u6587 text",
        "\uffff",
        "\U0001f600 emoji",
        "\U0010ffff" * 5,
        "\ud800",
        "a\udfffb",
        "mixed \xe9\u0430\U0001d400 " * 4,
    ]
    seeds = [text.encode("utf-8", "surrogatepass") for text in samples]
    seeds += [
        b"\xc0\x80",
        b"\xe0\x80\x80",
        b"\xf0\x80\x80\x80",
        b"\xf4\x90\x80\x80",
        b"\xf5",
        b"\x80",
        b"ab\xe4\xb8",
        b"x" * 15 + b"\xc3",
    ]
    return seeds


def dictionary() -> str:
    """libFuzzer dictionary: every opcode byte and some argument shapes."""
    lines = []
    for op in pickletools.opcodes:
        lines.append(f'op_{op.name}="\\x{ord(op.code):02x}"')
    for proto in range(6):
        lines.append(f'proto_{proto}="\\x80\\x{proto:02x}"')
    lines += [
        'frame="\\x95\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"',
        'nl="\\x0a"',
        'true="I01\\x0a"',
        'false="I00\\x0a"',
        'long_l="L\\x0a"',
        'quote="\'"',
        'mod_builtins="builtins\\x0a"',
        'name_int="int\\x0a"',
        'len_ff="\\xff\\xff\\xff\\xff"',
        'len_7f="\\xff\\xff\\xff\\x7f"',
    ]
    return "\n".join(lines) + "\n"


def write_dir(path: Path, seeds: list[bytes]) -> int:
    path.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (path / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    return len(set(seeds))


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    seeds = pickles()
    n = write_dir(out / "fuzz_reader", seeds)
    write_dir(out / "fuzz_float_repr", doubles())
    write_dir(out / "fuzz_utf8", utf8_texts())
    write_dir(out / "fuzz_writer", [bytes([p]) + bytes(range(40)) for p in range(6)])
    (out / "pickle.dict").write_text(dictionary(), encoding="ascii")
    print(f"wrote {n} pickle seeds and a dictionary to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
