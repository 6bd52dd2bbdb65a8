"""The board model: one module's chip, flash, factory_param and AT partitions.

``load_board`` reads a board file (following ``extends``), checks every value and every input
file it names, and returns a :class:`Board`, or raises one :class:`BoardError` listing every
problem it found.  Nothing here imports SCons; the build, the tests and the command-line tools
all use this module.
"""
from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import factory_param as fp
from . import partition_table as pt
from . import pki
from .chips import CHIPS, FLASH_MODES, Chip, describe_ranges, flash_size_bytes
from .content import Content, read_content
from .errors import BoardError, ContentError, Problem, display_path
from .numbers import format_size, parse_int, parse_size
from .toml_layers import Layer, Merged, check_layer, read_toml, resolve_sources

DEFAULT_BOARD = "WROOM-32"
AT_CUSTOMIZE_SECTOR = 0x1000   # the first sector of the region holds at_customize.bin itself
_PRINTABLE = re.compile(r"^[\x20-\x7e]+$")
_COUNTRY = re.compile(r"^[A-Za-z0-9]{1,3}$")
_PARTITION_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")
_REQUIRED_FACTORY_PARAM = [f.name for f in fp.FIELDS
                           if f.name not in fp.DEFAULTS and f.name not in ("platform", "module_name")]


# --- the registry of known boards -----------------------------------------------------------

@dataclass(frozen=True)
class BoardEntry:
    id: str
    path: str
    origin: str  # "boards/", a plugin name, ...


class BoardRegistry:
    """Board ids (matched case-insensitively) to board files; catches duplicate ids."""

    def __init__(self):
        self._entries: Dict[str, BoardEntry] = {}

    def add_folder(self, folder: str, origin: Optional[str] = None) -> None:
        if not os.path.isdir(folder):
            return
        for name in sorted(os.listdir(folder)):
            if name.endswith(".toml") and os.path.isfile(os.path.join(folder, name)):
                self.add(os.path.join(folder, name), origin=origin or folder)

    def add(self, path: str, board_id: Optional[str] = None, origin: str = "") -> BoardEntry:
        path = os.path.abspath(path)
        board_id = board_id or os.path.splitext(os.path.basename(path))[0]
        key = board_id.lower()
        if key in self._entries and self._entries[key].path != path:
            other = self._entries[key]
            raise BoardError([Problem(path, "", f"board id {board_id!r} is already taken by {other.path} "
                                                f"(from {other.origin}); board ids must be unique")])
        entry = BoardEntry(board_id, path, origin)
        self._entries[key] = entry
        return entry

    def get(self, board_id: str) -> Optional[BoardEntry]:
        return self._entries.get(board_id.lower())

    def ids(self) -> List[str]:
        return sorted((e.id for e in self._entries.values()), key=str.lower)

    def entries(self) -> List[BoardEntry]:
        return [self._entries[k.lower()] for k in self.ids()]

    def resolve(self, ref: str, relative_to: Optional[str] = None) -> Optional[str]:
        """A board id, or a path to a .toml file (relative to ``relative_to`` or the cwd)."""
        looks_like_path = ref.endswith(".toml") or "/" in ref or os.sep in ref
        if looks_like_path:
            base = relative_to or os.getcwd()
            path = os.path.normpath(os.path.join(base, os.path.expanduser(ref)))
            return path if os.path.isfile(path) else None
        entry = self.get(ref)
        return entry.path if entry else None


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
    flags: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.size

    def entry(self) -> pt.Entry:
        return pt.Entry(self.name, self.type, self.subtype, self.offset, self.size, self.flags)


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

    @property
    def flash_size_bytes(self) -> int:
        return flash_size_bytes(self.flash_size)

    def partition(self, name: str) -> Optional[Partition]:
        for p in self.partitions:
            if p.name == name:
                return p
        return None


# --- loading --------------------------------------------------------------------------------

