"""ble_data.bin: the GATT service table of the AT firmware's BLE server (FORMATS.md §4).

    L (u16) | 27 95 | L bytes of JSON: {"Service": [row, ...]}

The JSON is what Python's json.dumps writes with its default separators; rows keep the key
order of the CSV header.  The CSV is read up to its first all-empty row.  ESP-AT v2.0 and v2.1
ran their generator under Python 2, whose dicts iterate in hash order: every row's keys come in
``PYTHON2_KEY_ORDER`` whatever the CSV's column order.
"""
from __future__ import annotations

import csv
import io
import json
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

from .errors import ContentError, FormatError

MAGIC = b"\x27\x95"
COLUMNS = ("index", "uuid_len", "uuid", "perm", "val_max_len", "val_cur_len", "value")
INT_COLUMNS = ("index", "uuid_len", "val_max_len", "val_cur_len")
DEFAULTS = {"val_max_len": 512, "val_cur_len": 0, "value": ""}
UUID_LENS = (16, 32, 128)
# CPython 2.7's (64-bit) iteration order of a dict with exactly the seven COLUMNS as keys.
PYTHON2_KEY_ORDER = ("index", "uuid", "uuid_len", "val_max_len", "value", "perm", "val_cur_len")
MAX_JSON = 0xFFFF

PRIMARY_SERVICE = 0x2800
SECONDARY_SERVICE = 0x2801
INCLUDE = 0x2802
CHARACTERISTIC = 0x2803
_HEX = re.compile(r"^(0[xX])?[0-9a-fA-F]+\Z")

Row = "OrderedDict[str, object]"


def _hex_int(text: str) -> int:
    return int(text, 16)


def read_gatt_csv(text: str) -> List[Row]:
    """Parse a GATT CSV into JSON-ready rows.  Raises ContentError naming line and column."""
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ContentError(f"the file is empty; expected the header {','.join(COLUMNS)}") from None
    except csv.Error as exc:
        raise ContentError(f"line 1: not a readable CSV header ({exc})") from None
    header = [h.strip() for h in header]
    if sorted(header) != sorted(COLUMNS):
        shown = ",".join(header)
        shown = shown if len(shown) <= 80 else shown[:80] + "..."   # a binary file has no line ends
        raise ContentError(f"line 1: header {shown!r}; expected the columns {','.join(COLUMNS)}")
    rows: List[Row] = []
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ContentError(f"line {reader.line_num}: not a readable CSV row ({exc})") from None
        line = reader.line_num
        if not any(c.strip() for c in cells):
            break
        if len(cells) != len(header):
            raise ContentError(f"line {line}: {len(cells)} cells, expected {len(header)}")
        raw = {name: cell.strip() for name, cell in zip(header, cells)}
        row: Row = OrderedDict()
        for name in header:
            row[name] = _convert(name, raw[name], line)
        _check_row(row, line)
        rows.append(row)
    if not rows:
        raise ContentError("no rows after the header; expected at least a service declaration (uuid 0x2800)")
    _check_structure(rows)
    return rows


def _convert(name: str, cell: str, line: int):
    where = f"line {line}, {name} = {cell!r}"
    if cell == "" and name in DEFAULTS:
        return DEFAULTS[name]
    if name in INT_COLUMNS:
        if not re.fullmatch(r"[0-9]+", cell):
            raise ContentError(f"{where}: expected a decimal integer")
        return int(cell)
    if name == "perm":
        if not _HEX.match(cell):
            raise ContentError(f"{where}: not hexadecimal (write it as 0x11)")
        return _hex_int(cell)
    if name == "uuid":
        if not _HEX.match(cell):
            raise ContentError(f"{where}: not hexadecimal (write it as 0x2800 or a 128-bit 0x... value)")
        digits = format(_hex_int(cell), "X")
        return digits if len(digits) % 2 == 0 else "0" + digits
    if name == "value":
        if not re.fullmatch(r"[0-9a-fA-F]+", cell):
            raise ContentError(f"{where}: not hexadecimal bytes (write them as 3031 without 0x)")
        # Pairs from the left; an odd last nibble becomes a byte of its own (ABC -> AB 0C).
        return "".join(format(int(cell[i:i + 2], 16), "02X") for i in range(0, len(cell), 2))
    raise ContentError(f"{where}: empty, and the column has no default")


