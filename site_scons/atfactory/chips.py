"""What each supported chip offers: GPIOs, UARTs, flash options, image offsets.

The flash option tables are esptool's own (``esptool.targets``); a test keeps them equal, so
that board checks accept exactly what the factory merge will later encode.  They are copied
here so that reading a board does not import esptool and pyserial on every ``scons`` run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import FrozenSet, Iterable, List, Mapping, Optional, Tuple


def _ranges(*spans: Tuple[int, int]) -> FrozenSet[int]:
    return frozenset(n for lo, hi in spans for n in range(lo, hi + 1))


_ESP32_FAMILY_SIZES = {
    "1MB": 0x00, "2MB": 0x10, "4MB": 0x20, "8MB": 0x30,
    "16MB": 0x40, "32MB": 0x50, "64MB": 0x60, "128MB": 0x70,
}
_ESP8266_SIZES = {
    "512KB": 0x00, "256KB": 0x10, "1MB": 0x20, "2MB": 0x30, "4MB": 0x40,
    "2MB-c1": 0x50, "4MB-c1": 0x60, "8MB": 0x80, "16MB": 0x90,
}
_FREQS = {"80m": 0xF, "40m": 0x0, "26m": 0x1, "20m": 0x2}
_C2_FREQS = {"60m": 0xF, "30m": 0x0, "20m": 0x1, "15m": 0x2}          # esptool's ESP32-C2 table (26 MHz XTAL)
_C5_C61_FREQS = {"80m": 0xF, "40m": 0x0, "20m": 0x2}
_C6_FREQS = {"80m": 0x0, "40m": 0x0, "20m": 0x2}                       # esptool: 80m is nibble 0 on ESP32-C6
# The ESP-AT releases of each chip, from Espressif's tags: a tag named for chips (v2.0.0.0_esp32,
# v2.1.0.0_esp32s2, ...) is a release of those; the v2.4 and v3.0 tags cover the chips whose
# module_config folders they hold (ESP32 and ESP32-C3; v3.0 ESP32-C2 too).  v2.2.0.0_esp32 also
# built ESP32-S2.
_MFG_NVS = ("3.1", "3.2", "3.3", "3.4", "4.0", "4.1", "5.0")
_ESP32_RELEASES = ("2.0", "2.1", "2.2", "2.4.0", "2.4", "3.0") + _MFG_NVS
_ESP32C3_RELEASES = ("2.2", "2.3", "2.4.0", "2.4", "3.0") + _MFG_NVS
FLASH_MODES = {"qio": 0, "qout": 1, "dio": 2, "dout": 3}


@dataclass(frozen=True)
class Chip:
    name: str                        # as in board files and esptool: "esp32"
    title: str                       # as people write it: "ESP32-C3"
    gpios: FrozenSet[int]
    input_only_gpios: FrozenSet[int]
    uart_count: int
    tx_power_range: Tuple[int, int]  # factory_param.tx_max_power, 0.25 dBm units
    flash_sizes: Mapping[str, int]   # name -> header nibble (byte 3, high half)
    flash_freqs: Mapping[str, int]   # name -> header nibble (byte 3, low half)
    bootloader_offset: int
    image_chip_id: int | None        # chip id in the extended image header; None: no such field
    at_versions: Tuple[str, ...]     # the ESP-AT releases that exist for it (at_releases.AT_RELEASES)
    # the main partition table's offset where a release moved it (ESP-IDF 5.5 builds of v5.0 for
    # C5 and C61 put it at 0xC000: CONFIG_PARTITION_TABLE_OFFSET); 0x8000 everywhere else
    table_offsets: Mapping[str, int] = field(default_factory=dict)

    def table_offset(self, at_version: Optional[str] = None) -> int:
        return self.table_offsets.get(at_version, 0x8000) if at_version else 0x8000

    @property
    def platform(self) -> str:
        return "PLATFORM_" + self.name.upper()

    def describe_gpios(self) -> str:
        """The chip's GPIOs as compact ranges: "0-19, 21-23, 25-27, 32-39"."""
        return describe_ranges(sorted(self.gpios))


def describe_choices(names: Iterable[str]) -> str:
    """"80m, 40m, 26m or 20m"."""
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def all_flash_freqs() -> List[str]:
    """Every chip's flash frequencies, each once, in table order."""
    return list(dict.fromkeys(f for chip in CHIPS.values() for f in chip.flash_freqs))


def describe_ranges(numbers) -> str:
    spans = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in spans)


