"""Partition tables (FORMATS.md §2): unit tests and conformance with ESP-IDF's generator."""
from __future__ import annotations

import hashlib
import struct

import pytest

from atfactory import partition_table as pt
from atfactory.errors import BoardError, FormatError

from helpers import board_from_text, reference_dir
from reference_boards import (
    assert_same_bytes, at_customize_board, at_customize_region, build_artifacts, read_partition_csv,
)

NVS = pt.Entry("nvs", 0x01, 0x02, 0x9000, 0x6000)
SERVER_CERT = pt.Entry("server_cert", 0x40, 2, 0x24000, 0x2000, flags=1)


def test_entry_layout_byte_for_byte():
    data = pt.encode_partition_table([NVS, SERVER_CERT], md5=False)
    assert data[0:32] == (b"\xaa\x50" b"\x01" b"\x02" b"\x00\x90\x00\x00" b"\x00\x60\x00\x00"
                          + b"nvs" + b"\0" * 13 + b"\x00\x00\x00\x00")
    assert data[32:64] == (b"\xaa\x50\x40\x02" + struct.pack("<II", 0x24000, 0x2000)
                           + b"server_cert\0\0\0\0\0" + b"\x01\x00\x00\x00")
    assert data[64:] == b"\xff" * (3072 - 64)


def test_md5_row_follows_the_entries():
    data = pt.encode_partition_table([NVS, SERVER_CERT], md5=True)
    entries = data[:64]
    assert data[64:96] == b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(entries).digest()
    assert data[96:] == b"\xff" * (3072 - 96)
    assert len(data) == pt.TABLE_SIZE == 3072


def test_without_md5_the_row_after_the_entries_is_the_end_marker():
    data = pt.encode_partition_table([NVS], md5=False)
    assert data[32:64] == b"\xff" * 32
    assert len(data) == 3072


@pytest.mark.parametrize("md5", [True, False])
def test_empty_table(md5):
    data = pt.encode_partition_table([], md5=md5)
    assert len(data) == 3072
    if md5:
        assert data[:32] == b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(b"").digest()
        assert data[32:] == b"\xff" * (3072 - 32)
    else:
        assert data == b"\xff" * 3072
    assert pt.decode_partition_table(data) == pt.DecodedTable([], md5)


def test_name_of_16_bytes_fills_the_field_without_nul():
    entry = pt.Entry("n" * 16, 0x40, 1, 0x21000, 0x1000)
    data = pt.encode_partition_table([entry])
    assert data[12:28] == b"n" * 16
    assert pt.decode_partition_table(data).entries == [entry]


@pytest.mark.parametrize("entry,message", [
    (pt.Entry("n" * 17, 0x40, 1, 0x21000, 0x1000), "must be 1 to 16 bytes"),
    (pt.Entry("", 0x40, 1, 0x21000, 0x1000), "must be 1 to 16 bytes"),
    (pt.Entry("big", 0x40, 256, 0x21000, 0x1000), "subtype 0x100 out of range"),
    (pt.Entry("big", 0xFF, 1, 0x21000, 0x1000), "type 0xff"),
    (pt.Entry("big", 0x40, 1, 1 << 32, 0x1000), "out of 32-bit range"),
])
def test_encode_refuses_entries_it_cannot_hold(entry, message):
    with pytest.raises(FormatError, match=message.replace("(", r"\(")):
        pt.encode_partition_table([entry])


@pytest.mark.parametrize("name", ["cert\u00e9", "cert\0x"], ids=["non-ascii", "nul-inside"])
def test_encode_refuses_a_name_it_cannot_write_with_format_error(name):
    # FormatError is the documented error for values that cannot be encoded: a non-ASCII name
    # cannot be written, and a NUL inside the name would read back as a shorter name.
    with pytest.raises(FormatError):
        pt.encode_partition_table([pt.Entry(name, 0x40, 1, 0x21000, 0x1000)])


