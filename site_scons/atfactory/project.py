"""An atfactory project: any folder with an ``atfactory.toml`` at its root.

``atfactory build`` (and ``inspect``, ``verify``, ``new`` run inside the folder) read it::

    boards = ["boards"]            # folders of the project's own board files
    plugins = ["plugins"]          # folders of its plugins
    default_board = "ACME-1"       # what `atfactory build` builds when no board is named
    build_dir = "build"            # release folders go to <build_dir>/<ID>/
    sign_key = "keys/release.key"  # Ed25519 key: every build signs its manifest.json
    sandbox = false                # refuse paths a board names outside its own folder

    [firmware.board]               # the ESP-AT release folder or factory image of a board id
    ACME-1 = "firmware/ESP32-WROOM-32-AT-V2.4.0.0"
    [firmware.chip]                # of every other board of a chip
    esp32 = "firmware/ESP32-WROOM-32-AT-V2.4.0.0"

Every key is optional.  Paths are relative to the project folder.  ``boards`` and ``plugins``
default to ``["boards"]`` and ``["plugins"]``, where a default folder that does not exist is
no folder; a folder the file names must exist.  Without ``default_board``, ``atfactory build``
builds every board of the project (its boards folders and its plugins' boards).  A board's
firmware is, first to last: ``--firmware``, the board's own ``[firmware] release``,
``firmware.board.<ID>``, ``firmware.chip.<chip>``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .errors import BoardError, Problem
from .toml_layers import read_toml

PROJECT_FILE = "atfactory.toml"
DEFAULT_BOARDS = "boards"
DEFAULT_PLUGINS = "plugins"
KEYS = ("boards", "plugins", "default_board", "build_dir", "sign_key", "sandbox", "firmware")


@dataclass(frozen=True)
class Project:
    root: str                         # the folder (absolute)
    path: str                         # its atfactory.toml
    board_dirs: Tuple[str, ...]       # absolute, each existing
    plugin_dirs: Tuple[str, ...]
    default_board: Optional[str] = None
    build_dir: str = ""               # absolute
    sign_key: Optional[str] = None    # absolute
    sandbox: bool = False
    firmware_boards: Dict[str, Tuple[str, str]] = field(default_factory=dict)   # id lowercased -> (id, path)
    firmware_chips: Dict[str, str] = field(default_factory=dict)                # chip -> path

    def default_firmware(self, board) -> Optional[Tuple[str, str, str]]:
        """(path, this file, the key) of the firmware the project gives ``board``, or None."""
        if board.id.lower() in self.firmware_boards:
            written, path = self.firmware_boards[board.id.lower()]
            return path, self.path, f"firmware.board.{written}"
        if board.chip.name in self.firmware_chips:
            return self.firmware_chips[board.chip.name], self.path, f"firmware.chip.{board.chip.name}"
        return None

    def own_boards(self, registry) -> List[str]:
        """The ids of the project's boards: those of its boards folders and of its plugins."""
        return [e.id for e in registry.entries() if e.origin.startswith("project ")
                or (e.origin.startswith("plugin ") and e.origin != "plugin atfactory")]

    def check_against(self, registry) -> None:
        """The board ids the file names must be boards the session knows."""
        from .registry import unknown_board_problem

        problems = []
        if self.default_board is not None and registry.resolve(self.default_board, self.root) is None:
            problem = unknown_board_problem(self.default_board, registry)
            problems.append(Problem(self.path, "default_board", problem.message, self.default_board))
        for written, _path in self.firmware_boards.values():
            if registry.get(written) is None:
                problems.append(Problem(self.path, f"firmware.board.{written}", "no board with this id; accepted: "
                                        "the id of a stock board or of one of the project's boards"))
        if problems:
            raise BoardError(problems)


