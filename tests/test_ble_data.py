"""ble_data.bin, the GATT service table (FORMATS.md §4): unit tests and reference conformance."""
from __future__ import annotations

import json

import pytest

from atfactory import ble_data
from atfactory.errors import BoardError, ContentError, FormatError

from helpers import board_from_text
from reference_boards import assert_same_bytes, at_customize_board, build_artifacts, pki_layout

HEADER = "index,uuid_len,uuid,perm,val_max_len,val_cur_len,value\n"


def gatt(*rows: str) -> str:
    return HEADER + "".join(r + "\n" for r in rows)


SERVICE = "0,16,0x2800,0x01,2,2,A002"
CHAR_DECL = "1,16,0x2803,0x01,1,1,02"


def rows_of(*rows: str):
    return ble_data.read_gatt_csv(gatt(*rows))


def value_row(uuid="0xC300", perm="0x01", max_len="1", cur_len="1", value="30", uuid_len="16"):
    return f"2,{uuid_len},{uuid},{perm},{max_len},{cur_len},{value}"


@pytest.mark.parametrize("cell,expected", [
    ("0x0001", "01"), ("0x1", "01"), ("0xC300", "C300"), ("0xc300", "C300"), ("0x00c3", "C3"),
    ("0x0ABC", "0ABC"), ("2800", "2800"),
    ("0xED2B4E3B2820492F9507DF165285E831", "ED2B4E3B2820492F9507DF165285E831"),
    ("0x0D2B4E3B2820492F9507DF165285E831", "0D2B4E3B2820492F9507DF165285E831"),
    ("0x00000000000000000000000000000001", "01"),
])
def test_uuid_formatting(cell, expected):
    uuid_len = "128" if len(cell) > 10 else "16"
    row = rows_of(SERVICE, CHAR_DECL, value_row(uuid=cell, uuid_len=uuid_len))[2]
    assert row["uuid"] == expected


@pytest.mark.parametrize("cell,expected", [
    ("ABC", "AB0C"), ("8", "08"), ("abc", "AB0C"), ("3031", "3031"), ("0", "00"), ("00", "00"),
    ("12345", "12340" "5"), ("F", "0F"),
])
def test_value_formatting(cell, expected):
    row = rows_of(SERVICE, CHAR_DECL, value_row(value=cell, max_len="8", cur_len="1"))[2]
    assert row["value"] == expected


def test_perm_is_an_integer_parsed_from_hex():
    row = rows_of(SERVICE, CHAR_DECL, value_row(perm="0x11"))[2]
    assert row["perm"] == 17 and isinstance(row["perm"], int)
    assert rows_of(SERVICE, CHAR_DECL, value_row(perm="10"))[2]["perm"] == 16


def test_defaults_for_empty_cells():
    row = rows_of(SERVICE, CHAR_DECL, value_row(max_len="", cur_len="", value=""))[2]
    assert (row["val_max_len"], row["val_cur_len"], row["value"]) == (512, 0, "")


@pytest.mark.parametrize("column", ["index", "uuid_len", "uuid", "perm"])
def test_columns_without_default_must_not_be_empty(column):
    cells = dict(zip(ble_data.COLUMNS, ["2", "16", "0xC300", "0x01", "1", "1", "30"]))
    cells[column] = ""
    with pytest.raises(ContentError) as exc:
        rows_of(SERVICE, CHAR_DECL, ",".join(cells.values()))
    assert str(exc.value).startswith(f"line 4, {column} = '': ")


def test_row_keys_follow_the_header_order():
    text = "uuid,index,uuid_len,perm,value,val_max_len,val_cur_len\n" \
           "0x2800,0,16,0x01,A002,2,2\n0x2803,1,16,0x01,02,1,1\n0xC300,2,16,0x01,30,1,1\n"
    rows = ble_data.read_gatt_csv(text)
    assert list(rows[0]) == ["uuid", "index", "uuid_len", "perm", "value", "val_max_len", "val_cur_len"]
    assert ble_data.encode_ble_data(rows)[4:].startswith(b'{"Service": [{"uuid": "2800", "index": 0,')


def test_json_text_and_header_bytes():
    rows = rows_of(SERVICE, CHAR_DECL, value_row())
    data = ble_data.encode_ble_data(rows)
    text = (
        '{"Service": ['
        '{"index": 0, "uuid_len": 16, "uuid": "2800", "perm": 1, "val_max_len": 2, "val_cur_len": 2, "value": "A002"}, '
        '{"index": 1, "uuid_len": 16, "uuid": "2803", "perm": 1, "val_max_len": 1, "val_cur_len": 1, "value": "02"}, '
        '{"index": 2, "uuid_len": 16, "uuid": "C300", "perm": 1, "val_max_len": 1, "val_cur_len": 1, "value": "30"}'
        ']}'
    ).encode("ascii")
    assert data[:2] == len(text).to_bytes(2, "little")
    assert data[2:4] == b"\x27\x95"
    assert data[4:] == text
    assert not data.endswith(b"\n")
    assert data[4:] == json.dumps({"Service": rows}).encode()


