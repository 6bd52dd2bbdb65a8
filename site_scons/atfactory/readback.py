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

import hashlib
import os
from typing import Dict, List, Optional, Tuple

from . import ble_data, factory_param, pki
from . import partition_table as pt
from .chips import CHIPS, FLASH_MODES, flash_size_bytes
from .download_config import decode_download_config
from .errors import AtFactoryError, FormatError
from .esp_image import read_image

TABLE_OFFSET = 0x8000
_MODE_NAMES = {v: k for k, v in FLASH_MODES.items()}


class ReadError(AtFactoryError):
    pass


# --- what is it? ------------------------------------------------------------------------------

def detect_kind(data: bytes, name: str = "") -> str:
    """"image", "partition_table", "factory_param", "pki", "ble_data" or "unknown"."""
    base = os.path.basename(name).lower()
    if len(data) > TABLE_OFFSET + 32 and data[TABLE_OFFSET:TABLE_OFFSET + 2] == pt.ENTRY_MAGIC:
        return "image"
    if data[:2] == pt.ENTRY_MAGIC:
        return "partition_table"
    if data[:2] == factory_param.MAGIC.to_bytes(2, "little"):
        return "factory_param"
    if data[:2] == pki.MAGIC:
        return "pki"
    if data[2:4] == ble_data.MAGIC:
        return "ble_data"
    if base.startswith("factory_param"):
        return "factory_param"
    return "unknown"


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ReadError(f"{path}: cannot be read ({exc.strerror})") from None


def read_path(path: str) -> dict:
    """Decode whatever ``path`` is.  Raises ReadError/FormatError when it is nothing we know."""
    if os.path.isdir(path):
        return read_release_folder(path)[1]
    data = read_file(path)
    kind = detect_kind(data, path)
    if kind == "image":
        return decode_flash(data, source=path)
    if kind == "partition_table":
        table = pt.decode_partition_table(data)
        return {"kind": "partition_table", "path": path, "md5": table.md5,
                "partitions": [_entry_doc(e) for e in table.entries]}
    if kind == "unknown":
        raise ReadError(f"{path}: not an AT binary atfactory knows: expected a factory image or flash dump, "
                        "a release folder, a partition table, at_customize.bin, factory_param, a certificate "
                        "or key partition, or ble_data.bin")
    doc = decode_partition_content(kind, data)
    doc["path"] = path
    return doc


def read_flash(path: str) -> Tuple[bytes, dict]:
    """The flash bytes and decoded document of an image file or a release folder."""
    if os.path.isdir(path):
        return read_release_folder(path)
    data = read_file(path)
    return data, decode_flash(data, source=path)


def read_release_folder(folder: str) -> Tuple[bytes, dict]:
    """A release folder as the flash its download.config describes: (flash bytes, document)."""
    config_path = os.path.join(folder, "download.config")
    if not os.path.isfile(config_path):
        raise ReadError(f"{folder}: no download.config; expected an ESP-AT release folder")
    config = decode_download_config(read_file(config_path))
    pieces: List[Tuple[int, bytes, str]] = []
    for offset, rel in config.entries:
        full = os.path.join(folder, rel)
        if not os.path.isfile(full):
            raise ReadError(f"{config_path}: names {rel}, which is not in the folder")
        pieces.append((offset, read_file(full), rel))
    end = max([o + len(d) for o, d, _ in pieces] + [0])
    if any(config.flash_size in chip.flash_sizes for chip in CHIPS.values()):
        end = max(end, flash_size_bytes(config.flash_size))   # the rest of the flash: erased
    flash = bytearray(b"\xff" * end)
    for offset, data, _ in pieces:
        flash[offset:offset + len(data)] = data
    at_offset = next((o for o, _, rel in pieces if rel == "at_customize.bin"), None)
    doc = decode_flash(bytes(flash), source=folder, at_customize_offset=at_offset,
                       declared_flash={"mode": config.flash_mode, "freq": config.flash_freq, "size": config.flash_size})
    doc["kind"] = "release"
    doc["files"] = [{"offset": o, "path": rel, "length": len(d)} for o, d, rel in pieces]
    return bytes(flash), doc


# --- a whole flash ----------------------------------------------------------------------------

def _detect_chip(data: bytes) -> Tuple[Optional[str], Optional[int]]:
    """(chip, bootloader offset) from the bootloader image header, or (None, None)."""
    for offset in (0x1000, 0x0):
        if len(data) < offset + 24 or data[offset] != 0xE9:
            continue
        if data[offset + 8] == 0xEE:   # ESP32-family extended header (wp pin byte)
            chip_id = int.from_bytes(data[offset + 12:offset + 14], "little")
            for chip in CHIPS.values():
                if chip.image_chip_id == chip_id and chip.bootloader_offset == offset:
                    return chip.name, offset
        elif offset == 0:
            return "esp8266", 0
    return None, None


def _flash_header(data: bytes, chip_name: str, offset: int) -> dict:
    chip = CHIPS[chip_name]
    mode, size_freq = data[offset + 2], data[offset + 3]
    sizes = {v: k for k, v in chip.flash_sizes.items()}
    freqs = {v: k for k, v in chip.flash_freqs.items()}
    return {"mode": _MODE_NAMES.get(mode, f"0x{mode:02x}"),
            "freq": freqs.get(size_freq & 0x0F, f"0x{size_freq & 0x0F:x}"),
            "size": sizes.get(size_freq & 0xF0, f"0x{size_freq & 0xF0:02x}"),
            "header_byte3": size_freq}


