"""Factory images as they are published (atfactory.firmware, esp_image, readback, verify, extract):
applications with an unflagged ESP8266 digest or other bytes past their parsed end, ESP8266
headers with the combine script's ESP32-encoded flash size, images cut after their last written
byte.  As ``firmware=`` not a byte of them is lost; read back they give the real flash size and
an erased tail; extracted and built again they give the image as esptool merges it.  verify
checks that the application still ends with its digest.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from esptool.targets import CHIP_DEFS

from atfactory.artifacts import KIND_FIRMWARE_CUT, plan_board, render_artifact
from atfactory.board import load_board
from atfactory.esp_image import header_flash_size, read_image
from atfactory.firmware import load_firmware
from firmware_factory import make_factory_image, make_image, make_release
from helpers import assert_refused, esptool_merge, image_of, run_cli, run_scons, tampered

CHIP_BOARDS = ["WROOM-32", "ESP32C3-MINI-1", "ESP32S2-WROOM", "WROOM-02", "ESP8266_1MB"]
APP_OFFSET = {"WROOM-32": 0x100000, "WROOM-02": 0x110000}   # firmware_factory.main_table's factory app


def _release_and_image(tmp_path: Path, board, **release_args):
    release = make_release(tmp_path / "release", board, **release_args)
    return release, make_factory_image(tmp_path / f"factory_{board.module_name}.bin", release, board)


def _cut_files(board, firmware) -> dict:
    """The firmware files of a build, as the build renders them: path -> bytes."""
    return {a.targets[0]: render_artifact(a.kind, a.spec, a.sources)
            for a in plan_board(board, firmware) if a.kind == KIND_FIRMWARE_CUT}


def _combine_script_byte3(image: bytes, board) -> bytes:
    """The image with its flash size written with the ESP32 table, as Espressif's combine script does."""
    from atfactory.chips import CHIPS

    out = bytearray(image)
    boot = board.chip.bootloader_offset
    out[boot + 3] = CHIPS["esp32"].flash_sizes[board.flash_size] | (out[boot + 3] & 0x0F)
    return bytes(out)


# --- the image format ---------------------------------------------------------------------------

def test_esp8266_application_digest_is_recognised_by_its_value():
    with_digest = make_image("esp8266", b"\x5a" * 4000, digest=True)
    info = read_image(with_digest, extended_header=False)
    assert (info.length, info.hash_appended, info.digest_ok) == (len(with_digest), True, True)
    assert with_digest[-32:] == hashlib.sha256(with_digest[:-32]).digest()
    plain = make_image("esp8266", b"\x5a" * 4000, digest=False)
    assert read_image(plain + b"\xff" * 64, extended_header=False).length == len(plain)
    # 32 bytes that are not the digest of the image are not taken for one
    forged = with_digest[:-1] + bytes([with_digest[-1] ^ 1])
    info = read_image(forged, extended_header=False)
    assert (info.length, info.hash_appended, info.digest_ok) == (len(forged) - 32, False, None)


def test_esp32_digest_that_does_not_match_is_flagged():
    image = bytearray(make_image("esp32", b"\x5a" * 4000))
    assert read_image(bytes(image)).digest_ok is True
    image[-1] ^= 0xFF
    assert read_image(bytes(image)).digest_ok is False


@pytest.mark.parametrize("chip, byte3, image_length, table_end, size, defect", [
    ("esp8266", 0x3F, 0x200000, 0x200000, "2MB", False),     # esptool's encoding of 2MB
    ("esp8266", 0x1F, 0x200000, 0x200000, "2MB", True),      # the combine script's: 256KB for ESP8266
    ("esp8266", 0x1F, 0x110FE0, 0x200000, "2MB", True),      # and cut short
    ("esp8266", 0x1F, 0x9000, 0x40000, "256KB", False),      # a real 256KB image says 0x1_ too
    ("esp8266", 0x0F, 0x100000, 0x100000, "1MB", True),      # 1MB as ESP32 encodes it: 512KB for ESP8266
    ("esp8266", 0x2F, 0x100000, 0x100000, "1MB", False),
    ("esp8266", 0x4F, 0x100000, 0x400000, "4MB", False),
    ("esp32", 0x10, 0x400000, 0x400000, "2MB", False),       # ESP32 headers are read as they are
])
def test_header_flash_size(chip, byte3, image_length, table_end, size, defect):
    result = header_flash_size(chip, byte3, image_length, table_end)
    assert result.size == size
    assert bool(result.defect) is defect
    if defect:
        assert f"byte 3 = 0x{byte3:02x}" in result.defect
        assert f"the size was encoded with the ESP32 table ({size}), the defect of Espressif's combine script" \
            in result.defect


