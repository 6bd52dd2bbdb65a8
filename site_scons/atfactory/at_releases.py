"""The ESP-AT releases a board can target, and what differs between their generators.

A board's ``[module] at_version`` names one of these; each chip in ``chips.CHIPS`` says which
of them exist for it.  Where two releases of one minor version encode something differently,
each gets its own entry.
"""
from __future__ import annotations

from typing import Dict, Iterable, NamedTuple


class AtRelease(NamedTuple):
    version: str                 # as written in board files: "2.4"
    title: str                   # as people read it: "ESP-AT v2.4.1.0 and later v2.4"
    pki_typed_by_kind: bool      # certificate/key items typed by kind (ca 1, cert 2, key 3); else all 2


# In the order messages list them.
AT_RELEASES: Dict[str, AtRelease] = {r.version: r for r in (
    AtRelease("2.4", "ESP-AT v2.4", pki_typed_by_kind=True),
    AtRelease("2.2", "ESP-AT v2.2", pki_typed_by_kind=False),
)}
DEFAULT_AT_VERSION = "2.4"


def describe_versions(versions: Iterable[str]) -> str:
    """'"2.4" or "2.2"', '"2.4", "2.2" or "2.0"'."""
    quoted = [f'"{v}"' for v in versions]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
