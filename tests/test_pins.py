"""The pin rules real hardware has (atfactory.pins, data in atfactory.chips): GPIOs wired to a
module's flash or PSRAM are refused, ESP8266's UART0 takes one of its two pin sets, strapping
pins build with a warning; the same rules for a devices CSV row."""
from __future__ import annotations

from pathlib import Path

import pytest

from atfactory.board import load_board
from atfactory.chips import CHIPS
from atfactory.errors import BoardError
from helpers import BOARD_NAME, board, board_from_text, extending, only_problem, write

UART = ("uart_tx_pin", "uart_rx_pin", "uart_cts_pin", "uart_rts_pin")
ESP8266_SETS = "accepted: TX 1, RX 3, CTS 13, RTS 15, or (swapped) TX 15, RX 13, CTS 3, RTS 1 (CTS and RTS may be -1: unused)"
# A stock board of each chip the minimal boards do not cover, to extend.
STOCK = {"esp32c2": "ESP32C2-4MB-V5", "esp32c5": "ESP32C5-4MB-V5", "esp32c6": "ESP32C6-4MB-V5",
         "esp32c61": "ESP32C61-4MB-V5"}


def esp8266(tx, rx, cts, rts) -> str:
    return board("esp8266", dict(zip((f"factory_param.{f}" for f in UART), (tx, rx, cts, rts))))


def with_pins(chip: str, **pins) -> str:
    """A board of ``chip`` with these factory_param pins."""
    if chip in STOCK:
        return extending("[factory_param]\n" + "".join(f"{k} = {v}\n" for k, v in pins.items()), base=STOCK[chip])
    return board(chip, {f"factory_param.{k}": v for k, v in pins.items()})


# --- ESP8266: UART0's two pin sets ------------------------------------------------------------

@pytest.mark.parametrize("pins", [(1, 3, 13, 15), (1, 3, -1, -1), (1, 3, 13, -1), (1, 3, -1, 15),
                                  (15, 13, 3, 1), (15, 13, -1, -1), (15, 13, 3, -1), (15, 13, -1, 1)])
def test_esp8266_uart0_sets_are_accepted(tmp_path, pins):
    b = board_from_text(tmp_path, esp8266(*pins))
    assert tuple(b.factory_param[f] for f in UART) == pins


REFUSED_SETS = [
    ((2, 3, -1, -1), "uart_tx_pin", 2, "ESP8266's UART0 has two pin sets only"),
    ((3, 1, -1, -1), "uart_tx_pin", 3, "ESP8266's UART0 has two pin sets only"),
    ((4, 5, -1, -1), "uart_tx_pin", 4, "ESP8266's UART0 has two pin sets only"),
    ((1, 13, -1, -1), "uart_rx_pin", 13, "with TX on GPIO1, ESP8266's UART0 has RX on GPIO3"),
    ((15, 3, -1, 1), "uart_rx_pin", 3, "with TX on GPIO15, ESP8266's UART0 has RX on GPIO13"),
    ((1, 3, 4, -1), "uart_cts_pin", 4, "with TX 1 and RX 3, ESP8266's UART0 has CTS on GPIO13; accepted: 13 or -1"),
    ((1, 3, 13, 12), "uart_rts_pin", 12, "with TX 1 and RX 3, ESP8266's UART0 has RTS on GPIO15; accepted: 15 or -1"),
    ((15, 13, 5, 1), "uart_cts_pin", 5, "with TX 15 and RX 13, ESP8266's UART0 has CTS on GPIO3; accepted: 3 or -1"),
    ((15, 13, 3, 14), "uart_rts_pin", 14, "with TX 15 and RX 13, ESP8266's UART0 has RTS on GPIO1; accepted: 1 or -1"),
    ((-1, 3, -1, -1), "uart_tx_pin", -1, "ESP-AT on ESP8266 always runs AT on UART0 and, given -1, takes its default pins"),
    ((1, -1, -1, -1), "uart_rx_pin", -1, "ESP-AT on ESP8266 always runs AT on UART0"),
]


@pytest.mark.parametrize("pins, field, value, words", REFUSED_SETS, ids=[str(r[0]) for r in REFUSED_SETS])
def test_esp8266_other_uart_pins_are_refused(tmp_path, pins, field, value, words):
    p = only_problem(tmp_path, esp8266(*pins), f"factory_param.{field}", value, words)
    if "has two pin sets" in p.message or "default pins" in p.message:
        assert p.message.endswith(ESP8266_SETS), p.message   # both sets named