def test_reading_stops_at_the_first_all_empty_row():
    rows = rows_of(SERVICE, CHAR_DECL, value_row(), ",,,,,,", "this,is,not,a,valid,row,at all", "")
    assert len(rows) == 3
    rows = rows_of(SERVICE, CHAR_DECL, value_row(), "", "3,16,nothex,0x01,1,1,30")
    assert len(rows) == 3
    rows = rows_of(SERVICE, CHAR_DECL, value_row(), " , , ,,,,", "garbage")
    assert len(rows) == 3


def test_bom_and_crlf_are_accepted():
    plain = gatt(SERVICE, CHAR_DECL, value_row(), ",,,,,,")
    crlf = "\ufeff" + plain.replace("\n", "\r\n")
    assert ble_data.read_gatt_csv(crlf) == ble_data.read_gatt_csv(plain)
    assert ble_data.encode_ble_data(ble_data.read_gatt_csv(crlf)) == \
        ble_data.encode_ble_data(ble_data.read_gatt_csv(plain))


@pytest.mark.parametrize("row,message", [
    (value_row(uuid="0xG1"), "line 4, uuid = '0xG1': not hexadecimal"),
    (value_row(value="3Z"), "line 4, value = '3Z': not hexadecimal bytes"),
    (value_row(value="0x30"), "line 4, value = '0x30': not hexadecimal bytes"),
    (value_row(perm="0x1q"), "line 4, perm = '0x1q': not hexadecimal"),
    (value_row(uuid_len="24"), "line 4, uuid_len = 24: expected 16, 32 or 128"),
    (value_row(uuid="0x12345"), "line 4, uuid = 0x012345: longer than uuid_len = 16 bits"),
    (value_row(max_len="1", cur_len="2"), "line 4, val_cur_len = 2: larger than val_max_len = 1"),
    (value_row(max_len="1", value="3031"), "line 4, value: 2 bytes, larger than val_max_len = 1"),
    (value_row(max_len="x"), "line 4, val_max_len = 'x': expected a decimal integer"),
    ("2,16,0xC300,0x01,1,1", "line 4: 6 cells, expected 7"),
])
def test_bad_cells_are_refused_with_line_and_column(row, message):
    with pytest.raises(ContentError) as exc:
        rows_of(SERVICE, CHAR_DECL, row)
    assert message in str(exc.value)


def test_structure_checks():
    with pytest.raises(ContentError, match="the first row must declare a service"):
        rows_of(CHAR_DECL)
    with pytest.raises(ContentError, match="line 3, uuid = 0xC300: a characteristic value must follow its declaration"):
        rows_of(SERVICE, value_row())
    with pytest.raises(ContentError, match="line 3, uuid = 0x2902: a descriptor must follow a characteristic value"):
        rows_of(SERVICE, "1,16,0x2902,0x11,2,2,0000")
    with pytest.raises(ContentError, match="the file is empty"):
        ble_data.read_gatt_csv("")
    with pytest.raises(ContentError, match="no rows after the header"):
        ble_data.read_gatt_csv(HEADER + ",,,,,,\n")
    with pytest.raises(ContentError, match="line 1: header"):
        ble_data.read_gatt_csv("index,uuid_len,uuid,perm,val_max_len,val_cur_len\n0,16,0x2800,0x01,2,2\n")


def test_oversized_cell_is_a_content_error():
    # csv's field limit (131072 characters) must surface as a ContentError naming the problem,
    # like every other bad GATT CSV, not as csv.Error.
    with pytest.raises(ContentError):
        rows_of(SERVICE, CHAR_DECL, value_row(value="A" * 200_000, max_len="512"))


def test_board_with_an_oversized_gatt_cell_reports_a_board_error(reference, registry, tmp_path):
    folder, row = pki_layout(reference, "2.4")
    csv_file = tmp_path / "gatt.csv"
    csv_file.write_text(gatt(SERVICE, CHAR_DECL, value_row(value="3" * 200_000)))
    text = at_customize_board(folder, sources={"ble_data": [csv_file]}, factory_row=row)
    with pytest.raises(BoardError) as exc:
        board_from_text(tmp_path, text, name="ble.toml", registry=registry)
    assert "at_customize.partitions[ble_data].source" in str(exc.value)


def test_decode_reads_rows_back():
    rows = rows_of(SERVICE, CHAR_DECL, value_row(), "3,16,0x2902,0x11,2,2,0000")
    assert ble_data.decode_ble_data(ble_data.encode_ble_data(rows)) == rows


@pytest.mark.parametrize("data,offset,message", [
    (b"\x02\x00\x27", 0, "ble_data: 3 bytes, shorter than the 4-byte header"),
    (b"\x02\x00\x27\x96{}", 2, "magic 2796, expected 2795"),
    (b"\x09\x00\x27\x95{}", 0, "header declares 9 bytes of JSON, only 2 follow"),
    (b"\x02\x00\x27\x95[}", 4, "the JSON does not parse"),
    (b"\x02\x00\x27\x95[]", 4, 'expected {"Service": [...]}'),
    (b'\x10\x00\x27\x95{"Service": [1]}', 4, "row 0 does not have the columns"),
    (b"\x02\x00\x27\x95\xc3\x96", 4, "the JSON does not parse"),
])
def test_decode_errors(data, offset, message):
    with pytest.raises(FormatError) as exc:
        ble_data.decode_ble_data(data)
    assert exc.value.offset == offset
    assert message in str(exc.value)


