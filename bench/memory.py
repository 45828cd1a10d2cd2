"""Peak memory of dumps and dump-to-file on a large object, picklex against the stdlib.

Every measurement runs in a fresh interpreter (``python -m bench.memory LIB OP KIND SIZE
PROTOCOL``) so one library's freed-but-kept heap cannot hide the other's peak. The child
builds the object, then measures the operation twice:

* **RSS**: the resident-set high-water mark (VmHWM) above the RSS just before the call, after
  resetting the mark through /proc/self/clear_refs (Linux); without that, ru_maxrss is used and
  the figure is only an upper bound. RSS sees every allocation, C++ ones included.
* **traced**: tracemalloc's peak during a second call. tracemalloc sees what goes through
  Python's allocators (the pickle bytes objects of both libraries), reserved or touched, but
  not picklex's own C++ allocations (memo table, scratch). Both are checked against the
  stdlib; RSS is what the machine pays.

A dump to a file at protocol >= 4 streams frame by frame when its peak stays far below the
size of the pickle it writes.
"""

from __future__ import annotations

import gc
import json
import re
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import child

MiB = 1 << 20
STREAMING_FRACTION = 0.1  # a streaming dump peaks below this fraction of the pickle's size


def make_object(kind: str, size: int) -> Any:
    """A large object whose protocol-4+ pickle is about size bytes."""
    if kind == "floats":  # 9 bytes per float (BINFLOAT) in the pickle
        return [i * 0.25 for i in range(size // 9)]
    if kind == "bytes_dict":  # 1 MiB values, each a distinct object
        return {f"chunk-{i:05d}": bytes([i % 256]) * MiB for i in range(max(1, size // MiB))}
    raise ValueError(kind)


# ---- the child side ----


def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_delta(operation: Callable[[], Any]) -> tuple[int, bool, float]:
    """(peak RSS growth in bytes during operation, whether exact, seconds taken)."""
    gc.collect()
    before = _status_kib("VmRSS")
    exact = before is not None and _reset_peak()
    if not exact:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    operation()
    seconds = time.perf_counter() - start
    peak = _status_kib("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max(0, (peak or 0) - (before or 0)) * 1024, exact, seconds


def _peak_traced(operation: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        operation()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def measure(lib_name: str, op: str, kind: str, size: int, protocol: int) -> dict[str, Any]:
    """Build the object, measure one operation, and return the figures (run in a subprocess)."""
    lib = __import__(lib_name)
    obj = make_object(kind, size)
    written: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.pickle"

        def operation() -> None:
            if op == "dumps":
                written.append(len(lib.dumps(obj, protocol)))
            else:
                with open(path, "wb") as f:
                    lib.dump(obj, f, protocol)
                written.append(path.stat().st_size)
                path.unlink()

        rss, exact, seconds = _peak_rss_delta(operation)
        traced = _peak_traced(operation)
    return {
        "rss_peak": rss,
        "rss_exact": exact,
        "traced_peak": traced,
        "pickle_size": written[0],
        "seconds": seconds,
    }


# ---- the parent side ----


@dataclass
class MemoryRow:
    """One library, operation, object and protocol."""

    lib: str
    op: str  # "dumps" or "dump" (to a file)
    kind: str
    protocol: int
    rss_peak: int = 0
    rss_exact: bool = True
    traced_peak: int = 0
    pickle_size: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def streams(self) -> bool:
        """Whether a dump to a file peaked far below the size of what it wrote."""
        return self.rss_peak < STREAMING_FRACTION * self.pickle_size


# What is measured: dumps at protocol 5, dump to a file at protocols 4 and 5.
CASES = [("dumps", 5), ("dump", 4), ("dump", 5)]


def run(kinds: list[str], size: int, px: Any | None, log: Callable[[str], None]) -> list[MemoryRow]:
    """Measure every case for the stdlib and picklex, each in a fresh subprocess."""
    libs = ["pickle"] + (["picklex"] if px is not None else [])
    rows = []
    for kind in kinds:
        for op, protocol in CASES:
            for lib in libs:
                row = MemoryRow(lib, op, kind, protocol)
                args = [lib, op, kind, str(size), str(protocol)]
                figures, row.error = child.run("bench.memory", args, px)
                for key, value in (figures or {}).items():
                    setattr(row, key, value)
                rows.append(row)
            log(f"memory {kind} {op} protocol {protocol}: done")
    return rows


def main(argv: list[str]) -> int:
    """Child entry point: LIB OP KIND SIZE PROTOCOL; prints the figures as JSON."""
    lib, op, kind, size, protocol = argv
    print(json.dumps(measure(lib, op, kind, int(size), int(protocol))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
