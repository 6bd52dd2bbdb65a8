"""A board's own namespaces in mfg_nvs (ESP-AT v3.1+): typed keys beside ESP-AT's.

    [mfg_nvs.namespaces.acme]                 # namespace "acme", written after ESP-AT's namespaces
    serial = "SN-000001"                      # a string
    hw_rev = { type = "u8", value = 3 }       # u8 i8 u16 i16 u32 i32 u64 i64: an integer in range
    banner = { type = "string", value = "hello" }
    calibration = { type = "blob", file = "cal/acme.bin" }    # a file's bytes, relative to the board
    secret_salt = { type = "blob", hex = "00 11 22 33" }      # or inline: hex (spaces allowed) or base64

Namespaces follow ESP-AT's (the certificate sets, factory_param, ble_data) in the order the
board files name them; keys in the order written.  An ``extends`` layer adds namespaces and keys
or replaces a key's whole entry; it keeps the base's order.  Names are 1 to 15 bytes of letters,
digits, '_', '-' and '.', not starting with '.' or '-', and no namespace may take a name ESP-AT
writes.  A devices CSV gives per-device values in columns ``mfg_nvs.<namespace>.<key>`` (the
board declares each key and its type; a blob cell is a file path relative to the CSV).
"""
from __future__ import annotations

import base64
import binascii
import os
import re
from typing import Iterator, List, Mapping, NamedTuple, Optional, Tuple, Union

from .at_releases import MFG_NVS_NAMESPACES
from .errors import Problem as ProblemRecord
from .errors import did_you_mean
from .nvs_limits import INTEGER_RANGES, MAX_NAME_BYTES, MAX_STRING_CHARS
from .numbers import parse_int

RESERVED = frozenset(MFG_NVS_NAMESPACES)
TABLE = "namespaces"            # [mfg_nvs.namespaces.<name>]
COLUMN_PREFIX = "mfg_nvs."      # devices CSV: mfg_nvs.<namespace>.<key>
TYPES = tuple(INTEGER_RANGES) + ("string", "blob")
BLOB_SOURCES = ("file", "hex", "base64")
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
NAME_RULE = (f"1 to {MAX_NAME_BYTES} bytes of letters, digits, '_', '-' and '.', not starting with '.' or '-'")


class VendorKey(NamedTuple):
    """One key as a board declares it: ``value`` is an int, a str, bytes (inline blob) or None
    with ``file`` set (a blob read from that file)."""
    namespace: str
    key: str
    type: str
    value: Union[int, str, bytes, None]
    file: Optional[str] = None


Problem = Tuple[str, str, object]   # (dotted key, message, value or NO_VALUE)
NO_VALUE = ProblemRecord.NO_VALUE   # a problem that shows no value


def name_problem(name: str, what: str) -> Optional[str]:
    raw = name.encode("utf-8")
    if not NAME.match(name) or len(raw) > MAX_NAME_BYTES:
        return f"{what} {name!r} is not a name NVS and atfactory accept; accepted: {NAME_RULE}"
    return None


def entry_problems(prefix: str, spec) -> Iterator[Problem]:
    """What is wrong with one key's entry as written (``prefix`` is its dotted board key)."""
    if isinstance(spec, str):
        spec = {"type": "string", "value": spec}
    if not isinstance(spec, dict):
        yield (prefix, "expected a string, or a table such as { type = \"u8\", value = 1 }", spec)
        return
    unknown = [k for k in spec if k not in ("type", "value") + BLOB_SOURCES]
    if unknown:
        yield (f"{prefix}.{unknown[0]}", "unknown key; accepted here: type, value, file, hex, base64"
               + did_you_mean(unknown[0], ("type", "value") + BLOB_SOURCES), NO_VALUE)
        return
    kind = spec.get("type")
    if kind not in TYPES:
        yield (f"{prefix}.type", f"unknown NVS type; accepted: {', '.join(TYPES)}",
               kind if kind is not None else NO_VALUE)
        return
    given = [k for k in ("value",) + BLOB_SOURCES if k in spec]
    if kind == "blob":
        if len(given) != 1:
            yield (prefix, "a blob takes exactly one of file (a path), hex or base64", NO_VALUE)
            return
        source = given[0]
        value = spec[source]
        if source == "value" or not isinstance(value, str):
            yield (f"{prefix}.{source}", "a blob takes file = \"path\", hex = \"...\" or base64 = \"...\" "
                   "(a string)", value)
            return
        if source != "file":
            try:
                data = decode_inline(source, value)
            except ValueError as exc:
                yield (f"{prefix}.{source}", str(exc), value)
                return
            if not data:
                yield (f"{prefix}.{source}", "an empty blob; give at least one byte", value)
        elif not value:
            yield (f"{prefix}.file", "an empty path; give the file whose bytes the blob holds", value)
        return
    if given != ["value"]:
        yield (prefix, f"a {kind} takes value = ... and nothing else", NO_VALUE)
        return
    value = spec["value"]
    if kind == "string":
        if not isinstance(value, str):
            yield (f"{prefix}.value", "expected a string", value)
        else:
            yield from string_problems(f"{prefix}.value", value)
        return
    low, high = INTEGER_RANGES[kind]
    if isinstance(value, bool) or not isinstance(value, int):
        yield (f"{prefix}.value", f"expected an integer for {kind} ({low} to {high})", value)
    elif not low <= value <= high:
        yield (f"{prefix}.value", f"out of range for {kind}; accepted: {low} to {high}", value)


