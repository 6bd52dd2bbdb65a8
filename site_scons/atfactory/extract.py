"""From an image or release folder back to a board file and its sources.

``extract`` writes ``DIR/<ID>.toml`` and ``DIR/<ID>/`` (certificates and keys, the GATT CSV,
raw user partitions) such that building the board with the same firmware gives every AT
partition byte for byte.  Each partition's format writes its own sources; where a format
cannot be sure of a byte-identical rebuild it refuses (the GATT table is rebuilt and compared)
or says so in a note (factory_param bytes outside its fields).  Keys are written owner-readable
only.
"""
from __future__ import annotations

import os
import re
from typing import List, Optional, Tuple

from .at_releases import AT_RELEASES, DEFAULT_AT_VERSION, GENERATION_TITLES, MFG_NVS, describe_versions
from .chips import CHIPS
from .checks import PARTITION_NAME
from .errors import ExtractError, format_value
from .formats import FormatRegistry, ModuleSettings, stock_registry
from .fsutil import write_atomic
from .readback import document_notes, image_releases


def board_id_for(doc: dict, formats: Optional[FormatRegistry] = None) -> str:
    settings = _module_settings(doc, formats or stock_registry())
    name = (settings.module_name if settings else "") or "extracted"
    # a name from the image: it names a folder and a file, so it must stay one plain name
    board_id = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return "_" + board_id if board_id.startswith(".") else board_id


def _module_settings(doc: dict, formats: FormatRegistry) -> Optional[ModuleSettings]:
    """The module settings of the first partition whose format keeps them (factory_param)."""
    for part in (doc.get("at_customize") or {}).get("partitions", []):
        fmt = formats.get(part["content"].get("kind"))
        settings = fmt.module_settings(part["content"]) if fmt is not None else None
        if settings is not None:
            return settings
    return None


def _chip_of(doc: dict, settings: ModuleSettings) -> str:
    if doc.get("chip") or doc.get("manifest_chip"):
        return doc.get("chip") or doc["manifest_chip"]
    if doc.get("image_chip_id") is not None:
        raise ExtractError(f"cannot tell the chip: the bootloader is for a chip atfactory does not know (image chip id "
                           f"0x{doc['image_chip_id']:x}); accepted: an image for " + ", ".join(CHIPS))
    if settings.platform is None:   # ESP-AT v3.1+: mfg_nvs's factory_param has no platform
        raise ExtractError("cannot tell the chip: no bootloader in the image, and the module settings of an "
                           f"{GENERATION_TITLES[MFG_NVS]} image name no platform")
    platform = str(settings.platform)
    for chip in CHIPS.values():
        if chip.platform == platform:
            return chip.name
    raise ExtractError("cannot tell the chip: no bootloader in the image and no known platform in factory_param")


def _no_module_settings(data: bytes, doc: dict, formats: FormatRegistry) -> ExtractError:
    """Where the module settings should have been, in the image's own generation."""
    versions = image_releases(data, doc, formats)
    if versions and all(AT_RELEASES[v].generation == MFG_NVS for v in versions):
        return ExtractError(f"no readable mfg_nvs partition with a factory_param namespace (the image is "
                            f"{GENERATION_TITLES[MFG_NVS]}): the board needs its module settings")
    return ExtractError("no readable factory_param partition: the board needs its module settings")


def _at_version(parts: List[dict], formats: FormatRegistry, chip: str) -> str:
    """An AT release whose generators write every partition as it is: the default where it can
    be, else the newest (a chip's first releases may lack what a later image holds)."""
    versions = frozenset(CHIPS[chip].at_versions)
    said = []
    for part in parts:
        fmt = formats.get(part["content"].get("kind"))
        implied = fmt.implied_at_versions(part["name"], part["content"]) if fmt is not None else None
        if implied is not None:
            versions &= implied
            known = [v for v in AT_RELEASES if v in implied]
            said.append(f"{part['name']} {describe_versions(known) if known else 'none'}")
    if not versions:
        raise ExtractError(f"no ESP-AT release of {CHIPS[chip].title} writes every AT partition as it is "
                           f"(the {CHIPS[chip].title} releases: {describe_versions(CHIPS[chip].at_versions)}; "
                           f"written as by: {', '.join(said)}); no single at_version reproduces them")
    return DEFAULT_AT_VERSION if DEFAULT_AT_VERSION in versions else [v for v in AT_RELEASES if v in versions][-1]


