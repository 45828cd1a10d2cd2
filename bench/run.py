"""Time picklex against the stdlib's C pickler, side by side in one process.

    python bench/run.py [--quick] [--workload NAME]... [--protocol N]... [--list]
    python -m bench ...          (the same, from the repository root)

For every workload and protocol the runner times ``dumps`` of the object and ``loads`` of the
stdlib's pickle of it, for both libraries. Samples of the two libraries alternate (and swap
order every repeat) so drift in machine speed hits both alike; each sample runs an inner loop
calibrated to a minimum duration, and the reported time is the median per call. It also checks
that picklex writes the same bytes as pickle, marking a row ``DIFF`` when it does not.

If picklex (or its dumps/loads) cannot be imported the stdlib is still measured and the
missing side is reported as skipped. Results are printed as a table and written as JSON to
bench/results/ (or --json PATH).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import pickle
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workloads import WORKLOADS, Workload, by_name  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Settings:
    """How long to measure."""

    repeats: int  # samples per library and operation
    min_sample_s: float  # each sample's inner loop runs at least this long


QUICK = Settings(repeats=5, min_sample_s=0.01)
FULL = Settings(repeats=15, min_sample_s=0.05)


@dataclass
class Row:
    """One workload at one protocol."""

    workload: str
    protocol: int
    pickle_bytes: int  # total over all calls
    calls: int = 1  # dumps/loads calls per measurement (per-item workloads: one per item)
    dumps_ns: dict[str, float] = field(default_factory=dict)  # median ns per call, by library
    loads_ns: dict[str, float] = field(default_factory=dict)
    identical: bool | None = None  # None: picklex.dumps unavailable
    notes: list[str] = field(default_factory=list)


def load_picklex() -> tuple[Any | None, str]:
    """The picklex module if dumps and loads are usable, else None and the reason."""
    try:
        import picklex
    except Exception as exc:  # ImportError, or the extension failing to initialise
        return None, f"picklex not importable: {exc}"
    missing = [name for name in ("dumps", "loads") if not _has(picklex, name)]
    if missing:
        return picklex, f"picklex lacks {', '.join(missing)}"
    return picklex, ""


def _has(module: Any, name: str) -> bool:
    try:
        getattr(module, name)
    except AttributeError:
        return False
    return True


# Wall time by default. On a loaded machine, --clock cpu counts only the time this thread
# actually ran, which keeps ratios stable when other processes compete for the cores.
CLOCKS: dict[str, Callable[[], int]] = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}
clock: Callable[[], int] = time.perf_counter_ns


def time_call(fn: Callable[[], Any], number: int) -> float:
    """Nanoseconds per call of fn over `number` calls, garbage collector off (as timeit does)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = clock()
        for _ in range(number):
            fn()
        elapsed = clock() - start
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed / number


def calibrate(fns: Sequence[Callable[[], Any]], min_sample_s: float) -> int:
    """An inner-loop count that makes the slowest of fns run at least min_sample_s."""
    number = 1
    while True:
        slowest = max(time_call(fn, number) for fn in fns) * number
        if slowest >= min_sample_s * 1e9 or number >= 1 << 30:
            return number
        # Aim a little past the target so one more round usually suffices.
        number = max(number * 2, math.ceil(number * min_sample_s * 1e9 * 1.2 / max(slowest, 1)))


