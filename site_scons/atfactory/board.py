"""The board model: one module's chip, flash, factory_param and AT partitions.

``load_board`` reads a board file (following ``extends``), checks every value and every input
file it names (``checks``), and returns a :class:`Board`, or raises one :class:`BoardError`
listing every problem it found.  Nothing here imports SCons; the build, the tests and the
command-line tools all use this module.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import partition_table as pt
from .chips import Chip, flash_size_bytes
from .errors import BoardError, Problem, did_you_mean, display_path
from .formats import CertificateFile, Content, FormatRegistry, certificate_sets
from .layout import first_free
from .numbers import format_size, parse_int, parse_size
from .registry import DEFAULT_BOARD, BoardEntry, BoardRegistry, unknown_board_problem  # noqa: F401 (re-exported)
from .toml_layers import MFG_NVS_FILE_KEYS, Layer, Merged, check_layer, read_toml, resolve_sources
from .fsutil import inside

AT_CUSTOMIZE_SECTOR = pt.AT_CUSTOMIZE_SECTOR


# --- the model ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Partition:
    name: str
    type: int
    subtype: int
    offset: int
    size: int
    sources: Tuple[str, ...]
    content: Optional[Content]   # None: only listed in at_customize.bin
    declared: Tuple[str, ...] = ()   # the board's own source key (sources: what the content reads)

    @property
    def end(self) -> int:
        return self.offset + self.size



@dataclass(frozen=True)
class Board:
    id: str
    path: str
    files: Tuple[str, ...]          # the extends chain, base first, this board last
    module_name: str
    chip: Chip
    platform: str
    description: str
    at_version: str
    flash_mode: str
    flash_freq: str
    flash_size: str
    factory_param: Dict[str, object]   # every field of factory_param.FIELDS
    at_customize_offset: int
    at_customize_size: int
    partitions: Tuple[Partition, ...]
    warnings: Tuple[str, ...] = ()
    data: Dict[str, object] = field(default_factory=dict)   # the merged TOML, for plugins
    firmware: Optional[str] = None     # [firmware] release, resolved against its board file
    development: Tuple[str, ...] = ()  # partitions holding atfactory's development certificates or keys

    @property
    def flash_size_bytes(self) -> int:
        return flash_size_bytes(self.flash_size)

    def partition(self, name: str) -> Optional[Partition]:
        for p in self.partitions:
            if p.name == name:
                return p
        return None

    def certificate_sets(self) -> Dict[str, List[CertificateFile]]:
        """Every certificate, key and CA file by set ("server_cert"), whichever partition holds it."""
        return certificate_sets([p.content for p in self.partitions if p.content is not None])


# --- loading --------------------------------------------------------------------------------

def load_board(ref: str, registry: BoardRegistry, *, board_id: Optional[str] = None,
               relative_to: Optional[str] = None, extra_tables: Optional[Dict[str, Callable]] = None,
               overlays: Sequence[Tuple[str, dict]] = (), extra_partitions: Sequence[dict] = (),
               sandbox: bool = False, formats: Optional[FormatRegistry] = None, release: bool = False) -> Board:
    """Read, merge and check a board.  Raises BoardError with every problem found.

    ``ref`` is a board id or a .toml path (relative to ``relative_to``, default the cwd).
    ``overlays`` are (origin, board-shaped dict) laid over the files, as plugins' adjustments;
    ``extra_partitions`` are partitions whose content is already made (plugin partitions):
    dicts with name, type, subtype, size, offset (None: placed in free space), origin and
    content (a :class:`Content`).  ``sandbox``: paths the board file names (and files it extends by
    path name) must resolve inside the board file's folder.  ``formats``: the session's format
    registry (default: the stock formats).  ``release`` (release=yes): atfactory's development
    certificates and keys, and expired certificates, are refused.
    """
    from .checks import check_board
    from .formats import stock_registry

    problems: List[Problem] = []
    path = registry.resolve(ref, relative_to=relative_to)
    if path is None:
        raise BoardError([unknown_board_problem(ref, registry)])
    root = os.path.realpath(os.path.dirname(path)) if sandbox else None
    layers = _load_chain(path, registry, problems, [], extra_tables, root)
    if problems or not layers:
        raise BoardError(problems)
    files = tuple(layer.path for layer in layers)
    for origin, data in overlays:
        check_layer(origin, data, problems, extra_tables)
        resolve_sources(os.path.join(os.getcwd(), "overlay"), data)
        layers.append(Layer(origin, data))
    if problems:
        raise BoardError(problems)
    merged = Merged()
    for layer in layers:
        merged.lay(layer, problems)
    for table, checker in (extra_tables or {}).items():
        # Plugin tables are checked merged, as the plugin will read them.
        if isinstance(merged.data.get(table), dict):
            checker(path, merged.data[table], problems)
    _add_extra_partitions(merged, extra_partitions, problems)
    if board_id is None:
        entry = registry.get(os.path.splitext(os.path.basename(path))[0])
        board_id = entry.id if entry and entry.path == path else os.path.splitext(os.path.basename(path))[0]
    board = check_board(merged, path, board_id, files, problems, formats or stock_registry(), release)
    if problems:
        raise BoardError(problems)
    return board


def _add_extra_partitions(merged: Merged, extras: Sequence[dict], problems: List[Problem]) -> None:
    """Append plugin partitions, placing those without an offset in the first free space."""
    names = {p["name"] for p in merged.partitions}
    for extra in extras:
        name, origin = extra["name"], extra["origin"]
        if name in names:
            problems.append(Problem(origin, f"at_customize.partitions[{name}]", "a partition of this name "
                                    "already exists in the board; plugin partitions need names of their own"))
            continue
        names.add(name)
        part = {k: extra[k] for k in ("name", "type", "subtype", "offset", "size")}
        merged.made[name] = extra["content"]
        if part["offset"] is None:
            part["offset"] = _free_offset(merged, part)
            if part["offset"] is None:
                problems.append(Problem(origin, f"at_customize.partitions[{name}].offset", "no free space of "
                                        f"{format_size(_size_or_zero(part['size']))} left in the at_customize region"))
                continue
        merged.partitions.append(part)
        for key in part:
            merged.partition_origin[(name, key)] = origin


def _size_or_zero(raw) -> int:
    try:
        return parse_size(raw)
    except ValueError:
        return 0


def _free_offset(merged: Merged, part: dict) -> Optional[int]:
    at = merged.data.get("at_customize") or {}
    try:
        lo = parse_int(at.get("offset")) + AT_CUSTOMIZE_SECTOR
        hi = lo - AT_CUSTOMIZE_SECTOR + parse_size(at.get("size"))
        size = parse_size(part["size"])
    except (ValueError, TypeError):
        return None
    align = pt.APP_ALIGN if part["type"] in (0, "app") else pt.DATA_ALIGN
    taken = []
    for p in merged.partitions:
        try:
            taken.append((parse_int(p["offset"]), parse_int(p["offset"]) + parse_size(p["size"])))
        except (ValueError, TypeError, KeyError):
            continue
    return first_free(taken, lo, hi, size, align)


def _check_sandbox(path: str, data: dict, root: str, problems: List[Problem]) -> None:
    """sandbox=yes: every path this (untrusted) file names must resolve inside ``root``."""
    def refuse(key: str, value: str):
        problems.append(Problem(path, key, f"resolves outside {display_path(root)}, the folder of the board "
                                           "named on the command line (sandbox=yes); accepted: files inside it, "
                                           "symbolic links included only when they point inside it", value))

    at = data.get("at_customize") or {}
    for part in at.get("partitions", []) if isinstance(at, dict) else []:
        if isinstance(part, dict):
            for source in part.get("source", []) or []:
                if not inside(source, root):
                    refuse(f"at_customize.partitions[{part.get('name')}].source", source)
    table = data.get("mfg_nvs")
    for key, value in (table.items() if isinstance(table, dict) else ()):
        if key not in MFG_NVS_FILE_KEYS:
            continue
        for source in [value] if isinstance(value, str) else value if isinstance(value, list) else []:
            if isinstance(source, str) and not inside(source, root):
                refuse(f"mfg_nvs.{key}", source)
    vendor = table.get("namespaces") if isinstance(table, dict) else None
    for ns, keys in (vendor.items() if isinstance(vendor, dict) else ()):
        for key, spec in (keys.items() if isinstance(keys, dict) else ()):
            if isinstance(spec, dict) and isinstance(spec.get("file"), str) and not inside(spec["file"], root):
                refuse(f"mfg_nvs.namespaces.{ns}.{key}.file", spec["file"])
    fw = data.get("firmware")
    if isinstance(fw, dict) and isinstance(fw.get("release"), str):
        release = os.path.join(os.path.dirname(path), os.path.expanduser(fw["release"]))
        if not inside(release, root):
            refuse("firmware.release", fw["release"])


def _load_chain(path: str, registry: BoardRegistry, problems: List[Problem], stack: List[str],
                extra_tables, sandbox_root: Optional[str] = None) -> List[Layer]:
    """The extends chain of ``path``, base first.  With ``sandbox_root``, this file is untrusted:
    the paths it names must stay inside the root; a board reached by id (a registered board) is
    trusted, and so is everything it names."""
    path = os.path.abspath(path)
    if path in stack:
        cycle = " -> ".join(os.path.basename(p) for p in stack + [path])
        problems.append(Problem(stack[-1], "extends", f"cycle in extends: {cycle}"))
        return []
    written: dict = {}
    data = read_toml(path, problems, written)
    if data is None:
        return []
    before = len(problems)
    check_layer(path, data, problems, extra_tables)
    if len(problems) > before:
        return []
    resolve_sources(path, data)
    if sandbox_root is not None:
        _check_sandbox(path, data, sandbox_root, problems)
    chain: List[Layer] = []
    ext = data.get("extends")
    if isinstance(ext, str):
        base = registry.resolve(ext, relative_to=os.path.dirname(path))
        if base is None:
            ids = ", ".join(registry.ids()) or "(none)"
            problems.append(Problem(path, "extends", f"no board with this id and no such file; accepted: a board "
                                                     f"id ({ids}) or a .toml path relative to this file"
                                                     + did_you_mean(ext, registry.ids()), ext))
            return []
        by_id = registry.get(ext) is not None and registry.get(ext).path == base
        base_root = sandbox_root
        if sandbox_root is not None:
            if by_id:
                base_root = None      # a registered board: trusted, like the stock boards
            elif not inside(base, sandbox_root):
                problems.append(Problem(path, "extends", f"resolves outside {display_path(sandbox_root)}, the folder "
                                        "of the board named on the command line (sandbox=yes); accepted: a board id "
                                        "or a file inside that folder", ext))
                return []
        chain = _load_chain(base, registry, problems, stack + [path], extra_tables, base_root)
        if not chain:
            return []
    return chain + [Layer(path, data, written)]