def _entries(n):
    return [pt.Entry(f"p{i}", 0x40, i % 256, 0x100000 + i * 0x1000, 0x1000) for i in range(n)]


def test_94_entries_fit_with_md5_and_an_end_marker():
    assert pt.MAX_ENTRIES == 94
    data = pt.encode_partition_table(_entries(94), md5=True)
    assert len(data) == 3072
    assert data[94 * 32:94 * 32 + 2] == b"\xeb\xeb"
    assert data[95 * 32:] == b"\xff" * 32          # the end marker, the last row
    decoded = pt.decode_partition_table(data)
    assert decoded.entries == _entries(94) and decoded.md5 is True


@pytest.mark.parametrize("md5", [True, False])
def test_95_entries_are_refused(md5):
    with pytest.raises(FormatError, match="95 entries, at most 94 fit"):
        pt.encode_partition_table(_entries(95), md5=md5)


def test_decode_reads_entries_and_md5_back():
    data = pt.encode_partition_table([NVS, SERVER_CERT], md5=True)
    assert pt.decode_partition_table(data) == pt.DecodedTable([NVS, SERVER_CERT], True)
    data = pt.encode_partition_table([NVS, SERVER_CERT], md5=False)
    assert pt.decode_partition_table(data) == pt.DecodedTable([NVS, SERVER_CERT], False)


@pytest.mark.parametrize("row", [0, 1])
def test_decode_bad_magic_names_the_row(row):
    data = bytearray(pt.encode_partition_table([NVS, SERVER_CERT]))
    data[row * 32:row * 32 + 2] = b"\xaa\x51"
    with pytest.raises(FormatError) as exc:
        pt.decode_partition_table(bytes(data))
    assert exc.value.offset == row * 32
    assert str(exc.value) == f"at offset 0x{row * 32:x}: partition table: row magic aa51, expected aa50"


def test_decode_wrong_md5_names_the_md5_row():
    data = bytearray(pt.encode_partition_table([NVS, SERVER_CERT]))
    data[8] ^= 0x01                      # change nvs's size; the MD5 no longer matches
    with pytest.raises(FormatError) as exc:
        pt.decode_partition_table(bytes(data))
    assert exc.value.offset == 64
    assert "MD5 row does not match the entries" in str(exc.value)


def test_decode_corrupted_md5_digest():
    data = bytearray(pt.encode_partition_table([NVS]))
    data[63] ^= 0xFF
    with pytest.raises(FormatError, match="MD5") as exc:
        pt.decode_partition_table(bytes(data))
    assert exc.value.offset == 32


def test_decode_without_end_marker():
    row = pt.ENTRY.pack(b"\xaa\x50", 0x40, 1, 0x21000, 0x1000, b"x".ljust(16, b"\0"), 0)
    with pytest.raises(FormatError, match="no end marker") as exc:
        pt.decode_partition_table(row * 96)
    assert exc.value.offset == 3072
    with pytest.raises(FormatError, match="no end marker") as exc:
        pt.decode_partition_table(row * 2)          # cut short
    assert exc.value.offset == 64


def test_decode_refuses_data_after_the_md5_row():
    data = bytearray(pt.encode_partition_table([NVS]))
    data[64] = 0xAA
    with pytest.raises(FormatError, match="data after the MD5 row") as exc:
        pt.decode_partition_table(bytes(data))
    assert exc.value.offset == 64


@pytest.mark.parametrize("ptype,subtype,tname,sname", [
    (0x00, 0x10, "app", "ota_0"), (0x00, 0x1F, "app", "ota_15"), (0x00, 0x20, "app", "test"),
    (0x01, 0x81, "data", "fat"), (0x01, 0x02, "data", "nvs"), (0x40, 8, "0x40", "8"),
])
def test_type_and_subtype_names(ptype, subtype, tname, sname):
    assert pt.type_name(ptype) == tname
    assert pt.subtype_name(ptype, subtype) == sname


