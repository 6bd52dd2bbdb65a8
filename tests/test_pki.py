"""Certificate and key partitions (FORMATS.md §3): unit tests and reference conformance."""
from __future__ import annotations

import struct

import pytest

from atfactory import pki
from atfactory.board import BoardError
from atfactory.errors import FormatError

from helpers import board_from_text, reference_dir
from reference_boards import (
    PKI_LAYOUTS, PKI_PARTITIONS, assert_same_bytes, at_customize_board, build_artifacts, pki_board, pki_input_files,
    pki_layout, pki_sources,
)


def test_header_and_one_item_byte_for_byte():
    data = pki.encode_pki([(pki.TYPE_CERT, b"abc")])
    assert data == (b"\xf1\xf1" b"\x01\x00" b"\x08\x00\x00\x00"     # magic, 1 item, 8 bytes of items
                    b"\x02" b"\x00" b"\x03\x00" b"abc" b"\xff")     # type 2, id 0, length 3, content, pad


@pytest.mark.parametrize("length", range(0, 9))
def test_content_is_padded_to_4_with_ff(length):
    content = bytes(range(1, length + 1))
    data = pki.encode_pki([(pki.TYPE_KEY, content)])
    pad = -length % 4
    assert len(data) == 8 + 4 + length + pad
    assert data[12:12 + length] == content
    assert data[12 + length:] == b"\xff" * pad
    magic, count, total = struct.unpack_from("<2sHI", data)
    assert (magic, count, total) == (b"\xf1\xf1", 1, len(data) - 8)
    assert struct.unpack_from("<BBH", data, 8) == (3, 0, length)
    assert pki.pki_size([length]) == len(data)


def test_no_items_is_a_bare_header():
    assert pki.encode_pki([]) == b"\xf1\xf1\x00\x00\x00\x00\x00\x00"
    assert pki.decode_pki(pki.encode_pki([])) == []


def test_ids_are_numbered_per_type():
    items = pki.decode_pki(pki.encode_pki([(1, b"A"), (2, b"B"), (1, b"C"), (2, b"D"), (2, b"E")]))
    assert [(i.type, i.id, i.content) for i in items] == [
        (1, 0, b"A"), (1, 1, b"C"), (2, 0, b"B"), (2, 1, b"D"), (2, 2, b"E")]


def test_items_are_grouped_by_type_in_order_of_first_appearance():
    items = pki.decode_pki(pki.encode_pki([(3, b"k0"), (1, b"ca0"), (2, b"c0"), (1, b"ca1"), (3, b"k1")]))
    assert [(i.type, i.id, i.content) for i in items] == [
        (3, 0, b"k0"), (3, 1, b"k1"), (1, 0, b"ca0"), (1, 1, b"ca1"), (2, 0, b"c0")]


@pytest.mark.parametrize("partition,v24,v22", [
    ("server_ca", 1, 2), ("client_ca", 1, 2), ("mqtt_ca", 1, 2), ("wpa2_ca", 1, 2),
    ("server_cert", 2, 2), ("client_cert", 2, 2), ("mqtt_cert", 2, 2), ("wpa2_cert", 2, 2),
    ("server_key", 3, 2), ("client_key", 3, 2), ("mqtt_key", 3, 2), ("wpa2_key", 3, 2),
])
def test_item_type_by_partition_kind_and_at_version(partition, v24, v22):
    kind = pki.PKI_PARTITIONS[partition]
    assert pki.item_type(kind, "2.4") == v24
    assert pki.item_type(kind, "2.2") == v22


def test_encode_refuses_content_longer_than_its_length_field():
    with pytest.raises(FormatError, match="65536 bytes, at most 65535"):
        pki.encode_pki([(2, b"x" * 65536)])
    assert len(pki.encode_pki([(2, b"x" * 65535)])) == 8 + 4 + 65535 + 1


