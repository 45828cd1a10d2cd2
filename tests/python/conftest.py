"""Shared pytest configuration for the picklex Python suite.

The ``slow`` marker tags tests that take more than a few seconds; they are skipped unless
``--runslow`` is given or the ``-m`` expression names them, so the default run stays short.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register ``--runslow``."""
    parser.addoption(
        "--runslow", action="store_true", default=False, help="also run tests marked slow"
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers used by this suite."""
    config.addinivalue_line("markers", "slow: takes more than a few seconds; needs --runslow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests unless they were asked for."""
    if config.getoption("--runslow") or "slow" in (config.getoption("-m") or ""):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)
