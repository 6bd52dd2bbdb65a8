"""Just enough of the ESP application image format to cut images out of flash and check them.

    byte 0 magic E9 | 1 segment count | 2 flash mode | 3 flash size (high nibble) and frequency
    bytes 4-7 entry point
    ESP32-family chips: a 16-byte extended header follows (chip id at 12-13, hash flag at 23)
    segments: load address (u32), length (u32), data
    then 0 to 15 bytes of padding and a checksum byte (0xEF XOR every byte of segment data),
    ending on a 16-byte boundary,
    then a SHA-256 digest (32 bytes) when the hash flag is set.

ESP8266 images have no extended header and so no hash flag, yet the applications
ESP8266_RTOS_SDK v3 builds (esptool's "v3" ESP8266 image) end with the same digest: it is
recognised by its value.

The encoding of the header itself is esptool's business (the merge uses esptool); this module
only reads, and says which flash size byte 3 means (``header_flash_size``).
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import NamedTuple, Optional

from .chips import CHIPS, flash_size_bytes
from .errors import FormatError
from .numbers import format_size

MAGIC = 0xE9
MAX_SEGMENTS = 16
COMMON_HEADER = struct.Struct("<BBBBI")          # magic, segments, flash mode, size/freq, entry
# wp pin, 3 drive settings, chip id, min revision, min/max full revision, 4 reserved, hash flag
EXTENDED_HEADER = struct.Struct("<BBBBHBHH4sB")
SEGMENT_HEADER = struct.Struct("<II")            # load address, length
ESP32_FAMILY_WP_PIN = 0xEE   # byte 8 of every ESP32-family image header as esptool writes it
DIGEST_SIZE = 32                 # the SHA-256 digest after the checksum
CHECKSUM_SEED = 0xEF             # the checksum: this XOR every byte of segment data


class ImageHeader(NamedTuple):
    """The first 8 bytes of an image, and the extended header's fields where it has one."""
    segments: int
    flash_mode: int
    flash_size_freq: int         # byte 3: size in the high nibble, frequency in the low one
    wp_pin: Optional[int]        # byte 8: 0xEE on ESP32-family images
    chip_id: Optional[int]       # bytes 12-13 of an ESP32-family header


def decode_header(data: bytes, offset: int = 0) -> Optional[ImageHeader]:
    """The header at ``offset`` when the image magic is there (None otherwise); no other check."""
    if len(data) < offset + COMMON_HEADER.size or data[offset] != MAGIC:
        return None
    _, segments, mode, size_freq, _ = COMMON_HEADER.unpack_from(data, offset)
    wp_pin = chip_id = None
    if len(data) >= offset + COMMON_HEADER.size + EXTENDED_HEADER.size:
        fields = EXTENDED_HEADER.unpack_from(data, offset + COMMON_HEADER.size)
        wp_pin, chip_id = fields[0], fields[4]
    return ImageHeader(segments, mode, size_freq, wp_pin, chip_id)


@dataclass(frozen=True)
class ImageInfo:
    length: int                  # bytes from the start of the image to its end (digest included)
    chip_id: Optional[int]       # None for ESP8266 images (no extended header)
    hash_appended: bool          # the hash flag; on ESP8266: a matching digest follows the checksum
    digest_ok: Optional[bool] = None   # does the digest match the image? None: no digest