@pytest.mark.parametrize("item", [pki.PkiItem(256, 0, b""), pki.PkiItem(2, 256, b""), pki.PkiItem(-1, 0, b"")])
def test_encode_refuses_type_or_id_out_of_range(item):
    with pytest.raises(FormatError, match="out of range 0-255"):
        pki.encode_pki_items([item])


def test_decode_reads_items_back_and_ignores_flash_padding():
    items = [pki.PkiItem(1, 0, b"ca"), pki.PkiItem(2, 0, b"cert!"), pki.PkiItem(3, 0, b"keyk")]
    data = pki.encode_pki_items(items)
    assert pki.decode_pki(data) == items
    assert pki.decode_pki(data + b"\xff" * 100) == items


def test_decode_bad_magic():
    with pytest.raises(FormatError) as exc:
        pki.decode_pki(b"\xf1\xf2\x00\x00\x00\x00\x00\x00")
    assert exc.value.offset == 0
    assert str(exc.value) == "at offset 0x0: PKI: magic f1f2, expected f1f1"


@pytest.mark.parametrize("length", [0, 1, 7])
def test_decode_short_header(length):
    with pytest.raises(FormatError, match=f"PKI: {length} bytes, shorter than the 8-byte header") as exc:
        pki.decode_pki(b"\xf1\xf1\x01\x00\x00\x00\x00"[:length])
    assert exc.value.offset == 0


def test_decode_declared_length_past_the_end():
    data = pki.encode_pki([(2, b"abcd")])
    with pytest.raises(FormatError, match="header declares 8 bytes of items, only 7 follow") as exc:
        pki.decode_pki(data[:-1])
    assert exc.value.offset == 4


def test_decode_item_running_past_the_declared_length():
    data = bytearray(pki.encode_pki([(2, b"abcd")]))
    data[10:12] = struct.pack("<H", 5)          # content length 5 needs 12 bytes, 8 declared
    with pytest.raises(FormatError, match="item 0 \\(5 bytes\\) runs past the declared length") as exc:
        pki.decode_pki(bytes(data))
    assert exc.value.offset == 8


def test_decode_item_count_larger_than_the_items():
    data = bytearray(pki.encode_pki([(2, b"abcd")]))
    data[2:4] = struct.pack("<H", 2)
    with pytest.raises(FormatError, match="item 1 of 2 starts past the declared length") as exc:
        pki.decode_pki(bytes(data))
    assert exc.value.offset == 16


def test_decode_bytes_left_inside_the_declared_length():
    data = bytearray(pki.encode_pki([(2, b"abcd")]) + b"\xff" * 4)
    data[4:8] = struct.pack("<I", 12)
    with pytest.raises(FormatError, match="4 bytes after the last item") as exc:
        pki.decode_pki(bytes(data))
    assert exc.value.offset == 16


# --- boards ----------------------------------------------------------------------------------

def test_sources_are_written_in_file_name_order(reference, registry, tmp_path):
    folder, row = pki_layout(reference, "2.4")
    files = pki_input_files(reference, "client_cert")
    assert [f.name for f in files] == ["client_cert_00.crt", "client_cert_01.crt"]
    text = at_customize_board(folder, sources={"client_cert": list(reversed(files))}, factory_row=row)
    board = board_from_text(tmp_path, text, name="reversed.toml", registry=registry)
    data = build_artifacts(board)["customized_partitions/client_cert.bin"]
    assert [i.content for i in pki.decode_pki(data)] == [f.read_bytes() for f in files]
    assert_same_bytes(data, (reference / "pki" / "client_cert.bin").read_bytes())


