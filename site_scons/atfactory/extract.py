"""From an image or release folder back to a board file and its sources.

``extract`` writes ``DIR/<ID>.toml`` and ``DIR/<ID>/`` (certificates and keys, the GATT CSV,
raw user partitions) such that building the board with the same firmware gives every AT
partition byte for byte; it checks that itself before it returns.  Keys are written
owner-readable only.
"""
from __future__ import annotations

import os
import re
from typing import List, Tuple

from . import ble_data, factory_param as fp, pki
from .chips import CHIPS
from .errors import AtFactoryError, display_path
from .fsutil import write_atomic
from .readback import content_kind


class ExtractError(AtFactoryError):
    pass


def board_id_for(doc: dict) -> str:
    name = _module_fields(doc).get("module_name") or "extracted"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _module_fields(doc: dict) -> dict:
    for part in (doc.get("at_customize") or {}).get("partitions", []):
        if part["content"].get("kind") == "factory_param":
            return part["content"]["fields"]
    return {}


def _chip_of(doc: dict, fields: dict) -> str:
    if doc.get("chip"):
        return doc["chip"]
    platform = str(fields.get("platform", ""))
    for chip in CHIPS.values():
        if chip.platform == platform:
            return chip.name
    raise ExtractError("cannot tell the chip: no bootloader in the image and no known platform in factory_param")


def _at_version(parts: List[dict]) -> str:
    versions = set()
    for part in parts:
        if part["content"].get("kind") != "pki":
            continue
        kind = pki.PKI_PARTITIONS[part["name"]]
        for item in part["content"]["items"]:
            if kind != "cert":
                versions.add("2.4" if item["type"] == pki.KIND_TYPES[kind] else "2.2" if item["type"] == pki.TYPE_CERT else "?")
    if "?" in versions or len(versions) > 1:
        raise ExtractError("certificate and key partitions mix AT v2.2 and v2.4 item types; "
                           "no single at_version reproduces them")
    return versions.pop() if versions else "2.4"


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def extract(data: bytes, doc: dict, out_dir: str) -> Tuple[str, List[str]]:
    """Write the board file and sources; return (board file path, notes)."""
    at = doc.get("at_customize")
    if not at or not at.get("partitions"):
        raise ExtractError("no at_customize table found: nothing to extract")
    fields = _module_fields(doc)
    if not fields:
        raise ExtractError("no readable factory_param partition: the board needs its module settings")
    chip = _chip_of(doc, fields)
    board_id = board_id_for(doc)
    src_dir = os.path.join(out_dir, board_id)
    parts = at["partitions"]
    at_version = _at_version(parts)
    flash = doc.get("flash") or {}
    missing = [k for k in ("mode", "freq", "size") if k not in flash]
    if missing:
        raise ExtractError("the flash settings are unknown (no bootloader header or download.config)")
    size = at.get("size")
    if size is None:   # a release folder without a main partition table: cover every partition
        end = max(p["offset"] + p["size"] for p in parts)
        size = end - at["offset"]
    lines = [f"# Extracted by atfactory from {os.path.basename(str(doc.get('path', '')))}.", "",
             "[module]", f"name = {_toml_str(fields['module_name'])}", f"chip = {_toml_str(chip)}",
             f"platform = {_toml_str(fields['platform'])}", f"at_version = {_toml_str(at_version)}", "",
             "[flash]", f"mode = {_toml_str(flash['mode'])}", f"freq = {_toml_str(flash['freq'])}",
             f"size = {_toml_str(flash['size'])}", "", "[factory_param]"]
    for f in fp.FIELDS:
        if f.name in ("platform", "module_name"):
            continue
        value = fields[f.name]
        lines.append(f"{f.name} = {_toml_str(value) if isinstance(value, str) else value}")
    lines += ["", "[at_customize]", f"offset = 0x{at['offset']:X}", f"size = 0x{size:X}"]
    notes: List[str] = []
    for part in parts:
        lines += ["", "[[at_customize.partitions]]", f"name = {_toml_str(part['name'])}",
                  f"type = 0x{part['type']:02X}", f"subtype = {part['subtype']}",
                  f"offset = 0x{part['offset']:X}", f"size = 0x{part['size']:X}"]
        raw = data[part["offset"]:part["offset"] + part["size"]]
        sources = _write_sources(part, raw, src_dir, notes)
        if sources:
            rel = [os.path.relpath(s, out_dir).replace(os.sep, "/") for s in sources]
            lines.append("source = [" + ", ".join(_toml_str(r) for r in rel) + "]")
    board_path = os.path.join(out_dir, f"{board_id}.toml")
    write_atomic(board_path, ("\n".join(lines) + "\n").encode("utf-8"))
    return board_path, notes


def _write_sources(part: dict, raw: bytes, src_dir: str, notes: List[str]) -> List[str]:
    content = part["content"]
    name = part["name"]
    kind = content.get("kind")
    if kind == "erased" or (kind is None):
        return []
    if kind == "invalid":
        raise ExtractError(f"partition {name}: {content['error']}")
    expected = content_kind(name)
    if expected == "factory_param":
        values = fp.decode_factory_param(raw)
        if fp.encode_factory_param(values) != raw[:fp.SIZE]:
            notes.append("factory_param: bytes outside the known fields (reserved2 or the tail) are not erased; "
                         "a rebuild writes them erased")
        return []
    if expected == "ble_data":
        rows = ble_data.decode_ble_data(raw)
        text = ble_data.write_gatt_csv(rows, columns=list(rows[0].keys()) if rows else None)
        try:
            rebuilt = ble_data.encode_ble_data(ble_data.read_gatt_csv(text))
        except AtFactoryError as err:
            raise ExtractError(f"partition {name}: its GATT table does not pass the board checks: {err}") from None
        if rebuilt != raw[:len(rebuilt)] or raw[len(rebuilt):].strip(b"\xff"):
            raise ExtractError(f"partition {name}: its GATT JSON cannot be written as a CSV that rebuilds it byte for byte")
        path = os.path.join(src_dir, "ble_data.csv")
        write_atomic(path, text.encode("ascii"))
        return [path]
    if expected == "pki":
        items = pki.decode_pki(raw)
        paths = []
        secret = pki.PKI_PARTITIONS[name] == "key"
        for n, item in enumerate(items):
            if item.id != len([i for i in items[:n] if i.type == item.type]):
                raise ExtractError(f"partition {name}: item ids are not numbered 0, 1, 2... per type; "
                                   "a rebuild could not reproduce them")
            ext = {"key": "key", "ca": "crt", "cert": "crt"}[pki.PKI_PARTITIONS[name]]
            if b"-----BEGIN " not in item.content:
                ext = "der"
            path = os.path.join(src_dir, name, f"{name}_{n:03d}.{ext}")
            write_atomic(path, item.content, secret=secret)
            paths.append(path)
        if len({i.type for i in items}) > 1:
            raise ExtractError(f"partition {name}: items of several types in one partition; a board partition holds one kind")
        return paths
    used = raw.rstrip(b"\xff")
    path = os.path.join(src_dir, f"{name}.bin")
    write_atomic(path, used)
    notes.append(f"{name}: raw content, {len(used)} bytes up to the last non-erased byte ({display_path(path)})")
    return [path]
