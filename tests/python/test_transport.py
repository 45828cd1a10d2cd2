"""Framed messages: send / recv on real sockets, write_message / read_message on real streams.

Peers are real: threads on socketpairs and TCP loopback connections, and child processes that
send, die part-way, or lie in their headers. Zero-copy on the receiving side is checked by
where the arrays' memory lives (one aligned block per buffer, nothing copied after it), on the
sending side by the memory the send allocates, never by timing.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import picklex
import pytest
from picklex import _framing

ALIGN = 64
PACKAGE_PATH = str(Path(picklex.__file__).parent.parent)
TIMEOUT = 20.0  # no test may block longer than this on a socket


# ------------------------------------------------------------------------------- helpers


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    return client, accepted


def unix_pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)


PAIRS = {"unix": unix_pair, "tcp": tcp_pair}


@contextmanager
def connected(kind: str = "unix") -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = PAIRS[kind]()
    for sock in (a, b):
        sock.settimeout(TIMEOUT)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


class Sender(threading.Thread):
    """Runs ``work`` on a thread and re-raises its exception on join."""

    def __init__(self, work: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def join(self, timeout: float | None = TIMEOUT) -> None:
        super().join(timeout)
        assert not self.is_alive(), "sender thread hung"
        if self.error is not None:
            raise self.error


def over_socket(obj: Any, kind: str = "unix", **recv_kwargs: Any) -> Any:
    with connected(kind) as (a, b):
        sender = Sender(lambda: picklex.send(a, obj))
        sender.start()
        received = picklex.recv(b, **recv_kwargs)
        sender.join()
    return received


def child(code: str, *args: str, **popen: Any) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=PACKAGE_PATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env, **popen)


def address(array: np.ndarray) -> int:
    return array.__array_interface__["data"][0]


def allocation_of(array: np.ndarray) -> np.ndarray:
    """The array that owns a received array's memory."""
    base = array
    while isinstance(base.base, np.ndarray):
        base = base.base
    if isinstance(base.base, memoryview):
        owner = base.base.obj
        while isinstance(owner, np.ndarray) and owner.base is not None:
            owner = owner.base
        return owner
    return base


def sample() -> dict[str, Any]:
    rng = np.random.default_rng(11)
    readonly = np.arange(50, dtype=np.int16)
    readonly.flags.writeable = False
    return {
        "f64": rng.random(10_000),
        "matrix": rng.random((40, 30)).astype(np.float32),
        "fortran": np.asfortranarray(rng.random((6, 5))),
        "readonly": readonly,
        "empty": np.zeros(0),
        "text": "ünïcode",
        "nested": {"list": [1, 2, 3], "tuple": (None, True, 2.5), "set": {b"x"}},
        "pickle_buffer": pickle.PickleBuffer(bytearray(b"raw out-of-band bytes")),
    }


def assert_same(received: dict[str, Any], sent: dict[str, Any]) -> None:
    assert received.keys() == sent.keys()
    for key, value in sent.items():
        if isinstance(value, np.ndarray):
            assert received[key].dtype == value.dtype and received[key].shape == value.shape
            assert np.array_equal(received[key], value), key
        elif isinstance(value, pickle.PickleBuffer):
            assert bytes(received[key]) == bytes(value)
        else:
            assert received[key] == value, key


def raw_header(
    *,
    magic: bytes = _framing.MAGIC,
    version: int = _framing.VERSION,
    flags: int = 0,
    reserved: int = 0,
    count: int = 0,
    stream_length: int = 0,
    payload_length: int = 0,
    table: bytes = b"",
    crc: int | None = None,
) -> bytes:
    """A header as a hostile or broken peer might send it (CRC correct unless given)."""
    fields = (magic, version, flags, reserved, count, stream_length, payload_length)
    if crc is None:
        unsigned = _framing.HEADER.pack(*fields, 0)
        crc = picklex._checksum.metadata_crc(unsigned[:28], table)
    return _framing.HEADER.pack(*fields, crc) + table


