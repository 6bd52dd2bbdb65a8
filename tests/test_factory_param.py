"""factory_param: the 4096-byte partition (FORMATS.md §1), unit tests and reference conformance."""
from __future__ import annotations

import pytest

from atfactory import factory_param as fp
from atfactory.errors import BoardError, FormatError

from atfactory.formats import stock_registry

from helpers import NO_VALUE, assert_refused, board_from_text, only_problem, reference_dir, run_scons, write
from reference_boards import (
    assert_same_bytes, build_artifacts, factory_param_board, factory_param_values, read_factory_param_rows,
)

WROOM_32 = dict(
    magic_flag=0xFCFC, version=3, reserved1=0, tx_max_power=78, uart_port=1, start_channel=1,
    channel_num=13, country_code="CN", uart_baudrate=115200, uart_tx_pin=17, uart_rx_pin=16,
    uart_cts_pin=15, uart_rts_pin=14, tx_control_pin=-1, rx_control_pin=-1,
    platform="PLATFORM_ESP32", module_name="WROOM-32",
)

# WROOM-32 as Espressif's generator writes it, spelled out byte by byte.
WROOM_32_BYTES = (
    b"\xfc\xfc"                      # 0  magic_flag
    b"\x03"                          # 2  version
    b"\x00"                          # 3  reserved1
    b"\x4e"                          # 4  tx_max_power 78
    b"\x01"                          # 5  uart_port
    b"\x01"                          # 6  start_channel
    b"\x0d"                          # 7  channel_num 13
    b"CN\x00\x00"                    # 8  country_code
    b"\x00\xc2\x01\x00"              # 12 uart_baudrate 115200
    b"\x11\x10\x0f\x0e\xff\xff"      # 16 tx, rx, cts, rts, tx_control, rx_control
    b"\xff\xff"                      # 22 reserved2, never written
    + b"PLATFORM_ESP32".ljust(32, b"\0")   # 24 platform
    + b"WROOM-32".ljust(32, b"\0")         # 56 module_name
    + b"\xff" * 4008                       # 88 erased
)


def test_encode_wroom32_byte_for_byte():
    data = fp.encode_factory_param(WROOM_32)
    assert len(data) == fp.SIZE == 4096
    assert_same_bytes(data, WROOM_32_BYTES)


# One distinctive value per field, and the bytes it must put at that field's offset.
FIELD_BYTES = [
    ("magic_flag", 0x1234, 0, b"\x34\x12"),
    ("version", 7, 2, b"\x07"),
    ("reserved1", 0xA5, 3, b"\xa5"),
    ("tx_max_power", 82, 4, b"\x52"),
    ("uart_port", 2, 5, b"\x02"),
    ("start_channel", 3, 6, b"\x03"),
    ("channel_num", 11, 7, b"\x0b"),
    ("country_code", "USA", 8, b"USA\x00"),
    ("uart_baudrate", 921600, 12, b"\x00\x10\x0e\x00"),
    ("uart_tx_pin", 1, 16, b"\x01"),
    ("uart_rx_pin", 3, 17, b"\x03"),
    ("uart_cts_pin", 33, 18, b"\x21"),
    ("uart_rts_pin", 32, 19, b"\x20"),
    ("tx_control_pin", 5, 20, b"\x05"),
    ("rx_control_pin", 4, 21, b"\x04"),
    ("platform", "PLATFORM_ESP32S2", 24, b"PLATFORM_ESP32S2".ljust(32, b"\0")),
    ("module_name", "X", 56, b"X" + b"\0" * 31),
]


@pytest.mark.parametrize("name,value,offset,expected", FIELD_BYTES, ids=[f[0] for f in FIELD_BYTES])
def test_each_field_is_written_at_its_offset_and_nowhere_else(name, value, offset, expected):
    base = fp.encode_factory_param(WROOM_32)
    data = fp.encode_factory_param(dict(WROOM_32, **{name: value}))
    assert data[offset:offset + len(expected)] == expected
    assert data[:offset] == base[:offset]
    assert data[offset + len(expected):] == base[offset + len(expected):]
    assert fp.FIELDS_BY_NAME[name].offset == offset
    assert fp.FIELDS_BY_NAME[name].size == len(expected)


