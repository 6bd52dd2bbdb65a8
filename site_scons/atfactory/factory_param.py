"""factory_param: the 4096-byte partition with a module's UART, radio and identity settings.

Layout (FORMATS.md §1): 4096 bytes of 0xFF, then each field written at its offset, zeroed
over its whole width first so that short strings are NUL-padded.  Integers are stored as
their low bytes in two's complement, so -1 fills a field with 0xFF.  ``reserved2`` is never
written and stays erased.

Three layouts, named by the version each release writes at byte 2: 3 (ESP-AT v2.2.0.0 to
v3.0.0.0, ``FIELDS``); 2 (v2.1.0.0: module_id at byte 3, no platform or module_name strings,
everything from byte 22 on erased); 1 (v2.0.0.0: as 2 without uart_port, byte 5 erased).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Tuple, Union

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

# ESP-AT v2.0.0.0 and v2.1.0.0: module_id where reserved1 is now, and no strings; the type CSV
# spells uart_cts_pin "uart_ctx_pin" (the same byte 18).
_OLD_FIELDS = FIELDS[:2] + (Field("module_id", 3, 1, "int"),) + FIELDS[3:15]
LAYOUTS: Dict[int, Tuple[Field, ...]] = {
    1: tuple(f for f in _OLD_FIELDS if f.name != "uart_port"),
    2: _OLD_FIELDS,
    3: FIELDS,
}
LAYOUT = 3   # the layout of FIELDS
MODULE_FIELDS = ("platform", "module_name")   # set by a board's [module], not its [factory_param]
# Every field of some layout, in layout order (module_id after reserved1, both at byte 3).
ALL_FIELD_NAMES = tuple(f.name for f in FIELDS[:3]) + ("module_id",) + tuple(f.name for f in FIELDS[3:])

# Fields that hold -1 for "none" and are therefore read back as signed.
SIGNED_FIELDS = frozenset({
    "uart_port", "uart_baudrate", "uart_tx_pin", "uart_rx_pin", "uart_cts_pin",
    "uart_rts_pin", "tx_control_pin", "rx_control_pin",
})
PIN_FIELDS = ("uart_tx_pin", "uart_rx_pin", "uart_cts_pin", "uart_rts_pin",
              "tx_control_pin", "rx_control_pin")
OUTPUT_PIN_FIELDS = frozenset({"uart_tx_pin", "uart_rts_pin", "tx_control_pin", "rx_control_pin"})
DEFAULTS = {"magic_flag": MAGIC, "version": 3, "reserved1": 0}
# Layouts 1 and 2 (no strings after byte 22): tx_max_power is read back signed there, as the
# releases that wrote them took any signed byte (board checks).
_OLD_SIGNED = SIGNED_FIELDS | {"tx_max_power"}


def defaults(layout: int = LAYOUT) -> Dict[str, int]:
    """The fields a board may leave out in this layout: magic_flag, version (= the layout)
    and, in layout 3, reserved1."""
    return {k: (layout if k == "version" else v) for k, v in DEFAULTS.items()
            if any(f.name == k for f in LAYOUTS[layout])}

Value = Union[int, str]


def encode_factory_param(values: Mapping[str, Value], layout: int = LAYOUT) -> bytes:
    """Encode every field of the layout from ``values`` (all its keys required) into 4096 bytes.

    Values must already be checked (board.py does that with messages a user can act on); this
    function still refuses what it cannot represent rather than wrap it silently.
    """
    if layout not in LAYOUTS:
        raise FormatError(f"factory_param: no layout {layout!r}; known: {', '.join(map(str, LAYOUTS))}")
    out = bytearray(b"\xff" * SIZE)
    for field in LAYOUTS[layout]:
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


def layout_of(data: bytes) -> int:
    """The layout of a factory_param partition: 3 when its platform and module_name strings
    read, else the version at byte 2 where that is an older layout (1 or 2).  Raises
    FormatError (the layout-3 reason) for anything else."""
    try:
        _decode(data, LAYOUT)
    except FormatError:
        if len(data) >= 22 and data[0:2] == MAGIC.to_bytes(2, "little") and data[2] in (1, 2):
            return data[2]
        raise
    return LAYOUT


def decode_factory_param(data: bytes, layout: Optional[int] = None) -> Dict[str, Value]:
    """Read every field of the partition's layout (``layout_of`` unless given) back.  Raises
    FormatError for anything but a factory_param partition."""
    return _decode(data, layout_of(data) if layout is None else layout)


def _decode(data: bytes, layout: int) -> Dict[str, Value]:
    fields = LAYOUTS[layout]
    end = max(f.offset + f.size for f in fields)
    if len(data) < end:
        raise FormatError(f"factory_param: {len(data)} bytes, expected {SIZE}", offset=len(data))
    magic = int.from_bytes(data[0:2], "little")
    if magic != MAGIC:
        raise FormatError(f"factory_param: magic 0x{magic:04x}, expected 0x{MAGIC:04x}", offset=0)
    signed = SIGNED_FIELDS if layout == LAYOUT else _OLD_SIGNED
    values: Dict[str, Value] = {}
    for field in fields:
        raw = bytes(data[field.offset:field.offset + field.size])
        if field.kind == "int":
            values[field.name] = int.from_bytes(raw, "little", signed=field.name in signed)
        else:
            text, nul, _ = raw.partition(b"\0")
            if not nul:
                raise FormatError(f"factory_param: {field.name} has no NUL terminator", offset=field.offset)
            try:
                values[field.name] = text.decode("ascii")
            except UnicodeDecodeError:
                raise FormatError(f"factory_param: {field.name} is not ASCII", offset=field.offset) from None
    return values
