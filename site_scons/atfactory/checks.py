"""The checks of a merged board: module, flash, the at_customize region and its partitions.

Each check appends :class:`~atfactory.errors.Problem` s naming the file that set the value
(``Merged.origin``), the dotted key, the value and what is accepted; ``check_board`` returns
the :class:`~atfactory.board.Board` only when there are none.  What a partition holds is read
and checked by its format (``formats``); the cross-checks here (certificate/key pairs, the
certificates' dates: expired, ``[release] valid_until``) read the board's certificate sets,
wherever their format keeps them.  Warnings (``Checker.warn``) go into ``Board.warnings``.
"""
from __future__ import annotations

import datetime
import os
import re
from typing import Dict, List, Optional, Tuple

from . import partition_table as pt
from .at_releases import AT_RELEASES, DEFAULT_AT_VERSION, describe_versions
from .board import Partition
from .chips import CHIPS, FLASH_MODES, all_flash_freqs, describe_choices, flash_size_bytes
from .errors import ContentError, Problem, display_path
from .formats import CERTIFICATE_USES, FormatRegistry, ReadContext, certificate_sets
from .layout import overlaps
from .numbers import format_size, parse_int, parse_size
from .toml_layers import Merged, written_as

AT_CUSTOMIZE_SECTOR = pt.AT_CUSTOMIZE_SECTOR
PRINTABLE = re.compile(r"^[\x20-\x7e]+\Z")
PARTITION_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*\Z")   # \Z: no trailing newline


class Checker:
    """The merged board data, where each value came from, and the problems found so far."""

    def __init__(self, merged: Merged, leaf: str, problems: List[Problem], warnings: Optional[List[str]] = None):
        self.merged = merged
        self.leaf = leaf
        self.problems = problems
        self.warnings = warnings   # None: warnings are not collected (a devices CSV row)

    def fail(self, key_path: Tuple[str, ...], message: str, value=Problem.NO_VALUE) -> None:
        where = self.merged.where(*key_path) or self.leaf
        written = written_as(self.merged.written.get(tuple(key_path)), value)
        self.problems.append(Problem(where, ".".join(key_path), message, value, written))

    def warn(self, key_path: Tuple[str, ...], message: str, value=Problem.NO_VALUE) -> None:
        """A warning, in a problem's form: the file that set the key, the key, the value, why."""
        if self.warnings is not None:
            where = self.merged.where(*key_path) or self.leaf
            self.warnings.append(str(Problem(where, ".".join(key_path), message, value)))

    def get(self, table: str, key: str, default=None):
        t = self.merged.data.get(table)
        return t.get(key, default) if isinstance(t, dict) else default

    def require(self, table: str, key: str, accepted: str):
        value = self.get(table, key)
        if value is None:
            self.problems.append(Problem(self.leaf, f"{table}.{key}", f"missing; required: {accepted}"))
        return value


