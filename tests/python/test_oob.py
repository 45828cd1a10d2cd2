"""PEP 574 out-of-band buffers, with real numpy arrays, bytearrays and PickleBuffer.

Semantics pinned against the stdlib: ``buffer_callback`` is called with each PickleBuffer in
order; a *false* return (``None`` from ``list.append``) sends the buffer out of band, a true
return keeps it in band. ``buffers=`` is consumed in order; NEXT_BUFFER without buffers, or
with too few, raises UnpicklingError; ``buffer_callback`` below protocol 5 raises ValueError.
Read-only buffers come back read-only, writable ones writable, and loading in the same
process shares memory with the buffers passed in. Bytes always equal the stdlib's for the
same callback decisions.
"""

from __future__ import annotations

import _pickle
import io
import pickle
import pickletools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import picklex
import pytest
from helpers import assert_same_bytes

PickleBuffer = pickle.PickleBuffer


def _arrays() -> dict[str, np.ndarray]:
    base = np.arange(24, dtype=np.float64).reshape(4, 6)
    readonly = base.copy()
    readonly.flags.writeable = False
    structured = np.zeros(5, dtype=[("a", "<i4"), ("b", "<f8", (2,)), ("c", "S3")])
    structured["a"] = np.arange(5)
    structured["c"] = b"xyz"
    return {
        "c_contiguous": base,
        "fortran": np.asfortranarray(base),
        "readonly": readonly,
        "non_contiguous": base[:, ::2],
        "zero_d": np.array(3.5),
        "empty": np.zeros((0, 3), dtype=np.int16),
        "int8": np.arange(-128, 128, dtype=np.int8),
        "big_endian": np.arange(10, dtype=">u4"),
        "bool": np.array([True, False, True]),
        "complex": np.array([1 + 2j, -3.5j]),
        "structured": structured,
        "datetime64": np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[D]"),
        "large": np.ones(2 * 1024 * 1024, dtype=np.float64),  # 16 MiB
    }


ARRAYS = _arrays()


class Decider:
    """A buffer_callback recording every buffer and answering from a fixed pattern."""

    def __init__(self, pattern: Callable[[int], Any] = lambda i: None) -> None:
        self.pattern = pattern
        self.received: list[PickleBuffer] = []

    def __call__(self, buf: PickleBuffer) -> Any:
        answer = self.pattern(len(self.received))
        self.received.append(buf)
        return answer

    def out_of_band(self) -> list[PickleBuffer]:
        """The buffers that the answers sent out of band (false answers)."""
        return [b for i, b in enumerate(self.received) if not self.pattern(i)]


def _both_dumps(obj: Any, pattern: Callable[[int], Any]) -> tuple[bytes, Decider]:
    ours, theirs = Decider(pattern), Decider(pattern)
    data = picklex.dumps(obj, 5, buffer_callback=ours)
    want = pickle.dumps(obj, 5, buffer_callback=theirs)
    assert_same_bytes(data, want)
    assert len(ours.received) == len(theirs.received)
    for got_buf, want_buf in zip(ours.received, theirs.received):
        assert type(got_buf) is PickleBuffer
        assert got_buf.raw().tobytes() == want_buf.raw().tobytes()
        assert got_buf.raw().readonly == want_buf.raw().readonly
    return data, ours


def _opcodes(data: bytes) -> list[str]:
    return [op.name for op, _, _ in pickletools.genops(data)]


def _assert_array_equal(got: Any, want: np.ndarray) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


# --------------------------------------------------------------------------- numpy


@pytest.mark.parametrize("name", list(ARRAYS))
def test_numpy_out_of_band(name: str) -> None:
    arr = ARRAYS[name]
    data, decider = _both_dumps(arr, lambda i: None)
    if name == "non_contiguous":
        assert decider.received == []  # numpy falls back to in-band pickling
        assert "NEXT_BUFFER" not in _opcodes(data)
    elif name in ("c_contiguous", "fortran", "readonly", "large", "structured"):
        assert len(decider.received) == 1
    buffers = decider.out_of_band()
    loaded = picklex.loads(data, buffers=buffers)
    _assert_array_equal(loaded, arr)
    _assert_array_equal(pickle.loads(data, buffers=buffers), arr)
    if buffers and arr.size:
        assert np.shares_memory(loaded, arr)
        assert loaded.flags.writeable == arr.flags.writeable


