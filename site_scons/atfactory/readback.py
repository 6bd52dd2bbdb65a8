"""Reading any AT binary back: factory images, flash dumps, release folders, single partitions.

``read_path`` detects what a path holds from its bytes and its name and returns one
JSON-ready document whose field names are the board file's (``flash.mode``,
``at_customize.partitions[].offset``, the factory_param field names, ...).  A release folder is
read as the flash it describes: each file of its download.config at its offset, the rest
erased, so that folders and images decode the same way.

Decoders take arbitrary bytes: anything that is not what it claims to be raises FormatError
(whole-file kinds) or is reported inside the document (``"content": {"kind": "invalid", ...}``)
so that one bad partition does not hide the rest of an image.
"""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

from . import partition_table as pt
from .chips import CHIPS, FLASH_MODES, TABLE_OFFSETS, flash_size_bytes
from .errors import FormatError, InputError, ReadError, ReleaseError
from .esp_image import (ESP32_FAMILY_WP_PIN, decode_header, header_flash_size, read_image, short_image_note,
                        size_taken_note)
from .formats import FormatRegistry, stock_registry
from .fsutil import read_input
from .release import read_release, release_root

TABLE_OFFSET = pt.MAIN_TABLE_OFFSET
_MODE_NAMES = {v: k for k, v in FLASH_MODES.items()}


# --- what is it? ------------------------------------------------------------------------------

def detect_kind(data: bytes, name: str = "", formats: Optional[FormatRegistry] = None) -> str:
    """"image", "partition_table", the kind of a partition format, or "unknown"."""
    if _table_offset(data) is not None and len(data) > _table_offset(data) + 32:
        return "image"
    if data[:2] == pt.ENTRY_MAGIC:
        return "partition_table"
    fmt = (formats or stock_registry()).detect(data, name)
    return fmt.kind if fmt else "unknown"


def read_file(path: str) -> bytes:
    """A file given to the read-back tools: regular files only (a FIFO or /dev/zero never ends)."""
    try:
        return read_input(path)
    except InputError as err:
        raise ReadError(f"{path}: {err.reading}") from None


def read_path(path: str, formats: Optional[FormatRegistry] = None) -> dict:
    """Decode whatever ``path`` is.  Raises ReadError/FormatError when it is nothing we know."""
    return read_any(path, formats)[1]


def read_any(path: str, formats: Optional[FormatRegistry] = None, invalid_ok: bool = False) -> Tuple[bytes, dict]:
    """(bytes, document) of whatever ``path`` is: a release folder as the flash it describes.

    A single partition that is not what its name or magic says raises ReadError naming the
    file, or with ``invalid_ok`` (diff compares such files byte by byte) is the document
    ``{"kind": "invalid", "expected": <kind>, "error": ...}``."""
    formats = formats or stock_registry()
    if os.path.isdir(path):
        return read_release_folder(path, formats)
    data = read_file(path)
    kind = detect_kind(data, path, formats)
    if kind == "image":
        return data, decode_flash(data, source=path, formats=formats)
    if kind == "unknown":
        raise ReadError(f"{path}: not an AT binary atfactory knows: expected a factory image or flash dump, "
                        "a release folder, a partition table, at_customize.bin, factory_param, a certificate "
                        "or key partition, ble_data.bin, or an NVS image (mfg_nvs.bin)")
    try:
        if kind == "partition_table":
            table = pt.decode_partition_table(data)
            doc = {"kind": "partition_table", "md5": table.md5, "partitions": [_entry_doc(e) for e in table.entries]}
        else:
            doc = formats[kind].decode(data)
    except FormatError as err:
        if not invalid_ok:
            raise ReadError(f"{path}: {err}") from None
        doc = {"kind": "invalid", "expected": kind, "error": str(err)}
    return data, dict(doc, path=path)


def read_flash(path: str, formats: Optional[FormatRegistry] = None) -> Tuple[bytes, dict]:
    """The flash bytes and decoded document of an image file or a release folder (an image cut
    short: with its erased tail)."""
    formats = formats or stock_registry()
    if os.path.isdir(path):
        return read_release_folder(path, formats)
    data = read_file(path)
    doc = decode_flash(data, source=path, formats=formats)
    return with_erased_tail(data, doc), doc


