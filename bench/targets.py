"""The performance issue's targets, checked against one run's results (PASS / MISS / n/a)."""

from __future__ import annotations

from dataclasses import dataclass

from bench import buffers as buf
from bench.memory import MemoryRow
from bench.suite import Row
from bench.timing import geometric_mean
from bench.workloads import PLAIN_CLASS

GEOMEAN_MIN = 1.5
ROW_MIN = 1.0
PLAIN_CLASS_MIN = 2.0
MEMCPY_MAX = 1.3
OOB_GROWTH_MAX = 2.0  # "O(1)": at most this factor from the smallest to the largest size
# RSS is counted in pages and the allocator keeps some slack: allow 1 MiB + 2% over the stdlib.
MEMORY_SLACK_BYTES = 1 << 20
MEMORY_SLACK_FRACTION = 0.02
TARGET_PROTOCOLS = (4, 5)


@dataclass
class Target:
    """One target's verdict."""

    name: str
    status: str  # "PASS", "MISS" or "n/a"
    detail: str


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "PASS" if ok else "MISS"


def geomeans(rows: list[Row]) -> dict[tuple[str, int], tuple[float, int]]:
    """(op, protocol) -> (geometric mean of picklex ratios, rows counted)."""
    out = {}
    for protocol in sorted({r.protocol for r in rows}):
        for op in ("dumps", "loads"):
            ratios = [x for r in rows if r.protocol == protocol and (x := r.ratio(op)) is not None]
            gm = geometric_mean(ratios)
            if gm is not None:
                out[(op, protocol)] = (gm, len(ratios))
    return out


def check(
    rows: list[Row],
    in_band: list[buf.InBandRow],
    out_of_band: list[buf.OutOfBandRow],
    memory: list[MemoryRow],
) -> list[Target]:
    """Every target, in the order the issue lists them."""
    targets = []
    means = geomeans(rows)
    for protocol in TARGET_PROTOCOLS:
        for op in ("dumps", "loads"):
            gm = means.get((op, protocol))
            targets.append(
                Target(
                    f"geomean {op} protocol {protocol} >= {GEOMEAN_MIN}x",
                    _verdict(None if gm is None else gm[0] >= GEOMEAN_MIN),
                    "not measured" if gm is None else f"{gm[0]:.2f}x over {gm[1]} workloads",
                )
            )
    targets.append(_worst_row(rows))
    targets.append(_plain_classes(rows))
    targets.append(_memcpy(in_band))
    targets.append(_oob(out_of_band))
    targets.append(_memory_peak(memory, "rss_peak", "RSS"))
    # tracemalloc counts address space requested through Python's allocators, touched or not
    # (and none of picklex's C++ allocations): a second view next to RSS, not a substitute.
    targets.append(_memory_peak(memory, "traced_peak", "tracemalloc"))
    targets.append(_streaming(memory))
    targets.append(_identical(rows))
    return targets


def _worst_row(rows: list[Row]) -> Target:
    ratios = [
        (x, r, op) for r in rows for op in ("dumps", "loads") if (x := r.ratio(op)) is not None
    ]
    if not ratios:
        return Target(f"every workload >= {ROW_MIN}x", "n/a", "not measured")
    below = sorted((x, r.workload, r.protocol, op) for x, r, op in ratios if x < ROW_MIN)
    worst = min(ratios, key=lambda t: t[0])
    detail = f"lowest {worst[0]:.2f}x ({worst[1].workload} {worst[2]} p{worst[1].protocol})"
    if below:
        detail += "; below: " + ", ".join(f"{w} {op} p{p} {x:.2f}x" for x, w, p, op in below)
    return Target(
        f"every workload >= {ROW_MIN}x (dumps and loads, protocols 2/4/5)",
        _verdict(not below),
        detail,
    )


def _plain_classes(rows: list[Row]) -> Target:
    name = f"plain class instances >= {PLAIN_CLASS_MIN}x dumps and loads (protocols 4/5)"
    picked = [r for r in rows if PLAIN_CLASS in r.tags and r.protocol in TARGET_PROTOCOLS]
    ratios = [
        (x, r.workload, op, r.protocol)
        for r in picked
        for op in ("dumps", "loads")
        if (x := r.ratio(op)) is not None
    ]
    if not ratios:
        return Target(name, "n/a", "not measured")
    parts = []
    for op in ("dumps", "loads"):
        mine = [t for t in ratios if t[2] == op]
        if mine:
            x, w, _, p = min(mine)
            parts.append(f"{op} lowest {x:.2f}x ({w} p{p})")
    return Target(name, _verdict(all(x >= PLAIN_CLASS_MIN for x, *_ in ratios)), "; ".join(parts))