@pytest.mark.parametrize("name", list(ARRAYS))
def test_numpy_in_band_when_callback_says_true(name: str) -> None:
    arr = ARRAYS[name]
    data, decider = _both_dumps(arr, lambda i: True)
    assert "NEXT_BUFFER" not in _opcodes(data)
    assert decider.out_of_band() == []
    loaded = picklex.loads(data)
    _assert_array_equal(loaded, arr)
    if arr.size:
        assert not np.shares_memory(loaded, arr)


@pytest.mark.parametrize("name", list(ARRAYS))
@pytest.mark.parametrize("proto", [0, 1, 2, 3, 4, 5])
def test_numpy_without_callback_matches_stdlib(name: str, proto: int) -> None:
    arr = ARRAYS[name]
    if name == "large" and proto < 2:
        pytest.skip("16 MiB through protocol 0/1 text adds time and nothing new")
    data = picklex.dumps(arr, proto)
    assert_same_bytes(data, pickle.dumps(arr, proto))
    # Compared with what the stdlib loads: numpy itself turns '>u4' into native order
    # below protocol 5.
    reference = pickle.loads(data)
    _assert_array_equal(picklex.loads(data), reference)
    _assert_array_equal(picklex.loads(pickle.dumps(arr, proto)), reference)


def test_numpy_readonly_round_trip_flags() -> None:
    arr = ARRAYS["readonly"]
    data, decider = _both_dumps(arr, lambda i: None)
    assert "READONLY_BUFFER" in _opcodes(data)
    loaded = picklex.loads(data, buffers=decider.out_of_band())
    assert not loaded.flags.writeable
    writable = ARRAYS["c_contiguous"]
    data, decider = _both_dumps(writable, lambda i: None)
    assert "READONLY_BUFFER" not in _opcodes(data)
    loaded = picklex.loads(data, buffers=decider.out_of_band())
    assert loaded.flags.writeable
    loaded[0, 0] = -1.0  # shares memory with the original, so the write shows there
    assert writable[0, 0] == -1.0
    writable[0, 0] = 0.0


def test_mixed_decisions_over_many_arrays() -> None:
    arrays = [np.full(10 + i, i, dtype=np.int32) for i in range(10)]
    obj = {"arrays": arrays, "same": arrays[3], "note": "x"}
    for pattern in (lambda i: i % 2, lambda i: i % 3 == 0, lambda i: 0, lambda i: "yes"):
        data, decider = _both_dumps(obj, pattern)
        buffers = decider.out_of_band()
        for loads in (picklex.loads, pickle.loads):
            loaded = loads(data, buffers=buffers)
            for got, want in zip(loaded["arrays"], arrays):
                _assert_array_equal(got, want)
            assert loaded["same"] is loaded["arrays"][3]


# --------------------------------------------------------------------------- bytes-like


@pytest.mark.parametrize("proto", [5])
def test_picklebuffer_in_band_forms(proto: int) -> None:
    for payload in (b"abc", bytearray(b"abc"), b"x" * 70000, bytearray(70000)):
        obj = PickleBuffer(payload)
        data = picklex.dumps(obj, proto)
        assert_same_bytes(data, pickle.dumps(obj, proto))
        loaded = picklex.loads(data)
        assert type(loaded) is type(payload)
        assert loaded == payload


def test_picklebuffer_below_protocol_5_raises() -> None:
    for proto in range(5):
        with pytest.raises(pickle.PicklingError):
            pickle.dumps(PickleBuffer(b"x"), proto)
        with pytest.raises(pickle.PicklingError):
            picklex.dumps(PickleBuffer(b"x"), proto)


def test_non_contiguous_picklebuffer_raises() -> None:
    view = memoryview(b"abcdef")[::2]
    with pytest.raises(pickle.PicklingError):
        pickle.dumps(PickleBuffer(view), 5)
    with pytest.raises(pickle.PicklingError):
        picklex.dumps(PickleBuffer(view), 5)


