"""Shared fixtures: the reference vectors, the registries, and the boards built once for a session.

The helpers that are not fixtures are in helpers.py.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from helpers import ACME, IMAGE_BOARDS, WITH_ACME, reference_dir, run_scons, stock_registry  # first: it puts site_scons on sys.path

from atfactory.board import BoardRegistry, load_board  # noqa: E402


@pytest.fixture(scope="session")
def reference() -> Path:
    """Espressif's reference vectors; tests that need them skip with the reason where absent."""
    path = reference_dir()
    if not (path / "SHA256SUMS").is_file():
        pytest.skip(f"reference vectors not found at {path} (set ATFACTORY_REFERENCE)")
    return path


@pytest.fixture(scope="session")
def registry() -> BoardRegistry:
    """The boards of boards/, without plugins."""
    return stock_registry()


@pytest.fixture(scope="session")
def plugin_host():
    """The plugin host of a build with the example plugin: the built-in plugin and
    examples/acme/plugins, no installed entry points."""
    from atfactory.plugins import make_plugin_host

    return make_plugin_host([str(ACME)], entry_points=False)


@pytest.fixture(scope="session")
def plugin_registry(plugin_host) -> BoardRegistry:
    """Every board the plugin host registers: the stock boards and the plugins' ones."""
    reg = BoardRegistry()
    plugin_host.register_boards(reg)
    return reg


@pytest.fixture(scope="session")
def board_of(plugin_host, plugin_registry):
    """``board_of(ref)``: a board as the build sees it, plugins' tables and partitions included."""
    from atfactory.prepare import prepare_board

    def prepared(ref):
        return prepare_board(ref, plugin_registry, plugin_host, extra_tables=plugin_host.board_tables())
    return prepared


@pytest.fixture(scope="session")
def built(tmp_path_factory, registry) -> Path:
    """Every shipped board (the stock ones and the example plugin's) built (release folders
    without firmware in out/) and factory images for IMAGE_BOARDS (in img/), once for the session."""
    from firmware_factory import make_release

    root = tmp_path_factory.mktemp("built")
    r = run_scons("board=all", "-j2", "build_dir=out", WITH_ACME, cwd=root)
    assert r.returncode == 0, r.stderr
    for board_id in IMAGE_BOARDS:
        board = load_board("WROOM-32" if board_id == "ACME-W32" else board_id, registry)
        release = make_release(root / "fw" / board_id, board)
        r = run_scons(f"board={board_id}", f"firmware={release}", "build_dir=img", WITH_ACME, cwd=root)
        assert r.returncode == 0, r.stderr
    return root


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
