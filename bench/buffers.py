"""Large buffers at protocol 5: in band against a memcpy of the same size, out of band O(1).

In band, ``dumps`` of a bytes/bytearray/array copies its data once into the pickle and
``loads`` copies it once into the new object, so the floor is one memcpy each. That floor is
measured three ways, in the same interleaved round:

* ``memcpy prealloc``: into a buffer allocated and touched before timing (pure copy speed);
* ``memcpy new``: into a new bytes object, memory as the allocator hands it to any new object
  (glibc recycles a freed block below its adaptive mmap threshold, up to 32 MiB, and maps
  fresh pages above it). The target compares with this one;
* ``memcpy mmap``: into freshly mapped pages, every one faulting on first touch; on this
  kind of VM a fault costs more than copying the page (see research/performance.md §3-4).

Each in-band size runs in a fresh process (bench/child.py): whether the allocator recycles
or maps a block depends on what the process freed before, and that must not depend on which
workloads ran first.

Out of band (``buffer_callback`` / ``buffers=``) no data is copied, so the time per call must
not grow with the size.
"""

from __future__ import annotations

import importlib
import json
import mmap
import pickle
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pickle import PickleBuffer
from typing import Any

from bench import child
from bench.suite import _discard
from bench.timing import Batch, Settings, Timing, calls, interleaved, use_clock

MiB = 1 << 20
GiB = 1 << 30


def _make(kind: str, size: int) -> Any:
    """A buffer of size bytes (zeros, written once: a copy does not care about the content)."""
    data = bytearray(size)
    if kind == "bytes":
        return bytes(data)
    if kind == "bytearray":
        return data
    if kind == "numpy":
        import numpy as np

        return np.frombuffer(data, dtype=np.float64)
    raise ValueError(kind)


@dataclass
class InBandRow:
    """dumps/loads of one buffer in band, with the memcpy floor of the same size."""

    kind: str
    size: int
    times: dict[str, Timing] = field(default_factory=dict)  # by candidate name
    identical: bool | None = None
    error: str = ""  # the child process failed (for instance out of memory)

    def vs_memcpy(self, op: str, reference: str = "memcpy new") -> float | None:
        """picklex time of op ("dumps"/"loads") divided by the memcpy time (below 1.3: met)."""
        mine = self.times.get(f"picklex {op}")
        ref = self.times.get(reference)
        return mine.median_ns / ref.median_ns if mine and ref else None


@dataclass
class OutOfBandRow:
    """dumps/loads of one buffer out of band."""

    kind: str
    size: int
    times: dict[str, Timing] = field(default_factory=dict)


def memcpy_batches(obj: Any) -> dict[str, Batch]:
    """Copies of obj's bytes into preallocated memory, a new bytes object, a fresh mapping."""
    source = memoryview(obj).cast("B")
    size = source.nbytes
    target = memoryview(bytearray(size))
    target[:] = source  # touch every page before timing

    def prealloc(n: int) -> None:
        for _ in range(n):
            target[:] = source

    def new(n: int) -> None:
        for _ in range(n):
            bytes(source)

    def mapped(n: int) -> None:
        for _ in range(n):
            with mmap.mmap(-1, size) as fresh:
                fresh.write(source)

    return {"memcpy prealloc": prealloc, "memcpy new": new, "memcpy mmap": mapped}


def measure_in_band(kind: str, size: int, px: Any | None, settings: Settings) -> InBandRow:
    """In-band dumps and loads of one buffer at protocol 5, interleaved with the memcpys."""
    obj = _make(kind, size)
    data = pickle.dumps(obj, 5)
    row = InBandRow(kind, size)
    batches: dict[str, Batch] = {
        "pickle dumps": calls(pickle.dumps, obj, 5),
        "pickle loads": calls(pickle.loads, data),
    }
    if px is not None:
        row.identical = px.dumps(obj, 5) == data
        batches["picklex dumps"] = calls(px.dumps, obj, 5)
        batches["picklex loads"] = calls(px.loads, data)
    batches.update(memcpy_batches(obj))
    row.times = interleaved(batches, settings)
    return row


def in_band(
    kinds: list[str],
    sizes: list[int],
    px: Any | None,
    settings: Settings,
    clock: str,
    log: Callable[[str], None],
) -> list[InBandRow]:
    """measure_in_band for each kind and size, each in a fresh process (see bench/child.py)."""
    rows = []
    for size in sizes:
        for kind in kinds:
            args = [kind, str(size), str(settings.repeats), str(settings.min_sample_s), clock]
            figures, error = child.run("bench.buffers", [*args, "picklex" if px else "-"], px)
            row = InBandRow(kind, size)
            if figures is None:
                row.error = error
            else:
                row.times = {name: Timing(**t) for name, t in figures["times"].items()}
                row.identical = figures["identical"]
            rows.append(row)
            log(f"in-band {kind} {fmt_size(size)}: {error or 'done'}")
    return rows


def out_of_band(
    kinds: list[str],
    sizes: list[int],
    px: Any | None,
    settings: Settings,
    log: Callable[[str], None],
) -> list[OutOfBandRow]:
    """Time out-of-band dumps and loads at protocol 5 of each kind, all sizes interleaved.

    Every size of a kind is sampled in one interleaved round, so a change in machine load
    cannot pass for growth with the size.
    """
    rows = []
    libs = [pickle] + ([px] if px is not None else [])
    for kind in kinds:
        batches: dict[str, Batch] = {}
        for size in sizes:
            obj = _make(kind, size)
            if kind != "numpy":
                obj = PickleBuffer(obj)  # bytes/bytearray go out of band only when wrapped
            buffers: list[Any] = []
            data = pickle.dumps(obj, 5, buffer_callback=buffers.append)
            for lib in libs:
                name = lib.__name__
                batches[f"{name} dumps {size}"] = calls(lib.dumps, obj, 5, buffer_callback=_discard)
                batches[f"{name} loads {size}"] = calls(lib.loads, data, buffers=buffers)
        times = interleaved(batches, settings)
        for size in sizes:
            suffix = f" {size}"
            mine = {k[: -len(suffix)]: v for k, v in times.items() if k.endswith(suffix)}
            rows.append(OutOfBandRow(kind, size, mine))
        del batches
        log(f"out-of-band {kind}: done")
    return rows


def growth(rows: list[OutOfBandRow], kind: str, candidate: str) -> float | None:
    """Time at the largest size / time at the smallest, for one kind and candidate."""
    mine = sorted(
        (r.size, r.times[candidate].median_ns)
        for r in rows
        if r.kind == kind and candidate in r.times
    )
    if len(mine) < 2:
        return None
    return mine[-1][1] / mine[0][1]


def fmt_size(n: int) -> str:
    """1 MiB, 64 MiB, 1 GiB."""
    return f"{n // GiB} GiB" if n >= GiB else f"{n // MiB} MiB" if n >= MiB else f"{n} B"


def main(argv: list[str]) -> int:
    """Child entry point: KIND SIZE REPEATS MIN_SAMPLE_S CLOCK picklex|-; prints JSON."""
    kind, size, repeats, min_sample_s, clock, lib = argv
    use_clock(clock)
    px = importlib.import_module("picklex") if lib == "picklex" else None
    row = measure_in_band(kind, int(size), px, Settings(int(repeats), float(min_sample_s)))
    times = {name: asdict(t) for name, t in row.times.items()}
    print(json.dumps({"times": times, "identical": row.identical}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
