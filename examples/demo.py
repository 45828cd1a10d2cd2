"""A first look at picklex: same bytes as pickle, out-of-band buffers, and a quick timing.

Run it after ``pip install .``:  python examples/demo.py
"""

from __future__ import annotations

import datetime
import pickle
import time

import picklex


def best_of(fn, repeat: int = 5, number: int = 20) -> float:
    """Best time per call of fn, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def main() -> None:
    """Show byte identity, a round trip, PEP 574 buffers and a side-by-side timing."""
    record = {
        "id": 42,
        "name": "Ada",
        "scores": [9.5, 7.25, 10.0],
        "tags": ("math", "engines"),
        "joined": datetime.date(1843, 7, 10),
    }
    for protocol in range(picklex.HIGHEST_PROTOCOL + 1):
        ours = picklex.dumps(record, protocol)
        assert ours == pickle.dumps(record, protocol), f"protocol {protocol} differs"
        assert picklex.loads(ours) == record
    print("same bytes as pickle at protocols 0..5, and round trips: ok")

    payload = bytearray(b"x" * 50_000_000)
    buffers: list[pickle.PickleBuffer] = []
    data = picklex.dumps(pickle.PickleBuffer(payload), 5, buffer_callback=buffers.append)
    restored = picklex.loads(data, buffers=buffers)
    assert memoryview(restored).obj is payload  # the very same memory, never copied
    print(f"50 MB out of band: the pickle itself is {len(data)} bytes, the data was not copied")

    batch = [dict(record, id=i) for i in range(20_000)]
    blob = pickle.dumps(batch, 5)
    for name, lib in (("pickle", pickle), ("picklex", picklex)):
        dumps_s = best_of(lambda lib=lib: lib.dumps(batch, 5))
        loads_s = best_of(lambda lib=lib: lib.loads(blob))
        print(f"{name:8} dumps {dumps_s * 1e3:7.2f} ms   loads {loads_s * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