def _check_row(row: Row, line: int) -> None:
    if row["uuid_len"] not in UUID_LENS:
        raise ContentError(f"line {line}, uuid_len = {row['uuid_len']}: expected 16, 32 or 128")
    if len(row["uuid"]) * 4 > row["uuid_len"]:
        raise ContentError(f"line {line}, uuid = 0x{row['uuid']}: longer than uuid_len = {row['uuid_len']} bits")
    if row["val_cur_len"] > row["val_max_len"]:
        raise ContentError(f"line {line}, val_cur_len = {row['val_cur_len']}: larger than val_max_len = {row['val_max_len']}")
    value_len = len(row["value"]) // 2
    if value_len > row["val_max_len"]:
        raise ContentError(f"line {line}, value: {value_len} bytes, larger than val_max_len = {row['val_max_len']}")
    if row["perm"] > 0xFFFF:
        raise ContentError(f"line {line}, perm = 0x{row['perm']:X}: expected 16 bits at most")


def _uuid16(row: Row):
    return int(row["uuid"], 16) if row["uuid_len"] == 16 else None


def _check_structure(rows: List[Row]) -> None:
    """The first row declares a service; a value row follows its 0x2803 declaration."""
    line_of = lambda i: i + 2  # noqa: E731 - header is line 1
    if _uuid16(rows[0]) not in (PRIMARY_SERVICE, SECONDARY_SERVICE):
        raise ContentError(f"line 2, uuid = 0x{rows[0]['uuid']}: the first row must declare a service (uuid 0x2800 or 0x2801)")
    previous = None
    for i, row in enumerate(rows):
        u = _uuid16(row)
        is_declaration = u in (PRIMARY_SERVICE, SECONDARY_SERVICE, INCLUDE, CHARACTERISTIC)
        is_descriptor = u is not None and 0x2900 <= u <= 0x29FF
        if not is_declaration and not is_descriptor:
            if previous != CHARACTERISTIC:
                raise ContentError(
                    f"line {line_of(i)}, uuid = 0x{row['uuid']}: a characteristic value must follow "
                    f"its declaration row (uuid 0x2803)")
            previous = "value"
        elif is_descriptor:
            if previous not in ("value", "descriptor"):
                raise ContentError(
                    f"line {line_of(i)}, uuid = 0x{row['uuid']}: a descriptor must follow a characteristic value")
            previous = "descriptor"
        else:
            previous = u


def encode_ble_data(rows: List[Row], key_order: Optional[Sequence[str]] = None) -> bytes:
    """The partition of these rows; each row's keys in ``key_order`` when given (PYTHON2_KEY_ORDER
    for ESP-AT v2.0 and v2.1), else in the rows' own order (the CSV's)."""
    if key_order is not None:
        rows = [OrderedDict((k, row[k]) for k in key_order) for row in rows]
    text = json.dumps({"Service": rows}).encode("ascii")
    if len(text) > MAX_JSON:
        raise FormatError(f"ble_data: the GATT table is {len(text)} bytes of JSON, at most {MAX_JSON} fit")
    return len(text).to_bytes(2, "little") + MAGIC + text


def decode_ble_data(data: bytes) -> List[Dict[str, object]]:
    if len(data) < 4:
        raise FormatError(f"ble_data: {len(data)} bytes, shorter than the 4-byte header", offset=0)
    if bytes(data[2:4]) != MAGIC:
        raise FormatError(f"ble_data: magic {bytes(data[2:4]).hex()}, expected 2795", offset=2)
    length = int.from_bytes(data[0:2], "little")
    if 4 + length > len(data):
        raise FormatError(f"ble_data: header declares {length} bytes of JSON, only {len(data) - 4} follow", offset=0)
    try:
        doc = json.loads(bytes(data[4:4 + length]).decode("ascii"), object_pairs_hook=OrderedDict)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FormatError(f"ble_data: the JSON does not parse ({exc})", offset=4) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("Service"), list):
        raise FormatError('ble_data: expected {"Service": [...]}', offset=4)
    for n, row in enumerate(doc["Service"]):
        if not isinstance(row, dict) or set(row) != set(COLUMNS):
            raise FormatError(f"ble_data: row {n} does not have the columns {', '.join(COLUMNS)}", offset=4)
    return doc["Service"]


def write_gatt_csv(rows: List[Dict[str, object]], columns=None) -> str:
    """The CSV that read_gatt_csv turns back into ``rows`` (for extract and round trips).

    ``columns`` is the header order (the JSON keeps the CSV's column order); default COLUMNS.
    """
    columns = list(columns or COLUMNS)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    cell = {
        "uuid": lambda v: "0x" + str(v),
        "perm": lambda v: f"0x{v:02X}",
    }
    for row in rows:
        writer.writerow([cell.get(c, str)(row[c]) for c in columns])
    return out.getvalue()


