"""Releases (atfactory.manifest and the checks a release needs): the manifest, signed releases and their
verification, [release] valid_until, expired certificates, sandbox=yes, partition names that stay in the release folder."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from atfactory.board import load_board
from atfactory.cli import main
from atfactory.manifest import sha256_file
from helpers import STOCK_DIR, REPO, WITH_ACME, run_scons, write
from firmware_factory import make_release


def _write_key(path: Path, key, encrypted: bool = False) -> Path:
    enc = serialization.BestAvailableEncryption(b"pw") if encrypted else serialization.NoEncryption()
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    private = ed25519.Ed25519PrivateKey.generate()
    _write_key(root / "release.key", private)
    (root / "release.pub").write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    other = ed25519.Ed25519PrivateKey.generate()
    (root / "other.pub").write_bytes(other.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    _write_key(root / "encrypted.key", ed25519.Ed25519PrivateKey.generate(), encrypted=True)
    _write_key(root / "rsa.key", rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return root


@pytest.fixture(scope="module")
def signed(tmp_path_factory, keys, registry):
    root = tmp_path_factory.mktemp("signed")
    release = make_release(root / "fw", load_board("WROOM-32", registry))
    # with the example plugin, which takes part in the build without touching WROOM-32's outputs
    r = run_scons("board=WROOM-32", f"firmware={release}", f"sign_key={keys / 'release.key'}", "build_dir=out",
                  WITH_ACME, cwd=root)
    assert r.returncode == 0, r.stderr
    return root / "out" / "WROOM-32"


def test_manifest_lists_every_output_and_input(signed):
    manifest = json.loads((signed / "manifest.json").read_text())
    assert manifest["board"] == {"id": "WROOM-32", "module": "WROOM-32", "chip": "esp32",
                                 "flash": {"mode": "dio", "freq": "40m", "size": "4MB"}}
    outputs = {o["path"]: o for o in manifest["outputs"]}
    on_disk = sorted(str(p.relative_to(signed)) for p in signed.rglob("*")
                     if p.is_file() and p.name not in ("manifest.json", "manifest.json.sig"))
    assert sorted(outputs) == on_disk
    for path, out in outputs.items():
        assert out["sha256"] == sha256_file(signed / path)
        assert out["size"] == (signed / path).stat().st_size
    assert outputs["customized_partitions/server_cert.bin"]["offset"] == 0x24000
    assert outputs["factory/factory_WROOM-32.bin"]["offset"] == 0
    assert outputs["flash_map.svg"]["offset"] is None
    roles = {(i["role"], i["name"]) for i in manifest["inputs"]}
    assert ("board file", "WROOM-32.toml") in roles and ("source", "server.crt") in roles
    assert ("firmware", "esp-at.bin") in roles and ("firmware", "download.config") in roles
    assert {"name": "acme_vendor", "version": "1.0.0"} in manifest["plugins"]
    text = (signed / "manifest.json").read_text()
    assert str(REPO) not in text and str(signed) not in text   # no absolute paths: reproducible
    for key in (STOCK_DIR / "data/certs").glob("*.key"):
        for line in key.read_text().splitlines()[1:-1]:
            assert line not in text


def _verify(*argv):
    return main(["verify", *argv])


def test_signed_release_verifies(signed, keys, capsys):
    assert _verify(str(signed), "--pubkey", str(keys / "release.pub")) == 0
    out = capsys.readouterr().out
    count = len(json.loads((signed / "manifest.json").read_text())["outputs"])
    assert f"manifest.json signed by this key; {count} outputs match their SHA-256" in out
    assert _verify(str(signed / "factory/factory_WROOM-32.bin"), "--pubkey", str(keys / "release.pub"),
                   "--board", "WROOM-32") == 0


@pytest.mark.parametrize("tamper, expected", [
    ("output", "customized_partitions/factory_param.bin: SHA-256 differs from the manifest: the file was altered"),
    ("manifest", "manifest.json: the signature in manifest.json.sig does not match the manifest and this key"),
    ("missing", "download.config: listed in the manifest, missing from the release folder"),
])
def test_tampering_is_caught_and_named(signed, keys, tmp_path, capsys, tamper, expected):
    copy = tmp_path / "copy"
    shutil.copytree(signed, copy)
    if tamper == "output":
        data = bytearray((copy / "customized_partitions/factory_param.bin").read_bytes())
        data[16] ^= 1
        (copy / "customized_partitions/factory_param.bin").write_bytes(bytes(data))
    elif tamper == "manifest":
        text = (copy / "manifest.json").read_text()
        (copy / "manifest.json").write_text(text.replace('"module": "WROOM-32"', '"module": "WROOM-33"'))
    else:
        (copy / "download.config").unlink()
    assert _verify(str(copy), "--pubkey", str(keys / "release.pub"), "--board", "WROOM-32") == 1
    out = capsys.readouterr().out
    assert expected in out
    assert "against board" not in out   # signature and hashes come before anything else


def test_wrong_public_key(signed, keys, capsys):
    assert _verify(str(signed), "--pubkey", str(keys / "other.pub")) == 1
    assert "does not match the manifest and this key" in capsys.readouterr().out


def test_rebuild_restores_a_removed_output(signed, keys, tmp_path, registry):
    # SCons rebuilds what is missing (an altered output is for verify --pubkey to catch).
    root = signed.parent.parent
    target = signed / "customized_partitions/server_cert.bin"
    good = target.read_bytes()
    target.unlink()
    release = root / "fw"
    r = run_scons("board=WROOM-32", f"firmware={release}", f"sign_key={keys / 'release.key'}", "build_dir=out", cwd=root)
    assert r.returncode == 0
    assert target.read_bytes() == good


@pytest.mark.parametrize("key, expected", [
    ("encrypted.key", "the key is encrypted; the build signs unattended, so give it a decrypted copy"),
    ("rsa.key", "a RSA key; accepted: an Ed25519 key"),
    ("missing.key", "cannot be read"),
])
def test_bad_signing_key(keys, tmp_path, key, expected):
    r = run_scons("board=WROOM-32", f"sign_key={keys / key}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2
    assert expected in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out/WROOM-32").exists()


def test_signing_keys_never_printed(keys, tmp_path):
    body = [l for l in (keys / "rsa.key").read_text().splitlines() if not l.startswith("-----")]
    r = run_scons("board=WROOM-32", f"sign_key={keys / 'rsa.key'}", "build_dir=out", cwd=tmp_path)
    assert not any(line in r.stderr + r.stdout for line in body)


# --- [release] valid_until ---------------------------------------------------------------------

@pytest.mark.parametrize("until, ok", [("2045-12-31", True), ("2046-01-02", False)])
def test_valid_until(tmp_path, until, ok):
    board = write(tmp_path / "rel.toml", f'extends = "WROOM-32"\n[release]\nvalid_until = {until}\n')
    r = run_scons(f"board={board.name}", "build_dir=out", cwd=tmp_path)
    if ok:
        assert r.returncode == 0, r.stderr
        return
    assert r.returncode == 2
    assert ('rel.toml: release.valid_until = "2046-01-02": certificate CN=atfactory-dev-server,O=atfactory '
            'development (not for production) in server_cert (server.crt) expires 2046-01-01, before this date') in r.stderr
    assert not (tmp_path / "out/rel").exists()


def test_valid_until_must_be_a_date(tmp_path):
    from atfactory.errors import BoardError
    from helpers import board_from_text
    with pytest.raises(BoardError) as err:
        board_from_text(tmp_path, 'extends = "WROOM-32"\n[release]\nvalid_until = "next year"\n')
    assert 'release.valid_until = "next year": expected a date: 2030-01-01' in str(err.value)


# --- an expired certificate: a warning at build time ------------------------------------------

def _expired_ca(path: Path) -> Path:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(datetime.datetime(2015, 1, 1))
            .not_valid_after(datetime.datetime(2020, 1, 1)).sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


EXPIRED = ("certificate CN=old CA in {where} (old_ca.crt) expired on 2020-01-01; it still builds, but TLS peers "
           "that check dates will refuse it")


@pytest.mark.parametrize("base, table, where", [
    ("WROOM-32", '[[at_customize.partitions]]\nname = "server_ca"\nsource = "old_ca.crt"\n', "server_ca"),
    ("WROOM-32-V5", '[mfg_nvs]\nserver_ca = ["old_ca.crt"]\n', "mfg_nvs.server_ca"),
])
def test_expired_certificate_builds_with_a_warning(tmp_path, registry, base, table, where):
    ca = _expired_ca(tmp_path / "old_ca.crt")
    board = write(tmp_path / "old.toml", f'extends = "{base}"\n{table}')
    warnings = load_board(str(board), registry).warnings
    assert f"{ca}: " + EXPIRED.format(where=where) in warnings, warnings
    assert not [w for w in load_board(base, registry).warnings if "expired" in w]   # the stock ones are valid


def test_expired_certificate_warning_in_the_scons_output(tmp_path):
    ca = _expired_ca(tmp_path / "old_ca.crt")
    board = write(tmp_path / "old.toml", 'extends = "ESP32C3-MINI-1"\n[[at_customize.partitions]]\n'
                                         'name = "client_ca"\nsource = "old_ca.crt"\n')
    r = run_scons(f"board={board.name}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"atfactory: warning: {ca}: " + EXPIRED.format(where="client_ca") in r.stderr.splitlines()
    assert ca.read_bytes() in (tmp_path / "out/old/customized_partitions/client_ca.bin").read_bytes()
    # the second run takes the dates from the input cache (not parsing the file again): same warning
    again = run_scons(f"board={board.name}", "build_dir=out", cwd=tmp_path)
    assert again.returncode == 0 and "is up to date" in again.stdout, again.stdout + again.stderr
    assert f"atfactory: warning: {ca}: " + EXPIRED.format(where="client_ca") in again.stderr.splitlines()
    cache = tmp_path / "out/.atfactory/inputs.json"
    doc = json.loads(cache.read_text())
    entry = doc["entries"][f"dates {ca}"]
    assert entry[1] == [["CN=old CA", "2020-01-01T00:00:00+00:00"]], entry
    entry[1] = [["CN=cached CA", "2019-05-06T00:00:00+00:00"]]   # proves the cache is what is read
    cache.write_text(json.dumps(doc))
    cached = run_scons(f"board={board.name}", "build_dir=out", cwd=tmp_path)
    assert f"atfactory: warning: {ca}: certificate CN=cached CA in client_ca (old_ca.crt) expired on 2019-05-06; " \
           "it still builds, but TLS peers that check dates will refuse it" in cached.stderr.splitlines(), cached.stderr
    ca.write_bytes(ca.read_bytes())   # rewritten: a new stamp, so the file is read again
    fresh = run_scons(f"board={board.name}", "build_dir=out", cwd=tmp_path)
    assert f"atfactory: warning: {ca}: " + EXPIRED.format(where="client_ca") in fresh.stderr.splitlines(), fresh.stderr


# --- sandbox=yes ------------------------------------------------------------------------------------

def _untrusted(tmp_path, text):
    folder = tmp_path / "incoming"
    folder.mkdir()
    return write(folder / "their.toml", text)


SECRET = "/etc/passwd"


@pytest.mark.parametrize("text, key", [
    (f'extends = "WROOM-32"\n[[at_customize.partitions]]\nname = "userdata"\ntype = 0x40\nsubtype = 0x20\n'
     f'offset = 0x40000\nsize = "8K"\nsource = "{SECRET}"\n', "at_customize.partitions[userdata].source"),
    ('extends = "WROOM-32"\n[[at_customize.partitions]]\nname = "client_ca"\nsource = "../../../../../../etc/ssl/certs/ca-certificates.crt"\n',
     "at_customize.partitions[client_ca].source"),
    ('extends = "../outside.toml"\n', "extends"),
    ('extends = "WROOM-32"\n[firmware]\nrelease = "/opt"\n', "firmware.release"),
])
def test_sandbox_refuses_paths_outside(tmp_path, text, key):
    write(tmp_path / "outside.toml", 'extends = "WROOM-32"\n')
    board = _untrusted(tmp_path, text)
    r = run_scons(f"board={board}", "sandbox=yes", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2, r.stdout
    assert f"their.toml: {key} = " in r.stderr
    assert f"resolves outside {tmp_path / 'incoming'}, the folder of the board named on the command line (sandbox=yes)" in r.stderr
    assert not (tmp_path / "out/their").exists()
    # Without sandbox=yes the same paths are free (where they make sense).
    if key == "at_customize.partitions[userdata].source":
        free = run_scons(f"board={board}", "build_dir=out2", cwd=tmp_path)
        assert free.returncode == 0, free.stderr
        assert (tmp_path / "out2/their/customized_partitions/userdata.bin").read_bytes() == Path(SECRET).read_bytes()


def test_sandbox_follows_symlinks(tmp_path):
    board = _untrusted(tmp_path, 'extends = "WROOM-32"\n[[at_customize.partitions]]\nname = "userdata"\ntype = 0x40\n'
                                 'subtype = 0x20\noffset = 0x40000\nsize = "8K"\nsource = "innocent.bin"\n')
    os.symlink(SECRET, tmp_path / "incoming/innocent.bin")
    r = run_scons(f"board={board}", "sandbox=yes", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2
    assert 'at_customize.partitions[userdata].source = "' in r.stderr and f"resolves outside {tmp_path / 'incoming'}" in r.stderr


def test_sandbox_allows_inside_files_stock_boards_and_command_line_paths(tmp_path, registry):
    folder = tmp_path / "incoming"
    (folder / "certs").mkdir(parents=True)
    shutil.copy(STOCK_DIR / "data/certs/client.crt", folder / "certs/client.crt")
    shutil.copy(STOCK_DIR / "data/certs/client.key", folder / "certs/client.key")
    board = write(folder / "their.toml", 'extends = "WROOM-32"\n'
                  '[[at_customize.partitions]]\nname = "client_cert"\nsource = "certs/client.crt"\n'
                  '[[at_customize.partitions]]\nname = "client_key"\nsource = "certs/client.key"\n')
    release = make_release(tmp_path / "fw", load_board("WROOM-32", registry))   # outside: given on the command line
    r = run_scons(f"board={board}", "sandbox=yes", f"firmware={release}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out/their/factory/factory_their.bin").is_file()


@pytest.mark.parametrize("name", ["../../../pwned", "a/b", "..", ".hidden", "x\\\\y"])
def test_partition_names_cannot_leave_the_release_folder(tmp_path, name):
    from atfactory.errors import BoardError
    from helpers import board_from_text
    (tmp_path / "data.bin").write_bytes(b"x")
    with pytest.raises(BoardError) as err:
        board_from_text(tmp_path, f'extends = "WROOM-32"\n[[at_customize.partitions]]\nname = "{name}"\ntype = 0x40\n'
                                  'subtype = 0x20\noffset = 0x40000\nsize = "4K"\nsource = ["data.bin"]\n')
    assert "accepted: letters, digits, '_', '-' and '.', not starting with '.'" in str(err.value)



def _with_entry(release: Path, old: str, new: str, move=True) -> None:
    """download.config of ``release`` naming ``new`` where it named ``old`` (the file moved there)."""
    config = release / "download.config"
    config.write_text(config.read_text().replace(f" {old}", f" {new}"))
    if move and not new.startswith("/"):
        target = (release / new)
        target.parent.mkdir(parents=True, exist_ok=True)
        (release / old).replace(target)


@pytest.mark.parametrize("name, words", [
    ("../../plugins/evil.py", "has an empty, '.' or '..' component"),
    ("ok/../../escape.bin", "has an empty, '.' or '..' component"),
    ("/tmp/abs.bin", "an absolute path"),
    ("phy\\init.bin", "holds a control character or one of"),
])
def test_download_config_names_stay_inside_the_release_folder(tmp_path, registry, name, words):
    """A firmware folder's download.config is input: its names never become paths outside the build."""
    release = make_release(tmp_path / "deep/fw", load_board("WROOM-32", registry))
    if name.startswith("/"):
        _with_entry(release, "phy_init_data.bin", name, move=False)
    else:
        _with_entry(release, "phy_init_data.bin", name)
    for sandbox in ("sandbox=no", "sandbox=yes"):
        r = run_scons("board=WROOM-32", f"firmware={release}", sandbox, "build_dir=out", cwd=tmp_path)
        assert r.returncode == 2, r.stdout
        assert f"download.config: the entry at 0xf000 names {name!r}, which {words}" in r.stderr
        assert "Traceback" not in r.stderr
    assert not (tmp_path / "deep/plugins").exists() and not (tmp_path / "escape.bin").exists()
    assert not (tmp_path / "out/WROOM-32/factory").exists()


