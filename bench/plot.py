"""A PNG bar chart of picklex's speed-up over the stdlib per workload and protocol."""

from __future__ import annotations

from pathlib import Path

from bench.suite import Row
from bench.targets import GEOMEAN_MIN, geomeans


def bar_chart(rows: list[Row], path: Path, title: str) -> Path | None:
    """Write the chart to path and return it; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # headless: no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = list(dict.fromkeys(r.workload for r in rows)) + ["geomean"]
    protocols = sorted({r.protocol for r in rows})
    ratios = {(r.workload, r.protocol, op): r.ratio(op) for r in rows for op in ("dumps", "loads")}
    for (op, p), (gm, _) in geomeans(rows).items():
        ratios[("geomean", p, op)] = gm
    width = 0.8 / len(protocols)
    fig, axes = plt.subplots(2, 1, figsize=(max(10, 0.55 * len(names)), 9), sharex=True)
    for ax, op in zip(axes, ("dumps", "loads")):
        for i, p in enumerate(protocols):
            xs = [k + (i - (len(protocols) - 1) / 2) * width for k in range(len(names))]
            ys = [ratios.get((n, p, op)) or 0.0 for n in names]
            ax.bar(xs, ys, width, label=f"protocol {p}")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(
            GEOMEAN_MIN,
            color="tab:red",
            linewidth=0.8,
            linestyle="--",
            label=f"{GEOMEAN_MIN}x target",
        )
        ax.set_ylabel(f"{op}: pickle time / picklex time")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1].set_xticks(range(len(names)))
    axes[-1].set_xticklabels(names, rotation=45, ha="right")
    axes[0].set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