@pytest.mark.parametrize("name", sorted(fp.SIGNED_FIELDS))
def test_minus_one_fills_the_field_with_ff(name):
    field = fp.FIELDS_BY_NAME[name]
    data = fp.encode_factory_param(dict(WROOM_32, **{name: -1}))
    assert data[field.offset:field.offset + field.size] == b"\xff" * field.size
    assert fp.decode_factory_param(data)[name] == -1


def test_sdio_module_has_no_uart():
    values = dict(WROOM_32, uart_port=-1, uart_baudrate=-1, uart_tx_pin=-1, uart_rx_pin=-1,
                  uart_cts_pin=-1, uart_rts_pin=-1, module_name="ESP32-SDIO")
    data = fp.encode_factory_param(values)
    assert data[5] == 0xFF
    assert data[12:24] == b"\xff" * 12


def test_short_strings_are_nul_padded_over_the_whole_field():
    data = fp.encode_factory_param(dict(WROOM_32, country_code="0", module_name="A"))
    assert data[8:12] == b"0\x00\x00\x00"
    assert data[56:88] == b"A" + b"\x00" * 31


def test_reserved2_stays_erased_and_the_tail_is_erased():
    data = fp.encode_factory_param(dict(WROOM_32, rx_control_pin=0, uart_tx_pin=0))
    assert data[22:24] == b"\xff\xff"
    assert data[88:] == b"\xff" * 4008
    assert "reserved2" not in fp.FIELDS_BY_NAME


def test_longest_strings_keep_their_nul():
    name = "M" * 31
    data = fp.encode_factory_param(dict(WROOM_32, module_name=name, country_code="ABC"))
    assert data[56:88] == name.encode() + b"\0"
    assert data[8:12] == b"ABC\0"
    assert fp.decode_factory_param(data)["module_name"] == name


@pytest.mark.parametrize("name,value,message", [
    ("module_name", "M" * 32, "module_name = 'MMMMMMMMMMMMMMMMMMMMMMMMMMMMMMMM' is longer than 31 bytes"),
    ("platform", "P" * 40, "is longer than 31 bytes"),
    ("country_code", "ABCD", "country_code = 'ABCD' is longer than 3 bytes"),
    ("tx_max_power", 300, "tx_max_power = 300 does not fit in 1 byte(s)"),
    ("version", 256, "version = 256 does not fit in 1 byte(s)"),
    ("uart_tx_pin", -129, "uart_tx_pin = -129 does not fit in 1 byte(s)"),
    ("magic_flag", 0x10000, "magic_flag = 65536 does not fit in 2 byte(s)"),
    ("uart_baudrate", 1 << 32, "does not fit in 4 byte(s)"),
    ("uart_port", "1", "uart_port = '1' does not fit"),
])
def test_encode_refuses_what_does_not_fit(name, value, message):
    with pytest.raises(FormatError) as exc:
        fp.encode_factory_param(dict(WROOM_32, **{name: value}))
    assert message in str(exc.value)


def test_encode_requires_every_field():
    values = dict(WROOM_32)
    del values["uart_rts_pin"]
    with pytest.raises(FormatError, match="missing field uart_rts_pin"):
        fp.encode_factory_param(values)


@pytest.mark.parametrize("name,value", [("module_name", "M\u00d6DULE"), ("country_code", "C\0N")],
                         ids=["non-ascii", "nul-inside"])
def test_encode_refuses_text_it_cannot_write_with_format_error(name, value):
    # FormatError is documented as the error for "values that cannot be encoded": the fields hold
    # ASCII only, and a NUL inside the text would read back as a shorter string.
    with pytest.raises(FormatError, match=name):
        fp.encode_factory_param(dict(WROOM_32, **{name: value}))


def test_decode_reads_every_field_back():
    assert fp.decode_factory_param(WROOM_32_BYTES) == WROOM_32


def test_decode_bad_magic_names_offset_zero():
    data = bytearray(WROOM_32_BYTES)
    data[0:2] = b"\xff\xff"
    with pytest.raises(FormatError) as exc:
        fp.decode_factory_param(bytes(data))
    assert exc.value.offset == 0
    assert str(exc.value) == "at offset 0x0: factory_param: magic 0xffff, expected 0xfcfc"


