"""nvs: ESP-IDF NVS partition images (FORMATS-mfg_nvs.md §5), against Espressif's vectors and generator.

Three sources of truth: the 86 reference images in reference/mfg_nvs (families A and B), the
maintained generator esp-idf-nvs-partition-gen 0.1.9 (family B) run in-process as an oracle on
random content, and the format itself, read here by a small independent entry walker
(``_walk``) to check placement and to build corrupt images.
"""
from __future__ import annotations

import csv
import json
import random
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from atfactory import nvs
from atfactory.errors import FormatError

from helpers import nvs_oracle, reference_dir

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- reference vectors -----------------------------------------------------------------------

GENERATOR_FAMILIES = {   # index.json "generator" text -> family (FORMATS-mfg_nvs.md §6)
    "in-tree nvs_partition_gen.py": nvs.FAMILY_A,
    "tools/at.py": nvs.FAMILY_A,
    "esp-idf-nvs-partition-gen 0.1.9": nvs.FAMILY_B,
}


def _family_of(generator: str) -> str:
    families = {family for text, family in GENERATOR_FAMILIES.items() if text in generator}
    assert len(families) == 1, f"no known generator family in {generator!r}"
    return families.pop()


def _vectors():
    index = reference_dir() / "mfg_nvs" / "index.json"
    if not index.is_file():
        return [pytest.param(None, id="reference-absent")]
    return [pytest.param(record, id=record["path"]) for record in json.loads(index.read_text())]


VECTORS = _vectors()
STOCK_WROOM32 = "v5.0.1.0/PLATFORM_ESP32/WROOM-32"
AT_PY = "variants/v5.0.1.0/at_py_modify_bin"


def _csv_rows(path: Path):
    """(row type, key, encoding, value) as the generator reads them: csv.DictReader, '#' lines skipped."""
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(line for line in f if not line.startswith("#")):
            yield row["type"], row["key"], row["encoding"], row["value"]


def _file_resolver(mfg: Path, record: dict):
    """(namespace, key, CSV path) -> the stored input file's bytes (reference README, "Paths inside
    mfg_nvs.csv")."""
    if record["path"] == AT_PY:
        # at.py dumped the stock blobs to ./mfg_nvs/vN.txt, byte-identical copies of the files the
        # stock WROOM-32 CSV names (inputs/variants/v5.0.1.0/at_py_modify_bin/args.txt): resolve
        # each through the stock CSV's row of the same namespace and key.
        stock_record = next(r for r in json.loads((mfg / "index.json").read_text()) if r["path"] == STOCK_WROOM32)
        stock_files, namespace = {}, None
        for kind, key, _, value in _csv_rows(mfg / STOCK_WROOM32 / "mfg_nvs.csv"):
            namespace = key if kind == "namespace" else namespace
            if kind == "file":
                stock_files[namespace, key] = value
        resolve_stock = _file_resolver(mfg, stock_record)
        return lambda namespace, key, _: resolve_stock(namespace, key, stock_files[namespace, key])
    variant = mfg / record["inputs"]
    root = variant if (variant / "raw_data").is_dir() else mfg / "inputs" / record["tag"] / "common"
    prefix = "./components/customized_partitions/"

    def resolve(namespace, key, path):
        assert path.startswith(prefix), path
        return (root / path[len(prefix):]).read_bytes()
    return resolve


def _csv_content(mfg: Path, record: dict):
    """The vector's mfg_nvs.csv as encode_nvs input."""
    resolve = _file_resolver(mfg, record)
    content = []
    for kind, key, encoding, value in _csv_rows(mfg / record["path"] / "mfg_nvs.csv"):
        if kind == "namespace":
            content.append((key, []))
        elif kind == "file":
            assert encoding == "binary"
            content[-1][1].append((key, "blob", resolve(content[-1][0], key, value)))
        else:
            assert kind == "data"
            content[-1][1].append((key, encoding, value if encoding == "string" else int(value)))
    return content


def test_every_vector_is_listed(reference):
    records = [p.values[0] for p in VECTORS]
    assert len(records) == 86
    assert {_family_of(r["generator"]) for r in records} == {"A", "B"}
    for r in records:
        assert (reference / "mfg_nvs" / r["path"] / "mfg_nvs.bin").stat().st_size == r["mfg_nvs_size_bytes"]


@pytest.mark.parametrize("record", VECTORS)
def test_vector_encodes_byte_for_byte(reference, record):
    mfg = reference / "mfg_nvs"
    content = _csv_content(mfg, record)
    expected = (mfg / record["path"] / "mfg_nvs.bin").read_bytes()
    size, family = record["mfg_nvs_size_bytes"], _family_of(record["generator"])
    assert nvs.encode_nvs(content, size, family) == expected
    # required_size is tight: the data pages fit it exactly, one page less does not
    needed = nvs.required_size(content)
    assert nvs.encode_nvs(content, needed, family)[:needed - 4096] == expected[:needed - 4096]
    if needed > nvs.MIN_SIZE:
        with pytest.raises(FormatError, match=f"needs {needed} bytes"):
            nvs.encode_nvs(content, needed - 4096, family)


