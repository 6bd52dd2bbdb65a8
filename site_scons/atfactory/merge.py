"""The factory image: every flashed file at its offset in one image of the full flash size.

The merge itself is esptool's (``esptool.cmds.merge_bin``): it fills gaps with 0xFF and
writes the flash mode, frequency and size into the bootloader header with each chip's own
encoding (and refreshes the header's SHA-256 digest where the image has one).  This module
checks what goes in first, so that an overlap or an entry past the end of flash is reported
with the names of the files involved.
"""
from __future__ import annotations

import os
from typing import List, Sequence, Tuple

from .errors import MergeError, display_path
from .layout import overlaps


def check_layout(entries: Sequence[Tuple[int, str, int]], flash_bytes: int) -> None:
    """``entries``: (offset, name, length).  Raises MergeError on overlap or overflow."""
    ordered = sorted(entries)
    for offset, name, length in ordered:
        if offset < 0 or offset + length > flash_bytes:
            raise MergeError(f"factory image: {name} at 0x{offset:x} ({length} bytes) ends past the "
                             f"0x{flash_bytes:x}-byte flash")
    for (b_off, b_name, _), (a_off, a_name, a_len) in overlaps((e[0], e[0] + e[2], e) for e in ordered):
        raise MergeError(f"factory image: {b_name} at 0x{b_off:x} overlaps {a_name} "
                         f"(0x{a_off:x}-0x{a_off + a_len:x})")


def merge_factory_image(chip: str, flash_mode: str, flash_freq: str, flash_size: str, flash_bytes: int,
                        entries: Sequence[Tuple[int, str]]) -> bytes:
    """Merge files (offset, path) into one image of ``flash_bytes`` with esptool."""
    check_layout([(o, display_path(p), os.path.getsize(p)) for o, p in entries], flash_bytes)
    from esptool.cmds import merge_bin
    from esptool.logger import log

    log.set_verbosity("silent")
    pairs: List[Tuple[int, bytes]] = []
    for offset, path in sorted(entries):
        with open(path, "rb") as f:
            pairs.append((offset, f.read()))
    try:
        data = merge_bin(pairs, chip, output=None, flash_freq=flash_freq, flash_mode=flash_mode,
                         flash_size=flash_size, format="raw", pad_to_size=flash_size)
    except Exception as exc:  # esptool's FatalError and friends
        raise MergeError(f"factory image: esptool could not merge: {exc}") from None
    if len(data) != flash_bytes:
        raise MergeError(f"factory image: esptool wrote {len(data)} bytes, expected {flash_bytes}")
    return bytes(data)