# --- boards: layout checks -------------------------------------------------------------------

def test_duplicate_subtypes_build_with_a_warning(reference, registry, tmp_path):
    folder = reference / "partition_table" / "v2.2.1.0_esp8266" / "module_esp8266_default"
    board = board_from_text(tmp_path, at_customize_board(folder), name="esp8266.toml", registry=registry)
    (warning,) = [w for w in board.warnings if "strapping pin" not in w]   # TX on GPIO15 warns too (test_pins.py)
    assert "at_customize.partitions[wpa2_cert].subtype = 8" in warning
    assert "partition factory_param" in warning
    assert_same_bytes(build_artifacts(board)["at_customize.bin"], (folder / "at_customize.bin").read_bytes())


def test_partition_outside_the_region_is_refused(reference, registry, tmp_path):
    folder = reference / "partition_table" / "v2.4.2.0" / "module_esp32-d2wd"
    text = at_customize_board(folder).replace("offset = 0x3b000", "offset = 0x7f000")   # mqtt_ca
    with pytest.raises(BoardError) as exc:
        board_from_text(tmp_path, text, name="d2wd.toml", registry=registry)
    assert "at_customize.partitions[mqtt_ca].offset" in str(exc.value)
    assert "0x7f000-0x81000 is outside the AT partition space 0x21000-0x80000" in str(exc.value)


# --- conformance: every family folder of both releases ---------------------------------------

def _families():
    base = reference_dir() / "partition_table"
    folders = sorted(p for p in base.glob("*/*") if p.is_dir()) if base.is_dir() else []
    return [pytest.param(f.relative_to(base).as_posix(), id=f.relative_to(base).as_posix())
            for f in folders] or [pytest.param(None, id="reference-absent")]


FAMILIES = _families()


def test_there_are_17_families(reference):
    assert len(FAMILIES) == 17


@pytest.mark.parametrize("family", FAMILIES)
def test_at_customize_through_a_board(reference, registry, tmp_path, family):
    folder = reference / "partition_table" / family
    board = board_from_text(tmp_path, at_customize_board(folder), name="layout.toml", registry=registry)
    offset, size = at_customize_region(folder)
    assert (board.at_customize_offset, board.at_customize_size) == (offset, size)
    out = build_artifacts(board)
    expected = (folder / "at_customize.bin").read_bytes()
    assert len(expected) == 3072
    assert_same_bytes(out["at_customize.bin"], expected, f"{family}/at_customize.bin")
    # Only factory_param has content in this board; every other partition is just listed.
    assert set(out) == {"at_customize.bin", "customized_partitions/factory_param.bin",
                        f"customized_partitions/factory_param_{board.module_name}.bin", "download.config", "flash_map.svg"}
    # The decoder reads the reference back to the CSV's rows.
    decoded = pt.decode_partition_table(expected)
    assert decoded.md5 is True
    assert [(e.name, e.offset, e.size) for e in decoded.entries] == \
        [(r["name"], r["offset"], r["size_bytes"]) for r in read_partition_csv(folder / "at_customize.csv")]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("filename,md5", [("partition-table.bin", True), ("partition-table_nomd5.bin", False)])
def test_main_table_decodes_and_reencodes(reference, family, filename, md5):
    folder = reference / "partition_table" / family
    data = (folder / filename).read_bytes()
    decoded = pt.decode_partition_table(data)
    assert decoded.md5 is md5
    assert_same_bytes(pt.encode_partition_table(decoded.entries, md5=md5), data, f"{family}/{filename}")
    # The main table's at_customize entry (type 0x40, subtype 0) is the region of the board.
    at = [e for e in decoded.entries if e.name == "at_customize"]
    assert len(at) == 1 and (at[0].type, at[0].subtype) == (0x40, 0)
    assert (at[0].offset, at[0].size) == at_customize_region(folder)
