"""CPython's own pickle test suites (``test.pickletester``) run against picklex.

Every suite that ``Lib/test/test_pickle.py`` runs on the C implementation runs here on
picklex, plus both cross directions against the stdlib's C implementation (picklex
Pickler -> ``_pickle.Unpickler`` and ``_pickle.Pickler`` -> picklex Unpickler). The rule is
that every case the stdlib C pickler passes must pass for picklex, so nothing is skipped
here that ``_pickle`` passes. See ``pickletester_suites`` for what is out of scope.

Baseline: the identical classes bound to ``_pickle`` give 547 passed, 18 skipped on CPython
3.11.7 (the skips are pickletester's own: 32-bit-only cases, bigmem cases without -M, and
one pickler-type check that the in-memory variant has no pickler class for).
"""

from __future__ import annotations

import _pickle

import pytest
from helpers import picklex_api
from pickletester_suites import bind_suites


@pytest.fixture(autouse=True, scope="module")
def _scratch_cwd(tmp_path_factory):
    """pickletester writes scratch files (support.TESTFN) into the working directory.

    One directory for the whole module, as under regrtest: test_unpickle_module_race puts
    the relative TESTFN on sys.path, and the import system caches a finder per sys.path
    entry, so a per-test directory would leave later runs with a finder for a stale one.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("pickletester"))
        yield


globals().update(bind_suites("Picklex", picklex_api(), reference=_pickle))
