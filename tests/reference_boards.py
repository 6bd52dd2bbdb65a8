"""Board TOML text made from the reference inputs (../shared/reference), for conformance tests.

The reference CSVs are parsed here without the library, so that a test compares what a board
file builds with the bytes Espressif's generators made from the same inputs; only
``build_artifacts`` at the end calls the library, the way the build does.  Board files name the
reference input files by absolute path; the tests write the text into a tmp_path (helpers'
``write`` / ``board_from_text``).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from helpers import toml_value

# factory_param_data.csv columns that are board [factory_param] keys, in CSV order.
FACTORY_PARAM_FIELDS = (
    "magic_flag", "version", "reserved1", "tx_max_power", "uart_port", "start_channel",
    "channel_num", "country_code", "uart_baudrate", "uart_tx_pin", "uart_rx_pin", "uart_cts_pin",
    "uart_rts_pin", "tx_control_pin", "rx_control_pin",
)
STRING_FIELDS = frozenset({"country_code"})

PLATFORM_CHIPS = {
    "PLATFORM_ESP32": "esp32",
    "PLATFORM_ESP32C2": "esp32c2",
    "PLATFORM_ESP32C3": "esp32c3",
    "PLATFORM_ESP32S2": "esp32s2",
    "PLATFORM_ESP8266": "esp8266",
}
# [flash] freq of the boards made here: 40 MHz, which ESP32-C2 (26 MHz crystal tables) calls 60m.
FLASH_FREQS = {"esp32c2": "60m"}

# Flash sizes every chip accepts, smallest first (the -c1 ESP8266 variants are left out).
FLASH_SIZES = {
    "esp32": ("1MB", "2MB", "4MB", "8MB", "16MB"),
    "esp32c2": ("1MB", "2MB", "4MB", "8MB", "16MB"),
    "esp32c3": ("1MB", "2MB", "4MB", "8MB", "16MB"),
    "esp32s2": ("1MB", "2MB", "4MB", "8MB", "16MB"),
    "esp8266": ("256KB", "512KB", "1MB", "2MB", "4MB", "8MB", "16MB"),
}

# factory_param of a stock module of each chip (FORMATS.md §6), for boards built only for
# their partition layout.
STOCK_FACTORY_PARAM = {
    "esp32": dict(uart_port=1, uart_tx_pin=17, uart_rx_pin=16, uart_cts_pin=15, uart_rts_pin=14),
    "esp32c3": dict(uart_port=1, uart_tx_pin=7, uart_rx_pin=6, uart_cts_pin=5, uart_rts_pin=4),
    "esp32s2": dict(uart_port=1, uart_tx_pin=17, uart_rx_pin=21, uart_cts_pin=20, uart_rts_pin=19),
    "esp8266": dict(uart_port=0, uart_tx_pin=15, uart_rx_pin=13, uart_cts_pin=3, uart_rts_pin=1),
}
# Layouts of modules that wire GPIO16/17 to memory (PSRAM, in-package flash) get those modules'
# own pins (FORMATS.md §6): the pin rules refuse 16/17 on a board named after them.
_FAMILY_PINS = {"module_wrover-32": dict(uart_tx_pin=22, uart_rx_pin=19),
                "module_esp32-d2wd": dict(uart_tx_pin=22, uart_rx_pin=19)}
_COMMON_FACTORY_PARAM = dict(magic_flag=0xFCFC, version=3, reserved1=0, tx_max_power=78,
                             start_channel=1, channel_num=13, country_code="CN",
                             uart_baudrate=115200, tx_control_pin=-1, rx_control_pin=-1)

# The at_version of the releases in reference/partition_table/.
FOLDER_RELEASES = {"v2.4.2.0": "2.4", "v2.2.1.0_esp8266": "2.2"}

PKI_PARTITIONS = tuple(f"{use}_{kind}" for use in ("server", "client", "mqtt", "wpa2")
                       for kind in ("cert", "key", "ca"))

# The reference partition layouts the PKI boards reuse (every PKI partition is 8K there).
PKI_LAYOUTS = {
    "2.4": ("v2.4.2.0", "module_esp32_default", "v2.4.2.0", "WROOM-32"),
    "2.2": ("v2.2.1.0_esp8266", "module_esp8266_default", "v2.2.1.0_esp8266", "WROOM-02"),
}


# --- small parsers, independent of the library ----------------------------------------------

def parse_number(text: str) -> int:
    """ "0xfcfc", "-1", "115200", "0x3B000" -> int (decimal unless 0x)."""
    t = text.strip()
    sign = -1 if t.startswith("-") else 1
    t = t.lstrip("+-")
    return sign * (int(t, 16) if t[:2].lower() == "0x" else int(t, 10))


def parse_size(text: str) -> int:
    """ "8K", "576K", "1M", "0x1000", "4096" -> bytes."""
    t = text.strip()
    mult = 1
    if t[-1:] in "kK":
        mult, t = 1024, t[:-1]
    elif t[-1:] in "mM":
        mult, t = 1024 * 1024, t[:-1]
    return parse_number(t) * mult


def _cell_value(text: str):
    """A type or subtype cell: a number becomes an int, a name ("data", "fat") stays a string."""
    t = text.strip()
    try:
        return parse_number(t)
    except ValueError:
        return t


# --- reading the reference inputs -------------------------------------------------------------

def read_factory_param_rows(csv_path: Path) -> List[Dict[str, str]]:
    with open(csv_path, newline="", encoding="utf-8") as f:
        return [row for row in csv.DictReader(f) if any((v or "").strip() for v in row.values())]


def chip_of_platform(platform: str) -> str:
    return PLATFORM_CHIPS[platform.strip()]


def chip_of_family(family: str) -> str:
    for chip in ("esp32c2", "esp32c3", "esp32s2", "esp8266"):
        if chip in family:
            return chip
    return "esp32"


def read_partition_csv(path: Path) -> List[Dict[str, object]]:
    """ESP-IDF partition CSV rows: name, type, subtype, offset (int), size (as written), size_bytes."""
    rows = []
    text = Path(path).read_text(encoding="utf-8")
    for cells in csv.reader(io.StringIO(text)):
        cells = [c.strip() for c in cells]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        name, ptype, subtype, offset, size = cells[:5]
        rows.append({
            "name": name, "type": _cell_value(ptype), "subtype": _cell_value(subtype),
            "offset": parse_number(offset), "size": size, "size_bytes": parse_size(size),
        })
    return rows


def at_customize_region(folder: Path):
    """(offset, size) of the at_customize row of the family's main partitions_at.csv."""
    for row in read_partition_csv(Path(folder) / "partitions_at.csv"):
        if row["name"] == "at_customize":
            return row["offset"], row["size_bytes"]
    raise ValueError(f"{folder}/partitions_at.csv has no at_customize row")


