"""Base firmware for tests: real ESP images made with esptool's own image classes.

``make_release(folder, board)`` writes an ESP-AT release folder whose partition table matches
the board's at_customize region (bootloader, partition table, OTA data, PHY init data and an
application), and ``make_factory_image`` merges one with esptool, as a published
factory_XXX.bin is made.  As in real releases, every application ends with a SHA-256 digest:
flagged in the header on ESP32-family chips, unflagged on ESP8266 (ESP8266_RTOS_SDK v3 builds
esptool's "v3" ESP8266 image); ESP8266 bootloaders have none.
"""
from __future__ import annotations

import os
from pathlib import Path

from esptool.bin_image import (ELFSection, ESP32C2FirmwareImage, ESP32C3FirmwareImage, ESP32C5FirmwareImage,
                               ESP32C6FirmwareImage, ESP32C61FirmwareImage, ESP32FirmwareImage, ESP32S2FirmwareImage,
                               ESP8266ROMFirmwareImage, ESP8266V3FirmwareImage)

from atfactory import partition_table as pt
from atfactory.chips import CHIPS

IMAGE_CLASSES = {
    "esp32": ESP32FirmwareImage,
    "esp32c3": ESP32C3FirmwareImage,
    "esp32s2": ESP32S2FirmwareImage,
    "esp8266": ESP8266ROMFirmwareImage,
    "esp32c2": ESP32C2FirmwareImage,
    "esp32c5": ESP32C5FirmwareImage,
    "esp32c6": ESP32C6FirmwareImage,
    "esp32c61": ESP32C61FirmwareImage,
}
# Load addresses inside each chip's instruction RAM, where esptool accepts segments.
IRAM = {"esp32": 0x40080000, "esp32c3": 0x40380000, "esp32s2": 0x40022000, "esp8266": 0x40100000,
        "esp32c2": 0x40380000, "esp32c5": 0x40800000, "esp32c6": 0x40800000, "esp32c61": 0x40800000}


def make_image(chip: str, payload: bytes, digest: bool = True) -> bytes:
    """An image of one IRAM segment; ``digest``: with the SHA-256 digest (ESP8266: the v3 format)."""
    cls = ESP8266V3FirmwareImage if chip == "esp8266" and digest else IMAGE_CLASSES[chip]
    image = cls()
    image.entrypoint = IRAM[chip]
    image.segments = [ELFSection(b".iram0.text", IRAM[chip], payload, 0)]
    image.append_digest = digest
    if cls is ESP8266V3FirmwareImage:
        return image.save(None)
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"atf-image-{os.getpid()}-{id(image)}"
    image.save(str(out))
    if chip == "esp8266":   # the v1 ROM format is saved as <name>0x00000.bin
        produced = Path(str(out) + "0x00000.bin")
    else:
        produced = out
    data = produced.read_bytes()
    produced.unlink()
    return data


def main_table(board, md5: bool = True) -> bytes:
    """A main partition table: otadata, phy, nvs, the board's at_customize region, one app."""
    at_lo = board.at_customize_offset
    at_hi = at_lo + board.at_customize_size
    flash = board.flash_size_bytes
    app_offset = (at_hi + 0xFFFF) & ~0xFFFF
    table_offset = board.chip.table_offset(board.at_version)
    entries = [
        pt.Entry("otadata", 0x01, 0x00, 0x9000 if at_lo > 0xB000 and table_offset < 0x9000 else 0xD000, 0x2000),
        pt.Entry("phy_init", 0x01, 0x01, 0xF000, 0x1000),
        pt.Entry("nvs", 0x01, 0x02, 0x10000 if at_lo >= 0x18000 else at_hi, 0x6000),
        pt.Entry("at_customize", 0x40, 0x00, at_lo, board.at_customize_size),
        pt.Entry("factory", 0x00, 0x00, app_offset, min(0x100000, flash - app_offset)),
    ]
    entries = [e for e in entries if e.offset + e.size <= flash]
    return pt.encode_partition_table(sorted(entries, key=lambda e: e.offset), md5=md5)


def make_release(folder: Path, board, app_payload: bytes = b"\x5a" * 4000, app_digest: bool = True) -> Path:
    """Write an ESP-AT release folder for ``board``'s chip and layout; return the folder."""
    chip = board.chip
    table = main_table(board)
    entries = pt.decode_partition_table(table).entries
    boot = make_image(chip.name, b"\xb0" * 1000, digest=chip.name != "esp8266")
    files = {
        chip.bootloader_offset: ("bootloader/bootloader.bin", boot),
        chip.table_offset(board.at_version): ("partition_table/partition-table.bin", table),
    }
    for e in entries:
        if (e.type, e.subtype) == (0x01, 0x00):
            files[e.offset] = ("ota_data_initial.bin", b"\xff" * e.size)
        elif (e.type, e.subtype) == (0x01, 0x01):
            files[e.offset] = ("phy_init_data.bin", b"PHY\x01" + bytes(range(124)))
        elif e.type == 0x00:
            files[e.offset] = ("esp-at.bin", make_image(chip.name, app_payload, digest=app_digest))
    folder.mkdir(parents=True, exist_ok=True)
    words = ["--flash_mode", board.flash_mode, "--flash_freq", board.flash_freq, "--flash_size", board.flash_size]
    for offset, (rel, data) in sorted(files.items()):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
        words += [f"0x{offset:x}", rel]
    (folder / "download.config").write_text(" ".join(words) + "\n")
    return folder


def make_factory_image(path: Path, release: Path, board) -> Path:
    """Merge a release folder into one image with esptool, as published factory images are."""
    from atfactory.download_config import decode_download_config
    from atfactory.merge import merge_factory_image

    config = decode_download_config((release / "download.config").read_bytes())
    data = merge_factory_image(board.chip.name, config.flash_mode, config.flash_freq, config.flash_size,
                               board.flash_size_bytes, [(o, str(release / p)) for o, p in config.entries])
    path.write_bytes(data)
    return path


__all__ = ["make_image", "main_table", "make_release", "make_factory_image", "CHIPS"]
