"""Timing primitives: a chosen clock, calibrated inner loops, interleaved medians.

A *batch* is a callable ``batch(n)`` that performs ``n`` calls of the operation in a tight loop
(no lambda per call, so the loop adds the same few tens of nanoseconds to every library).
Each candidate gets its own inner-loop count, calibrated so one sample lasts at least
``min_sample_s``; samples of all candidates then alternate, in an order reversed every repeat,
so a change of machine speed during the run hits them alike. The figure kept is the median.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

Batch = Callable[[int], None]

# Wall time by default. On a shared machine, "cpu" counts only the time this thread ran
# (user + system, page faults included), which keeps ratios steady when others compete.
CLOCKS: dict[str, Callable[[], int]] = {"wall": time.perf_counter_ns, "cpu": time.thread_time_ns}
_clock: Callable[[], int] = time.perf_counter_ns


def use_clock(name: str) -> None:
    """Select the clock ("wall" or "cpu") for every later measurement."""
    global _clock
    _clock = CLOCKS[name]


@dataclass
class Settings:
    """How long to measure."""

    repeats: int  # samples per candidate
    min_sample_s: float  # each sample's inner loop runs at least this long


@dataclass
class Timing:
    """One candidate's result: median and spread of the per-call time."""

    median_ns: float
    spread: float  # interquartile range / median: how noisy the samples were
    calls_per_sample: int


def calls(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Batch:
    """A batch calling fn(*args, **kwargs); one- and two-argument calls get unpacked loops."""
    if kwargs:

        def batch(n: int) -> None:
            for _ in range(n):
                fn(*args, **kwargs)

    elif len(args) == 1:
        (a,) = args

        def batch(n: int) -> None:
            for _ in range(n):
                fn(a)

    elif len(args) == 2:
        a, b = args

        def batch(n: int) -> None:
            for _ in range(n):
                fn(a, b)

    else:

        def batch(n: int) -> None:
            for _ in range(n):
                fn(*args)

    return batch


def calls_each(fn: Callable[..., Any], items: Sequence[Any], *extra: Any) -> Batch:
    """A batch that calls fn(item, *extra) for every item, n times over (per-message work)."""
    if not extra:

        def batch(n: int) -> None:
            for _ in range(n):
                for item in items:
                    fn(item)

    else:
        (b,) = extra

        def batch(n: int) -> None:
            for _ in range(n):
                for item in items:
                    fn(item, b)

    return batch


def time_batch(batch: Batch, n: int) -> float:
    """Nanoseconds per call over n calls, with the garbage collector off (as timeit does)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = _clock()
        batch(n)
        elapsed = _clock() - start
    finally:
        if was_enabled:
            gc.enable()
    return elapsed / n


def calibrate(batch: Batch, min_sample_s: float) -> int:
    """An inner-loop count that makes one sample of batch last at least min_sample_s."""
    target = min_sample_s * 1e9
    n = 1
    while True:
        total = time_batch(batch, n) * n
        if total >= target or n >= 1 << 30:
            return n
        # Aim a little past the target so one more round usually suffices.
        n = max(n * 2, math.ceil(n * target * 1.2 / max(total, 1)))


def interleaved(candidates: dict[str, Batch], settings: Settings) -> dict[str, Timing]:
    """Median time per call of each candidate, samples alternating between candidates."""
    names = list(candidates)
    counts = {name: calibrate(candidates[name], settings.min_sample_s) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(settings.repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            samples[name].append(time_batch(candidates[name], counts[name]))
    return {name: _summary(samples[name], counts[name]) for name in names}


def _summary(values: list[float], count: int) -> Timing:
    median = statistics.median(values)
    if len(values) >= 4:
        q = statistics.quantiles(values, n=4)
        spread = (q[2] - q[0]) / median if median else 0.0
    else:
        spread = (max(values) - min(values)) / median if median else 0.0
    return Timing(median, spread, count)


def geometric_mean(values: Sequence[float]) -> float | None:
    """The geometric mean, or None for no values."""
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None
