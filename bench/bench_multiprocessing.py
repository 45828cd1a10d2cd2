"""multiprocessing with picklex.mp against stock multiprocessing, side by side in one run.

    python bench/bench_multiprocessing.py [--quick] [--method fork|spawn|forkserver]
                                          [--sizes MB,...] [--json PATH]

Round trips of a float64 array between this process and one child, through ``Pool.apply``,
``Queue`` (one each way), ``Pipe`` and ``ProcessPoolExecutor.submit``: the child gets the
array and sends it back. Two variants: ``echo`` (the child returns what it received) and
``echo+read`` (the child sums the array before returning it, and the parent sums what comes
back: every page is touched on both sides, so pages a zero-copy receive mapped lazily are
paid for here). Sizes: 4 MB (just above the 1 MiB threshold), 100 MB and 500 MB (``--quick``:
4 and 100 MB). A small-message baseline times round trips of a small dict (``Pipe``,
``Pool.apply``) and ForkingPickler.dumps+loads in this process: installing picklex.mp must not
slow those down.

Stock and picklex run in the same process: stock children are started while picklex.mp is
not installed, picklex ones from ``picklex.mp.get_context``; the parent installs or
uninstalls around each timing, and the two alternate repeat by repeat so that machine load
affects both alike. Each figure is the median of the repeats. Prints a table and writes JSON
to bench/results/ (or --json PATH).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.report import fmt_time  # noqa: E402

try:
    import picklex.mp
    import picklex.shm
except ImportError as exc:  # pragma: no cover - needs a build on PYTHONPATH
    sys.exit(f"picklex is not importable ({exc}); set PYTHONPATH=build/<name>/pkg")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
MB = 1000 * 1000
SMALL = {"id": 7, "name": "task", "values": [1.5, 2.5, 3.5], "flags": (True, None)}


# --------------------------------------------------------------------- child-side work


def echo(obj: Any) -> Any:
    return obj


def echo_read(array: np.ndarray) -> np.ndarray:
    array.sum()  # touch every page of what was received
    return array


def queue_server(inbox: Any, outbox: Any, read: bool) -> None:
    while (item := inbox.get()) is not None:
        outbox.put(echo_read(item) if read and isinstance(item, np.ndarray) else item)


def pipe_server(conn: Any, read: bool) -> None:
    while (item := conn.recv()) is not None:
        conn.send(echo_read(item) if read and isinstance(item, np.ndarray) else item)


# ------------------------------------------------------------------------ the channels


class Channels:
    """One child per channel kind, all started in one mode (stock or picklex)."""

    def __init__(self, ctx: Any, read: bool, stack: ExitStack) -> None:
        self.read = read
        self.pool = stack.enter_context(ctx.Pool(1))
        self.executor = stack.enter_context(ProcessPoolExecutor(1, mp_context=ctx))
        self.inbox, self.outbox = ctx.Queue(), ctx.Queue()
        self.queue_child = ctx.Process(target=queue_server, args=(self.inbox, self.outbox, read))
        self.here, there = ctx.Pipe()
        self.pipe_child = ctx.Process(target=pipe_server, args=(there, read))
        self.queue_child.start()
        self.pipe_child.start()
        stack.callback(self.close)

    def close(self) -> None:
        self.inbox.put(None)
        self.here.send(None)
        self.queue_child.join()
        self.pipe_child.join()

    def round_trip(self, kind: str, obj: Any) -> Any:
        work = echo_read if self.read and isinstance(obj, np.ndarray) else echo
        if kind == "Pool.apply":
            return self.pool.apply(work, (obj,))
        if kind == "ProcessPoolExecutor":
            return self.executor.submit(work, obj).result()
        if kind == "Queue":
            self.inbox.put(obj)
            return self.outbox.get()
        if kind == "Pipe":
            self.here.send(obj)
            return self.here.recv()
        raise ValueError(kind)


@contextmanager
def mode(installed: bool) -> Iterator[None]:
    """Parent-side switch: picklex.mp installed or stock multiprocessing."""
    if installed:
        picklex.mp.install()
    else:
        picklex.mp.uninstall()
    try:
        yield
    finally:
        picklex.mp.uninstall()


@dataclass
class Row:
    workload: str  # "echo 100 MB", "echo+read 100 MB", "small dict"
    channel: str
    stock: list[float] = field(default_factory=list)
    picklex: list[float] = field(default_factory=list)
    payload_bytes: int = 0

    @property
    def stock_s(self) -> float:
        return statistics.median(self.stock)

    @property
    def picklex_s(self) -> float:
        return statistics.median(self.picklex)

    @property
    def speedup(self) -> float:
        return self.stock_s / self.picklex_s


CHANNELS = ("Pool.apply", "Queue", "Pipe", "ProcessPoolExecutor")


def timed_round_trip(channels: Channels, channel: str, array: np.ndarray, expected: float) -> float:
    """One round trip of ``array``; checks what came back (outside the timing)."""
    gc.collect()
    start = time.perf_counter()
    result = channels.round_trip(channel, array)
    if channels.read:
        result.sum()  # the parent reads every page of what came back
    elapsed = time.perf_counter() - start
    assert float(result[:: 4096 // 8].sum()) == expected
    del result
    return elapsed


def bench_arrays(
    sets: dict[bool, dict[bool, Channels]], sizes: list[int], repeats: int
) -> list[Row]:
    rows = []
    for read in (False, True):
        for size in sizes:
            array = np.random.default_rng(size).random(size // 8)
            expected = float(array[:: 4096 // 8].sum())
            label = f"{'echo+read' if read else 'echo'} {size // MB} MB"
            for channel in CHANNELS:
                row = Row(label, channel, payload_bytes=size)
                for repeat in range(repeats):
                    for installed in (False, True) if repeat % 2 else (True, False):
                        channels = sets[installed][read]
                        with mode(installed):
                            seconds = timed_round_trip(channels, channel, array, expected)
                        (row.picklex if installed else row.stock).append(seconds)
                rows.append(row)
                print_row(row)
    return rows


def bench_small(sets: dict[bool, dict[bool, Channels]], messages: int, blocks: int) -> list[Row]:
    """Small messages: per-round-trip time, in alternating blocks (order flipped each time)."""
    rows = []
    for channel in ("Pipe", "Pool.apply"):
        row = Row("small dict round trip", channel, payload_bytes=0)
        for block in range(blocks):
            for installed in (False, True) if block % 2 else (True, False):
                channels = sets[installed][False]
                with mode(installed):
                    start = time.perf_counter()
                    for _ in range(messages):
                        assert channels.round_trip(channel, SMALL) == SMALL
                    seconds = (time.perf_counter() - start) / messages
                (row.picklex if installed else row.stock).append(seconds)
        rows.append(row)
        print_row(row)
    # The pickling alone, in this process: what installing changes for a small message.
    row = Row("small dict dumps+loads", "ForkingPickler", payload_bytes=0)
    for block in range(blocks):
        for installed in (False, True) if block % 2 else (True, False):
            with mode(installed):
                start = time.perf_counter()
                for _ in range(messages * 10):
                    ForkingPickler.loads(ForkingPickler.dumps(SMALL))
                seconds = (time.perf_counter() - start) / (messages * 10)
            (row.picklex if installed else row.stock).append(seconds)
    rows.append(row)
    print_row(row)
    return rows


# ------------------------------------------------------------------------------- report


HEADER = (
    f"| {'workload':24} | {'channel':19} | {'stock':>10} | {'picklex.mp':>10} "
    f"| {'speedup':>7} |\n|{'-' * 26}|{'-' * 21}|{'-' * 12}|{'-' * 12}|{'-' * 9}|"
)


def print_row(row: Row) -> None:
    print(
        f"| {row.workload:24} | {row.channel:19} | {fmt_time(row.stock_s * 1e9):>10} "
        f"| {fmt_time(row.picklex_s * 1e9):>10} | {row.speedup:6.2f}x |",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 MB only, fewer repeats")
    parser.add_argument("--method", default="fork", choices=multiprocessing.get_all_start_methods())
    parser.add_argument("--sizes", help="comma-separated array sizes in MB (default 100,500)")
    parser.add_argument("--repeats", type=int, help="repeats per figure (default 5, quick 3)")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/)")
    args = parser.parse_args(argv)
    if not picklex.shm.available():
        sys.exit("picklex.shm needs Linux memfd_create")
    default_sizes = "4,100" if args.quick else "4,100,500"
    sizes = [int(s) * MB for s in (args.sizes or default_sizes).split(",")]
    repeats = args.repeats or (3 if args.quick else 5)
    messages, blocks = (50, 10) if args.quick else (100, 20)

    print(
        f"# multiprocessing: stock vs picklex.mp ({args.method}, "
        f"{'quick' if args.quick else 'full'}, median of {repeats}; round trip parent -> child "
        "-> parent)\n"
    )
    print(HEADER)
    with ExitStack() as stack:
        picklex.mp.uninstall()
        stock_ctx = multiprocessing.get_context(args.method)
        sets: dict[bool, dict[bool, Channels]] = {False: {}, True: {}}
        for read in (False, True):
            sets[False][read] = Channels(stock_ctx, read, stack)
        picklex_ctx = picklex.mp.get_context(args.method)
        for read in (False, True):
            sets[True][read] = Channels(picklex_ctx, read, stack)
        picklex.mp.uninstall()
        rows = bench_small(sets, messages, blocks)
        rows += bench_arrays(sets, sizes, repeats)
        picklex.mp.install()  # children were started installed: stop them the same way

    large = [r for r in rows if r.payload_bytes >= 100 * MB]
    summary = {
        "min_speedup_arrays_>=100MB": min(r.speedup for r in large) if large else None,
        "target_met (>=3x for arrays >= 100 MB)": all(r.speedup >= 3 for r in large),
        "min_speedup_small_messages": min(
            r.speedup for r in rows if r.workload.startswith("small")
        ),
    }
    print("\n## Summary\n")
    print(json.dumps(summary, indent=2))
    payload = {
        "benchmark": "multiprocessing",
        "mode": "quick" if args.quick else "full",
        "method": args.method,
        "repeats": repeats,
        "threshold": picklex.mp.threshold(),
        "python": sys.version,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": [
            asdict(r) | {"stock_s": r.stock_s, "picklex_s": r.picklex_s, "speedup": r.speedup}
            for r in rows
        ],
        "summary": summary,
    }
    path = args.json or RESULTS_DIR / time.strftime("multiprocessing-%Y%m%d-%H%M%S.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
