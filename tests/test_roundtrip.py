"""Property tests: every encoder's output decodes to its input, and no decoder crashes.

The fuzz half feeds arbitrary bytes (and bytes that start like each format, to get past the
magic checks) to every decoder: each must return or raise FormatError, never anything else.
"""
from __future__ import annotations

import json
import string
import struct
from collections import OrderedDict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atfactory import ble_data, factory_param as fp, partition_table as pt, pki
from atfactory.chips import CHIPS, FLASH_MODES
from atfactory.download_config import MAX_OFFSET, DownloadConfig, decode_download_config, encode_download_config
from atfactory.errors import ContentError, FormatError
from helpers import GATT_COLUMNS

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ASCII_NO_NUL = st.characters(min_codepoint=1, max_codepoint=127)


# --- factory_param ------------------------------------------------------------------------------

def _field_strategy(field):
    if field.kind == "str":
        return st.text(alphabet=ASCII_NO_NUL, max_size=field.size - 1)
    bits = 8 * field.size
    if field.name in fp.SIGNED_FIELDS:       # read back signed: -1 means "none"
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return st.integers(0, (1 << bits) - 1)


FACTORY_PARAM_VALUES = st.fixed_dictionaries({f.name: _field_strategy(f) for f in fp.FIELDS})


@PROPERTY
@given(FACTORY_PARAM_VALUES)
def test_factory_param_round_trip(values):
    values = dict(values, magic_flag=fp.MAGIC)     # the decoder checks the magic
    data = fp.encode_factory_param(values)
    assert len(data) == 4096
    assert data[22:24] == b"\xff\xff" and data[88:] == b"\xff" * 4008
    assert fp.decode_factory_param(data) == values


# --- partition tables ---------------------------------------------------------------------------

ENTRIES = st.builds(
    pt.Entry,
    name=st.text(alphabet=ASCII_NO_NUL, min_size=1, max_size=16),
    type=st.integers(0, 0xFE), subtype=st.integers(0, 0xFF),
    offset=st.integers(0, 0xFFFFFFFF), size=st.integers(0, 0xFFFFFFFF), flags=st.integers(0, 0xFFFFFFFF),
)


@PROPERTY
@given(st.lists(ENTRIES, max_size=pt.MAX_ENTRIES), st.booleans())
def test_partition_table_round_trip(entries, md5):
    data = pt.encode_partition_table(entries, md5=md5)
    assert len(data) == 3072
    assert pt.decode_partition_table(data) == pt.DecodedTable(entries, md5)
    # Decoding what was decoded gives the same table again.
    assert pt.encode_partition_table(pt.decode_partition_table(data).entries, md5=md5) == data


# --- PKI ------------------------------------------------------------------------------------------

ITEMS = st.builds(pki.PkiItem, type=st.integers(0, 255), id=st.integers(0, 255),
                  content=st.binary(max_size=200))


@PROPERTY
@given(st.lists(ITEMS, max_size=12))
def test_pki_items_round_trip(items):
    data = pki.encode_pki_items(items)
    assert len(data) % 4 == 0
    assert len(data) == pki.pki_size(len(i.content) for i in items)
    assert pki.decode_pki(data) == items


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from([1, 2, 3]), st.binary(max_size=64)), max_size=12))
def test_pki_typed_contents_group_and_number(pairs):
    expected, groups = [], OrderedDict()
    for ptype, content in pairs:
        groups.setdefault(ptype, []).append(content)
    for ptype, contents in groups.items():
        expected += [pki.PkiItem(ptype, n, c) for n, c in enumerate(contents)]
    assert pki.decode_pki(pki.encode_pki(pairs)) == expected


# --- ble_data -------------------------------------------------------------------------------------

HEX = st.text(alphabet="0123456789ABCDEF", max_size=40)


@st.composite
def ble_rows(draw):
    order = draw(st.permutations(ble_data.COLUMNS))
    rows = []
    for n in range(draw(st.integers(0, 8))):
        values = {
            "index": n, "uuid_len": draw(st.sampled_from(ble_data.UUID_LENS)),
            "uuid": draw(HEX), "perm": draw(st.integers(0, 0xFFFF)),
            "val_max_len": draw(st.integers(0, 512)), "val_cur_len": draw(st.integers(0, 512)),
            "value": draw(HEX),
        }
        rows.append(OrderedDict((k, values[k]) for k in order))
    return rows


