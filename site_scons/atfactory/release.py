"""An ESP-AT release folder: its download.config and the files it lists.

One reader for the build (firmware from a release folder) and the read-back tools (a release
folder read as the flash it describes).
"""
from __future__ import annotations

import os
from typing import Callable, List, NamedTuple, Optional, Tuple

from .download_config import DownloadConfig, decode_download_config
from .errors import FormatError, InputError, ReleaseError, display_path
from .fsutil import inside, read_input, relative_name_problem
from .layout import overlaps

CONFIG = "download.config"

class ReleaseFile(NamedTuple):
    offset: int
    path: str        # as download.config names it, relative to the folder
    full: str        # the file on disk


class Release(NamedTuple):
    folder: str
    config_path: str
    config: DownloadConfig
    files: Tuple[ReleaseFile, ...]   # in download.config's order, each once
    warnings: Tuple[str, ...] = ()   # what is odd but flashes as meant: an entry listed twice


def is_customized(rel: str) -> bool:
    """The files atfactory builds itself: at_customize.bin and customized_partitions/."""
    return rel == "at_customize.bin" or rel.startswith("customized_partitions/")


def release_root(folder: str) -> str:
    """The release folder ``folder`` belongs to: for a device's folder of a devices batch
    (``<release>/devices/<device_id>``, whose download.config names the shared files as
    ``../../...``) the board's release folder; for any other, ``folder`` itself."""
    from .devices import DEVICES_DIR

    parent = os.path.dirname(os.path.abspath(folder))
    root = os.path.dirname(parent)
    if os.path.basename(parent) == DEVICES_DIR and os.path.isfile(os.path.join(root, CONFIG)):
        return root
    return folder


def read_release(folder: str, wanted: Callable[[str], bool] = lambda rel: True, confined: bool = False,
                 root: Optional[str] = None) -> Release:
    """The release in ``folder``, with the files ``wanted`` keeps; every missing one is named at once.

    Every name download.config lists is data until checked: a relative path inside the folder
    (no '..', no absolute path, no control characters), no two differing only in case (they are
    one file on a case-insensitive disk).  ``root``: the release folder a device's folder
    belongs to (``release_root``): names may then lead out of ``folder`` with '..' as far as
    ``root`` and no further.  ``confined`` (sandbox=yes, flash): the files, symbolic links
    resolved, must be inside the folder (``root``) too.  An entry listed twice (the same file at
    the same offset, as some ESP-AT releases have it) is kept once with a warning; two files at
    one offset, or files whose bytes overlap, are refused naming both entries."""
    config_path = os.path.join(folder, CONFIG)
    if not os.path.isfile(config_path):
        raise ReleaseError(f"no {CONFIG}; an ESP-AT release folder has one")
    try:
        config = decode_download_config(read_input(config_path))
    except InputError as err:
        raise ReleaseError(f"{CONFIG}: {err.message}") from None
    except FormatError as err:
        raise ReleaseError(f"{CONFIG}: {err}") from None
    files: List[ReleaseFile] = []
    missing = []
    folded = {}
    for offset, rel in config.entries:
        problem = _name_problem(rel, folder, root)
        if problem:
            raise ReleaseError(f"{CONFIG}: the entry at 0x{offset:x} names {rel!r}, which {problem}; accepted: a "
                               "path relative to the release folder, '/'-separated, without '..'"
                               + (" but to the shared files of a device's release folder"
                                  if root and os.path.abspath(root) != os.path.abspath(folder) else ""))
        other = folded.setdefault(rel.lower(), rel)
        if other != rel:
            raise ReleaseError(f"{CONFIG}: {other!r} and {rel!r} differ only in case, one file on a case-insensitive "
                               "disk; accepted: names that differ in more than case")
    entries, warnings = _distinct_entries(config.entries, display_path(config_path))
    for offset, rel in entries:
        if not wanted(rel):
            continue
        full = os.path.normpath(os.path.join(folder, rel))
        if confined and os.path.lexists(full) and not inside(full, root or folder):
            raise ReleaseError(f"{CONFIG}: {rel!r} resolves outside the release folder"
                               f"{'' if root else ' (sandbox=yes)'}; accepted: "
                               "files inside it, symbolic links included only when they point inside it")
        if not os.path.isfile(full):
            missing.append(rel)
            continue
        files.append(ReleaseFile(offset, rel, full))
    if missing:
        raise ReleaseError(f"{CONFIG} names files that are not in the folder: " + ", ".join(missing))
    spans = [(f.offset, f.offset + os.path.getsize(f.full), f.path) for f in files]
    for (b, b_end, b_path), (a, a_end, a_path) in overlaps((lo, hi, (lo, hi, rel)) for lo, hi, rel in spans):
        raise ReleaseError(f"{CONFIG}: 0x{b:x} {b_path} (0x{b:x}-0x{b_end:x}) overlaps 0x{a:x} {a_path} "
                           f"(0x{a:x}-0x{a_end:x}); accepted: files whose bytes do not overlap")
    return Release(folder, config_path, config, tuple(files), tuple(warnings))


def _name_problem(rel: str, folder: str, root: Optional[str]) -> str:
    """``relative_name_problem``; with ``root``, leading '..' steps are allowed as far as ``root``."""
    if root is None or not isinstance(rel, str):
        return relative_name_problem(rel)
    steps = 0
    while rel[steps * 3:].startswith("../"):
        steps += 1
    problem = relative_name_problem(rel[steps * 3:])
    if problem:
        return problem
    if os.path.relpath(os.path.normpath(os.path.join(folder, rel)), root).startswith(".."):
        return "leads out of the release folder"
    return ""


def _distinct_entries(entries, shown: str) -> Tuple[List[Tuple[int, str]], List[str]]:
    """The entries with exact repeats dropped (one warning each); two files at one offset refused."""
    kept = list(dict.fromkeys(entries))
    at: dict = {}
    for offset, rel in kept:
        other = at.setdefault(offset, rel)
        if other != rel:
            raise ReleaseError(f"{CONFIG}: 0x{offset:x} {other} and 0x{offset:x} {rel}: two files at one offset; "
                               "accepted: one file per offset")
    times = {2: "twice"}
    warnings = [f"{shown}: 0x{offset:x} {rel} is listed {times.get(n, f'{n} times')}; it is flashed once"
                for offset, rel in kept for n in [entries.count((offset, rel))] if n > 1]
    return kept, warnings