def string_problems(key: str, value: str) -> Iterator[Problem]:
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_STRING_CHARS:
        yield (key, f"the string is {len(raw)} bytes; an NVS string must fit one page, at most "
                    f"{MAX_STRING_CHARS} bytes (UTF-8)", value[:40] + "...")
    elif "\0" in value:
        yield (key, "holds a NUL character, which would cut the string short on the device", value)
    else:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            yield (key, "holds a lone surrogate, which UTF-8 cannot write", value)


def decode_inline(source: str, text: str) -> bytes:
    if source == "hex":
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise ValueError("not hexadecimal bytes; accepted: pairs of hex digits, spaces allowed") from None
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64 (RFC 4648, with padding)") from None


def table_problems(table) -> Iterator[Problem]:
    """Everything wrong with one file's [mfg_nvs.namespaces] as written."""
    if not isinstance(table, dict):
        yield (f"mfg_nvs.{TABLE}", "expected a table: [mfg_nvs.namespaces.<name>]", table)
        return
    for ns, keys in table.items():
        prefix = f"mfg_nvs.{TABLE}.{ns}"
        message = name_problem(ns, "the namespace")
        if message:
            yield (prefix, message, NO_VALUE)
            continue
        if ns in RESERVED:
            yield (prefix, f"ESP-AT writes the namespace {ns!r} itself; a board's own namespace takes another name "
                           f"(not {', '.join(MFG_NVS_NAMESPACES)})", NO_VALUE)
            continue
        if not isinstance(keys, dict):
            yield (prefix, "expected a table of keys ([mfg_nvs.namespaces.<name>] then key = ...)", keys)
            continue
        if not keys:
            yield (prefix, "no keys; NVS writes no empty namespace, so give it a key or remove it", NO_VALUE)
            continue
        for key, spec in keys.items():
            message = name_problem(key, "the key")
            if message:
                yield (f"{prefix}.{key}", message, NO_VALUE)
                continue
            yield from entry_problems(f"{prefix}.{key}", spec)


def normalise(spec) -> dict:
    return {"type": "string", "value": spec} if isinstance(spec, str) else spec


def declared(table: Optional[Mapping]) -> List[VendorKey]:
    """The merged, checked [mfg_nvs.namespaces] as keys in writing order."""
    out = []
    for ns, keys in (table or {}).items():
        for key, spec in keys.items():
            spec = normalise(spec)
            kind = spec["type"]
            if kind == "blob":
                if "file" in spec:
                    out.append(VendorKey(ns, key, kind, None, spec["file"]))
                else:
                    source = "hex" if "hex" in spec else "base64"
                    out.append(VendorKey(ns, key, kind, decode_inline(source, spec[source])))
            else:
                out.append(VendorKey(ns, key, kind, spec["value"]))
    return out


def cell_value(key: VendorKey, cell: str, base_dir: str):
    """A devices CSV cell for ``key`` as the table entry it stands for; ValueError says why not."""
    if key.type == "string":
        problems = list(string_problems("", cell))
        if problems:
            raise ValueError(problems[0][1])
        return {"type": "string", "value": cell}
    if key.type == "blob":
        return {"type": "blob", "file": os.path.normpath(os.path.join(base_dir, cell))}
    low, high = INTEGER_RANGES[key.type]
    try:
        value = parse_int(cell)
    except ValueError:
        raise ValueError(f"expected an integer for {key.type} (decimal or 0x...)") from None
    if not low <= value <= high:
        raise ValueError(f"out of range for {key.type}; accepted: {low} to {high}")
    return {"type": key.type, "value": value}