def flash_size_for(chip: str, end: int) -> str:
    for name in FLASH_SIZES[chip]:
        n = int(name[:-2]) * (1024 if name.endswith("KB") else 1024 * 1024)
        if n >= end:
            return name
    raise ValueError(f"no {chip} flash size holds 0x{end:x} bytes")


def pki_input_files(reference: Path, partition: str) -> List[Path]:
    """Every file of reference/pki/inputs/<partition>/, in file-name order."""
    return sorted((Path(reference) / "pki" / "inputs" / partition).iterdir(), key=lambda p: p.name)


def pki_sources(reference: Path) -> Dict[str, List[Path]]:
    """{partition: [files]} for every reference/pki/inputs/<partition>/ folder."""
    inputs = Path(reference) / "pki" / "inputs"
    return {d.name: pki_input_files(reference, d.name) for d in sorted(inputs.iterdir()) if d.is_dir()}


def factory_param_values(row: Mapping[str, str]) -> Dict[str, object]:
    """The [factory_param] table of a factory_param_data.csv row."""
    values: Dict[str, object] = {}
    for name in FACTORY_PARAM_FIELDS:
        cell = (row[name] or "").strip()
        values[name] = cell if name in STRING_FIELDS else parse_number(cell)
    return values


# --- board text -------------------------------------------------------------------------------

