"""picklex.shm: objects through shared memory, one-shot messages and owned shares.

Everything is real: memfd segments, the broker thread, child processes (``subprocess`` with
their own interpreters) that load, share, die or get killed. Zero copy is asserted by where the
received arrays' memory lives (a mapping of the segment, found in /proc/self/maps with the
inode the handle names, or a mapping the test opens itself), never by timing. Leaks are
looked for everywhere a segment can hide: every process's descriptors and mappings, the
kernel's Shmem count, and /dev/shm.
"""

from __future__ import annotations

import gc
import mmap
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import picklex
import picklex.shm as shm
import pytest
from picklex import _shm_broker, _shm_handle, _shm_segment
from picklex._shm_runtime import ENV, RUNTIME

pytestmark = pytest.mark.skipif(not shm.available(), reason="needs Linux memfd_create")

PACKAGE_PATH = str(Path(picklex.__file__).parent.parent)
MIB = 1 << 20
TIMEOUT = 60.0


# ------------------------------------------------------------------------------- helpers


def segment_of(array: np.ndarray) -> tuple[str, int] | None:
    """(name, inode) of the picklex memfd mapping that holds all of ``array``'s bytes.

    None when the bytes are anywhere else (heap, anonymous memory, another file). Read from
    /proc/self/maps, independently of picklex's own bookkeeping.
    """
    start = array.__array_interface__["data"][0]
    end = start + array.nbytes
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            low, high = (int(x, 16) for x in fields[0].split("-"))
            if low <= start and end <= high:
                path = fields[5].strip() if len(fields) > 5 else ""
                if "memfd:" + _shm_segment.NAME_PREFIX in path:
                    return path, int(fields[4])
                return None
    return None


def mapping_of(obj: Any) -> _shm_segment.Mapping | None:
    """Walk an array's base chain (arrays, memoryviews) down to the segment mapping."""
    seen = 0
    while obj is not None and seen < 32:
        if isinstance(obj, _shm_segment.Mapping):
            return obj
        obj = getattr(obj, "base", None) if not isinstance(obj, memoryview) else obj.obj
        seen += 1
    return None


def assert_in_segment(array: np.ndarray, inode: int | None = None) -> None:
    """``array`` is a view of a picklex segment: maps, base chain and shared memory agree."""
    found = segment_of(array)
    assert found is not None, "array memory is not a mapping of a picklex segment"
    if inode is not None:
        assert found[1] == inode
    mapping = mapping_of(array)
    assert mapping is not None and mapping.inode == found[1]
    assert np.shares_memory(array, np.asarray(mapping))


def mapped_inodes() -> set[int]:
    """Inodes of every picklex segment mapped in this process."""
    inodes = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            if "memfd:" + _shm_segment.NAME_PREFIX in line:
                inodes.add(int(line.split()[4]))
    return inodes


def holders(tag: str) -> dict[int, int]:
    """pid -> descriptors plus mappings, in every process, of memfds whose name has ``tag``."""
    found: dict[int, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        count = 0
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    if tag in os.readlink(f"/proc/{pid}/fd/{fd}"):
                        count += 1
                except OSError:
                    pass
            with open(f"/proc/{pid}/maps") as maps:
                count += sum(tag in line for line in maps)
        except OSError:
            continue
        if count:
            found[int(pid)] = count
    return found


def shmem_bytes() -> int:
    """The kernel's count of shared memory in use (memfd and tmpfs pages), in bytes."""
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("Shmem:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no Shmem line in /proc/meminfo")


def dev_shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def wait_until(condition: Any, timeout: float = 20.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def assert_memory_returns(
    before: int, allocated: int, peak: int | None = None, timeout: float = 20.0
) -> None:
    """Shmem falls back to within a quarter of ``allocated`` of ``before``, or by at least
    three quarters of ``allocated`` from ``peak`` (measured while the segments were held).

    Shmem counts the whole machine and other programs may use shared memory meanwhile, hence
    the margins and the two ways to pass; the descriptor and mapping scans are the exact check.
    """

    def returned() -> bool:
        now = shmem_bytes()
        return now - before < allocated // 4 or (
            peak is not None and peak - now >= allocated * 3 // 4
        )

    ok = wait_until(returned, timeout)
    assert ok, f"Shmem grew by {(shmem_bytes() - before) / MIB:.0f} MiB and stayed"


def child_env(*, inherit_broker: bool) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=PACKAGE_PATH + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if inherit_broker:
        RUNTIME.home_link()  # make sure this process has a broker whose address children see
        env[ENV] = RUNTIME.home or ""
    else:
        env.pop(ENV, None)
    return env


def python(code: str, *, inherit_broker: bool = True, **popen: Any) -> subprocess.Popen:
    """A child interpreter running ``code``; stdin/stdout are pipes unless told otherwise."""
    popen.setdefault("stdin", subprocess.PIPE)
    popen.setdefault("stdout", subprocess.PIPE)
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=child_env(inherit_broker=inherit_broker),
        **popen,
    )


