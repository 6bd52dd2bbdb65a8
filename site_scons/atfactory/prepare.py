"""From a board reference to everything a build needs: plugins applied, firmware checked.

1. load and check the board (plugin-declared tables allowed);
2. ``atfactory_configure_board``: plugins' adjustments are laid over it and it is checked again;
3. ``atfactory_register_partitions``: plugin partitions are built once, to know their size, and
   the board is checked again with them;
4. the firmware (``firmware=`` or ``[firmware] release``) is read and cross-checked.
Every problem is collected into one BoardError.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from .board import Board, BoardRegistry, load_board
from .content import Content
from .errors import AtFactoryError, BoardError, Problem, display_path
from .firmware import Firmware, FirmwareError, check_firmware, load_firmware

KIND_PLUGIN = "plugin"


@dataclass
class PreparedBoard:
    board: Board
    firmware: Optional[Firmware] = None
    firmware_setting: str = ""
    # partition name -> (build function, the board the plugin saw)
    plugin_builders: Dict[str, Tuple[Callable, Board]] = field(default_factory=dict)


def prepare_board(ref: str, registry: BoardRegistry, host=None, *, relative_to: Optional[str] = None,
                  firmware_override: Optional[str] = None, extra_tables=None, sandbox: bool = False) -> PreparedBoard:
    kwargs = dict(relative_to=relative_to, extra_tables=extra_tables, sandbox=sandbox)
    board = load_board(ref, registry, **kwargs)
    builders: Dict[str, Tuple[Callable, Board]] = {}
    if host is not None:
        overlays = [(f"plugin {name}", data) for name, data in host.configure_board(board)]
        if overlays:
            board = load_board(ref, registry, overlays=overlays, **kwargs)
        added = host.register_partitions(board)
        if added:
            extras = [_plugin_partition(board, p) for p in added]
            builders = {p.name: (p.build, board) for p in added}
            board = load_board(ref, registry, overlays=overlays, extra_partitions=extras, **kwargs)
    prepared = PreparedBoard(board, plugin_builders=builders)
    if firmware_override:
        path = os.path.abspath(os.path.join(relative_to or os.getcwd(), firmware_override))
        prepared.firmware_setting = "firmware"
    elif board.firmware:
        path = board.firmware
        prepared.firmware_setting = "firmware.release"
    else:
        return prepared
    try:
        prepared.firmware = load_firmware(path, board.chip.name)
    except FirmwareError as err:
        raise BoardError([Problem(None if firmware_override else board.path, prepared.firmware_setting,
                                  str(err), display_path(path))]) from None
    problems = check_firmware(board, prepared.firmware, prepared.firmware_setting)
    if problems:
        raise BoardError(problems)
    return prepared


def _plugin_partition(board: Board, p) -> dict:
    try:
        data = p.build(board, p.inputs)
    except AtFactoryError:
        raise
    except Exception as exc:
        raise AtFactoryError(f"plugin {p.plugin}: partition {p.name}: build raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, (bytes, bytearray)):
        raise AtFactoryError(f"plugin {p.plugin}: partition {p.name}: build returned {type(data).__name__}, "
                             "expected bytes")
    try:
        values = json.loads(json.dumps(p.values, sort_keys=True))
    except (TypeError, ValueError):
        raise AtFactoryError(f"plugin {p.plugin}: partition {p.name}: values must be JSON-able "
                             "(numbers, strings, lists, dicts)") from None
    spec = {"plugin": p.plugin, "partition": p.name, "values": values,
            "files": [os.path.basename(i) for i in p.inputs]}
    content = Content(KIND_PLUGIN, len(data), spec, p.inputs, secret=p.secret)
    return {"name": p.name, "type": p.type, "subtype": p.subtype, "offset": p.offset, "size": p.size,
            "origin": f"plugin {p.plugin}", "content": content}
