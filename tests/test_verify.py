"""Verify (atfactory.verify, ``atfactory verify``): a build or image against the board it claims to be.

Every shipped build and factory image matches its board; an altered image is refused with a
line that names what changed and where (a table row, a certificate item, a factory_param field,
the bootloader's flash header, an erased partition, an ESP8266 size written the ESP32 way, a key
that no longer pairs with its certificate); a certificate close to expiry is a warning.
"""
from __future__ import annotations

import pytest

from atfactory import partition_table as pt
from helpers import ACME, IMAGE_BOARDS, SHIPPED, image_of, run_cli, tampered


@pytest.mark.parametrize("board_id", SHIPPED)
def test_verify_every_shipped_build(built, capsys, board_id):
    code, out, _ = run_cli(capsys, "verify", str(built / "out" / board_id), "--board", board_id, "--plugins", str(ACME))
    assert code == 0, out
    assert "result: matches the board" in out


@pytest.mark.parametrize("board_id", IMAGE_BOARDS)
def test_verify_factory_images(built, capsys, board_id):
    code, out, _ = run_cli(capsys, "verify", str(image_of(built, board_id)), "--board", board_id, "--plugins", str(ACME))
    assert code == 0, out


def test_verify_names_a_changed_table_row(built, capsys, tmp_path):
    image = image_of(built, "WROOM-32").read_bytes()
    table = pt.decode_partition_table(image[0x20000:0x20000 + 3072])
    moved = [e if e.name != "server_cert" else pt.Entry(e.name, e.type, e.subtype, 0x25000, e.size) for e in table.entries]
    path = tampered(built, tmp_path, 0x20000, pt.encode_partition_table(moved))   # MD5 made right too
    code, out, _ = run_cli(capsys, "verify", str(path), "--board", "WROOM-32")
    assert code == 1
    assert ("at_customize.bin at 0x20000: server_cert: image type 0x40 subtype 2 at 0x25000 size 0x2000, "
            "board type 0x40 subtype 2 at 0x24000 size 0x2000") in out


@pytest.mark.parametrize("offset, data, expected", [
    (0x20000 + 32 * 1 + 4, (0x24000 + 0x1000).to_bytes(4, "little"), "at_customize.bin at 0x20000: not a partition table (at offset 0x1e0: partition table: MD5 row does not match the entries)"),
    (0x24000 + 100, b"X", "partition server_cert at 0x24000: item 0 (type 2 in the image and from the board) differs "
                          "in content"),
    # the key typed as a certificate, as AT v2.2 builds typed every item: both types are named
    (0x26000 + 8, bytes([2]), "partition server_key at 0x26000: item 0: type 2 id 0 in the image, type 3 id 0 from "
                              "the board (the content is the same)"),
    (0x1000 + 3, bytes([0x90]), "bootloader header: flash size nibble 0x90 (byte 3 = 0x90) is no size of the ESP32 "
                                "encoding"),
    (0x1000 + 12, bytes([9]), "chip: the image is for a chip atfactory does not know (image chip id 0x9), the board "
                              "for ESP32"),
    (0x30000 + 16, bytes([4]), "partition factory_param at 0x30000: factory_param.uart_tx_pin is 4, the board says 17"),
    (0x1000 + 2, bytes([0]), "flash.mode: bootloader header says qio, the board dio"),
    (0x1000 + 3, bytes([0x10]), "bootloader header: flash size 2MB (ESP32 encoding, byte 3 = 0x10) but the image is 4194304 bytes"),
    (0x21000, b"\xff" * 0x3000, "partition ble_data at 0x21000: erased in the image, the board has content"),
])
def test_verify_names_what_was_altered(built, capsys, tmp_path, offset, data, expected):
    code, out, _ = run_cli(capsys, "verify", str(tampered(built, tmp_path, offset, data)), "--board", "WROOM-32")
    assert code == 1
    assert expected in out
    assert "result: " in out and "difference(s)" in out


def test_verify_catches_esp8266_size_encoded_the_esp32_way(built, capsys, tmp_path):
    # 2MB in the ESP32 table, as Espressif's combine script writes it
    path = tampered(built, tmp_path, 3, bytes([0x1F]), board_id="WROOM-02", name="published.bin")
    code, out, _ = run_cli(capsys, "verify", str(path), "--board", "WROOM-02")
    assert code == 1
    assert "the size was encoded with the ESP32 table (2MB), the defect of Espressif's combine script" in out


def test_verify_warns_on_expiring_certificate(built, board_of, capsys, tmp_path):
    import datetime
    from atfactory.readback import read_flash
    from atfactory.verify import verify_flash
    data, doc = read_flash(str(image_of(built, "WROOM-32")))
    prepared = board_of("WROOM-32")
    soon = datetime.datetime(2045, 12, 20, tzinfo=datetime.timezone.utc)
    report = verify_flash(data, doc, prepared, now=soon)
    assert report.ok
    assert any("expires on 2046-01-01T00:00:00Z, within 30 days" in w for w in report.warnings)


def test_verify_mismatched_key_pair(built, capsys, tmp_path):
    server_key = image_of(built, "WROOM-32").read_bytes()[0x26000:0x28000]
    path = tampered(built, tmp_path, 0x2C000, server_key, name="swapped.bin")   # in place of the client key
    code, out, _ = run_cli(capsys, "verify", str(path), "--board", "WROOM-32")
    assert code == 1
    assert "client_key item 0 does not belong to client_cert item 0" in out


def test_verify_says_the_image_is_v3_before_its_partitions(built, capsys, tmp_path):
    from helpers import mfg_nvs_layout

    code, out, _ = run_cli(capsys, "verify", str(mfg_nvs_layout(built, tmp_path)), "--board", "WROOM-32")
    assert code == 1
    differs = [line for line in out.splitlines() if "DIFFERS" in line]
    assert differs[0] == ('  DIFFERS  ESP-AT generation: the image is ESP-AT v3.1+ (mfg_nvs), the board '
                          '(module.at_version = "2.4") builds for ESP-AT v2 (factory_param and certificate partitions)')