# ------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_round_trip(kind: str) -> None:
    sent = sample()
    received = over_socket(sent, kind)
    assert_same(received, sent)
    assert received["f64"].flags.writeable  # fresh private memory, writable as sent
    assert not received["readonly"].flags.writeable  # read-only as sent


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_protocol(protocol: int) -> None:
    obj = {"a": list(range(100)), "b": np.arange(7.0), "s": "x" * 1000}
    with connected() as (a, b):
        picklex.send(a, obj, protocol=protocol)
        received = picklex.recv(b)
    assert received["a"] == obj["a"] and np.array_equal(received["b"], obj["b"])


def test_several_messages_then_clean_eof() -> None:
    with connected() as (a, b):
        for i in range(5):
            picklex.send(a, {"i": i, "a": np.full(i, i)})
        a.shutdown(socket.SHUT_WR)
        for i in range(5):
            got = picklex.recv(b)
            assert got["i"] == i and np.array_equal(got["a"], np.full(i, i))
        with pytest.raises(EOFError) as info:
            picklex.recv(b)
        assert not isinstance(info.value, picklex.MessageError)


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_dict_of_100_arrays(kind: str) -> None:
    rng = np.random.default_rng(2)
    arrays = {f"a{i}": rng.random(int(rng.integers(0, 20_000))) for i in range(100)}
    received = over_socket(arrays, kind)
    assert received.keys() == arrays.keys()
    for key, value in arrays.items():
        assert np.array_equal(received[key], value)
        assert address(received[key]) % ALIGN == 0


def test_pandas_dataframe() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {
            "i": np.arange(5000),
            "f": np.linspace(-1, 1, 5000),
            "s": [str(i) for i in range(5000)],
            "cat": pd.Categorical(["x", "y", "z", "x", "y"] * 1000),
        }
    )
    for kind in ("unix", "tcp"):
        pd.testing.assert_frame_equal(over_socket(frame, kind), frame)


def test_more_buffers_than_iov_max() -> None:
    arrays = [np.full(i % 5 + 1, i, dtype=np.int32) for i in range(3000)]
    received = over_socket(arrays)
    assert all(np.array_equal(x, y) for x, y in zip(received, arrays))


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_small_socket_buffers_force_partial_transfers(kind: str) -> None:
    # Kernel buffers far smaller than the message: many partial sendmsg / recvmsg_into calls.
    big = np.random.default_rng(4).random(1 << 18)  # 2 MiB
    with connected(kind) as (a, b):
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sender = Sender(lambda: picklex.send(a, [big, big[::-1].copy()]))
        sender.start()
        first, second = picklex.recv(b)
        sender.join()
    assert np.array_equal(first, big) and np.array_equal(second, big[::-1])


def test_sender_in_a_child_process(tmp_path: Path) -> None:
    a, b = unix_pair()
    b.settimeout(TIMEOUT)
    proc = child(
        """
        import socket, sys
        import numpy as np, picklex
        sock = socket.socket(fileno=int(sys.argv[1]))
        picklex.send(sock, {"pid": "child", "a": np.arange(1 << 20, dtype=np.float64)})
        picklex.send(sock, [np.ones(3), np.zeros(2)])
        """,
        str(a.fileno()),
        pass_fds=(a.fileno(),),
    )
    a.close()
    try:
        first = picklex.recv(b)
        second = picklex.recv(b)
        with pytest.raises(EOFError):
            picklex.recv(b)
    finally:
        assert proc.wait(timeout=TIMEOUT) == 0
        b.close()
    assert first["pid"] == "child" and np.array_equal(first["a"], np.arange(1 << 20))
    assert np.array_equal(second[0], np.ones(3))


# ------------------------------------------------------------------------------- zero copy


def test_received_arrays_live_in_their_own_aligned_receive_buffers() -> None:
    sent = {"a": np.arange(100_000.0), "b": np.arange(50_000, dtype=np.int32)}
    received = over_socket(sent)
    for key in ("a", "b"):
        array = received[key]
        assert address(array) % ALIGN == 0
        assert not array.flags.owndata  # a view of the receive buffer, not a copy of it
        owner = allocation_of(array)
        assert owner.dtype == np.uint8 and owner.nbytes == array.nbytes + ALIGN
        assert np.shares_memory(array, owner)
    assert not np.shares_memory(received["a"], received["b"])


