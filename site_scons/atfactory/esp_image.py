"""Just enough of the ESP application image format to cut images out of flash and check them.

    byte 0 magic E9 | 1 segment count | 2 flash mode | 3 flash size (high nibble) and frequency
    bytes 4-7 entry point
    ESP32-family chips: a 16-byte extended header follows (chip id at 12-13, hash flag at 23)
    segments: load address (u32), length (u32), data
    then 0 to 15 bytes of padding and a checksum byte, ending on a 16-byte boundary,
    then a SHA-256 digest (32 bytes) when the hash flag is set.

The encoding of the header itself is esptool's business (the merge uses esptool); this module
only reads.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple, Optional

from .errors import FormatError

MAGIC = 0xE9
MAX_SEGMENTS = 16
COMMON_HEADER = struct.Struct("<BBBBI")          # magic, segments, flash mode, size/freq, entry
# wp pin, 3 drive settings, chip id, min revision, min/max full revision, 4 reserved, hash flag
EXTENDED_HEADER = struct.Struct("<BBBBHBHH4sB")
SEGMENT_HEADER = struct.Struct("<II")            # load address, length
ESP32_FAMILY_WP_PIN = 0xEE   # byte 8 of every ESP32-family image header as esptool writes it


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
    hash_appended: bool


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
    for n in range(segments):
        if pos + 8 > end_of_data:
            raise FormatError(f"image: segment {n} header cut short", offset=pos)
        _, length = SEGMENT_HEADER.unpack_from(data, pos)
        pos += SEGMENT_HEADER.size
        if pos + length > end_of_data:
            raise FormatError(f"image: segment {n} declares {length} bytes, only {end_of_data - pos} follow", offset=pos - 4)
        pos += length
    pos += 16 - ((pos - offset) % 16)   # padding, then the checksum byte ends the 16-byte block
    if hash_appended:
        pos += 32
    if pos > end_of_data:
        raise FormatError("image: checksum or digest cut short", offset=end_of_data)
    return ImageInfo(pos - offset, chip_id, hash_appended)
