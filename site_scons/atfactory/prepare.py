"""From a board reference to everything a build needs: plugins applied, firmware checked.

1. load and check the board (plugin-declared tables allowed);
2. ``atfactory_configure_board``: plugins' adjustments are laid over it and it is checked again;
3. ``atfactory_register_partitions``: plugin partitions are built once, to know their size, and
   the board is checked again with them;
4. the firmware (``firmware=``, else ``[firmware] release``, else the project's firmware for
   the board or its chip) is read and cross-checked.
Every problem is collected into one BoardError.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from .board import Board, BoardRegistry, load_board
from .errors import AtFactoryError, BoardError, FirmwareError, Problem, display_path
from .firmware import Firmware, check_firmware, load_firmware
from .formats.plugin import plugin_partition


@dataclass
class PreparedBoard:
    board: Board
    firmware: Optional[Firmware] = None
    firmware_setting: str = ""
    # partition name -> (build function, the board the plugin saw)
    plugin_builders: Dict[str, Tuple[Callable, Board]] = field(default_factory=dict)
    release: bool = False   # release=yes: development certificates and keys refused (devices rows too)


# What a project says a board's firmware is, when neither the command line nor the board does:
# board -> (path, the file that says so, its key), or None.
DefaultFirmware = Callable[[Board], Optional[Tuple[str, str, str]]]


def prepare_board(ref: str, registry: BoardRegistry, host=None, *, relative_to: Optional[str] = None,
                  firmware_override: Optional[str] = None, extra_tables=None, sandbox: bool = False,
                  default_firmware: Optional[DefaultFirmware] = None, release: bool = False) -> PreparedBoard:
    """``host``: the session's plugin host (its formats read the board); None: stock formats only.
    ``release``: production mode (release=yes), see ``load_board``."""
    from .formats import stock_registry

    formats = host.formats() if host is not None else stock_registry()
    kwargs = dict(relative_to=relative_to, extra_tables=extra_tables, sandbox=sandbox, formats=formats, release=release)
    board = load_board(ref, registry, **kwargs)
    builders: Dict[str, Tuple[Callable, Board]] = {}
    if host is not None:
        overlays = [(f"plugin {name}", data) for name, data in host.configure_board(board)]
        if overlays:
            board = load_board(ref, registry, overlays=overlays, **kwargs)
        added = host.register_partitions(board)
        if added:
            extras = [plugin_partition(board, p, formats) for p in added]
            builders = {p.name: (p.build, board) for p in added}
            board = load_board(ref, registry, overlays=overlays, extra_partitions=extras, **kwargs)
    prepared = PreparedBoard(board, plugin_builders=builders, release=release)
    said_by = None   # the file whose setting names the firmware; None: the command line
    if firmware_override:
        path = os.path.abspath(os.path.join(relative_to or os.getcwd(), firmware_override))
        prepared.firmware_setting = "firmware"
    elif board.firmware:
        path, said_by = board.firmware, board.path
        prepared.firmware_setting = "firmware.release"
    elif default_firmware is not None and (chosen := default_firmware(board)) is not None:
        path, said_by, prepared.firmware_setting = chosen
    else:
        return prepared
    try:
        prepared.firmware = load_firmware(path, board.chip.name, board.at_version, confined=sandbox)
    except FirmwareError as err:
        raise BoardError([Problem(said_by, prepared.firmware_setting, str(err), display_path(path))]) from None
    warnings = list(prepared.firmware.warnings)
    problems = check_firmware(board, prepared.firmware, prepared.firmware_setting, formats, warnings,
                              said_by if said_by != board.path else None)
    if problems:
        raise BoardError(problems)
    if warnings:
        prepared.board = dataclasses.replace(board, warnings=board.warnings + tuple(warnings))
    return prepared


@dataclass
class PreparedBoards:
    boards: List[PreparedBoard]
    warnings: List[str]              # each once, in the order found
    without_firmware: List[str]      # ids of boards that get the AT partitions only
    notes: List[str] = field(default_factory=list)   # how firmware was read, each once


def prepare_boards(ref, registry: BoardRegistry, host=None, *, relative_to: Optional[str] = None,
                   firmware_override: Optional[str] = None, sandbox: bool = False,
                   default_firmware: Optional[DefaultFirmware] = None, release: bool = False) -> PreparedBoards:
    """The boards ``board=`` names ("all", an id, a path; or a list of ids and paths), prepared;
    one BoardError lists every problem."""
    refs = list(ref) if not isinstance(ref, str) else registry.ids() if ref.lower() == "all" else [ref]
    tables = host.board_tables() if host is not None else None
    prepared, problems = [], []
    for r in refs:
        try:
            prepared.append(prepare_board(r, registry, host, relative_to=relative_to, firmware_override=firmware_override,
                                          extra_tables=tables, sandbox=sandbox, default_firmware=default_firmware,
                                          release=release))
        except BoardError as err:
            problems += err.problems
        except AtFactoryError as err:
            problems.append(str(err))
    if problems:
        raise BoardError(problems)
    warnings = list(dict.fromkeys(w for p in prepared for w in p.board.warnings))
    notes = list(dict.fromkeys(f"{display_path(p.firmware.origin)}: {note}" for p in prepared if p.firmware
                               for note in p.firmware.notes))
    return PreparedBoards(prepared, warnings, [p.board.id for p in prepared if p.firmware is None], notes)


def development_warning(prepared: List[PreparedBoard]) -> Optional[str]:
    """One line for a whole build that ships atfactory's development certificates or keys
    (without release=yes, which refuses them); None when no board does."""
    holding = [(p.board.id, p.board.development) for p in prepared if p.board.development]
    if not holding:
        return None
    partitions = sum(len(names) for _, names in holding)
    boards = holding[0][0] if len(holding) == 1 else f"{len(holding)} boards"
    return (f"{partitions} partition{'s' if partitions != 1 else ''} of {boards} hold{'s' if partitions == 1 else ''} "
            "atfactory's development certificates and keys (boards/data/certs or copies; their private keys are "
            "public): fine for development, never for a product; release=yes refuses them")