@pytest.mark.parametrize("length", [0, 1, 2, 24, 87])
def test_decode_short_input_names_where_it_ends(length):
    with pytest.raises(FormatError) as exc:
        fp.decode_factory_param(WROOM_32_BYTES[:length])
    assert exc.value.offset == length
    assert f"factory_param: {length} bytes, expected 4096" in str(exc.value)


def test_decode_erased_flash_is_not_a_factory_param():
    with pytest.raises(FormatError, match="magic 0xffff") as exc:
        fp.decode_factory_param(b"\xff" * 4096)
    assert exc.value.offset == 0


@pytest.mark.parametrize("offset,raw,message", [
    (24, b"P" * 32, "platform has no NUL terminator"),
    (56, b"\xc3\x96" + b"\0" * 30, "module_name is not ASCII"),
    (8, b"CNXY", "country_code has no NUL terminator"),
])
def test_decode_bad_strings_name_the_field_offset(offset, raw, message):
    data = bytearray(WROOM_32_BYTES)
    data[offset:offset + len(raw)] = raw
    with pytest.raises(FormatError) as exc:
        fp.decode_factory_param(bytes(data))
    assert exc.value.offset == offset
    assert message in str(exc.value)


# --- boards refuse what the reference generator would wrap or mangle ------------------------

def _board_text(**changes):
    values = {k: v for k, v in WROOM_32.items() if k not in ("platform", "module_name")}
    values.update(changes)
    lines = ['[module]', 'name = "ACME"', 'chip = "esp32"', '',
             '[flash]', 'mode = "dio"', 'freq = "40m"', 'size = "4MB"', '', '[factory_param]']
    for k, v in values.items():
        lines.append(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}")
    lines += ['', '[at_customize]', 'offset = 0x20000', 'size = 0xE0000', '',
              '[[at_customize.partitions]]', 'name = "factory_param"', 'type = 0x40', 'subtype = 8',
              'offset = 0x30000', 'size = "4K"']
    return "\n".join(lines) + "\n"


def test_board_builds_the_same_bytes_as_the_encoder(tmp_path, registry):
    board = board_from_text(tmp_path, _board_text(), name="acme.toml", registry=registry)
    out = build_artifacts(board)
    expected = fp.encode_factory_param(dict(WROOM_32, module_name="ACME"))
    assert out["customized_partitions/factory_param.bin"] == expected
    assert out["customized_partitions/factory_param_ACME.bin"] == expected


@pytest.mark.parametrize("change,key", [
    ({"tx_max_power": 300}, "factory_param.tx_max_power = 300"),
    ({"uart_tx_pin": 20}, "factory_param.uart_tx_pin = 20"),
    ({"country_code": "CHINA"}, 'factory_param.country_code = "CHINA"'),
    ({"uart_port": 3}, "factory_param.uart_port = 3"),
])
def test_board_refuses_values_the_reference_would_wrap(tmp_path, registry, change, key):
    with pytest.raises(BoardError) as exc:
        board_from_text(tmp_path, _board_text(**change), name="acme.toml", registry=registry)
    assert key in str(exc.value)


def test_board_refuses_a_module_name_of_32_bytes(tmp_path, registry):
    text = _board_text().replace('name = "ACME"', f'name = "{"N" * 32}"')
    with pytest.raises(BoardError) as exc:
        board_from_text(tmp_path, text, name="acme.toml", registry=registry)
    assert "module.name" in str(exc.value)
    assert "at most 31" in str(exc.value)


# --- conformance: every row of both releases' factory_param_data.csv ------------------------

RELEASES = ("v2.4.2.0", "v2.2.1.0_esp8266")


def _rows():
    params = []
    base = reference_dir() / "factory_param" / "inputs"
    for release in RELEASES:
        path = base / release / "factory_param_data.csv"
        if not path.is_file():
            continue
        for row in read_factory_param_rows(path):
            params.append(pytest.param(release, row, id=f"{release}-{row['platform']}-{row['module_name']}"))
    return params or [pytest.param(None, None, id="reference-absent")]


ROWS = _rows()