def read_release_folder(folder: str, formats: Optional[FormatRegistry] = None) -> Tuple[bytes, dict]:
    """A release folder as the flash its download.config describes: (flash bytes, document)."""
    root = release_root(folder)
    try:
        release = read_release(folder, root=root if root != folder else None)
    except ReleaseError as err:
        raise ReadError(f"{folder}: {err}") from None
    config = release.config
    pieces: List[Tuple[int, bytes, str]] = [(f.offset, read_file(f.full), f.path) for f in release.files]
    end = max([o + len(d) for o, d, _ in pieces] + [0])
    if any(config.flash_size in chip.flash_sizes for chip in CHIPS.values()):
        end = max(end, flash_size_bytes(config.flash_size))   # the rest of the flash: erased
    flash = bytearray(b"\xff" * end)
    for offset, data, _ in pieces:
        flash[offset:offset + len(data)] = data
    at_offset = next((o for o, _, rel in pieces if rel == "at_customize.bin"), None)
    doc = decode_flash(bytes(flash), source=folder, at_customize_offset=at_offset,
                       declared_flash={"mode": config.flash_mode, "freq": config.flash_freq, "size": config.flash_size},
                       formats=formats)
    doc["kind"] = "release"
    doc["files"] = [{"offset": o, "path": rel, "length": len(d)} for o, d, rel in pieces]
    if release.warnings:
        doc["warnings"] = list(release.warnings)
    chip = _manifest_chip(root)
    if chip is not None:
        doc["manifest_chip"] = chip
    return bytes(flash), doc


def _manifest_chip(folder: str) -> Optional[str]:
    """The chip an atfactory release folder's manifest.json names, when it names a known one
    (a folder built without firmware has no bootloader to tell it)."""
    import json

    try:
        board = json.loads(read_input(os.path.join(folder, "manifest.json"))).get("board")
        chip = board.get("chip") if isinstance(board, dict) else None
    except (InputError, ValueError, AttributeError):
        return None
    return chip if isinstance(chip, str) and chip in CHIPS else None


# --- a whole flash ----------------------------------------------------------------------------

def _table_offset(data: bytes) -> Optional[int]:
    """Where the main partition table is: the first of the offsets chips use that holds one."""
    return next((o for o in TABLE_OFFSETS if data[o:o + 2] == pt.ENTRY_MAGIC), None)


def _detect_chip(data: bytes) -> Tuple[Optional[str], Optional[int], Optional[Tuple[int, int]]]:
    """(chip, bootloader offset, None) from the bootloader image header; (None, None, (offset,
    chip id)) for an ESP32-family header whose chip id no chip here has; else (None, None, None)."""
    known_ids = {c.image_chip_id for c in CHIPS.values()}
    unknown = None
    for offset in sorted({c.bootloader_offset for c in CHIPS.values()}, reverse=True):
        header = decode_header(data, offset)
        if header is None or len(data) < offset + 24:
            continue
        if header.wp_pin == ESP32_FAMILY_WP_PIN:   # ESP32-family extended header
            for chip in CHIPS.values():
                if chip.image_chip_id == header.chip_id and chip.bootloader_offset == offset:
                    return chip.name, offset, None
            if header.chip_id not in known_ids and unknown is None:
                unknown = (offset, header.chip_id)
        elif offset == 0:
            return "esp8266", 0, None
    return None, None, unknown


def _flash_header(data: bytes, chip_name: str, offset: int) -> dict:
    chip = CHIPS[chip_name]
    header = decode_header(data, offset)
    mode, size_freq = header.flash_mode, header.flash_size_freq
    sizes = {v: k for k, v in chip.flash_sizes.items()}
    freqs = {v: k for k, v in chip.flash_freqs.items()}
    return {"mode": _MODE_NAMES.get(mode, f"0x{mode:02x}"),
            "freq": freqs.get(size_freq & 0x0F, f"0x{size_freq & 0x0F:x}"),
            "size": sizes.get(size_freq & 0xF0, f"0x{size_freq & 0xF0:02x}"),
            "header_byte3": size_freq}


def header_size_problem(chip_name: str, header: dict, image_length: int) -> Optional[str]:
    """What is wrong with the flash size a bootloader header gives (``header``: as ``_flash_header``
    decodes it) for this chip and an image of ``image_length`` bytes; None when it fits."""
    chip = CHIPS[chip_name]
    byte3, declared = header["header_byte3"], header["size"]
    if declared not in chip.flash_sizes:
        return (f"bootloader header: flash size nibble 0x{byte3 & 0xF0:02x} (byte 3 = 0x{byte3:02x}) is no size "
                f"of the {chip.title} encoding")
    if flash_size_bytes(declared) >= image_length:
        return None   # equal, or an image cut after its last written byte (short_image_note says so)
    msg = (f"bootloader header: flash size {declared} ({chip.title} encoding, byte 3 = 0x{byte3:02x}) "
           f"but the image is {image_length} bytes")
    if chip.name == "esp8266":
        esp32_sizes = {v: k for k, v in CHIPS["esp32"].flash_sizes.items()}
        guess = esp32_sizes.get(byte3 & 0xF0)
        if guess and flash_size_bytes(guess) == image_length:
            msg += (f": the size was encoded with the ESP32 table ({guess}), the defect of Espressif's "
                    "combine script; re-merge with esptool")
    return msg