@pytest.mark.parametrize("record", VECTORS)
def test_vector_decodes_to_its_csv(reference, record):
    mfg = reference / "mfg_nvs"
    image = nvs.decode_nvs((mfg / record["path"] / "mfg_nvs.bin").read_bytes())
    assert image.namespace_items() == _csv_content(mfg, record)
    assert image.family == _family_of(record["generator"])
    assert [ns.index for ns in image.namespaces] == list(range(1, len(image.namespaces) + 1))
    assert [p.sequence for p in image.pages if p.state != "EMPTY"] == \
        list(range(len([p for p in image.pages if p.state != "EMPTY"])))


def test_worked_example_of_the_spec(reference):
    # FORMATS-mfg_nvs.md §5: MINI-1 page 4, entry 40 defines factory_param as namespace 10.
    data = (reference / "mfg_nvs" / "v5.0.1.0/PLATFORM_ESP32C3/MINI-1/mfg_nvs.bin").read_bytes()
    image = nvs.decode_nvs(data)
    factory = next(ns for ns in image.namespaces if ns.name == "factory_param")
    assert (factory.index, factory.offset) == (10, 0x4000 + 64 + 40 * 32)
    assert data[factory.offset:factory.offset + 8] == bytes.fromhex("000101FF896F3584")
    items = {i.key: i for i in image.items if i.namespace == "factory_param"}
    assert (items["version"].offset, items["version"].value) == (factory.offset + 32, 4)
    assert (items["module_name"].offset, items["module_name"].value) == (factory.offset + 64, "MINI-1")
    assert image.pages[4].state == "ACTIVE" and image.pages[5].state == "EMPTY"


# --- an independent reader of entries, for placement checks and corrupt images ---------------

