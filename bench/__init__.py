"""picklex benchmark suite: ``python -m bench`` from the repository root (see bench/run.py).

One job per module: workloads.py (what is pickled), timing.py (clocks, calibrated interleaved
medians), suite.py (a workload at a protocol), peers.py (other serialisers for context),
buffers.py (large buffers against memcpy), memory.py (peak memory in fresh processes),
targets.py (PASS/MISS per target), report.py (tables), plot.py (PNG chart), run.py (the CLI).
"""