def test_esp8266_control_pins_are_free(tmp_path):
    b = board_from_text(tmp_path, board("esp8266", {"factory_param.tx_control_pin": 5, "factory_param.rx_control_pin": 4}))
    assert (b.factory_param["tx_control_pin"], b.factory_param["rx_control_pin"]) == (5, 4)


def test_esp8266_at_runs_on_uart0_only(tmp_path):
    only_problem(tmp_path, board("esp8266", {"factory_param.uart_port": 1}), "factory_param.uart_port", 1,
                 "ESP-AT on ESP8266 runs AT on UART0 only; accepted: -1 (keeps that default) or 0")


def test_other_chips_take_any_uart_pins(tmp_path):
    b = board_from_text(tmp_path, board("esp32", {"factory_param.uart_tx_pin": 4, "factory_param.uart_rx_pin": 13,
                                                  "factory_param.uart_cts_pin": -1, "factory_param.uart_rts_pin": 27}))
    assert b.factory_param["uart_rts_pin"] == 27


# --- flash and PSRAM pins -----------------------------------------------------------------------

FLASH = [(chip, pin, signal) for chip in CHIPS for pin, signal in sorted(CHIPS[chip].flash_pins.items())]


@pytest.mark.parametrize("chip, pin, signal", FLASH, ids=[f"{c}-GPIO{p}" for c, p, _ in FLASH])
def test_flash_pins_are_refused(tmp_path, chip, pin, signal):
    title = CHIPS[chip].title
    memory = "PSRAM" if "PSRAM" in signal else "SPI flash"
    only_problem(tmp_path, with_pins(chip, uart_cts_pin=pin), "factory_param.uart_cts_pin", pin,
                 f"GPIO{pin} is wired to the {memory} on {title} modules ({signal}); accepted: -1 (unused) or ")


@pytest.mark.parametrize("chip, pins, words", [
    ("esp32", range(6, 12), "GPIO6 is wired to the SPI flash on ESP32 modules (SPICLK); "
                            "accepted: -1 (unused) or 0-5, 12-19, 21-23, 25-27, 32-39"),
    ("esp8266", range(6, 12), "GPIO6 is wired to the SPI flash on ESP8266 modules (SD_CLK); "
                              "accepted: -1 (unused) or 0-5, 12-16"),
    ("esp32c2", range(11, 18), "accepted: -1 (unused) or 0-10, 18-20"),
    ("esp32c3", range(12, 18), "accepted: -1 (unused) or 0-11, 18-21"),
    ("esp32c5", range(16, 23), "accepted: -1 (unused) or 0-15, 23-28"),
    ("esp32c6", range(24, 31), "accepted: -1 (unused) or 0-23"),
    ("esp32c61", list(range(14, 18)) + [19, 20, 21], "accepted: -1 (unused) or 0-13, 18, 22-29"),
    ("esp32s2", range(27, 33), "accepted: -1 (unused) or 0-21, 26, 33-46"),
])
def test_flash_pins_of_each_chip(tmp_path, chip, pins, words):
    assert sorted(CHIPS[chip].flash_pins) == list(pins)
    p = only_problem(tmp_path, with_pins(chip, uart_cts_pin=min(pins)), "factory_param.uart_cts_pin", min(pins))
    assert p.message.startswith(f"GPIO{min(pins)} is wired to the ") and p.message.endswith(words), p.message


@pytest.mark.parametrize("field", UART)
def test_flash_pin_refused_for_every_uart_pin(tmp_path, field):
    only_problem(tmp_path, board("esp32c3", {f"factory_param.{field}": 15}), f"factory_param.{field}", 15,
                 "GPIO15 is wired to the SPI flash on ESP32-C3 modules (SPICLK)")


MODULE_PINS = [
    ("esp32", "ESP32-WROVER-E", 16, "the PSRAM of ESP32-WROVER modules (PSRAM CS)"),
    ("esp32", "WROVER-32", 17, "the PSRAM of ESP32-WROVER modules (PSRAM CLK)"),
    ("esp32", "ESP32-PICO-D4", 16, "the in-package flash of ESP32-D2WD, ESP32-PICO-D4 and ESP32-U4WDH chips"),
    ("esp32", "ESP32-D2WD", 17, "(flash MISO)"),
    ("esp32", "MINI-1", 16, "as in ESP32-MINI-1 (flash CS)"),
    ("esp32s2", "ESP32-S2-WROVER", 26, "the PSRAM of ESP32-S2 modules that have one"),
    ("esp32s2", "ESP32-S2-SOLO-N4R2", 26, "(SPICS1, PSRAM CS)"),
]