def test_every_reference_output_has_a_row(reference):
    listed = {(p.values[0], p.values[1]["platform"], p.values[1]["module_name"]) for p in ROWS}
    outputs = {(f.parent.parent.name, f.parent.name, f.stem)
               for release in RELEASES for f in (reference / "factory_param" / release).glob("*/*.bin")}
    assert outputs == listed
    assert len(listed) == 29


@pytest.mark.parametrize("release,row", ROWS)
def test_reference_row_through_a_board(reference, registry, tmp_path, release, row):
    at_version = "2.2" if release.startswith("v2.2") else "2.4"
    board = board_from_text(tmp_path, factory_param_board(row, at_version), name="board.toml", registry=registry)
    module = row["module_name"]
    assert board.module_name == module
    assert board.platform == row["platform"]
    out = build_artifacts(board)
    expected = (reference / "factory_param" / release / row["platform"] / f"{module}.bin").read_bytes()
    assert len(expected) == 4096
    assert_same_bytes(out["customized_partitions/factory_param.bin"], expected, "factory_param.bin")
    assert_same_bytes(out[f"customized_partitions/factory_param_{module}.bin"], expected,
                      f"factory_param_{module}.bin")
    # ... and the decoder reads the reference back to the row.
    decoded = fp.decode_factory_param(expected)
    assert decoded == dict(factory_param_values(row), platform=row["platform"], module_name=module)


# --- ESP-AT 2.0 and 2.1: layouts 1 and 2 (module_id at byte 3, no strings) -------------------------

WROOM_32_V2_0 = dict(magic_flag=0xFCFC, version=1, module_id=1, tx_max_power=78, start_channel=1, channel_num=13,
                     country_code="CN", uart_baudrate=115200, uart_tx_pin=17, uart_rx_pin=16, uart_cts_pin=15,
                     uart_rts_pin=14, tx_control_pin=-1, rx_control_pin=-1)
# WROOM-32 as ESP-AT v2.0.0.0_esp32's generator writes it.
WROOM_32_V2_0_BYTES = (
    b"\xfc\xfc"                      # 0  magic_flag
    b"\x01"                          # 2  version: the layout
    b"\x01"                          # 3  module_id
    b"\x4e"                          # 4  tx_max_power 78
    b"\xff"                          # 5  no uart_port in v2.0: erased
    b"\x01\x0d"                      # 6  start_channel, channel_num
    b"CN\x00\x00"                    # 8  country_code
    b"\x00\xc2\x01\x00"              # 12 uart_baudrate 115200
    b"\x11\x10\x0f\x0e\xff\xff"      # 16 tx, rx, cts, rts, tx_control, rx_control
    + b"\xff" * 4074                 # 22 no platform or module name: erased to the end
)


def test_encode_layout_1_byte_for_byte():
    assert_same_bytes(fp.encode_factory_param(WROOM_32_V2_0, layout=1), WROOM_32_V2_0_BYTES)


def test_layout_2_adds_uart_port_at_byte_5():
    values = dict(WROOM_32_V2_0, version=2, uart_port=1)
    data = fp.encode_factory_param(values, layout=2)
    assert data == WROOM_32_V2_0_BYTES[:2] + b"\x02" + WROOM_32_V2_0_BYTES[3:5] + b"\x01" + WROOM_32_V2_0_BYTES[6:]
    assert fp.layout_of(data) == 2 and fp.decode_factory_param(data) == values


def test_old_layouts_need_their_own_fields():
    with pytest.raises(FormatError, match="missing field uart_port"):
        fp.encode_factory_param(WROOM_32_V2_0, layout=2)
    with pytest.raises(FormatError, match="missing field module_id"):
        fp.encode_factory_param(WROOM_32, layout=1)
    with pytest.raises(FormatError, match="no layout 4; known: 1, 2, 3"):
        fp.encode_factory_param(WROOM_32, layout=4)


def test_the_layout_is_read_from_the_bytes():
    assert fp.layout_of(WROOM_32_BYTES) == 3
    assert fp.layout_of(WROOM_32_V2_0_BYTES) == 1
    assert fp.decode_factory_param(WROOM_32_V2_0_BYTES) == WROOM_32_V2_0
    # a layout-3 partition whose version byte says 1 is still layout 3: its strings read
    v3_saying_1 = fp.encode_factory_param(dict(WROOM_32, version=1))
    assert fp.layout_of(v3_saying_1) == 3 and fp.decode_factory_param(v3_saying_1)["module_name"] == "WROOM-32"
    # without the strings, only versions 1 and 2 name a layout
    with pytest.raises(FormatError, match="platform has no NUL terminator"):
        fp.layout_of(WROOM_32_V2_0_BYTES[:2] + b"\x05" + WROOM_32_V2_0_BYTES[3:])