def test_send_does_not_copy_buffers() -> None:
    big = np.random.default_rng(8).random(8 << 20)  # 64 MiB
    sink = bytearray(big.nbytes + 4096)  # the receiver only drains, into memory made up front
    drained = 0

    def drain() -> None:
        nonlocal drained
        view = memoryview(sink)
        while got := b.recv_into(view[drained:]):
            drained += got

    with connected() as (a, b):
        receiver = Sender(drain)
        receiver.start()
        tracemalloc.start()
        try:
            picklex.send(a, big)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        a.shutdown(socket.SHUT_WR)
        receiver.join()
    assert peak < 1 << 20, f"send allocated {peak} bytes"
    assert np.array_equal(picklex.read_message(io.BytesIO(sink[:drained])), big)


def test_recv_allocates_each_buffer_once() -> None:
    big = np.random.default_rng(9).random(4 << 20)  # 32 MiB
    with connected() as (a, b):
        sender = Sender(lambda: picklex.send(a, big))
        sender.start()
        tracemalloc.start()
        try:
            received = picklex.recv(b)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        sender.join()
    assert big.nbytes <= peak < big.nbytes + (1 << 20)
    assert np.array_equal(received, big)


# ------------------------------------------------------------------------------- streams


def test_bytesio_stream_with_several_messages() -> None:
    stream = io.BytesIO()
    objs = [sample(), [1, 2, 3], np.arange(12).reshape(3, 4)]
    for obj in objs:
        picklex.write_message(stream, obj)
    stream.seek(0)
    assert_same(picklex.read_message(stream), objs[0])
    assert picklex.read_message(stream) == [1, 2, 3]
    assert np.array_equal(picklex.read_message(stream), objs[2])
    with pytest.raises(EOFError):
        picklex.read_message(stream)


def test_socket_and_stream_framing_are_the_same() -> None:
    obj = {"a": np.arange(10.0), "t": "same bytes"}
    stream = io.BytesIO()
    picklex.write_message(stream, obj)
    with connected() as (a, b):
        picklex.send(a, obj)
        a.shutdown(socket.SHUT_WR)
        wire = b.makefile("rb").read()
    assert wire == stream.getvalue()
    with connected() as (a, b):
        a.sendall(stream.getvalue())
        assert np.array_equal(picklex.recv(b)["a"], obj["a"])


@pytest.mark.parametrize("buffering", [0, -1])
def test_pipe_between_threads(buffering: int) -> None:
    read_fd, write_fd = os.pipe()
    reader = open(read_fd, "rb", buffering=buffering)
    writer = open(write_fd, "wb", buffering=buffering)
    big = np.random.default_rng(6).random(1 << 20)  # 8 MiB, far beyond the pipe's capacity
    sender = Sender(lambda: (picklex.write_message(writer, [big, "end"]), writer.close()))
    sender.start()
    try:
        got, end = picklex.read_message(reader)
        sender.join()
        with pytest.raises(EOFError):
            picklex.read_message(reader)
    finally:
        reader.close()
    assert np.array_equal(got, big) and end == "end"
    assert address(got) % ALIGN == 0


def test_pipe_from_a_child_process() -> None:
    proc = child(
        """
        import sys
        import numpy as np, picklex
        picklex.write_message(sys.stdout.buffer, {"a": np.arange(300_000)})
        sys.stdout.buffer.flush()
        """,
        stdout=subprocess.PIPE,
    )
    try:
        got = picklex.read_message(proc.stdout)
    finally:
        proc.stdout.close()
        assert proc.wait(timeout=TIMEOUT) == 0
    assert np.array_equal(got["a"], np.arange(300_000))