def check_board(merged: Merged, path: str, board_id: str, files: Tuple[str, ...], problems: List[Problem],
                formats: FormatRegistry, release: bool = False):
    """``release`` (release=yes): atfactory's development certificates and keys, and certificates
    that have expired, are problems, not warnings."""
    from .board import Board
    from .formats.factory_param import check_table

    warnings: List[str] = []
    c = Checker(merged, path, problems, warnings)

    # [module]
    chip_name = c.require("module", "chip", "one of " + ", ".join(CHIPS))
    chip = CHIPS.get(chip_name) if isinstance(chip_name, str) else None
    if chip_name is not None and chip is None:
        c.fail(("module", "chip"), "unknown chip; accepted: " + ", ".join(CHIPS), chip_name)
    module_name = c.get("module", "name", os.path.splitext(os.path.basename(path))[0])
    before = len(problems)
    check_text(c, ("module", "name"), module_name, 31)
    if len(problems) == before and isinstance(module_name, str) and ("/" in module_name or "\\" in module_name
                                                                     or module_name in (".", "..")):
        c.fail(("module", "name"), "names the release's factory_param_<name>.bin; accepted: printable ASCII "
                                   "without '/' or '\\', not '.' or '..'", module_name)
    name_ok = len(problems) == before
    platform = c.get("module", "platform", chip.platform if chip else "")
    if chip is not None:
        check_text(c, ("module", "platform"), platform, 31)
    at_version = c.get("module", "at_version", DEFAULT_AT_VERSION)
    accepted_versions = chip.at_versions if chip is not None else tuple(AT_RELEASES)
    if at_version not in AT_RELEASES:
        c.fail(("module", "at_version"), "accepted: " + describe_versions(accepted_versions), at_version)
    elif at_version not in accepted_versions and c.get("module", "at_version") is None:
        c.problems.append(Problem(c.leaf, "module.at_version", f"missing; there is no ESP-AT {at_version} (the "
                                  f"default) for {chip.title}: set one of " + describe_versions(accepted_versions)))
    elif at_version not in accepted_versions:
        c.fail(("module", "at_version"), f"there is no ESP-AT {at_version} for {chip.title}; accepted: "
                                         + describe_versions(accepted_versions), at_version)

    # [flash]
    mode = c.require("flash", "mode", ", ".join(FLASH_MODES))
    freq = c.require("flash", "freq", describe_choices(chip.flash_freqs if chip else all_flash_freqs()))
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
    before = len(problems)
    # a release the chip never had: check [factory_param] as the default release's, not as that one's
    known = isinstance(at_version, str) and at_version in accepted_versions
    values = check_table(c, chip, at_version if known else None,
                         module_name if isinstance(module_name, str) else None)
    factory_ok = len(problems) == before and name_ok   # formats see the values only when they are all fine
    if isinstance(module_name, str):
        values["module_name"] = module_name
    if isinstance(platform, str):
        values["platform"] = platform

    # [at_customize] and its partitions
    region = _check_region(c, flash_bytes)
    partitions = _check_partitions(c, merged, formats, at_version, region, flash_bytes,
                                   values if factory_ok else None, warnings)

    _check_certificate_dates(c, partitions, warnings, release)
    development = _development_material(c, partitions, release)

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
        data=merged.data, firmware=firmware, development=development,
    )


def check_text(c: Checker, key: Tuple[str, ...], value, limit: int) -> None:
    if not isinstance(value, str):
        return
    if not value or not PRINTABLE.match(value):
        c.fail(key, f"expected 1 to {limit} printable ASCII characters", value)
    elif len(value.encode("ascii")) > limit:
        c.fail(key, f"{len(value)} bytes; at most {limit} fit (the field holds {limit + 1} with its NUL)", value)


def _hex(n: int) -> str:
    """An offset or size as people write them: 0x24800 (TOML forgets that the user wrote hex)."""
    return f"-0x{-n:x}" if n < 0 else f"0x{n:x}"


def _parse_number(c: Checker, key: Tuple[str, ...], value, parser, what: str) -> Optional[int]:
    try:
        return parser(value)
    except ValueError:
        c.fail(key, f"expected {what}", value)
        return None


def _check_region(c: Checker, flash_bytes: Optional[int]) -> Tuple[int, int]:
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


def _partition_number(c: Checker, name: str, key: str, raw, kind: str):
    try:
        if kind == "size":
            return parse_size(raw)
        return parse_int(raw)
    except ValueError:
        what = 'a size such as 0x2000 or "8K"' if kind == "size" else "a number such as 0x24000"
        _partition_problem(c, name, key, f"expected {what}", raw)
        return None


def _partition_problem(c: Checker, name, key, message, value=Problem.NO_VALUE) -> None:
    """A problem with key ``key`` of partition ``name`` (``key`` "" for the partition itself), or
    with a board key outside the partition table (``name`` None: ``key`` "mfg_nvs.server_key")."""
    merged = c.merged
    if name is None:
        c.problems.append(Problem(merged.where(*key.split(".")[:2]) or c.leaf, key, message, value))
        return
    where = merged.partition_origin.get((name, key)) or merged.partition_origin.get((name, "name")) or c.leaf
    label = f"at_customize.partitions[{name}]" + (f".{key}" if key else "")
    c.problems.append(Problem(where, label, message, value, written_as(merged.partition_written.get((name, key)), value)))


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