def test_keys_must_belong_to_the_certificate_of_the_same_position(reference, registry, tmp_path):
    folder, row = pki_layout(reference, "2.4")
    certs = pki_input_files(reference, "client_cert")
    keys = pki_input_files(reference, "client_key")
    # key_a.key holds key 01 and key_b.key key 00: in file-name order they pair the wrong way.
    swapped = [tmp_path / "key_a.key", tmp_path / "key_b.key"]
    swapped[0].write_bytes(keys[1].read_bytes())
    swapped[1].write_bytes(keys[0].read_bytes())
    text = at_customize_board(folder, sources={"client_cert": certs, "client_key": swapped}, factory_row=row)
    with pytest.raises(BoardError) as exc:
        board_from_text(tmp_path, text, name="swapped.toml", registry=registry)
    message = str(exc.value)
    assert "at_customize.partitions[client_key].source" in message
    assert "key 0 (key_a.key) does not belong to certificate 0 of client_cert (client_cert_00.crt)" in message


def test_content_larger_than_its_partition_is_refused(reference, registry, tmp_path):
    folder = reference / "partition_table" / "v2.2.1.0_esp8266" / "module_esp8266_1mb"   # 4K partitions
    files = pki_input_files(reference, "client_ca") + pki_input_files(reference, "server_ca") \
        + pki_input_files(reference, "mqtt_ca")
    size = pki.pki_size(len(f.read_bytes()) for f in files)
    assert size > 4096
    with pytest.raises(BoardError) as exc:
        board_from_text(tmp_path, at_customize_board(folder, sources={"client_ca": files}),
                        name="big.toml", registry=registry)
    assert (f"at_customize.partitions[client_ca].size = \"4K\": the content is {size} bytes (0x{size:x}), "
            "larger than the partition's 4K (0x1000)") in str(exc.value)


def test_a_key_in_a_certificate_partition_is_refused(reference, registry, tmp_path):
    folder, row = pki_layout(reference, "2.4")
    text = at_customize_board(folder, sources={"server_cert": pki_input_files(reference, "server_key")},
                              factory_row=row)
    with pytest.raises(BoardError) as exc:
        board_from_text(tmp_path, text, name="wrong.toml", registry=registry)
    assert "at_customize.partitions[server_cert].source" in str(exc.value)
    assert "holds a private key, expected a certificate" in str(exc.value)


# --- conformance: every partition of both AT versions ----------------------------------------

VERSIONS = {"2.4": ".", "2.2": "v2.2.1.0_esp8266_build"}


def _cases():
    inputs = reference_dir() / "pki" / "inputs"
    names = sorted(p.name for p in inputs.iterdir() if p.is_dir()) if inputs.is_dir() else []
    return [pytest.param(v, name, id=f"v{v}-{name}") for v in VERSIONS for name in names] \
        or [pytest.param(None, None, id="reference-absent")]


CASES = _cases()


def test_the_inputs_cover_every_pki_partition(reference):
    assert sorted(pki_sources(reference)) == sorted(PKI_PARTITIONS)
    assert len(CASES) == 24


@pytest.mark.parametrize("at_version,partition", CASES)
def test_partition_through_a_board(reference, registry, tmp_path, at_version, partition):
    board = board_from_text(tmp_path, pki_board(reference, at_version, partitions=[partition]),
                            name="pki.toml", registry=registry)
    assert board.at_version == at_version
    out = build_artifacts(board)
    expected = (reference / "pki" / VERSIONS[at_version] / f"{partition}.bin").read_bytes()
    assert_same_bytes(out[f"customized_partitions/{partition}.bin"], expected, f"v{at_version} {partition}.bin")
    # Read back: one item per input file, in file-name order, typed by the AT version.
    items = pki.decode_pki(expected)
    files = pki_input_files(reference, partition)
    expected_type = pki.item_type(pki.PKI_PARTITIONS[partition], at_version)
    assert [(i.type, i.id, i.content) for i in items] == \
        [(expected_type, n, f.read_bytes()) for n, f in enumerate(files)]


