"""Bad inputs a release pipeline meets: empty files, binary garbage, encodings, huge files, file kinds.

tests/test_board_checks.py has the catalogue of bad *values* (one per check of
docs/board-files.md) and the plain cases of bad content (an empty or garbled certificate, key or
GATT CSV, a folder as a source).  This file adds what comes out of other tools and file systems:
editors that write a BOM and CRLF, spreadsheets that write Latin-1 or UTF-16, files that are
binary, huge, chained, in DER, or not files at all.  Each case asserts what the user reads: one
line naming the file, the dotted key, the value and what is accepted; or that the input is
accepted, and what is built from it.

Decisions recorded here:

* A zero-byte raw source is a user partition of 0 bytes: accepted, and an empty file is written.
* A UTF-8 BOM and CRLF line ends are accepted in board files and GATT CSVs; what is built is
  byte-identical to what the plain file builds.
* A DER certificate or key with bytes after its end is refused, with the count of those bytes
  (cryptography refuses such a file; writing bytes nobody parsed into the partition is not
  something to do quietly).
* A PEM file holding a certificate *and* its private key is refused as a certificate source: the
  file is written as it is, and certificate partitions are not kept secret.  As a key source it is
  accepted: the key partition is owner-only, and the firmware's PEM reader finds the key block.
* A certificate chain in one PEM is accepted as it is; keys pair with its first certificate.
* A FIFO, a device or a dangling symbolic link as a source is refused without reading it.
* An unreadable file (chmod 000) has no case here: the tests run as root, who reads it anyway.
"""
from __future__ import annotations

import datetime
import os
import random
import threading
from pathlib import Path
from typing import List

import pytest

from helpers import (STOCK_DIR, ANY, BOARD_NAME, FP_REQUIRED, GATT_COLUMNS, REPO, assert_no_key_material, assert_refused,
                     board_from_bytes, board_from_text, edit, extending, minimal, only_problem, part_toml,
                     problems_of, run_scons, to_toml, write)

from atfactory import ble_data, pki
from atfactory.artifacts import render_artifact as render
from atfactory.errors import BoardError, Problem

GATT = STOCK_DIR / "data" / "ble" / "gatt_services.csv"
# What cryptography's own messages look like; none of it may reach the user.
CRYPTOGRAPHY_INTERNALS = ("ParseError", "Utf8Error", "https://", "{", "Could not deserialize")
# The esp32 starting board of tests/helpers.py without its partitions.
MINIMAL = to_toml(edit(minimal(), "at_customize.partitions"))


# --- problems -----------------------------------------------------------------------------------

def source_problem(tmp_path: Path, text, partition: str, file_name: str, *words: str) -> Problem:
    """The one problem is ``at_customize.partitions[partition].source = "<path of file_name>": words``."""
    p = only_problem(tmp_path, text, f"at_customize.partitions[{partition}].source", ANY, *words)
    assert isinstance(p.value, str) and p.value.endswith(file_name), str(p)
    assert f'.source = "{p.value}": ' in str(p), str(p)
    for internal in CRYPTOGRAPHY_INTERNALS:
        assert internal not in str(p), str(p)
    return p


def garbage(n: int, seed: int = 2024) -> bytes:
    return random.Random(seed).randbytes(n)


def finishes_within(seconds: float, fn):
    """Run fn in a thread: a source that blocks (a FIFO) must fail the test, not hang the suite."""
    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still reading after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


# --- certificates and keys, made here -----------------------------------------------------------