@PROPERTY
@given(ble_rows())
def test_ble_data_round_trip(rows):
    data = ble_data.encode_ble_data(rows)
    assert data[2:4] == b"\x27\x95"
    assert int.from_bytes(data[:2], "little") == len(data) - 4
    decoded = ble_data.decode_ble_data(data)
    assert decoded == rows
    assert [list(r) for r in decoded] == [list(r) for r in rows]      # key order kept


@st.composite
def gatt_tables(draw):
    """Valid GATT tables: a service, then characteristics (declaration, value, descriptors)."""
    rows = []

    def add(uuid_len, uuid, value_bytes, max_len=None):
        max_len = draw(st.integers(len(value_bytes), 512)) if max_len is None else max_len
        value = value_bytes.hex().upper()
        uuid_hex = format(uuid, "X")
        rows.append(OrderedDict([
            ("index", len(rows)), ("uuid_len", uuid_len),
            ("uuid", uuid_hex if len(uuid_hex) % 2 == 0 else "0" + uuid_hex),
            ("perm", draw(st.integers(0, 0xFFFF))), ("val_max_len", max_len),
            ("val_cur_len", draw(st.integers(0, max_len))), ("value", value),
        ]))

    add(16, 0x2800, draw(st.binary(min_size=2, max_size=16)))
    for _ in range(draw(st.integers(0, 4))):
        add(16, 0x2803, draw(st.binary(min_size=1, max_size=1)))
        if draw(st.booleans()):
            add(128, draw(st.integers(1, (1 << 128) - 1)), draw(st.binary(max_size=20)))
        else:
            add(16, draw(st.integers(0xC000, 0xCFFF)), draw(st.binary(max_size=20)))
        for _ in range(draw(st.integers(0, 2))):
            add(16, draw(st.integers(0x2900, 0x29FF)), draw(st.binary(max_size=4)))
    return rows


@PROPERTY
@given(gatt_tables())
def test_gatt_csv_round_trip(rows):
    text = ble_data.write_gatt_csv(rows)
    assert ble_data.read_gatt_csv(text) == rows
    assert ble_data.decode_ble_data(ble_data.encode_ble_data(ble_data.read_gatt_csv(text))) == rows


# --- download.config ------------------------------------------------------------------------------

FLASH_SIZES = sorted({s for chip in CHIPS.values() for s in chip.flash_sizes})
FREQS = sorted({f for chip in CHIPS.values() for f in chip.flash_freqs})
PATHS = st.text(alphabet=string.ascii_letters + string.digits + "_-./", min_size=1, max_size=40)
CONFIGS = st.builds(
    DownloadConfig,
    flash_mode=st.sampled_from(sorted(FLASH_MODES)), flash_freq=st.sampled_from(FREQS),
    flash_size=st.sampled_from(FLASH_SIZES),
    entries=st.lists(st.tuples(st.integers(0, MAX_OFFSET - 1), PATHS), max_size=20).map(tuple),
)


@PROPERTY
@given(CONFIGS)
def test_download_config_round_trip(config):
    data = encode_download_config(config)
    assert data.endswith(b"\n") and data.count(b"\n") == 1
    assert decode_download_config(data) == config


# --- fuzz: every decoder returns or raises FormatError ---------------------------------------------

def decodes_or_format_error(decoder, data):
    """Run ``decoder``; any exception but FormatError fails the test (hypothesis shows the input)."""
    try:
        decoder(data)
    except FormatError as err:
        assert str(err)


DECODERS = {
    "factory_param": fp.decode_factory_param,
    "partition_table": pt.decode_partition_table,
    "pki": pki.decode_pki,
    "ble_data": ble_data.decode_ble_data,
    "download_config": decode_download_config,
}


@FUZZ
@given(st.sampled_from(sorted(DECODERS)), st.binary(max_size=400))
def test_fuzz_arbitrary_bytes(name, data):
    decodes_or_format_error(DECODERS[name], data)