@pytest.mark.parametrize("at_version", list(VERSIONS))
def test_board_with_every_pki_partition(reference, registry, tmp_path, at_version):
    board = board_from_text(tmp_path, pki_board(reference, at_version), name="pki.toml", registry=registry)
    out = build_artifacts(board)
    folder, row = pki_layout(reference, at_version)
    assert_same_bytes(out["at_customize.bin"], (folder / "at_customize.bin").read_bytes(), "at_customize.bin")
    for partition in PKI_PARTITIONS:
        expected = (reference / "pki" / VERSIONS[at_version] / f"{partition}.bin").read_bytes()
        assert_same_bytes(out[f"customized_partitions/{partition}.bin"], expected, partition)
    release, module = PKI_LAYOUTS[at_version][2], row["module_name"]
    fp_expected = (reference / "factory_param" / release / row["platform"] / f"{module}.bin").read_bytes()
    assert_same_bytes(out[f"customized_partitions/factory_param_{module}.bin"], fp_expected, "factory_param")


def _contents_to_files(reference):
    by_content = {}
    for files in pki_sources(reference).values():
        for f in files:
            by_content.setdefault(f.read_bytes(), []).append(f)
    return by_content


def _input_file_of(item, by_content):
    files = by_content.get(item.content)
    assert files, f"item type {item.type} id {item.id}: its content is none of the reference input files"
    assert len(files) == 1, f"item type {item.type} id {item.id}: content shared by {files}"
    return files[0]


def test_mixed(reference):
    """One call: ca A, cert B, key C, cert D -> grouped ca, cert, cert, key; ids per type."""
    expected = (reference / "pki" / "mixed.bin").read_bytes()
    items = pki.decode_pki(expected)
    assert [(i.type, i.id) for i in items] == [(1, 0), (2, 0), (2, 1), (3, 0)]
    by_content = _contents_to_files(reference)
    a, b, d, c = (_input_file_of(i, by_content) for i in items)
    assert (a.parent.name, b.parent.name, c.parent.name, d.parent.name) == \
        ("server_ca", "client_cert", "client_key", "client_cert")
    data = pki.encode_pki([(pki.TYPE_CA, a.read_bytes()), (pki.TYPE_CERT, b.read_bytes()),
                           (pki.TYPE_KEY, c.read_bytes()), (pki.TYPE_CERT, d.read_bytes())])
    assert_same_bytes(data, expected, "mixed.bin")


def test_mixed_key_first(reference):
    """One call: key, ca, cert, ca, key -> grouped key, key, ca, ca, cert."""
    expected = (reference / "pki" / "mixed_key_first.bin").read_bytes()
    items = pki.decode_pki(expected)
    assert [(i.type, i.id) for i in items] == [(3, 0), (3, 1), (1, 0), (1, 1), (2, 0)]
    by_content = _contents_to_files(reference)
    key1, key2, ca1, ca2, cert = (_input_file_of(i, by_content) for i in items)
    assert key1 != key2 and ca1 != ca2
    data = pki.encode_pki([(pki.TYPE_KEY, key1.read_bytes()), (pki.TYPE_CA, ca1.read_bytes()),
                           (pki.TYPE_CERT, cert.read_bytes()), (pki.TYPE_CA, ca2.read_bytes()),
                           (pki.TYPE_KEY, key2.read_bytes())])
    assert_same_bytes(data, expected, "mixed_key_first.bin")


def test_certificates_are_parsed_once_per_content_and_errors_raised_every_time():
    from pathlib import Path

    from atfactory.errors import ContentError

    data = (Path(pki.__file__).parent / "boards" / "data" / "certs" / "client.crt").read_bytes()
    first, second = pki.load_certificates(data), pki.load_certificates(bytearray(data))
    assert first == second and first is not second   # a list of its own for every caller
    assert first[0].subject.rfc4514_string() and len(first) == 1
    for _ in range(2):
        with pytest.raises(ContentError, match="expected a PEM or DER certificate"):
            pki.load_certificates(b"  \n")
        with pytest.raises(ContentError, match="not a PEM or DER X.509 certificate"):
            pki.load_certificates(data.replace(b"MII", b"XYZ", 1))
