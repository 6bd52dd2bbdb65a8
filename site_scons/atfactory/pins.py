"""The pin rules real hardware has, for factory_param's UART and control pins (data: chips.py).

Refused: GPIOs wired to the module's SPI flash (and PSRAM), on every module of the chip or on
the modules the board's module.name names; on ESP8266, UART pins outside UART0's two pin sets.
Warned: strapping pins, whose level at reset still selects how the chip boots.
"""
from __future__ import annotations


from typing import Dict, Iterator, Mapping, Optional, Tuple

from .chips import Chip, describe_ranges
from .errors import format_value

UART_FIELDS = ("uart_tx_pin", "uart_rx_pin", "uart_cts_pin", "uart_rts_pin")


def _blocked(chip: Chip, module_name: Optional[str]) -> Dict[int, str]:
    """GPIO -> what it is wired to, for this chip and module."""
    out = {pin: f"wired to the {'PSRAM' if 'PSRAM' in signal else 'SPI flash'} on {chip.title} modules ({signal})"
           for pin, signal in chip.flash_pins.items()}
    for group in chip.module_pins:
        if group.matches(module_name):
            for pin, signal in group.pins.items():
                out.setdefault(pin, f"wired to {group.wired_to} ({signal}), and module.name "
                                    f"{format_value(module_name)} says this is one")
    return out


def refusal(chip: Chip, pin: int, module_name: Optional[str]) -> Optional[str]:
    """Why ``pin`` cannot be a UART or control pin of this module, with what is accepted; None if it can."""
    blocked = _blocked(chip, module_name)
    if pin not in blocked:
        return None
    free = describe_ranges(sorted(chip.gpios - set(blocked)))
    return f"GPIO{pin} is {blocked[pin]}; accepted: -1 (unused) or {free}"


def describe_uart0_sets(chip: Chip) -> str:
    """"TX 1, RX 3, CTS 13, RTS 15, or (swapped) TX 15, RX 13, CTS 3, RTS 1"."""
    sets = [", ".join(f"{name} {pin}" for name, pin in zip(("TX", "RX", "CTS", "RTS"), s)) for s in chip.uart0_pin_sets]
    return sets[0] + "".join(f", or (swapped) {s}" for s in sets[1:])


def uart0_set_problem(chip: Chip, pins: Mapping[str, int]) -> Optional[Tuple[str, str]]:
    """(field, message) when the UART pins are none of the chip's fixed UART0 sets (ESP8266);
    ``pins``: the four UART fields.  CTS and RTS may be -1 (no flow control)."""
    if not chip.uart0_pin_sets:
        return None
    tx, rx, cts, rts = (pins[f] for f in UART_FIELDS)
    accepted = f"accepted: {describe_uart0_sets(chip)} (CTS and RTS may be -1: unused)"
    if tx == -1 or rx == -1:
        field = "uart_tx_pin" if tx == -1 else "uart_rx_pin"
        return field, (f"ESP-AT on {chip.title} always runs AT on UART0 and, given -1, takes its default pins "
                       f"instead; {accepted}")
    match = next((s for s in chip.uart0_pin_sets if s[0] == tx), None)
    if match is None:
        return "uart_tx_pin", f"{chip.title}'s UART0 has two pin sets only; {accepted}"
    if rx != match[1]:
        return "uart_rx_pin", f"with TX on GPIO{tx}, {chip.title}'s UART0 has RX on GPIO{match[1]}; {accepted}"
    for field, pin, wanted in (("uart_cts_pin", cts, match[2]), ("uart_rts_pin", rts, match[3])):
        if pin not in (-1, wanted):
            name = field.split("_")[1].upper()
            return field, (f"with TX {tx} and RX {rx}, {chip.title}'s UART0 has {name} on GPIO{wanted}; "
                           f"accepted: {wanted} or -1 (unused)")
    return None


def strapping_warnings(chip: Chip, pins: Mapping[str, int]) -> Iterator[Tuple[str, str]]:
    """(field, message) for each pin that is a strapping pin of the chip."""
    for field, pin in pins.items():
        what = chip.strapping_pins.get(pin)
        if what is not None:
            yield field, (f"GPIO{pin} is a strapping pin of {chip.title}: its level at reset selects {what}; "
                          "mind what the wiring holds it at then")


def at_uart_problem(chip: Chip, port: int) -> Optional[str]:
    """Why ESP-AT cannot run its AT UART on ``port`` of this chip (a UART the chip has); None if it can."""
    if chip.at_uart_ports is None or port == -1 or port in chip.at_uart_ports:
        return None
    uarts = " or ".join(f"UART{p}" for p in chip.at_uart_ports)
    ports = " or ".join(str(p) for p in chip.at_uart_ports)
    return f"ESP-AT on {chip.title} runs AT on {uarts} only; accepted: -1 (keeps that default) or {ports}"


def check_set(c, chip: Chip, fine: Mapping[str, int], bad) -> None:
    """The rules on a board's pins as a set, once each pin passed on its own (``fine``: field ->
    GPIO or -1): the chip's fixed UART0 sets (``bad(field, message)``), strapping pins
    (``c.warn``, a checks.Checker's)."""
    if all(f in fine for f in UART_FIELDS):
        problem = uart0_set_problem(chip, fine)
        if problem:
            bad(*problem)
    for field, message in strapping_warnings(chip, {f: p for f, p in fine.items() if p != -1}):
        if not _stock_value(c, field):   # Espressif's own module values (stock boards) are known to boot
            c.warn(("factory_param", field), message, fine[field])


def _stock_value(c, field: str) -> bool:
    """Whether the value comes from a stock board file shipped with atfactory."""
    from .builtin_plugin import STOCK_BOARDS
    from .fsutil import inside

    where = c.merged.where("factory_param", field)
    return bool(where) and inside(where, STOCK_BOARDS)
