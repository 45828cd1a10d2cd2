"""Tables of a run's results, as aligned text for the terminal or Markdown for the README.

Every ratio reads the same way: the stdlib's time divided by the other library's, so above 1
means faster than ``pickle``. Buffer rows compare with memcpy the other way round (picklex
time / memcpy time, lower is better) because the target is phrased so.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench import buffers as buf
from bench.memory import MemoryRow
from bench.suite import Row
from bench.targets import Target, geomeans
from bench.timing import Timing


def fmt_time(ns: float | None) -> str:
    """A duration with three significant digits and a unit."""
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_bytes(n: float) -> str:
    """A size in B, kB, MB (powers of ten, as the sizes of pickles)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def fmt_ratio(x: float | None) -> str:
    """1.23x, or - when not measured."""
    return "-" if x is None else f"{x:.2f}x"


def _t(times: dict[str, Timing], name: str) -> float | None:
    return times[name].median_ns if name in times else None


def render(header: Sequence[str], body: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """A table: Markdown, or columns padded to width (first column left, others right)."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(line) + " |" for line in body]
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))
        )

    return "\n".join(
        [fmt(header), "  ".join("-" * w for w in widths)] + [fmt(line) for line in body]
    )


# ---- main table ----


def main_table(rows: list[Row]) -> str:
    """Every workload and protocol with both libraries' times and the ratios.

    ``noise`` is the largest interquartile range of the row's samples relative to their median:
    a ratio moves by about that much from run to run.
    """
    header = [
        "workload",
        "proto",
        "size/call",
        "dumps pickle",
        "picklex",
        "x",
        "loads pickle",
        "picklex",
        "x",
        "same bytes",
        "noise",
    ]
    body = []
    for r in rows:
        spreads = [t.spread for t in (*r.dumps.values(), *r.loads.values())]
        body.append(
            [
                r.workload,
                str(r.protocol),
                fmt_bytes(r.size),
                fmt_time(_t(r.dumps, "pickle")),
                fmt_time(_t(r.dumps, "picklex")),
                fmt_ratio(r.ratio("dumps")),
                fmt_time(_t(r.loads, "pickle")),
                fmt_time(_t(r.loads, "picklex")),
                fmt_ratio(r.ratio("loads")),
                {True: "yes", False: "DIFF", None: "-"}[r.identical],
                f"{max(spreads):.0%}" if spreads else "-",
            ]
        )
    return render(header, body)


def ratio_table(rows: list[Row], markdown: bool = False) -> str:
    """One line per workload: picklex's dumps and loads ratios at each protocol, then geomeans."""
    protocols = sorted({r.protocol for r in rows})
    header = ["workload", "pickle p5 dumps / loads"]
    header += [f"dumps p{p}" for p in protocols] + [f"loads p{p}" for p in protocols]
    by_name: dict[str, dict[int, Row]] = {}
    for r in rows:
        by_name.setdefault(r.workload, {})[r.protocol] = r
    body = []
    for name, per_protocol in by_name.items():
        p5 = per_protocol.get(5)
        scale = (
            f"{fmt_time(_t(p5.dumps, 'pickle'))} / {fmt_time(_t(p5.loads, 'pickle'))}"
            if p5
            else "-"
        )
        cells = [
            name
            + ("" if all(r.identical is not False for r in per_protocol.values()) else " (DIFF)"),
            scale,
        ]
        for op in ("dumps", "loads"):
            cells += [
                fmt_ratio(per_protocol[p].ratio(op)) if p in per_protocol else "" for p in protocols
            ]
        body.append(cells)
    means = geomeans(rows)
    geo = ["**geometric mean**" if markdown else "geometric mean", ""]
    for op in ("dumps", "loads"):
        geo += [fmt_ratio(means[(op, p)][0]) if (op, p) in means else "-" for p in protocols]
    if markdown:
        geo = [f"**{c}**" if c and i > 0 else c for i, c in enumerate(geo)]
    body.append(geo)
    return render(header, body, markdown)


def geomean_lines(rows: list[Row]) -> str:
    """One line per protocol and operation."""
    return "\n".join(
        f"geometric mean {op} protocol {p}: {gm:.2f}x over {n} workloads"
        for (op, p), (gm, n) in sorted(geomeans(rows).items(), key=lambda kv: (kv[0][1], kv[0][0]))
    )


def peers_table(rows: list[Row], markdown: bool = False) -> str:
    """Each peer's dumps/loads ratio against the stdlib (context; * marks a lossy round trip)."""
    names = sorted({p for r in rows for p in r.peers})
    if not names:
        return ""
    header = ["workload (p5)"] + [f"{n} dumps / loads" for n in names]
    body = []
    for r in rows:
        if not r.peers:
            continue
        cells = [r.workload]
        for n in names:
            p = r.peers.get(n)
            if p is None or p.skipped:
                cells.append("-")
            else:
                mark = "*" if p.lossy else ""
                cells.append(f"{fmt_ratio(p.dumps_ratio)} / {fmt_ratio(p.loads_ratio)}{mark}")
        body.append(cells)
    return render(header, body, markdown)


# ---- buffers and memory ----


def in_band_table(rows: list[buf.InBandRow], markdown: bool = False) -> str:
    """In-band protocol-5 times with the memcpy floors; last columns: picklex / memcpy new."""
    header = [
        "buffer", "size", "pickle dumps", "picklex dumps", "pickle loads", "picklex loads",
        "memcpy prealloc", "memcpy new", "memcpy mmap", "dumps/new", "loads/new",
    ]  # fmt: skip
    names = (
        "pickle dumps",
        "picklex dumps",
        "pickle loads",
        "picklex loads",
        "memcpy prealloc",
        "memcpy new",
        "memcpy mmap",
    )
    body = []
    for r in rows:
        body.append(
            [r.kind + ("" if r.identical is not False else " (DIFF)"), buf.fmt_size(r.size)]
            + [fmt_time(_t(r.times, c)) for c in names]
            + [fmt_ratio(r.vs_memcpy("dumps")), fmt_ratio(r.vs_memcpy("loads"))]
        )
    errors = [f"{r.kind} {buf.fmt_size(r.size)}: {r.error}" for r in rows if r.error]
    return render(header, body, markdown) + "".join(f"\nerror: {e}" for e in errors)


def out_of_band_table(rows: list[buf.OutOfBandRow], markdown: bool = False) -> str:
    """Out-of-band protocol-5 times per size (flat columns mean O(1))."""
    header = ["buffer", "size", "pickle dumps", "picklex dumps", "pickle loads", "picklex loads"]
    body = [
        [r.kind, buf.fmt_size(r.size)]
        + [
            fmt_time(_t(r.times, c))
            for c in ("pickle dumps", "picklex dumps", "pickle loads", "picklex loads")
        ]
        for r in rows
    ]
    return render(header, body, markdown)


def memory_table(rows: list[MemoryRow], markdown: bool = False) -> str:
    """Peak RSS and traced memory of each case, the two libraries side by side."""
    header = [
        "object",
        "op",
        "proto",
        "pickle size",
        "RSS pickle",
        "RSS picklex",
        "traced pickle",
        "traced picklex",
        "streams (picklex)",
    ]
    body = []
    cases: dict[tuple[str, str, int], dict[str, MemoryRow]] = {}
    for r in rows:
        cases.setdefault((r.kind, r.op, r.protocol), {})[r.lib] = r
    for (kind, op, protocol), libs in cases.items():
        std, ours = libs.get("pickle"), libs.get("picklex")

        def mib(row: MemoryRow | None, attr: str) -> str:
            if row is None:
                return "-"
            if row.error:
                return "error"
            return f"{getattr(row, attr) / 2**20:.1f} MiB" + (
                "" if row.rss_exact or attr != "rss_peak" else " (bound)"
            )

        streams = (
            "-" if op != "dump" or ours is None or ours.error else ("yes" if ours.streams else "NO")
        )
        size = (std or ours).pickle_size if (std or ours) else 0
        body.append(
            [kind, "dump (file)" if op == "dump" else op, str(protocol), fmt_bytes(size)]
            + [
                mib(std, "rss_peak"),
                mib(ours, "rss_peak"),
                mib(std, "traced_peak"),
                mib(ours, "traced_peak"),
                streams,
            ]
        )
    errors = [f"{r.lib} {r.kind} {r.op} p{r.protocol}: {r.error}" for r in rows if r.error]
    return render(header, body, markdown) + "".join(f"\nerror: {e}" for e in errors)


def target_lines(targets: list[Target], markdown: bool = False) -> str:
    """One line per target: PASS/MISS, the target, the figures."""
    if markdown:
        return "\n".join(f"- **{t.status}** {t.name}: {t.detail}" for t in targets)
    return "\n".join(f"{t.status:4}  {t.name}: {t.detail}" for t in targets)


def notes(rows: list[Row]) -> str:
    """Warnings attached to rows (output differences, failures)."""
    return "\n".join(
        f"warning: {r.workload} protocol {r.protocol}: {n}" for r in rows for n in r.notes
    )
