"""Shared fixtures: the reference vectors, the registries, and the boards built once for a session.

The helpers that are not fixtures are in helpers.py.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from helpers import reference_dir, stock_registry  # first: it puts this checkout's site_scons on sys.path

from atfactory.board import BoardRegistry  # noqa: E402


@pytest.fixture(scope="session")
def reference() -> Path:
    """Espressif's reference vectors; tests that need them skip with the reason where absent."""
    path = reference_dir()
    if not (path / "SHA256SUMS").is_file():
        pytest.skip(f"reference vectors not found at {path} (set ATFACTORY_REFERENCE)")
    return path


@pytest.fixture(scope="session")
def registry() -> BoardRegistry:
    return stock_registry()


# --- CI: a skipped test is a failure unless its reason is on this list --------------------------

ALLOWED_SKIP_REASONS: tuple = ()


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("ATFACTORY_STRICT_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    bad = []
    for report in skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        if not any(allowed in reason for allowed in ALLOWED_SKIP_REASONS):
            bad.append(f"{report.nodeid}: {reason}")
    if bad:
        sys.stderr.write("\nATFACTORY_STRICT_SKIPS: these tests were skipped, which CI does not accept:\n")
        for line in bad:
            sys.stderr.write(f"  {line}\n")
        session.exitstatus = 1