# Bytes that start like each format, so that the fuzz gets past the magic checks.

@FUZZ
@given(st.binary(min_size=0, max_size=200), st.sampled_from([0, 1, 86, 88, 200, 4096]))
def test_fuzz_factory_param(tail, pad):
    decodes_or_format_error(fp.decode_factory_param, (b"\xfc\xfc" + tail).ljust(pad, b"\xff"))


PT_ROWS = st.one_of(
    st.binary(min_size=30, max_size=30).map(lambda b: b"\xaa\x50" + b),
    st.binary(min_size=30, max_size=30).map(lambda b: b"\xeb\xeb" + b),
    st.just(b"\xff" * 32),
    st.binary(min_size=0, max_size=32),
)


@FUZZ
@given(st.lists(PT_ROWS, max_size=100))
def test_fuzz_partition_table(rows):
    decodes_or_format_error(pt.decode_partition_table, b"".join(rows))


@FUZZ
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.binary(max_size=300), st.booleans())
def test_fuzz_pki(count, total, body, exact_total):
    if exact_total:
        total = len(body)
    decodes_or_format_error(pki.decode_pki, struct.pack("<2sHI", b"\xf1\xf1", count, total) + body)


@FUZZ
@given(st.one_of(st.binary(max_size=300),
                 st.text(alphabet='{}[]":, 0123456789.-eEtruefalsnNI\\Service', max_size=300).map(str.encode),
                 st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.floats(),
                              lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                              max_leaves=20).map(lambda v: json.dumps({"Service": v}).encode())),
       st.booleans())
def test_fuzz_ble_data(body, exact_length):
    length = len(body) if exact_length else min(len(body) + 3, 0xFFFF)
    decodes_or_format_error(ble_data.decode_ble_data, length.to_bytes(2, "little") + b"\x27\x95" + body)


@FUZZ
@given(st.lists(st.one_of(st.sampled_from(["--flash_mode", "--flash_freq", "--flash_size", "--x", "--",
                                           "0x", "0x1000", "4096", "-1", "0b11", "1_0", "a.bin"]),
                          st.text(max_size=10)), max_size=20),
       st.sampled_from([" ", "\n", "\t", "  "]))
def test_fuzz_download_config(words, sep):
    data = sep.join(words).encode("utf-8")
    decodes_or_format_error(decode_download_config, data)


GATT_HEADER = GATT_COLUMNS + "\n"
GATT_CELLS = st.one_of(st.sampled_from(["0", "16", "128", "0x2800", "0x2803", "0x2902", "0xC300", "0x01", "512",
                                        "", "30", "ABC", "x", " ", '"', "-1"]), st.text(max_size=6))


@FUZZ
@given(st.lists(st.lists(GATT_CELLS, max_size=8).map(",".join), max_size=8), st.sampled_from(["\n", "\r\n"]),
       st.booleans())
def test_fuzz_gatt_csv_reader(lines, newline, with_header):
    """A GATT CSV is user input too: read_gatt_csv returns rows or raises ContentError."""
    text = (GATT_HEADER if with_header else "") + newline.join(lines)
    try:
        rows = ble_data.read_gatt_csv(text)
    except ContentError as err:
        assert str(err)
    else:
        assert rows and ble_data.decode_ble_data(ble_data.encode_ble_data(rows)) == rows


# Inputs a random fuzzer is unlikely to build, each a few hundred bytes.

@pytest.mark.parametrize("depth", [10, 1000, 20000])
def test_ble_data_deeply_nested_json_is_a_format_error(depth):
    body = b'{"Service": ' + b"[" * depth + b"]" * depth + b"}"
    decodes_or_format_error(ble_data.decode_ble_data, len(body).to_bytes(2, "little") + b"\x27\x95" + body)


def test_ble_data_huge_number_is_a_format_error():
    body = b'{"Service": [' + b"9" * 5000 + b"]}"
    decodes_or_format_error(ble_data.decode_ble_data, len(body).to_bytes(2, "little") + b"\x27\x95" + body)


def test_download_config_huge_offset_is_a_format_error():
    decodes_or_format_error(decode_download_config, b"--flash_mode dio " + b"9" * 5000 + b" a.bin")