def decode_flash(data: bytes, source: str = "", at_customize_offset: Optional[int] = None,
                 declared_flash: Optional[dict] = None) -> dict:
    doc: dict = {"kind": "image", "path": source, "size": len(data)}
    chip, boot = _detect_chip(data)
    doc["chip"] = chip
    if chip is not None:
        bootloader = {"offset": boot, "flash": _flash_header(data, chip, boot)}
        try:
            bootloader["length"] = read_image(data, boot, extended_header=CHIPS[chip].image_chip_id is not None).length
        except FormatError as err:
            bootloader["error"] = str(err)
        doc["bootloader"] = bootloader
    doc["flash"] = dict(declared_flash) if declared_flash else (
        {k: v for k, v in doc["bootloader"]["flash"].items() if k != "header_byte3"} if chip else {})
    table = None
    if len(data) >= TABLE_OFFSET + 32 and data[TABLE_OFFSET:TABLE_OFFSET + 2] == pt.ENTRY_MAGIC:
        try:
            table = pt.decode_partition_table(data[TABLE_OFFSET:TABLE_OFFSET + pt.TABLE_SIZE])
            doc["partition_table"] = {"offset": TABLE_OFFSET, "md5": table.md5,
                                      "partitions": [_entry_doc(e) for e in table.entries]}
        except FormatError as err:
            doc["partition_table"] = {"offset": TABLE_OFFSET, "error": str(err), "partitions": []}
    region = None
    if table is not None:
        at = [e for e in table.entries if e.type == 0x40 and e.subtype == 0]
        if at:
            region = (at[0].offset, at[0].size)
    if region is None and at_customize_offset is not None:
        region = (at_customize_offset, None)
    if region is not None:
        doc["at_customize"] = decode_at_customize(data, *region)
    return doc


def decode_at_customize(data: bytes, offset: int, size: Optional[int]) -> dict:
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
        if len(content) < e.size and e.offset < len(data):
            part["content"] = {"kind": "invalid", "error": f"cut short: {len(content)} of {e.size} bytes present"}
        else:
            part["content"] = decode_named_partition(e.name, content)
        parts.append(part)
    doc["partitions"] = parts
    return doc


def _entry_doc(e: pt.Entry) -> dict:
    doc = {"name": e.name, "type": e.type, "subtype": e.subtype, "offset": e.offset, "size": e.size}
    if e.flags:
        doc["flags"] = e.flags
    return doc


# --- one partition ----------------------------------------------------------------------------

def content_kind(name: str) -> str:
    if name == "factory_param":
        return "factory_param"
    if name == "ble_data":
        return "ble_data"
    if name in pki.PKI_PARTITIONS:
        return "pki"
    return "raw"


def decode_named_partition(name: str, data: bytes) -> dict:
    if not data or data.strip(b"\xff") == b"":
        return {"kind": "erased"}
    kind = content_kind(name)
    if kind == "raw":
        used = data.rstrip(b"\xff")
        return {"kind": "raw", "length": len(used), "sha256": hashlib.sha256(used).hexdigest()}
    try:
        doc = decode_partition_content(kind, data)
    except FormatError as err:
        return {"kind": "invalid", "expected": kind, "error": str(err)}
    if kind == "pki":
        doc["partition_kind"] = pki.PKI_PARTITIONS[name]
    return doc


def decode_partition_content(kind: str, data: bytes) -> dict:
    """Decode one partition's bytes as ``kind``.  Raises FormatError."""
    if kind == "factory_param":
        if len(data) < factory_param.SIZE:
            raise FormatError(f"factory_param: {len(data)} bytes, expected {factory_param.SIZE}", offset=len(data))
        return {"kind": "factory_param", "fields": factory_param.decode_factory_param(data)}
    if kind == "ble_data":
        return {"kind": "ble_data", "rows": [dict(r) for r in ble_data.decode_ble_data(data)]}
    if kind == "pki":
        items = pki.decode_pki(data)
        return {"kind": "pki", "items": [describe_pki_item(i) for i in items]}
    raise FormatError(f"no decoder for {kind}")


def describe_pki_item(item: pki.PkiItem) -> dict:
    """Type, id and length; for certificates who and until when; for keys the algorithm only."""
    doc: Dict[str, object] = {"type": item.type, "type_name": pki.TYPE_NAMES.get(item.type, "unknown"),
                              "id": item.id, "length": len(item.content),
                              "format": "PEM" if b"-----BEGIN " in item.content else "DER"}
    pem = b"-----BEGIN " in item.content
    if b"PRIVATE KEY" in item.content or not pem:
        try:
            doc["key"] = _key_summary(pki.load_private_key(item.content).public_key())
            return doc
        except AtFactoryError as err:
            if pem:
                doc["error"] = str(err)
                return doc
            # DER that is no key: read it as a certificate below
    try:
        certs = pki.load_certificates(item.content)
    except AtFactoryError as err:
        doc["error"] = str(err)
        return doc
    cert = certs[0]
    doc["certificate"] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": _utc(cert, "not_valid_before"),
        "not_after": _utc(cert, "not_valid_after"),
        "serial": format(cert.serial_number, "x"),
        "key": _key_summary(cert.public_key()),
    }
    if len(certs) > 1:
        doc["certificate"]["chain_length"] = len(certs)
    return doc


def _utc(cert, attr: str) -> str:
    value = getattr(cert, attr + "_utc", None) or getattr(cert, attr)
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _key_summary(public_key) -> dict:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, ed448, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        return {"algorithm": "RSA", "size": public_key.key_size}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"algorithm": "EC", "size": public_key.key_size, "curve": public_key.curve.name}
    if isinstance(public_key, dsa.DSAPublicKey):
        return {"algorithm": "DSA", "size": public_key.key_size}
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return {"algorithm": "Ed25519", "size": 256}
    if isinstance(public_key, ed448.Ed448PublicKey):
        return {"algorithm": "Ed448", "size": 456}
    return {"algorithm": type(public_key).__name__}