class ReadOnlyStream:
    """A file-like object with read() but no readinto()."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def read(self, n: int) -> bytes:
        return self.data.read(min(n, 1000))  # short reads, as a socket-like object might


class ShortWriter(io.RawIOBase):
    """A raw stream that accepts at most 777 bytes per write."""

    def __init__(self) -> None:
        self.out = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        chunk = bytes(memoryview(b)[:777])
        self.out += chunk
        return len(chunk)


def test_partial_writes_and_reads_without_readinto() -> None:
    obj = {"a": np.arange(5000.0), "b": b"x" * 3000}
    writer = ShortWriter()
    picklex.write_message(writer, obj)
    got = picklex.read_message(ReadOnlyStream(bytes(writer.out)))
    assert np.array_equal(got["a"], obj["a"]) and got["b"] == obj["b"]


# ------------------------------------------------------------------------------- broken peers


def message_bytes(obj: Any) -> bytes:
    stream = io.BytesIO()
    picklex.write_message(stream, obj)
    return stream.getvalue()


def test_truncated_anywhere_raises() -> None:
    data = message_bytes({"a": np.arange(30, dtype=np.int16), "b": np.ones(5), "t": "text"})
    for cut in range(1, len(data)):
        with pytest.raises(picklex.TruncatedMessageError):
            picklex.read_message(io.BytesIO(data[:cut]))
    with pytest.raises(EOFError):
        picklex.read_message(io.BytesIO(b""))
    assert issubclass(picklex.TruncatedMessageError, EOFError)
    assert issubclass(picklex.TruncatedMessageError, pickle.UnpicklingError)


def test_peer_closing_mid_message_raises_promptly() -> None:
    data = message_bytes(np.arange(1 << 20, dtype=np.float64))
    with connected() as (a, b):
        sender = Sender(lambda: (a.sendall(data[: len(data) // 2]), a.close()))
        sender.start()
        start = time.monotonic()
        with pytest.raises(picklex.TruncatedMessageError, match="cut short"):
            picklex.recv(b)
        assert time.monotonic() - start < 5
        sender.join()


def test_peer_killed_mid_send_raises_promptly() -> None:
    a, b = unix_pair()
    b.settimeout(TIMEOUT)
    proc = child(
        """
        import socket, sys, time
        import numpy as np, picklex
        sock = socket.socket(fileno=int(sys.argv[1]))
        picklex.send(sock, np.arange(1 << 24, dtype=np.float64))  # 128 MiB
        """,
        str(a.fileno()),
        pass_fds=(a.fileno(),),
    )
    a.close()
    try:
        head = b.recv(_framing.HEADER.size, socket.MSG_PEEK | socket.MSG_WAITALL)
        assert len(head) == _framing.HEADER.size  # the send has started
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        start = time.monotonic()
        with pytest.raises(picklex.TruncatedMessageError):
            picklex.recv(b)
        assert time.monotonic() - start < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        b.close()


def test_silent_live_peer_times_out() -> None:
    with connected() as (a, b):
        b.settimeout(0.2)
        a.sendall(message_bytes(np.arange(1000.0))[:100])
        start = time.monotonic()
        # socket.timeout is TimeoutError from 3.10 on; 3.9's socket raises its own class.
        with pytest.raises(socket.timeout):
            picklex.recv(b)
        assert time.monotonic() - start < 5


def expect_message_error(data: bytes, match: str, **limits: int) -> None:
    with pytest.raises(picklex.MessageError, match=match):
        picklex.read_message(io.BytesIO(data), **limits)
    with connected() as (a, b):
        a.sendall(data)
        a.close()
        with pytest.raises(picklex.MessageError, match=match):
            picklex.recv(b, **limits)


def test_bad_magic_and_version_and_reserved_bits() -> None:
    good = message_bytes([1, 2, 3])
    expect_message_error(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"." * 20, "bad magic")
    expect_message_error(b"\x80\x05" + good[2:], "bad magic")
    expect_message_error(raw_header(version=2) + good[32:], "version 2")
    expect_message_error(raw_header(flags=1, stream_length=1, payload_length=1), "reserved")
    expect_message_error(raw_header(reserved=7), "reserved")


def test_checksum_and_length_consistency() -> None:
    good = bytearray(message_bytes({"a": np.arange(4.0)}))
    damaged = bytearray(good)
    damaged[32] ^= 1  # first table entry's length: caught by the header CRC
    expect_message_error(bytes(damaged), "checksum")
    table = _framing.ENTRY.pack(10, 0)
    inconsistent = raw_header(count=1, stream_length=5, payload_length=99, table=table)
    expect_message_error(inconsistent + b"\0" * 99, "add up")
    expect_message_error(raw_header(stream_length=10, payload_length=5), "stream length")
    bad_flags = raw_header(count=1, payload_length=1, table=_framing.ENTRY.pack(1, 0x40))
    expect_message_error(bad_flags + b"\0", "flags")


def test_too_many_buffers() -> None:
    expect_message_error(raw_header(count=(1 << 16) + 1), "more than the 65536 allowed")
    data = message_bytes([np.ones(1), np.ones(2), np.ones(3)])
    expect_message_error(data, "more than the 2 allowed", max_buffers=2)
    assert len(picklex.read_message(io.BytesIO(data), max_buffers=3)) == 3


def test_huge_claims_are_refused_before_allocating() -> None:
    claims = [
        raw_header(stream_length=2**60, payload_length=2**60),
        raw_header(count=1, payload_length=2**60, table=_framing.ENTRY.pack(2**60, 0)),
        raw_header(stream_length=2**64 - 1, payload_length=2**64 - 1),
    ]
    for data in claims:
        tracemalloc.start()
        try:
            start = time.monotonic()
            expect_message_error(data, "exceeds max_message_size")
            elapsed = time.monotonic() - start
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20 and elapsed < 2


# The receiver runs under an address-space limit of its size after start-up plus this much:
# room for one large message received without a copy (not for the message and a copy of its
# first 64 MiB), and far from 4 GiB.
HEADROOM = 176 << 20
LEGIT_SIZE = (112 << 20) + 12345  # more than one 64 MiB receive step, not a whole page

RECEIVER_UNDER_LIMIT = """
import hashlib, io, json, os, resource, socket, sys
import numpy as np, picklex