def load_board(ref: str, registry: BoardRegistry, *, board_id: Optional[str] = None,
               relative_to: Optional[str] = None, extra_tables: Optional[Dict[str, Callable]] = None,
               overlays: Sequence[Tuple[str, dict]] = (), extra_partitions: Sequence[dict] = (),
               sandbox: bool = False) -> Board:
    """Read, merge and check a board.  Raises BoardError with every problem found.

    ``ref`` is a board id or a .toml path (relative to ``relative_to``, default the cwd).
    ``overlays`` are (origin, board-shaped dict) laid over the files, as plugins' adjustments;
    ``extra_partitions`` are partitions whose content is already made (plugin partitions):
    dicts with name, type, subtype, size, offset (None: placed in free space), origin and
    content (a :class:`Content`).  ``sandbox``: paths the board file names (and files it extends by
    path name) must resolve inside the board file's folder.
    """
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
    board = _check(merged, path, board_id, files, problems)
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
        part["_content"] = extra["content"]
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
    candidate = (lo + align - 1) // align * align
    for start, end in sorted(taken):
        if candidate + size <= start:
            break
        if end > candidate:
            candidate = (end + align - 1) // align * align
    return candidate if candidate + size <= hi else None


def unknown_board_problem(ref: str, registry: BoardRegistry) -> Problem:
    ids = ", ".join(registry.ids()) or "(none)"
    return Problem(None, "board", f"no board with this id and no such .toml file; accepted: a board id "
                                  f"({ids}), 'all', or the path of a .toml file", ref)


def _inside(path: str, root: str) -> bool:
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


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
                if not _inside(source, root):
                    refuse(f"at_customize.partitions[{part.get('name')}].source", source)
    fw = data.get("firmware")
    if isinstance(fw, dict) and isinstance(fw.get("release"), str):
        release = os.path.join(os.path.dirname(path), os.path.expanduser(fw["release"]))
        if not _inside(release, root):
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
    data = read_toml(path, problems)
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
                                                     f"id ({ids}) or a .toml path relative to this file", ext))
            return []
        by_id = registry.get(ext) is not None and registry.get(ext).path == base
        base_root = sandbox_root
        if sandbox_root is not None:
            if by_id:
                base_root = None      # a registered board: trusted, like the stock boards
            elif not _inside(base, sandbox_root):
                problems.append(Problem(path, "extends", f"resolves outside {display_path(sandbox_root)}, the folder "
                                        "of the board named on the command line (sandbox=yes); accepted: a board id "
                                        "or a file inside that folder", ext))
                return []
        chain = _load_chain(base, registry, problems, stack + [path], extra_tables, base_root)
        if not chain:
            return []
    return chain + [Layer(path, data)]


# --- checks on the merged board -------------------------------------------------------------

class _Checker:
    def __init__(self, merged: Merged, leaf: str, problems: List[Problem]):
        self.m = merged
        self.leaf = leaf
        self.problems = problems

    def fail(self, key_path: Tuple[str, ...], message: str, value=Problem._NO_VALUE) -> None:
        where = self.m.where(*key_path) or self.leaf
        self.problems.append(Problem(where, ".".join(key_path), message, value))

    def get(self, table: str, key: str, default=None):
        t = self.m.data.get(table)
        return t.get(key, default) if isinstance(t, dict) else default

    def require(self, table: str, key: str, accepted: str):
        value = self.get(table, key)
        if value is None:
            self.problems.append(Problem(self.leaf, f"{table}.{key}", f"missing; required: {accepted}"))
        return value


