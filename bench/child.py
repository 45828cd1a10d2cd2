"""Run one measurement in a fresh interpreter and read back its JSON.

Peak memory and large allocations depend on the process's history (glibc raises its mmap
threshold to the largest block freed so far, so whether a new 1 MiB block is recycled or
freshly mapped depends on what ran before). Measuring those in a new process makes the
figures independent of the order of the sections.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def _pythonpath(px: Any | None) -> str:
    # The child must import the same picklex and this bench package as the parent. abspath,
    # not resolve: a developer build's package is symlinks next to the extension.
    paths = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    if px is not None:
        paths.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(px.__file__))))
    inherited = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(paths + ([inherited] if inherited else []))


def run(module: str, args: list[str], px: Any | None) -> tuple[dict[str, Any] | None, str]:
    """``python -m module args...``; (its JSON output, "") or (None, the error's last line)."""
    env = dict(os.environ, PYTHONPATH=_pythonpath(px))
    command = [sys.executable, "-m", module, *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or ["failed"])[-1]
    return json.loads(done.stdout), ""