kind, fd, use_pool = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "pool"
if kind == "socket":
    sock = socket.socket(fileno=fd)
    receive = lambda **kw: picklex.recv(sock, **kw)
else:
    stream = os.fdopen(fd, "rb")
    if kind == "pipe-read":  # a file object without readinto: read() only
        class Reader:
            read = stream.read
        stream = Reader()
    receive = lambda **kw: picklex.read_message(stream, **kw)
pool = picklex.BufferPool(max_bytes=0) if use_pool else None  # keeps nothing in reserve

with open("/proc/self/status") as status:
    vm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[4]), resource.RLIM_INFINITY))

report = {}
array = receive(pool=pool)
owner = array  # down the chain of views to the memory the bytes were received into
while True:
    below = owner.obj if isinstance(owner, memoryview) else getattr(owner, "base", None)
    if below is None:
        break
    owner = below
report["digest"] = hashlib.sha256(memoryview(array)).hexdigest()
report["owner_bytes"] = memoryview(owner).nbytes
report["aligned"] = array.__array_interface__["data"][0] % 64 == 0
del array, owner
try:
    receive(pool=pool)
except Exception as exc:
    report["error"] = type(exc).__name__
    report["message"] = str(exc)
print(json.dumps(report))
"""


def announcing_4gib(claim: str) -> bytes:
    """A valid header (within the default max_message_size) for 4 GiB that never comes."""
    if claim == "stream":
        payload = picklex.DEFAULT_MAX_MESSAGE_SIZE - _framing.HEADER.size
        return raw_header(stream_length=payload, payload_length=payload)
    entry = _framing.ENTRY.pack(picklex.DEFAULT_MAX_MESSAGE_SIZE - 48, 0)
    return raw_header(count=1, payload_length=picklex.DEFAULT_MAX_MESSAGE_SIZE - 48, table=entry)


@pytest.mark.parametrize("kind", ["socket", "pipe", "pipe-read"])
@pytest.mark.parametrize("claim,pool", [("stream", ""), ("buffer", ""), ("buffer", "pool")])
def test_message_header_announcing_4gib_does_not_reserve_it(
    kind: str, claim: str, pool: str
) -> None:
    # Under a memory limit of a few hundred MiB, a header that announces a 4 GiB stream or
    # buffer and is followed by nothing must be a TruncatedMessageError, not a MemoryError:
    # receive memory follows the bytes that arrive. A real message larger than one receive
    # step, sent first, must still arrive intact, in memory of its own size, without a copy
    # (a copy would not fit under the limit).
    legit = np.random.default_rng(4).integers(0, 256, LEGIT_SIZE, dtype=np.uint8)
    if kind == "socket":
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ours.settimeout(TIMEOUT)
        out: Any = ours.makefile("wb")
        fd = theirs.fileno()
    else:
        fd, ours_fd = os.pipe()
        out = os.fdopen(ours_fd, "wb")
    proc = child(
        RECEIVER_UNDER_LIMIT,
        kind,
        str(fd),
        pool or "none",
        str(HEADROOM),
        pass_fds=[fd],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if kind == "socket":  # the child has its own copy
        theirs.close()
    else:
        os.close(fd)

    def feed() -> None:
        with out:
            out.write(message_bytes(legit))
            out.write(announcing_4gib(claim))
        if kind == "socket":
            ours.close()

    sender = Sender(feed)
    sender.start()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    report = json.loads(stdout)
    assert report.get("error") == "TruncatedMessageError", report
    assert "cut short: got 0 of " in report["message"]
    assert report["digest"] == hashlib.sha256(memoryview(legit)).hexdigest()
    assert report["aligned"]
    assert LEGIT_SIZE <= report["owner_bytes"] < LEGIT_SIZE + 65536
    sender.join()


class KeepingReader(io.BytesIO):
    """A stream whose readinto keeps every view it is given (a file object may)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.kept: list[memoryview] = []

    def readinto(self, view: Any) -> int:
        self.kept.append(view)
        return super().readinto(view)


