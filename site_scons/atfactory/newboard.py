"""``atfactory new ID --extends BASE``: a board file of a vendor's own, and a project to hold it.

The file extends BASE by id and lists, commented out with BASE's values, the keys a vendor
usually changes: the module's name and description, the flash size, the AT UART and radio
settings of factory_param, and one entry per certificate or key file with the path to put the
vendor's own file at.  Before anything is written the text is loaded as a board: what ``new``
writes builds.  An existing file is never overwritten.  Without an atfactory.toml here or in a
folder above, ``new`` writes one, naming the boards folder.
"""
from __future__ import annotations

import os
import re
import tempfile
from typing import List, Optional, Tuple

from .errors import AtFactoryError, BoardError, display_path, format_value
from .project import PROJECT_FILE

MAX_ID = 31   # the id is the module name factory_param holds: at most 31 characters
PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
FACTORY_PARAM_KEYS = ("uart_baudrate", "uart_tx_pin", "uart_rx_pin", "uart_cts_pin", "uart_rts_pin",
                      "tx_max_power", "country_code", "start_channel", "channel_num")
KEY_NOTES = {"uart_cts_pin": "-1: no hardware flow control", "tx_max_power": "in 0.25 dBm",
             "country_code": "with start_channel and channel_num, the Wi-Fi channel plan"}


def check_id(board_id: str) -> None:
    if not (PLAIN_ID.fullmatch(board_id) and ".." not in board_id and len(board_id) <= MAX_ID
            and not board_id.lower().endswith(".toml")):
        raise AtFactoryError(f"ID = {format_value(board_id)}: not a plain name; accepted: letters, digits, '-', '_' "
                             f"and '.', starting with a letter or digit, no '..', at most {MAX_ID} characters, "
                             "without .toml (such as ACME-1)")


def board_text(board_id: str, base_id: str, base) -> str:
    """The board file: BASE's values of every key listed, commented out."""
    fp = base.factory_param
    lines = [f"# {board_id}: a module of your own, on the stock board {base_id} ({base.description}).",
             f"# Written by `atfactory new`. What this file leaves out, or comments out, is {base_id}'s; every key,",
             "# what it accepts and how extends merges: docs/board-files.md. Build it: atfactory build " + board_id,
             f'extends = "{base_id}"', "",
             "[module]",
             f"name = {format_value(board_id)}   # written into factory_param (at most {MAX_ID} characters)",
             f'description = {format_value(f"{board_id} (on {base_id})")}', "",
             f"# [flash]   # {base_id}'s: mode {format_value(base.flash_mode)}, freq "
             f"{format_value(base.flash_freq)}, size {format_value(base.flash_size)}",
             f"# size = {format_value(base.flash_size)}", "",
             f"[factory_param]   # the AT UART and the radio; {base_id}'s values:"]
    for key in FACTORY_PARAM_KEYS:
        if key in fp:
            entry = f"# {key} = {format_value(fp[key])}"
            lines.append(f"{entry}   # {KEY_NOTES[key]}" if key in KEY_NOTES else entry)
    lines += [""] + _certificate_lines(board_id, base)
    lines += ["", "# The ESP-AT release to customize into a factory image: its folder (with download.config) or a",
              "# factory image (or [firmware] in atfactory.toml, or atfactory build --firmware PATH).",
              "# [firmware]", '# release = "../firmware/ESP-AT-RELEASE"']
    return "\n".join(lines) + "\n"


def _certificate_lines(board_id: str, base) -> List[str]:
    """One commented entry per certificate or key file of BASE, with a path to fill in."""
    sets = base.certificate_sets()
    if not sets:
        return [f"# {base.id} has no certificate or key partitions."]
    lines = ["# Certificates and keys (PEM) of your own, in place of the stock development ones, whose private",
             "# keys are public: uncomment the entry of each one you ship and put the file at its path",
             "# (relative to this file). Keys are written owner-readable only; never commit them."]
    in_nvs = any(f.key.startswith("mfg_nvs.") for files in sets.values() for f in files)
    if in_nvs:
        lines.append("# [mfg_nvs]")
    for set_name in sets:
        paths = [f"certs/{board_id}/{os.path.basename(f.path)}" for f in sets[set_name]]
        if in_nvs:
            lines.append(f"# {set_name} = {format_value(paths)}")
        else:
            lines += ["#", "# [[at_customize.partitions]]", f"# name = {format_value(sets[set_name][0].partition)}",
                      f"# source = {format_value(paths)}"]
    return lines