def flash_size_bytes(name: str) -> int:
    """"4MB" -> 4194304, "512KB" -> 524288, "2MB-c1" -> 2097152."""
    base = name.split("-")[0]
    if base.endswith("KB"):
        return int(base[:-2]) * 1024
    return int(base[:-2]) * 1024 * 1024


CHIPS = {
    "esp32": Chip(
        "esp32", "ESP32",
        gpios=_ranges((0, 19), (21, 23), (25, 27), (32, 39)),
        input_only_gpios=_ranges((34, 39)),
        uart_count=3, tx_power_range=(40, 84),
        flash_sizes=_ESP32_FAMILY_SIZES, flash_freqs=_FREQS,
        bootloader_offset=0x1000, image_chip_id=0, at_versions=_ESP32_RELEASES,
    ),
    "esp32c3": Chip(
        "esp32c3", "ESP32-C3",
        gpios=_ranges((0, 21)), input_only_gpios=frozenset(),
        uart_count=2, tx_power_range=(40, 84),
        flash_sizes=_ESP32_FAMILY_SIZES, flash_freqs=_FREQS,
        bootloader_offset=0x0, image_chip_id=5, at_versions=_ESP32C3_RELEASES,
    ),
    "esp32s2": Chip(
        "esp32s2", "ESP32-S2",
        gpios=_ranges((0, 21), (26, 46)), input_only_gpios=frozenset({46}),
        uart_count=2, tx_power_range=(40, 84),
        flash_sizes=_ESP32_FAMILY_SIZES, flash_freqs=_FREQS,
        bootloader_offset=0x1000, image_chip_id=2, at_versions=("2.1", "2.2", "3.4", "4.1", "5.0"),
    ),
    "esp8266": Chip(
        "esp8266", "ESP8266",
        gpios=_ranges((0, 16)), input_only_gpios=frozenset(),
        uart_count=2, tx_power_range=(40, 82),
        flash_sizes=_ESP8266_SIZES, flash_freqs=_FREQS,
        bootloader_offset=0x0, image_chip_id=None, at_versions=("2.0", "2.1", "2.2", "2.3"),
    ),
    # The chips ESP-AT supports from v3 on.  GPIO ranges as ESP-IDF's GPIO summaries state them
    # (docs.espressif.com, esp-idf api-reference/peripherals/gpio for each target); flash tables,
    # bootloader offsets and image chip ids are esptool's (a test keeps them equal).
    "esp32c2": Chip(
        "esp32c2", "ESP32-C2",
        gpios=_ranges((0, 20)), input_only_gpios=frozenset(),
        uart_count=2, tx_power_range=(40, 84),
        flash_sizes=_ESP32_FAMILY_SIZES, flash_freqs=_C2_FREQS,
        bootloader_offset=0x0, image_chip_id=12, at_versions=("3.0",) + _MFG_NVS,
    ),
    "esp32c5": Chip(
        "esp32c5", "ESP32-C5",
        gpios=_ranges((0, 28)), input_only_gpios=frozenset(),
        uart_count=2, tx_power_range=(40, 84),
        flash_sizes=_ESP32_FAMILY_SIZES, flash_freqs=_C5_C61_FREQS,
        bootloader_offset=0x2000, image_chip_id=23, at_versions=("4.1", "5.0"),
        table_offsets=MappingProxyType({"5.0": 0xC000}),
    ),
    "esp32c6": Chip(
        "esp32c6", "ESP32-C6",
        gpios=_ranges((0, 30)), input_only_gpios=frozenset(),
        uart_count=2, tx_power_range=(40, 84),
        flash_sizes=_ESP32_FAMILY_SIZES, flash_freqs=_C6_FREQS,
        bootloader_offset=0x0, image_chip_id=13, at_versions=("3.2", "3.3", "3.4", "4.0", "4.1", "5.0"),
    ),
    "esp32c61": Chip(
        "esp32c61", "ESP32-C61",
        gpios=_ranges((0, 29)), input_only_gpios=frozenset(),
        uart_count=2, tx_power_range=(40, 84),
        flash_sizes=_ESP32_FAMILY_SIZES, flash_freqs=_C5_C61_FREQS,
        bootloader_offset=0x0, image_chip_id=20, at_versions=("5.0",),
        table_offsets=MappingProxyType({"5.0": 0xC000}),
    ),
}
CHIPS = dict(sorted(CHIPS.items()))   # messages list them in this order
# Every offset a main partition table can have, the common one first (read-back looks in turn).
TABLE_OFFSETS = tuple(dict.fromkeys([0x8000] + [o for c in CHIPS.values() for o in c.table_offsets.values()]))