@pytest.mark.parametrize("payload_type", [bytes, bytearray])
def test_picklebuffer_out_of_band_identity_and_flags(payload_type: type) -> None:
    payload = payload_type(b"payload!")
    obj = PickleBuffer(payload)
    data, decider = _both_dumps(obj, lambda i: None)
    (buf,) = decider.out_of_band()
    if payload_type is bytes:
        assert data.endswith(pickle.NEXT_BUFFER + pickle.READONLY_BUFFER + b".")
        loaded = picklex.loads(data, buffers=[buf])
        assert memoryview(loaded).readonly
    else:
        assert data.endswith(pickle.NEXT_BUFFER + b".")
        loaded = picklex.loads(data, buffers=[buf])
        assert loaded is buf  # NEXT_BUFFER yields the very object passed in
        assert not memoryview(loaded).readonly
    assert bytes(loaded) == bytes(payload)


def test_readonly_buffer_over_writable_object_is_readonly() -> None:
    data = b"\x80\x05\x97\x98."  # NEXT_BUFFER READONLY_BUFFER
    backing = bytearray(b"rw data")
    want = pickle.loads(data, buffers=[backing])
    got = picklex.loads(data, buffers=[backing])
    assert type(got) is type(want) is memoryview
    assert got.readonly and bytes(got) == bytes(backing)
    backing[0:2] = b"RW"  # still shares memory
    assert bytes(got[:2]) == b"RW"


def test_bytearray_subclass_shares_memory() -> None:
    arr = bytearray(b"\x01" * 4096)
    data, decider = _both_dumps(PickleBuffer(arr), lambda i: None)
    loaded = picklex.loads(data, buffers=decider.out_of_band())
    view = memoryview(loaded)
    addr_loaded = np.frombuffer(view, dtype=np.uint8).__array_interface__["data"][0]
    addr_orig = np.frombuffer(arr, dtype=np.uint8).__array_interface__["data"][0]
    assert addr_loaded == addr_orig


# --------------------------------------------------------------------------- buffers= handling


def _oob_list(n: int) -> tuple[bytes, list[bytearray]]:
    payloads = [bytearray(f"buffer {i}".encode()) for i in range(n)]
    obj = [PickleBuffer(p) for p in payloads]
    data, decider = _both_dumps(obj, lambda i: None)
    return data, payloads


def test_buffers_consumed_in_order_from_any_iterable() -> None:
    data, payloads = _oob_list(5)
    consumed: list[int] = []

    def gen() -> Iterator[bytearray]:
        for i, p in enumerate(payloads):
            consumed.append(i)
            yield p

    loaded = picklex.loads(data, buffers=gen())
    assert [bytes(x) for x in loaded] == [bytes(p) for p in payloads]
    assert consumed == [0, 1, 2, 3, 4]
    assert all(a is b for a, b in zip(loaded, payloads))
    assert picklex.loads(data, buffers=tuple(payloads))[4] is payloads[4]
    reordered = picklex.loads(data, buffers=payloads[::-1])
    assert bytes(reordered[0]) == b"buffer 4"


def test_extra_buffers_are_ignored_like_stdlib() -> None:
    data, payloads = _oob_list(2)
    extra = [*payloads, bytearray(b"unused")]
    assert [bytes(x) for x in picklex.loads(data, buffers=extra)] == [
        bytes(x) for x in pickle.loads(data, buffers=extra)
    ]


def test_next_buffer_without_buffers_raises() -> None:
    data, _ = _oob_list(1)
    with pytest.raises(pickle.UnpicklingError, match="out-of-band"):
        pickle.loads(data)
    with pytest.raises(pickle.UnpicklingError, match="out-of-band"):
        picklex.loads(data)
    with pytest.raises(pickle.UnpicklingError):
        picklex.loads(data, buffers=None)
    with pytest.raises(pickle.UnpicklingError):
        picklex.Unpickler(io.BytesIO(data)).load()