def decode_flash(data: bytes, source: str = "", at_customize_offset: Optional[int] = None,
                 declared_flash: Optional[dict] = None, formats: Optional[FormatRegistry] = None) -> dict:
    """``data``: an image or flash dump (an image cut after its last written byte is read as if
    the rest of its flash were erased: ``image_end`` says where it ends), or a release folder's
    flash with its download.config settings in ``declared_flash``."""
    formats = formats or stock_registry()
    doc: dict = {"kind": "image", "path": source, "size": len(data)}
    chip, boot, unknown = _detect_chip(data)
    doc["chip"] = chip
    if unknown is not None:
        doc["image_chip_id"] = unknown[1]
        doc["notes"] = [f"the bootloader at 0x{unknown[0]:x} is for a chip atfactory does not know (image chip id "
                        f"0x{unknown[1]:x}): its flash settings are not decoded and nothing chip-specific is checked"]
    table = None
    table_offset = _table_offset(data)
    if table_offset is not None and len(data) >= table_offset + 32:
        try:
            table = pt.decode_partition_table(data[table_offset:table_offset + pt.TABLE_SIZE])
        except FormatError as err:
            table_doc = {"offset": table_offset, "error": str(err), "partitions": []}
        else:
            table_doc = {"offset": table_offset, "md5": table.md5, "partitions": [_entry_doc(e) for e in table.entries]}
    if chip is not None:
        bootloader = {"offset": boot, "flash": _flash_header(data, chip, boot)}
        try:
            bootloader["length"] = read_image(data, boot, extended_header=CHIPS[chip].image_chip_id is not None).length
        except FormatError as err:
            bootloader["error"] = str(err)
        doc["bootloader"] = bootloader
    doc["flash"] = dict(declared_flash) if declared_flash else _header_flash_settings(doc, table)
    if chip is not None and declared_flash is None and not doc["bootloader"]["flash"].get("defect"):
        problem = header_size_problem(chip, doc["bootloader"]["flash"], len(data))
        if problem:   # an image: the header is all it says about its flash
            doc.setdefault("notes", []).append(problem)
    if table_offset is not None and len(data) >= table_offset + 32:
        doc["partition_table"] = table_doc
    flash_end = _flash_bytes(doc["flash"].get("size"))
    if declared_flash is None and len(data) < flash_end:
        doc["image_end"] = len(data)
    if table is not None and chip is not None:
        app = _application(data, table, chip, flash_end)
        if app is not None:
            doc["application"] = app
    region = None
    if table is not None:
        at = [e for e in table.entries if e.type == pt.AT_CUSTOMIZE_TYPE and e.subtype == pt.AT_CUSTOMIZE_SUBTYPE]
        if at:
            region = (at[0].offset, at[0].size)
    if region is None and at_customize_offset is not None:
        region = (at_customize_offset, None)
    if region is not None:
        doc["at_customize"] = decode_at_customize(data, *region, formats=formats, flash_end=flash_end)
    return doc


def _application(data: bytes, table: pt.DecodedTable, chip: str, flash_end: int) -> Optional[dict]:
    """The released application (the first app partition): its length and whether its SHA-256
    digest is there and right ("ok", "wrong", "none")."""
    apps = [e for e in table.entries if e.type == 0x00]
    if not apps or apps[0].offset >= len(data):
        return None
    app = apps[0]
    doc: dict = {"partition": app.name, "offset": app.offset}
    part = data[app.offset:app.end]
    if app.end <= flash_end:   # an image cut short: erased past its end
        part += b"\xff" * (app.size - len(part))
    try:
        info = read_image(part, extended_header=CHIPS[chip].image_chip_id is not None)
    except FormatError as err:
        doc["error"] = str(err)
        return doc
    doc["length"] = info.length
    doc["digest"] = {True: "ok", False: "wrong", None: "none"}[info.digest_ok]
    return doc