def _walk(data: bytes):
    """(page, slot, ns, type, span, chunk, key, data8, offset) of each written entry, by the bitmap."""
    for page in range(len(data) // 4096):
        base = page * 4096
        if data[base:base + 4] == b"\xff" * 4:
            continue
        slot = 0
        while slot < 126:
            if (data[base + 32 + slot // 4] >> (2 * (slot % 4))) & 3 != 2:
                slot += 1
                continue
            offset = base + 64 + 32 * slot
            ns, code, span, chunk = data[offset:offset + 4]
            yield page, slot, ns, code, span, chunk, data[offset + 8:offset + 24].rstrip(b"\0"), \
                data[offset + 24:offset + 32], offset
            slot += span


def _chunks(data: bytes):
    return [(page, slot, chunk, struct.unpack_from("<H", data8)[0])
            for page, slot, _, code, _, chunk, _, data8, _ in _walk(data) if code == 0x42]


def _index(data: bytes):
    return [(page, slot) + struct.unpack_from("<IB", data8)
            for page, slot, _, code, _, _, _, data8, _ in _walk(data) if code == 0x48]


def _seal(buf: bytearray, offset: int) -> None:
    """Recompute the CRC of the entry at ``offset`` after a test changed it."""
    struct.pack_into("<I", buf, offset + 4, zlib.crc32(bytes(buf[offset + 8:offset + 32]),
                                                       zlib.crc32(bytes(buf[offset:offset + 4]), 0xFFFFFFFF)))


def _seal_page(buf: bytearray, page: int) -> None:
    base = page * 4096
    struct.pack_into("<I", buf, base + 28, zlib.crc32(bytes(buf[base + 4:base + 28]), 0xFFFFFFFF))


def _bounds(type_name):
    fmt = nvs.INTEGER_FORMATS[type_name][1]
    bits = 8 * struct.calcsize(fmt)
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if fmt[1].islower() else (0, (1 << bits) - 1)


def _u8s(n: int):
    return [(f"k{i}", "u8", i % 256) for i in range(n)]


# --- placement (§5 examples) -------------------------------------------------------------------

def test_blob_after_one_entry_is_split_3968_and_1032():
    data = nvs.encode_nvs([("ns", [("blob", "blob", bytes(5000))])], 0x4000, "B")
    assert _chunks(data) == [(0, 1, 0, 3968), (1, 0, 1, 1032)]
    assert _index(data) == [(1, 34, 5000, 2)]


def test_blob_with_one_free_entry_starts_with_an_empty_chunk():
    data = nvs.encode_nvs([("ns", _u8s(124) + [("blob", "blob", bytes(5000))])], 0x5000, "B")
    assert _chunks(data) == [(0, 125, 0, 0), (1, 0, 1, 4000), (2, 0, 2, 1000)]
    assert _index(data) == [(2, 33, 5000, 3)]


def test_blob_on_a_full_page_starts_on_the_next_one():
    data = nvs.encode_nvs([("ns", _u8s(125) + [("blob", "blob", bytes(10))])], 0x4000, "B")
    assert _chunks(data) == [(1, 0, 0, 10)] and _index(data) == [(1, 2, 10, 1)]


def test_blob_filling_its_page_puts_the_index_on_the_next():
    data = nvs.encode_nvs([("ns", [("blob", "blob", bytes(3968))])], 0x3000, "B")
    assert _chunks(data) == [(0, 1, 0, 3968)] and _index(data) == [(1, 0, 3968, 1)]
    assert nvs.decode_nvs(data).pages[0].state == "FULL"


def test_empty_blob_is_one_empty_chunk_and_an_index():
    data = nvs.encode_nvs([("ns", [("blob", "blob", b"")])], 0x3000, "A")
    assert _chunks(data) == [(0, 1, 0, 0)] and _index(data) == [(0, 2, 0, 1)]
    assert nvs.decode_nvs(data).items[0].value == b""


def test_a_string_never_takes_the_last_free_entry_but_an_integer_does():
    data = nvs.encode_nvs([("ns", _u8s(123) + [("s", "string", "x" * 31), ("last", "u8", 7)])], 0x3000, "B")
    where = {key: (page, slot) for page, slot, _, _, _, _, key, _, _ in _walk(data)}
    assert where[b"s"] == (1, 0) and where[b"last"] == (1, 2)
    data = nvs.encode_nvs([("ns", _u8s(124) + [("last", "u8", 7), ("next", "u8", 8)])], 0x3000, "B")
    where = {key: (page, slot) for page, slot, _, _, _, _, key, _, _ in _walk(data)}
    assert where[b"last"] == (0, 125) and where[b"next"] == (1, 0)


def test_longest_string_fills_a_fresh_page_but_one_entry():
    data = nvs.encode_nvs([("ns", [("s", "string", "y" * nvs.MAX_STRING_CHARS)])], 0x3000, "B")
    assert [(page, slot, span) for page, slot, _, code, span, *_ in _walk(data) if code == 0x21] == [(1, 0, 125)]
    assert nvs.decode_nvs(data).items[0].value == "y" * 3967


def test_family_a_and_b_differ_only_in_page_states_after_the_last_entry():
    content = [("ns", [("a", "u32", 1), ("b", "blob", bytes(range(256)) * 20)])]
    a, b = nvs.encode_nvs(content, 0x8000, "A"), nvs.encode_nvs(content, 0x8000, "B")
    assert [p.state for p in nvs.decode_nvs(b).pages] == ["FULL", "ACTIVE"] + ["EMPTY"] * 6
    assert [p.state for p in nvs.decode_nvs(a).pages] == ["FULL"] * 7 + ["EMPTY"]
    assert a[4096 + 4:7 * 4096] == b[4096 + 4:2 * 4096] + a[2 * 4096:7 * 4096]
    assert b[2 * 4096:] == b"\xff" * 6 * 4096 and a[7 * 4096:] == b"\xff" * 4096
    assert a[:4096] == b[:4096] and b[4096:4100] == b"\xfe\xff\xff\xff" and a[4096:4100] == b"\xfc\xff\xff\xff"


def test_required_size_counts_the_reserved_page_and_the_minimum():
    assert nvs.required_size([]) == 0x3000
    assert nvs.required_size([("ns", [("b", "blob", bytes(3968))])]) == 0x3000
    assert nvs.required_size([("ns", [("b", "blob", bytes(3969))] + _u8s(200))]) == 0x4000
    # the namespace entry and 125 + 126 integers fill exactly two pages; one more opens a third
    assert nvs.required_size([("ns", _u8s(125 + 126))]) == 0x3000
    assert nvs.required_size([("ns", _u8s(125 + 126 + 1))]) == 0x4000


def test_empty_content_and_erased_images():
    for family in "AB":
        image = nvs.decode_nvs(nvs.encode_nvs([], 0x3000, family))
        assert (image.items, image.namespaces, image.family) == ((), (), family)
    erased = nvs.decode_nvs(b"\xff" * 0x5000)
    assert (erased.items, erased.family) == ((), None)
    assert [p.state for p in erased.pages] == ["EMPTY"] * 5


def test_pages_are_read_in_sequence_order():
    content = [("one", [("a", "string", "x" * 3000)]), ("two", [("b", "string", "y" * 3000)])]
    data = bytearray(nvs.encode_nvs(content, 0x4000, "B"))
    swapped = bytes(data[4096:8192] + data[:4096] + data[8192:])
    image = nvs.decode_nvs(swapped)
    assert image.namespace_items() == nvs.decode_nvs(bytes(data)).namespace_items()
    # "one" and its string fill 96 entries of page 0; "two" is defined there, its string opens page 1
    assert [i.offset for i in image.items] == [4096 + 64 + 32, 64]
    assert image.family is None


def test_mapping_input_and_types_at_their_bounds():
    content = {"ints": [(f"{name}{end}", name, _bounds(name)[end]) for name in nvs.INTEGER_FORMATS for end in (0, 1)]}
    data = nvs.encode_nvs(content, 0x3000, "B")
    image = nvs.decode_nvs(data)
    assert image.namespace_items() == [("ints", content["ints"])]
    values = {i.key: (i.value, data[i.offset + 24:i.offset + 32]) for i in image.items}
    assert values["i80"] == (-128, b"\x80" + b"\xff" * 7)
    assert values["u161"] == (65535, b"\xff" * 8)
    assert values["i320"] == (-(1 << 31), b"\0\0\0\x80" + b"\xff" * 4)
    assert values["i641"] == ((1 << 63) - 1, b"\xff" * 7 + b"\x7f")
    assert values["u640"] == (0, bytes(8))


def test_non_ascii_strings_and_names_are_utf8():
    content = [("späße", [("clé", "string", "Grüße, 東京"), ("κλειδί", "blob", "ü".encode())])]
    data = nvs.encode_nvs(content, 0x3000, "A")
    assert nvs.decode_nvs(data).namespace_items() == content
    assert "Grüße, 東京".encode() + b"\0" in data


# --- property tests: round trip, and byte identity with esp-idf-nvs-partition-gen 0.1.9 --------

# The oracle adds Wi-Fi entries after these keys (0.1.9+), so they are kept out of oracle content.
ORACLE_SPECIAL_KEYS = {"sta.ssid", "sta.pswd", "ap.ssid", "ap.passwd", "ap.authmode"}
NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
BLOB_SIZES = [0, 1, 31, 32, 33, 992, 3967, 3968, 3969, 4000, 4001, 7968, 8000, 8001]
STRING_LENGTHS = [0, 1, 30, 31, 32, 33, 991, 3935, 3936, 3937, 3967]


@st.composite
def integer_items(draw):
    type_name = draw(st.sampled_from(sorted(nvs.INTEGER_FORMATS)))
    low, high = _bounds(type_name)
    return type_name, draw(st.one_of(st.sampled_from([low, high, 0, min(high, 1)]), st.integers(low, high)))


def _text_of_length(n, char):
    return char * (n // len(char.encode()))


strings = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40),
    st.builds(_text_of_length, st.sampled_from(STRING_LENGTHS), st.sampled_from(["a", "é", "東"])),
)
blobs = st.builds(lambda n, seed: random.Random(seed).randbytes(n),
                  st.one_of(st.sampled_from(BLOB_SIZES), st.integers(0, 9000)), st.integers(0, 2 ** 32))
# A run of u8 entries moves the next item to any slot of a page, which reaches the one-free-entry
# and exact-fit cases far more often than random sizes alone.
fillers = st.integers(0, 130)


@st.composite
def namespace_contents(draw, names=st.text(NAME_CHARS, min_size=1, max_size=15)):
    count = draw(st.integers(0, 4))
    ns_names = draw(st.lists(names, min_size=count, max_size=count, unique=True))
    content = []
    for ns_name in ns_names:
        items = []
        keys = names.filter(lambda k: k not in ORACLE_SPECIAL_KEYS and not k.startswith("~"))
        for n, key in enumerate(draw(st.lists(keys, max_size=8, unique=True))):
            kind = draw(st.sampled_from(["int", "string", "blob", "filler"]))
            if kind == "int":
                items.append((key,) + draw(integer_items()))
            elif kind == "string":
                items.append((key, "string", draw(strings)))
            elif kind == "blob":
                items.append((key, "blob", draw(blobs)))
            else:
                items.extend((f"~{n}.{i}", "u8", i % 256) for i in range(draw(fillers)))
        content.append((ns_name, items))
    return content


utf8_names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), min_size=1,
                     max_size=15).filter(lambda s: len(s.encode()) <= 15)


