"""Reading board files: TOML syntax, key schema, ``extends`` chains and merging.

Each file is checked on its own for syntax, unknown keys and value types, so that a message
names the file the user has to edit.  The merged result remembers, for every value, which
file set it (``origin``), so that later range and layout checks can name that file too.
"""
from __future__ import annotations

import datetime
import os
import re
import sys
from typing import Callable, Dict, List, Optional, Tuple

from .errors import Problem, did_you_mean
from . import vendor_nvs
from .at_releases import MFG_NVS_SETS
from .factory_param import ALL_FIELD_NAMES, LAYOUTS, MODULE_FIELDS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

KeyPath = Tuple[str, ...]
_FIELD_KINDS = {f.name: f.kind for layout in LAYOUTS.values() for f in layout}

MFG_NVS_FILE_KEYS = frozenset(MFG_NVS_SETS + ("ble_data",))   # [mfg_nvs] keys that name files

# Which keys each table accepts, and the types each value may have.
INT_OR_STR = (int, str)
STR_OR_LIST = (str, list)
SCHEMA: Dict[str, Dict[str, tuple]] = {
    "": {"extends": (str,), "module": (dict,), "flash": (dict,), "factory_param": (dict,),
         "at_customize": (dict,), "firmware": (dict,), "release": (dict,), "mfg_nvs": (dict,)},
    "firmware": {"release": (str,)},
    "release": {"valid_until": (str, datetime.date)},
    "module": {"name": (str,), "chip": (str,), "platform": (str,), "description": (str,),
               "at_version": (str,)},
    "flash": {"mode": (str,), "freq": (str,), "size": (str,)},
    # every field of the v2 binary layouts but the two that [module] sets, and v4.1's sys_store
    "factory_param": dict({n: (int,) if _FIELD_KINDS[n] == "int" else (str,) for n in ALL_FIELD_NAMES
                           if n not in MODULE_FIELDS}, sys_store=(int,)),
    # ESP-AT v3.1+: what mfg_nvs holds besides factory_param (file paths, relative to the board file),
    # and the board's own namespaces (vendor_nvs)
    "mfg_nvs": dict({name: STR_OR_LIST for name in MFG_NVS_SETS}, ble_data=(str,), namespaces=(dict,),
                    generator_family=(str,)),
    "at_customize": {"offset": INT_OR_STR, "size": INT_OR_STR, "partitions": (list,)},
    "partition": {"name": (str,), "type": INT_OR_STR, "subtype": INT_OR_STR, "offset": INT_OR_STR,
                  "size": INT_OR_STR, "source": STR_OR_LIST, "remove": (bool,)},
}
TYPE_WORDS = {int: "an integer", str: "a string", dict: "a table", list: "an array", bool: "true or false",
              datetime.date: "a date"}


def _describe_types(types: tuple) -> str:
    return " or ".join(TYPE_WORDS[t] for t in types)


def _type_ok(value, types: tuple) -> bool:
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


class Layer:
    """One board file as written, after its own checks; paths resolved against its folder.
    ``written``: the integers not written in plain decimal (``0x21000``), by key path."""

    def __init__(self, path: str, data: dict, written: Optional[Dict[tuple, str]] = None):
        self.path = path
        self.data = data
        self.written = written or {}


# TOML forgets how an integer was written; messages repeat it as the user wrote it.  Strings and
# comments are skipped; an integer in hex, octal, binary or with underscores is a token of its own.
_INT_TOKENS = re.compile(r'''
    (?P<skip>"""[^\\"]*(?:(?:\\.|"(?!""))[^\\"]*)*"""|\'\'\'[^']*(?:'(?!'')[^']*)*\'\'\'
            |"[^"\\\n]*(?:\\.[^"\\\n]*)*"|'[^'\n]*'|\#[^\n]*)
  | (?<![\w.:+-])(?P<int>[+-]?(?:0x[0-9A-Fa-f_]+|0o[0-7_]+|0b[01_]+|[0-9]+(?:_[0-9]+)+))(?![\w.:-])
''', re.VERBOSE | re.DOTALL)


_MAYBE_INT = re.compile(r"0[xob]|[0-9]_[0-9]")


def literal_value(text: str) -> int:
    return int(text.replace("_", ""), 0)


