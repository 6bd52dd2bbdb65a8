"""The base firmware a board customizes: an ESP-AT release folder or a merged factory image.

atfactory never compiles firmware.  It takes bootloader, partition table, OTA data, PHY init
data and the AT application from a release: copied from a release folder as download.config
lists them, or cut out of a factory image by reading its partition table and its
bootloader at the chip's offsets.  ``check_firmware`` cross-checks the firmware against the
board before anything is written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from . import partition_table as pt
from .chips import CHIPS, flash_size_bytes
from .errors import FirmwareError, FormatError, InputError, Problem, ReleaseError, display_path
from .esp_image import ESP32_FAMILY_WP_PIN, decode_header, read_image
from .fsutil import read_input
from .numbers import format_size
from .release import is_customized, read_release



@dataclass(frozen=True)
class FirmwareFile:
    offset: int
    path: str                     # where it goes in the release folder
    source: str                   # the release file to copy, or the factory image to cut from
    start: Optional[int] = None   # when cut from an image: its bytes [start, start + length)
    length: Optional[int] = None


@dataclass(frozen=True)
class Firmware:
    origin: str                   # the release folder or image file
    kind: str                     # "release" or "image"
    files: Tuple[FirmwareFile, ...]
    table: pt.DecodedTable
    bootloader_offset: int
    bootloader_header: bytes      # the first 24 bytes of the bootloader image
    flash_size: Optional[int]     # bytes the firmware was made for, where it says so
    inputs: Tuple[str, ...]       # files read
    at_table: Optional[pt.DecodedTable] = None   # its own at_customize.bin, where it has one
    customized: Tuple[Tuple[str, bytes], ...] = ()   # (partition name, its bytes) of its AT partitions
    warnings: Tuple[str, ...] = ()   # what its download.config has that is odd but harmless


def _read(path: str) -> bytes:
    try:
        return read_input(path)
    except InputError as err:
        raise FirmwareError(f"{os.path.basename(path)} {err.reading}") from None


def load_firmware(path: str, chip_name: str, at_version: Optional[str] = None) -> Firmware:
    """Read a release folder or a factory image.  Raises FirmwareError with a clear line."""
    table_offset = CHIPS[chip_name].table_offset(at_version)
    if os.path.isdir(path):
        return _load_release(path, table_offset)
    if os.path.isfile(path):
        return _load_image(path, chip_name, table_offset)
    raise FirmwareError("no such folder or file; expected an ESP-AT release folder "
                        "(with download.config) or a factory image (factory_XXX.bin)")


def _load_release(folder: str, table_offset: int) -> Firmware:
    try:
        release = read_release(folder, wanted=lambda rel: not is_customized(rel))   # the rest atfactory builds
    except ReleaseError as err:
        raise FirmwareError(str(err)) from None
    config, config_path = release.config, release.config_path
    files: List[FirmwareFile] = [FirmwareFile(f.offset, f.path, f.full) for f in release.files]
    table_file = next((f for f in files if f.offset == table_offset), None)
    if table_file is None:
        raise FirmwareError(f"download.config lists no partition table at 0x{table_offset:x}")
    try:
        table = pt.decode_partition_table(_read(table_file.source))
    except FormatError as err:
        raise FirmwareError(f"{table_file.path}: {err}") from None
    boot = min(files, key=lambda f: f.offset)
    header = _read(boot.source)[:24]
    size = flash_size_bytes(config.flash_size) if _known_size(config.flash_size) else None
    at_table, customized = _release_customized(folder, config)
    return Firmware(folder, "release", tuple(files), table, boot.offset, header, size,
                    tuple([config_path] + [f.source for f in files]), at_table, customized, release.warnings)


def _release_customized(folder: str, config) -> Tuple[Optional[pt.DecodedTable], Tuple[Tuple[str, bytes], ...]]:
    """The release's own at_customize.bin and AT partitions, as far as they are there: they say
    which ESP-AT generation the firmware is (atfactory rebuilds them; nothing of them is copied)."""
    entries = {rel: offset for offset, rel in config.entries if is_customized(rel)}
    path = os.path.join(folder, "at_customize.bin")
    if "at_customize.bin" not in entries or not os.path.isfile(path):
        return None, ()
    try:
        at_table = pt.decode_partition_table(read_input(path))
    except (InputError, FormatError):
        return None, ()
    customized = []
    for e in at_table.entries:
        rel = f"customized_partitions/{e.name}.bin"
        full = os.path.join(folder, rel)
        if rel in entries and os.path.isfile(full):
            try:
                customized.append((e.name, read_input(full)[:e.size]))
            except InputError:
                continue
    return at_table, tuple(customized)


def _known_size(name: str) -> bool:
    return any(name in chip.flash_sizes for chip in CHIPS.values())


# Release paths of the parts cut from a factory image, as ESP-AT releases name them.
_PATH_BY_PARTITION = {
    (0x01, 0x00): "ota_data_initial.bin",   # data/ota
    (0x01, 0x01): "phy_init_data.bin",      # data/phy
}


def _load_image(path: str, chip_name: str, table_offset: int) -> Firmware:
    data = _read(path)
    chip = CHIPS[chip_name]
    try:
        table = pt.decode_partition_table(data[table_offset:table_offset + pt.TABLE_SIZE])
    except FormatError as err:
        raise FirmwareError(f"no partition table at 0x{table_offset:x} ({err}); expected a merged factory image") from None
    boot_offset = chip.bootloader_offset
    try:
        boot = read_image(data, boot_offset, extended_header=chip.image_chip_id is not None)
    except FormatError as err:
        raise FirmwareError(f"no {chip.title} bootloader at 0x{boot_offset:x} ({err})") from None
    files = [
        FirmwareFile(boot_offset, "bootloader/bootloader.bin", path, boot_offset, boot.length),
        FirmwareFile(table_offset, "partition_table/partition-table.bin", path, table_offset, pt.TABLE_SIZE),
    ]
    apps = [e for e in table.entries if e.type == 0x00]
    for entry in table.entries:
        if entry.end > len(data):
            raise FirmwareError(f"partition {entry.name} (0x{entry.offset:x}-0x{entry.end:x}) "
                                f"runs past the end of the {len(data)}-byte image")
        rel = _PATH_BY_PARTITION.get((entry.type, entry.subtype))
        if rel == "ota_data_initial.bin":
            files.append(FirmwareFile(entry.offset, rel, path, entry.offset, entry.size))
        elif rel == "phy_init_data.bin":
            length = _used_length(data, entry.offset, entry.size)
            if length:
                files.append(FirmwareFile(entry.offset, rel, path, entry.offset, length))
    if apps:
        first = apps[0]   # factory or ota_0: where the released application sits
        try:
            app = read_image(data, first.offset, extended_header=chip.image_chip_id is not None)
        except FormatError as err:
            raise FirmwareError(f"no application image in partition {first.name} ({err})") from None
        files.append(FirmwareFile(first.offset, "esp-at.bin", path, first.offset, app.length))
    at_table, customized = _image_customized(data, table)
    return Firmware(path, "image", tuple(files), table, boot_offset, data[boot_offset:boot_offset + 24],
                    len(data), (path,), at_table, customized)


def _image_customized(data: bytes, table: pt.DecodedTable):
    """The image's at_customize table and AT partitions (see _release_customized)."""
    at = [e for e in table.entries if e.type == pt.AT_CUSTOMIZE_TYPE and e.subtype == pt.AT_CUSTOMIZE_SUBTYPE]
    if not at:
        return None, ()
    try:
        at_table = pt.decode_partition_table(data[at[0].offset:at[0].offset + pt.TABLE_SIZE])
    except FormatError:
        return None, ()
    return at_table, tuple((e.name, bytes(data[e.offset:e.end])) for e in at_table.entries if e.end <= len(data))