def read_image(data: bytes, offset: int = 0, extended_header: bool = True) -> ImageInfo:
    """Parse the image at ``offset``.  ``extended_header`` is False for ESP8266 images."""
    end_of_data = len(data)
    if offset + 8 > end_of_data:
        raise FormatError("image: shorter than its 8-byte header", offset=offset)
    magic, segments = data[offset], data[offset + 1]
    if magic != MAGIC:
        raise FormatError(f"image: magic 0x{magic:02x}, expected 0x{MAGIC:02x} (an ESP application image)", offset=offset)
    if not 0 < segments <= MAX_SEGMENTS:
        raise FormatError(f"image: {segments} segments, expected 1 to {MAX_SEGMENTS}", offset=offset + 1)
    pos = offset + 8
    chip_id = None
    hash_appended = False
    if extended_header:
        if pos + 16 > end_of_data:
            raise FormatError("image: extended header cut short", offset=pos)
        fields = EXTENDED_HEADER.unpack_from(data, pos)
        chip_id, hash_appended = fields[4], fields[9] == 1
        pos += EXTENDED_HEADER.size
    checksum = CHECKSUM_SEED
    for n in range(segments):
        if pos + 8 > end_of_data:
            raise FormatError(f"image: segment {n} header cut short", offset=pos)
        _, length = SEGMENT_HEADER.unpack_from(data, pos)
        pos += SEGMENT_HEADER.size
        if pos + length > end_of_data:
            raise FormatError(f"image: segment {n} declares {length} bytes, only {end_of_data - pos} follow", offset=pos - 4)
        checksum ^= xor_of_bytes(data[pos:pos + length])
        pos += length
    pos += 16 - ((pos - offset) % 16)   # padding, then the checksum byte ends the 16-byte block
    if pos > end_of_data:
        raise FormatError("image: checksum cut short", offset=end_of_data)
    if data[pos - 1] != checksum:
        raise FormatError(f"image: checksum 0x{data[pos - 1]:02x}, but the segments give 0x{checksum:02x} (an image "
                          "cut short or altered)", offset=pos - 1)
    digest = data[pos:pos + DIGEST_SIZE]
    digest_ok = None
    if hash_appended:
        digest_ok = digest == hashlib.sha256(data[offset:pos]).digest()
    elif not extended_header and len(digest) == DIGEST_SIZE and digest == hashlib.sha256(data[offset:pos]).digest():
        hash_appended = digest_ok = True
    if hash_appended:
        pos += DIGEST_SIZE
    if pos > end_of_data:
        raise FormatError("image: digest cut short", offset=end_of_data)
    return ImageInfo(pos - offset, chip_id, hash_appended, digest_ok)


def xor_of_bytes(data: bytes) -> int:
    """Every byte XORed together: the image checksum without a loop over each byte (the halves of
    one big integer folded onto each other)."""
    n = len(data)
    x = int.from_bytes(data, "little")
    while n > 1:
        half = (n + 1) // 2
        x = (x & ((1 << (8 * half)) - 1)) ^ (x >> (8 * half))
        n = half
    return x & 0xFF


# --- the flash size in byte 3 ------------------------------------------------------------------

class HeaderFlashSize(NamedTuple):
    size: Optional[str]          # the flash the image is for ("2MB"); None: byte 3 names no size
    header: Optional[str]        # what byte 3 says in the chip's own encoding
    defect: Optional[str]        # why the two differ: byte 3 written with the ESP32 table


def header_flash_size(chip_name: str, byte3: int, image_length: int, table_end: int) -> HeaderFlashSize:
    """The flash size an image's bootloader header stands for.

    Espressif's combine script writes every chip's size with the ESP32 table (FORMATS.md §5), so
    an ESP8266 image of 2MB says 256KB.  Where the ESP8266 reading is too small for the image or
    for its partition table and the ESP32 reading holds both, the ESP32 reading is the size."""
    chip = CHIPS[chip_name]
    header = {v: k for k, v in chip.flash_sizes.items()}.get(byte3 & 0xF0)
    reach = max(image_length, table_end)
    if chip_name != "esp8266" or (header is not None and flash_size_bytes(header) >= reach):
        return HeaderFlashSize(header, header, None)
    esp32 = {v: k for k, v in CHIPS["esp32"].flash_sizes.items()}.get(byte3 & 0xF0)
    if esp32 not in chip.flash_sizes or flash_size_bytes(esp32) < reach:
        return HeaderFlashSize(header, header, None)
    evidence = (f"the image is {image_length} bytes" if header is None or image_length > flash_size_bytes(header)
                else f"its partitions reach 0x{table_end:x}")
    return HeaderFlashSize(esp32, header, f"flash size {header} ({chip.title} encoding, byte 3 = 0x{byte3:02x}) "
                                          f"but {evidence}: the size was encoded with the ESP32 table ({esp32}), "
                                          "the defect of Espressif's combine script")


def size_taken_note(defect: str, size: str) -> str:
    """The note for an image whose byte 3 has the combine script's defect (``HeaderFlashSize``)."""
    return f"bootloader header: {defect}; taken as {size}"


def short_image_note(image_length: int, flash_bytes: int) -> str:
    """The note for an image cut after its last written byte."""
    return (f"the image ends at 0x{image_length:x}, before the end of its {format_size(flash_bytes)} flash: "
            "the rest is taken as erased")
