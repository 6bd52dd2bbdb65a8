"""Read-back (atfactory.readback, ``atfactory inspect``): builds, factory images and single binaries decoded.

Every shipped board's release folder decodes to its own partitions, factory_param fields and flash
settings, with no private key printed; a factory image is shown as text; each customized binary
is recognised on its own; bytes atfactory does not know are refused; and ``read_path`` never
crashes on arbitrary bytes.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atfactory import partition_table as pt
from atfactory.errors import AtFactoryError
from atfactory.readback import read_path
from helpers import CERTS, SHIPPED, image_of, run_cli, tampered


def key_bodies():
    """Lines of base64 from every private key the shipped boards carry: must never be printed."""
    lines = []
    for key in CERTS.glob("*.key"):
        lines += [l for l in key.read_text().splitlines() if l and not l.startswith("-----")]
    return lines


@pytest.mark.parametrize("board_id", SHIPPED)
def test_inspect_every_shipped_build(built, board_of, capsys, board_id):
    folder = built / "out" / board_id
    code, out, err = run_cli(capsys, "inspect", str(folder), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "release"
    names = [p["name"] for p in doc["at_customize"]["partitions"]]
    board = board_of(board_id).board
    assert names == [p.name for p in board.partitions]
    contents = {p["name"]: p["content"] for p in doc["at_customize"]["partitions"]}
    if "mfg_nvs" in contents:   # ESP-AT v3.1+: the factory_param namespace
        fp = {k: v["value"] for k, v in contents["mfg_nvs"]["namespaces"]["factory_param"].items()}
    else:
        fp = contents["factory_param"]["fields"]
    assert fp["module_name"] == board.module_name and fp["uart_tx_pin"] == board.factory_param["uart_tx_pin"]
    assert doc["flash"] == {"mode": board.flash_mode, "freq": board.flash_freq, "size": board.flash_size}
    text = run_cli(capsys, "inspect", str(folder))[1]
    for body in key_bodies():
        assert body not in out and body not in text


def test_inspect_image_text(built, capsys):
    code, out, _ = run_cli(capsys, "inspect", str(image_of(built, "WROOM-32")))
    assert code == 0
    assert "chip: esp32" in out
    assert "bootloader at 0x1000" in out and "header flash dio 40m 4MB" in out
    assert "  at_customize     type 0x40  subtype 0        offset   0x20000  size 0xe0000" in out
    assert "item type 2 (cert) id 0: 1306 bytes PEM, certificate CN=atfactory-dev-server" in out
    assert "item type 3 (key) id 0: 1675 bytes PEM, private key RSA 2048" in out
    assert "uart_tx_pin = 17" in out
    assert "(erased)" not in out.split("fatfs", 1)[0]
    fatfs = out.split("fatfs", 1)[1]
    assert "(erased)" in fatfs.splitlines()[1]


@pytest.mark.parametrize("name, kind", [
    ("at_customize.bin", "partition_table"),
    ("customized_partitions/factory_param.bin", "factory_param"),
    ("customized_partitions/server_cert.bin", "pki"),
    ("customized_partitions/ble_data.bin", "ble_data"),
])
def test_inspect_single_binaries(built, capsys, name, kind):
    code, out, _ = run_cli(capsys, "inspect", str(built / "out/WROOM-32" / name), "--json")
    assert code == 0
    assert json.loads(out)["kind"] == kind


def test_unknown_bytes(capsys, tmp_path):
    path = tmp_path / "random.bin"
    path.write_bytes(b"\x00\x01" * 100)
    code, _, err = run_cli(capsys, "inspect", str(path))
    assert code == 2 and "not an AT binary atfactory knows" in err


def test_an_invalid_partition_is_named_with_its_file(capsys, tmp_path):
    path = tmp_path / "factory_param.bin"
    path.write_bytes(b"\x00\x00" + b"\x11" * 4094)
    code, out, err = run_cli(capsys, "inspect", str(path))
    assert (code, out) == (2, "")
    assert err == f"atfactory: error: {path}: at offset 0x0: factory_param: magic 0x0000, expected 0xfcfc\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=0x9000 + 64), offset=st.sampled_from([0, 2, 0x8000]))
def test_fuzz_read_path_never_crashes(tmp_path, data, offset):
    """Arbitrary bytes, in places where the detector looks: a decoded document or our error."""
    blob = bytearray(b"\xff" * offset) + data
    if offset == 0x8000 and len(blob) > 0x8000:
        blob[0x8000:0x8002] = pt.ENTRY_MAGIC
    path = tmp_path / "fuzz.bin"
    path.write_bytes(bytes(blob))
    try:
        doc = read_path(str(path))
    except AtFactoryError:
        return
    json.dumps(doc)


def test_a_release_listing_an_entry_twice_reads_it_once(registry, capsys, tmp_path):
    from atfactory.board import load_board
    from firmware_factory import make_release

    release = make_release(tmp_path / "release", load_board("WROOM-32", registry))
    config = release / "download.config"
    config.write_text(config.read_text().rstrip("\n") + " 0x9000 ota_data_initial.bin 0x9000 ota_data_initial.bin\n")
    warning = f"{release}/download.config: 0x9000 ota_data_initial.bin is listed 3 times; it is flashed once"
    code, out, err = run_cli(capsys, "inspect", str(release), "--json")
    assert (code, err) == (0, f"atfactory: warning: {warning}\n")
    doc = json.loads(out)
    assert doc["warnings"] == [warning]
    assert [f["path"] for f in doc["files"]].count("ota_data_initial.bin") == 1


@pytest.mark.parametrize("byte3, note", [
    (0x20, None),
    (0x10, "note: bootloader header: flash size 2MB (ESP32 encoding, byte 3 = 0x10) but the image is 4194304 bytes"),
    (0x90, "note: bootloader header: flash size nibble 0x90 (byte 3 = 0x90) is no size of the ESP32 encoding"),
])
def test_inspect_says_the_flash_size_is_the_headers(built, capsys, tmp_path, byte3, note):
    """An image's flash settings are what its bootloader header says, and may not fit the image."""
    code, out, _ = run_cli(capsys, "inspect", str(tampered(built, tmp_path, 0x1003, bytes([byte3]))))
    assert code == 0
    lines = out.splitlines()
    size = {0x20: "4MB", 0x10: "2MB", 0x90: "0x90"}[byte3]
    assert lines[2] == f"flash (as the bootloader header says): mode dio, freq 40m, size {size}"
    assert [line for line in lines if line.startswith("note: ")] == ([note] if note else [])


def test_inspect_names_an_unknown_chip(built, capsys, tmp_path):
    path = tampered(built, tmp_path, 0x1000 + 12, bytes([0x09]))   # ESP32-S3's chip id, a chip atfactory lacks
    code, out, _ = run_cli(capsys, "inspect", str(path))
    assert code == 0
    assert out.splitlines()[1:3] == [
        "chip: unknown (image chip id 0x9)",
        "note: the bootloader at 0x1000 is for a chip atfactory does not know (image chip id 0x9): its flash "
        "settings are not decoded and nothing chip-specific is checked"]
    doc = json.loads(run_cli(capsys, "inspect", str(path), "--json")[1])
    assert (doc["chip"], doc["image_chip_id"], doc["flash"]) == (None, 9, {})
