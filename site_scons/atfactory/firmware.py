"""The base firmware a board customizes: an ESP-AT release folder or a merged factory image.

atfactory never compiles firmware.  It takes bootloader, partition table, OTA data, PHY init
data and the AT application from a release: copied from a release folder as download.config
lists them, or cut out of a factory image by reading its partition table and its
bootloader at the chip's offsets, without losing a byte of it (``_load_image``).
``check_firmware`` cross-checks the firmware against the board before anything is written.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

from . import partition_table as pt
from .chips import CHIPS, flash_size_bytes
from .errors import FirmwareError, FormatError, InputError, Problem, ReleaseError, display_path
from .esp_image import (ESP32_FAMILY_WP_PIN, decode_header, header_flash_size, read_image, short_image_note,
                        size_taken_note)
from .fsutil import read_input
from .numbers import format_size
from .release import is_customized, read_release



@dataclass(frozen=True)
class FirmwareFile:
    offset: int
    path: str                     # where it goes in the release folder
    source: str                   # the release file to copy, or the factory image to cut from
    start: Optional[int] = None   # when cut from an image: its bytes [start, start + length)
    length: Optional[int] = None  # (erased past the end of a short image)
    patches: Tuple[Tuple[int, int], ...] = ()   # (offset in the file, byte) written over the cut


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
    notes: Tuple[str, ...] = ()   # what was read differently from what the image says, and why
    warnings: Tuple[str, ...] = ()   # what its download.config has that is odd but harmless


def _read(path: str) -> bytes:
    try:
        return read_input(path)
    except InputError as err:
        raise FirmwareError(f"{os.path.basename(path)} {err.reading}") from None


def load_firmware(path: str, chip_name: str, at_version: Optional[str] = None, confined: bool = False) -> Firmware:
    """Read a release folder or a factory image.  Raises FirmwareError with a clear line.
    ``confined`` (sandbox=yes): a release folder's files must resolve inside it."""
    table_offset = CHIPS[chip_name].table_offset(at_version)
    if os.path.isdir(path):
        return _load_release(path, table_offset, confined)
    if os.path.isfile(path):
        return _load_image(path, chip_name, table_offset)
    raise FirmwareError("no such folder or file; expected an ESP-AT release folder "
                        "(with download.config) or a factory image (factory_XXX.bin)")


def _load_release(folder: str, table_offset: int, confined: bool = False) -> Firmware:
    try:   # the files atfactory does not build itself
        release = read_release(folder, wanted=lambda rel: not is_customized(rel), confined=confined)
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
                    tuple([config_path] + [f.source for f in files]), at_table, customized, warnings=release.warnings)


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
APP_PATH = "esp-at.bin"
TABLE_SECTOR = 0x1000   # the main table's flash sector: partitions start after it


def _load_image(path: str, chip_name: str, table_offset: int) -> Firmware:
    """Cut a factory image into the files of its release.  Nothing of it is lost: each part keeps
    every byte up to its last written one (see ``_kept_length``), bytes outside every part must
    be erased, and an image cut short after its last written byte is read as if the rest of its
    flash were erased (the cut files are then padded with 0xFF)."""
    data = _read(path)
    chip = CHIPS[chip_name]
    extended = chip.image_chip_id is not None
    boot_offset = chip.bootloader_offset
    try:
        table = pt.decode_partition_table(_erased_tail(data, table_offset, pt.TABLE_SIZE))
    except FormatError as err:
        raise FirmwareError(f"no partition table at 0x{table_offset:x} ({err}); expected a merged factory image") from None
    try:
        boot = read_image(data, boot_offset, extended_header=extended)
    except FormatError as err:
        raise FirmwareError(f"no {chip.title} bootloader at 0x{boot_offset:x} ({err})") from None
    table_end = max([e.end for e in table.entries] + [0])
    header = data[boot_offset:boot_offset + 24]
    size = header_flash_size(chip_name, header[3], len(data), table_end)
    flash_bytes = max([len(data), table_end] + ([flash_size_bytes(size.size)] if size.size else []))
    notes = [size_taken_note(size.defect, size.size)] if size.defect else []
    if len(data) < flash_bytes:
        notes.append(short_image_note(len(data), flash_bytes))
    flash = _erased_tail(data, 0, flash_bytes)

    def cut(offset, rel, bound, parsed=0, patches=()):
        length = _kept_length(flash, offset, bound, parsed)
        return FirmwareFile(offset, rel, path, offset, length, tuple(patches))

    if boot.length > table_offset - boot_offset:
        raise FirmwareError(f"the bootloader at 0x{boot_offset:x} ({boot.length} bytes) runs into the partition "
                            f"table at 0x{table_offset:x}")
    # The combine script's ESP8266 size is not what the release's bootloader.bin holds: write the
    # real one (ESP8266 bootloaders carry no digest that the change would break).
    patches = [(3, chip.flash_sizes[size.size] | (header[3] & 0x0F))] if size.defect else []
    sector_end = min([table_offset + TABLE_SECTOR] + [e.offset for e in table.entries if e.offset > table_offset])
    files = [cut(boot_offset, "bootloader/bootloader.bin", table_offset, boot.length, patches),
             cut(table_offset, "partition_table/partition-table.bin", sector_end, pt.TABLE_SIZE)]
    apps = [e for e in table.entries if e.type == 0x00]
    first_app = apps[0] if apps else None   # factory or ota_0: where the released application sits
    used = {f.path for f in files}
    for entry in table.entries:
        if (entry.type, entry.subtype) == (pt.AT_CUSTOMIZE_TYPE, pt.AT_CUSTOMIZE_SUBTYPE):
            continue   # the board builds these
        rel = _PATH_BY_PARTITION.get((entry.type, entry.subtype))
        if rel == "ota_data_initial.bin":   # released as the whole partition, erased or not
            files.append(cut(entry.offset, rel, entry.end, entry.size))
            used.add(rel)
            continue
        parsed = 0
        if entry is first_app:
            rel = APP_PATH
            try:
                app = read_image(flash, entry.offset, extended_header=extended)
            except FormatError as err:
                raise FirmwareError(f"no application image in partition {entry.name} ({err})") from None
            if app.digest_ok is False:
                raise FirmwareError(f"the application in partition {entry.name} does not match its SHA-256 digest "
                                    "(an image cut short or altered)")
            parsed = app.length
            if parsed > entry.size:
                raise FirmwareError(f"the application in partition {entry.name} ({parsed} bytes) is larger than "
                                    f"the partition (0x{entry.size:x})")
        elif rel is None or rel in used:
            rel = _partition_path(entry, used)
        part = cut(entry.offset, rel, entry.end, parsed)
        if part.length:
            files.append(part)
            used.add(rel)
    _check_nothing_else(flash, [(boot_offset, table_offset), (table_offset, sector_end)]
                        + [(e.offset, e.end) for e in table.entries])
    at_table, customized = _image_customized(flash, table)
    return Firmware(path, "image", tuple(files), table, boot_offset, header, flash_bytes, (path,), at_table,
                    customized, tuple(notes))