def _memcpy(rows: list[buf.InBandRow]) -> Target:
    name = f"in-band buffers (protocol 5) within {MEMCPY_MAX}x of a memcpy into a new bytes"
    ratios = [
        (x, r.kind, r.size, op)
        for r in rows
        for op in ("dumps", "loads")
        if (x := r.vs_memcpy(op)) is not None
    ]
    if not ratios:
        return Target(name, "n/a", "not measured")
    worst = max(ratios)
    over = sorted({f"{k} {buf.fmt_size(s)} {op}" for x, k, s, op in ratios if x > MEMCPY_MAX})
    mapped = [
        x
        for r in rows
        for op in ("dumps", "loads")
        if (x := r.vs_memcpy(op, "memcpy mmap")) is not None
    ]
    detail = (
        f"worst {worst[0]:.2f}x ({worst[1]} {buf.fmt_size(worst[2])} {worst[3]}); "
        f"against a memcpy into freshly mapped pages: {min(mapped):.2f}x-{max(mapped):.2f}x"
    )
    if over:
        detail += "; over: " + ", ".join(over)
    return Target(name, _verdict(worst[0] <= MEMCPY_MAX), detail)


def _oob(rows: list[buf.OutOfBandRow]) -> Target:
    sizes = sorted({r.size for r in rows})
    name = "out-of-band buffers O(1): time flat in the size"
    if len(sizes) < 2:
        return Target(name, "n/a", "not measured")
    growths = []
    for kind in sorted({r.kind for r in rows}):
        for op in ("dumps", "loads"):
            g = buf.growth(rows, kind, f"picklex {op}")
            if g is not None:
                growths.append((g, kind, op))
    if not growths:
        return Target(name, "n/a", "picklex not measured")
    worst = max(growths)
    detail = (
        f"{buf.fmt_size(sizes[0])} -> {buf.fmt_size(sizes[-1])}: time grows at most "
        f"{worst[0]:.2f}x ({worst[1]} {worst[2]}; limit {OOB_GROWTH_MAX}x)"
    )
    return Target(name, _verdict(worst[0] <= OOB_GROWTH_MAX), detail)


def _memory_peak(rows: list[MemoryRow], attr: str, label: str) -> Target:
    name = f"peak memory ({label}) of dumps/dump <= the stdlib's"
    pairs = _pairs(rows)
    if not pairs:
        return Target(name, "n/a", "not measured")
    over = []
    parts = []
    for (kind, op, protocol), (std, ours) in sorted(pairs.items()):
        mine, theirs = getattr(ours, attr), getattr(std, attr)
        if mine > theirs * (1 + MEMORY_SLACK_FRACTION) + MEMORY_SLACK_BYTES:
            over.append(f"{kind} {op} p{protocol}")
        if op == "dumps":
            parts.append(f"{kind} dumps {mine / 2**20:.0f} vs {theirs / 2**20:.0f} MiB")
    excess = max(getattr(ours, attr) - getattr(std, attr) for std, ours in pairs.values())
    detail = "; ".join(parts) + f"; largest excess over pickle {excess / 2**20:.1f} MiB"
    if over:
        detail += "; over: " + ", ".join(over)
    return Target(name, _verdict(not over), detail)


def _streaming(rows: list[MemoryRow]) -> Target:
    name = "dump to a file streams (protocols 4/5: peak < 10% of the pickle)"
    dumps = [r for r in rows if r.lib == "picklex" and r.op == "dump" and not r.error]
    if not dumps:
        return Target(name, "n/a", "not measured")
    worst = max(dumps, key=lambda r: r.rss_peak / max(r.pickle_size, 1))
    detail = (
        f"largest peak {worst.rss_peak / 2**20:.1f} MiB for a {worst.pickle_size / 2**20:.0f} MiB "
        f"pickle ({worst.kind} p{worst.protocol})"
    )
    return Target(name, _verdict(all(r.streams for r in dumps)), detail)


def _identical(rows: list[Row]) -> Target:
    checked = [r for r in rows if r.identical is not None]
    differ = [f"{r.workload} p{r.protocol}" for r in checked if not r.identical]
    detail = f"{len(checked)} rows checked" + (f"; differ: {', '.join(differ)}" if differ else "")
    return Target(
        "byte-identical to pickle.dumps", _verdict(None if not checked else not differ), detail
    )


def _pairs(rows: list[MemoryRow]) -> dict[tuple[str, str, int], tuple[MemoryRow, MemoryRow]]:
    by_key: dict[tuple[str, str, int], dict[str, MemoryRow]] = {}
    for r in rows:
        if not r.error:
            by_key.setdefault((r.kind, r.op, r.protocol), {})[r.lib] = r
    return {k: (v["pickle"], v["picklex"]) for k, v in by_key.items() if len(v) == 2}