@pytest.mark.parametrize("chip, name, pin, words", MODULE_PINS, ids=[f"{n}-GPIO{p}" for _, n, p, _ in MODULE_PINS])
def test_pins_a_named_module_wires_to_memory_are_refused(tmp_path, chip, name, pin, words):
    text = board(chip, {"module.name": name, "factory_param.uart_tx_pin": 4, "factory_param.uart_rx_pin": 5,
                        "factory_param.tx_control_pin": pin})
    only_problem(tmp_path, text, "factory_param.tx_control_pin", pin, f"GPIO{pin} is wired to the ", words,
                 f'module.name "{name}" says this is one; accepted: -1 (unused) or ')


@pytest.mark.parametrize("chip, name, pin", [
    ("esp32", "TEST-1", 16), ("esp32", "ESP32-WROOM-32E", 17), ("esp32", "SOLO-1", 16),
    ("esp32s2", "ESP32-S2-SOLO", 26), ("esp32s2", "ESP32-S2-MINI-1", 26),
])
def test_those_pins_are_free_on_other_modules(tmp_path, chip, name, pin):
    text = board(chip, {"module.name": name, "factory_param.uart_tx_pin": 4, "factory_param.uart_rx_pin": 5,
                        "factory_param.tx_control_pin": pin})
    assert board_from_text(tmp_path, text).factory_param["tx_control_pin"] == pin


def test_stock_wrover_board_keeps_its_pins(tmp_path, registry):
    """WROVER-32's own pins (22, 19) pass; a board on it that moves TX to GPIO16 does not."""
    b = load_board("WROVER-32", registry)
    assert b.module_name == "WROVER-32" and b.factory_param["uart_tx_pin"] == 22
    text = extending('[module]\nname = "WROVER-32"\n[factory_param]\nuart_tx_pin = 16\n', base="WROVER-32")
    p = only_problem(tmp_path, text, "factory_param.uart_tx_pin", 16, "GPIO16 is wired to the PSRAM")
    assert p.file == str(tmp_path / BOARD_NAME)


def test_every_stock_board_passes_the_pin_rules(registry):
    for board_id in registry.ids():
        load_board(board_id, registry)   # a refused pin raises BoardError


# --- strapping pins: a warning -------------------------------------------------------------------

# Not here: ESP8266's GPIO15 and ESP32-C6's GPIO4, which the boards' other UART pins already use
# (test_esp8266_sets_touch_gpio15, test_stock_strapping_warnings).
STRAPS = [(chip, pin, what) for chip in CHIPS for pin, what in sorted(CHIPS[chip].strapping_pins.items())
          if (chip, pin) not in {("esp8266", 15), ("esp32c6", 4)}]


@pytest.mark.parametrize("chip, pin, what", STRAPS, ids=[f"{c}-GPIO{p}" for c, p, _ in STRAPS])
def test_strapping_pins_build_with_a_warning(tmp_path, chip, pin, what):
    # CTS (an input) on the pin; on ESP8266, whose UART pins are fixed, a control pin.
    field = "tx_control_pin" if chip == "esp8266" else "uart_cts_pin"
    b = board_from_text(tmp_path, with_pins(chip, **{field: pin}))
    warnings = [w for w in b.warnings if f"factory_param.{field}" in w]
    assert warnings == [f"{tmp_path / BOARD_NAME}: factory_param.{field} = {pin}: GPIO{pin} is a strapping pin "
                        f"of {CHIPS[chip].title}: its level at reset selects {what}; mind what the wiring holds it at "
                        "then"]


@pytest.mark.parametrize("pins, field, pin, words", [
    ((15, 13, 3, 1), "uart_tx_pin", 15, "GPIO15 is a strapping pin of ESP8266: its level at reset selects the boot "
                                         "mode (MTDO; it must be low to boot from flash)"),
    ((1, 3, 13, 15), "uart_rts_pin", 15, "GPIO15 is a strapping pin of ESP8266"),
])
def test_esp8266_sets_touch_gpio15(tmp_path, pins, field, pin, words):
    (warning,) = board_from_text(tmp_path, esp8266(*pins)).warnings
    assert f"factory_param.{field} = {pin}: {words}" in warning
    assert warning.startswith(str(tmp_path / BOARD_NAME) + ": ") and "\n" not in warning