def _erased_tail(data: bytes, offset: int, length: int) -> bytes:
    """``length`` bytes from ``offset``, erased (0xFF) past the end of ``data``."""
    chunk = data[offset:offset + length]
    return chunk + b"\xff" * (length - len(chunk))


def _kept_length(flash: bytes, offset: int, bound: int, parsed: int = 0) -> int:
    """How much of [offset, bound) a cut file keeps: everything up to the last byte that is not
    erased, rounded up to a 4-byte word as flash is written, and never less than the parsed
    image.  What an image holds past its parsed end (ESP8266_RTOS_SDK's digest, a signature
    block) is kept that way, and everything left out is erased."""
    written = len(flash[offset:bound].rstrip(b"\xff"))
    return max(parsed, min(bound - offset, (written + 3) & ~3))


def _partition_path(entry: pt.Entry, used) -> str:
    """A release path for a partition ESP-AT releases give no file of their own (data in nvs,
    a second application), unique in the release folder."""
    rel = re.sub(r"[^A-Za-z0-9_.-]", "_", entry.name) + ".bin"
    return rel if rel not in used else f"{rel[:-4]}-0x{entry.offset:x}.bin"


def _check_nothing_else(flash: bytes, spans: List[Tuple[int, int]]) -> None:
    """Bytes outside the bootloader, the partition table and every partition would not reach
    the new image: refuse rather than drop them."""
    pos = 0
    for lo, hi in sorted(spans) + [(len(flash), len(flash))]:
        if lo > pos and flash[pos:lo].strip(b"\xff"):
            first = pos + len(flash[pos:lo]) - len(flash[pos:lo].lstrip(b"\xff"))
            raise FirmwareError(f"0x{first:x} holds data outside the bootloader, the partition table and every "
                                f"partition (in 0x{pos:x}-0x{lo:x}): the new image would lose it; expected a factory "
                                "image merged from an ESP-AT release")
        pos = max(pos, hi)


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


def check_firmware(board, firmware: Firmware, where: str, formats=None, warnings: Optional[List[str]] = None,
                   where_file: Optional[str] = None) -> List[Problem]:
    """Cross-check a loaded board against its firmware.  ``where`` names the firmware setting,
    ``where_file`` the file that has it (a project's atfactory.toml; None: the command line or the
    board); ``warnings`` collects what does not stop the build (the firmware's own AT release)."""
    problems: List[Problem] = []
    origin = display_path(firmware.origin)
    _check_generation(board, firmware, where, formats, problems, warnings if warnings is not None else [])

    def fail(file, key, message, value=Problem._NO_VALUE):
        problems.append(Problem(file, key, message, value))

    at = [e for e in firmware.table.entries if e.type == pt.AT_CUSTOMIZE_TYPE and e.subtype == pt.AT_CUSTOMIZE_SUBTYPE]
    if not at:
        fail(where_file, where, "the firmware's partition table has no at_customize entry (type 0x40, subtype 0): "
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
        fail(where_file, where, f"the bootloader is at 0x{firmware.bootloader_offset:x}, but {chip.title} boots from "
                          f"0x{chip.bootloader_offset:x}: this firmware is for another chip", origin)
    else:
        header = decode_header(firmware.bootloader_header)
        if chip.image_chip_id is not None:
            chip_id = header.chip_id if header else None
            if chip_id != chip.image_chip_id:
                other = next((c.title for c in CHIPS.values() if c.image_chip_id == chip_id), f"chip id {chip_id}")
                fail(where_file, where, f"the firmware is for {other}, the board for {chip.title} (module.chip = "
                                  f"\"{chip.name}\")", origin)
        elif header is not None and header.wp_pin == ESP32_FAMILY_WP_PIN:
            fail(where_file, where, f"the bootloader has an ESP32-family image header; the board is for {chip.title}",
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
