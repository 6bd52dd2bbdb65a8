"""What each supported chip offers: GPIOs, UARTs, flash options, image offsets, pin rules.

The flash option tables are esptool's own (``esptool.targets``); a test keeps them equal, so
that board checks accept exactly what the factory merge will later encode.  They are copied
here so that reading a board does not import esptool and pyserial on every ``scons`` run.
"""
from __future__ import annotations

import dataclasses
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
class ModulePins:
    """GPIOs that only some modules of a chip wire to memory: a board whose module.name holds one
    of ``markers`` (case-insensitive) cannot use them."""
    markers: Tuple[str, ...]         # "WROVER"
    pins: Mapping[int, str]          # GPIO -> its signal there ("" when the sources do not name it)
    wired_to: str                    # "the PSRAM of ESP32-WROVER modules"

    def matches(self, module_name: Optional[str]) -> bool:
        name = (module_name or "").upper()
        return any(m in name for m in self.markers)


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
    # Pin rules (pins.py).  flash_pins: GPIO -> the SPI0/1 (flash, and on some chips PSRAM) signal
    # it carries on every module; module_pins: what only some modules wire; strapping_pins: GPIO ->
    # what its level at reset selects; uart0_pin_sets: (TX, RX, CTS, RTS) sets a chip without a
    # GPIO matrix for UART0 allows (empty: any pins); at_uart_ports: the UARTs ESP-AT can run AT on
    # (None: every UART of the chip).
    flash_pins: Mapping[int, str] = field(default_factory=dict)
    module_pins: Tuple[ModulePins, ...] = ()
    strapping_pins: Mapping[int, str] = field(default_factory=dict)
    uart0_pin_sets: Tuple[Tuple[int, int, int, int], ...] = ()
    at_uart_ports: Optional[Tuple[int, ...]] = None

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


# --- pin rules --------------------------------------------------------------------------------
# Sources, per chip: ESP-IDF's GPIO summaries (docs/en/api-reference/peripherals/gpio/<chip>.inc,
# the "SPI0/1" and "Strapping pin" notes), ESP-IDF's components/soc/<chip>/include/soc/spi_pins.h
# (which GPIO carries which SPI0/1 signal), esptool's "Boot Mode Selection" guide for each chip
# (docs/en/advanced-topics/boot-mode-selection.rst) and the chips' datasheets, section "Strapping
# Pins".  Signals are named as the datasheets name the pins spi_pins.h places (its HD, WP, CS0,
# CLK, MOSI, MISO are SPIHD, SPIWP, SPICS0, SPICLK, SPID, SPIQ); "SPI0/1" where only the GPIO
# summary lists the pin; ESP8266's as its ESP8266EX datasheet's pin list.