PARTITION_KEY = "partition."   # ContentError.key "partition.size": the size of the partition being read


def _check_partitions(c: Checker, merged: Merged, formats: FormatRegistry, at_version, region, flash_bytes, fp_values,
                      warnings: List[str]) -> List[Partition]:
    out: List[Partition] = []
    problems = c.problems

    def fail(name, key, message, value=Problem.NO_VALUE):
        _partition_problem(c, name, key, message, value)

    if len(merged.partitions) > pt.MAX_ENTRIES:
        problems.append(Problem(c.leaf, "at_customize.partitions",
                                f"{len(merged.partitions)} partitions; at_customize.bin holds at most {pt.MAX_ENTRIES}"))
    for part in merged.partitions:
        name = part["name"]
        ok = True
        if not name or not PRINTABLE.match(name):
            fail(name, "name", "expected 1 to 16 printable ASCII characters", name)
            ok = False
        elif not PARTITION_NAME.match(name):
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
        sources = declared = tuple(part.get("source", ()))
        if name in merged.made:   # made by a plugin
            content = merged.made[name]
        else:
            try:
                ctx = ReadContext(at_version, fp_values, tables=merged.data, partition_size=size)
                content = formats.for_partition(name, at_version).read(name, sources, ctx)
            except ContentError as err:
                if err.key and err.key.startswith(PARTITION_KEY):   # a key of this partition's own entry
                    own = err.key[len(PARTITION_KEY):]
                    fail(name, own, err.message, part.get(own, Problem.NO_VALUE))
                    continue
                shown = display_path(err.path) if err.path else Problem.NO_VALUE
                fail(None if err.key else name, err.key or "source", err.message, shown)
                continue
        if content is not None:
            sources = content.sources
            if content.size > size:
                fail(name, "size", f"the content is {format_size(content.size)}, larger than the partition's "
                                   f"{format_size(size)}", part["size"])
        out.append(Partition(name, ptype, subtype, offset, size, sources, content, declared))

    raw_offsets = {p["name"]: p.get("offset") for p in merged.partitions}
    for b, a in overlaps((p.offset, p.end, p) for p in out):
        fail(b.name, "offset", f"0x{b.offset:x}-0x{b.end:x} overlaps partition {a.name} "
                               f"(0x{a.offset:x}-0x{a.end:x})", raw_offsets.get(b.name, b.offset))
    check_pairs(certificate_sets([p.content for p in out if p.content is not None]), fail)
    for fmt in formats:
        for key, message, value in fmt.board_problems([p["name"] for p in merged.partitions], at_version, merged.data):
            fail(None, key, message, Problem.NO_VALUE if value is None else value)
    seen: Dict[Tuple[int, int], str] = {}
    for p in out:
        other = seen.setdefault((p.type, p.subtype), p.name)
        if other != p.name:
            warnings.append(f"{display_path(merged.partition_origin.get((p.name, 'subtype')) or c.leaf)}: "
                            f"at_customize.partitions[{p.name}].subtype = {p.subtype}: the same type 0x{p.type:02x} "
                            f"and subtype as partition {other}; the firmware finds partitions by name, so this builds")
    return out



def parse_date(value) -> Optional[datetime.date]:
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


def _certificates(partitions):
    """(file, subject, notAfter in UTC) for every certificate of the board's certificate and CA
    files, wherever their format keeps them (v2 PKI partitions, mfg_nvs sets).  The input cache
    keeps the dates: an unchanged file is not parsed again (nor cryptography imported)."""
    from .input_cache import certificate_dates

    for files in certificate_sets([p.content for p in partitions if p.content is not None]).values():
        for file in files:
            if file.role not in ("cert", "ca"):
                continue
            try:
                dates = certificate_dates(file.path)
            except ContentError:
                continue   # reported by the content checks
            for subject, expires in dates:
                yield file, subject, expires