def test_download_config_names_differing_only_in_case_are_refused(tmp_path, registry):
    release = make_release(tmp_path / "fw", load_board("WROOM-32", registry))
    config = release / "download.config"
    config.write_text(config.read_text().replace(" ota_data_initial.bin", " PHY_INIT_DATA.bin"))
    (release / "PHY_INIT_DATA.bin").write_bytes((release / "ota_data_initial.bin").read_bytes())
    r = run_scons("board=WROOM-32", f"firmware={release}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2
    assert "'PHY_INIT_DATA.bin' and 'phy_init_data.bin' differ only in case" in r.stderr or \
        "'phy_init_data.bin' and 'PHY_INIT_DATA.bin' differ only in case" in r.stderr, r.stderr


def test_sandbox_confines_the_files_a_firmware_folder_lists(tmp_path, registry):
    release = make_release(tmp_path / "fw", load_board("WROOM-32", registry))
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes((release / "phy_init_data.bin").read_bytes())
    (release / "phy_init_data.bin").unlink()
    os.symlink(outside, release / "phy_init_data.bin")
    r = run_scons("board=WROOM-32", f"firmware={release}", "sandbox=yes", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2
    assert "download.config: 'phy_init_data.bin' resolves outside the release folder (sandbox=yes)" in r.stderr
    assert run_scons("board=WROOM-32", f"firmware={release}", "build_dir=out2", cwd=tmp_path).returncode == 0


def test_verify_pubkey_reports_unsigned_and_stale_files(signed, keys, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(signed, copy)
    (copy / "customized_partitions/evil.bin").write_bytes(b"planted")
    (copy / "factory/factory_OLD.bin").write_bytes(b"from an earlier build")
    assert _verify(str(copy), "--pubkey", str(keys / "release.pub")) == 1
    out = capsys.readouterr().out
    assert "customized_partitions/evil.bin: in the release folder but in no signed list" in out
    assert "factory/factory_OLD.bin: in the release folder but in no signed list" in out
    assert _verify(str(signed), "--pubkey", str(keys / "release.pub")) == 0
    assert "no file in the folder outside the signed lists" in capsys.readouterr().out


def test_signed_devices_are_covered_by_the_signed_ledger(keys, tmp_path, capsys):
    from atfactory import nvs

    write(tmp_path / "devices.csv", "device_id,uart_baudrate\nD1,921600\nD2,57600\n")
    r = run_scons("board=WROOM-32-V5", "devices=devices.csv", f"sign_key={keys / 'release.key'}", "build_dir=out",
                  cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    release = tmp_path / "out/WROOM-32-V5"
    assert (release / "devices.json.sig").is_file()
    assert _verify(str(release), "--pubkey", str(keys / "release.pub")) == 0
    assert "devices.json signed by this key; 4 device outputs match their SHA-256" in capsys.readouterr().out
    image = release / "devices/D2/customized_partitions/mfg_nvs.bin"
    assert nvs.decode_nvs(image.read_bytes())   # a device output
    data = bytearray(image.read_bytes())
    data[100] ^= 1
    image.write_bytes(bytes(data))
    (release / "devices/D3").mkdir()
    (release / "devices/D3/download.config").write_text("planted")
    assert _verify(str(release), "--pubkey", str(keys / "release.pub")) == 1
    out = capsys.readouterr().out
    assert "devices/D2/customized_partitions/mfg_nvs.bin: SHA-256 differs from devices.json: the file was altered" in out
    assert "devices/D3/download.config: in the release folder but in no signed list" in out
    (release / "devices.json.sig").unlink()
    assert _verify(str(release), "--pubkey", str(keys / "release.pub")) == 1
    assert "devices.json.sig: missing; the devices of this release are not signed" in capsys.readouterr().out
