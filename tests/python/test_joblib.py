"""joblib's own tests of its process backend (loky) with picklex standing in for pickle.

loky's pickler installs its reducer table through the base Pickler's dispatch_table only
when that is a member descriptor, as on _pickle.Pickler; when picklex had a getset there,
the reducers were lost and the workers died with "Bad file descriptor". The suite runs in a
child process so its worker pools and memmaps cannot disturb this one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("joblib")


def run_joblib_tests(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    here = str(Path(__file__).parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "picklex_as_pickle", "-p", "no:cacheprovider",
         "-q", "-x", "--pyargs", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_joblib_memmapping_through_loky_with_picklex_as_pickle(tmp_path: Path) -> None:
    result = run_joblib_tests("joblib.test.test_memmapping", "--basetemp", str(tmp_path))
    tail = result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    assert " passed" in result.stdout, tail
