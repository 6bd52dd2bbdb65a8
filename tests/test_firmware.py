"""Base firmware (atfactory.firmware, atfactory.merge): a release folder or a factory image as ``firmware=``,
its cross-checks against the board, and the merged factory image."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from esptool.targets import CHIP_DEFS

from atfactory.board import load_board
from atfactory.download_config import decode_download_config
from helpers import esptool_merge, run_scons, write
from firmware_factory import make_factory_image, make_release

BOARDS = ["WROOM-32", "ESP32C3-MINI-1", "ESP32S2-WROOM", "WROOM-02"]


@pytest.fixture(scope="module")
def firmware(registry, tmp_path_factory):
    """A release folder and a factory image for each test board."""
    made = {}
    for board_id in BOARDS + ["ESP8266_1MB"]:
        board = load_board(board_id, registry)
        root = tmp_path_factory.mktemp(board_id)
        release = make_release(root / "release", board)
        made[board_id] = (board, release, make_factory_image(root / f"factory_{board.module_name}.bin", release, board))
    return made


@pytest.mark.parametrize("board_id", BOARDS)
def test_release_folder_to_factory_image(board_id, firmware, tmp_path):
    board, release, _ = firmware[board_id]
    r = run_scons(f"board={board_id}", f"firmware={release}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out" / board_id
    config = decode_download_config((out / "download.config").read_bytes())
    assert (config.flash_mode, config.flash_freq, config.flash_size) == (board.flash_mode, board.flash_freq, board.flash_size)
    paths = [p for _, p in config.entries]
    for rel in ("bootloader/bootloader.bin", "partition_table/partition-table.bin", "ota_data_initial.bin",
                "phy_init_data.bin", "esp-at.bin", "at_customize.bin", "customized_partitions/factory_param.bin"):
        assert rel in paths
    for _, rel in config.entries:
        assert (out / rel).is_file(), rel
    for rel in ("bootloader/bootloader.bin", "esp-at.bin", "partition_table/partition-table.bin"):
        assert (out / rel).read_bytes() == (release / rel).read_bytes()

    image = (out / "factory" / f"factory_{board.module_name}.bin").read_bytes()
    assert len(image) == board.flash_size_bytes
    # Byte for byte what esptool's merge makes of the same files and flash options.
    assert image == esptool_merge(out, board)
    # The bootloader header carries the board's flash settings in the chip's own encoding.
    rom = CHIP_DEFS[board.chip.name]
    header = image[board.chip.bootloader_offset:board.chip.bootloader_offset + 4]
    assert header[0] == 0xE9
    assert header[2] == {"qio": 0, "qout": 1, "dio": 2, "dout": 3}[board.flash_mode]
    assert header[3] == rom.FLASH_SIZES[board.flash_size] | rom.FLASH_FREQUENCY[board.flash_freq]
    # Gaps are erased.
    assert image[0x8000 + 3072:0x9000] == b"\xff" * (0x9000 - 0x8000 - 3072)
    # Key-bearing factory image: owner-only.
    assert (out / "factory" / f"factory_{board.module_name}.bin").stat().st_mode & 0o077 == 0


def test_esp8266_size_encoding_differs_from_esp32(firmware, tmp_path):
    board, release, _ = firmware["WROOM-02"]
    r = run_scons("board=WROOM-02", f"firmware={release}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    image = (tmp_path / "out/WROOM-02/factory/factory_WROOM-02.bin").read_bytes()
    assert image[3] == 0x3F   # 2MB counted from 512KB (0x3_), 80m (0x_F): not ESP32's 0x1F


@pytest.mark.parametrize("board_id", ["WROOM-32", "WROOM-02"])
def test_factory_image_as_firmware(board_id, firmware, tmp_path):
    board, release, factory = firmware[board_id]
    r = run_scons(f"board={board_id}", f"firmware={factory}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out" / board_id
    for rel in ("esp-at.bin", "partition_table/partition-table.bin", "phy_init_data.bin", "ota_data_initial.bin"):
        assert (out / rel).read_bytes() == (release / rel).read_bytes(), rel
    # The bootloader cut from the image is the released one with the merge's flash settings in
    # bytes 2-3 (and, on ESP32-family chips, the image digest esptool recomputed after them).
    cut, original = (out / "bootloader/bootloader.bin").read_bytes(), (release / "bootloader/bootloader.bin").read_bytes()
    digest = 32 if board.chip.image_chip_id is not None else 0
    assert len(cut) == len(original)
    assert cut[:2] == original[:2] and cut[4:len(cut) - digest] == original[4:len(original) - digest]
    image = (out / "factory" / f"factory_{board.module_name}.bin").read_bytes()
    assert image == esptool_merge(out, board)


def test_image_info_reads_the_merged_bootloader(firmware, tmp_path):
    board, release, _ = firmware["WROOM-32"]
    assert run_scons("board=WROOM-32", f"firmware={release}", "build_dir=out", cwd=tmp_path).returncode == 0
    image = (tmp_path / "out/WROOM-32/factory/factory_WROOM-32.bin").read_bytes()
    boot = tmp_path / "boot.bin"
    boot.write_bytes(image[0x1000:0x8000])
    info = subprocess.run([sys.executable, "-m", "esptool", "--chip", "esp32", "image-info", str(boot)],
                          capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert re.search(r"Flash size: 4MB", info.stdout)
    assert re.search(r"Flash freq: 40m", info.stdout)
    assert re.search(r"Flash mode: DIO", info.stdout)


def test_firmware_release_key_in_board_file(firmware, tmp_path):
    _, release, _ = firmware["WROOM-32"]
    board = write(tmp_path / "mod.toml", f"""
        extends = "WROOM-32"
        [firmware]
        release = "{release}"
        """)
    r = run_scons(f"board={board.name}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out/mod/factory/factory_mod.bin").is_file()   # module.name defaults to the file stem


def test_no_firmware_is_said_once(tmp_path):
    r = run_scons("board=WROOM-32", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout.count("the factory image needs firmware") == 1
    assert not (tmp_path / "out/WROOM-32/factory").exists()


def _fails(tmp_path, *args):
    r = run_scons(*args, "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*/factory"))
    return r.stderr


def test_at_customize_region_must_match_firmware(firmware, tmp_path):
    _, release, _ = firmware["WROOM-32"]
    board = write(tmp_path / "shrunk.toml", """
        extends = "WROOM-32"
        [at_customize]
        size = 0x60000
        [[at_customize.partitions]]
        name = "fatfs"
        remove = true
        """)
    err = _fails(tmp_path, f"board={board.name}", f"firmware={release}")
    assert "shrunk.toml: at_customize: offset 0x20000 and size 0x60000 differ from the firmware's " \
           "at_customize partition (offset 0x20000, size 0xe0000)" in err


def test_firmware_for_another_chip(firmware, tmp_path):
    _, release, _ = firmware["ESP32S2-WROOM"]   # same layout as WROOM-32, other chip
    err = _fails(tmp_path, "board=WROOM-32", f"firmware={release}")
    assert "firmware = " in err and "the firmware is for ESP32-S2, the board for ESP32" in err


def test_firmware_bootloader_at_wrong_offset(firmware, tmp_path):
    _, release, _ = firmware["ESP32C3-MINI-1"]
    err = _fails(tmp_path, "board=WROOM-32", f"firmware={release}")
    assert "the bootloader is at 0x0, but ESP32 boots from 0x1000" in err


def test_firmware_larger_than_board_flash(firmware, tmp_path):
    _, release, _ = firmware["WROOM-32"]
    board = write(tmp_path / "small.toml", """
        extends = "WROOM-32"
        [flash]
        size = "2MB"
        [[at_customize.partitions]]
        name = "fatfs"
        remove = true
        """)
    err = _fails(tmp_path, f"board={board.name}", f"firmware={release}")
    assert 'small.toml: flash.size = "2MB": the firmware needs 4M (0x400000) of flash' in err


def test_download_config_names_missing_file(firmware, tmp_path):
    import shutil
    _, release, _ = firmware["WROOM-32"]
    broken = tmp_path / "broken"
    shutil.copytree(release, broken)
    (broken / "esp-at.bin").unlink()
    err = _fails(tmp_path, "board=WROOM-32", f"firmware={broken}")
    assert "download.config names files that are not in the folder: esp-at.bin" in err


@pytest.mark.parametrize("what, expected", [
    ("missing", "no such folder or file; expected an ESP-AT release folder"),
    ("not-an-image", "no partition table at 0x8000"),
    ("empty-folder", "no download.config; an ESP-AT release folder has one"),
])
def test_firmware_that_is_not_one(tmp_path, what, expected):
    path = tmp_path / what
    if what == "not-an-image":
        path.write_bytes(b"\x00" * 0x10000)
    elif what == "empty-folder":
        path.mkdir()
    err = _fails(tmp_path, "board=WROOM-32", f"firmware={path}")
    assert "firmware = " in err and expected in err


def test_table_without_at_customize(firmware, tmp_path):
    from atfactory import partition_table as pt
    import shutil
    _, release, _ = firmware["WROOM-32"]
    other = tmp_path / "plain-idf"
    shutil.copytree(release, other)
    table = pt.decode_partition_table((other / "partition_table/partition-table.bin").read_bytes())
    entries = [e for e in table.entries if e.type != 0x40]
    (other / "partition_table/partition-table.bin").write_bytes(pt.encode_partition_table(entries))
    err = _fails(tmp_path, "board=WROOM-32", f"firmware={other}")
    assert "has no at_customize entry (type 0x40, subtype 0): it is not an ESP-AT firmware" in err


# --- download.config that lists an entry twice, or two entries on one place -------------------

def _release_with_extra_entries(firmware, tmp_path, extra: str, files=()) -> Path:
    """WROOM-32's release folder copied, with ``extra`` appended to its download.config."""
    import shutil

    _, release, _ = firmware["WROOM-32"]
    copy = tmp_path / "release"
    shutil.copytree(release, copy)
    for rel, data in files:
        (copy / rel).write_bytes(data)
    config = copy / "download.config"
    config.write_text(config.read_text().rstrip("\n") + " " + extra + "\n")
    return copy