def integer_literals(text: str, data: dict) -> Dict[tuple, str]:
    """Key path -> the text of each integer of ``data`` (parsed from ``text``) not written in plain
    decimal.  The file is parsed once more with those integers quoted; where that fails, nothing."""
    if not _MAYBE_INT.search(text):
        return {}
    quoted = _INT_TOKENS.sub(lambda m: m.group(0) if m.group("skip") else f'"{m.group("int")}"', text)
    if quoted == text:
        return {}
    try:
        alt = tomllib.loads(quoted)
    except tomllib.TOMLDecodeError:
        return {}
    out: Dict[tuple, str] = {}

    def walk(a, b, path):
        if isinstance(a, dict) and isinstance(b, dict):
            for k, v in a.items():
                if k in b:
                    walk(v, b[k], path + (k,))
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for i, (v, w) in enumerate(zip(a, b)):
                walk(v, w, path + (i,))
        elif isinstance(a, int) and not isinstance(a, bool) and isinstance(b, str) and literal_value(b) == a:
            out[path] = b

    walk(data, alt, ())
    return out


def written_as(literal: Optional[str], value) -> Optional[str]:
    """``literal`` when it is how ``value`` (an integer) was written; else None."""
    if literal is None or isinstance(value, bool) or not isinstance(value, int):
        return None
    return literal if literal_value(literal) == value else None


