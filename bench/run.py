"""Run the benchmark suite: picklex against the stdlib's C pickler, side by side in one run.

    python -m bench [--quick | --large] [--clock wall|cpu] [-w NAME]... [-p N]... [--list]
    python bench/run.py ...      (the same)
    python -m picklex bench ...  (the same, from the repository root)

Sections, in order:

1. **workloads** (bench/workloads.py) at protocols 2, 4 and 5: ``dumps`` and ``loads``
   medians for both libraries, interleaved, with a byte-identity check per row;
2. **peers** (cloudpickle, dill, msgspec, orjson when installed) at protocol 5, for context;
3. **large buffers** at protocol 5: in band against memcpy, out of band across sizes;
4. **memory**: peak RSS / traced memory of dumps and dump-to-file of a large object.

It prints the tables, the geometric means and one PASS/MISS line per target, and writes
JSON, a Markdown summary and a PNG chart of the ratios to bench/results/ (or --json PATH).
``--quick`` (CI smoke run) takes well under a minute, the default mode a few minutes,
``--large`` adds 1 GiB buffers (several GiB of memory). Times are wall-clock by default;
``--clock cpu`` counts this thread's CPU time instead, steadier when the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import buffers, memory, peers, plot, report, suite, targets  # noqa: E402
from bench.buffers import GiB, MiB  # noqa: E402
from bench.timing import Settings, use_clock  # noqa: E402
from bench.workloads import WORKLOADS, Workload, by_name  # noqa: E402

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SECTIONS = ("workloads", "buffers", "memory")


@dataclass
class Mode:
    """How much to measure."""

    name: str
    main: Settings
    peers: Settings | None  # None: peers off unless --peers
    buffers: Settings
    in_band_sizes: list[int]
    out_of_band_sizes: list[int]
    memory_size: int  # bytes of pickle for the memory section's objects
    buffer_kinds: list[str] = field(default_factory=lambda: ["bytes", "bytearray", "numpy"])


QUICK = Mode(
    "quick",
    Settings(5, 0.005),
    None,
    Settings(3, 0.005),
    [MiB, 16 * MiB, 64 * MiB],
    [MiB, 64 * MiB],
    32 * MiB,
)
DEFAULT = Mode(
    "default",
    Settings(9, 0.02),
    Settings(3, 0.02),
    Settings(5, 0.02),
    [MiB, 16 * MiB, 64 * MiB],
    [MiB, 64 * MiB, 256 * MiB],
    200 * MiB,
)
LARGE = Mode(
    "large",
    DEFAULT.main,
    DEFAULT.peers,
    DEFAULT.buffers,
    [MiB, 16 * MiB, 64 * MiB, GiB],
    [MiB, 64 * MiB, 256 * MiB, GiB],
    DEFAULT.memory_size,
)


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the report."""
    print(f"  {message}", file=sys.stderr, flush=True)


def load_picklex() -> tuple[Any | None, str]:
    """The picklex module if dumps and loads are usable, else None and the reason."""
    try:
        import picklex

        picklex.dumps, picklex.loads  # noqa: B018 - both must exist
    except Exception as exc:  # ImportError, or the extension failing to initialise
        return None, f"picklex not usable: {exc}"
    return picklex, ""


def environment(px: Any | None) -> dict[str, Any]:
    """What the numbers were measured on."""
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=10"],
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
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "picklex_version": getattr(px, "__version__", None),
        "picklex_path": getattr(px, "__file__", None),
        "stdlib_accelerated": pickle.Pickler.__module__ == "_pickle",
        "git_commit": commit,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Time picklex against the stdlib pickle."
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke run: short samples, small buffers, no peers (<1 min)",
    )
    size.add_argument(
        "--large",
        action="store_true",
        help="default mode plus 1 GiB buffers (needs about 5 GiB of free memory)",
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time (default) or this thread's CPU time",
    )
    parser.add_argument(
        "-w",
        "--workload",
        action="append",
        default=[],
        help="only this workload (repeatable or comma-separated)",
    )
    parser.add_argument(
        "-p",
        "--protocol",
        action="append",
        type=int,
        default=[],
        help="only this protocol (repeatable)",
    )
    parser.add_argument("--repeats", type=int, help="samples per candidate in the workload section")
    parser.add_argument(
        "--peers",
        help="comma-separated peers to time (default: all installed; off in --quick), or 'none'",
    )
    parser.add_argument(
        "--sections",
        help="comma-separated: workloads,buffers,memory (default: all; only workloads with -w/-p)",
    )
    parser.add_argument("--list", action="store_true", help="list the workloads and exit")
    parser.add_argument(
        "--json", type=Path, help="results file (default bench/results/bench-<time>.json)"
    )
    parser.add_argument("--no-json", action="store_true", help="write no results files")
    return parser.parse_args(argv)