def project_text(boards_dir: str) -> str:
    return "\n".join([
        "# atfactory.toml: this folder is an atfactory project (written by `atfactory new`).",
        "# Every key is optional; paths are relative to this folder.",
        f"boards = {format_value([boards_dir])}            # folders of your board files",
        '# plugins = ["plugins"]          # folders of your plugins (default: plugins/, where there is one)',
        '# default_board = "ACME-1"       # what `atfactory build` builds when no board is named (default: all yours)',
        '# build_dir = "build"            # release folders: <build_dir>/<ID>/',
        '# sign_key = "keys/release.key"  # Ed25519 private key: every build signs its manifest.json',
        "# sandbox = false                # refuse paths a board names outside its own folder",
        "",
        "# [firmware.chip]                # the ESP-AT release (folder or factory image) of each chip's boards",
        '# esp32 = "firmware/ESP32-WROOM-32-AT-V2.4.0.0"',
        "# [firmware.board]               # or of one board",
        '# ACME-1 = "firmware/factory_ACME-1.bin"',
    ]) + "\n"


def new_board(board_id: str, base_id: str, folder: Optional[str], cwd: str) -> Tuple[str, Optional[str], List[str]]:
    """Write ``<folder>/<ID>.toml`` (and an atfactory.toml where there is no project): return
    (board file, project file written or None, notes).  Nothing is written on any problem."""
    from .board import load_board
    from .plugins import make_session
    from .project import find_project, load_project

    check_id(board_id)
    found = find_project(cwd)
    project = load_project(found) if found else None
    if folder is None:
        folder = project.board_dirs[0] if project and project.board_dirs else os.path.join(
            project.root if project else cwd, "boards")
    folder = os.path.abspath(os.path.join(cwd, folder))
    path = os.path.join(folder, f"{board_id}.toml")
    if os.path.lexists(path):
        raise AtFactoryError(f"{display_path(path)}: exists; nothing was overwritten; accepted: an id without a "
                             "board file in that folder")
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise AtFactoryError(f"--dir {display_path(folder)}: is a file; accepted: a folder (made if missing)")
    host, registry = make_session(project.plugin_dirs if project else (), board_dirs=project.board_dirs if project else ())
    entry = registry.get(base_id)
    if entry is None:
        raise AtFactoryError(f"--extends {format_value(base_id)}: no board with this id; accepted: the id of a stock "
                             f"board or of one of the project's ({', '.join(registry.ids())})")
    taken = registry.get(board_id)
    if taken is not None:
        raise AtFactoryError(f"ID = {format_value(board_id)}: the board {taken.id} ({display_path(taken.path)}) has "
                             "this id; accepted: an id no board has (board ids are matched case-insensitively)")
    base = load_board(entry.id, registry, extra_tables=host.board_tables(), formats=host.formats())
    text = board_text(board_id, entry.id, base)
    notes = []
    if project is not None and folder not in project.board_dirs:
        notes.append(f"{display_path(folder)} is not one of the project's boards folders ({display_path(project.path)}"
                     f" boards = {[display_path(d) for d in project.board_dirs]}): build the board by its path, or "
                     "add the folder there")
    os.makedirs(folder, exist_ok=True)
    _check_loads(text, folder, board_id, registry, host)
    _create(path, text)
    project_file = None
    if project is None:
        project_file = os.path.join(cwd, PROJECT_FILE)
        try:
            _create(project_file, project_text(os.path.relpath(folder, cwd)))
        except BaseException:
            os.unlink(path)   # all or nothing
            raise
    return path, project_file, notes


def _check_loads(text: str, folder: str, board_id: str, registry, host) -> None:
    """The text, as a board file in ``folder``, must load: a problem is a bug of this module."""
    from .board import load_board

    fd, probe = tempfile.mkstemp(prefix=f".{board_id}.", suffix=".toml.new", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        try:
            load_board(probe, registry, board_id=board_id, extra_tables=host.board_tables(), formats=host.formats())
        except BoardError as err:
            raise AtFactoryError(f"the board file atfactory new would write does not load ({err.lines()[0]}); "
                                 "nothing was written; this is a bug in atfactory: please report it") from None
    finally:
        os.unlink(probe)


def _create(path: str, text: str) -> None:
    """Create ``path`` with ``text``; never replace a file (O_EXCL)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise AtFactoryError(f"{display_path(path)}: exists; nothing was overwritten") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
