"""Zero-copy data path: container files and socket transfer, against their peers, in one run.

    python bench/bench_zero_copy.py [--quick] [--only files|sockets] [--json PATH] [--dir DIR]

Files: ``picklex.dump_file`` / ``load_file`` (mapped and read) against ``np.save`` /
``np.load`` (also ``mmap_mode="r"``), ``joblib.dump`` / ``joblib.load`` (if installed, also
``mmap_mode="r"``) and ``pickle.dump`` / ``pickle.load`` at protocol 5, for one float64 array
(1 GiB; 64 MiB with --quick) and a dict of 100 arrays. The files sit in the page cache when
loaded (they were just written), so loads measure the library, not the disk. picklex saves
are durable (fsync of file and directory); the peers' are not, so ``np.save + fsync`` is
timed too.

Sockets: ``picklex.send`` / ``recv`` over an AF_UNIX socketpair (default and 4 MiB kernel
buffers) and TCP loopback, sender on a thread, against a raw ``sendall`` / ``recv_into`` of
the same number of bytes (into fresh memory and into reused, already-touched memory),
``multiprocessing`` ``Connection.send_bytes`` / ``recv_bytes`` and ``Connection.send`` /
``recv`` (pickle in band), and single-threaded memcpy bandwidth (into touched and into fresh
memory). Each figure is the median of several runs; ratios are taken within this run.

Prints tables and writes JSON to bench/results/ (or --json PATH).
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import pickle
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.buffers import GiB, MiB  # noqa: E402
from bench.report import fmt_time  # noqa: E402

try:
    import picklex
except ImportError as exc:  # pragma: no cover - needs a build on PYTHONPATH
    sys.exit(f"picklex is not importable ({exc}); set PYTHONPATH=build/<name>/pkg")

try:
    import joblib
except ImportError:
    joblib = None

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Settings:
    array_bytes: int
    dict_total_bytes: int
    repeats: int
    slow_repeats: int  # for cases that copy or pickle the whole payload in Python


FULL = Settings(array_bytes=GiB, dict_total_bytes=256 * MiB, repeats=5, slow_repeats=3)
QUICK = Settings(array_bytes=64 * MiB, dict_total_bytes=32 * MiB, repeats=3, slow_repeats=2)


@dataclass
class Row:
    group: str  # "file" or "socket" or "memcpy"
    workload: str
    case: str
    seconds: float  # median
    payload_bytes: int
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def gb_per_s(self) -> float:
        return self.payload_bytes / self.seconds / 1e9 if self.seconds else float("inf")


def median_seconds(
    fn: Callable[[], Any], repeats: int, *, after: Callable[[Any], None] | None = None
) -> tuple[float, list[float]]:
    """Median wall time of fn over `repeats` runs; `after` gets each result, untimed."""
    samples = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - start)
        if after is not None:
            after(result)
        del result
    return statistics.median(samples), samples


# ------------------------------------------------------------------------------- workloads


def make_workloads(settings: Settings) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    array = rng.random(settings.array_bytes // 8)
    per = settings.dict_total_bytes // 100 // 8
    arrays = {f"a{i:03d}": rng.random(per) for i in range(100)}
    return {"array": array, "dict100": arrays}


def payload_bytes(obj: Any) -> int:
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    return sum(a.nbytes for a in obj.values())


def touch(obj: Any) -> float:
    """Read every element (fault every page in)."""
    if isinstance(obj, np.ndarray):
        return float(obj.sum())
    return float(sum(a.sum() for a in obj.values()))


# ------------------------------------------------------------------------------- files


def file_cases(obj: Any) -> list[tuple[str, Callable[[Path], Any], list[tuple[str, Callable]]]]:
    """(name, dump(path), [(load name, load(path))...]) for every library."""
    is_array = isinstance(obj, np.ndarray)

    def np_save(path: Path) -> None:
        if is_array:
            np.save(path, obj)
        else:
            np.savez(path, **obj)

    def np_save_fsync(path: Path) -> None:
        np_save(path)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def np_load(path: Path) -> Any:
        if is_array:
            return np.load(path)
        with np.load(path) as archive:
            return {k: archive[k] for k in archive.files}

    def pickle_dump(path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=5)

    def pickle_load(path: Path) -> Any:
        with open(path, "rb") as f:
            return pickle.load(f)

    cases: list[tuple[str, Callable[[Path], Any], list[tuple[str, Callable]]]] = [
        (
            "picklex",
            lambda p: picklex.dump_file(obj, p),
            [
                ("load_file mmap", lambda p: picklex.load_file(p)),
                ("load_file mmap + read all", lambda p: touch(picklex.load_file(p))),
                ("load_file mmap=False", lambda p: picklex.load_file(p, mmap=False)),
                ("load_file verify", lambda p: picklex.load_file(p, verify=True)),
            ],
        ),
        ("numpy np.save", np_save, [("np.load", np_load)]),
        ("numpy np.save + fsync", np_save_fsync, []),
        ("pickle p5", pickle_dump, [("pickle.load", pickle_load)]),
    ]
    if is_array:
        cases[1][2].append(("np.load mmap_mode=r", lambda p: np.load(p, mmap_mode="r")))
        cases[1][2].append(
            ("np.load mmap_mode=r + read all", lambda p: touch(np.load(p, mmap_mode="r")))
        )
    if joblib is not None:
        cases.append(
            (
                "joblib",
                lambda p: joblib.dump(obj, p),
                [
                    ("joblib.load", lambda p: joblib.load(p)),
                    ("joblib.load mmap_mode=r", lambda p: joblib.load(p, mmap_mode="r")),
                ],
            )
        )
    return cases


def bench_files(workloads: dict[str, Any], settings: Settings, directory: Path) -> list[Row]:
    rows = []
    for workload, obj in workloads.items():
        size = payload_bytes(obj)
        for name, dump, loads in file_cases(obj):
            path = directory / f"{workload}.{name.split()[0]}"
            if name.startswith("numpy") and workload == "array":
                path = path.with_suffix(".npy")
            elif name.startswith("numpy"):
                path = path.with_suffix(".npz")
            repeats = (
                settings.repeats
                if name.startswith(("picklex", "numpy"))
                else (settings.slow_repeats)
            )
            seconds, samples = median_seconds(lambda d=dump, p=path: d(p), repeats)
            note = "durable (fsync)" if name == "picklex" or "fsync" in name else ""
            rows.append(Row("file", workload, f"dump: {name}", seconds, size, samples, note))
            for load_name, load in loads:
                slow = "read all" in load_name or "verify" in load_name or "mmap" not in load_name
                reps = settings.slow_repeats if slow else settings.repeats * 4
                seconds, samples = median_seconds(lambda f=load, p=path: f(p), reps)
                rows.append(Row("file", workload, f"load: {load_name}", seconds, size, samples))
            if path.exists():
                path.unlink()
    return rows


# ------------------------------------------------------------------------------- sockets


def socket_pair(kind: str) -> tuple[socket.socket, socket.socket]:
    if kind == "tcp":
        with socket.create_server(("127.0.0.1", 0)) as server:
            a = socket.create_connection(server.getsockname())
            b, _ = server.accept()
        for s in (a, b):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return a, b
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if kind == "unix-4MiB":
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MiB)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)
    return a, b


def timed_transfer(
    kind: str, send: Callable[[socket.socket], None], receive: Callable[[socket.socket], Any]
) -> tuple[float, Any]:
    """Seconds from the sender starting to the receiver returning, sender on a thread."""
    a, b = socket_pair(kind)
    try:
        sender = threading.Thread(target=send, args=(a,))
        start = time.perf_counter()
        sender.start()
        result = receive(b)
        elapsed = time.perf_counter() - start
        sender.join()
    finally:
        a.close()
        b.close()
    return elapsed, result


def raw_receive_into(view: memoryview) -> Callable[[socket.socket], memoryview]:
    def receive(sock: socket.socket) -> memoryview:
        got = 0
        while got < view.nbytes:
            n = sock.recv_into(view[got:], view.nbytes - got, socket.MSG_WAITALL)
            if not n:
                raise EOFError
            got += n
        return view

    return receive


def sendall(sock: socket.socket, data: memoryview) -> None:
    sock.sendall(data)


def raw_receive_fresh(sock: socket.socket, size: int) -> memoryview:
    return raw_receive_into(memoryview(np.empty(size, np.uint8)))(sock)


def bench_sockets(workloads: dict[str, Any], settings: Settings) -> list[Row]:
    rows = []
    kinds = ["unix", "unix-4MiB", "tcp"]
    for workload, obj in workloads.items():
        size = payload_bytes(obj)
        flat = obj if isinstance(obj, np.ndarray) else np.concatenate(list(obj.values()))
        flat_bytes = memoryview(flat).cast("B")
        reused = np.empty(flat.nbytes, dtype=np.uint8)
        reused.fill(0)  # touched once: no page faults when reused
        reused_receive = raw_receive_into(memoryview(reused))

        pool = picklex.BufferPool(max_bytes=size + 64 * MiB)  # one message in reserve
        picklex_send = partial(picklex.send, obj=obj)
        raw_send = partial(sendall, data=flat_bytes)
        fresh = partial(raw_receive_fresh, size=flat.nbytes)
        pooled = partial(picklex.recv, pool=pool)
        cases = []  # (case, kind, send, receive, note)
        for kind in kinds:
            cases += [
                ("picklex send/recv", kind, picklex_send, picklex.recv, ""),
                ("picklex send/recv, BufferPool", kind, picklex_send, pooled, "reused after run 1"),
                ("raw sendall/recv_into fresh memory", kind, raw_send, fresh, ""),
                ("raw sendall/recv_into reused memory", kind, raw_send, reused_receive, ""),
            ]
        # Interleaved: every repeat runs every case once, so drift in machine load hits all.
        samples: list[list[float]] = [[] for _ in cases]
        for _ in range(settings.repeats):
            for index, (_case, kind, send, receive, _note) in enumerate(cases):
                gc.collect()
                elapsed, result = timed_transfer(kind, send, receive)
                samples[index].append(elapsed)
                del result
        for (case, kind, _s, _r, note), times in zip(cases, samples):
            median = statistics.median(times)
            rows.append(Row("socket", workload, f"{kind}: {case}", median, size, times, note))
        rows.extend(bench_connection(workload, obj, flat_bytes, size, settings))
    return rows


def bench_connection(
    workload: str, obj: Any, flat_bytes: memoryview, size: int, settings: Settings
) -> list[Row]:
    """multiprocessing.Connection (a socketpair on Linux): send_bytes and pickling send."""
    rows = []
    for case, send, receive, repeats in (
        (
            "send_bytes/recv_bytes",
            lambda c: c.send_bytes(flat_bytes),
            lambda c: c.recv_bytes(),
            settings.repeats,
        ),
        (
            "send/recv (pickle in band)",
            lambda c: c.send(obj),
            lambda c: c.recv(),
            settings.slow_repeats,
        ),
    ):
        samples = []
        for _ in range(repeats):
            gc.collect()
            left, right = multiprocessing.Pipe()
            sender = threading.Thread(target=send, args=(left,))
            start = time.perf_counter()
            sender.start()
            result = receive(right)
            samples.append(time.perf_counter() - start)
            sender.join()
            left.close()
            right.close()
            del result
        rows.append(
            Row(
                "socket",
                workload,
                f"multiprocessing.Connection {case}",
                statistics.median(samples),
                size,
                samples,
            )
        )
    return rows


def bench_memcpy(workloads: dict[str, Any], settings: Settings) -> list[Row]:
    rows = []
    src = workloads["array"]
    touched = np.empty_like(src)
    touched.fill(0)
    seconds, samples = median_seconds(lambda: np.copyto(touched, src), settings.repeats)
    rows.append(Row("memcpy", "array", "memcpy into touched memory", seconds, src.nbytes, samples))
    seconds, samples = median_seconds(lambda: src.copy(), settings.repeats)
    rows.append(Row("memcpy", "array", "memcpy into fresh memory", seconds, src.nbytes, samples))
    return rows


# ------------------------------------------------------------------------------- report


def print_table(rows: list[Row], title: str, reference: Callable[[Row], Row | None]) -> None:
    print(f"\n## {title}\n")
    print(
        f"| {'workload':8} | {'case':53} | {'median':>11} | {'best':>11} | {'GB/s':>6} "
        f"| {'x ref':>6} | note |"
    )
    print(f"|{'-' * 10}|{'-' * 55}|{'-' * 13}|{'-' * 13}|{'-' * 8}|{'-' * 8}|------|")
    for row in rows:
        ref = reference(row)
        ratio = f"{ref.seconds / row.seconds:6.2f}" if ref is not None else "      "
        best = min(row.samples) if row.samples else row.seconds
        print(
            f"| {row.workload:8} | {row.case:53} | {fmt_time(row.seconds * 1e9):>11} | "
            f"{fmt_time(best * 1e9):>11} | {row.gb_per_s:6.2f} | {ratio} | {row.note} |"
        )


def summarize(rows: list[Row], settings: Settings) -> dict[str, Any]:
    def find(workload: str, case: str) -> Row | None:
        return next((r for r in rows if r.workload == workload and r.case == case), None)

    summary: dict[str, Any] = {}
    mmap_load = find("array", "load: load_file mmap")
    if mmap_load is not None:
        summary["mmap_load_ms"] = mmap_load.seconds * 1e3
        summary["mmap_load_target_met (<5 ms)"] = mmap_load.seconds < 5e-3
    memcpy = find("array", "memcpy into touched memory")
    memcpy_fresh = find("array", "memcpy into fresh memory")
    for kind in ("unix", "unix-4MiB", "tcp"):
        px = find("array", f"{kind}: picklex send/recv")
        pooled = find("array", f"{kind}: picklex send/recv, BufferPool")
        raw = find("array", f"{kind}: raw sendall/recv_into fresh memory")
        raw_reused = find("array", f"{kind}: raw sendall/recv_into reused memory")
        if px is None or memcpy is None:
            continue

        def ratio(a: Row | None, b: Row | None) -> float | None:
            return a.gb_per_s / b.gb_per_s if a is not None and b is not None else None

        entry = {
            "picklex_GBps": px.gb_per_s,
            "picklex_pool_GBps": pooled.gb_per_s if pooled else None,
            "memcpy_touched_GBps": memcpy.gb_per_s,
            "raw_socket_fresh_GBps": raw.gb_per_s if raw else None,
            "raw_socket_reused_GBps": raw_reused.gb_per_s if raw_reused else None,
            "picklex_x_memcpy_touched": ratio(px, memcpy),
            "picklex_pool_x_memcpy_touched": ratio(pooled, memcpy),
            "picklex_x_memcpy_fresh": ratio(px, memcpy_fresh),
            "picklex_x_raw_socket_fresh": ratio(px, raw),
            "picklex_pool_x_raw_socket_reused": ratio(pooled, raw_reused),
            "raw_socket_reused_x_memcpy_touched": ratio(raw_reused, memcpy),
        }
        best = max(
            v
            for v in (entry["picklex_x_memcpy_touched"], entry["picklex_pool_x_memcpy_touched"])
            if v is not None
        )
        entry["target_met (>=0.7x memcpy)"] = best >= 0.7
        summary[f"socket {kind}"] = entry
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB array, fewer repeats")
    parser.add_argument("--only", choices=["files", "sockets"], help="run one group")
    parser.add_argument("--json", type=Path, help="results file (default bench/results/)")
    parser.add_argument("--dir", type=Path, help="directory for the files (default: a temp dir)")
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL

    workloads = make_workloads(settings)
    rows: list[Row] = []
    if args.only in (None, "files"):
        directory = Path(tempfile.mkdtemp(prefix="picklex-bench-", dir=args.dir))
        try:
            rows += bench_files(workloads, settings, directory)
        finally:
            shutil.rmtree(directory, ignore_errors=True)
    if args.only in (None, "sockets"):
        rows += bench_memcpy(workloads, settings)
        rows += bench_sockets(workloads, settings)

    def file_reference(row: Row) -> Row | None:
        # Ratios against pickle.dump / pickle.load of the same workload (>1: faster).
        op = row.case.split(":")[0]
        case = "dump: pickle p5" if op == "dump" else "load: pickle.load"
        return next((r for r in rows if r.workload == row.workload and r.case == case), None)

    def socket_reference(row: Row) -> Row | None:
        # Ratios against memcpy of the same number of bytes into touched memory (>1: faster).
        memcpy = next((r for r in rows if r.case == "memcpy into touched memory"), None)
        if memcpy is None:
            return None
        return Row("", "", "", memcpy.seconds * row.payload_bytes / memcpy.payload_bytes, 1)

    print(
        f"# picklex zero-copy benchmark ({'quick' if args.quick else 'full'}): "
        f"array {settings.array_bytes // MiB} MiB, dict of 100 arrays "
        f"{settings.dict_total_bytes // MiB} MiB"
    )
    file_rows = [r for r in rows if r.group == "file"]
    if file_rows:
        print_table(
            file_rows, "Files (x ref = pickle.dump / pickle.load time / this)", file_reference
        )
    socket_rows = [r for r in rows if r.group in ("memcpy", "socket")]
    if socket_rows:
        print_table(
            socket_rows,
            "Transfer (x ref = memcpy into touched memory time / this)",
            socket_reference,
        )
    summary = summarize(rows, settings)
    print("\n## Targets\n")
    print(json.dumps(summary, indent=2))

    payload = {
        "benchmark": "zero_copy",
        "mode": "quick" if args.quick else "full",
        "settings": asdict(settings),
        "python": sys.version,
        "numpy": np.__version__,
        "joblib": getattr(joblib, "__version__", None),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "rows": [asdict(r) | {"GBps": r.gb_per_s} for r in rows],
        "summary": summary,
    }
    path = args.json or RESULTS_DIR / time.strftime("zero_copy-%Y%m%d-%H%M%S.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