# --- firmware=: nothing of the image is lost ------------------------------------------------------

@pytest.mark.parametrize("digest", [True, False], ids=["digest", "no-digest"])
@pytest.mark.parametrize("board_id", CHIP_BOARDS)
def test_cut_files_are_the_release_files(registry, tmp_path, board_id, digest):
    board = load_board(board_id, registry)
    release, image = _release_and_image(tmp_path, board, app_digest=digest)
    firmware = load_firmware(str(image), board.chip.name, board.at_version)
    cut = _cut_files(board, firmware)
    assert firmware.notes == ()
    for rel in ("esp-at.bin", "partition_table/partition-table.bin", "ota_data_initial.bin", "phy_init_data.bin"):
        assert cut[rel] == (release / rel).read_bytes(), rel
    app = (release / "esp-at.bin").read_bytes()
    assert read_image(app, extended_header=board.chip.image_chip_id is not None).hash_appended is digest
    # every byte of the image is in a cut file: merged again they are the image
    (tmp_path / "cut").mkdir()
    for rel, data in cut.items():
        (tmp_path / "cut" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "cut" / rel).write_bytes(data)
    (tmp_path / "cut/download.config").write_bytes((release / "download.config").read_bytes())
    assert esptool_merge(tmp_path / "cut", board) == image.read_bytes()


@pytest.mark.parametrize("board_id", ["WROOM-32", "WROOM-02"])
def test_bytes_past_the_parsed_application_are_kept(registry, tmp_path, board_id):
    """A signature block after the image, or anything else the release's esp-at.bin holds there."""
    board = load_board(board_id, registry)
    release = make_release(tmp_path / "release", board)
    app = (release / "esp-at.bin").read_bytes() + b"SIG\x00" * 17 + b"\x01\xff\xff\xff"   # 72 bytes
    (release / "esp-at.bin").write_bytes(app)
    image = make_factory_image(tmp_path / "factory.bin", release, board)
    cut = _cut_files(board, load_firmware(str(image), board.chip.name, board.at_version))
    assert cut["esp-at.bin"] == app