def test_an_entry_listed_twice_builds_with_one_warning(firmware, tmp_path):
    """Some ESP-AT releases list the same file at the same offset twice: it is flashed once."""
    release = _release_with_extra_entries(firmware, tmp_path, "0xf000 phy_init_data.bin")
    r = run_scons("board=WROOM-32", f"firmware={release}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # the stock board's development certificates get their own line (test_production.py)
    warnings = [line for line in r.stderr.splitlines() if "warning" in line and "development certificates" not in line]
    assert warnings == [f"atfactory: warning: {release}/download.config: 0xf000 phy_init_data.bin is listed twice; "
                        "it is flashed once"]
    config = decode_download_config((tmp_path / "out/WROOM-32/download.config").read_bytes())
    assert [p for _, p in config.entries].count("phy_init_data.bin") == 1
    image = (tmp_path / "out/WROOM-32/factory/factory_WROOM-32.bin").read_bytes()
    assert image[0xF000:0xF000 + 128] == (release / "phy_init_data.bin").read_bytes()


@pytest.mark.parametrize("extra, files, expected", [
    ("0xf000 extra.bin", [("extra.bin", b"\x01" * 16)],
     "download.config: 0xf000 phy_init_data.bin and 0xf000 extra.bin: two files at one offset; "
     "accepted: one file per offset"),
    ("0xf040 extra.bin", [("extra.bin", b"\x01" * 16)],
     "download.config: 0xf040 extra.bin (0xf040-0xf050) overlaps 0xf000 phy_init_data.bin (0xf000-0xf080); "
     "accepted: files whose bytes do not overlap"),
])
def test_entries_that_conflict_are_refused_naming_both(firmware, tmp_path, capsys, extra, files, expected):
    from helpers import run_cli

    release = _release_with_extra_entries(firmware, tmp_path, extra, files)
    err = _fails(tmp_path, "board=WROOM-32", f"firmware={release}")
    lines = [line for line in err.splitlines() if line.startswith("scons: *** ")]
    assert len(lines) == 1 and expected in lines[0], err
    code, out, err = run_cli(capsys, "inspect", str(release))
    assert (code, out, err) == (2, "", f"atfactory: error: {release}: {expected}\n")