def _used_length(data: bytes, offset: int, size: int) -> int:
    """The partition's bytes up to its last non-erased byte, rounded up to 4."""
    chunk = data[offset:offset + size].rstrip(b"\xff")
    return min(size, (len(chunk) + 3) & ~3)


def check_firmware(board, firmware: Firmware, where: str, formats=None, warnings: Optional[List[str]] = None) -> List[Problem]:
    """Cross-check a loaded board against its firmware.  ``where`` names the firmware setting;
    ``warnings`` collects what does not stop the build (the firmware's own AT release)."""
    problems: List[Problem] = []
    origin = display_path(firmware.origin)
    _check_generation(board, firmware, where, formats, problems, warnings if warnings is not None else [])

    def fail(file, key, message, value=Problem._NO_VALUE):
        problems.append(Problem(file, key, message, value))

    at = [e for e in firmware.table.entries if e.type == pt.AT_CUSTOMIZE_TYPE and e.subtype == pt.AT_CUSTOMIZE_SUBTYPE]
    if not at:
        fail(None, where, "the firmware's partition table has no at_customize entry (type 0x40, subtype 0): "
                          "it is not an ESP-AT firmware", origin)
    else:
        entry = at[0]
        if entry.offset != board.at_customize_offset or entry.size != board.at_customize_size:
            fail(board.path, "at_customize", f"offset 0x{board.at_customize_offset:x} and size "
                 f"0x{board.at_customize_size:x} differ from the firmware's at_customize partition "
                 f"(offset 0x{entry.offset:x}, size 0x{entry.size:x}) in {origin}; set the board's "
                 "[at_customize] to the firmware's")
    chip = board.chip
    if firmware.bootloader_offset != chip.bootloader_offset:
        fail(None, where, f"the bootloader is at 0x{firmware.bootloader_offset:x}, but {chip.title} boots from "
                          f"0x{chip.bootloader_offset:x}: this firmware is for another chip", origin)
    else:
        header = decode_header(firmware.bootloader_header)
        if chip.image_chip_id is not None:
            chip_id = header.chip_id if header else None
            if chip_id != chip.image_chip_id:
                other = next((c.title for c in CHIPS.values() if c.image_chip_id == chip_id), f"chip id {chip_id}")
                fail(None, where, f"the firmware is for {other}, the board for {chip.title} (module.chip = "
                                  f"\"{chip.name}\")", origin)
        elif header is not None and header.wp_pin == ESP32_FAMILY_WP_PIN:
            fail(None, where, f"the bootloader has an ESP32-family image header; the board is for {chip.title}",
                 origin)
    need = max([firmware.flash_size or 0] + [e.end for e in firmware.table.entries])
    if need > board.flash_size_bytes:
        fail(board.path, "flash.size", f"the firmware needs {format_size(need)} of flash, more than the board's "
                                        f"{board.flash_size}", board.flash_size)
    return problems