def extract_into(data: bytes, doc: dict, out_dir: str,
                 formats: Optional[FormatRegistry] = None) -> Tuple[str, List[str]]:
    """extract() with nothing half-written: the board and sources are made in a staging folder
    on the same disk and moved into ``out_dir`` (created if need be) only when all of it is made.
    Files already in ``out_dir`` that extract does not write are left alone."""
    import shutil
    import tempfile

    out_dir = os.path.abspath(out_dir)
    anchor = out_dir
    while not os.path.isdir(anchor):
        anchor = os.path.dirname(anchor)
    staging = tempfile.mkdtemp(prefix=".atfactory-extract-", dir=anchor)
    try:
        board_path, notes = extract(data, doc, staging, formats)
        for root, _dirs, files in os.walk(staging):
            for name in files:
                src = os.path.join(root, name)
                dst = os.path.join(out_dir, os.path.relpath(src, staging))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.replace(src, dst)
        return os.path.join(out_dir, os.path.relpath(board_path, staging)), notes
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def extract(data: bytes, doc: dict, out_dir: str, formats: Optional[FormatRegistry] = None) -> Tuple[str, List[str]]:
    """Write the board file and sources; return (board file path, notes)."""
    formats = formats or stock_registry()
    at = doc.get("at_customize")
    if not at or not at.get("partitions"):
        raise ExtractError("no at_customize table found: nothing to extract")
    settings = _module_settings(doc, formats)
    if settings is None:
        raise _no_module_settings(data, doc, formats)
    chip = _chip_of(doc, settings)
    board_id = board_id_for(doc, formats)
    src_dir = os.path.join(out_dir, board_id)
    parts = at["partitions"]
    for part in parts:   # names from the image become file names: checked before anything is written
        if not PARTITION_NAME.match(str(part["name"])):
            raise ExtractError(f"partition {part['name']!r}: not a name a board can hold (letters, digits, '_', '-' "
                               "and '.', not starting with '.'), so no board rebuilds this image")
    at_version = _at_version(parts, formats, chip)
    flash = doc.get("flash") or {}
    missing = [k for k in ("mode", "freq", "size") if k not in flash]
    if missing:
        raise ExtractError("the flash settings are unknown (no bootloader header or download.config)")
    size = at.get("size")
    if size is None:   # a release folder without a main partition table: cover every partition
        end = max(p["offset"] + p["size"] for p in parts)
        size = end - at["offset"]
    lines = [f"# Extracted by atfactory from {os.path.basename(str(doc.get('path', '')))}.", "", "[module]"]
    if settings.module_name:   # ESP-AT 2.0 and 2.1 keep none: the file stem names the module
        lines.append(f"name = {toml_value(settings.module_name)}")
    lines.append(f"chip = {toml_value(chip)}")
    if settings.platform is not None:
        lines.append(f"platform = {toml_value(settings.platform)}")
    lines += [f"at_version = {toml_value(at_version)}", "",
              "[flash]", f"mode = {toml_value(flash['mode'])}", f"freq = {toml_value(flash['freq'])}",
              f"size = {toml_value(flash['size'])}", "", "[factory_param]"]
    for key, value in settings.factory_param.items():
        lines.append(f"{key} = {toml_value(value)}")
    lines += ["", "[at_customize]", f"offset = 0x{at['offset']:X}", f"size = 0x{size:X}"]
    notes: List[str] = document_notes(doc)
    tables: dict = {}
    for part in parts:
        lines += ["", "[[at_customize.partitions]]", f"name = {toml_value(part['name'])}",
                  f"type = 0x{part['type']:02X}", f"subtype = {part['subtype']}",
                  f"offset = 0x{part['offset']:X}", f"size = 0x{part['size']:X}"]
        raw = data[part["offset"]:part["offset"] + part["size"]]
        sources = _write_sources(part, raw, src_dir, notes, formats, at_version)
        if part["content"].get("kind") not in ("erased", "invalid", None):
            fmt = formats.for_partition(part["name"], at_version)
            for table, values in fmt.extract_tables(part["name"], part["content"], raw, src_dir, notes).items():
                tables.setdefault(table, {}).update(values)
        if sources:
            rel = [os.path.relpath(s, out_dir).replace(os.sep, "/") for s in sources]
            lines.append("source = [" + ", ".join(toml_value(r) for r in rel) + "]")
    def relative(path: str) -> str:
        return os.path.relpath(path, out_dir).replace(os.sep, "/")

    for table, values in tables.items():
        lines += ["", f"[{table}]"]
        for key, value in values.items():
            if isinstance(value, dict):   # [mfg_nvs] namespaces: a table of tables of entries
                for sub, entries in value.items():
                    for name, entry in entries.items():
                        entry = {k: relative(v) if k == "file" else v for k, v in entry.items()}
                        lines.append(f"{key}.{toml_string(sub)}.{toml_string(name)} = {toml_value(entry)}")
                continue
            if isinstance(value, list):
                value = [relative(v) for v in value]
            elif isinstance(value, str) and os.path.isabs(value):
                value = relative(value)
            lines.append(f"{key} = {toml_value(value)}")
    board_path = os.path.join(out_dir, f"{board_id}.toml")
    write_atomic(board_path, ("\n".join(lines) + "\n").encode("utf-8"))
    return board_path, notes


def _write_sources(part: dict, raw: bytes, src_dir: str, notes: List[str], formats: FormatRegistry,
                   at_version: str) -> List[str]:
    content = part["content"]
    kind = content.get("kind")
    if kind == "erased" or kind is None:
        return []
    if kind == "invalid":
        raise ExtractError(f"partition {part['name']}: {content['error']}")
    return formats.for_partition(part["name"], at_version).extract(part["name"], content, raw, src_dir, notes)


def toml_string(text: str) -> str:
    """A TOML basic string that reads back as ``text`` (control characters escaped)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value) -> str:
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return format_value(value)