def test_data_in_other_partitions_is_kept(registry, tmp_path):
    board = load_board("WROOM-32", registry)
    _, image = _release_and_image(tmp_path, board)
    data = bytearray(image.read_bytes())
    data[0x10000:0x10020] = b"NVS!" * 8          # the main table's nvs partition (0x10000-0x16000)
    image.write_bytes(bytes(data))
    r = run_scons("board=WROOM-32", f"firmware={image}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out/WROOM-32"
    assert (out / "nvs.bin").read_bytes() == b"NVS!" * 8
    assert "0x10000 nvs.bin" in (out / "download.config").read_text()
    assert (out / "factory/factory_WROOM-32.bin").read_bytes()[0x10000:0x10020] == b"NVS!" * 8


def test_data_outside_every_partition_is_refused(registry, tmp_path):
    board = load_board("WROOM-32", registry)
    _, image = _release_and_image(tmp_path, board)
    data = bytearray(image.read_bytes())
    data[0x16010] = 0x00                         # between nvs (ends 0x16000) and at_customize (0x20000)
    image.write_bytes(bytes(data))
    r = run_scons("board=WROOM-32", f"firmware={image}", "build_dir=out", cwd=tmp_path)
    lines = assert_refused(r, tmp_path / "out")
    assert lines == [f'scons: *** firmware = "{image}": 0x16010 holds data outside the bootloader, the partition '
                     "table and every partition (in 0x16000-0x20000): the new image would lose it; expected a "
                     "factory image merged from an ESP-AT release  Stop."]


def test_image_cut_inside_its_application_is_refused(registry, tmp_path):
    board = load_board("WROOM-02", registry)
    _, image = _release_and_image(tmp_path, board)
    image.write_bytes(image.read_bytes()[:APP_OFFSET["WROOM-02"] + 100])
    r = run_scons("board=WROOM-02", f"firmware={image}", "build_dir=out", cwd=tmp_path)
    (line,) = assert_refused(r, tmp_path / "out")
    assert f'firmware = "{image}": no application image in partition factory' in line


# --- firmware=: the scons build on published images -----------------------------------------------

def _build(tmp_path: Path, board_id: str, firmware: Path, out: str):
    r = run_scons(f"board={board_id}", f"firmware={firmware}", f"build_dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return r, tmp_path / out / board_id


@pytest.mark.parametrize("board_id, variant", [
    ("WROOM-02", "as merged"), ("WROOM-02", "combine script"), ("WROOM-02", "cut short"),
    ("WROOM-02", "combine script, cut short"), ("ESP8266_1MB", "combine script"), ("WROOM-32", "cut short"),
])
def test_published_image_as_firmware_builds_what_the_release_builds(registry, tmp_path, board_id, variant):
    board = load_board(board_id, registry)
    release, image = _release_and_image(tmp_path, board)
    data = image.read_bytes()
    if "combine script" in variant:
        data = _combine_script_byte3(data, board)
    if "cut short" in variant:
        data = data.rstrip(b"\xff")
        assert len(data) < board.flash_size_bytes
    published = tmp_path / "published.bin"
    published.write_bytes(data)
    _, from_release = _build(tmp_path, board_id, release, "a")
    r, from_image = _build(tmp_path, board_id, published, "b")
    factory = f"factory/factory_{board.module_name}.bin"
    # The same image as from the release folder, and esptool's merge of the release's own files:
    # the ESP8266 digest included, the flash size right, the missing tail erased.
    assert (from_image / factory).read_bytes() == (from_release / factory).read_bytes()
    assert (from_image / factory).read_bytes() == esptool_merge(from_image, board)
    for rel in ("esp-at.bin", "ota_data_initial.bin", "phy_init_data.bin"):
        assert (from_image / rel).read_bytes() == (from_release / rel).read_bytes(), rel
    # bootloader.bin: the image's, the flash settings in bytes 2-3 as esptool encodes them for the chip
    boot = (from_image / "bootloader/bootloader.bin").read_bytes()
    offset = board.chip.bootloader_offset
    assert boot == (from_image / factory).read_bytes()[offset:offset + len(boot)]
    rom = CHIP_DEFS[board.chip.name]
    assert boot[3] == rom.FLASH_SIZES[board.flash_size] | rom.FLASH_FREQUENCY[board.flash_freq]
    notes = [line for line in r.stdout.splitlines() if line.startswith("atfactory: note: ")]
    expected = []
    if "combine script" in variant:
        expected.append(f"atfactory: note: {published}: bootloader header: flash size")
    if "cut short" in variant:
        expected.append(f"atfactory: note: {published}: the image ends at 0x{len(data):x}, before the end of its "
                        f"{board.flash_size[:-1]} (0x{board.flash_size_bytes:x}) flash: the rest is taken as erased")
    assert len(notes) == len(expected), r.stdout
    for line, start in zip(notes, expected):
        assert line.startswith(start), line
    if "combine script" in variant:
        assert notes[0].endswith(f"the defect of Espressif's combine script; taken as {board.flash_size}")


# --- read back: inspect, verify, extract ------------------------------------------------------------

VARIANTS = {
    "combine script": lambda data, board: _combine_script_byte3(data, board),
    "cut short": lambda data, board: data.rstrip(b"\xff"),
    "combine script, cut short": lambda data, board: _combine_script_byte3(data, board).rstrip(b"\xff"),
}


def _published(built: Path, tmp_path: Path, registry, board_id: str, variant: str) -> Path:
    board = load_board(board_id, registry)
    path = tmp_path / f"published-{board_id}.bin"
    path.write_bytes(VARIANTS[variant](image_of(built, board_id).read_bytes(), board))
    return path


@pytest.mark.parametrize("board_id, variant", [
    ("WROOM-02", "combine script"), ("WROOM-02", "cut short"), ("WROOM-02", "combine script, cut short"),
    ("ESP8266_1MB", "combine script, cut short"), ("WROOM-32", "cut short"), ("ESP32C3-MINI-1", "cut short"),
])
def test_extract_then_rebuild_gives_the_image_as_esptool_merges_it(built, registry, capsys, tmp_path, board_id,
                                                                   variant):
    published = _published(built, tmp_path, registry, board_id, variant)
    code, out, err = run_cli(capsys, "extract", str(published), "-o", str(tmp_path / "x"))
    assert code == 0, err
    board_file = Path(out.split("wrote ", 1)[1].splitlines()[0])
    board = load_board(str(board_file), registry)
    assert board.flash_size == load_board(board_id, registry).flash_size   # the real size, not the header's
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    taken = f"the defect of Espressif's combine script; taken as {board.flash_size}"
    assert ("combine script" in variant) == any(n.endswith(taken) for n in notes)
    assert ("cut short" in variant) == any("the rest is taken as erased" in n for n in notes)
    r = run_scons(f"board={board_file}", f"firmware={published}", "build_dir=rb", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rebuilt = next((tmp_path / "rb" / board_file.stem / "factory").glob("factory_*.bin"))
    assert rebuilt.read_bytes() == image_of(built, board_id).read_bytes()


def test_inspect_says_where_a_short_image_ends(built, capsys, tmp_path):
    image = image_of(built, "WROOM-32").read_bytes()
    end = len(image[:0x33000].rstrip(b"\xff"))      # after wpa2_cert's item (0x31000-0x33000)
    assert 0x31000 < end < 0x33000
    path = tmp_path / "short.bin"
    path.write_bytes(image[:end])
    code, out, _ = run_cli(capsys, "inspect", str(path))
    assert code == 0
    lines = out.splitlines()
    assert f"note: the image ends at 0x{end:x}, before the end of its 4M (0x400000) flash: the rest is taken as " \
           "erased" in lines
    at = lines.index(next(line for line in lines if line.lstrip().startswith("wpa2_cert ")))
    assert lines[at + 1] == f"      (the image ends at 0x{end:x}, inside this partition: the rest is read as erased)"
    assert lines[at + 2].lstrip().startswith("item type 2 (cert) id 0")
    for name in ("wpa2_key", "mqtt_ca", "fatfs"):
        at = lines.index(next(line for line in lines if line.lstrip().startswith(name + " ")))
        assert lines[at + 1] == f"      (not in the image, which ends at 0x{end:x}: read as erased)", name
    assert "(erased)" not in out
    code, out, _ = run_cli(capsys, "inspect", str(path), "--json", "--map", str(tmp_path / "map.svg"))
    doc = json.loads(out)
    assert doc["image_end"] == end and doc["size"] == end and doc["flash"]["size"] == "4MB"
    parts = {p["name"]: p for p in doc["at_customize"]["partitions"]}
    assert "image_end" not in parts["factory_param"] and parts["wpa2_cert"]["image_end"] == end
    assert parts["fatfs"]["content"] == {"kind": "erased"} and parts["fatfs"]["image_end"] == end
    assert "erased: past the end of the image" in (tmp_path / "map.svg").read_text()


def test_verify_short_image_is_a_note(built, capsys, tmp_path):
    short = image_of(built, "WROOM-32").read_bytes().rstrip(b"\xff")
    path = tmp_path / "short.bin"
    path.write_bytes(short)
    code, out, _ = run_cli(capsys, "verify", str(path), "--board", "WROOM-32")
    assert code == 0, out
    assert f"  note     the image ends at 0x{len(short):x}, before the end of its 4M (0x400000) flash: the rest is " \
           "taken as erased" in out
    assert "DIFFERS" not in out and "result: matches the board" in out


def test_verify_combine_script_size_is_one_difference(built, registry, capsys, tmp_path):
    path = _published(built, tmp_path, registry, "WROOM-02", "combine script, cut short")
    code, out, _ = run_cli(capsys, "verify", str(path), "--board", "WROOM-02")
    assert code == 1
    differs = [line for line in out.splitlines() if "DIFFERS" in line]
    assert differs == [f"  DIFFERS  bootloader header: flash size 256KB (ESP8266 encoding, byte 3 = 0x1f) but the "
                       f"image is {path.stat().st_size} bytes: the size was encoded with the ESP32 table (2MB), the "
                       "defect of Espressif's combine script; re-merge with esptool"]
    assert "  ok       flash.size" in out and "  note     the image ends at" in out


def _application(image: Path, board_id: str):
    data = image.read_bytes()
    offset = APP_OFFSET[board_id]
    return offset, read_image(data, offset, extended_header=board_id != "WROOM-02")


def test_verify_esp8266_application_without_its_digest(built, capsys, tmp_path):
    offset, info = _application(image_of(built, "WROOM-02"), "WROOM-02")
    assert info.hash_appended
    path = tampered(built, tmp_path, offset + info.length - 32, b"\xff" * 32, board_id="WROOM-02")
    code, out, _ = run_cli(capsys, "verify", str(path), "--board", "WROOM-02")
    assert code == 1
    assert (f"  DIFFERS  application in factory at 0x{offset:x}: no SHA-256 digest after the image; "
            "ESP8266_RTOS_SDK v3 appends one to every application it builds") in out
    code, out, _ = run_cli(capsys, "inspect", str(path))
    assert f"application in factory at 0x{offset:x}: {info.length - 32} bytes, SHA-256 digest none" in out


def test_verify_esp32_application_digest_that_does_not_match(built, capsys, tmp_path):
    offset, info = _application(image_of(built, "WROOM-32"), "WROOM-32")
    last = image_of(built, "WROOM-32").read_bytes()[offset + info.length - 1]
    path = tampered(built, tmp_path, offset + info.length - 1, bytes([last ^ 1]))
    code, out, _ = run_cli(capsys, "verify", str(path), "--board", "WROOM-32")
    assert code == 1
    assert f"  DIFFERS  application in factory at 0x{offset:x}: its SHA-256 digest does not match the image" in out
    code, out, _ = run_cli(capsys, "inspect", str(image_of(built, "WROOM-32")))
    assert f"application in factory at 0x{offset:x}: {info.length} bytes, SHA-256 digest ok" in out