def read_toml(path: str, problems: List[Problem], written: Optional[Dict[tuple, str]] = None) -> Optional[dict]:
    """The board file's data; ``written`` receives its integer literals (``integer_literals``)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        problems.append(Problem(path, "", "no such file"))
        return None
    except OSError as exc:
        problems.append(Problem(path, "", f"cannot be read ({exc.strerror})"))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        problems.append(Problem(path, "", f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}, at offset "
                                          f"{exc.start}); a board file is TOML in UTF-8"))
        return None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        data = tomllib.loads(text)
    except RecursionError:
        problems.append(Problem(path, "", "TOML nested too deeply to read; a board file is a few tables deep"))
        return None
    except ValueError as exc:
        if not isinstance(exc, tomllib.TOMLDecodeError):   # an integer of thousands of digits
            problems.append(Problem(path, "", f"TOML value cannot be read ({str(exc).split(';')[0]}); "
                                              "accepted: integers that fit 64 bits"))
            return None
        message = str(exc)
        if message.endswith("(at end of document)"):  # say which line that is, as for any other error
            message = message[:-1] + f", after line {len(text.splitlines())})"
        problems.append(Problem(path, "", f"TOML syntax error: {message}"))
        return None
    if written is not None:
        written.update(integer_literals(text, data))
    return data


def check_layer(path: str, data: dict, problems: List[Problem],
                extra_tables: Optional[Dict[str, Callable]] = None) -> None:
    """Unknown keys and wrong types in one file.  ``extra_tables`` are plugin-declared tables."""
    extra_tables = extra_tables or {}
    top = dict(SCHEMA[""])
    for name in extra_tables:
        top[name] = (dict,)
    _check_table(path, "", data, top, problems)
    for table in ("module", "flash", "factory_param", "at_customize", "firmware", "release", "mfg_nvs"):
        if isinstance(data.get(table), dict):
            _check_table(path, table, data[table], SCHEMA[table], problems)
    table = data.get("mfg_nvs")
    if isinstance(table, dict):
        for key, value in table.items():
            for j, item in enumerate(value if isinstance(value, list) else []):
                if not isinstance(item, str):
                    problems.append(Problem(path, f"mfg_nvs.{key}[{j}]", "expected a string (a file path)", item))
        if isinstance(table.get(vendor_nvs.TABLE), dict):
            for key, message, value in vendor_nvs.table_problems(table[vendor_nvs.TABLE]):
                problems.append(Problem(path, key, message, value))
    at = data.get("at_customize")
    if isinstance(at, dict) and isinstance(at.get("partitions"), list):
        for i, part in enumerate(at["partitions"]):
            label = partition_label(part, i)
            if not isinstance(part, dict):
                problems.append(Problem(path, label, "expected a table ([[at_customize.partitions]])", part))
                continue
            _check_table(path, label, part, SCHEMA["partition"], problems)
            if "name" not in part:
                problems.append(Problem(path, f"{label}.name", "missing; every partition needs a name"))
            src = part.get("source")
            if isinstance(src, list):
                for j, item in enumerate(src):
                    if not isinstance(item, str):
                        problems.append(Problem(path, f"{label}.source[{j}]", "expected a string (a file path)", item))


def partition_label(part, index: int) -> str:
    if isinstance(part, dict) and isinstance(part.get("name"), str):
        return f"at_customize.partitions[{part['name']}]"
    return f"at_customize.partitions[{index}]"


def _check_table(path: str, prefix: str, table: dict, schema: Dict[str, tuple], problems: List[Problem]) -> None:
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in schema:
            accepted = ", ".join(schema)
            problems.append(Problem(path, dotted, f"unknown key; accepted here: {accepted}" + did_you_mean(key, schema)))
        elif not _type_ok(value, schema[key]):
            problems.append(Problem(path, dotted, f"expected {_describe_types(schema[key])}", value))


def resolve_sources(layer_path: str, data: dict) -> None:
    """Make every partition source and [mfg_nvs] file absolute, relative to the file that names it."""
    folder = os.path.dirname(os.path.abspath(layer_path))
    table = data.get("mfg_nvs")
    if isinstance(table, dict):
        for key, value in table.items():
            if key not in MFG_NVS_FILE_KEYS:
                continue
            items = [value] if isinstance(value, str) else value
            if isinstance(items, list) and all(isinstance(s, str) for s in items):
                paths = [os.path.normpath(os.path.join(folder, os.path.expanduser(s))) for s in items]
                table[key] = paths[0] if isinstance(value, str) else paths
        for keys in (table.get(vendor_nvs.TABLE) or {}).values():
            for spec in keys.values():
                if isinstance(spec, dict) and isinstance(spec.get("file"), str):
                    spec["file"] = os.path.normpath(os.path.join(folder, os.path.expanduser(spec["file"])))
    at = data.get("at_customize")
    if not isinstance(at, dict) or not isinstance(at.get("partitions"), list):
        return
    for part in at["partitions"]:
        if not isinstance(part, dict) or "source" not in part:
            continue
        src = part["source"]
        items = [src] if isinstance(src, str) else src
        if all(isinstance(s, str) for s in items):
            part["source"] = [os.path.normpath(os.path.join(folder, os.path.expanduser(s))) for s in items]


class Merged:
    """The merged board data plus, for every value, the file that set it."""

    def __init__(self):
        self.data: dict = {}
        self.origin: Dict[KeyPath, str] = {}
        self.partitions: List[dict] = []          # in table order
        self.partition_origin: Dict[Tuple[str, str], str] = {}  # (name, key) -> file
        self.written: Dict[KeyPath, str] = {}     # key path -> integer as written (Layer.written)
        self.partition_written: Dict[Tuple[str, str], str] = {}  # (name, key) -> integer as written
        self.made: Dict[str, object] = {}         # partition name -> Content a plugin already made

    def where(self, *path: str) -> Optional[str]:
        return self.origin.get(tuple(path))

    def lay(self, layer: Layer, problems: List[Problem]) -> None:
        for key, value in layer.data.items():
            if key == "extends":
                continue
            if isinstance(value, dict):
                table = self.data.setdefault(key, {})
                if not isinstance(table, dict):
                    continue
                for sub, subvalue in value.items():
                    if key == "at_customize" and sub == "partitions":
                        if isinstance(subvalue, list):
                            self._lay_partitions(layer, subvalue, problems)
                        continue
                    if key == "mfg_nvs" and sub == vendor_nvs.TABLE and isinstance(subvalue, dict):
                        # namespaces and keys add up along the extends chain; a key is replaced whole
                        merged = {ns: dict(keys) for ns, keys in (table.get(sub) or {}).items()}
                        for ns, keys in subvalue.items():
                            merged.setdefault(ns, {}).update(keys)
                            for k in keys:
                                self.origin[(key, sub, ns, k)] = layer.path
                        table[sub] = merged
                        continue
                    table[sub] = subvalue
                    self.origin[(key, sub)] = layer.path
                    _set_written(self.written, (key, sub), layer.written.get((key, sub)))
            else:
                self.data[key] = value
                self.origin[(key,)] = layer.path

    def _lay_partitions(self, layer: Layer, parts: List[dict], problems: List[Problem]) -> None:
        path = layer.path
        seen = set()
        index = {p["name"]: p for p in self.partitions}
        for i, part in enumerate(parts):
            if not isinstance(part, dict) or not isinstance(part.get("name"), str):
                continue
            name = part["name"]
            if name in seen:
                problems.append(Problem(path, f"at_customize.partitions[{name}]",
                                        "duplicate partition name; each name may appear once in a board"))
                continue
            seen.add(name)
            if part.get("remove") is True:
                if name not in index:
                    problems.append(Problem(path, f"at_customize.partitions[{name}].remove",
                                            "no inherited partition of this name to remove", True))
                    continue
                self.partitions = [p for p in self.partitions if p["name"] != name]
                del index[name]
                continue
            if part.get("remove") is False:
                part = {k: v for k, v in part.items() if k != "remove"}
            if name in index:
                index[name].update(part)
            else:
                entry = dict(part)
                self.partitions.append(entry)
                index[name] = entry
            for key in part:
                self.partition_origin[(name, key)] = path
                _set_written(self.partition_written, (name, key), layer.written.get(("at_customize", "partitions", i, key)))


def _set_written(written: dict, key, literal: Optional[str]) -> None:
    """A later file's value replaces an earlier one's, and how it was written with it."""
    if literal is None:
        written.pop(key, None)
    else:
        written[key] = literal