def _check(merged: Merged, path: str, board_id: str, files: Tuple[str, ...], problems: List[Problem]) -> Optional[Board]:
    c = _Checker(merged, path, problems)
    warnings: List[str] = []

    # [module]
    chip_name = c.require("module", "chip", "one of " + ", ".join(CHIPS))
    chip = CHIPS.get(chip_name) if isinstance(chip_name, str) else None
    if chip_name is not None and chip is None:
        c.fail(("module", "chip"), "unknown chip; accepted: " + ", ".join(CHIPS), chip_name)
    module_name = c.get("module", "name", os.path.splitext(os.path.basename(path))[0])
    _check_text(c, ("module", "name"), module_name, 31)
    platform = c.get("module", "platform", chip.platform if chip else "")
    if chip is not None:
        _check_text(c, ("module", "platform"), platform, 31)
    at_version = c.get("module", "at_version", "2.4")
    if at_version not in pki.AT_VERSIONS:
        c.fail(("module", "at_version"), 'accepted: "2.4" or "2.2"', at_version)

    # [flash]
    mode = c.require("flash", "mode", ", ".join(FLASH_MODES))
    freq = c.require("flash", "freq", "80m, 40m, 26m or 20m")
    size = c.require("flash", "size", "a flash size such as 4MB")
    if mode is not None and mode not in FLASH_MODES:
        c.fail(("flash", "mode"), "accepted: " + ", ".join(FLASH_MODES), mode)
    if chip is not None:
        if freq is not None and freq not in chip.flash_freqs:
            c.fail(("flash", "freq"), f"{chip.title} accepts " + ", ".join(chip.flash_freqs), freq)
        if size is not None and size not in chip.flash_sizes:
            c.fail(("flash", "size"), f"{chip.title} accepts " + ", ".join(chip.flash_sizes), size)
    flash_bytes = flash_size_bytes(size) if chip is not None and size in chip.flash_sizes else None

    # [factory_param]
    values = _check_factory_param(c, chip)
    if isinstance(module_name, str):
        values["module_name"] = module_name
    if isinstance(platform, str):
        values["platform"] = platform

    # [at_customize] and its partitions
    region = _check_region(c, flash_bytes)
    partitions = _check_partitions(c, merged, chip, at_version, region, flash_bytes, values, warnings)

    _check_valid_until(c, partitions)

    firmware = None
    fw = merged.data.get("firmware") or {}
    if isinstance(fw.get("release"), str):
        base = os.path.dirname(merged.where("firmware", "release") or path)
        firmware = os.path.normpath(os.path.join(base, os.path.expanduser(fw["release"])))

    if problems:
        return None
    return Board(
        id=board_id, path=path, files=files, module_name=module_name, chip=chip, platform=platform,
        description=c.get("module", "description", ""), at_version=at_version, flash_mode=mode,
        flash_freq=freq, flash_size=size, factory_param=values, at_customize_offset=region[0],
        at_customize_size=region[1] - region[0], partitions=tuple(partitions), warnings=tuple(warnings),
        data=merged.data, firmware=firmware,
    )


def _check_text(c: _Checker, key: Tuple[str, ...], value, limit: int) -> None:
    if not isinstance(value, str):
        return
    if not value or not _PRINTABLE.match(value):
        c.fail(key, f"expected 1 to {limit} printable ASCII characters", value)
    elif len(value.encode("ascii")) > limit:
        c.fail(key, f"{len(value)} bytes; at most {limit} fit (the field holds {limit + 1} with its NUL)", value)


def _check_factory_param(c: _Checker, chip: Optional[Chip]) -> Dict[str, object]:
    table = c.m.data.get("factory_param") or {}
    values: Dict[str, object] = dict(fp.DEFAULTS)
    for name in _REQUIRED_FACTORY_PARAM:
        if name not in table:
            c.problems.append(Problem(c.leaf, f"factory_param.{name}", "missing; every factory_param field "
                                      "except magic_flag, version and reserved1 must be given"))
    values.update(table)

    def bad(name, message):
        c.fail(("factory_param", name), message, table[name])

    def in_range(name, lo, hi, extra=""):
        if name in table and not lo <= table[name] <= hi:
            bad(name, f"out of range; accepted: {extra}{lo} to {hi}")

    in_range("magic_flag", 0, 0xFFFF)
    in_range("version", 0, 255)
    in_range("reserved1", 0, 255)
    if chip is not None:
        lo, hi = chip.tx_power_range
        in_range("tx_max_power", lo, hi, f"(0.25 dBm units on {chip.title}) ")
        port = table.get("uart_port")
        if port is not None and port != -1 and not 0 <= port < chip.uart_count:
            bad("uart_port", f"{chip.title} has UART 0 to {chip.uart_count - 1}; accepted: -1 (none) or 0 to {chip.uart_count - 1}")
    in_range("start_channel", 1, 14)
    in_range("channel_num", 1, 14)
    start, count = table.get("start_channel"), table.get("channel_num")
    if isinstance(start, int) and isinstance(count, int) and 1 <= start <= 14 and 1 <= count <= 14 \
            and start + count - 1 > 14:
        bad("channel_num", f"channels {start} to {start + count - 1} run past channel 14; "
                           f"accepted with start_channel = {start}: 1 to {15 - start}")
    cc = table.get("country_code")
    if isinstance(cc, str) and not _COUNTRY.match(cc):
        bad("country_code", "accepted: 1 to 3 ASCII letters or digits, such as \"CN\", \"US\" or \"01\"")
    baud = table.get("uart_baudrate")
    if isinstance(baud, int) and baud != -1 and not 1 <= baud <= 5_000_000:
        bad("uart_baudrate", "accepted: -1 (none) or 1 to 5000000")
    if chip is not None:
        used: Dict[int, str] = {}
        for name in fp.PIN_FIELDS:
            pin = table.get(name)
            if not isinstance(pin, int) or pin == -1:
                continue
            if pin not in chip.gpios:
                bad(name, f"{chip.title} has no GPIO{pin}; accepted: -1 (unused) or {chip.describe_gpios()}")
            elif name in fp.OUTPUT_PIN_FIELDS and pin in chip.input_only_gpios:
                bad(name, f"GPIO{pin} is input-only on {chip.title} and cannot drive this output; "
                          f"input-only: {describe_ranges(sorted(chip.input_only_gpios))}")
            elif pin in used:
                bad(name, f"GPIO{pin} is already factory_param.{used[pin]}; each GPIO may serve one function")
            else:
                used[pin] = name
    return values


