"""The registry of known boards: board ids (matched case-insensitively) to board files."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional

from .errors import BoardError, Problem, did_you_mean

DEFAULT_BOARD = "WROOM-32"


@dataclass(frozen=True)
class BoardEntry:
    id: str
    path: str
    origin: str  # "boards/", a plugin name, ...


class BoardRegistry:
    """Board ids (matched case-insensitively) to board files; catches duplicate ids."""

    def __init__(self):
        self._entries: Dict[str, BoardEntry] = {}

    def add_folder(self, folder: str, origin: Optional[str] = None) -> None:
        if not os.path.isdir(folder):
            return
        for name in sorted(os.listdir(folder)):
            if name.endswith(".toml") and os.path.isfile(os.path.join(folder, name)):
                self.add(os.path.join(folder, name), origin=origin or folder)

    def add(self, path: str, board_id: Optional[str] = None, origin: str = "") -> BoardEntry:
        path = os.path.abspath(path)
        board_id = board_id or os.path.splitext(os.path.basename(path))[0]
        key = board_id.lower()
        if key in self._entries and self._entries[key].path != path:
            other = self._entries[key]
            raise BoardError([Problem(path, "", f"board id {board_id!r} is already taken by {other.path} "
                                                f"(from {other.origin}); board ids must be unique")])
        entry = BoardEntry(board_id, path, origin)
        self._entries[key] = entry
        return entry

    def get(self, board_id: str) -> Optional[BoardEntry]:
        return self._entries.get(board_id.lower())

    def ids(self) -> List[str]:
        return sorted((e.id for e in self._entries.values()), key=str.lower)

    def entries(self) -> List[BoardEntry]:
        return [self._entries[k.lower()] for k in self.ids()]

    def resolve(self, ref: str, relative_to: Optional[str] = None) -> Optional[str]:
        """A board id, or a path to a .toml file (relative to ``relative_to`` or the cwd)."""
        looks_like_path = ref.endswith(".toml") or "/" in ref or os.sep in ref
        if looks_like_path:
            base = relative_to or os.getcwd()
            path = os.path.normpath(os.path.join(base, os.path.expanduser(ref)))
            return path if os.path.isfile(path) else None
        entry = self.get(ref)
        return entry.path if entry else None


def unknown_board_problem(ref: str, registry: BoardRegistry) -> Problem:
    ids = ", ".join(registry.ids()) or "(none)"
    return Problem(None, "board", f"no board with this id and no such .toml file; accepted: a board id "
                                  f"({ids}), 'all', or the path of a .toml file" + did_you_mean(ref, registry.ids()), ref)

