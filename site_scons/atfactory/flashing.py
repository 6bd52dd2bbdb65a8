"""``atfactory flash``: a release folder or a factory image written to a device by esptool.

A release folder (or a device's folder of a devices batch, whose download.config names the
board's shared files as ``../../...``) is flashed as its download.config says: every file at its
offset, with its flash mode, frequency and size.  A factory image is flashed whole at offset 0,
with the flash settings its bootloader header gives as the read-back decodes them (an ESP8266
header whose size was written with the ESP32 table stands for the size the image needs).  The
chip is the bootloader's, or the one an atfactory release folder's manifest.json names.

Everything is checked before esptool runs: every file exists, is a regular file and, symbolic
links resolved, stays inside the release folder; the files fit the flash and do not overlap; the
settings are ones esptool and the chip accept.  The flashing itself is esptool's
(``esptool.main`` with the argument list ``esptool_args`` makes, which ``--dry-run`` prints).
"""
from __future__ import annotations

import os
import shlex
from typing import List, NamedTuple, Optional, Sequence, Tuple

from .chips import CHIPS, FLASH_MODES, flash_size_bytes
from .errors import AtFactoryError, ReadError, ReleaseError, display_path
from .formats import FormatRegistry

DEFAULT_BAUD = 460800   # idf.py flash's default; esptool connects at 115200 and then switches


class FlashPlan(NamedTuple):
    chip: str
    flash_mode: str
    flash_freq: str
    flash_size: str
    entries: Tuple[Tuple[int, str], ...]   # (offset, file as esptool is given it)


def plan_flash(path: str, formats: Optional[FormatRegistry] = None) -> FlashPlan:
    """What flashing ``path`` (a release folder or a factory image) writes.  Raises
    AtFactoryError naming the file and what is wrong; nothing has been run then."""
    if os.path.isdir(path):
        return _plan_folder(path, formats)
    return _plan_image(path, formats)


def _plan_folder(folder: str, formats) -> FlashPlan:
    from .readback import read_release_folder
    from .release import CONFIG, read_release, release_root

    root = release_root(folder)
    try:
        release = read_release(folder, confined=True, root=root)
    except ReleaseError as err:
        raise ReadError(f"{folder}: {err}") from None
    _, doc = read_release_folder(folder, formats)
    chip = _folder_chip(folder, doc)
    config = release.config
    shown = display_path(os.path.join(folder, CONFIG))
    _check_settings(chip, shown, config.flash_mode, config.flash_freq, config.flash_size)
    flash_bytes = flash_size_bytes(config.flash_size)
    entries = []
    for f in sorted(release.files):
        end = f.offset + os.path.getsize(f.full)
        if end > flash_bytes:
            raise ReadError(f"{shown}: 0x{f.offset:x} {f.path} ends at 0x{end:x}, past the {config.flash_size} "
                            f"flash (--flash_size {config.flash_size}); accepted: files that fit the flash")
        entries.append((f.offset, os.path.normpath(os.path.join(folder, f.path))))
    if not entries:
        raise ReadError(f"{shown}: lists no file to flash")
    return FlashPlan(chip, config.flash_mode, config.flash_freq, config.flash_size, tuple(entries))


def _folder_chip(folder: str, doc: dict) -> str:
    """The bootloader's chip, or the manifest's where there is no bootloader; both must agree."""
    chip, listed = doc.get("chip"), doc.get("manifest_chip")
    if chip and listed and chip != listed:
        raise ReadError(f"{folder}: the bootloader is for {CHIPS[chip].title}, manifest.json names "
                        f"{CHIPS[listed].title}; accepted: a release folder whose files are for one chip")
    if chip or listed:
        return chip or listed
    if doc.get("image_chip_id") is not None:
        raise ReadError(f"{folder}: the bootloader is for a chip atfactory does not know (image chip id "
                        f"0x{doc['image_chip_id']:x}); accepted: a release for {_chip_titles()}")
    raise ReadError(f"{folder}: cannot tell the chip: no bootloader among the files download.config lists and no "
                    "manifest.json naming one; accepted: a release folder atfactory built, or one with its bootloader")


def _plan_image(path: str, formats) -> FlashPlan:
    from .readback import decode_flash, detect_kind, read_file

    data = read_file(path)
    if detect_kind(data, path, formats) != "image":
        raise ReadError(f"{path}: not a factory image (no partition table at 0x8000 or the chip's offset); "
                        "accepted: a factory image, or a release folder with its download.config")
    doc = decode_flash(data, source=path, formats=formats)
    chip = doc.get("chip")
    if chip is None:
        what = (f"for a chip atfactory does not know (image chip id 0x{doc['image_chip_id']:x})"
                if doc.get("image_chip_id") is not None else "missing or not an ESP image")
        raise ReadError(f"{path}: its bootloader is {what}; accepted: an image for {_chip_titles()}")
    flash = doc["flash"]
    _check_settings(chip, f"{path}: the bootloader header", flash["mode"], flash["freq"], flash["size"])
    if len(data) > flash_size_bytes(flash["size"]):
        raise ReadError(f"{path}: {len(data)} bytes, larger than the {flash['size']} flash its bootloader header "
                        "gives; accepted: an image no larger than its flash")
    return FlashPlan(chip, flash["mode"], flash["freq"], flash["size"], ((0, path),))


def _chip_titles() -> str:
    return ", ".join(c.title for c in CHIPS.values())


def _check_settings(chip_name: str, where: str, mode: str, freq: str, size: str) -> None:
    chip = CHIPS[chip_name]
    for key, value, accepted in (("flash_mode", mode, FLASH_MODES), ("flash_freq", freq, chip.flash_freqs),
                                 ("flash_size", size, chip.flash_sizes)):
        if value not in accepted:
            raise ReadError(f"{where}: {key} {value!r} is no {chip.title} setting; accepted: " + ", ".join(accepted))


def esptool_args(plan: FlashPlan, port: str, baud: int = DEFAULT_BAUD, erase: bool = False) -> List[str]:
    """The argument list of ``esptool`` (esptool 5's command line) that writes ``plan``."""
    args = ["--chip", plan.chip, "--port", port, "--baud", str(baud), "write-flash",
            "--flash-mode", plan.flash_mode, "--flash-freq", plan.flash_freq, "--flash-size", plan.flash_size]
    if erase:
        args.append("--erase-all")
    for offset, path in plan.entries:
        args += [f"0x{offset:x}", path]
    return args


def command_line(args: Sequence[str]) -> str:
    """The shell command line that runs esptool with ``args``, each word quoted where it must be."""
    return shlex.join(["esptool"] + list(args))


def run_esptool(args: Sequence[str]) -> None:
    """Run esptool in this process; its failures (no device on the port, a chip that is not the
    image's, a broken connection) become one AtFactoryError."""
    import esptool
    import serial

    try:
        esptool.main(list(args))
    except esptool.FatalError as err:
        raise AtFactoryError(f"esptool: {_first_line(str(err))}") from None
    except serial.SerialException as err:
        raise AtFactoryError(f"esptool: serial port {args[args.index('--port') + 1]}: {_first_line(str(err))}") from None
    except SystemExit as exc:   # esptool's own argument parser refused something
        raise AtFactoryError(f"esptool exited with status {exc.code}") from None


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), text)