def _hex(n: int) -> str:
    """An offset or size as people write them: 0x24800 (TOML forgets that the user wrote hex)."""
    return f"-0x{-n:x}" if n < 0 else f"0x{n:x}"


def _parse_number(c: _Checker, key: Tuple[str, ...], value, parser, what: str) -> Optional[int]:
    try:
        return parser(value)
    except ValueError:
        c.fail(key, f"expected {what}", value)
        return None


def _check_region(c: _Checker, flash_bytes: Optional[int]) -> Tuple[int, int]:
    raw_offset = c.require("at_customize", "offset", "the offset of the firmware's at_customize partition")
    raw_size = c.require("at_customize", "size", "the size of the firmware's at_customize partition")
    offset = size = None
    if raw_offset is not None:
        offset = _parse_number(c, ("at_customize", "offset"), raw_offset, parse_int, "an offset such as 0x20000")
    if raw_size is not None:
        size = _parse_number(c, ("at_customize", "size"), raw_size, parse_size, 'a size such as 0xE0000 or "896K"')
    if offset is not None and (offset < 0 or offset % pt.DATA_ALIGN):
        c.fail(("at_customize", "offset"), f"{_hex(offset)} is not a multiple of 0x1000; accepted: "
                                           "a 4 KiB-aligned offset", raw_offset)
        offset = None
    if size is not None and (size <= AT_CUSTOMIZE_SECTOR or size % pt.DATA_ALIGN):
        c.fail(("at_customize", "size"), f"{_hex(size)}; accepted: a multiple of 0x1000 larger than 0x1000 "
                                         "(the first sector holds at_customize.bin)", raw_size)
        size = None
    if offset is None or size is None:
        return (0, 0)
    if flash_bytes is not None and offset + size > flash_bytes:
        c.fail(("at_customize", "size"), f"the region 0x{offset:x}-0x{offset + size:x} ends past the "
                                         f"{format_size(flash_bytes)} flash", raw_size)
    return (offset, offset + size)


def _partition_number(c: _Checker, name: str, key: str, raw, kind: str):
    where = c.m.partition_origin.get((name, key)) or c.leaf
    label = f"at_customize.partitions[{name}].{key}"
    try:
        if kind == "size":
            return parse_size(raw)
        return parse_int(raw)
    except ValueError:
        what = 'a size such as 0x2000 or "8K"' if kind == "size" else "a number such as 0x24000"
        c.problems.append(Problem(where, label, f"expected {what}", raw))
        return None


def _resolve_type(raw) -> Optional[int]:
    if isinstance(raw, str) and raw.strip().lower() in pt.TYPES:
        return pt.TYPES[raw.strip().lower()]
    try:
        return parse_int(raw)
    except ValueError:
        return None