def test_pins_that_strap_nothing_warn_nothing(tmp_path):
    assert board_from_text(tmp_path, board("esp32c3")).warnings == ()
    assert board_from_text(tmp_path, esp8266(1, 3, -1, -1)).warnings == ()


def test_stock_strapping_pins_warn_only_where_a_vendor_board_sets_them(registry, tmp_path):
    """Espressif's own rows use strapping pins (CTS on MTDO, GPIO15, on ESP32; the swapped TX on
    GPIO15 on ESP8266; CTS/RTS on MTDI/MTMS on ESP32-C6): known to boot, so a stock board builds
    without a warning every time; a vendor's board that sets such a pin itself is warned."""
    def straps(board):
        return [w.split(": ")[1] for w in board.warnings if "strapping pin" in w]
    for board_id in ("WROOM-32", "WROOM-02", "ESP32C6-4MB-V5", "ESP32C3-MINI-1"):
        assert straps(load_board(board_id, registry)) == [], board_id
    text = 'extends = "WROOM-32"\n[factory_param]\nuart_cts_pin = 15\n'
    assert straps(board_from_text(tmp_path, text)) == ["factory_param.uart_cts_pin = 15"]
    assert straps(board_from_text(tmp_path, 'extends = "ESP32C6-4MB-V5"\n[module]\nname = "MINE"\n')) == []


def test_warnings_reach_the_scons_output(tmp_path):
    from helpers import run_scons
    path = write(tmp_path / "b.toml", board("esp32c3", {"factory_param.tx_control_pin": 9}))
    r = run_scons(f"board={path}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"atfactory: warning: {path}: factory_param.tx_control_pin = 9: GPIO9 is a strapping pin of ESP32-C3" \
           in r.stderr


# --- a devices CSV row: the same rules ------------------------------------------------------------

def _device_problems(tmp_path: Path, board_id: str, header: str, row: str):
    from atfactory.devices import DeviceMaker
    from atfactory.prepare import prepare_board
    from helpers import stock_registry

    csv = write(tmp_path / "devices.csv", f"device_id,{header}\nD1,{row}\n")
    maker = DeviceMaker(prepare_board(board_id, stock_registry()), str(csv))
    with pytest.raises(BoardError) as err:
        for r in maker.rows():
            maker.make(r)
    return [str(p) for p in err.value.problems]


@pytest.mark.parametrize("board_id, header, row, expected", [
    ("WROOM-32", "uart_tx_pin", "6", "line 2, factory_param.uart_tx_pin = 6: GPIO6 is wired to the SPI flash on ESP32 "
                                     "modules (SPICLK)"),
    ("WROVER-32", "tx_control_pin", "16", "line 2, factory_param.tx_control_pin = 16: GPIO16 is wired to the PSRAM of "
                                          "ESP32-WROVER modules (PSRAM CS)"),
    ("WROOM-02", ",".join(UART), "1,13,-1,-1", "line 2, factory_param.uart_rx_pin = 13: with TX on GPIO1, "
                                                    "ESP8266's UART0 has RX on GPIO3"),
    ("WROOM-02", "uart_port", "1", "line 2, factory_param.uart_port = 1: ESP-AT on ESP8266 runs AT on UART0 only"),
])
def test_devices_csv_rows_follow_the_pin_rules(tmp_path, board_id, header, row, expected):
    (problem,) = _device_problems(tmp_path, board_id, header, row)
    assert problem.startswith(f"{tmp_path / 'devices.csv'}: {expected}"), problem


@pytest.mark.parametrize("name", sorted(CHIPS))
def test_pin_rule_data_names_gpios_the_chip_has(name):
    chip = CHIPS[name]
    named = set(chip.flash_pins) | set(chip.strapping_pins) | {p for g in chip.module_pins for p in g.pins}
    named |= {p for s in chip.uart0_pin_sets for p in s}
    assert named <= chip.gpios
    assert not set(chip.flash_pins) & (set(chip.strapping_pins) | {p for s in chip.uart0_pin_sets for p in s})
