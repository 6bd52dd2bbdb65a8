"""Text for the command line of the SConstruct: board help, the plugin listing, list variables."""
from __future__ import annotations

import os

from .toml_layers import tomllib


def split_list(text: str):
    return [part.strip() for part in text.split(",") if part.strip()]


def plugin_listing(host) -> str:
    lines = ["Plugins (the last listed runs first within a hook):"]
    for info in host.describe():
        version = f" {info.version}" if info.version else ""
        lines.append(f"  {info.name}{version}  from {info.origin}")
        lines.append("      hooks: " + (", ".join(info.hooks) or "(none)"))
    return "\n".join(lines)


def board_help(registry) -> str:
    lines = ["", "Boards (board=ID; 'all' builds every one), with chip and ESP-AT release:"]
    width = max((len(i) for i in registry.ids()), default=0)
    summaries = [(entry.id, *_summary(entry.path, registry)) for entry in registry.entries()]
    at_width = max([3] + [len(version) for _, _, version, _ in summaries])   # "2.4", "2.4.0"
    for board_id, chip, version, text in summaries:
        lines.append(f"    {board_id:<{width}}  {chip:<8}  AT {version:<{at_width}}  {text}")
    return "\n".join(lines) + "\n"


def _summary(path: str, registry):
    """(chip, at_version, description) as the board file says them, chip and release following
    its extends chain (unchecked: the build checks)."""
    found, leaf = {}, path
    for depth in range(16):
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError):
            if depth == 0:
                return "?", "?", "(does not parse: build it to see why)"
            break
        module = data.get("module") if isinstance(data.get("module"), dict) else {}
        for key in ("chip", "at_version", "description"):
            if key not in found and isinstance(module.get(key), str):
                found[key] = module[key]
        base = data.get("extends")
        path = registry.resolve(base, relative_to=os.path.dirname(path)) if isinstance(base, str) else None
        if path is None:
            break
    return found.get("chip", "?"), found.get("at_version", "2.4"), found.get("description") or os.path.basename(leaf)
