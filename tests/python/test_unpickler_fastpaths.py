"""The unpickler's shortcuts must never change a loaded value.

picklex hands out one object per value among recently loaded small ints and short ASCII
strings, and fills the state of plain class instances through the attribute store. Each test
here tries to break one of those shortcuts and compares the loaded result with what the
stdlib's unpickler builds.
"""

from __future__ import annotations

import pickle
import random
import threading

import picklex
import pytest

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)


def loads_like_stdlib(obj, proto):
    data = pickle.dumps(obj, proto)
    ours = picklex.loads(data)
    assert ours == pickle.loads(data)
    return ours


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_ints_sharing_a_cache_slot_keep_their_values(proto):
    # Values 1024 apart land in the same slot of the direct-mapped table.
    values = [base + 1024 * k for k in range(-3, 4) for base in (0, 1, 255, 1000)]
    loaded = loads_like_stdlib(values * 3, proto)
    assert [type(v) for v in loaded] == [int] * len(loaded)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_every_opcode_width_and_sign(proto):
    edges = [0, 1, -1, 255, 256, -256, 65535, 65536, -65536, 2**31 - 1, -(2**31)]
    edges += [2**31, -(2**31) - 1, 2**63 - 1, -(2**63), 2**64, -(2**64) - 1, 10**40]
    loads_like_stdlib(edges * 2, proto)


def test_distinct_ints_after_repeated_ones():
    # The cache gives up on a load of distinct values; the values must not suffer.
    rng = random.Random(1)
    repeated = [rng.randrange(500) for _ in range(5000)]
    distinct = list(range(-50_000, 50_000, 7))
    for proto in (2, 4, 5):
        loads_like_stdlib([repeated, distinct, repeated], proto)


def test_equal_ints_may_share_one_object():
    loaded = picklex.loads(pickle.dumps([70_000, 70_000], 4))
    assert loaded == [70_000, 70_000]
    assert loaded[0] is loaded[1]


def test_loads_in_threads_agree():
    rng = random.Random(2)
    payloads = [[rng.randrange(-3000, 3000) for _ in range(20_000)] for _ in range(4)]
    pickles = [pickle.dumps(p, 4) for p in payloads]
    failures = []

    def work(index):
        for _ in range(20):
            if picklex.loads(pickles[index]) != payloads[index]:
                failures.append(index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_short_strings_of_every_length_and_near_miss(proto):
    # Strings that differ in one byte at the start, middle or end, at every cached length
    # and just past it; many of them share table slots.
    words = []
    for n in range(0, 30):
        base = "".join(chr(97 + (i * 7) % 26) for i in range(n))
        words.append(base)
        for at in {0, n // 2, n - 1} if n else ():
            words.append(base[:at] + "Z" + base[at + 1 :])
    loaded = loads_like_stdlib([words, words[::-1], {w: i for i, w in enumerate(words)}], proto)
    assert all(type(w) is str for w in loaded[0])


def test_strings_keep_their_kind_and_hash():
    keys = ["id", "kind", "caf\xe9", "\u4e2d\u6587", "x" * 24, "y" * 25, "ab\x00c"]
    for _ in range(3):
        loaded = loads_like_stdlib({k: k for k in keys}, 4)
        for key, value in loaded.items():
            assert hash(key) == hash(value) == hash(str(key))


def test_distinct_strings_after_repeated_ones():
    rng = random.Random(3)
    repeated = [rng.choice(["AAA", "BBB", "tick", "venue", "X1"]) for _ in range(3000)]
    distinct = [f"key:{i:06d}" for i in range(20_000)]
    for proto in (2, 4, 5):
        loads_like_stdlib([repeated, distinct, repeated], proto)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_round_trip_keeps_the_sharing_of_the_pickle(proto):
    # Equal strings the pickle keeps apart stay apart, so dumping the result again writes
    # what the stdlib's round trip writes.
    rows = [{"id": i, "kind": "tick" + "", "venue": "".join(["X", "1"])} for i in range(50)]
    data = pickle.dumps(rows, proto)
    for _ in range(3):
        assert pickle.dumps(picklex.loads(data), proto) == pickle.dumps(pickle.loads(data), proto)
    message = pickle.dumps({"kind": "tick", "venue": "X1"}, proto)
    first, second = picklex.loads(message), picklex.loads(message)
    assert first == second


class WithProperty:
    """State names a data descriptor: the default __setstate__ bypasses its setter."""

    def __init__(self):
        self.__dict__["level"] = 3
        self.other = "x"

    @property
    def level(self):
        return -1

    @level.setter
    def level(self, value):
        raise AssertionError("the setter must not run on load")


class WithMethodName:
    def __init__(self):
        self.method = "shadowing value"
        self.value = 1

    def method(self):  # a non-data descriptor: the instance dict wins
        return "class"


class SlotsAndDict:
    __slots__ = ("a", "__dict__")

    def __init__(self):
        self.a = 1
        self.b = 2


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("cls", [WithProperty, WithMethodName, SlotsAndDict])
def test_default_setstate_matches_stdlib(cls, proto):
    if cls is SlotsAndDict and proto < 2:
        pytest.skip("__slots__ classes pickle from protocol 2 on")
    data = pickle.dumps(cls(), proto)
    ours, theirs = picklex.loads(data), pickle.loads(data)
    assert type(ours) is cls
    assert getattr(ours, "__dict__", None) == getattr(theirs, "__dict__", None)
    for name in getattr(cls, "__slots__", ()):
        if name != "__dict__":
            assert getattr(ours, name) == getattr(theirs, name)
