"""download.config: one line of flash options and ``offset path`` pairs (FORMATS.md §5)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Tuple

from .errors import FormatError

_SPACE = re.compile(r"\s")
MAX_OFFSET = 1 << 28   # 256 MiB: past the largest flash any ESP chip addresses (128 MiB)


@dataclass(frozen=True)
class DownloadConfig:
    flash_mode: str
    flash_freq: str
    flash_size: str
    entries: Tuple[Tuple[int, str], ...]   # (offset, path relative to the release folder)


def encode_download_config(config: DownloadConfig) -> bytes:
    words = ["--flash_mode", config.flash_mode, "--flash_freq", config.flash_freq,
             "--flash_size", config.flash_size]
    for offset, path in config.entries:
        if _SPACE.search(path):
            raise FormatError(f"download.config: path {path!r} contains white space, which the format cannot hold")
        if not 0 <= offset < MAX_OFFSET:
            raise FormatError(f"download.config: offset 0x{offset:x} for {path!r} is beyond any flash; "
                              f"accepted: 0 to 0x{MAX_OFFSET - 1:x}")
        words += [f"0x{offset:x}", path]
    for word in words:
        # The line is split on white space: every word must be one non-empty ASCII token.
        if not word or _SPACE.search(word) or not word.isascii():
            raise FormatError(f"download.config: {word!r} cannot be written: values and paths must be "
                              "non-empty ASCII without white space")
    return (" ".join(words) + "\n").encode("ascii")


def decode_download_config(data: bytes) -> DownloadConfig:
    try:
        words = data.decode("ascii").split()
    except UnicodeDecodeError as exc:
        raise FormatError("download.config is not ASCII text", offset=exc.start) from None
    options = {}
    entries: List[Tuple[int, str]] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            if i + 1 >= len(words):
                raise FormatError(f"download.config: option {word} has no value")
            options[word[2:].replace("-", "_")] = words[i + 1]
            i += 2
            continue
        if i + 1 >= len(words):
            raise FormatError(f"download.config: offset {word} has no file")
        try:
            offset = int(word, 0)
        except ValueError:
            raise FormatError(f"download.config: {word[:40]!r} is neither an option nor an offset") from None
        if not 0 <= offset < MAX_OFFSET:
            raise FormatError(f"download.config: offset {word[:40]} of {words[i + 1][:80]!r} is beyond any flash; "
                              f"accepted: 0 to 0x{MAX_OFFSET - 1:x}")
        entries.append((offset, words[i + 1]))
        i += 2
    missing = [k for k in ("flash_mode", "flash_freq", "flash_size") if k not in options]
    if missing:
        raise FormatError("download.config: missing " + ", ".join("--" + k for k in missing))
    return DownloadConfig(options["flash_mode"], options["flash_freq"], options["flash_size"], tuple(entries))