def _resolve_subtype(ptype: Optional[int], raw) -> Optional[int]:
    if isinstance(raw, str):
        names = pt.SUBTYPES.get(ptype, {})
        if raw.strip().lower() in names:
            return names[raw.strip().lower()]
    try:
        return parse_int(raw)
    except ValueError:
        return None


def _check_partitions(c: _Checker, merged: Merged, chip, at_version, region, flash_bytes, fp_values,
                      warnings: List[str]) -> List[Partition]:
    out: List[Partition] = []
    problems = c.problems

    def fail(name, key, message, value=Problem._NO_VALUE):
        where = merged.partition_origin.get((name, key)) or merged.partition_origin.get((name, "name")) or c.leaf
        label = f"at_customize.partitions[{name}]" + (f".{key}" if key else "")
        problems.append(Problem(where, label, message, value))

    if len(merged.partitions) > pt.MAX_ENTRIES:
        problems.append(Problem(c.leaf, "at_customize.partitions",
                                f"{len(merged.partitions)} partitions; at_customize.bin holds at most {pt.MAX_ENTRIES}"))
    for part in merged.partitions:
        name = part["name"]
        ok = True
        if not name or not _PRINTABLE.match(name):
            fail(name, "name", "expected 1 to 16 printable ASCII characters", name)
            ok = False
        elif not _PARTITION_NAME.match(name):
            # The name is also the output's file name (customized_partitions/<name>.bin): no
            # separators, no leading dot, nothing that could leave the release folder.
            fail(name, "name", "accepted: letters, digits, '_', '-' and '.', not starting with '.'", name)
            ok = False
        elif len(name.encode("ascii")) > 16:
            fail(name, "name", f"{len(name)} bytes; a partition name holds at most 16", name)
            ok = False
        for key in ("type", "subtype", "offset", "size"):
            if key not in part:
                fail(name, key, "missing; every partition needs name, type, subtype, offset and size")
                ok = False
        if not ok:
            continue
        ptype = _resolve_type(part["type"])
        if ptype is None or not 0 <= ptype <= 0xFE:
            fail(name, "type", "accepted: app, data, or a number from 0 to 0xFE (AT partitions use 0x40)", part["type"])
            ok = False
        subtype = _resolve_subtype(ptype, part["subtype"])
        if subtype is None or not 0 <= subtype <= 0xFF:
            names = ", ".join(pt.SUBTYPES.get(ptype, {}))
            fail(name, "subtype", "accepted: a number from 0 to 255" + (f" or one of {names}" if names else ""),
                 part["subtype"])
            ok = False
        offset = _partition_number(c, name, "offset", part["offset"], "offset")
        size = _partition_number(c, name, "size", part["size"], "size")
        if offset is None or size is None or not ok:
            continue
        align = pt.APP_ALIGN if ptype == pt.TYPES["app"] else pt.DATA_ALIGN
        if offset < 0 or offset % align:
            what = "64 KiB-aligned for an app partition" if align == pt.APP_ALIGN else "4 KiB-aligned for a data partition"
            fail(name, "offset", f"{_hex(offset)} is not a multiple of 0x{align:x}; accepted: an offset {what}",
                 part["offset"])
            continue
        if size <= 0 or size % pt.DATA_ALIGN:
            fail(name, "size", f"{_hex(size)}; accepted: a positive multiple of 0x1000 (4 KiB, one flash sector)",
                 part["size"])
            continue
        lo, hi = region
        if hi and not (lo + AT_CUSTOMIZE_SECTOR <= offset and offset + size <= hi):
            fail(name, "offset", f"0x{offset:x}-0x{offset + size:x} is outside the AT partition space "
                                 f"0x{lo + AT_CUSTOMIZE_SECTOR:x}-0x{hi:x} (at_customize.offset + 4K to "
                                 f"at_customize.offset + at_customize.size)", part["offset"])
        elif flash_bytes is not None and offset + size > flash_bytes:
            fail(name, "offset", f"0x{offset:x}-0x{offset + size:x} ends past the {format_size(flash_bytes)} flash",
                 part["offset"])
        sources = tuple(part.get("source", ()))
        if "_content" in part:   # made by a plugin
            content = part["_content"]
        else:
            try:
                content = read_content(name, sources, at_version, fp_values if name == "factory_param" else None)
            except ContentError as err:
                fail(name, "source", err.message, display_path(err.path) if err.path else Problem._NO_VALUE)
                continue
        if content is not None:
            sources = content.sources
            if content.size > size:
                fail(name, "size", f"the content is {format_size(content.size)}, larger than the partition's "
                                   f"{format_size(size)}", part["size"])
        out.append(Partition(name, ptype, subtype, offset, size, sources, content))

    _check_overlaps(out, fail, {p["name"]: p.get("offset") for p in merged.partitions})
    _check_pairs(out, fail)
    seen: Dict[Tuple[int, int], str] = {}
    for p in out:
        other = seen.setdefault((p.type, p.subtype), p.name)
        if other != p.name:
            warnings.append(f"{display_path(merged.partition_origin.get((p.name, 'subtype')) or c.leaf)}: "
                            f"at_customize.partitions[{p.name}].subtype = {p.subtype}: the same type 0x{p.type:02x} "
                            f"and subtype as partition {other}; the firmware finds partitions by name, so this builds")
    return out