def find_project(start: str) -> Optional[str]:
    """The atfactory.toml of the project ``start`` is in (the folder or one above it), or None."""
    folder = os.path.abspath(start)
    while True:
        candidate = os.path.join(folder, PROJECT_FILE)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def load_project(path: str) -> Project:
    """Read and check an atfactory.toml (or the one of a project folder); BoardError lists every problem."""
    if os.path.isdir(path):
        path = os.path.join(path, PROJECT_FILE)
    path = os.path.abspath(path)
    root = os.path.dirname(path)
    problems: List[Problem] = []
    data = read_toml(path, problems)
    if data is None:
        raise BoardError(problems)

    def fail(key, message, value=Problem.NO_VALUE):
        problems.append(Problem(path, key, message, value))

    for key in data:
        if key not in KEYS:
            fail(key, f"unknown key; accepted: {', '.join(KEYS)}")

    def text(key) -> Optional[str]:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            fail(key, "expected a non-empty string", value)
            return None
        return value

    def folders(key, default) -> Tuple[str, ...]:
        if key not in data:
            here = os.path.join(root, default)
            return (here,) if os.path.isdir(here) else ()
        value = data[key]
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            fail(key, 'expected a list of folder paths relative to the project, such as ["boards"]', value)
            return ()
        found = []
        for item in value:
            folder = os.path.normpath(os.path.join(root, os.path.expanduser(item)))
            if not os.path.isdir(folder):
                fail(key, f"{item!r} is not a folder; accepted: existing folders, relative to {root}", value)
            else:
                found.append(folder)
        return tuple(dict.fromkeys(found))

    def resolved(value: Optional[str]) -> Optional[str]:
        return os.path.normpath(os.path.join(root, os.path.expanduser(value))) if value is not None else None

    board_dirs = folders("boards", DEFAULT_BOARDS)
    plugin_dirs = folders("plugins", DEFAULT_PLUGINS)
    default_board = text("default_board")
    if default_board is not None and (default_board.endswith(".toml") or "/" in default_board or os.sep in default_board):
        default_board = resolved(default_board)   # a path: relative to the project, not to where a build starts
    build_dir = resolved(text("build_dir")) or os.path.join(root, "build")
    sign_key = resolved(text("sign_key"))
    sandbox = data.get("sandbox", False)
    if not isinstance(sandbox, bool):
        fail("sandbox", "expected true or false", sandbox)
    boards, chips = _firmware(data.get("firmware", {}), fail, resolved)
    if problems:
        raise BoardError(problems)
    return Project(root, path, board_dirs, plugin_dirs, default_board, build_dir, sign_key, sandbox, boards, chips)


def _firmware(table, fail, resolved) -> Tuple[Dict[str, Tuple[str, str]], Dict[str, str]]:
    from .chips import CHIPS

    boards: Dict[str, Tuple[str, str]] = {}
    chips: Dict[str, str] = {}
    if not isinstance(table, dict):
        fail("firmware", "expected a table with [firmware.board] and [firmware.chip]", table)
        return boards, chips
    for key, value in table.items():
        if key not in ("board", "chip"):
            fail(f"firmware.{key}", "unknown key; accepted: board (a table of board id = path), "
                                    "chip (a table of chip = path)")
        elif not isinstance(value, dict):
            fail(f"firmware.{key}", f"expected a table of {key} = path", value)
        else:
            for name, path in value.items():
                dotted = f"firmware.{key}.{name}"
                if not isinstance(path, str) or not path.strip():
                    fail(dotted, "expected the path of an ESP-AT release folder or factory image", path)
                elif key == "chip" and name not in CHIPS:
                    fail(dotted, f"no such chip; accepted: {', '.join(CHIPS)}")
                elif key == "chip":
                    chips[name] = resolved(path)
                elif name.lower() in boards:
                    fail(dotted, f"named twice (board ids are matched case-insensitively: {boards[name.lower()][0]})")
                else:
                    boards[name.lower()] = (name, resolved(path))
    return boards, chips
