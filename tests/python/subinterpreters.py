"""Run code in real subinterpreters (3.12's ``_xxsubinterpreters``, 3.13's ``_interpreters``).

Only what the tests need: create an interpreter with its own GIL, run a script in it (a
failure in the script raises here, with the script's error text), destroy it. Scripts report
back through files, since objects cannot cross between interpreters.
"""

from __future__ import annotations

import sys
import textwrap

try:  # 3.13
    import _interpreters as _api

    _MODERN = True
except ImportError:  # 3.12 (absent before)
    try:
        import _xxsubinterpreters as _api
    except ImportError:
        _api = None
    _MODERN = False

AVAILABLE = _api is not None and sys.version_info >= (3, 12)
WHY_NOT = f"subinterpreters with their own GIL need CPython 3.12+, this is {sys.version.split()[0]}"


class SubinterpreterError(RuntimeError):
    """A script run in a subinterpreter raised."""


def create() -> int:
    """A new isolated interpreter (its own GIL, multi-phase extension modules only)."""
    if _MODERN:
        return _api.create("isolated")
    return _api.create(isolated=True)


def run(interp: int, script: str) -> None:
    """Run `script` (dedented) in `interp`'s __main__; raise SubinterpreterError on failure."""
    code = textwrap.dedent(script)
    if _MODERN:
        failure = _api.exec(interp, code)
        if failure is not None:
            name = failure.type.__name__
            raise SubinterpreterError(f"{name}: {failure.msg}\n{failure.formatted}")
        return
    try:
        _api.run_string(interp, code)
    except _api.RunFailedError as exc:
        raise SubinterpreterError(str(exc)) from None


def destroy(interp: int) -> None:
    _api.destroy(interp)
