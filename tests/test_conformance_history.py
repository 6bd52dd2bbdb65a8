"""Every other ESP-AT v2.x tag and v3.0.0.0 (reference/v2_history): each vector of its index.json
made again from a board file, or through the library where no board expresses it.

A tag's vectors are built at the release the tag is (TAG_RELEASES).  Its CSVs also list modules
and layouts of chips the tag was not released for (v2.3.0.0_esp32c3 holds the ESP32 ones); those
are built at the chip's release whose generators are the same files (STAND_INS).
"""
from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path

import pytest

from atfactory import ble_data, pki
from atfactory import factory_param as fp
from atfactory import partition_table as pt
from atfactory.at_releases import AT_RELEASES
from atfactory.chips import CHIPS
from atfactory.errors import FormatError
from atfactory.formats import stock_registry

from helpers import board_from_text, reference_dir
from reference_boards import (
    PLATFORM_CHIPS, assert_same_bytes, at_customize_board, at_customize_region, build_artifacts, chip_of_family,
    factory_param_board, history_factory_param_values, read_factory_param_rows, read_partition_csv, read_type_csv,
)

TAG_RELEASES = {
    "v2.0.0.0_esp32": "2.0", "v2.0.0.0_esp8266": "2.0",
    "v2.1.0.0_esp32": "2.1", "v2.1.0.0_esp32s2": "2.1", "v2.1.0.0_esp8266": "2.1",
    "v2.2.0.0_esp32": "2.2", "v2.2.0.0_esp32c3": "2.2", "v2.2.0.0_esp8266": "2.2", "v2.2.2.0_esp8266": "2.2",
    "v2.3.0.0_esp32c3": "2.3", "v2.3.0.0_esp8266": "2.3",
    "v2.4.0.0": "2.4.0", "v2.4.1.0": "2.4", "v3.0.0.0": "3.0",
}
# v2.3.0.0 runs v2.2.0.0's factory_param generator, AtPKI.py and BLEService.py (README "What differs")
STAND_INS = {"2.3": "2.2"}


def _index():
    path = reference_dir() / "v2_history" / "index.json"
    return json.loads(path.read_text()) if path.is_file() else []


INDEX = _index()


def _records(*kinds, where=lambda r: True):
    found = [pytest.param(r, id=f"{r['tag']}-{r['kind']}-{r['platform'] or ''}-{r['module']}-{Path(r['path']).name}")
             for r in INDEX if r["kind"] in kinds and where(r)]
    return found or [pytest.param(None, id="reference-absent")]


def release_for(tag: str, chip: str) -> str:
    release = TAG_RELEASES[tag]
    if release in CHIPS[chip].at_versions:
        return release
    stand_in = STAND_INS[release]
    assert stand_in in CHIPS[chip].at_versions, (tag, chip)
    return stand_in