@pytest.mark.parametrize("given", [0, 1, 2])
def test_too_few_buffers_raise(given: int) -> None:
    data, payloads = _oob_list(3)
    with pytest.raises(pickle.UnpicklingError, match="not enough out-of-band buffers"):
        pickle.loads(data, buffers=payloads[:given])
    with pytest.raises(pickle.UnpicklingError, match="not enough out-of-band buffers"):
        picklex.loads(data, buffers=payloads[:given])


def test_buffers_not_iterable_raises_type_error() -> None:
    with pytest.raises(TypeError):
        _pickle.loads(b"\x80\x05N.", buffers=1)
    with pytest.raises(TypeError):
        picklex.loads(b"\x80\x05N.", buffers=1)


def test_buffer_values_are_not_type_checked_at_next_buffer() -> None:
    # NEXT_BUFFER pushes whatever object comes next, as the stdlib does.
    data = b"\x80\x05\x97."
    sentinel = object()
    assert pickle.loads(data, buffers=[sentinel]) is sentinel
    assert picklex.loads(data, buffers=[sentinel]) is sentinel


def test_readonly_buffer_on_non_buffer_raises_like_stdlib() -> None:
    data = b"\x80\x05\x97\x98."
    with pytest.raises(TypeError):
        pickle.loads(data, buffers=[1])
    with pytest.raises(TypeError):
        picklex.loads(data, buffers=[1])


# --------------------------------------------------------------------------- buffer_callback


@pytest.mark.parametrize("proto", [0, 1, 2, 3, 4])
def test_buffer_callback_below_protocol_5_raises(proto: int) -> None:
    with pytest.raises(ValueError):
        picklex.dumps(b"x", proto, buffer_callback=list().append)
    with pytest.raises(ValueError):
        picklex.Pickler(io.BytesIO(), proto, buffer_callback=list().append)
    with pytest.raises(ValueError):
        picklex.dump(b"x", io.BytesIO(), proto, buffer_callback=list().append)


def test_buffer_callback_none_means_in_band() -> None:
    obj = PickleBuffer(bytearray(b"abc"))
    assert picklex.dumps(obj, 5, buffer_callback=None) == pickle.dumps(obj, 5)


def test_buffer_callback_exception_propagates() -> None:
    class Boom(Exception):
        pass

    def callback(buf: PickleBuffer) -> None:
        raise Boom

    with pytest.raises(Boom):
        picklex.dumps([ARRAYS["int8"]], 5, buffer_callback=callback)


def test_buffer_callback_not_called_for_plain_bytes() -> None:
    decider = Decider()
    picklex.dumps([b"bytes", bytearray(b"bytearray"), "str"], 5, buffer_callback=decider)
    assert decider.received == []


def test_pickler_and_unpickler_on_files() -> None:
    obj = {"a": ARRAYS["c_contiguous"], "b": ARRAYS["readonly"], "c": PickleBuffer(b"raw")}
    got_buffers: list[PickleBuffer] = []
    want_buffers: list[PickleBuffer] = []
    got, want = io.BytesIO(), io.BytesIO()
    picklex.Pickler(got, 5, buffer_callback=got_buffers.append).dump(obj)
    _pickle.Pickler(want, 5, buffer_callback=want_buffers.append).dump(obj)
    assert_same_bytes(got.getvalue(), want.getvalue())
    assert len(got_buffers) == len(want_buffers) == 3
    got.seek(0)
    loaded = picklex.Unpickler(got, buffers=got_buffers).load()
    _assert_array_equal(loaded["a"], obj["a"])
    _assert_array_equal(loaded["b"], obj["b"])
    assert bytes(loaded["c"]) == b"raw"
    assert np.shares_memory(loaded["a"], obj["a"])


def test_raw_buffers_from_callback_can_be_shipped_as_bytes() -> None:
    # Across processes buffers travel as plain bytes; loading them gives read-only data.
    arr = ARRAYS["fortran"]
    data, decider = _both_dumps(arr, lambda i: None)
    shipped = [b.raw().tobytes() for b in decider.out_of_band()]
    loaded = picklex.loads(data, buffers=shipped)
    _assert_array_equal(loaded, arr)
    assert loaded.flags.f_contiguous
    assert not loaded.flags.writeable
    copied = picklex.loads(data, buffers=[bytearray(s) for s in shipped])
    assert copied.flags.writeable
