"""Instructions per call of dumps or loads, picklex against the stdlib, counted by callgrind.

    python bench/instructions.py {dumps,loads} PROTOCOLS WORKLOAD [WORKLOAD...]
    python bench/instructions.py loads 4,5 ints slots

Timings on a shared machine move by tens of percent; instruction counts do not. Each figure
runs the workload N and 2N times under valgrind and takes the difference over N, so start-up
and set-up cancel out. String hashing is seeded (PYTHONHASHSEED=0) so dict and set probing is
the same for both sides. Needs valgrind; uses the picklex importable by this interpreter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import pickle, sys
sys.path.insert(0, ROOT)
import picklex
from bench.workloads import by_name
name, lib, op = sys.argv[1], sys.argv[2], sys.argv[5]
proto, rounds = int(sys.argv[3]), int(sys.argv[4])
workload = by_name()[name]
obj = workload.make()
items = obj if workload.per_item else [obj]
module = picklex if lib == "picklex" else pickle
if op == "dumps":
    for _ in range(rounds):
        for item in items:
            module.dumps(item, proto)
else:
    blobs = [pickle.dumps(item, proto) for item in items]
    for _ in range(rounds):
        for blob in blobs:
            module.loads(blob)
"""


def _total(args: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp, "child.py")
        script.write_text(CHILD.replace("ROOT", repr(str(ROOT))))
        out = Path(tmp, "callgrind.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable]
            + [str(script), *args],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        for line in out.read_text().splitlines():
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def per_call(name: str, lib: str, proto: int, op: str, rounds: int = 2) -> float:
    """Instructions for one round of the workload (all its items)."""
    once = _total([name, lib, str(proto), str(rounds), op])
    twice = _total([name, lib, str(proto), str(2 * rounds), op])
    return (twice - once) / rounds


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("dumps", "loads"):
        print(__doc__, file=sys.stderr)
        return 2
    op, protocols, names = argv[0], [int(p) for p in argv[1].split(",")], argv[2:]
    for name in names:
        for proto in protocols:
            ref = per_call(name, "pickle", proto, op)
            ours = per_call(name, "picklex", proto, op)
            print(
                f"{op} p{proto} {name:14s} pickle {ref:14,.0f}  picklex {ours:14,.0f}  "
                f"ratio {ref / ours:5.2f}x",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
