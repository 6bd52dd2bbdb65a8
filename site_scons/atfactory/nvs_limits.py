"""The limits of ESP-IDF NVS images that board checks need, without the codec (``atfactory.nvs``).

A board's check reads these for every v3.1+ board; the codec (its page and item classes) is
imported only by what encodes or decodes an image.
"""
import struct

PAGE_SIZE, ENTRY_SIZE, ENTRIES_PER_PAGE, FIRST_ENTRY = 4096, 32, 126, 64
MIN_SIZE = 0x3000
MAX_NAME_BYTES = 15
# A string must satisfy used + span < 126 on its page, so even a fresh page takes 124 data entries.
MAX_STRING_CHARS = (ENTRIES_PER_PAGE - 2) * ENTRY_SIZE - 1     # 3967 bytes + NUL

FAMILY_A, FAMILY_B = "A", "B"

INTEGER_FORMATS = {"u8": (0x01, "<B"), "i8": (0x11, "<b"), "u16": (0x02, "<H"), "i16": (0x12, "<h"),
                   "u32": (0x04, "<I"), "i32": (0x14, "<i"), "u64": (0x08, "<Q"), "i64": (0x18, "<q")}


def _range(fmt: str):
    bits = 8 * struct.calcsize(fmt)
    low = -(1 << (bits - 1)) if fmt[1].islower() else 0
    return low, low + (1 << bits) - 1


INTEGER_RANGES = {name: _range(fmt) for name, (_code, fmt) in INTEGER_FORMATS.items()}   # name -> (lowest, highest)