def test_message_larger_than_a_receive_step_arrives_intact() -> None:
    # The stream and the buffers of a message grow in steps as their bytes arrive; the bytes
    # end up where they belong whatever the step boundaries, on sockets and streams alike.
    rng = np.random.default_rng(12)
    big = rng.integers(0, 256, (64 << 20) + 1, dtype=np.uint8)
    obj = {"big": big, "small": np.arange(10.0), "inband": b"x" * (70 << 20) + b"y"}
    data = message_bytes(obj)
    got = picklex.read_message(io.BytesIO(data))
    assert np.array_equal(got["big"], big) and got["inband"] == obj["inband"]
    assert np.array_equal(got["small"], obj["small"])
    del got
    keeper = KeepingReader(data)  # memory that cannot grow in place while views of it live
    got = picklex.read_message(keeper)
    assert np.array_equal(got["big"], big) and got["inband"] == obj["inband"]
    assert len(keeper.kept) > 2
    del got, keeper
    pool = picklex.BufferPool()
    for round_ in range(2):
        with connected() as (a, b):
            sender = Sender(lambda: a.sendall(data))
            sender.start()
            got = picklex.recv(b, pool=pool)
            sender.join()
        assert np.array_equal(got["big"], big) and got["inband"] == obj["inband"]
        assert address(got["big"]) % ALIGN == 0
        assert (pool.hits, pool.misses) == ((0, 2) if round_ == 0 else (2, 2))  # stream, big
        del got
        gc.collect()


def test_max_message_size_is_enforced_exactly() -> None:
    array = np.arange(1000, dtype=np.uint16)
    data = message_bytes(array)
    assert np.array_equal(picklex.read_message(io.BytesIO(data), max_message_size=len(data)), array)
    expect_message_error(data, "exceeds max_message_size", max_message_size=len(data) - 1)
    assert picklex.DEFAULT_MAX_MESSAGE_SIZE == 1 << 32


def test_stream_using_fewer_buffers_than_sent() -> None:
    stream = pickle.dumps(np.arange(3.0), 5, buffer_callback=lambda b: False)
    extra = np.arange(3.0).tobytes()
    table = _framing.ENTRY.pack(24, 0) * 2
    payload = len(stream) + 48
    data = raw_header(count=2, stream_length=len(stream), payload_length=payload, table=table)
    expect_message_error(data + stream + extra + extra, "fewer buffers")


def test_garbage_pickle_stream_is_an_unpickling_error() -> None:
    junk = b"\x80\x05\xff\xfe garbage"
    data = raw_header(stream_length=len(junk), payload_length=len(junk)) + junk
    with pytest.raises(pickle.UnpicklingError):
        picklex.read_message(io.BytesIO(data))