def test_old_layouts_read_tx_max_power_signed():
    data = fp.encode_factory_param(dict(WROOM_32_V2_0, tx_max_power=-8), layout=1)
    assert data[4] == 0xF8 and fp.decode_factory_param(data)["tx_max_power"] == -8
    assert fp.decode_factory_param(fp.encode_factory_param(dict(WROOM_32, tx_max_power=200)))["tx_max_power"] == 200


def _old_board(at_version="2.0", drop=(), **changes):
    values = dict(WROOM_32_V2_0, **({"version": 2, "uart_port": 1} if at_version == "2.1" else {}))
    values.update(changes)
    values = {k: v for k, v in values.items() if k not in drop}
    lines = ['[module]', 'name = "ACME"', 'chip = "esp32"', f'at_version = "{at_version}"', '',
             '[flash]', 'mode = "dio"', 'freq = "40m"', 'size = "4MB"', '', '[factory_param]']
    lines += [f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v}" for k, v in values.items()]
    lines += ['', '[at_customize]', 'offset = 0x20000', 'size = 0xE0000', '',
              '[[at_customize.partitions]]', 'name = "factory_param"', 'type = 0x40', 'subtype = 8',
              'offset = 0x30000', 'size = "4K"']
    return "\n".join(lines) + "\n"


def test_a_v2_0_board_builds_layout_1(tmp_path, registry):
    board = board_from_text(tmp_path, _old_board(drop=("magic_flag", "version")), name="acme.toml", registry=registry)
    assert (board.factory_param["magic_flag"], board.factory_param["version"]) == (0xFCFC, 1)
    out = build_artifacts(board)
    assert_same_bytes(out["customized_partitions/factory_param.bin"], WROOM_32_V2_0_BYTES)
    assert out["customized_partitions/factory_param_ACME.bin"] == WROOM_32_V2_0_BYTES


V2_0_FIELDS = ("magic_flag, version, module_id, tx_max_power, start_channel, channel_num, country_code, "
               "uart_baudrate, uart_tx_pin, uart_rx_pin, uart_cts_pin, uart_rts_pin, tx_control_pin, rx_control_pin")
V2_1_FIELDS = V2_0_FIELDS.replace("tx_max_power, ", "tx_max_power, uart_port, ")


@pytest.mark.parametrize("at_version, changes, drop, key, value, message", [
    ("2.0", {"uart_port": 1}, (), "factory_param.uart_port", 1,
     "ESP-AT 2.0 has no factory_param.uart_port; accepted: " + V2_0_FIELDS),
    ("2.1", {"reserved1": 0}, (), "factory_param.reserved1", 0,
     "ESP-AT 2.1 has no factory_param.reserved1 (byte 3 is module_id there); accepted: " + V2_1_FIELDS),
    ("2.1", {"sys_store": 1}, (), "factory_param.sys_store", 1, "ESP-AT 2.1 has no factory_param.sys_store"),
    ("2.4", {"module_id": 1}, ("version",), "factory_param.module_id", 1,
     "ESP-AT 2.4 has no factory_param.module_id (it existed up to ESP-AT 2.1; byte 3 is reserved1 from 2.2); "
     "remove it"),
    ("2.1", {"version": 3}, (), "factory_param.version", 3, "ESP-AT 2.1 writes factory_param layout 2; accepted: 2"),
    ("2.0", {"version": 2}, (), "factory_param.version", 2, "ESP-AT 2.0 writes factory_param layout 1; accepted: 1"),
    ("2.0", {"tx_max_power": 128}, (), "factory_param.tx_max_power", 128,
     "out of range; accepted: (a signed byte in ESP-AT 2.0) -128 to 127"),
    ("2.1", {"module_id": 256}, (), "factory_param.module_id", 256, "out of range; accepted: 0 to 255"),
    ("2.1", {"uart_port": 3}, (), "factory_param.uart_port", 3, "ESP32 has UART 0 to 2"),
    ("2.0", {}, ("module_id",), "factory_param.module_id", NO_VALUE,
     "missing; every factory_param field except magic_flag and version must be given"),
])
def test_old_releases_refuse_what_their_layout_lacks(tmp_path, at_version, changes, drop, key, value, message):
    if at_version == "2.4":
        text = _board_text(**changes).replace('chip = "esp32"', 'chip = "esp32"\nat_version = "2.4"')
    else:
        text = _old_board(at_version, drop, **changes)
    only_problem(tmp_path, text, key, value, message)