def _selected(args: argparse.Namespace) -> list[Workload] | None:
    names = [n for spec in args.workload for n in spec.split(",") if n]
    known = by_name()
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown workload(s): {', '.join(unknown)}; see --list", file=sys.stderr)
        return None
    return [known[n] for n in names] if names else WORKLOADS


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def run_workloads(
    selected: list[Workload],
    protocols: list[int],
    px: Any | None,
    mode: Mode,
    peer_list: list[peers.Peer],
) -> list[suite.Row]:
    rows = []
    for workload in selected:
        missing = [m for m in workload.requires if not _importable(m)]
        if missing:
            log(f"skip {workload.name}: needs {', '.join(missing)}")
            continue
        obj = workload.make()
        for protocol in workload.protocols:
            if protocols and protocol not in protocols:
                continue
            row = suite.measure(workload, protocol, obj, px, mode.main)
            if peer_list and protocol == 5 and mode.peers is not None:
                suite.measure_peers(row, workload, obj, protocol, peer_list, mode.peers)
            rows.append(row)
            ratios = [report.fmt_ratio(row.ratio(op)) for op in ("dumps", "loads")]
            log(f"{workload.name} protocol {protocol}: dumps {ratios[0]}, loads {ratios[1]}")
        del obj
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the suite and report; the exit status is 1 when picklex wrote different bytes."""
    args = parse_args(argv)
    if args.list:
        for w in WORKLOADS:
            print(f"{w.name:14} {w.description} (protocols {', '.join(map(str, w.protocols))})")
        return 0
    selected = _selected(args)
    if selected is None:
        return 2
    mode = QUICK if args.quick else LARGE if args.large else DEFAULT
    if args.repeats:
        mode = replace(mode, main=Settings(args.repeats, mode.main.min_sample_s))
    peer_list: list[peers.Peer] = []
    if args.peers != "none" and (args.peers or mode.peers is not None):
        peer_list, missing = peers.available_peers(args.peers.split(",") if args.peers else None)
        if missing:
            log(f"peers not installed: {', '.join(missing)}")
        if mode.peers is None:
            mode = replace(mode, peers=Settings(3, mode.main.min_sample_s))
    use_clock(args.clock)
    px, why = load_picklex()
    if why:
        log(f"{why}; timing the stdlib only")
    default_sections = "workloads" if args.workload or args.protocol else ",".join(SECTIONS)
    sections = set((args.sections or default_sections).split(","))
    if not sections <= set(SECTIONS):
        print(f"unknown section(s): {', '.join(sections - set(SECTIONS))}", file=sys.stderr)
        return 2

    started = time.perf_counter()
    rows: list[suite.Row] = []
    if "workloads" in sections:
        rows = run_workloads(selected, args.protocol, px, mode, peer_list)
    in_band: list[buffers.InBandRow] = []
    out_of_band: list[buffers.OutOfBandRow] = []
    if "buffers" in sections:
        kinds = [k for k in mode.buffer_kinds if k != "numpy" or _importable("numpy")]
        in_band = buffers.in_band(kinds, mode.in_band_sizes, px, mode.buffers, args.clock, log)
        oob_kinds = [k for k in ("numpy", "bytearray") if k in kinds]
        out_of_band = buffers.out_of_band(oob_kinds, mode.out_of_band_sizes, px, mode.buffers, log)
    memory_rows: list[memory.MemoryRow] = []
    if "memory" in sections:
        memory_rows = memory.run(["floats", "bytes_dict"], mode.memory_size, px, log)
    elapsed = time.perf_counter() - started
    verdicts = targets.check(rows, in_band, out_of_band, memory_rows)

    blocks = [
        ("Workloads (median per call; x = pickle time / picklex time)", report.main_table(rows)),
        ("", report.geomean_lines(rows)),
        (
            "Peers at protocol 5 (pickle time / peer time; * = lossy round trip; not in geomeans)",
            report.peers_table(rows),
        ),
        (
            "Large buffers in band, protocol 5 (ratios: picklex time / memcpy time)",
            report.in_band_table(in_band) if in_band else "",
        ),
        (
            "Large buffers out of band, protocol 5",
            report.out_of_band_table(out_of_band) if out_of_band else "",
        ),
        (
            f"Peak memory ({fmt_mb(mode.memory_size)} objects, each in a fresh process)",
            report.memory_table(memory_rows) if memory_rows else "",
        ),
        ("Targets", report.target_lines(verdicts)),
    ]
    for title, body in blocks:
        if body:
            print(f"\n{title}\n{body}" if title else body)
    if report.notes(rows):
        print("\n" + report.notes(rows))
    print(f"\n{mode.name} mode, {args.clock} clock, {elapsed:.0f} s")

    if not args.no_json:
        env = environment(px)
        path = args.json or RESULTS_DIR / time.strftime("bench-%Y%m%d-%H%M%S.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "environment": env,
            "mode": mode.name,
            "clock": args.clock,
            "elapsed_s": elapsed,
            "settings": asdict(mode),
            "peers": {p.name: p.version for p in peer_list},
            "rows": [asdict(r) for r in rows],
            "in_band": [asdict(r) for r in in_band],
            "out_of_band": [asdict(r) for r in out_of_band],
            "memory": [asdict(r) for r in memory_rows],
            "targets": [asdict(t) for t in verdicts],
        }
        path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        summary = markdown_summary(
            rows, in_band, out_of_band, memory_rows, verdicts, env, mode, args.clock, elapsed
        )
        path.with_suffix(".md").write_text(summary, encoding="utf-8")
        chart = plot.bar_chart(
            rows,
            path.with_suffix(".png"),
            f"picklex vs pickle ({mode.name} mode, {env['git_commit']})",
        )
        print(f"results: {path} (+ .md{', .png' if chart else '; no chart: matplotlib missing'})")
    return 1 if any(r.identical is False for r in rows) else 0


def fmt_mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def markdown_summary(
    rows: list[suite.Row],
    in_band: list[buffers.InBandRow],
    out_of_band: list[buffers.OutOfBandRow],
    memory_rows: list[memory.MemoryRow],
    verdicts: list[targets.Target],
    env: dict[str, Any],
    mode: Mode,
    clock: str,
    elapsed: float,
) -> str:
    """The README's Benchmarks figures: ratio tables, buffers, memory, targets."""
    parts = [
        f"Measured {env['time'][:10]} at commit `{env['git_commit']}`, {mode.name} mode, "
        f"{clock} clock, Python {env['python']}, {elapsed:.0f} s. Ratios are pickle's time / "
        "picklex's time (above 1: picklex is faster).",
        report.ratio_table(rows, markdown=True),
    ]
    peer_table = report.peers_table(rows, markdown=True)
    if peer_table:
        parts += [
            "Peers, protocol 5, for context (pickle's time / the peer's; "
            "`*`: the round trip changes types):",
            peer_table,
        ]
    if in_band:
        parts += [
            "Large buffers in band, protocol 5 (last columns: picklex's time / memcpy's):",
            report.in_band_table(in_band, markdown=True),
        ]
    if out_of_band:
        parts += [
            "Large buffers out of band, protocol 5:",
            report.out_of_band_table(out_of_band, markdown=True),
        ]
    if memory_rows:
        parts += [
            f"Peak memory on {fmt_mb(mode.memory_size)} objects (fresh process each):",
            report.memory_table(memory_rows, markdown=True),
        ]
    parts += ["Targets:", report.target_lines(verdicts, markdown=True)]
    return "\n\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main())