class DateRules:
    """The rules for a certificate's notAfter, a board's and a device row's alike: expired by now
    builds with a warning (release=yes: refused); expiring before [release] valid_until is refused."""

    def __init__(self, release: bool, until: Optional[datetime.date], now: Optional[datetime.datetime] = None):
        self.release, self.until = release, until
        self.now = now or datetime.datetime.now(datetime.timezone.utc)
        # valid_until is a day: a certificate must last until its first second (UTC)
        self.limit = None if until is None else \
            datetime.datetime.combine(until, datetime.time(0), tzinfo=datetime.timezone.utc)

    def verdict(self, expires: datetime.datetime) -> Tuple[Optional[str], bool]:
        """(None, "warn" or "refuse" for the expiry, whether it expires before valid_until)."""
        expiry = None if expires >= self.now else ("refuse" if self.release else "warn")
        return expiry, self.limit is not None and expires < self.limit


def _check_certificate_dates(c: Checker, partitions, warnings: List[str], release: bool = False) -> None:
    """Each certificate of the board by DateRules."""
    raw = c.get("release", "valid_until")
    until = None
    if raw is not None:
        until = parse_date(raw)
        if until is None:
            c.fail(("release", "valid_until"), "expected a date: 2030-01-01 (a TOML date or a string)", str(raw))
    rules = DateRules(release, until)
    for file, subject, expires in _certificates(partitions):
        expiry, late = rules.verdict(expires)
        where = f"certificate {subject} in {file.partition or file.key} ({os.path.basename(file.path)})"
        if expiry == "refuse":
            _file_problem(c, file, f"{where} expired on {expires:%Y-%m-%d}; release=yes refuses expired "
                                   "certificates: accepted: certificates valid today")
        elif expiry == "warn":
            warnings.append(f"{display_path(file.path)}: {where} expired on {expires:%Y-%m-%d}; it still builds, "
                            "but TLS peers that check dates will refuse it")
        if late:
            c.fail(("release", "valid_until"), f"{where} expires {expires:%Y-%m-%d}, before this date; replace it or "
                                               "move the date", until.isoformat())


def _file_problem(c: Checker, file, message: str) -> None:
    """A problem with one certificate or key file, named by the board key that lists it."""
    _partition_problem(c, file.partition or None, file.key, message, display_path(file.path))


def _development_material(c: Checker, partitions, release: bool) -> Tuple[str, ...]:
    """The partitions that hold atfactory's development certificates or keys (``dev_certs``: by
    content, so copies count); with ``release`` each such file is a problem."""
    from .dev_certs import describe, development_match
    from .fsutil import read_input

    found = []
    for p in partitions:
        for file in p.content.certificates if p.content is not None else ():
            data = None
            if file.public_key is None:   # not parsed: compare the file's own bytes
                try:
                    data = read_input(file.path)
                except ContentError:
                    continue
            stem = development_match(data, file.public_key)
            if stem is None:
                continue
            found.append(p.name)
            if release:
                _file_problem(c, file, f"{describe(stem, file.role)}; release=yes refuses development certificates "
                                       "and keys: accepted: certificates and keys of your own")
    return tuple(dict.fromkeys(found))


def check_pairs(sets, fail) -> None:
    """Certificate i of each set X_cert and key i of X_key must belong together.

    ``sets``: certificate files by set name; ``fail(partition, key, message)`` reports."""
    for use in CERTIFICATE_USES:
        certs, keys = sets.get(f"{use}_cert"), sets.get(f"{use}_key")
        if not (certs and keys):
            continue
        for i, (cert, key) in enumerate(zip(certs, keys)):
            if cert.public_key is not None and key.public_key is not None and cert.public_key != key.public_key:
                fail(key.partition or None, key.key, f"key {i} ({os.path.basename(key.path)}) does not belong to "
                                             f"certificate {i} of {use}_cert ({os.path.basename(cert.path)}); "
                                             "keys pair with certificates by position in file-name order")
        if len(certs) != len(keys):
            fail(keys[0].partition or None, keys[0].key, f"{len(keys)} key(s) for {len(certs)} certificate(s) in {use}_cert; "
                                                 "each certificate needs the key of the same position")