def test_write_gatt_csv_reads_back():
    rows = rows_of(SERVICE, CHAR_DECL, value_row(value="ABC", max_len="4"), "3,16,0x2902,0x11,,,")
    assert ble_data.read_gatt_csv(ble_data.write_gatt_csv(rows)) == rows


# --- conformance -------------------------------------------------------------------------------

EXAMPLES = [pytest.param("example", 31, id="example"), pytest.param("GattServiceExample", 6, id="GattServiceExample")]


@pytest.mark.parametrize("name,count", EXAMPLES)
def test_reference_csv_through_a_board(reference, registry, tmp_path, name, count):
    folder, row = pki_layout(reference, "2.4")           # v2.4.2.0 module_esp32_default, WROOM-32
    source = reference / "ble_data" / "inputs" / f"{name}.csv"
    board = board_from_text(tmp_path, at_customize_board(folder, sources={"ble_data": [source]}, factory_row=row),
                            name="ble.toml", registry=registry)
    out = build_artifacts(board)
    expected = (reference / "ble_data" / f"{name}.bin").read_bytes()
    assert_same_bytes(out["customized_partitions/ble_data.bin"], expected, f"{name}.bin")
    assert_same_bytes(out["at_customize.bin"], (folder / "at_customize.bin").read_bytes(), "at_customize.bin")
    assert board.partition("ble_data").content.size == len(expected)
    decoded = ble_data.decode_ble_data(expected)
    assert len(decoded) == count
    assert [r["index"] for r in decoded] == list(range(count))


@pytest.mark.parametrize("name,count", EXAMPLES)
def test_reference_csv_through_the_library(reference, name, count):
    text = (reference / "ble_data" / "inputs" / f"{name}.csv").read_text(encoding="utf-8")
    rows = ble_data.read_gatt_csv(text)
    assert len(rows) == count
    expected = (reference / "ble_data" / f"{name}.bin").read_bytes()
    assert_same_bytes(ble_data.encode_ble_data(rows), expected, f"{name}.bin")
    # The same CSV with a BOM and CRLF line ends gives the same bytes.
    assert ble_data.encode_ble_data(ble_data.read_gatt_csv("\ufeff" + text.replace("\n", "\r\n"))) == expected


# --- ESP-AT 2.0 and 2.1: Python 2's key order, whatever the CSV's column order ---------------------

REORDERED = "value,perm,index,uuid,uuid_len,val_max_len,val_cur_len\nA002,0x01,0,0x2800,16,2,2\n02,0x01,1,0x2803,16,1,1\n"


def test_python2_key_order_is_every_column_once():
    assert sorted(ble_data.PYTHON2_KEY_ORDER) == sorted(ble_data.COLUMNS)


@pytest.mark.parametrize("at_version, keys", [
    ("2.0", ["index", "uuid", "uuid_len", "val_max_len", "value", "perm", "val_cur_len"]),
    ("2.1", ["index", "uuid", "uuid_len", "val_max_len", "value", "perm", "val_cur_len"]),
    ("2.2", ["value", "perm", "index", "uuid", "uuid_len", "val_max_len", "val_cur_len"]),
    ("2.4", ["value", "perm", "index", "uuid", "uuid_len", "val_max_len", "val_cur_len"]),
])
def test_the_release_decides_the_key_order(registry, tmp_path, at_version, keys):
    from reference_boards import _board_text

    csv_file = tmp_path / "gatt.csv"
    csv_file.write_text(REORDERED)
    parts = [{"name": "factory_param", "type": 0x40, "subtype": 8, "offset": 0x11000, "size": "4K"},
             {"name": "ble_data", "type": 0x40, "subtype": 1, "offset": 0x12000, "size": "4K", "source": [csv_file]}]
    values = dict(magic_flag=0xFCFC, tx_max_power=78, start_channel=1, channel_num=13, country_code="CN",
                  uart_baudrate=115200, uart_tx_pin=17, uart_rx_pin=16, uart_cts_pin=15, uart_rts_pin=14,
                  tx_control_pin=-1, rx_control_pin=-1)
    values.update({"module_id": 1} if at_version in ("2.0", "2.1") else {"reserved1": 0})
    if at_version != "2.0":
        values["uart_port"] = 1
    text = _board_text(chip="esp32", module_name="M", platform=None, at_version=at_version, flash_size="1MB",
                       factory_param=values, region=(0x10000, 0x4000), partitions=parts)
    board = board_from_text(tmp_path, text, name="ble.toml", registry=registry)
    data = build_artifacts(board)["customized_partitions/ble_data.bin"]
    text = data[4:].decode("ascii")
    assert text.startswith(f'{{"Service": [{{"{keys[0]}": ')
    assert [list(row) for row in json.loads(text)["Service"]] == [keys, keys]   # dicts keep the JSON's order
    assert board.partition("ble_data").content.size == len(data)