@pytest.fixture(scope="module")
def pki_files(tmp_path_factory) -> Path:
    """A CA and a leaf it signed (EC P-256), in every form the cases need."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject: str, key, issuer: str, issuer_key, ca: bool):
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(issuer_key, hashes.SHA256()))

    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("Bad Input Test CA", ca_key, "Bad Input Test CA", ca_key, True)
    leaf = cert("bad-input.example", leaf_key, "Bad Input Test CA", ca_key, False)
    pem, der, pkcs8 = s.Encoding.PEM, s.Encoding.DER, s.PrivateFormat.PKCS8
    files = {
        "leaf.key": leaf_key.private_bytes(pem, pkcs8, s.NoEncryption()),
        "leaf_key.der": leaf_key.private_bytes(der, pkcs8, s.NoEncryption()),
        "leaf_pub.pem": leaf_key.public_key().public_bytes(pem, s.PublicFormat.SubjectPublicKeyInfo),
        "leaf.crt": leaf.public_bytes(pem),
        "leaf.der": leaf.public_bytes(der),
        "ca.crt": ca.public_bytes(pem),
        "chain.pem": leaf.public_bytes(pem) + ca.public_bytes(pem),
        "chain_ca_first.pem": ca.public_bytes(pem) + leaf.public_bytes(pem),
        "leaf_and_key.pem": leaf.public_bytes(pem) + leaf_key.private_bytes(pem, pkcs8, s.NoEncryption()),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def pki_contents(data: bytes) -> List[bytes]:
    return [item.content for item in pki.decode_pki(data)]


def built_content(board, name: str) -> bytes:
    c = board.partition(name).content
    return render(c.kind, c.spec, c.sources)


# --- empty files --------------------------------------------------------------------------------

EMPTY_BOARD_KEYS = (["module.chip", "flash.mode", "flash.freq", "flash.size"]
                    + [f"factory_param.{f}" for f in FP_REQUIRED] + ["at_customize.offset", "at_customize.size"])


def test_empty_board_file_reports_every_required_key(tmp_path):
    problems = problems_of(tmp_path, b"")
    assert [p.key for p in problems] == EMPTY_BOARD_KEYS
    for p in problems:
        assert p.file == str(tmp_path / BOARD_NAME) and "missing" in p.message and not p.has_value, str(p)
    assert "one of esp32, esp32c2, esp32c3, esp32c5, esp32c6, esp32c61, esp32s2, esp8266" in str(problems[0])


def test_every_empty_input_is_reported_once_and_an_empty_raw_source_is_accepted(tmp_path):
    for name in ("empty.crt", "empty.key", "empty.csv", "empty.bin"):
        (tmp_path / name).write_bytes(b"")
    text = extending(part_toml(name="server_cert", source="empty.crt"), part_toml(name="server_key", source="empty.key"),
                     part_toml(name="ble_data", source="empty.csv"), part_toml(name="fatfs", source="empty.bin"))
    problems = problems_of(tmp_path, text)
    lines = sorted(str(p) for p in problems)
    assert len(lines) == 3, "\n".join(lines)    # no pairing problem on top of the two empty files
    expected = [("ble_data", "empty.csv", f"the file is empty; expected the header {GATT_COLUMNS}"),
                ("server_cert", "empty.crt", "the file is empty; expected a PEM or DER certificate"),
                ("server_key", "empty.key", "the file is empty; expected a PEM or DER private key")]
    for line, (name, file, words) in zip(lines, expected):
        assert line.startswith(f"{tmp_path / BOARD_NAME}: at_customize.partitions[{name}].source = ")
        assert line.endswith(f'{file}": {words}'), line


def test_empty_raw_source_is_a_partition_of_0_bytes(tmp_path):
    (tmp_path / "empty.bin").write_bytes(b"")
    b = board_from_text(tmp_path, extending(part_toml(name="fatfs", source="empty.bin")))
    content = b.partition("fatfs").content
    assert (content.kind, content.size) == ("raw", 0)
    assert built_content(b, "fatfs") == b""


# --- binary garbage and other encodings where text is expected ----------------------------------

def _not_utf8_words(data: bytes) -> str:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}, at offset {exc.start})"
    raise AssertionError("the sample is valid UTF-8")


BOARD_NOT_TEXT = {
    "random-bytes": garbage(4096),
    "utf-16": extending().encode("utf-16"),   # Notepad's "Unicode"
    "latin-1": b'extends = "WROOM-32"\n\n[module]\ndescription = "Caf\xe9 module"\n',
}


@pytest.mark.parametrize("data", BOARD_NOT_TEXT.values(), ids=BOARD_NOT_TEXT.keys())
def test_board_file_that_is_not_utf8(tmp_path, data):
    only_problem(tmp_path, data, "", ANY, _not_utf8_words(data), "; a board file is TOML in UTF-8")


def test_latin1_board_file_names_the_line(tmp_path):
    data = BOARD_NOT_TEXT["latin-1"]
    p = only_problem(tmp_path, data, "", ANY)
    assert str(p) == (f"{tmp_path / BOARD_NAME}: not UTF-8 text (byte 0xe9 on line 4, at offset {data.index(0xe9)}); "
                      "a board file is TOML in UTF-8")


def test_board_file_of_control_characters(tmp_path):
    # valid UTF-8, not TOML
    only_problem(tmp_path, bytes(range(32)) * 8, "", ANY, "TOML syntax error", "line 1")


def test_board_file_with_bom_and_crlf_is_accepted(tmp_path):
    text = extending('\n[module]\nname = "BOM-1"\ndescription = "Caf\u00e9, two\\nlines"\n',
                     part_toml(name="fatfs", size="512K"))
    plain = board_from_bytes(tmp_path, text.encode(), "plain.toml")
    bom = board_from_bytes(tmp_path, b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode(), "bom.toml")
    assert (bom.module_name, bom.description) == ("BOM-1", "Caf\u00e9, two\nlines")
    assert bom.partitions == plain.partitions and bom.factory_param == plain.factory_param


GATT_NOT_TEXT = {
    "random-bytes": garbage(2000, seed=7),
    "utf-16": GATT.read_text().encode("utf-16"),   # a spreadsheet's "Unicode text"
    "latin-1": (GATT_COLUMNS + "\n0,16,0x2800,0x01,2,2,FFE0\n1,16,0x2803,0x01,1,1,02\n"
                "2,16,0xFFE1,0x01,32,4,Caf\xe9\n").encode("latin-1"),
}


@pytest.mark.parametrize("data", GATT_NOT_TEXT.values(), ids=GATT_NOT_TEXT.keys())
def test_gatt_csv_that_is_not_utf8(tmp_path, data):
    (tmp_path / "gatt.csv").write_bytes(data)
    p = source_problem(tmp_path, extending(part_toml(name="ble_data", source="gatt.csv")), "ble_data", "gatt.csv",
                       _not_utf8_words(data), "; expected a GATT CSV in UTF-8")
    if data is GATT_NOT_TEXT["latin-1"]:
        assert "byte 0xe9 on line 4" in str(p)


def test_gatt_csv_of_binary_text_is_refused_in_one_short_line(tmp_path):
    # valid UTF-8 (NUL and control characters), no line end in 100 KB: the header is shown cut short
    (tmp_path / "gatt.csv").write_bytes(bytes(range(1, 10)) * 11_000)
    p = source_problem(tmp_path, extending(part_toml(name="ble_data", source="gatt.csv")), "ble_data", "gatt.csv",
                       "line 1: header '\\x01\\x02", f"...'; expected the columns {GATT_COLUMNS}")
    assert len(str(p)) < 1000, len(str(p))   # not the 99 000 characters of the "header"


CERT_GARBAGE = {
    "random-bytes": (garbage(1200, seed=3), "not a PEM or DER X.509 certificate ("),
    "header-and-binary": (b"-----BEGIN CERTIFICATE-----\n" + garbage(600, seed=4) + b"\n-----END CERTIFICATE-----\n",
                          "not a PEM or DER X.509 certificate (the PEM block holds bytes that are not text)"),
    "header-and-bad-base64": (b"-----BEGIN CERTIFICATE-----\nMIIB!!!!\n-----END CERTIFICATE-----\n",
                              "not a PEM or DER X.509 certificate (the PEM block is not valid base64)"),
    "header-without-end": (b"-----BEGIN CERTIFICATE-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n",
                           "not a PEM or DER X.509 certificate (no complete -----BEGIN ...----- ... "
                           "-----END ...----- block)"),
}


@pytest.mark.parametrize("data, words", CERT_GARBAGE.values(), ids=CERT_GARBAGE.keys())
@pytest.mark.parametrize("name", ["server_cert", "mqtt_ca"])
def test_garbage_certificate(tmp_path, name, data, words):
    (tmp_path / "garbage.crt").write_bytes(data)
    source_problem(tmp_path, extending(part_toml(name=name, source="garbage.crt")), name, "garbage.crt", words)


def test_garbage_keys(tmp_path):
    import base64

    body = base64.encodebytes(garbage(300, seed=5))
    cases = {
        "random.key": (garbage(1200, seed=6), "not a PEM or DER private key ("),
        "binary.key": (b"-----BEGIN PRIVATE KEY-----\n" + garbage(300, seed=8) + b"\n-----END PRIVATE KEY-----\n",
                       "not a PEM or DER private key (the PEM block holds bytes that are not text)"),
        "base64.key": (b"-----BEGIN PRIVATE KEY-----\n" + body + b"-----END PRIVATE KEY-----\n",
                       "not a PEM or DER private key ("),
    }
    for file, (data, words) in cases.items():
        (tmp_path / file).write_bytes(data)
        p = source_problem(tmp_path, extending(part_toml(name="client_key", source=file)), "client_key", file, words)
        if file == "base64.key":
            assert_no_key_material(str(p), tmp_path / file)


# --- BOM and CRLF in a GATT CSV -----------------------------------------------------------------

@pytest.mark.parametrize("bom, newline", [(True, "\n"), (False, "\r\n"), (True, "\r\n")],
                         ids=["bom", "crlf", "bom-crlf"])
def test_gatt_csv_with_bom_or_crlf_builds_the_same_bytes(tmp_path, bom, newline):
    text = GATT.read_text()
    assert "\r" not in text and not text.startswith("\ufeff")
    (tmp_path / "gatt.csv").write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.replace("\n", newline).encode())
    b = board_from_text(tmp_path, extending(part_toml(name="ble_data", source="gatt.csv")))
    plain = ble_data.encode_ble_data(ble_data.read_gatt_csv(text))
    assert built_content(b, "ble_data") == plain


# --- a 10 MiB board file ------------------------------------------------------------------------

TEN_MIB = 10 * 1024 * 1024
HUGE = {
    "description": lambda: extending('\n[module]\ndescription = "' + "x" * TEN_MIB + '"\n'),
    "multi-line-description": lambda: extending('\n[module]\ndescription = """\n' + "a line of text\n" * (TEN_MIB // 15)
                                                + '"""\n'),
    "comment-lines": lambda: extending(("# " + "c" * 77 + "\n") * (TEN_MIB // 80)),
}


@pytest.mark.parametrize("kind", HUGE)
def test_10_mib_board_file_is_read(tmp_path, kind):
    # How fast is for bench/run.py; a timed assert here fails on a busy machine, not on slow code.
    data = HUGE[kind]().encode()
    assert len(data) >= TEN_MIB - 100
    b = board_from_bytes(tmp_path, data)
    assert len(b.description) >= (TEN_MIB - 100 if "description" in kind else 0)
    assert b.partition("server_cert") is not None


# --- many partitions ----------------------------------------------------------------------------

def test_200_partitions(tmp_path):
    text = MINIMAL + "".join(part_toml(name=f"p{i}", type=0x40, subtype=i, offset=hex(0x21000 + i * 0x1000), size="4K")
                             for i in range(200))
    assert text.count("[[at_customize.partitions]]") == 200
    only_problem(tmp_path, text, "at_customize.partitions", ANY, "200 partitions; at_customize.bin holds at most 94")


# --- certificate chains, DER, and the wrong PEM block -------------------------------------------

def test_certificate_chain_in_one_pem_is_written_as_it_is(tmp_path, pki_files):
    text = extending(part_toml(name="server_cert", source=str(pki_files / "chain.pem")),
                     part_toml(name="server_key", source=str(pki_files / "leaf.key")),
                     part_toml(name="server_ca", source=str(pki_files / "chain.pem")))
    b = board_from_text(tmp_path, text)
    for name in ("server_cert", "server_ca"):
        assert pki_contents(built_content(b, name)) == [(pki_files / "chain.pem").read_bytes()]


def test_chain_pairs_its_first_certificate_with_the_key(tmp_path, pki_files):
    text = extending(part_toml(name="server_cert", source=str(pki_files / "chain_ca_first.pem")),
                     part_toml(name="server_key", source=str(pki_files / "leaf.key")))
    p = only_problem(tmp_path, text, "at_customize.partitions[server_key].source", ANY,
                    "key 0 (leaf.key) does not belong to certificate 0 of server_cert (chain_ca_first.pem)",
                    "keys pair with certificates by position in file-name order")
    assert_no_key_material(str(p), pki_files / "leaf.key")


def test_der_certificate_and_key_are_accepted_as_they_are(tmp_path, pki_files):
    text = extending(part_toml(name="client_cert", source=str(pki_files / "leaf.der")),
                     part_toml(name="client_key", source=str(pki_files / "leaf_key.der")),
                     part_toml(name="client_ca", source=str(pki_files / "ca.crt")))
    b = board_from_text(tmp_path, text)
    assert pki_contents(built_content(b, "client_cert")) == [(pki_files / "leaf.der").read_bytes()]
    assert pki_contents(built_content(b, "client_key")) == [(pki_files / "leaf_key.der").read_bytes()]
    assert b.partition("client_key").content.secret


@pytest.mark.parametrize("extra", [b"\n", b"\x00\x00", b"trailer" + bytes(40)], ids=["newline", "nuls", "47-bytes"])
def test_der_certificate_with_bytes_after_its_end(tmp_path, pki_files, extra):
    # cryptography refuses it; the count of bytes tells the user what to cut
    (tmp_path / "leaf.der").write_bytes((pki_files / "leaf.der").read_bytes() + extra)
    source_problem(tmp_path, extending(part_toml(name="server_cert", source="leaf.der")), "server_cert", "leaf.der",
                   f"{len(extra)} bytes after the end of the DER certificate; expected the certificate alone")


def test_der_key_with_bytes_after_its_end(tmp_path, pki_files):
    (tmp_path / "leaf_key.der").write_bytes((pki_files / "leaf_key.der").read_bytes() + b"\n\n")
    p = source_problem(tmp_path, extending(part_toml(name="server_key", source="leaf_key.der")), "server_key",
                       "leaf_key.der", "2 bytes after the end of the DER private key; expected the key alone")
    assert_no_key_material(str(p), pki_files / "leaf.key")


@pytest.mark.parametrize("name", ["server_cert", "mqtt_ca"])
def test_certificate_with_its_private_key_in_one_pem(tmp_path, pki_files, name):
    # the certificate file is written as it is: the key would land in a partition anyone may read
    p = source_problem(tmp_path, extending(part_toml(name=name, source=str(pki_files / "leaf_and_key.pem"))), name,
                       "leaf_and_key.pem", "holds a private key besides the certificate",
                       "not kept secret: put the key in a file of its own for the *_key partition")
    assert_no_key_material(str(p), pki_files / "leaf.key")


def test_certificate_with_its_private_key_as_a_key_source(tmp_path, pki_files):
    text = extending(part_toml(name="server_cert", source=str(pki_files / "leaf.crt")),
                     part_toml(name="server_key", source=str(pki_files / "leaf_and_key.pem")))
    b = board_from_text(tmp_path, text)
    assert b.partition("server_key").content.secret
    assert pki_contents(built_content(b, "server_key")) == [(pki_files / "leaf_and_key.pem").read_bytes()]


def test_der_private_key_where_a_certificate_is_expected(tmp_path, pki_files):
    p = source_problem(tmp_path, extending(part_toml(name="wpa2_ca", source=str(pki_files / "leaf_key.der"))),
                       "wpa2_ca", "leaf_key.der", "holds a private key (DER), expected a certificate")
    assert_no_key_material(str(p), pki_files / "leaf.key")


def test_public_key_where_a_private_key_is_expected(tmp_path, pki_files):
    source_problem(tmp_path, extending(part_toml(name="mqtt_key", source=str(pki_files / "leaf_pub.pem"))),
                   "mqtt_key", "leaf_pub.pem", "holds no private key (expected -----BEGIN ... PRIVATE KEY-----)")


# --- sources that are not files -----------------------------------------------------------------

def test_dangling_symbolic_link(tmp_path):
    (tmp_path / "server.crt").symlink_to(tmp_path / "renamed" / "server.crt")
    source_problem(tmp_path, extending(part_toml(name="server_cert", source="server.crt")), "server_cert", "server.crt",
                   f"is a symbolic link to {tmp_path / 'renamed' / 'server.crt'}, which does not exist")


def test_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    os.mkfifo(tmp_path / "ca.crt")
    text = extending(part_toml(name="server_ca", source="ca.crt"))
    with pytest.raises(BoardError) as info:
        finishes_within(10, lambda: board_from_text(tmp_path, text))
    (p,) = info.value.problems
    assert str(p).endswith('ca.crt": is not a regular file (a device, FIFO or socket); expected a file'), str(p)


def test_device_is_refused(tmp_path):
    source_problem(tmp_path, extending(part_toml(name="fatfs", source="/dev/null")), "fatfs", "/dev/null",
                   "is not a regular file (a device, FIFO or socket); expected a file")


# --- end to end: scons ----------------------------------------------------------------------------

def _refused(tmp_path: Path, board: Path) -> List[str]:
    out = tmp_path / "out"
    return assert_refused(run_scons(f"board={board}", f"build_dir={out}", cwd=tmp_path), out)


def test_scons_empty_board_file(tmp_path):
    board = tmp_path / "empty.toml"
    board.write_bytes(b"")
    lines = _refused(tmp_path, board)
    assert len(lines) == len(EMPTY_BOARD_KEYS), "\n".join(lines)
    for line, key in zip(lines, EMPTY_BOARD_KEYS):
        assert f"empty.toml: {key}: missing" in line, line


def test_scons_latin1_board_file(tmp_path):
    board = tmp_path / "latin1.toml"
    data = BOARD_NOT_TEXT["latin-1"]
    board.write_bytes(data)
    (line,) = _refused(tmp_path, board)
    assert line.endswith(f"latin1.toml: not UTF-8 text (byte 0xe9 on line 4, at offset {data.index(0xe9)}); "
                         "a board file is TOML in UTF-8  Stop."), line


def test_scons_key_larger_than_an_item_holds(tmp_path, pki_files):
    key = (pki_files / "leaf.key").read_bytes()
    padding = b"".join(b"# padding line %05d ....................................\n" % i for i in range(2000))
    (tmp_path / "big.key").write_bytes((key + padding)[:70_000])
    board = write(tmp_path / "big-key.toml", extending(part_toml(name="server_key", source="big.key")))
    r_lines = _refused(tmp_path, board)
    (line,) = r_lines
    assert "big-key.toml: at_customize.partitions[server_key].source = " in line
    assert 'big.key": 70000 bytes; a certificate or key item holds at most 65535' in line
    assert_no_key_material("\n".join(r_lines), pki_files / "leaf.key")


def test_scons_builds_bom_crlf_der_chain_and_empty_inputs(tmp_path, pki_files):
    """One build of what is accepted: a BOM+CRLF board and CSV, DER cert and key, a chain, an empty raw file."""
    text = GATT.read_text()
    (tmp_path / "gatt.csv").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    (tmp_path / "empty.bin").write_bytes(b"")
    board_text = extending(part_toml(name="ble_data", source="gatt.csv"),
                           part_toml(name="client_cert", source=str(pki_files / "leaf.der")),
                           part_toml(name="client_key", source=str(pki_files / "leaf_key.der")),
                           part_toml(name="client_ca", source=str(pki_files / "chain.pem")),
                           part_toml(name="fatfs", source="empty.bin"))
    board = tmp_path / "bom-crlf.toml"
    board.write_bytes(b"\xef\xbb\xbf" + board_text.replace("\n", "\r\n").encode())
    out = tmp_path / "out"
    r = run_scons(f"board={board}", f"build_dir={out}", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    parts = out / "bom-crlf" / "customized_partitions"
    assert (parts / "ble_data.bin").read_bytes() == ble_data.encode_ble_data(ble_data.read_gatt_csv(text))
    assert pki_contents((parts / "client_cert.bin").read_bytes()) == [(pki_files / "leaf.der").read_bytes()]
    assert pki_contents((parts / "client_key.bin").read_bytes()) == [(pki_files / "leaf_key.der").read_bytes()]
    assert pki_contents((parts / "client_ca.bin").read_bytes()) == [(pki_files / "chain.pem").read_bytes()]
    assert (parts / "fatfs.bin").read_bytes() == b""
