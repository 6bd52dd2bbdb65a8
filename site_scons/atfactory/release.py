"""An ESP-AT release folder: its download.config and the files it lists.

One reader for the build (firmware from a release folder) and the read-back tools (a release
folder read as the flash it describes).
"""
from __future__ import annotations

import os
from typing import Callable, List, NamedTuple, Tuple

from .download_config import DownloadConfig, decode_download_config
from .errors import FormatError, InputError, ReleaseError
from .fsutil import read_input

CONFIG = "download.config"

class ReleaseFile(NamedTuple):
    offset: int
    path: str        # as download.config names it, relative to the folder
    full: str        # the file on disk


class Release(NamedTuple):
    folder: str
    config_path: str
    config: DownloadConfig
    files: Tuple[ReleaseFile, ...]   # in download.config's order


def is_customized(rel: str) -> bool:
    """The files atfactory builds itself: at_customize.bin and customized_partitions/."""
    return rel == "at_customize.bin" or rel.startswith("customized_partitions/")


def read_release(folder: str, wanted: Callable[[str], bool] = lambda rel: True) -> Release:
    """The release in ``folder``, with the files ``wanted`` keeps; every missing one is named at once."""
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
    for offset, rel in config.entries:
        if not wanted(rel):
            continue
        full = os.path.normpath(os.path.join(folder, rel))
        if not os.path.isfile(full):
            missing.append(rel)
            continue
        files.append(ReleaseFile(offset, rel, full))
    if missing:
        raise ReleaseError(f"{CONFIG} names files that are not in the folder: " + ", ".join(missing))
    return Release(folder, config_path, config, tuple(files))
