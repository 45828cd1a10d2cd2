"""Command line: ``python -m picklex <command> [options]``.

``bench`` runs the benchmark suite of the picklex source tree (``bench/`` at the repository
root), with the options of ``python -m bench``. The suite is not part of the installed
package: run the command from a checkout (the current directory, or the tree a developer
build links to).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType


def _bench_module() -> ModuleType | None:
    """bench.run from the current directory or from the tree this package's sources live in."""
    candidates = [Path.cwd(), Path(__file__).resolve().parents[2]]
    for root in candidates:
        if (root / "bench" / "run.py").is_file():
            if str(root) not in sys.path:
                sys.path.insert(0, str(root))
            try:
                module = importlib.import_module("bench.run")
            except ImportError:
                continue
            if hasattr(module, "main"):
                return module
    return None


def bench(argv: Sequence[str]) -> int:
    """Run the repository's benchmark suite with these options."""
    module = _bench_module()
    if module is None:
        print(
            "picklex bench: the benchmark suite lives in the source tree, not in the installed\n"
            "package. From a checkout of picklex run:  python -m bench [--quick]",
            file=sys.stderr,
        )
        return 2
    return int(module.main(list(argv)))


COMMANDS = {"bench": bench}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch ``python -m picklex <command> ...``."""
    parser = argparse.ArgumentParser(prog="python -m picklex")
    parser.add_argument("command", choices=sorted(COMMANDS), help="bench: run the benchmark suite")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="options for the command (--help)")
    args = parser.parse_args(argv)
    return COMMANDS[args.command](args.args)


if __name__ == "__main__":
    sys.exit(main())
