"""ESP-IDF partition tables: the firmware's main table and the AT firmware's at_customize.bin.

Each entry is 32 bytes (FORMATS.md §2); after the entries an optional MD5 row (EB EB, 14 x FF,
MD5 of the entry bytes), then 0xFF up to the table size.  At least one erased row must remain
as the end marker.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import List, Optional, Sequence

from .errors import FormatError

ENTRY = struct.Struct("<2sBBII16sI")
ENTRY_MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb"
TABLE_SIZE = 3072                       # at_customize.bin and partition-table.bin
MAX_ENTRIES = TABLE_SIZE // ENTRY.size - 2   # MD5 row and one erased end row

TYPES = {"app": 0x00, "data": 0x01}
SUBTYPES = {
    0x00: dict({"factory": 0x00, "test": 0x20}, **{f"ota_{i}": 0x10 + i for i in range(16)}),
    0x01: {
        "ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04,
        "efuse": 0x05, "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82,
        "littlefs": 0x83,
    },
}
APP_ALIGN = 0x10000
DATA_ALIGN = 0x1000
MAIN_TABLE_OFFSET = 0x8000              # where ESP-IDF's bootloader reads the main table
# The main table's entry for the AT partitions (at_customize.bin and what it lists).
AT_CUSTOMIZE_TYPE, AT_CUSTOMIZE_SUBTYPE = 0x40, 0x00
AT_CUSTOMIZE_SECTOR = 0x1000            # the region's first sector holds at_customize.bin itself


@dataclass(frozen=True)
class Entry:
    name: str
    type: int
    subtype: int
    offset: int
    size: int
    flags: int = 0

    @property
    def end(self) -> int:
        return self.offset + self.size


def encode_partition_table(entries: Sequence[Entry], md5: bool = True) -> bytes:
    if len(entries) > MAX_ENTRIES:
        raise FormatError(f"partition table: {len(entries)} entries, at most {MAX_ENTRIES} fit")
    body = bytearray()
    for e in entries:
        if not e.name.isascii() or "\0" in e.name:
            raise FormatError(f"partition table: name {e.name!r} is not ASCII text without NUL")
        name = e.name.encode("ascii")
        if not 0 < len(name) <= 16:
            raise FormatError(f"partition table: name {e.name!r} must be 1 to 16 bytes")
        if not (0 <= e.type <= 0xFE and 0 <= e.subtype <= 0xFF):
            raise FormatError(f"partition table: {e.name}: type 0x{e.type:x} / subtype 0x{e.subtype:x} out of range")
        if not (0 <= e.offset < 1 << 32 and 0 <= e.size < 1 << 32 and 0 <= e.flags < 1 << 32):
            raise FormatError(f"partition table: {e.name}: offset, size or flags out of 32-bit range")
        body += ENTRY.pack(ENTRY_MAGIC, e.type, e.subtype, e.offset, e.size, name.ljust(16, b"\0"), e.flags)
    if md5:
        body += MD5_MAGIC + b"\xff" * 14 + hashlib.md5(body).digest()
    return bytes(body.ljust(TABLE_SIZE, b"\xff"))


@dataclass(frozen=True)
class DecodedTable:
    entries: List[Entry]
    md5: Optional[bool]   # True: MD5 row present and right; False: absent


def decode_partition_table(data: bytes) -> DecodedTable:
    """Read a table back.  A wrong MD5, a bad magic or a row cut short raises FormatError."""
    entries: List[Entry] = []
    md5 = False
    pos = 0
    limit = min(len(data), TABLE_SIZE)
    while True:
        if pos + ENTRY.size > limit:
            raise FormatError("partition table: no end marker (an erased row) before the end of the table", offset=pos)
        row = bytes(data[pos:pos + ENTRY.size])
        if row == b"\xff" * ENTRY.size:
            break
        magic = row[:2]
        if magic == MD5_MAGIC:
            expected = hashlib.md5(bytes(data[:pos])).digest()
            if row[16:] != expected:
                raise FormatError("partition table: MD5 row does not match the entries", offset=pos)
            md5 = True
            pos += ENTRY.size
            if pos + ENTRY.size <= limit and bytes(data[pos:pos + ENTRY.size]) != b"\xff" * ENTRY.size:
                raise FormatError("partition table: data after the MD5 row", offset=pos)
            break
        if magic != ENTRY_MAGIC:
            raise FormatError(f"partition table: row magic {magic.hex()}, expected aa50", offset=pos)
        _, ptype, subtype, offset, size, raw_name, flags = ENTRY.unpack(row)
        name_bytes = raw_name.split(b"\0", 1)[0]
        try:
            name = name_bytes.decode("ascii")
        except UnicodeDecodeError:
            raise FormatError("partition table: name is not ASCII", offset=pos + 12) from None
        entries.append(Entry(name, ptype, subtype, offset, size, flags))
        pos += ENTRY.size
    return DecodedTable(entries, md5)


def type_name(ptype: int) -> str:
    for name, value in TYPES.items():
        if value == ptype:
            return name
    return f"0x{ptype:02x}"


def subtype_name(ptype: int, subtype: int) -> str:
    for name, value in SUBTYPES.get(ptype, {}).items():
        if value == subtype:
            return name
    return str(subtype)