def _check_generation(board, firmware: Firmware, where: str, formats, problems: List[Problem],
                      warnings: List[str]) -> None:
    """A v2 board on v3.1+ firmware reads partitions the firmware never looks at, and the other
    way round: refuse, naming both generations.  Where the firmware's own AT partitions say which
    releases wrote them (mfg_nvs's generator family and keys), a different release is a warning."""
    from .at_releases import AT_RELEASES, GENERATION_TITLES, describe_generations, describe_versions
    from .formats import stock_registry

    if firmware.at_table is None:
        return
    versions = (formats or stock_registry()).firmware_releases(
        [(e.name, e.type, e.subtype) for e in firmware.at_table.entries], dict(firmware.customized))
    if versions is None:
        return
    release = AT_RELEASES.get(board.at_version)
    generations = {AT_RELEASES[v].generation for v in versions}
    if release is not None and generations and release.generation not in generations:
        problems.append(Problem(board.path, "module.at_version", f"the board builds for "
                                f"{GENERATION_TITLES[release.generation]}, but the firmware in "
                                f"{display_path(firmware.origin)} is {describe_generations(versions)}: it would "
                                "never read what this board builds; choose the at_version of the firmware",
                                board.at_version))
    elif versions and board.at_version not in versions:
        known = [v for v in AT_RELEASES if v in versions]
        warnings.append(f"{display_path(board.path)}: module.at_version = \"{board.at_version}\": the firmware's own AT "
                        f"partitions were written by ESP-AT {describe_versions(known)}; the board's are written as "
                        f"{board.at_version} writes them")