def test_old_releases_take_any_signed_tx_power(tmp_path, registry):
    """v2.0.0.0_esp8266's own modules give tx_max_power 1, which 2.2 and later refuse."""
    board = board_from_text(tmp_path, _old_board(tx_max_power=1), name="acme.toml", registry=registry)
    assert build_artifacts(board)["customized_partitions/factory_param.bin"][4] == 1
    only_problem(tmp_path, _board_text(tx_max_power=1), "factory_param.tx_max_power", 1,
                 "accepted: (0.25 dBm units on ESP32) 40 to 84")


def test_scons_refuses_a_v2_0_board_with_uart_port(tmp_path):
    path = write(tmp_path / "acme.toml", _old_board(uart_port=1))
    result = run_scons(f"board={path}", "build_dir=out", cwd=tmp_path)
    [line] = assert_refused(result, tmp_path / "out")
    assert line == (f"scons: *** {path}: factory_param.uart_port = 1: ESP-AT 2.0 has no factory_param.uart_port; "
                    f"accepted: {V2_0_FIELDS}  Stop.")


def test_the_format_reads_old_layouts_back():
    fmt = stock_registry()["factory_param"]
    doc = fmt.decode(WROOM_32_V2_0_BYTES)
    assert doc == {"kind": "factory_param", "layout": 1, "fields": WROOM_32_V2_0}
    assert fmt.implied_at_versions("factory_param", doc) == {"2.0"}
    settings = fmt.module_settings(doc)
    assert (settings.module_name, settings.platform, settings.factory_param) == ("", None, WROOM_32_V2_0)
    assert fmt.describe(doc)[0] == "layout 1 (ESP-AT 2.0): module_id at byte 3, no platform or module name"
    v3 = fmt.decode(WROOM_32_BYTES)
    assert v3["layout"] == 3 and fmt.implied_at_versions("factory_param", v3) == {"2.2", "2.3", "2.4.0", "2.4", "3.0"}
    # the firmware's own factory_param says which releases it can be
    entries = [("factory_param", 0x40, 8)]
    assert fmt.firmware_releases(entries, {"factory_param": WROOM_32_V2_0_BYTES}) == {"2.0"}
    assert fmt.firmware_releases(entries, {"factory_param": b"\xff" * 4096}) == {"2.0", "2.1", "2.2", "2.3", "2.4.0",
                                                                                "2.4", "3.0"}
    assert fmt.firmware_releases([("user", 0x40, 8)], {}) is None
    # verify's words when an image and a board differ in layout
    assert fmt.explain(WROOM_32_V2_0_BYTES, WROOM_32_BYTES) == (
        "the image's factory_param is layout 1 (ESP-AT 2.0), the board's layout 3 (ESP-AT 2.2, 2.3, 2.4.0, 2.4 and "
        "3.0): build for the image's at_version")


def test_extract_notes_bytes_an_old_layout_leaves_erased(tmp_path):
    fmt = stock_registry()["factory_param"]
    raw = WROOM_32_V2_0_BYTES[:100] + b"\x00" + WROOM_32_V2_0_BYTES[101:]
    notes = []
    assert fmt.decode(raw)["layout"] == 1
    assert fmt.extract("factory_param", fmt.decode(raw), raw, str(tmp_path), notes) == []
    assert notes == ["factory_param: bytes outside the known fields (from byte 22 on) are not erased; "
                     "a rebuild writes them erased"]
    notes.clear()
    fmt.extract("factory_param", fmt.decode(WROOM_32_V2_0_BYTES), WROOM_32_V2_0_BYTES, str(tmp_path), notes)
    assert notes == []
