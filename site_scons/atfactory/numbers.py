"""Numbers as users write them in board files and partition CSVs."""
from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*(0[xX][0-9a-fA-F]+|[0-9]+)\s*([kKmM]?)\s*$")


def parse_int(value) -> int:
    """An integer from TOML (int) or from a string: "0x24000", "147456".

    Raises ValueError for anything else; a leading zero is decimal, never octal.
    """
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        sign = -1 if text.startswith("-") else 1
        if text[:1] in "+-":
            text = text[1:]
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
            return sign * int(text, 16)
        if re.fullmatch(r"[0-9]+", text):
            return sign * int(text, 10)
    raise ValueError(f"not a number: {value!r}")


def parse_size(value) -> int:
    """A size: an integer, or a string with an optional K or M suffix ("8K", "1M", "0x2000")."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a size")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if m:
            digits, suffix = m.groups()
            n = int(digits, 16) if digits[:2] in ("0x", "0X") else int(digits, 10)
            return n * {"": 1, "k": 1024, "m": 1024 * 1024}[suffix.lower()]
    raise ValueError(f"not a size: {value!r}")


def format_size(n: int) -> str:
    """4096 -> "4K" (0x1000), for messages."""
    if n % (1024 * 1024) == 0 and n:
        human = f"{n // (1024 * 1024)}M"
    elif n % 1024 == 0 and n:
        human = f"{n // 1024}K"
    else:
        human = f"{n} bytes"
    return f"{human} (0x{n:x})"
