"""Production builds (release=yes): atfactory's development certificates and keys are refused,
by content (copies too), and expired certificates; without it, a build that ships them says so once."""
from __future__ import annotations

import datetime
import hashlib
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from atfactory import dev_certs, pki
from atfactory.board import load_board
from atfactory.errors import BoardError, display_path
from helpers import CERTS, REPO, STOCK_DIR, assert_no_key_material, board, problem_lines, run_scons, write

DEV_WARNING = ("atfactory: warning: {count} of {boards} hold atfactory's development certificates and keys "
               "(boards/data/certs or copies; their private keys are public): fine for development, never for a "
               "product; release=yes refuses them")


def test_the_digests_are_those_of_the_files():
    """dev_certs knows every file of boards/data/certs and every key pair in it, and nothing else."""
    files = {p.name: p.read_bytes() for p in CERTS.iterdir()}
    assert dev_certs.FILES == {hashlib.sha256(data).hexdigest(): name for name, data in files.items()}
    publics = {}
    for name, data in files.items():
        key = pki.load_private_key(data).public_key() if name.endswith(".key") else \
            pki.load_certificates(data)[0].public_key()
        publics[hashlib.sha256(pki.public_key_bytes(key)).hexdigest()] = name.rsplit(".", 1)[0]
    assert dev_certs.PUBLIC_KEYS == publics