def interleaved_medians(
    candidates: dict[str, Callable[[], Any]], settings: Settings
) -> dict[str, float]:
    """Median ns per call of each candidate, sampled alternately."""
    names = list(candidates)
    number = calibrate([candidates[n] for n in names], settings.min_sample_s)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for repeat in range(settings.repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            samples[name].append(time_call(candidates[name], number))
    return {n: statistics.median(s) for n, s in samples.items()}


def each(fn: Callable[[Any], Any], items: Sequence[Any]) -> Callable[[], None]:
    """A callable that applies fn to every item (per-message workloads)."""

    def run() -> None:
        for item in items:
            fn(item)

    return run


def measure(workload: Workload, protocol: int, obj: Any, px: Any | None, settings: Settings) -> Row:
    """Time one workload at one protocol for the stdlib and, when usable, picklex."""
    items = obj if workload.per_item else [obj]
    ref = [pickle.dumps(item, protocol) for item in items]
    row = Row(workload.name, protocol, sum(len(r) for r in ref))
    have_dumps = px is not None and _has(px, "dumps")
    have_loads = px is not None and _has(px, "loads")

    def dumps_of(lib: Any) -> Callable[[], Any]:
        if workload.per_item:
            return each(lambda x: lib.dumps(x, protocol), items)
        return lambda: lib.dumps(obj, protocol)

    def loads_of(lib: Any) -> Callable[[], Any]:
        if workload.per_item:
            return each(lib.loads, ref)
        data = ref[0]
        return lambda: lib.loads(data)

    dumps = {"pickle": dumps_of(pickle)}
    if have_dumps:
        try:
            ours = [px.dumps(item, protocol) for item in items]
            row.identical = ours == ref
            if not row.identical:
                row.notes.append("picklex.dumps output differs from pickle.dumps")
            dumps["picklex"] = dumps_of(px)
        except Exception as exc:
            row.notes.append(f"picklex.dumps failed: {type(exc).__name__}: {exc}")
    loads = {"pickle": loads_of(pickle)}
    if have_loads:
        try:
            for data in ref[:100]:
                px.loads(data)
            loads["picklex"] = loads_of(px)
        except Exception as exc:
            row.notes.append(f"picklex.loads failed: {type(exc).__name__}: {exc}")
    # Per-item workloads report the time of one call (one message), not of the whole batch.
    per_call = len(items)
    row.dumps_ns = {k: v / per_call for k, v in interleaved_medians(dumps, settings).items()}
    row.loads_ns = {k: v / per_call for k, v in interleaved_medians(loads, settings).items()}
    row.calls = per_call
    return row


def fmt_time(ns: float | None) -> str:
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_ratio(row_ns: dict[str, float]) -> str:
    if "picklex" not in row_ns:
        return "skip"
    return f"{row_ns['pickle'] / row_ns['picklex']:.2f}x"


def print_table(rows: list[Row], out: Any = sys.stdout) -> None:
    """A fixed-width table; ratios are stdlib time / picklex time (above 1 = picklex faster)."""
    header = (
        "workload",
        "proto",
        "size/call",
        "dumps pickle",
        "dumps picklex",
        "speedup",
        "loads pickle",
        "loads picklex",
        "speedup",
        "same bytes",
    )
    table = [header]
    for r in rows:
        same = {True: "yes", False: "DIFF", None: "-"}[r.identical]
        table.append(
            (
                r.workload,
                str(r.protocol),
                fmt_bytes(r.pickle_bytes // r.calls),
                fmt_time(r.dumps_ns.get("pickle")),
                fmt_time(r.dumps_ns.get("picklex")),
                fmt_ratio(r.dumps_ns),
                fmt_time(r.loads_ns.get("pickle")),
                fmt_time(r.loads_ns.get("picklex")),
                fmt_ratio(r.loads_ns),
                same,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for n, line in enumerate(table):
        print(
            "  ".join(
                cell.rjust(w) if i > 1 else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(line, widths))
            ),
            file=out,
        )
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        for note in r.notes:
            print(f"warning: {r.workload} protocol {r.protocol}: {note}", file=out)


def fmt_bytes(n: int) -> str:
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def geometric_mean(values: list[float]) -> float | None:
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def environment(px: Any | None) -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        ).stdout.strip()
    except Exception:
        commit = ""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "picklex_version": getattr(px, "__version__", None),
        "picklex_path": getattr(px, "__file__", None),
        "git_commit": commit,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time picklex against the stdlib pickle.")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter samples (~30 s)")
    parser.add_argument(
        "--workload",
        "-w",
        action="append",
        default=[],
        help="run only this workload (repeatable, or comma-separated)",
    )
    parser.add_argument(
        "--protocol",
        "-p",
        action="append",
        type=int,
        default=[],
        help="run only this protocol (repeatable)",
    )
    parser.add_argument("--repeats", type=int, help="samples per library and operation")
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall time (default) or this thread's CPU time (steadier on a busy machine)",
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument("--json", type=Path, help="where to write results (default bench/results/)")
    parser.add_argument("--no-json", action="store_true", help="do not write a results file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected workloads and report; returns the process exit status."""
    args = parse_args(argv)
    if args.list:
        for w in WORKLOADS:
            print(f"{w.name:12} {w.description} (protocols {', '.join(map(str, w.protocols))})")
        return 0
    names = [n for spec in args.workload for n in spec.split(",") if n]
    known = by_name()
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown workload(s): {', '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    selected = [known[n] for n in names] if names else WORKLOADS
    settings = QUICK if args.quick else FULL
    if args.repeats:
        settings = Settings(args.repeats, settings.min_sample_s)

    global clock
    clock = CLOCKS[args.clock]
    px, why = load_picklex()
    if why:
        print(f"note: {why}; timing the stdlib only", file=sys.stderr)
    if pickle.dumps.__module__ != "_pickle":
        print("note: the stdlib pickle is not using its C accelerator", file=sys.stderr)

    rows: list[Row] = []
    started = time.perf_counter()
    for workload in selected:
        missing = [m for m in workload.requires if not _importable(m)]
        if missing:
            print(f"skip {workload.name}: needs {', '.join(missing)}", file=sys.stderr)
            continue
        obj = workload.make()
        for protocol in workload.protocols:
            if args.protocol and protocol not in args.protocol:
                continue
            row = measure(workload, protocol, obj, px, settings)
            rows.append(row)
            print(f"  {workload.name} protocol {protocol}: done", file=sys.stderr, flush=True)
        del obj
    elapsed = time.perf_counter() - started

    print()
    print_table(rows)
    for op in ("dumps", "loads"):
        ratios = [
            getattr(r, f"{op}_ns")["pickle"] / getattr(r, f"{op}_ns")["picklex"]
            for r in rows
            if "picklex" in getattr(r, f"{op}_ns")
        ]
        gm = geometric_mean(ratios)
        if gm is not None:
            print(f"{op}: geometric mean speedup {gm:.2f}x over {len(ratios)} rows")
    print(
        f"({elapsed:.1f} s; times are medians per dumps/loads call; "
        "speedup = pickle time / picklex time)"
    )

    if not args.no_json:
        path = args.json or RESULTS_DIR / time.strftime("bench-%Y%m%d-%H%M%S.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "environment": environment(px),
            "quick": args.quick,
            "clock": args.clock,
            "settings": asdict(settings),
            "rows": [asdict(r) for r in rows],
        }
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {path}")
    return 1 if any(r.identical is False for r in rows) else 0


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