def _board_text(*, chip: str, module_name: str, platform: Optional[str], at_version: str,
                flash_size: str, factory_param: Mapping[str, object], region, partitions: Sequence[Mapping],
                description: str = "") -> str:
    lines = ["[module]", f"name = {toml_value(module_name)}", f"chip = {toml_value(chip)}"]
    if platform is not None:
        lines.append(f"platform = {toml_value(platform)}")
    if description:
        lines.append(f"description = {toml_value(description)}")
    lines += [f"at_version = {toml_value(at_version)}", "",
              "[flash]", 'mode = "dio"', f"freq = {toml_value(FLASH_FREQS.get(chip, '40m'))}",
              f"size = {toml_value(flash_size)}", "", "[factory_param]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in factory_param.items()]
    lines += ["", "[at_customize]", f"offset = 0x{region[0]:x}", f"size = 0x{region[1]:x}"]
    for part in partitions:
        lines += ["", "[[at_customize.partitions]]"]
        for key in ("name", "type", "subtype", "offset", "size", "source"):
            if key not in part:
                continue
            value = part[key]
            if key == "offset" or (key == "type" and isinstance(value, int)):
                lines.append(f"{key} = 0x{value:x}")
            elif key == "source":
                lines.append(f"source = {toml_value([str(p) for p in value])}")
            else:
                lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def factory_param_board(row: Mapping[str, str], at_version: str = "2.4",
                        values: Optional[Mapping[str, object]] = None) -> str:
    """A board whose only AT partition is factory_param, built from one factory_param_data.csv row
    (its [factory_param]: ``values``, by default the row's v2.2+ columns)."""
    platform = row["platform"].strip()
    chip = chip_of_platform(platform)
    region = (0x10000, 0x2000)
    partitions = [{"name": "factory_param", "type": 0x40, "subtype": 8, "offset": 0x11000, "size": "4K"}]
    return _board_text(chip=chip, module_name=row["module_name"].strip(), platform=platform,
                       at_version=at_version, flash_size="1MB",
                       factory_param=factory_param_values(row) if values is None else values,
                       region=region, partitions=partitions, description=(row.get("description") or "").strip())


def at_customize_board(folder, *, sources: Optional[Mapping[str, Iterable]] = None,
                       factory_row: Optional[Mapping[str, str]] = None, at_version: Optional[str] = None,
                       module_name: Optional[str] = None, factory_values: Optional[Mapping[str, object]] = None) -> str:
    """A board with the at_customize layout of reference/partition_table/<release>/<family>/.

    Partitions have no source (except factory_param, built from [factory_param]) unless
    ``sources`` maps a partition name to its input files.  ``factory_row`` takes module name,
    platform and factory_param from a factory_param_data.csv row (``factory_values``: its
    [factory_param] where the row is not in the v2.2+ columns); otherwise the chip's stock
    module values are used.  ``at_version`` defaults to the release of the folder.
    """
    folder = Path(folder)
    at_version = at_version or FOLDER_RELEASES[folder.parent.name]
    chip = chip_of_family(folder.name)
    offset, size = at_customize_region(folder)
    sources = dict(sources or {})
    partitions = []
    for row in read_partition_csv(folder / "at_customize.csv"):
        part = {k: row[k] for k in ("name", "type", "subtype", "offset", "size")}
        if row["name"] in sources:
            part["source"] = [str(Path(p).resolve()) for p in sources.pop(row["name"])]
        partitions.append(part)
    if sources:
        raise ValueError(f"{folder.name} has no partition {', '.join(sorted(sources))}")
    if factory_row is not None:
        if chip_of_platform(factory_row["platform"]) != chip:
            raise ValueError(f"{factory_row['platform']} row for a {chip} layout")
        values = factory_param_values(factory_row) if factory_values is None else dict(factory_values)
        name, platform = factory_row["module_name"].strip(), factory_row["platform"].strip()
    else:
        values = {**_COMMON_FACTORY_PARAM, **STOCK_FACTORY_PARAM[chip], **_FAMILY_PINS.get(folder.name, {})}
        values = {k: values[k] for k in FACTORY_PARAM_FIELDS}
        name, platform = module_name or folder.name, None
    return _board_text(chip=chip, module_name=name, platform=platform, at_version=at_version,
                       flash_size=flash_size_for(chip, offset + size), factory_param=values,
                       region=(offset, size), partitions=partitions)


def pki_layout(reference: Path, at_version: str):
    """(layout folder, factory_param row) the PKI board of ``at_version`` is built on."""
    release, family, fp_release, module = PKI_LAYOUTS[at_version]
    folder = Path(reference) / "partition_table" / release / family
    rows = read_factory_param_rows(Path(reference) / "factory_param" / "inputs" / fp_release / "factory_param_data.csv")
    row = next(r for r in rows if r["module_name"] == module)
    return folder, row


def pki_board(reference: Path, at_version: str = "2.4",
              partitions: Optional[Sequence[str]] = None) -> str:
    """A board whose certificate and key partitions take the files of reference/pki/inputs/<partition>/.

    AT v2.4: the module_esp32_default layout of v2.4.2.0 with WROOM-32's factory_param;
    AT v2.2: the module_esp8266_default layout of v2.2.1.0_esp8266 with WROOM-02's.
    """
    folder, row = pki_layout(reference, at_version)
    sources = pki_sources(reference)
    if partitions is not None:
        sources = {p: sources[p] for p in partitions}
    return at_customize_board(folder, sources=sources, factory_row=row, at_version=at_version)


# --- v2_history: every other v2.x tag, read the way that tag's generator reads them -----------

# What a tag's factory_param_type.csv calls a field, where the board's key differs (v2.0, v2.1).
TYPE_CSV_KEYS = {"uart_ctx_pin": "uart_cts_pin"}


def read_type_csv(path: Path) -> Dict[str, tuple]:
    """factory_param_type.csv: {param_name: (offset, type, size)}, offset -1 for "not written"."""
    with open(path, newline="", encoding="utf-8") as f:
        return {r["param_name"].strip(): (parse_number(r["offset"]), r["type"].strip(), parse_number(r["size"]))
                for r in csv.DictReader(f) if (r.get("param_name") or "").strip()}


def history_factory_param_values(row: Mapping[str, str], types: Mapping[str, tuple]) -> Dict[str, object]:
    """A row's [factory_param] as its tag's generator writes it: each field the type CSV places
    (offset >= 0) takes the row's column of that name; a placed field the data CSV has no column
    for stays erased, -1 in a board (v2.1.0.0_esp32s2's data CSV says uart_cts_pin where its type
    CSV says uart_ctx_pin).  platform and module_name come from [module]; reserved2 is never
    written and has no board key."""
    values: Dict[str, object] = {}
    for param, (offset, kind, _) in types.items():
        if offset < 0 or param in ("platform", "module_name", "reserved2"):
            continue
        key = TYPE_CSV_KEYS.get(param, param)
        cell = (row.get(param) or "").strip() if param in row else None
        if cell is None:
            values[key] = -1
        else:
            values[key] = cell if kind.lower() == "string" else parse_number(cell)
    return values


# --- building through the library, as the SCons glue does -----------------------------------

def build_artifacts(board) -> Dict[str, bytes]:
    """{target path in the release folder: bytes} for every artifact of a loaded board.

    Goes through atfactory.artifacts.plan_board and render_artifact, the two calls the build
    makes, so a conformance test checks what ``scons`` would write.
    """
    from atfactory.artifacts import plan_board, render_artifact

    out: Dict[str, bytes] = {}
    for artifact in plan_board(board):
        data = render_artifact(artifact.kind, artifact.spec, artifact.sources)
        for target in artifact.targets:
            out[target] = data
    return out


def first_difference(actual: bytes, expected: bytes) -> str:
    """'' when equal, else where and how two byte strings first differ (for assertion messages)."""
    if actual == expected:
        return ""
    for i, (a, b) in enumerate(zip(actual, expected)):
        if a != b:
            return (f"first difference at offset 0x{i:x}: got {actual[i:i + 16].hex(' ')}, "
                    f"expected {expected[i:i + 16].hex(' ')} (lengths {len(actual)} / {len(expected)})")
    return f"lengths differ: got {len(actual)} bytes, expected {len(expected)}"


def assert_same_bytes(actual: bytes, expected: bytes, what: str = "") -> None:
    diff = first_difference(actual, expected)
    assert not diff, f"{what}: {diff}" if what else diff