def own_pki(folder: Path, name: str = "own"):
    """A certificate and key of nobody's repository, valid 2026-2036."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(datetime.datetime(2026, 1, 1))
            .not_valid_after(datetime.datetime(2036, 1, 1)).sign(key, hashes.SHA256()))
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return folder / f"{name}.crt", folder / f"{name}.key"


def client_board(cert: str, key: str) -> str:
    """A board without extends (so without the stock certificates) holding one client cert/key pair."""
    return board(add=[{"name": "client_cert", "type": 0x40, "subtype": 5, "offset": 0x34000, "size": "8K", "source": [cert]},
                      {"name": "client_key", "type": 0x40, "subtype": 6, "offset": 0x36000, "size": "8K", "source": [key]}])


def test_release_refuses_each_development_file_of_a_stock_board(registry):
    with pytest.raises(BoardError) as err:
        load_board("WROOM-32", registry, release=True)
    lines = [str(p) for p in err.value.problems]
    assert len(lines) == 12
    layout = STOCK_DIR / "layouts/module_esp32_default.toml"
    assert lines[0] == (f"{display_path(layout)}: at_customize.partitions[server_cert].source = "
                        f"\"{display_path(CERTS / 'server.crt')}\": "
                        "atfactory's development server certificate (boards/data/certs/server.crt or a copy; its "
                        "private key is public in atfactory's repository); release=yes refuses development "
                        "certificates and keys: accepted: certificates and keys of your own")
    assert "partitions[server_key].source" in lines[1] and "atfactory's development server key (" in lines[1]
    assert "partitions[server_ca].source" in lines[2] and "atfactory's development CA certificate (" in lines[2]
    # the same without release=yes: it builds, and says which partitions hold them
    assert load_board("WROOM-32", registry).development == (
        "server_cert", "server_key", "server_ca", "client_cert", "client_key", "client_ca",
        "wpa2_cert", "wpa2_key", "wpa2_ca", "mqtt_cert", "mqtt_key", "mqtt_ca")


def test_release_refuses_development_files_in_mfg_nvs(registry):
    with pytest.raises(BoardError) as err:
        load_board("WROOM-32-V5", registry, release=True)
    keys = [p.key for p in err.value.problems]
    assert keys == ["mfg_nvs.server_cert", "mfg_nvs.server_key", "mfg_nvs.server_ca", "mfg_nvs.client_cert",
                    "mfg_nvs.client_key", "mfg_nvs.client_ca", "mfg_nvs.mqtt_cert", "mfg_nvs.mqtt_key", "mfg_nvs.mqtt_ca"]
    assert str(err.value.problems[0]).startswith(f"{display_path(STOCK_DIR / 'WROOM-32-V5.toml')}: mfg_nvs.server_cert = ")
    assert load_board("WROOM-32-V5", registry).development == ("mfg_nvs",)


def test_copies_are_caught_by_content_however_encoded(tmp_path, registry):
    """A renamed copy, a DER re-encoding, a PEM with CRLF line ends: each holds the public key of a
    development pair, so each is refused."""
    der = x509.load_pem_x509_certificate((CERTS / "client.crt").read_bytes()).public_bytes(serialization.Encoding.DER)
    (tmp_path / "ours.der").write_bytes(der)
    (tmp_path / "ours.key").write_bytes((CERTS / "client.key").read_bytes().replace(b"\n", b"\r\n"))
    path = write(tmp_path / "copied.toml", client_board("ours.der", "ours.key"))
    with pytest.raises(BoardError) as err:
        load_board(str(path), registry, release=True)
    assert [(p.key, p.value) for p in err.value.problems] == [
        ("at_customize.partitions[client_cert].source", str(tmp_path / "ours.der")),
        ("at_customize.partitions[client_key].source", str(tmp_path / "ours.key"))]
    assert "atfactory's development client certificate (boards/data/certs/client.crt or a copy;" in str(err.value)
    assert_no_key_material(str(err.value), CERTS / "client.key")
    assert load_board(str(path), registry).development == ("client_cert", "client_key")


def test_own_certificates_build_in_release_mode_without_the_warning(tmp_path):
    own_pki(tmp_path)
    write(tmp_path / "ours.toml", client_board("own.crt", "own.key"))
    r = run_scons("board=ours.toml", "release=yes", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "development" not in r.stderr
    assert (tmp_path / "out/ours/customized_partitions/client_cert.bin").is_file()


def test_release_yes_refuses_a_stock_board_and_writes_nothing(tmp_path):
    r = run_scons("board=ESP32C3-MINI-1", "release=yes", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2
    lines = problem_lines(r.stderr)
    assert len(lines) == 12 and all("release=yes refuses development certificates and keys" in line for line in lines)
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out/ESP32C3-MINI-1").exists()


def test_without_release_one_warning_line_per_build(tmp_path):
    r = run_scons("board=WROOM-32", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "development" in line]
    assert warnings == [DEV_WARNING.format(count="12 partitions", boards="WROOM-32")]
    r = run_scons("board=WROOM-32-V5", "build_dir=out", cwd=tmp_path)
    assert [line for line in r.stderr.splitlines() if "development" in line] == [
        DEV_WARNING.format(count="1 partition", boards="WROOM-32-V5").replace(" hold ", " holds ")]


def test_board_all_warns_once(built, tmp_path):
    """The session's board=all build: one line for every board (the ACME plugin's board included)."""
    r = run_scons("board=all", "build_dir=out", "-n", cwd=built)   # -n: the boards are loaded, nothing is built
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "development" in line]
    assert len(warnings) == 1
    pattern = re.escape(DEV_WARNING).replace(re.escape("{count}"), r"\d+ partitions").replace(re.escape("{boards}"), r"\d+ boards")
    assert re.fullmatch(pattern, warnings[0]), warnings


def test_release_refuses_an_expired_certificate(tmp_path, registry):
    from test_release import _expired_ca

    own_pki(tmp_path)
    _expired_ca(tmp_path / "old_ca.crt")
    text = client_board("own.crt", "own.key") + ('\n[[at_customize.partitions]]\nname = "client_ca"\ntype = 0x40\n'
                                                 'subtype = 7\noffset = 0x38000\nsize = "8K"\nsource = ["old_ca.crt"]\n')
    path = write(tmp_path / "old.toml", text)
    assert any("expired on 2020-01-01" in w for w in load_board(str(path), registry).warnings)
    with pytest.raises(BoardError) as err:
        load_board(str(path), registry, release=True)
    (problem,) = err.value.problems
    assert str(problem) == (f"{path}: at_customize.partitions[client_ca].source = \"{tmp_path / 'old_ca.crt'}\": certificate CN=old CA "
                            "in client_ca (old_ca.crt) expired on 2020-01-01; release=yes refuses expired "
                            "certificates: accepted: certificates valid today")


def test_release_refuses_development_files_in_a_devices_row(tmp_path):
    own_pki(tmp_path / "a", "a")
    (tmp_path / "dev.crt").write_bytes((CERTS / "client.crt").read_bytes())
    (tmp_path / "dev.key").write_bytes((CERTS / "client.key").read_bytes())
    write(tmp_path / "ours.toml", client_board("a/a.crt", "a/a.key"))
    (tmp_path / "devices.csv").write_text("device_id,client_cert,client_key\nD1,a/a.crt,a/a.key\nD2,dev.crt,dev.key\n")
    r = run_scons("board=ours.toml", "devices=devices.csv", "release=yes", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = problem_lines(r.stderr)
    assert lines == [
        f"scons: *** [{tmp_path / 'out/ours/devices.json'}] {tmp_path / 'devices.csv'}: line 3, client_cert = \"dev.crt\": {tmp_path / 'dev.crt'} is "
        "atfactory's development client certificate (boards/data/certs/client.crt or a copy; its private key is "
        "public in atfactory's repository); release=yes refuses development certificates and keys: accepted: "
        "certificates and keys of your own",
        f"scons: *** {tmp_path / 'devices.csv'}: line 3, client_key = \"dev.key\": {tmp_path / 'dev.key'} is "
        "atfactory's development client key (boards/data/certs/client.key or a copy; its private key is public in "
        "atfactory's repository); release=yes refuses development certificates and keys: accepted: certificates "
        "and keys of your own"]
    assert not (tmp_path / "out/ours/devices").exists()
    r = run_scons("board=ours.toml", "devices=devices.csv", "build_dir=out", cwd=tmp_path)   # development: builds
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out/ours/devices/D2/customized_partitions/client_cert.bin").is_file()


def test_help_shows_the_release_variable(tmp_path):
    r = run_scons("-h", cwd=tmp_path)
    assert r.returncode == 0
    assert re.search(r"^release: production build: refuse atfactory's development certificates and keys, and "
                     r"expired certificates \(yes\|no\)$", r.stdout, re.M), r.stdout
