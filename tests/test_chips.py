"""atfactory.chips copies esptool's flash tables: they must stay equal to esptool's own."""
from __future__ import annotations

import pytest

from atfactory.chips import CHIPS, FLASH_MODES, flash_size_bytes

esptool_targets = pytest.importorskip("esptool.targets", reason="esptool is not installed")
CHIP_DEFS = esptool_targets.CHIP_DEFS


def test_the_eight_chips():
    assert list(CHIPS) == ["esp32", "esp32c2", "esp32c3", "esp32c5", "esp32c6", "esp32c61", "esp32s2", "esp8266"]
    for name, chip in CHIPS.items():
        assert chip.name == name
        assert name in CHIP_DEFS


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_flash_sizes_equal_esptool(name):
    assert dict(CHIPS[name].flash_sizes) == dict(CHIP_DEFS[name].FLASH_SIZES)


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_flash_freqs_equal_esptool(name):
    assert dict(CHIPS[name].flash_freqs) == dict(CHIP_DEFS[name].FLASH_FREQUENCY)


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_bootloader_offset_equals_esptool(name):
    assert CHIPS[name].bootloader_offset == CHIP_DEFS[name].BOOTLOADER_FLASH_OFFSET


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_image_chip_id_equals_esptool(name):
    expected = getattr(CHIP_DEFS[name], "IMAGE_CHIP_ID", None)
    assert CHIPS[name].image_chip_id == expected


@pytest.mark.parametrize("name,offset", [("esp32", 0x1000), ("esp32s2", 0x1000), ("esp32c3", 0x0), ("esp8266", 0x0)])
def test_bootloader_offsets_of_formats_md(name, offset):
    assert CHIPS[name].bootloader_offset == offset


def test_flash_modes_equal_esptool():
    # esptool writes these into byte 2 of the image header.
    from esptool.cmds import FLASH_MODES as ESPTOOL_FLASH_MODES
    assert dict(FLASH_MODES) == {"qio": 0, "qout": 1, "dio": 2, "dout": 3}
    assert {k: v for k, v in ESPTOOL_FLASH_MODES.items() if k in FLASH_MODES} == dict(FLASH_MODES)


@pytest.mark.parametrize("name,size", [
    ("256KB", 256 * 1024), ("512KB", 512 * 1024), ("1MB", 1 << 20), ("2MB-c1", 2 << 20),
    ("4MB-c1", 4 << 20), ("16MB", 16 << 20), ("128MB", 128 << 20),
])
def test_flash_size_bytes(name, size):
    assert flash_size_bytes(name) == size


def test_every_flash_size_name_parses():
    for chip in CHIPS.values():
        for name in chip.flash_sizes:
            assert flash_size_bytes(name) > 0


@pytest.mark.parametrize("name,gpios", [
    ("esp32", "0-19, 21-23, 25-27, 32-39"), ("esp32s2", "0-21, 26-46"), ("esp32c3", "0-21"), ("esp8266", "0-16"),
])
def test_gpios_of_the_board_file_docs(name, gpios):
    assert CHIPS[name].describe_gpios() == gpios