def _header_flash_settings(doc: dict, table: Optional[pt.DecodedTable]) -> dict:
    """The flash settings of an image's bootloader header, with the size it stands for
    (``header_flash_size``: the combine script's ESP8266 defect is noted in the bootloader's)."""
    if doc["chip"] is None:
        return {}
    header = doc["bootloader"]["flash"]
    table_end = max([e.end for e in table.entries] + [0]) if table is not None else 0
    size = header_flash_size(doc["chip"], header["header_byte3"], doc["size"], table_end)
    if size.defect:
        header["defect"] = size.defect
    return {"mode": header["mode"], "freq": header["freq"], "size": size.size or header["size"]}


def _flash_bytes(size) -> int:
    """The bytes of a flash size name; 0 where it names none ("0x70" from an unknown header)."""
    return flash_size_bytes(size) if any(size in chip.flash_sizes for chip in CHIPS.values()) else 0


def with_erased_tail(data: bytes, doc: dict) -> bytes:
    """The flash an image stands for: its bytes, and erased bytes up to ``image_end``'s flash size."""
    if "image_end" not in doc:
        return data
    return data + b"\xff" * (_flash_bytes(doc["flash"]["size"]) - len(data))


def document_notes(doc: dict) -> List[str]:
    """What a decoded image was read as that its bytes do not say: the real flash size, the erased tail."""
    notes = []
    defect = ((doc.get("bootloader") or {}).get("flash") or {}).get("defect")
    if defect:
        notes.append(size_taken_note(defect, doc["flash"]["size"]))
    if "image_end" in doc:
        notes.append(short_image_note(doc["image_end"], _flash_bytes(doc["flash"]["size"])))
    return notes


def decode_at_customize(data: bytes, offset: int, size: Optional[int], formats: Optional[FormatRegistry] = None,
                        flash_end: int = 0) -> dict:
    """``flash_end``: the flash the image stands for; a partition inside it that the image does not
    (wholly) hold is read as erased past the image's end, and says so (``image_end``)."""
    formats = formats or stock_registry()
    doc: dict = {"offset": offset}
    if size is not None:
        doc["size"] = size
    raw = data[offset:offset + pt.TABLE_SIZE]
    if len(raw) < pt.ENTRY.size or raw[:2] != pt.ENTRY_MAGIC:
        doc["error"] = "erased" if raw.strip(b"\xff") == b"" else f"no partition table at 0x{offset:x}"
        doc["partitions"] = []
        return doc
    try:
        table = pt.decode_partition_table(raw)
    except FormatError as err:
        doc["error"] = str(err)
        doc["partitions"] = []
        return doc
    parts = []
    for e in table.entries:
        part = _entry_doc(e)
        content = data[e.offset:e.offset + e.size]
        if len(content) < e.size and e.end <= flash_end:
            content += b"\xff" * (e.size - len(content))
            part["image_end"] = len(data)
        if len(content) < e.size and e.offset < len(data):
            part["content"] = {"kind": "invalid", "error": f"cut short: {len(content)} of {e.size} bytes present"}
        else:
            part["content"] = decode_named_partition(e.name, content, formats)
        parts.append(part)
    doc["partitions"] = parts
    return doc


def _entry_doc(e: pt.Entry) -> dict:
    doc = {"name": e.name, "type": e.type, "subtype": e.subtype, "offset": e.offset, "size": e.size}
    if e.flags:
        doc["flags"] = e.flags
    return doc


def image_releases(data: bytes, doc: dict, formats: Optional[FormatRegistry] = None) -> Optional[frozenset]:
    """The AT releases a decoded flash can be, from its at_customize partitions (None: no format can tell)."""
    parts = (doc.get("at_customize") or {}).get("partitions", [])
    return (formats or stock_registry()).firmware_releases(
        [(p["name"], p["type"], p["subtype"]) for p in parts], {p["name"]: data[p["offset"]:p["offset"] + p["size"]]
                                                                for p in parts})


# --- one partition ----------------------------------------------------------------------------

def decode_named_partition(name: str, data: bytes, formats: Optional[FormatRegistry] = None) -> dict:
    """A partition's bytes decoded by the format its name says (read back, any AT release)."""
    if not data or data.strip(b"\xff") == b"":
        return {"kind": "erased"}
    fmt = (formats or stock_registry()).for_partition(name, None)
    try:
        return fmt.decode(data, name)
    except FormatError as err:
        return {"kind": "invalid", "expected": fmt.kind, "error": str(err)}