def read_line(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline()
    assert line, f"child exited early with {proc.wait(TIMEOUT)}"
    return line.decode().strip()


@contextmanager
def killed_at_end(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(TIMEOUT)


def big(n_bytes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n_bytes // 8)


def settle() -> None:
    """Let finalizers and the broker catch up (release notifications are asynchronous)."""
    gc.collect()
    stats = shm.stats()  # a round trip on the home connection: earlier notifications are done
    del stats


def quiesce() -> None:
    """settle(), then drop the spare segments our broker keeps, so Shmem shows only the rest."""
    settle()
    shm.trim()


def books() -> dict[str, int]:
    """The broker's messages and shares (spares come and go with reuse and idling)."""
    stats = shm.stats()
    return {key: stats[key] for key in ("messages", "message_bytes", "shared", "shared_bytes")}


# ------------------------------------------------------------------------ one-shot messages


def test_message_round_trip_is_zero_copy() -> None:
    arrays = {"f8": big(8 * MIB), "i4": np.arange(MIB, dtype=np.int32).reshape(1024, 1024)}
    data = shm.dumps(arrays)
    assert len(data) < 300
    received = shm.loads(data)
    for key, sent in arrays.items():
        np.testing.assert_array_equal(received[key], sent)
        assert received[key].dtype == sent.dtype and received[key].shape == sent.shape
        assert received[key].flags.writeable
        assert received[key].__array_interface__["data"][0] % 64 == 0
        assert_in_segment(received[key])
    # Both arrays are views of one segment.
    assert mapping_of(received["f8"]) is mapping_of(received["i4"])


def test_message_handle_names_the_mapped_segment() -> None:
    data = shm.dumps(big(4 * MIB))
    packed = _message_handle(data)
    handle = _shm_handle.unpack(packed)
    assert handle.kind == _shm_broker.MESSAGE and handle.pid == os.getpid()
    received = shm.loads(data)
    assert_in_segment(received, handle.inode)
    assert handle.size >= received.nbytes


def _message_handle(data: bytes) -> bytes:
    """The packed handle inside a message pickle, read without loading it."""
    import pickletools

    for opcode, arg, _pos in pickletools.genops(data):
        if opcode.name in ("SHORT_BINBYTES", "BINBYTES") and len(arg) == _shm_handle.LAYOUT.size:
            return arg
    raise AssertionError("no handle in message")


def test_message_loads_once_then_raises() -> None:
    settle()
    before = shm.stats()
    data = shm.dumps(big(2 * MIB))
    assert shm.stats()["messages"] == before["messages"] + 1
    shm.loads(data)
    assert shm.stats()["messages"] == before["messages"]
    with pytest.raises(shm.SegmentGoneError, match="already loaded"):
        shm.loads(data)
    assert issubclass(shm.SegmentGoneError, pickle.UnpicklingError)


def test_stdlib_pickle_loads_a_message() -> None:
    sent = big(2 * MIB, seed=3)
    received = pickle.loads(shm.dumps(sent))
    np.testing.assert_array_equal(received, sent)
    assert_in_segment(received)


def test_small_objects_stay_ordinary_pickles() -> None:
    settle()
    before = books()
    for obj in (1, "x" * 100, {"a": [1, 2, 3]}, np.arange(100), bytearray(1000)):
        data = shm.dumps(obj)
        assert data == picklex.dumps(obj, 5)
    assert books() == before


def test_threshold_splits_buffers() -> None:
    small, large = np.arange(1000, dtype=np.float64), big(MIB)
    received = shm.loads(shm.dumps([small, large], threshold=64 << 10))
    np.testing.assert_array_equal(received[0], small)
    np.testing.assert_array_equal(received[1], large)
    assert segment_of(received[0]) is None  # in band: its own memory
    assert_in_segment(received[1])


def test_mid_sized_messages_stay_in_band() -> None:
    """Buffers of 64 KiB or more adding up to less than the threshold: in band, one copy."""
    settle()
    before = books()
    frozen = big(128 << 10, seed=1)
    frozen.flags.writeable = False
    sent = [big(256 << 10), frozen, np.arange(10)]
    data = shm.dumps(sent)
    assert (256 << 10) + (128 << 10) < len(data) < shm.DEFAULT_THRESHOLD
    received = pickle.loads(data)
    for got, want in zip(received, sent):
        np.testing.assert_array_equal(got, want)
        assert segment_of(got) is None
    assert received[0].flags.writeable and not received[1].flags.writeable
    assert books() == before
    # The same buffers over the threshold do go through a segment.
    assert_in_segment(shm.loads(shm.dumps(sent, threshold=256 << 10))[0])


def test_large_stream_without_buffers_goes_through_a_segment() -> None:
    settle()
    obj = {"blob": os.urandom(2 * MIB), "list": list(range(100_000))}
    data = shm.dumps(obj)
    assert len(data) < 300
    assert shm.loads(data) == obj


def test_read_only_buffers_stay_read_only() -> None:
    frozen = big(MIB)
    frozen.flags.writeable = False
    data = shm.dumps([frozen, pickle.PickleBuffer(bytearray(b"w" * MIB))])
    received = shm.loads(data)
    assert not received[0].flags.writeable
    np.testing.assert_array_equal(received[0], frozen)
    # An out-of-band PickleBuffer loads as the buffer the receiver supplied: a view of the segment.
    assert not memoryview(received[1]).readonly
    assert bytes(received[1]) == b"w" * MIB


def test_writes_to_a_received_array_stay_private() -> None:
    received = shm.loads(shm.dumps(big(MIB)))
    received[:] = 5.0
    assert (received == 5.0).all()


def test_mapping_goes_with_the_last_array() -> None:
    received = shm.loads(shm.dumps([big(MIB), big(MIB, seed=1)]))
    inode = segment_of(received[0])[1]
    first, second = received
    del received
    assert inode in mapped_inodes()
    del first
    gc.collect()
    assert inode in mapped_inodes()  # second still uses it
    del second
    gc.collect()
    assert inode not in mapped_inodes()


def test_many_live_messages_hold_no_descriptors() -> None:
    fds_before = len(os.listdir("/proc/self/fd"))
    received = [
        shm.loads(shm.dumps(np.full(64 << 10, i % 256, dtype=np.uint8), threshold=0))
        for i in range(1500)
    ]
    # Only the first few keep a descriptor, for reusing their segment once they are dropped.
    assert len(os.listdir("/proc/self/fd")) - fds_before <= _shm_segment.MAX_KEPT + 20
    assert all(int(r[0]) == i % 256 for i, r in enumerate(received))
    del received


def test_many_round_trips_do_not_grow() -> None:
    quiesce()
    sent = big(2 * MIB)
    for _ in range(20):
        shm.loads(shm.dumps(sent))
    settle()
    # The broker runs in this process: its spare segments are descriptors here too.
    fds = len(os.listdir("/proc/self/fd")) - shm.stats()["spares"]
    maps = len(mapped_inodes())
    stats = books()
    shmem = shmem_bytes()
    for _ in range(300):
        received = shm.loads(shm.dumps(sent))
        assert received[7] == sent[7]
    del received
    settle()
    assert len(os.listdir("/proc/self/fd")) - shm.stats()["spares"] == fds
    assert len(mapped_inodes()) == maps
    assert books() == stats
    assert shm.stats()["spares"] <= 2  # one segment went round and round
    assert shmem_bytes() - shmem < 200 * MIB  # 300 x 2 MiB went through; none stayed


def test_threads_send_and_receive_at_once() -> None:
    """Several threads of one process (the broker's) share its books and connections."""
    import threading

    settle()
    before = books()
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            sent = big(2 * MIB, seed)
            for _ in range(25):
                received = shm.loads(shm.dumps(sent))
                assert received[11] == sent[11] and received[-1] == sent[-1]
                with shm.share(sent) as handle:
                    assert handle.load()[5] == sent[5]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert not errors, errors[0]
    settle()
    assert books() == before


def test_over_budget_falls_back_in_band() -> None:
    RUNTIME.home_link()
    broker = RUNTIME.broker
    if broker is None:
        pytest.skip("this process's broker lives elsewhere")
    saved = broker.max_pending_bytes
    broker.max_pending_bytes = MIB
    try:
        frozen = big(2 * MIB)
        frozen.flags.writeable = False
        sent = [big(2 * MIB), frozen]
        data = shm.dumps(sent)
        assert len(data) > 4 * MIB  # the buffers went into the pickle
        received = pickle.loads(data)
    finally:
        broker.max_pending_bytes = saved
    np.testing.assert_array_equal(received[0], sent[0])
    np.testing.assert_array_equal(received[1], sent[1])
    assert received[0].flags.writeable and not received[1].flags.writeable
    assert segment_of(received[0]) is None


def test_dispatch_table_is_used() -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

    table = {Point: lambda p: (int, (p.x,))}
    assert shm.loads(shm.dumps([Point(4), big(MIB)], dispatch_table=table))[0] == 4


def test_pandas_dataframe_blocks_are_views() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": np.arange(MIB, dtype=np.float64), "b": np.arange(MIB), "c": "x"})
    received = shm.loads(shm.dumps(frame))
    pd.testing.assert_frame_equal(received, frame)
    assert_in_segment(received["a"].to_numpy())
    assert_in_segment(received["b"].to_numpy())


def test_damaged_handles_are_refused() -> None:
    packed = bytearray(_message_handle(shm.dumps(big(MIB))))
    for index in (0, 4, 10, 30, 60, 95):
        damaged = bytearray(packed)
        damaged[index] ^= 0x40
        with pytest.raises(picklex.MessageError):
            shm._load_message(bytes(damaged))
    with pytest.raises(picklex.MessageError):
        shm._load_message(bytes(packed[:50]))
    shm._load_message(bytes(packed))  # the intact one still loads


# --------------------------------------------------------------------------- spare segments


def test_spare_segments_are_reused() -> None:
    quiesce()
    sent = big(4 * MIB)
    received = shm.loads(shm.dumps(sent))
    inode = segment_of(received)[1]
    del received
    settle()
    assert shm.stats()["spares"] == 1  # the receiver gave the segment back
    again = shm.loads(shm.dumps(sent + 1))
    assert shm.stats()["spares"] == 0
    assert segment_of(again)[1] == inode  # same memory, new contents
    np.testing.assert_array_equal(again, sent + 1)


def test_no_reuse_of_memory_a_forked_child_still_maps() -> None:
    quiesce()
    sent = big(4 * MIB, seed=5)
    received = shm.loads(shm.dumps(sent))
    inode = segment_of(received)[1]
    go, ready = os.pipe()
    answer_read, answer_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child: keeps its inherited copy, checks it later
        try:
            os.read(go, 1)
            same = bool(np.array_equal(received, sent))
            del received
            gc.collect()  # the child's copy dies: must not be given back either
            os.write(answer_write, b"same" if same else b"changed")
        finally:
            os._exit(0)
    try:
        del received
        settle()
        assert shm.stats()["spares"] == 0  # alive across a fork: never reused
        other = shm.loads(shm.dumps(np.zeros_like(sent)))
        assert segment_of(other)[1] != inode
        os.write(ready, b"x")
        assert os.read(answer_read, 100) == b"same"
    finally:
        os.waitpid(pid, 0)
        for fd in (go, ready, answer_read, answer_write):
            os.close(fd)
    settle()
    assert shm.stats()["spares"] == 0


def test_spare_budget_and_idle_drop(monkeypatch: pytest.MonkeyPatch) -> None:
    quiesce()
    RUNTIME.home_link()
    if RUNTIME.broker is None:
        pytest.skip("this process's broker lives elsewhere")
    monkeypatch.setattr(RUNTIME.broker, "max_spare_bytes", 5 * MIB)
    held = [shm.loads(shm.dumps(big(2 * MIB, seed))) for seed in range(4)]
    del held
    settle()
    stats = shm.stats()
    assert stats["spares"] == 2 and stats["spare_bytes"] <= 5 * MIB
    monkeypatch.setattr(_shm_broker, "SPARE_IDLE_SECONDS", 0.2)
    RUNTIME.broker.wake()  # so that it waits with the short timeout from now on
    assert wait_until(lambda: shm.stats()["spares"] == 0, timeout=10)


def test_recycle_while_the_books_are_locked_is_queued() -> None:
    """A finalizer may run while its thread holds the broker's lock: it must not deadlock."""
    quiesce()
    RUNTIME.home_link()
    if RUNTIME.broker is None:
        pytest.skip("this process's broker lives elsewhere")
    received = shm.loads(shm.dumps(big(2 * MIB)))
    books_lock = RUNTIME.broker.books.lock
    with books_lock:
        del received
        gc.collect()  # the mapping's finalizer runs here, on this thread, lock held
        assert len(RUNTIME.broker.books.deferred) == 1
    assert shm.stats()["spares"] == 1  # applied by the next operation


def test_configure_checks_its_arguments() -> None:
    with pytest.raises(ValueError):
        shm.configure(max_spare_bytes=-1)


# ------------------------------------------------------------------------------ owned shares


def test_share_loads_many_times_then_closes() -> None:
    sent = big(4 * MIB)
    with shm.share({"x": sent, "n": 3}) as handle:
        assert handle.owner and not handle.closed
        assert len(pickle.dumps(handle)) < 200
        first = handle.load()
        second = pickle.loads(pickle.dumps(handle)).load()
        np.testing.assert_array_equal(first["x"], sent)
        assert first["n"] == second["n"] == 3
        assert_in_segment(first["x"])
        assert segment_of(first["x"])[1] == segment_of(second["x"])[1]
        first["x"][0] = -1.0  # copy-on-write: the other load does not see it
        assert second["x"][0] == sent[0]
    assert handle.closed
    with pytest.raises(shm.SegmentGoneError):
        handle.load()
    with pytest.raises(shm.SegmentGoneError, match="closed"):
        pickle.loads(pickle.dumps(handle)).load()
    np.testing.assert_array_equal(second["x"], sent)  # loaded objects outlive the close


def test_share_mapping_opened_independently() -> None:
    """A mapping the test opens itself sees the writes made through a shared load."""
    with shm.share(np.zeros(MIB // 8)) as handle:
        fd = shm._claim(handle._handle)
        try:
            mine = mmap.mmap(fd, handle.nbytes)
        finally:
            os.close(fd)
        loaded = handle.load(shared=True)
        private = handle.load()
        loaded[:] = 7.5
        mine_as_floats = np.frombuffer(mine, dtype=np.uint8)
        assert np.shares_memory(loaded, np.asarray(mapping_of(loaded)))
        pattern = np.full(4, 7.5).tobytes()
        assert bytes(mine).count(pattern) >= loaded.size // 4
        assert (private == 0).all() or (private == 7.5).all()  # untouched pages follow the file
        private[0] = 1.0
        assert loaded[0] == 7.5
        del mine_as_floats, loaded, private
        mine.close()


def test_shared_writes_reach_another_process() -> None:
    with shm.share(np.zeros(MIB // 8)) as handle:
        mine = handle.load(shared=True)
        code = """
            import pickle, sys
            handle = pickle.loads(sys.stdin.buffer.read())
            array = handle.load(shared=True)
            array[:] = 3.25
            print("written", flush=True)
        """
        with killed_at_end(python(code)) as proc:
            proc.stdin.write(pickle.dumps(handle))
            proc.stdin.close()
            assert read_line(proc) == "written"
            assert proc.wait(TIMEOUT) == 0
        assert (mine == 3.25).all()


def test_handle_loaded_in_spawned_children() -> None:
    sent = big(8 * MIB, seed=9)
    code = """
        import pickle, sys
        import numpy as np
        handle = pickle.loads(sys.stdin.buffer.read())
        obj = handle.load()
        print(float(obj.sum()), obj.shape[0], flush=True)
    """
    with shm.share(sent) as handle:
        procs = [python(code) for _ in range(3)]
        for proc in procs:
            with killed_at_end(proc):
                proc.stdin.write(pickle.dumps(handle))
                proc.stdin.close()
                total, length = read_line(proc).split()
                assert float(total) == pytest.approx(float(sent.sum()))
                assert int(length) == sent.shape[0]
                assert proc.wait(TIMEOUT) == 0


def test_owner_garbage_collected_releases() -> None:
    settle()
    before = shm.stats()["shared"]
    handle = shm.share(big(MIB))
    reference = pickle.loads(pickle.dumps(handle))
    assert shm.stats()["shared"] == before + 1
    del handle
    settle()
    assert shm.stats()["shared"] == before
    with pytest.raises(shm.SegmentGoneError):
        reference.load()
    assert not reference.owner


def test_share_needs_protocol_5() -> None:
    with pytest.raises(ValueError):
        shm.share(b"x", protocol=4)


# -------------------------------------------------------------------- processes and brokers


def test_foreign_broker_of_an_unrelated_process() -> None:
    """A process with no inherited broker starts its own; we load from it."""
    code = """
        import pickle, sys
        import numpy as np
        import picklex.shm as shm
        handle = shm.share(np.arange(1 << 18, dtype=np.int64))
        sys.stdout.buffer.write(pickle.dumps(handle).hex().encode() + b"\\n")
        sys.stdout.flush()
        sys.stdin.readline()
    """
    with killed_at_end(python(code, inherit_broker=False)) as proc:
        handle = pickle.loads(bytes.fromhex(read_line(proc)))
        assert handle._handle.address != RUNTIME.home
        loaded = handle.load()
        np.testing.assert_array_equal(loaded, np.arange(1 << 18))
        assert_in_segment(loaded)
        proc.stdin.write(b"done\n")
        proc.stdin.close()
        assert proc.wait(TIMEOUT) == 0
    np.testing.assert_array_equal(loaded[:5], np.arange(5))  # outlives its creator
    with pytest.raises(shm.SegmentGoneError, match="exited"):
        handle.load()


def test_message_outlives_its_sender() -> None:
    """A child deposits into our broker, writes the message and exits: it still loads."""
    code = """
        import os, signal, sys
        import numpy as np
        import picklex.shm as shm
        data = shm.dumps(np.arange(1 << 20, dtype=np.float64))
        sys.stdout.buffer.write(data.hex().encode() + b"\\n")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    """
    proc = python(code)
    data = bytes.fromhex(read_line(proc))
    assert proc.wait(TIMEOUT) == -signal.SIGKILL
    received = shm.loads(data)
    np.testing.assert_array_equal(received, np.arange(1 << 20, dtype=np.float64))
    assert_in_segment(received)


def test_forked_child_holds_none_of_the_brokers_descriptors() -> None:
    RUNTIME.home_link()
    pending = shm.dumps(big(MIB))  # the broker holds this segment now
    with shm.share(big(MIB)) as handle:
        tag = "memfd:" + _shm_segment.NAME_PREFIX
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.close(read)
                mine = sum(
                    tag in os.readlink(f"/proc/self/fd/{fd}")
                    for fd in os.listdir("/proc/self/fd")
                    if os.path.exists(f"/proc/self/fd/{fd}")
                )
                loaded = handle.load()
                ok = float(loaded[3]) == float(handle.load()[3])
                handle.close()  # not the owner here: must not release the parent's share
                os.write(write, f"{mine} {int(ok)}".encode())
            finally:
                os._exit(0)
        os.close(write)
        answer = os.read(read, 100).decode().split()
        os.close(read)
        os.waitpid(pid, 0)
        assert answer == ["0", "1"]
        assert handle.load() is not None  # the child's close() did nothing
    shm.loads(pending)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another user")
def test_other_users_are_refused() -> None:
    """The broker serves only its own user (SO_PEERCRED): a child turned 'nobody' is refused."""
    with shm.share(big(MIB)) as handle:
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.close(read)
                os.setgid(65534)
                os.setuid(65534)
                try:
                    handle.load()
                    answer = b"served"
                except shm.SegmentGoneError:
                    answer = b"refused"
                os.write(write, answer)
            finally:
                os._exit(0)
        os.close(write)
        answer = os.read(read, 100)
        os.close(read)
        os.waitpid(pid, 0)
        assert answer == b"refused"
        assert handle.load() is not None  # we, the same user, still are served


def test_broker_survives_bad_requests(tmp_path: Path) -> None:
    """Malformed packets, descriptors that are not segments, unknown tokens: clean answers."""
    quiesce()
    RUNTIME.home_link()
    raw = _shm_broker.Connection(RUNTIME.home)
    try:
        raw.sock.send(b"short")
        assert _shm_broker.REPLY.unpack(raw.sock.recv(100))[0] == _shm_broker.BAD
        status, _, fd = raw.call(_shm_broker.DEPOSIT, os.urandom(16), kind=_shm_broker.MESSAGE)
        assert status == _shm_broker.BAD and fd < 0  # no descriptor attached
        assert raw.call(_shm_broker.CLAIM, os.urandom(16))[0] == _shm_broker.GONE
        assert raw.call(99)[0] == _shm_broker.BAD
        with open(tmp_path / "plain", "wb+") as plain:
            plain.write(b"x" * 4096)
            raw.notify(_shm_broker.RECYCLE, size=4096, fd=plain.fileno())
        spares = raw.call(_shm_broker.STATS)[1][4]  # same connection: after the RECYCLE
        assert spares == 0  # a plain file is never kept, nor handed out as a segment
    finally:
        raw.close()
    np.testing.assert_array_equal(shm.loads(shm.dumps(big(MIB))), big(MIB))


# ------------------------------------------------------------------------------ no leaks


ROOT_SCRIPT = """
    import os, sys, threading, time
    import numpy as np
    import picklex.shm as shm
    mode = sys.argv[1]
    big = np.random.default_rng(0).random((64 << 20) // 8)
    keep = []
    if mode == "hold":
        keep.append(shm.share(big))                          # an owned share
        keep.append(shm.loads(shm.dumps(big + 1)))           # a received message, mapped
        keep.append(shm.dumps(big + 2))                      # a message never received
        print("ready", flush=True)
        time.sleep(600)
    elif mode == "create":
        def churn():
            while True:
                keep.append(shm.dumps(big))
                if len(keep) > 3:
                    shm.loads(keep.pop(0))
        threading.Thread(target=churn, daemon=True).start()
        time.sleep(0.5)
        print("ready", flush=True)
        time.sleep(600)
    elif mode == "exit":
        keep.append(shm.share(big))
        keep.append(shm.dumps(big))
        keep.append(shm.dumps(big))
        keep.append(shm.loads(shm.dumps(big)))
        print("ready", flush=True)
        sys.stdin.readline()
"""


@pytest.mark.parametrize("mode", ["hold", "create"])
def test_root_killed_leaves_nothing(mode: str) -> None:
    """SIGKILL a process tree root holding shares, mappings and unreceived messages."""
    shm_files = dev_shm()
    before = shmem_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(ROOT_SCRIPT), mode],
        env=child_env(inherit_broker=False),
        stdout=subprocess.PIPE,
    )
    with killed_at_end(proc):
        assert read_line(proc) == "ready"
        tag = f"memfd:{_shm_segment.NAME_PREFIX}{proc.pid}-"
        assert holders(tag), "the child should hold segments"
        peak = shmem_bytes()
        if mode == "hold":
            assert peak - before > 150 * MIB
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(TIMEOUT) == -signal.SIGKILL
    assert wait_until(lambda: not holders(tag)), holders(tag)
    assert_memory_returns(before, 192 * MIB if mode == "hold" else 64 * MIB, peak)
    assert dev_shm() == shm_files


def test_unreceived_messages_go_at_exit() -> None:
    shm_files = dev_shm()
    before = shmem_bytes()
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(ROOT_SCRIPT), "exit"],
        env=child_env(inherit_broker=False),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    with killed_at_end(proc):
        assert read_line(proc) == "ready"
        tag = f"memfd:{_shm_segment.NAME_PREFIX}{proc.pid}-"
        assert holders(tag)
        peak = shmem_bytes()
        assert peak - before > 200 * MIB
        proc.stdin.write(b"exit\n")
        proc.stdin.close()
        assert proc.wait(TIMEOUT) == 0
    assert wait_until(lambda: not holders(tag)), holders(tag)
    assert_memory_returns(before, 256 * MIB, peak)
    assert dev_shm() == shm_files


def test_killed_child_holding_segments_of_our_broker() -> None:
    """A child of our tree shares, maps our message, then is killed: its share is dropped."""
    quiesce()
    stats = books()
    before = shmem_bytes()
    sent = big(64 * MIB)
    message = shm.dumps(sent)
    code = """
        import pickle, sys, time
        import numpy as np
        import picklex.shm as shm
        received = shm.loads(bytes.fromhex(sys.stdin.readline()))
        handle = shm.share(received * 2)
        sys.stdout.buffer.write(pickle.dumps(handle).hex().encode() + b"\\n")
        sys.stdout.flush()
        time.sleep(600)
    """
    with killed_at_end(python(code)) as proc:
        proc.stdin.write(message.hex().encode() + b"\n")
        proc.stdin.flush()
        handle = pickle.loads(bytes.fromhex(read_line(proc)))
        assert shm.stats()["shared"] == stats["shared"] + 1
        loaded = handle.load()
        assert float(loaded[1]) == 2 * float(sent[1])
        assert_in_segment(loaded)
        del loaded
        tag = f"memfd:{_shm_segment.NAME_PREFIX}"
        child_holds = holders(tag).get(proc.pid, 0)
        assert child_holds >= 1  # the mapping of the message it received
        peak = shmem_bytes()
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(TIMEOUT) == -signal.SIGKILL
    assert wait_until(lambda: books() == stats)
    # Nobody holds what the child wrote (its share) or mapped (our message) any more.
    assert not holders(f"memfd:{_shm_segment.NAME_PREFIX}{os.getpid()}-{proc.pid} ")
    assert proc.pid not in holders(f"memfd:{_shm_segment.NAME_PREFIX}")
    with pytest.raises(shm.SegmentGoneError):
        handle.load()
    del sent
    quiesce()
    assert_memory_returns(before, 128 * MIB, peak)