def _parse_date(value) -> Optional[datetime.date]:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _check_valid_until(c: _Checker, partitions: Sequence[Partition]) -> None:
    """[release] valid_until: no certificate of the board may expire before that day."""
    raw = c.get("release", "valid_until")
    if raw is None:
        return
    until = _parse_date(raw)
    if until is None:
        c.fail(("release", "valid_until"), "expected a date: 2030-01-01 (a TOML date or a string)", str(raw))
        return
    limit = datetime.datetime.combine(until, datetime.time(0), tzinfo=datetime.timezone.utc)
    for p in partitions:
        if not (p.content and p.content.kind == "pki" and pki.PKI_PARTITIONS[p.name] in ("cert", "ca")):
            continue
        for source in p.sources:
            try:
                with open(source, "rb") as f:
                    certs = pki.load_certificates(f.read())
            except (OSError, ContentError):
                continue   # reported by the content checks
            for cert in certs:
                expires = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
                if expires < limit:
                    c.fail(("release", "valid_until"), f"certificate {cert.subject.rfc4514_string()} in {p.name} "
                           f"({os.path.basename(source)}) expires {expires:%Y-%m-%d}, before this date; replace it "
                           "or move the date", until.isoformat())


def _check_overlaps(parts: Sequence[Partition], fail, raw_offsets: Dict[str, object]) -> None:
    ordered = sorted(parts, key=lambda p: (p.offset, p.end))
    a = None  # of the partitions before b, the one reaching furthest: a big one may cover several
    for b in ordered:
        if a is not None and b.offset < a.end:
            fail(b.name, "offset", f"0x{b.offset:x}-0x{b.end:x} overlaps partition {a.name} "
                                   f"(0x{a.offset:x}-0x{a.end:x})", raw_offsets.get(b.name, b.offset))
        if a is None or b.end > a.end:
            a = b


def _check_pairs(parts: Sequence[Partition], fail) -> None:
    """Certificate i of X_cert and key i of X_key must belong together."""
    by_name = {p.name: p for p in parts}
    for use in ("server", "client", "mqtt", "wpa2"):
        cert, key = by_name.get(f"{use}_cert"), by_name.get(f"{use}_key")
        if not (cert and key and cert.content and key.content):
            continue
        cert_keys = cert.content.public_keys or ()
        key_keys = key.content.public_keys or ()
        for i, (a, b) in enumerate(zip(cert_keys, key_keys)):
            if a != b:
                fail(key.name, "source", f"key {i} ({os.path.basename(key.sources[i])}) does not belong to "
                                         f"certificate {i} of {cert.name} ({os.path.basename(cert.sources[i])}); "
                                         "keys pair with certificates by position in file-name order")
        if len(cert_keys) != len(key_keys):
            fail(key.name, "source", f"{len(key_keys)} key(s) for {len(cert_keys)} certificate(s) in {cert.name}; "
                                     "each certificate needs the key of the same position")