_SPI_C2_C3 = {12: "SPIHD", 13: "SPIWP", 14: "SPICS0", 15: "SPICLK", 16: "SPID", 17: "SPIQ"}
_BOOT_8_9 = {   # ESP32-C2, C3, C6, C61: esptool's boot-mode guide (GPIO9 low: download; GPIO8 high with it)
    8: "the boot mode, with GPIO9, and whether the ROM prints boot messages",
    9: "the boot mode (low: serial download)",
}
_PIN_RULES = {
    # ESP32: gpio/esp32.inc: GPIO6-11 and 16-17 "usually connected to the SPI flash and PSRAM
    # integrated on the module"; spi_pins.h: GPIO6-11 the flash on every module, and for the D2WD
    # and PICO-D4 chips CS on GPIO16, MISO on GPIO17.  ESP-IDF's quad PSRAM driver
    # (components/esp_psram/esp32/esp_psram_impl_quad.c, CONFIG_D0WD_PSRAM_CS_IO/CLK_IO): CS on
    # GPIO16 and CLK on GPIO17 on ESP32-WROVER modules.  ESP32-MINI-1 holds an ESP32-U4WDH,
    # whose in-package flash is wired as the D2WD's (ESP32-MINI-1 datasheet, ESP32 Series
    # Datasheet pin description); Espressif's own MINI-1, D2WD, PICO-D4 and WROVER-32 rows of
    # factory_param_data.csv keep UART off GPIO16/17, its WROOM-32 and SOLO-1 rows use them.
    # Strapping pins: ESP32 Series Datasheet, "Strapping Pins"; esptool's ESP32 boot-mode guide.
    "esp32": dict(
        flash_pins={6: "SPICLK", 7: "SPIQ", 8: "SPID", 9: "SPIHD", 10: "SPIWP", 11: "SPICS0"},
        module_pins=(
            ModulePins(("WROVER",), {16: "PSRAM CS", 17: "PSRAM CLK"}, "the PSRAM of ESP32-WROVER modules"),
            ModulePins(("D2WD", "PICO-D4", "U4WDH", "MINI-1"), {16: "flash CS", 17: "flash MISO"},
                       "the in-package flash of ESP32-D2WD, ESP32-PICO-D4 and ESP32-U4WDH chips, as in ESP32-MINI-1"),
        ),
        strapping_pins={
            0: "the boot mode (low: serial download)",
            2: "the boot mode, with GPIO0",
            5: "the SDIO slave timing, with MTDO",
            12: "the flash voltage, VDD_SDIO 3.3 V or 1.8 V (MTDI)",
            15: "whether the ROM prints boot messages, and the SDIO slave timing (MTDO)",
        },
    ),
    # ESP32-C2 (ESP8684): gpio/esp32c2.inc: GPIO12-17 SPI0/1, and GPIO11-17 dedicated to the
    # in-package flash of the chips that have one (every ESP8684); strapping GPIO8 and GPIO9.
    "esp32c2": dict(
        flash_pins={11: "in-package flash", **_SPI_C2_C3},
        strapping_pins=_BOOT_8_9,
    ),
    # ESP32-C3: gpio/esp32c3.inc: GPIO12-17 "SPI flash and PSRAM"; strapping GPIO2, GPIO8, GPIO9.
    "esp32c3": dict(
        flash_pins=_SPI_C2_C3,
        strapping_pins={2: "the boot mode, with GPIO8 and GPIO9", **_BOOT_8_9},
    ),
    # ESP32-C5: gpio/esp32c5.inc (the MP chip, GPIO0-28): GPIO16-22 "SPI flash and PSRAM";
    # strapping GPIO2, GPIO7, GPIO25, GPIO27, GPIO28.  esptool's ESP32-C5 boot-mode guide:
    # GPIO28 low enters download, GPIO27 must then be high.  What GPIO2, 7 and 25 select is in the
    # ESP32-C5 datasheet only (not among the sources here): the warning says so.
    "esp32c5": dict(
        flash_pins={16: "SPICS0", 17: "SPIQ", 18: "SPIWP", 19: "SPI0/1", 20: "SPIHD", 21: "SPICLK", 22: "SPID"},
        strapping_pins={
            2: "a boot setting (MTMS; see the ESP32-C5 datasheet, Strapping Pins)",
            7: "a boot setting (see the ESP32-C5 datasheet, Strapping Pins)",
            25: "a boot setting (see the ESP32-C5 datasheet, Strapping Pins)",
            27: "the boot mode, with GPIO28",
            28: "the boot mode (low: serial download)",
        },
    ),
    # ESP32-C6: gpio/esp32c6.inc: GPIO24-30 SPI flash (spi_pins.h names all but GPIO27);
    # strapping MTMS (GPIO4), MTDI (GPIO5), GPIO8, GPIO9, GPIO15 (ESP32-C6 datasheet: SDIO clock
    # edges, boot mode, ROM messages, JTAG signal source).
    "esp32c6": dict(
        flash_pins={24: "SPICS0", 25: "SPIQ", 26: "SPIWP", 27: "SPI0/1", 28: "SPIHD", 29: "SPICLK", 30: "SPID"},
        strapping_pins={
            4: "the SDIO slave's sampling and driving clock edges, with MTDI (MTMS)",
            5: "the SDIO slave's sampling and driving clock edges, with MTMS (MTDI)",
            **_BOOT_8_9,
            15: "the JTAG signal source (USB-Serial-JTAG or the JTAG pins)",
        },
    ),
    # ESP32-C61: gpio/esp32c61.inc: GPIO14-17 and 19-21 "SPI flash and PSRAM" (spi_pins.h: CS1,
    # the PSRAM's chip select, on GPIO14); strapping pins only by reference to the datasheet:
    # the boot-mode pair GPIO8/GPIO9 of esptool's guide.
    "esp32c61": dict(
        flash_pins={14: "SPICS1, PSRAM CS", 15: "SPICS0", 16: "SPIQ", 17: "SPIWP", 19: "SPIHD", 20: "SPICLK",
                    21: "SPID"},
        strapping_pins=_BOOT_8_9,
    ),
    # ESP32-S2: gpio/esp32s2.inc: GPIO26-32 "SPI flash and PSRAM"; spi_pins.h: GPIO27-32 the
    # flash, GPIO26 CS1, which only modules with PSRAM (ESP32-S2-WROVER, the N4R2 variants) wire;
    # strapping GPIO0, GPIO45, GPIO46 (ESP32-S2 datasheet: boot mode, VDD_SPI voltage, ROM messages).
    "esp32s2": dict(
        flash_pins={27: "SPIHD", 28: "SPIWP", 29: "SPICS0", 30: "SPICLK", 31: "SPIQ", 32: "SPID"},
        module_pins=(ModulePins(("WROVER", "N4R2"), {26: "SPICS1, PSRAM CS"},
                                "the PSRAM of ESP32-S2 modules that have one, WROVER and the N4R2 variants"),),
        strapping_pins={
            0: "the boot mode (low: download)",
            45: "the flash voltage, VDD_SPI 3.3 V or 1.8 V",
            46: "the boot mode, with GPIO0, and whether the ROM prints boot messages",
        },
    ),
    # ESP8266: the ESP8266EX datasheet's pin list: GPIO6-11 are the SDIO/flash pins every module
    # wires to its flash.  esptool's ESP8266 boot-mode guide: GPIO15 low, GPIO2 high, GPIO0 low
    # for download.  UART0 has no GPIO matrix: TX/RX on GPIO1/3 with CTS/RTS on GPIO13/15, or,
    # swapped (uart_enable_swap), TX/RX on 15/13 with CTS/RTS on 3/1 (Espressif's ESP-FAQ,
    # peripherals/uart); UART1 has no RX pin.  ESP-AT's at_uart_task.c (at_uart_init, ESP8266
    # branch) asserts uart_port 0 and exactly these pins, and falls back to 15/13 when TX or RX is
    # 0xFF.
    "esp8266": dict(
        flash_pins={6: "SD_CLK", 7: "SD_DATA_0", 8: "SD_DATA_1", 9: "SD_DATA_2", 10: "SD_DATA_3", 11: "SD_CMD"},
        strapping_pins={
            0: "the boot mode (low: serial download)",
            2: "the boot mode (it must be high)",
            15: "the boot mode (MTDO; it must be low to boot from flash)",
        },
        uart0_pin_sets=((1, 3, 13, 15), (15, 13, 3, 1)),
        at_uart_ports=(0,),
    ),
}


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
CHIPS = {name: dataclasses.replace(chip, **_PIN_RULES.get(name, {})) for name, chip in sorted(CHIPS.items())}
# (sorted: messages list them in this order)
# Every offset a main partition table can have, the common one first (read-back looks in turn).
TABLE_OFFSETS = tuple(dict.fromkeys([0x8000] + [o for c in CHIPS.values() for o in c.table_offsets.values()]))
