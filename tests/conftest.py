"""Shared fixtures: the reference vectors, a scons runner, and board-file writers."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "site_scons"))

from atfactory.board import BoardRegistry, load_board  # noqa: E402


def reference_dir() -> Path:
    env = os.environ.get("ATFACTORY_REFERENCE")
    return Path(env) if env else REPO.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference() -> Path:
    """Espressif's reference vectors; tests that need them skip with the reason where absent."""
    path = reference_dir()
    if not (path / "SHA256SUMS").is_file():
        pytest.skip(f"reference vectors not found at {path} (set ATFACTORY_REFERENCE)")
    return path


@pytest.fixture(scope="session")
def registry() -> BoardRegistry:
    reg = BoardRegistry()
    reg.add_folder(str(REPO / "boards"), origin="boards/")
    return reg


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def run_scons(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run scons on this repository's SConstruct from ``cwd``, as a user in another folder would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "SCons", "-C", str(REPO), "-Q", *args],
        cwd=str(cwd), env=full_env, capture_output=True, text=True, timeout=300,
    )


def board_from_text(tmp_path: Path, text: str, name: str = "test-board.toml", registry: BoardRegistry = None):
    """Write a board file into tmp_path and load it through the library."""
    path = write(tmp_path / name, text)
    reg = registry or BoardRegistry()
    if registry is None:
        reg.add_folder(str(REPO / "boards"), origin="boards/")
    return load_board(str(path), reg)


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
