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
    lines = ["", "Boards (board=ID; 'all' builds every one):"]
    width = max((len(i) for i in registry.ids()), default=0)
    for entry in registry.entries():
        lines.append(f"    {entry.id:<{width}}  {_description(entry.path)}")
    return "\n".join(lines) + "\n"


def _description(path: str) -> str:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return "(does not parse: build it to see why)"
    module = data.get("module") if isinstance(data.get("module"), dict) else {}
    text = module.get("description") if isinstance(module.get("description"), str) else ""
    return text or os.path.basename(path)
