"""picklex.mp: multiprocessing's Pool, Queue, Pipe and ProcessPoolExecutor over shared memory.

Real child processes for every start method this system offers (fork, spawn, forkserver), real
numpy arrays and a pandas DataFrame. Zero copy is asserted where the data lands: a worker
reports whether the array it received is a mapping of a picklex segment (read from its own
/proc/self/maps), and the parent checks the arrays it gets back the same way. Leaks are looked
for in every process's descriptors and mappings, the broker's books and the kernel's Shmem.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.reduction import ForkingPickler
from typing import Any

import numpy as np
import picklex
import picklex.mp
import picklex.shm as shm
import pytest
from picklex import _shm_segment
from test_shm import (
    MIB,
    assert_in_segment,
    assert_memory_returns,
    books,
    child_env,
    dev_shm,
    holders,
    mapped_inodes,
    quiesce,
    read_line,
    segment_of,
    settle,
    shmem_bytes,
    wait_until,
)

pytestmark = pytest.mark.skipif(not shm.available(), reason="needs Linux memfd_create")

METHODS = [
    m for m in ("fork", "spawn", "forkserver") if m in multiprocessing.get_all_start_methods()
]
TIMEOUT = 120.0
TAG = "memfd:" + _shm_segment.NAME_PREFIX


@pytest.fixture(scope="module", autouse=True)
def installed() -> Iterator[None]:
    """The module runs installed; other test files see stock multiprocessing again."""
    picklex.mp.install()
    yield
    picklex.mp.uninstall()


@pytest.fixture(scope="module", params=METHODS)
def ctx(request: pytest.FixtureRequest) -> Any:
    return picklex.mp.get_context(request.param)


@pytest.fixture(scope="module")
def pool(ctx: Any) -> Iterator[Any]:
    with ctx.Pool(2) as workers:
        yield workers


# ------------------------------------------------------------------ work done in children


def array(n_bytes: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(n_bytes // 8)


def report(a: np.ndarray) -> tuple[bool, float, int]:
    """Was ``a`` received as a view of a segment; its sum; who looked."""
    return segment_of(a) is not None, float(a.sum()), os.getpid()


def report_and_double(a: np.ndarray) -> tuple[tuple[bool, float, int], np.ndarray]:
    return report(a), a * 2


def make(n_bytes: int, seed: int) -> np.ndarray:
    return array(n_bytes, seed)


def open_descriptors(_: Any = None) -> int:
    return len(os.listdir("/proc/self/fd"))


def queue_worker(inbox: Any, outbox: Any) -> None:
    while (item := inbox.get()) is not None:
        outbox.put((report(item), item + 1))


def pipe_worker(conn: Any) -> None:
    while (item := conn.recv()) is not None:
        conn.send((report(item), item + 1, open_descriptors()))


def connection_worker(queue: Any) -> None:
    conn = queue.get()  # a Connection pickled by multiprocessing's own reducer
    conn.send(array(4 * MIB, seed=5))
    conn.close()


def put_then_die(queue: Any) -> None:
    queue.put(array(8 * MIB, seed=7))
    queue.close()
    queue.join_thread()  # the message is in the pipe
    os.kill(os.getpid(), signal.SIGKILL)


def hold_then_wait(conn: Any) -> None:
    held = conn.recv()
    conn.send((segment_of(held) is not None, os.getpid()))
    time.sleep(600)


def frame_sum(frame: Any) -> tuple[bool, float]:
    column = frame["a"].to_numpy()
    return segment_of(column) is not None, float(column.sum())


# ------------------------------------------------------------------------------- Pool


def test_pool_map_in_and_out(pool: Any) -> None:
    inputs = [array(4 * MIB, seed) for seed in range(4)]
    results = pool.map(report_and_double, inputs)
    for sent, ((was_view, total, pid), doubled) in zip(inputs, results):
        assert was_view, "the worker's input was copied, not mapped"
        assert pid != os.getpid()
        assert total == pytest.approx(float(sent.sum()))
        np.testing.assert_array_equal(doubled, sent * 2)
        assert_in_segment(doubled)


def test_pool_apply_async_and_imap(pool: Any) -> None:
    future = pool.apply_async(make, (8 * MIB, 11))
    made = future.get(TIMEOUT)
    np.testing.assert_array_equal(made, array(8 * MIB, 11))
    assert_in_segment(made)
    inputs = [array(2 * MIB, seed) for seed in range(5)]
    for sent, (was_view, total, _pid) in zip(inputs, pool.imap(report, inputs)):
        assert was_view and total == pytest.approx(float(sent.sum()))
    unordered = sorted(total for _, total, _ in pool.imap_unordered(report, inputs))
    assert unordered == pytest.approx(sorted(float(a.sum()) for a in inputs))


def test_pool_small_items_keep_working(pool: Any) -> None:
    assert pool.map(abs, range(-50, 50)) == [abs(i) for i in range(-50, 50)]


def test_pool_dataframe(pool: Any) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": np.arange(MIB, dtype=np.float64), "b": np.arange(MIB)})
    was_view, total = pool.apply(frame_sum, (frame,))
    assert was_view and total == float(frame["a"].sum())
    back = pool.apply(pd.DataFrame.copy, (frame,))
    pd.testing.assert_frame_equal(back, frame)
    assert_in_segment(back["b"].to_numpy())


# ------------------------------------------------------------------- Queue, Pipe, Executor


def test_queue_both_directions(ctx: Any) -> None:
    inbox, outbox = ctx.Queue(), ctx.Queue()
    child = ctx.Process(target=queue_worker, args=(inbox, outbox))
    child.start()
    try:
        inputs = [array(4 * MIB, seed) for seed in range(3)]
        for item in inputs:
            inbox.put(item)
        for sent in inputs:
            (was_view, total, _pid), plus_one = outbox.get(timeout=TIMEOUT)
            assert was_view and total == pytest.approx(float(sent.sum()))
            np.testing.assert_array_equal(plus_one, sent + 1)
            assert_in_segment(plus_one)
        inbox.put(None)
    finally:
        child.join(TIMEOUT)
    assert child.exitcode == 0


def test_pipe_both_directions(ctx: Any) -> None:
    here, there = ctx.Pipe()
    child = ctx.Process(target=pipe_worker, args=(there,))
    child.start()
    try:
        sent = array(4 * MIB, seed=2)
        here.send(sent)
        (was_view, total, _pid), plus_one, _fds = here.recv()
        assert was_view and total == pytest.approx(float(sent.sum()))
        np.testing.assert_array_equal(plus_one, sent + 1)
        assert_in_segment(plus_one)
        here.send(None)
    finally:
        child.join(TIMEOUT)
    assert child.exitcode == 0


def test_process_pool_executor(ctx: Any) -> None:
    inputs = [array(4 * MIB, seed) for seed in range(3)]
    with ProcessPoolExecutor(2, mp_context=ctx) as executor:
        made = executor.submit(make, 8 * MIB, 3).result(TIMEOUT)
        np.testing.assert_array_equal(made, array(8 * MIB, 3))
        assert_in_segment(made)
        for sent, ((was_view, total, _pid), doubled) in zip(
            inputs, executor.map(report_and_double, inputs)
        ):
            assert was_view and total == pytest.approx(float(sent.sum()))
            np.testing.assert_array_equal(doubled, sent * 2)
            assert_in_segment(doubled)


def test_forking_pickler_reducers_still_apply(ctx: Any) -> None:
    """A Connection pickled through a Queue (multiprocessing's own reducer) still works."""
    queue = ctx.Queue()
    here, there = ctx.Pipe()
    child = ctx.Process(target=connection_worker, args=(queue,))
    child.start()
    try:
        queue.put(there)
        received = here.recv()
        np.testing.assert_array_equal(received, array(4 * MIB, seed=5))
        assert_in_segment(received)
    finally:
        child.join(TIMEOUT)
    assert child.exitcode == 0


def test_stock_context_child_receives_without_installing() -> None:
    """With install() only, a stock spawn child still unpickles what we send it."""
    stock = multiprocessing.get_context("spawn")
    with stock.Pool(1) as workers:
        sent = array(4 * MIB, seed=8)
        was_view, total, _pid = workers.apply(report, (sent,))
    assert was_view and total == pytest.approx(float(sent.sum()))


def test_stock_context_with_install_as_initializer() -> None:
    """Stock spawn workers that install() themselves deposit into this process's broker."""
    stock = multiprocessing.get_context("spawn")
    with stock.Pool(1, initializer=picklex.mp.install) as workers:
        made = workers.apply(make, (4 * MIB, 12))
    np.testing.assert_array_equal(made, array(4 * MIB, 12))
    name, _inode = segment_of(made)
    root = name.split(_shm_segment.NAME_PREFIX)[1].split("-")[0]
    assert root == str(os.getpid())  # found through PICKLEX_SHM_BROKER


# ------------------------------------------------------------------- what goes where


def test_small_messages_are_ordinary_pickles() -> None:
    settle()
    before = books()
    for obj in (None, 42, "text", {"k": [1.5, 2]}, np.arange(10), bytearray(1000)):
        data = ForkingPickler.dumps(obj)
        assert bytes(data) == picklex.dumps(obj, 5)
        assert pickle.loads(data) == obj if not isinstance(obj, np.ndarray) else True
    assert books() == before


class Registered:
    """A type given a reducer through ForkingPickler.register in the test below."""


def test_registered_reducers_are_seen_and_updated() -> None:
    try:
        ForkingPickler.register(Registered, lambda obj: (str, ("first",)))
        assert ForkingPickler.loads(ForkingPickler.dumps([Registered(), array(MIB)]))[0] == "first"
        ForkingPickler.register(Registered, lambda obj: (str, ("second",)))  # same key, new value
        assert ForkingPickler.loads(ForkingPickler.dumps(Registered())) == "second"
    finally:
        ForkingPickler._extra_reducers.pop(Registered, None)
    assert isinstance(ForkingPickler.loads(ForkingPickler.dumps(Registered())), Registered)


def test_large_messages_are_small_on_the_pipe() -> None:
    data = ForkingPickler.dumps([array(4 * MIB)])
    assert len(data) < 300
    received = ForkingPickler.loads(data)
    assert_in_segment(received[0])


def test_explicit_old_protocol_is_stock() -> None:
    obj = [array(MIB), "x"]
    data = ForkingPickler.dumps(obj, 4)
    assert len(data) > MIB
    assert pickle.loads(data)[1] == "x"


def test_threshold_setting() -> None:
    saved = picklex.mp.threshold()
    try:
        picklex.mp.install(threshold=16 * MIB)
        assert len(ForkingPickler.dumps(array(4 * MIB))) > 4 * MIB
        picklex.mp.install(threshold=1024)
        data = ForkingPickler.dumps(np.arange(1000, dtype=np.float64))
        assert len(data) < 300
        assert_in_segment(ForkingPickler.loads(data))
    finally:
        picklex.mp.install(threshold=saved)
    with pytest.raises(ValueError):
        picklex.mp.install(threshold=-1)


def test_uninstall_restores_stock() -> None:
    picklex.mp.uninstall()
    try:
        assert not picklex.mp.installed()
        assert ForkingPickler.loads is pickle.loads
        data = ForkingPickler.dumps(array(MIB))
        assert len(data) > MIB
    finally:
        picklex.mp.install()
    assert picklex.mp.installed()
    data = ForkingPickler.dumps(array(MIB))
    assert len(data) < 300
    assert_in_segment(ForkingPickler.loads(data))


# ------------------------------------------------------------------ lifetimes and leaks


def test_message_survives_its_sender_killed(ctx: Any) -> None:
    queue = ctx.Queue()
    child = ctx.Process(target=put_then_die, args=(queue,))
    child.start()
    child.join(TIMEOUT)
    assert child.exitcode == -signal.SIGKILL
    received = queue.get(timeout=TIMEOUT)
    np.testing.assert_array_equal(received, array(8 * MIB, seed=7))
    assert_in_segment(received)


def test_child_killed_holding_a_segment(ctx: Any) -> None:
    quiesce()
    stats = books()
    before = shmem_bytes()
    here, there = ctx.Pipe()
    child = ctx.Process(target=hold_then_wait, args=(there,))
    child.start()
    try:
        here.send(array(64 * MIB, seed=1))
        was_view, pid = here.recv()
        assert was_view
        assert holders(TAG).get(pid, 0) >= 1
        peak = shmem_bytes()
        os.kill(pid, signal.SIGKILL)
        child.join(TIMEOUT)
    finally:
        if child.is_alive():
            child.kill()
    assert child.exitcode == -signal.SIGKILL
    assert wait_until(lambda: pid not in holders(TAG))
    assert books() == stats
    quiesce()
    assert_memory_returns(before, 64 * MIB, peak)


def test_many_round_trips_do_not_grow(ctx: Any) -> None:
    here, there = ctx.Pipe()
    child = ctx.Process(target=pipe_worker, args=(there,))
    child.start()
    try:
        sent = array(MIB, seed=4)
        child_fds = []
        for _ in range(10):
            here.send(sent)
            child_fds.append(here.recv()[2])
        settle()
        # The broker runs in this process: its spare segments are descriptors here too.
        fds = open_descriptors() - shm.stats()["spares"]
        maps, stats = len(mapped_inodes()), books()
        for _ in range(150):
            here.send(sent)
            (was_view, _total, _pid), plus_one, child_fd_count = here.recv()
            assert was_view and plus_one[3] == sent[3] + 1
            child_fds.append(child_fd_count)
        del plus_one
        settle()
        assert open_descriptors() - shm.stats()["spares"] == fds
        assert len(mapped_inodes()) == maps
        assert books() == stats
        assert max(child_fds[10:]) == min(child_fds[10:])
        here.send(None)
    finally:
        child.join(TIMEOUT)


UNRECEIVED_SCRIPT = """
    import sys
    import numpy as np
    import picklex.mp

    def put(queue):
        for seed in range(3):
            queue.put(np.random.default_rng(seed).random((32 << 20) // 8))

    if __name__ == "__main__":
        ctx = picklex.mp.get_context(sys.argv[1])
        queue = ctx.Queue()
        child = ctx.Process(target=put, args=(queue,))
        child.start()
        child.join()
        print("sent", flush=True)
        sys.stdin.readline()
        queue.cancel_join_thread()
"""


@pytest.mark.parametrize("method", METHODS)
def test_unreceived_messages_go_with_the_root(tmp_path: Any, method: str) -> None:
    """Messages nobody gets are held by the root's broker until it exits, then freed."""
    script = tmp_path / "unreceived.py"
    script.write_text(textwrap.dedent(UNRECEIVED_SCRIPT))
    shm_files = dev_shm()
    before = shmem_bytes()
    proc = subprocess.Popen(
        [sys.executable, str(script), method],
        env=child_env(inherit_broker=False),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert read_line(proc) == "sent"
        tag = f"{TAG}{proc.pid}-"
        assert holders(tag).get(proc.pid, 0) == 3  # the broker holds the three messages
        peak = shmem_bytes()
        proc.stdin.write(b"exit\n")
        proc.stdin.close()
        assert proc.wait(TIMEOUT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
    assert wait_until(lambda: not holders(tag))
    assert_memory_returns(before, 96 * MIB, peak)
    assert dev_shm() == shm_files


# ------------------------------------------------------------------------------ heavy


@pytest.mark.slow
@pytest.mark.parametrize("n_bytes", [100 * MIB, 500 * MIB])
def test_large_arrays_through_the_pool(pool: Any, n_bytes: int) -> None:
    sent = array(n_bytes, seed=6)
    (was_view, total, _pid), doubled = pool.apply(report_and_double, (sent,))
    assert was_view and total == pytest.approx(float(sent.sum()))
    assert_in_segment(doubled)
    np.testing.assert_array_equal(doubled[:: 1 << 16], sent[:: 1 << 16] * 2)
    del doubled
    gc.collect()
