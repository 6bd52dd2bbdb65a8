"""factory_param: the 4096-byte partition with a module's UART, radio and identity settings.

Layout (FORMATS.md §1): 4096 bytes of 0xFF, then each field written at its offset, zeroed
over its whole width first so that short strings are NUL-padded.  Integers are stored as
their low bytes in two's complement, so -1 fills a field with 0xFF.  ``reserved2`` is never
written and stays erased.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Union

from .errors import FormatError

SIZE = 4096
MAGIC = 0xFCFC


@dataclass(frozen=True)
class Field:
    name: str
    offset: int
    size: int
    kind: str  # "int" or "str"


FIELDS = (
    Field("magic_flag", 0, 2, "int"),
    Field("version", 2, 1, "int"),
    Field("reserved1", 3, 1, "int"),
    Field("tx_max_power", 4, 1, "int"),
    Field("uart_port", 5, 1, "int"),
    Field("start_channel", 6, 1, "int"),
    Field("channel_num", 7, 1, "int"),
    Field("country_code", 8, 4, "str"),
    Field("uart_baudrate", 12, 4, "int"),
    Field("uart_tx_pin", 16, 1, "int"),
    Field("uart_rx_pin", 17, 1, "int"),
    Field("uart_cts_pin", 18, 1, "int"),
    Field("uart_rts_pin", 19, 1, "int"),
    Field("tx_control_pin", 20, 1, "int"),
    Field("rx_control_pin", 21, 1, "int"),
    # reserved2 at 22, 2 bytes: never written
    Field("platform", 24, 32, "str"),
    Field("module_name", 56, 32, "str"),
)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}

# Fields that hold -1 for "none" and are therefore read back as signed.
SIGNED_FIELDS = frozenset({
    "uart_port", "uart_baudrate", "uart_tx_pin", "uart_rx_pin", "uart_cts_pin",
    "uart_rts_pin", "tx_control_pin", "rx_control_pin",
})
PIN_FIELDS = ("uart_tx_pin", "uart_rx_pin", "uart_cts_pin", "uart_rts_pin",
              "tx_control_pin", "rx_control_pin")
OUTPUT_PIN_FIELDS = frozenset({"uart_tx_pin", "uart_rts_pin", "tx_control_pin", "rx_control_pin"})
DEFAULTS = {"magic_flag": MAGIC, "version": 3, "reserved1": 0}

Value = Union[int, str]


def encode_factory_param(values: Mapping[str, Value]) -> bytes:
    """Encode every field of FIELDS from ``values`` (all keys required) into 4096 bytes.

    Values must already be checked (board.py does that with messages a user can act on); this
    function still refuses what it cannot represent rather than wrap it silently.
    """
    out = bytearray(b"\xff" * SIZE)
    for field in FIELDS:
        if field.name not in values:
            raise FormatError(f"factory_param: missing field {field.name}")
        value = values[field.name]
        if field.kind == "int":
            bits = 8 * field.size
            if not isinstance(value, int) or not -(1 << (bits - 1)) <= value < (1 << bits):
                raise FormatError(f"factory_param: {field.name} = {value!r} does not fit in {field.size} byte(s)")
            raw = (value & ((1 << bits) - 1)).to_bytes(field.size, "little")
        else:
            if not isinstance(value, str) or not value.isascii() or "\0" in value:
                raise FormatError(f"factory_param: {field.name} = {value!r} is not ASCII text without NUL")
            data = value.encode("ascii")
            if len(data) >= field.size:
                raise FormatError(f"factory_param: {field.name} = {value!r} is longer than {field.size - 1} bytes")
            raw = data.ljust(field.size, b"\0")
        out[field.offset:field.offset + field.size] = raw
    return bytes(out)


def decode_factory_param(data: bytes) -> Dict[str, Value]:
    """Read every field back.  Raises FormatError for anything but a factory_param partition."""
    if len(data) < 88:
        raise FormatError(f"factory_param: {len(data)} bytes, expected {SIZE}", offset=len(data))
    magic = int.from_bytes(data[0:2], "little")
    if magic != MAGIC:
        raise FormatError(f"factory_param: magic 0x{magic:04x}, expected 0x{MAGIC:04x}", offset=0)
    values: Dict[str, Value] = {}
    for field in FIELDS:
        raw = bytes(data[field.offset:field.offset + field.size])
        if field.kind == "int":
            values[field.name] = int.from_bytes(raw, "little", signed=field.name in SIGNED_FIELDS)
        else:
            text, nul, _ = raw.partition(b"\0")
            if not nul:
                raise FormatError(f"factory_param: {field.name} has no NUL terminator", offset=field.offset)
            try:
                values[field.name] = text.decode("ascii")
            except UnicodeDecodeError:
                raise FormatError(f"factory_param: {field.name} is not ASCII", offset=field.offset) from None
    return values