def expected_bytes(history: Path, record) -> bytes:
    data = (history / record["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == record["sha256"], record["path"]
    return data


def _inputs(history: Path, tag: str):
    folder = history / "factory_param" / "inputs" / tag
    return read_factory_param_rows(folder / "factory_param_data.csv"), read_type_csv(folder / "factory_param_type.csv")


@pytest.fixture(scope="module")
def history(reference) -> Path:
    return reference / "v2_history"


def test_every_tag_is_a_release(history):
    assert {r["tag"] for r in INDEX} == set(TAG_RELEASES)
    for tag, release in TAG_RELEASES.items():
        assert AT_RELEASES[release].generation == "v2"
        chips = {chip for chip in CHIPS for suffix in tag.split("_")[1:] if suffix == chip}
        assert all(release in CHIPS[chip].at_versions for chip in chips), tag   # a tag named for a chip


# --- factory_param: every row of every tag ------------------------------------------------------------

def test_every_row_has_its_vector(history):
    listed = {(r["tag"], r["platform"], r["module"]) for r in INDEX if r["kind"] == "factory_param"}
    rows = {(tag, row["platform"], row["module_name"]) for tag in TAG_RELEASES for row in _inputs(history, tag)[0]}
    assert listed == rows
    assert len(listed) == 176


@pytest.mark.parametrize("record", _records("factory_param"))
def test_factory_param_row_from_a_board(history, registry, tmp_path, record):
    rows, types = _inputs(history, record["tag"])
    row = next(r for r in rows if (r["platform"], r["module_name"]) == (record["platform"], record["module"]))
    chip = PLATFORM_CHIPS[row["platform"]]
    release = release_for(record["tag"], chip)
    values = history_factory_param_values(row, types)
    board = board_from_text(tmp_path, factory_param_board(row, release, values), name="board.toml", registry=registry)
    assert board.at_version == release
    out = build_artifacts(board)
    expected = expected_bytes(history, record)
    assert_same_bytes(out["customized_partitions/factory_param.bin"], expected, record["path"])
    assert_same_bytes(out[f"customized_partitions/factory_param_{row['module_name']}.bin"], expected, record["path"])
    # read back: the layout of the release, the row's values, and the release among those it implies
    fmt = stock_registry()["factory_param"]
    doc = fmt.decode(expected)
    layout = AT_RELEASES[release].factory_param_layout
    assert doc["layout"] == layout == expected[2]
    strings = {"platform": row["platform"], "module_name": row["module_name"]} if layout == fp.LAYOUT else {}
    assert doc["fields"] == dict(values, **strings)
    assert release in fmt.implied_at_versions("factory_param", doc)


# --- partition tables: every at_customize.bin from a board, every main table through the library -------

def _module_row(history: Path, tag: str, folder: Path):
    """The factory_param row a module_config folder builds: module_<name> or the chip's first module."""
    rows, types = _inputs(history, tag)
    chip = chip_of_family(folder.name)
    rows = [r for r in rows if PLATFORM_CHIPS[r["platform"]] == chip]
    named = [r for r in rows if f"module_{r['module_name'].lower()}" == folder.name]
    return (named or rows)[0], types


def _history_board(history: Path, tag: str, folder: Path, sources=None) -> str:
    row, types = _module_row(history, tag, folder)
    return at_customize_board(folder, sources=sources, factory_row=row,
                              at_version=release_for(tag, chip_of_family(folder.name)),
                              factory_values=history_factory_param_values(row, types))


@pytest.mark.parametrize("record", _records("at_customize"))
def test_at_customize_from_a_board(history, registry, tmp_path, record):
    folder = history / Path(record["path"]).parent
    board = board_from_text(tmp_path, _history_board(history, record["tag"], folder), name="layout.toml",
                            registry=registry)
    assert (board.at_customize_offset, board.at_customize_size) == at_customize_region(folder)
    out = build_artifacts(board)
    assert_same_bytes(out["at_customize.bin"], expected_bytes(history, record), record["path"])
    # ... with that module's factory_param, as the tag writes it
    row, _ = _module_row(history, record["tag"], folder)
    fp_bin = history / "factory_param" / record["tag"] / row["platform"] / f"{row['module_name']}.bin"
    assert_same_bytes(out["customized_partitions/factory_param.bin"], fp_bin.read_bytes(), str(fp_bin))
    decoded = pt.decode_partition_table(out["at_customize.bin"])
    assert decoded.md5 is True
    assert [(e.name, e.offset, e.size) for e in decoded.entries] == \
        [(r["name"], r["offset"], r["size_bytes"]) for r in read_partition_csv(folder / "at_customize.csv")]


@pytest.mark.parametrize("record", _records("partition_table"))
def test_main_table_decodes_and_reencodes(history, record):
    data = expected_bytes(history, record)
    decoded = pt.decode_partition_table(data)
    assert decoded.md5 is record["md5"]
    assert_same_bytes(pt.encode_partition_table(decoded.entries, md5=record["md5"]), data, record["path"])
    folder = history / Path(record["path"]).parent
    [at] = [e for e in decoded.entries if e.name == "at_customize"]
    assert (at.type, at.subtype) == (0x40, 0)
    assert (at.offset, at.size) == at_customize_region(folder)


# --- certificate and key partitions, from a board; several kinds in one call, through the library ------

def _folder_with(history: Path, tag: str, partition: str) -> Path:
    """The tag's first module_config folder whose at_customize.csv lists the partition."""
    for folder in sorted((history / "partition_table" / tag).iterdir()):
        if any(r["name"] == partition for r in read_partition_csv(folder / "at_customize.csv")):
            return folder
    raise AssertionError(f"{tag}: no folder lists {partition}")


@pytest.mark.parametrize("record", _records("pki"))
def test_pki_partition_from_a_board(history, reference, registry, tmp_path, record):
    partition, tag = record["module"], record["tag"]
    folder = _folder_with(history, tag, partition)
    files = sorted((reference / "pki" / "inputs" / partition).iterdir())
    board = board_from_text(tmp_path, _history_board(history, tag, folder, {partition: files}), name="pki.toml",
                            registry=registry)
    out = build_artifacts(board)
    expected = expected_bytes(history, record)
    assert_same_bytes(out[f"customized_partitions/{partition}.bin"], expected, record["path"])
    release = release_for(tag, board.chip.name)
    by_kind = release in ("2.0", "2.1", "2.4", "3.0")   # README: "PKI item typing"
    kind = pki.PKI_PARTITIONS[partition]
    assert [(i.type, i.id, i.content) for i in pki.decode_pki(expected)] == \
        [(pki.KIND_TYPES[kind] if by_kind else pki.TYPE_CERT, n, f.read_bytes()) for n, f in enumerate(files)]
    fmt = stock_registry()["pki"]
    implied = fmt.implied_at_versions(partition, fmt.decode(expected, partition))
    assert implied is None if kind == "cert" else release in implied


@pytest.mark.parametrize("record", _records("pki_mixed"))
def test_pki_mixed_through_the_library(history, reference, record):
    """One AtPKI.py call with several kinds: groups in order of first appearance (Python 3), in
    hash order under Python 2, which is ca, cert, key for these names (README)."""
    words = shlex.split(record["command"])
    pairs = list(zip(words[5::2], words[6::2]))   # python tools/AtPKI.py generate_bin -b OUT (kind path)...
    assert words[2:4] == ["generate_bin", "-b"] and pairs
    typed = [(pki.KIND_TYPES[kind], (reference / "pki" / "inputs" / Path(path).relative_to("raw_data")).read_bytes())
             for kind, path in pairs]
    if record["python"].startswith("CPython 2"):
        typed.sort(key=lambda t: [pki.TYPE_CA, pki.TYPE_CERT, pki.TYPE_KEY].index(t[0]))   # stable within a kind
    assert_same_bytes(pki.encode_pki(typed), expected_bytes(history, record), record["path"])


# --- ble_data: from a board; the broken Python 3 files of v2.0/v2.1 are refused, not made ----------------

@pytest.mark.parametrize("record", _records("ble_data", where=lambda r: "/python3/" not in r["path"]))
def test_ble_data_from_a_board(history, reference, registry, tmp_path, record):
    tag = record["tag"]
    folder = _folder_with(history, tag, "ble_data")
    source = reference / "ble_data" / "inputs" / f"{record['module']}.csv"
    board = board_from_text(tmp_path, _history_board(history, tag, folder, {"ble_data": [source]}), name="ble.toml",
                            registry=registry)
    out = build_artifacts(board)
    expected = expected_bytes(history, record)
    assert_same_bytes(out["customized_partitions/ble_data.bin"], expected, record["path"])
    assert board.partition("ble_data").content.size == len(expected)
    rows = ble_data.decode_ble_data(expected)
    python2 = AT_RELEASES[board.at_version].gatt_python2_order
    assert python2 is (TAG_RELEASES[tag] in ("2.0", "2.1"))
    header = [h.strip() for h in source.read_text().splitlines()[0].split(",")]
    assert all(list(r) == (list(ble_data.PYTHON2_KEY_ORDER) if python2 else header) for r in rows)
    implied = stock_registry()["ble_data"].implied_at_versions("ble_data", {"rows": rows})
    assert implied is None if python2 else board.at_version in implied and "2.0" not in implied


@pytest.mark.parametrize("record", _records("ble_data", where=lambda r: "/python3/" in r["path"]))
def test_ble_data_of_python3_runs_is_malformed(history, record):
    """What v2.0/v2.1's BLEService.py writes under Python 3 (a UTF-8 text file): a header whose
    length and magic are wrong.  The decoder refuses it, and no release builds it."""
    data = expected_bytes(history, record)
    with pytest.raises(FormatError):
        ble_data.decode_ble_data(data)
    python2 = (history / Path(record["path"]).parent.parent / Path(record["path"]).name).read_bytes()
    assert data != python2 and ble_data.decode_ble_data(python2)


# --- an image of ESP-AT 2.0 or 2.1: inspect reads it, extract writes a board that rebuilds it ---------

def _as_published(image: bytes, board, variant: str) -> bytes:
    """The image as published images come: ESP8266 sizes written with the ESP32 table by
    Espressif's combine script, and cut after the last written byte."""
    from atfactory.chips import CHIPS

    out = bytearray(image)
    if "combine script" in variant:
        boot = board.chip.bootloader_offset
        out[boot + 3] = CHIPS["esp32"].flash_sizes[board.flash_size] | (out[boot + 3] & 0x0F)
    return bytes(out).rstrip(b"\xff") if "cut short" in variant else bytes(out)


@pytest.mark.parametrize("tag, family, release, variant", [
    ("v2.0.0.0_esp32", "module_esp32_default", "2.0", "as built"),
    ("v2.1.0.0_esp32s2", "module_esp32s2_default", "2.1", "as built"),
    ("v2.0.0.0_esp8266", "module_esp8266_default", "2.0", "as built"),
    ("v2.0.0.0_esp8266", "module_esp8266_default", "2.0", "combine script, cut short"),
    ("v2.1.0.0_esp8266", "module_esp8266_default", "2.1", "combine script"),
    ("v2.1.0.0_esp8266", "module_esp8266_default", "2.1", "cut short"),
])
def test_extract_of_an_old_image_rebuilds_it(history, reference, capsys, tmp_path, tag, family, release, variant):
    from firmware_factory import make_release
    from helpers import run_cli, run_scons, write

    folder = history / "partition_table" / tag / family
    listed = {r["name"] for r in read_partition_csv(folder / "at_customize.csv")}
    sources = {p: sorted((reference / "pki" / "inputs" / p).iterdir()) for p in pki.PKI_PARTITIONS if p in listed}
    if "ble_data" in listed:
        sources["ble_data"] = [reference / "ble_data" / "inputs" / "example.csv"]
    text = _history_board(history, tag, folder, sources).replace('size = "1MB"', 'size = "4MB"')   # room for an app
    path = write(tmp_path / "old.toml", text)
    board = board_from_text(tmp_path, path.read_text(), name="old.toml")
    assert board.at_version == release
    firmware = make_release(tmp_path / "fw", board)
    r = run_scons(f"board={path}", f"firmware={firmware}", "build_dir=img", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    built_image = next((tmp_path / "img" / "old" / "factory").glob("factory_*.bin"))
    image = tmp_path / "published.bin"
    image.write_bytes(_as_published(built_image.read_bytes(), board, variant))

    code, out, err = run_cli(capsys, "inspect", str(image))
    assert code == 0, err
    assert f"layout {AT_RELEASES[release].factory_param_layout} (ESP-AT {release})" in out

    code, out, err = run_cli(capsys, "extract", str(image), "-o", str(tmp_path / "x"))
    assert code == 0, err
    extracted = Path(out.split("wrote ", 1)[1].splitlines()[0])
    text = extracted.read_text()
    assert f'at_version = "{release}"' in text and "module_id = " in text and "[module]\nchip = " in text
    assert f'size = "{board.flash_size}"' in text   # the real size, whatever the header says
    r = run_scons(f"board={extracted}", f"firmware={image}", "build_dir=rb", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rebuilt = next((tmp_path / "rb" / extracted.stem / "factory").glob("factory_*.bin"))
    assert rebuilt.read_bytes() == built_image.read_bytes()   # the image as esptool merges it


def test_inspect_decodes_an_old_factory_param(history, capsys):
    from helpers import run_cli

    path = history / "factory_param" / "v2.1.0.0_esp32s2" / "PLATFORM_ESP32S2" / "MINI.bin"
    code, out, err = run_cli(capsys, "inspect", str(path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1:5] == ["layout 2 (ESP-AT 2.1): module_id at byte 3, no platform or module name",
                          "magic_flag = 64764", "version = 2", "module_id = 3"]
    assert "uart_cts_pin = -1" in lines and "uart_port = 1" in lines


def test_extract_names_the_partitions_no_release_agrees_on(history):
    """A v2.1 factory_param with certificates typed all 2 (v2.2 to v2.4.0): no release of the chip."""
    from atfactory.errors import ExtractError
    from atfactory.extract import _at_version

    formats = stock_registry()
    fp_bin = history / "factory_param" / "v2.1.0.0_esp32" / "PLATFORM_ESP32" / "WROOM-32.bin"
    fp_doc = formats["factory_param"].decode(fp_bin.read_bytes())
    key_doc = formats["pki"].decode((history / "pki/v2.2.0.0_esp32/client_key.bin").read_bytes(), "client_key")
    parts = [{"name": "factory_param", "content": fp_doc}, {"name": "client_key", "content": key_doc}]
    assert _at_version(parts[:1], formats, "esp32") == "2.1"
    with pytest.raises(ExtractError) as err:
        _at_version(parts, formats, "esp32")
    assert str(err.value) == (
        'no ESP-AT release of ESP32 writes every AT partition as it is (the ESP32 releases: "2.0", "2.1", "2.2", '
        '"2.4.0", "2.4", "3.0", "3.1", "3.2", "3.3", "3.4", "4.0", "4.1" or "5.0"; written as by: factory_param "2.1", '
        'client_key "2.2", "2.3" or "2.4.0"); no single at_version reproduces them')