def test_header_layout_is_as_documented() -> None:
    data = message_bytes([np.arange(2, dtype=np.int8), "s"])
    magic, version, flags, reserved, count, stream_length, payload, _crc = struct.unpack_from(
        "<4sBBHIQQI", data
    )
    assert (magic, version, flags, reserved, count) == (b"PKXM", 1, 0, 0, 1)
    length, entry_flags = struct.unpack_from("<QB", data, 32)
    assert (length, entry_flags) == (2, 0)
    assert payload == stream_length + 2 and len(data) == 32 + 16 + payload
    stream = data[48 : 48 + stream_length]
    assert pickle.loads(stream, buffers=[data[48 + stream_length :]])[1] == "s"


# ------------------------------------------------------------------------------- BufferPool


def test_pool_reuses_memory_once_the_objects_are_gone() -> None:
    pool = picklex.BufferPool()
    sent = np.arange(1 << 13, dtype=np.float64)  # 64 KiB: fits the socket buffer
    with connected() as (a, b):
        picklex.send(a, sent)
        first = picklex.recv(b, pool=pool)
        first_address = address(first)
        assert np.array_equal(first, sent) and pool.misses == 1 and pool.hits == 0
        del first
        gc.collect()
        assert pool.reserved_bytes >= sent.nbytes
        picklex.send(a, sent * 2)
        second = picklex.recv(b, pool=pool)
        assert pool.hits == 1 and address(second) == first_address
        assert np.array_equal(second, sent * 2) and address(second) % ALIGN == 0


def test_pool_never_reuses_memory_still_in_use() -> None:
    pool = picklex.BufferPool()
    stream = io.BytesIO()
    for value in range(4):
        picklex.write_message(stream, np.full(1 << 14, value, dtype=np.int64))
    stream.seek(0)
    kept = [picklex.read_message(stream, pool=pool) for _ in range(2)]
    view = kept[1][100:200]  # a derived view is a user too
    del kept[1]
    gc.collect()
    kept.append(picklex.read_message(stream, pool=pool))
    kept.append(picklex.read_message(stream, pool=pool))
    assert pool.hits == 0 and pool.misses == 4
    assert [int(k[0]) for k in kept] == [0, 2, 3] and np.all(view == 1)
    addresses = {address(k) for k in kept} | {address(view) - 100 * 8}
    assert len(addresses) == 4


def test_pool_budget() -> None:
    pool = picklex.BufferPool(max_bytes=0)
    data = message_bytes(np.ones(1 << 14))
    for _ in range(3):
        got = picklex.read_message(io.BytesIO(data), pool=pool)
        del got
        gc.collect()
        assert pool.reserved_bytes == 0
    assert pool.hits == 0 and pool.misses == 3


# ------------------------------------------------------------------------------- properties

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

ARRAYS = hnp.arrays(
    st.one_of(hnp.integer_dtypes(endianness="="), hnp.floating_dtypes(endianness="=")),
    hnp.array_shapes(min_dims=0, max_dims=3, max_side=50),
)


@settings(max_examples=40, deadline=None)
@given(
    arrays=st.lists(ARRAYS, max_size=6),
    extra=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.binary(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
        max_leaves=10,
    ),
)
def test_messages_round_trip_property(arrays: list[np.ndarray], extra: Any) -> None:
    obj = {"arrays": arrays, "extra": extra}
    data = message_bytes(obj)
    got = picklex.read_message(io.BytesIO(data))
    assert got["extra"] == extra
    assert len(got["arrays"]) == len(arrays)
    for received, sent in zip(got["arrays"], arrays):
        assert received.dtype == sent.dtype and received.shape == sent.shape
        np.testing.assert_array_equal(received, sent)
    with connected() as (a, b):
        sender = Sender(lambda: a.sendall(data))  # may exceed the socket buffer
        sender.start()
        assert picklex.recv(b)["extra"] == extra
        sender.join()


@pytest.mark.slow
def test_one_gib_array_over_a_unix_socket() -> None:
    big = np.ones(1 << 27)  # 1 GiB
    received = over_socket(big)
    assert received.nbytes == 1 << 30 and address(received) % ALIGN == 0
    assert received[-1] == 1.0 and received.sum() == float(1 << 27)