@PROPERTY
@given(content=namespace_contents(), extra_pages=st.integers(-1, 2))
def test_same_bytes_as_esp_idf_nvs_partition_gen(content, extra_pages):
    from esp_idf_nvs_partition_gen.nvs_partition_gen import InsufficientSizeError

    size = nvs.required_size(content) + extra_pages * 4096
    assume(size >= nvs.MIN_SIZE)
    if extra_pages < 0:
        with pytest.raises(FormatError, match=f"needs {size + 4096} bytes"):
            nvs.encode_nvs(content, size, "B")
        with pytest.raises(InsufficientSizeError):
            nvs_oracle(content, size)
    else:
        assert nvs.encode_nvs(content, size, "B") == nvs_oracle(content, size)


@PROPERTY
@given(content=namespace_contents(names=utf8_names), family=st.sampled_from("AB"), extra_pages=st.integers(0, 2))
def test_decode_inverts_encode(content, family, extra_pages):
    size = nvs.required_size(content) + extra_pages * 4096
    image = nvs.decode_nvs(nvs.encode_nvs(content, size, family))
    assert image.namespace_items() == content
    assert image.family == family
    assert len(image.pages) == size // 4096


# --- bad input to the encoder --------------------------------------------------------------------

@pytest.mark.parametrize("content,size,family,words", [
    ([("ns", [("k" * 16, "u8", 1)])], 0x3000, "B", "key 'kkkkkkkkkkkkkkkk' is 16 bytes long; it must be 1 to 15"),
    ([("ns", [("", "u8", 1)])], 0x3000, "B", "key '' is 0 bytes long"),
    ([("ns", [("é" * 8, "u8", 1)])], 0x3000, "B", "is 16 bytes long"),
    ([("ns", [("a\0b", "u8", 1)])], 0x3000, "B", "without NUL"),
    ([("ns", [(b"key", "u8", 1)])], 0x3000, "B", "key b'key' and type 'u8' must be strings"),
    ([("n" * 16, [])], 0x3000, "B", "namespace name 'nnnnnnnnnnnnnnnn' is 16 bytes long"),
    ([("", [])], 0x3000, "B", "namespace name '' is 0 bytes long"),
    ([(7, [])], 0x3000, "B", "namespace name 7 is not a string"),
    ([("ns", []), ("ns", [])], 0x3000, "B", "namespace 'ns' is given twice"),
    ([("ns", [("k", "u8", 1), ("k", "string", "x")])], 0x3000, "B", "key 'k' is given twice"),
    ([("ns", [("k", "u8", 256)])], 0x3000, "B", "u8 value 256 is out of range 0..255"),
    ([("ns", [("k", "u8", -1)])], 0x3000, "B", "u8 value -1 is out of range 0..255"),
    ([("ns", [("k", "i8", 200)])], 0x3000, "B", "i8 value 200 is out of range -128..127"),
    ([("ns", [("k", "i32", 3000000000)])], 0x3000, "B", "i32 value 3000000000 is out of range"),
    ([("ns", [("k", "u64", 1 << 64)])], 0x3000, "B", "is out of range 0..18446744073709551615"),
    ([("ns", [("k", "i64", -(1 << 63) - 1)])], 0x3000, "B", "is out of range -9223372036854775808.."),
    ([("ns", [("k", "u8", True)])], 0x3000, "B", "u8 value True is not an integer"),
    ([("ns", [("k", "u8", 1.0)])], 0x3000, "B", "u8 value 1.0 is not an integer"),
    ([("ns", [("k", "u8", "1")])], 0x3000, "B", "u8 value '1' is not an integer"),
    ([("ns", [("k", "u8", [1])])], 0x3000, "B", "u8 value [1] is not an integer"),
    ([("ns", [("k", "string", "x" * 3968)])], 0x3000, "B", "at most 3967 characters (UTF-8 bytes) + NUL"),
    ([("ns", [("k", "string", "é" * 1984)])], 0x3000, "B", "the string is 3968 bytes"),
    ([("ns", [("k", "string", "a\0b")])], 0x3000, "B", "the string holds a NUL"),
    ([("ns", [("k", "string", b"x")])], 0x3000, "B", "string value b'x' is not a str"),
    ([("ns", [("k", "string", "\udc80")])], 0x3000, "B", "is not a str that UTF-8 can write"),
    ([("ns", [("k", "blob", "text")])], 0x3000, "B", "blob value of type str is not bytes"),
    ([("ns", [("k", "blob", 5)])], 0x3000, "B", "blob value of type int is not bytes"),
    ([("ns", [("k", "float", 1.5)])], 0x3000, "B", "unknown type 'float'; expected one of u8, i8"),
    ([("ns", [("k", ["u8"], 1)])], 0x3000, "B", "key 'k' and type ['u8'] must be strings"),
    ([("ns", [("k", "u8")])], 0x3000, "B", "('k', 'u8') is not a (key, type, value) triple"),
    ([("ns",)], 0x3000, "B", "('ns',) is not a (namespace name, items) pair"),
    ([], 0x3000, "C", "unknown generator family 'C'"),
    ([], 0x2000, "B", "partition size 8192 must be a multiple of 4096 and at least 0x3000"),
    ([], 0x3001, "A", "partition size 12289 must be a multiple of 4096"),
    ([], "0x3000", "A", "partition size '0x3000' must be"),
    ([("ns", [("b", "blob", bytes(8000))])], 0x3000, "B", "the content needs 16384 bytes (3 pages of data + 1 "
                                                          "reserved), the partition has 12288"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 2 else None)
def test_encoder_refuses(content, size, family, words):
    with pytest.raises(FormatError) as caught:
        nvs.encode_nvs(content, size, family)
    assert words in str(caught.value)
    assert caught.value.offset is None


def test_content_too_big_says_what_it_needs():
    content = [("ns", [("b", "blob", bytes(20000))])]
    needed = nvs.required_size(content)
    with pytest.raises(FormatError, match=f"needs {needed} bytes .* the partition has {needed - 4096}"):
        nvs.encode_nvs(content, needed - 4096, "A")
    assert len(nvs.encode_nvs(content, needed, "A")) == needed


def test_namespace_and_chunk_limits():
    too_many = [(f"n{i}", []) for i in range(nvs.MAX_NAMESPACES + 1)]
    with pytest.raises(FormatError, match="more than 254 namespaces"):
        nvs.required_size(too_many)
    assert nvs.required_size(too_many[:-1]) == 0x4000
    # after the namespace entry: 3968 bytes on page 0, then 4000 a page
    with pytest.raises(FormatError, match="takes 129 chunks; the NVS library reads at most 128"):
        nvs.required_size([("ns", [("big", "blob", bytes(3968 + 127 * 4000 + 1))])])
    assert nvs.required_size([("ns", [("big", "blob", bytes(3968 + 127 * 4000))])]) == 130 * 4096


def test_refusals_are_not_remembered_by_the_memo():
    content = [("ns", [("k", "u8", 1)])]
    assert nvs.encode_nvs(content, 0x3000, "B") == nvs.encode_nvs([("ns", [("k", "u8", 1)])], 0x3000, "B")
    for bad in (True, 1.0):
        with pytest.raises(FormatError, match="is not an integer"):
            nvs.encode_nvs([("ns", [("k", "u8", bad)])], 0x3000, "B")


def test_generator_crashes_where_the_encoder_refuses_a_long_string():
    from esp_idf_nvs_partition_gen.nvs_partition_gen import PageFullError

    with pytest.raises(PageFullError):
        nvs_oracle([("ns", [("k", "string", "x" * 3968)])], 0x3000)
    assert nvs_oracle([("ns", [("k", "string", "x" * 3967)])], 0x3000) == \
        nvs.encode_nvs([("ns", [("k", "string", "x" * 3967)])], 0x3000, "B")


# --- bad input to the decoder --------------------------------------------------------------------

BASE = [("ns", [("int", "u16", 513), ("str", "string", "hello"), ("blob", "blob", bytes(range(200)))]),
        ("other", [("blob2", "blob", b"second")])]


def _offsets(data: bytes) -> dict:
    return {(key.decode(), code): offset for *_, code, _, _, key, _, offset in _walk(data)}


def _changed(data: bytes, offset: int, raw: bytes, seal: bool = False, seal_page=None) -> bytes:
    """``data`` with ``raw`` written at ``offset``; the entry there resealed, or a page header."""
    buf = bytearray(data)
    buf[offset:offset + len(raw)] = raw
    if seal:
        _seal(buf, offset - (offset - 64) % 32)
    if seal_page is not None:
        _seal_page(buf, seal_page)
    return bytes(buf)


def _string_payload(data: bytes, entry: int, payload: bytes) -> bytes:
    """The string entry at ``entry`` given other data bytes, with consistent data CRC and entry CRC."""
    buf = bytearray(data)
    buf[entry + 32:entry + 32 + len(payload)] = payload
    struct.pack_into("<HHI", buf, entry + 24, len(payload), 0xFFFF, zlib.crc32(payload, 0xFFFFFFFF))
    _seal(buf, entry)
    return bytes(buf)


def _bitmap_state(data: bytes, slot: int, state: int) -> bytes:
    buf = bytearray(data)
    shift = 2 * (slot % 4)
    buf[32 + slot // 4] = buf[32 + slot // 4] & ~(3 << shift) | (state << shift)
    return bytes(buf)


def _erased(data: bytes, offset: int) -> bytes:
    """``data`` with the entry at ``offset`` erased in the bitmap, data entries included."""
    slot, span = (offset - 64) // 32, data[offset + 2]
    for n in range(slot, slot + span):
        data = _bitmap_state(data, n, 0)
    return data


# name -> (corrupt image, offset the error must name, words it must say), from the base image
DECODE_CASES = {
    "length": lambda d, o: (d[:5000], 4096, "whole number of 4096-byte pages, this one is 5000 bytes"),
    "empty": lambda d, o: (b"", 0, "this one is 0 bytes"),
    "state": lambda d, o: (_changed(d, 0, b"\x12\x34\x56\x78"), 0, "state word 0x78563412"),
    "corrupt page": lambda d, o: (_changed(d, 0, bytes(4)), 0,
                                  "page 0 has state word 0x00000000, not one of EMPTY, ACTIVE, FULL, FREEING"),
    "header crc": lambda d, o: (_changed(d, 4, b"\x07"), 28, "page 0 header CRC is"),
    "version": lambda d, o: (_changed(d, 8, b"\x01", seal_page=0), 8, "format version byte 0x01"),
    "empty page written": lambda d, o: (_changed(d, 0x2000 + 100, b"\0"), 0x2000 + 100,
                                        "page 2 is marked empty but is not erased"),
    "bitmap 01": lambda d, o: (_bitmap_state(d, 1, 1), 32, "bitmap gives entry 1 the invalid state 01"),
    "entry crc": lambda d, o: (_changed(d, o["int", 2] + 24, b"\0"), o["int", 2], "entry CRC is"),
    "span not written": lambda d, o: (_bitmap_state(d, 3, 3), o["str", 0x21],
                                      "spans 2 entries, not all marked written"),
    "unknown type": lambda d, o: (_changed(d, o["int", 2] + 1, b"\x99", True), o["int", 2], "unknown type 0x99"),
    "key unterminated": lambda d, o: (_changed(d, o["int", 2] + 8, b"K" * 16, True), o["int", 2] + 8,
                                      "entry key is not NUL-terminated"),
    "key empty": lambda d, o: (_changed(d, o["int", 2] + 8, bytes(16), True), o["int", 2] + 8, "entry key is empty"),
    "key not utf8": lambda d, o: (_changed(d, o["int", 2] + 8, b"\xff\xfe\0", True), o["int", 2] + 8,
                                  "entry key is not UTF-8"),
    "namespace type": lambda d, o: (_changed(d, o["ns", 1] + 1, b"\x02", True), o["ns", 1],
                                    "namespace definition 'ns' has type 0x02"),
    "one-entry span": lambda d, o: (_changed(d, o["int", 2] + 2, b"\x02", True), o["int", 2],
                                    "one-entry item (type 0x02) has span 2"),
    "string span": lambda d, o: (_changed(d, o["str", 0x21] + 24, b"\x40\0", True), o["str", 0x21],
                                 "entry of 64 data bytes has span 2"),
    "string crc": lambda d, o: (_changed(d, o["str", 0x21] + 32, b"J"), o["str", 0x21],
                                "data CRC of key 'str' does not match its 6 bytes"),
    "string nul": lambda d, o: (_string_payload(d, o["str", 0x21], b"hello!"), o["str", 0x21],
                                "string 'str' is not NUL-terminated"),
    "string empty": lambda d, o: (_string_payload(d, o["str", 0x21], b""), o["str", 0x21],
                                  "entry of 0 data bytes has span 2"),
    "string utf8": lambda d, o: (_string_payload(d, o["str", 0x21], b"h\xe9llo\0"), o["str", 0x21],
                                 "string 'str' is not UTF-8"),
    "undefined namespace": lambda d, o: (_changed(d, o["int", 2], b"\x05", True), o["int", 2],
                                         "namespace index 5, which no entry defines"),
    "namespace index": lambda d, o: (_changed(d, o["ns", 1] + 24, b"\xff", True), o["ns", 1],
                                     "has index 255: out of range"),
    "namespace twice": lambda d, o: (_changed(d, o["other", 1] + 8, b"ns\0\0\0", True), o["other", 1],
                                     "or the name is defined twice"),
    "missing chunk": lambda d, o: (_erased(d, o["blob", 0x42]), o["blob", 0x48],
                                   "blob 'blob' lists 1 chunks from 0, chunk 0 is missing"),
    "chunk elsewhere": lambda d, o: (_changed(d, o["blob", 0x48] + 29, b"\x01", True), o["blob", 0x48],
                                     "lists 1 chunks from 1, chunk 1 is missing"),
    "blob size": lambda d, o: (_changed(d, o["blob", 0x48] + 24, b"\xc9", True), o["blob", 0x48],
                               "index says 201 bytes, its chunks hold 200"),
    # blob2's chunk moved into namespace 1 under the key "blob"
    "chunk twice": lambda d, o: (_changed(_changed(d, o["blob2", 0x42] + 8, b"blob\0"), o["blob2", 0x42], b"\x01",
                                          True), o["blob2", 0x42], "chunk 0 of blob 'blob' appears twice"),
}


@pytest.mark.parametrize("name", sorted(DECODE_CASES))
def test_decoder_refuses(name):
    base = nvs.encode_nvs(BASE, 0x3000, "B")
    assert nvs.decode_nvs(base).namespace_items() == BASE
    data, offset, words = DECODE_CASES[name](base, _offsets(base))
    with pytest.raises(FormatError) as caught:
        nvs.decode_nvs(data)
    assert words in str(caught.value)
    assert caught.value.offset == offset
    assert str(caught.value).startswith(f"at offset 0x{offset:x}: NVS: ")


def test_decoder_refuses_a_span_past_the_page():
    data = nvs.encode_nvs([("ns", _u8s(124) + [("last", "u8", 1)])], 0x3000, "A")
    last = _offsets(data)["last", 1]
    assert last == 64 + 125 * 32
    with pytest.raises(FormatError, match="entry 125 of page 0 has span 2, which runs past the page") as caught:
        nvs.decode_nvs(_changed(data, last + 2, b"\x02", True))
    assert caught.value.offset == last


def test_decoder_takes_bytes_only():
    with pytest.raises(TypeError):
        nvs.decode_nvs(0x3000)
    assert nvs.decode_nvs(bytearray(nvs.encode_nvs(BASE, 0x3000, "A"))).namespace_items() == BASE
    assert nvs.decode_nvs(memoryview(nvs.encode_nvs(BASE, 0x3000, "B"))).family == "B"


def test_version_1_page_and_blob():
    # A version-1 image (which ESP-AT never writes) keeps a blob like a string, as one 0x41 item.
    data = bytearray(nvs.encode_nvs(BASE, 0x3000, "B"))
    data[8] = 0xFF
    _seal_page(data, 0)
    string = _offsets(bytes(data))["str", 0x21]
    data[string + 1] = 0x41
    _seal(data, string)
    image = nvs.decode_nvs(bytes(data))
    assert image.pages[0].version == 1
    assert [(i.key, i.type, i.value) for i in image.items][1] == ("str", "blob", b"hello\0")


def test_freeing_page_is_read():
    data = _changed(nvs.encode_nvs(BASE, 0x3000, "B"), 0, struct.pack("<I", nvs.STATE_FREEING))
    image = nvs.decode_nvs(data)
    assert image.pages[0].state == "FREEING" and image.family is None
    assert image.namespace_items() == BASE


def test_orphan_chunks_are_ignored_as_the_library_does():
    data = nvs.encode_nvs(BASE, 0x3000, "B")
    index = _offsets(data)["blob2", 0x48]
    image = nvs.decode_nvs(_erased(data, index))
    assert [i.key for i in image.items] == ["int", "str", "blob"]


# --- fuzz: mutated real images raise nothing but FormatError --------------------------------------

FUZZ_VECTORS = [STOCK_WROOM32, "v3.1.0.0/PLATFORM_ESP32/WROOM-32"]


def _reseal_all(buf: bytearray) -> None:
    """Make every header, entry and string/chunk CRC consistent again, so mutations reach the
    structural checks behind the CRCs."""
    for page in range(len(buf) // 4096):
        if buf[page * 4096:page * 4096 + 4] != b"\xff" * 4:
            _seal_page(buf, page)
    for _, slot, _, code, span, _, _, data8, offset in list(_walk(bytes(buf))):
        size = struct.unpack_from("<H", data8)[0]
        if code in (0x21, 0x41, 0x42) and 32 * span >= size:
            struct.pack_into("<I", buf, offset + 28, zlib.crc32(bytes(buf[offset + 32:offset + 32 + size]), 0xFFFFFFFF))
        _seal(buf, offset)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(FUZZ_VECTORS),
       flips=st.lists(st.tuples(st.one_of(st.integers(0, 5 * 4096 - 1), st.integers(0, 28 * 4096 - 1)),
                                st.integers(0, 255)), max_size=6),
       reseal=st.booleans(), cut=st.one_of(st.none(), st.integers(0, 28 * 4096)))
def test_mutated_vectors_raise_only_format_error(reference, which, flips, reseal, cut):
    buf = bytearray((reference / "mfg_nvs" / which / "mfg_nvs.bin").read_bytes())
    for position, value in flips:
        buf[position] = value
    if reseal:
        _reseal_all(buf)
    data = bytes(buf[:cut] if cut is not None else buf)
    try:
        image = nvs.decode_nvs(data)
    except FormatError as exc:
        assert isinstance(exc.offset, int) and 0 <= exc.offset <= len(data)
    else:
        assert len(image.pages) == len(data) // 4096
        for item in image.items:
            assert item.type in nvs.TYPE_CODES and 0 <= item.offset < len(data)
