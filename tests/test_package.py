"""The package as a vendor gets it: sdist and wheel built from this repository, installed into a
fresh virtual environment outside the checkout, and a project of the vendor's own built with it
from ``atfactory new`` to a signed release with per-device outputs, verified.

One test, marked ``package`` (never skipped: CI fails on skips); it builds offline, with the
setuptools of the environment running the tests (the ``test`` extra), as ``python -m build``
does: the sdist first, the wheel from the sdist.
"""
from __future__ import annotations

import datetime
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from atfactory.board import load_board
from atfactory.factory_param import decode_factory_param
from helpers import REPO, stock_registry
from firmware_factory import make_release

SOURCE = ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "SConstruct", "site_scons", "docs", "examples",
          "tests", "scripts")


def run(*args, cwd: Path, env=None, ok=True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], cwd=str(cwd), env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert r.returncode == 0, f"{args}: {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def build_backend(call: str, src: Path, out: Path) -> Path:
    """setuptools.build_meta's ``call`` (build_sdist, build_wheel) in ``src``: the file it made."""
    r = run(sys.executable, "-c", f"from setuptools import build_meta; print(build_meta.{call}({str(out)!r}))",
            cwd=src)
    return out / r.stdout.strip().splitlines()[-1]


def certificate(name: str, issuer=None):
    """(PEM certificate, PEM key) of an EC P-256 key: self-signed, or signed by ``issuer`` (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_cert, signer_key = issuer if issuer else (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject)
            .issuer_name(x509.load_pem_x509_certificate(signer_cert).subject if signer_cert else subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
            .sign(signer_key if issuer is None else serialization.load_pem_private_key(signer_key, None), hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


def put(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    return path


def outputs(folder: Path) -> dict:
    """relative path -> bytes of every output under ``folder`` (not SCons's database, not atfactory's state)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".atfactory" not in p.parts and not p.name.startswith(".sconsign")}


@pytest.mark.package
def test_wheel_installed_elsewhere_builds_signs_and_verifies_a_vendor_project(tmp_path):
    import setuptools
    assert int(setuptools.__version__.split(".")[0]) >= 77, \
        f"setuptools {setuptools.__version__}: the build needs 77 or later; run .venv/bin/pip install -e '.[test]'"

    # --- sdist and wheel, from a copy of the repository (builds write into their source folder)
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache", ".hypothesis")
    src.mkdir()
    for part in SOURCE:
        if (REPO / part).is_dir():
            shutil.copytree(REPO / part, src / part, ignore=ignore)
        else:
            shutil.copy2(REPO / part, src / part)
    dist = tmp_path / "dist"
    dist.mkdir()
    sdist = build_backend("build_sdist", src, dist)
    assert sdist.name == "atfactory-0.1.0.tar.gz"
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "unpacked")
    for name in ("LICENSE", "SConstruct", "docs/plugins.md", "examples/acme/plugins/acme_vendor.py",
                 "tests/test_package.py", "site_scons/atfactory/boards/WROOM-32.toml"):
        assert f"atfactory-0.1.0/{name}" in names, name
    wheel = build_backend("build_wheel", tmp_path / "unpacked/atfactory-0.1.0", dist)
    assert wheel.name == "atfactory-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        metadata = z.read("atfactory-0.1.0.dist-info/METADATA").decode()
        entry_points = z.read("atfactory-0.1.0.dist-info/entry_points.txt").decode()
    stock = REPO / "site_scons/atfactory/boards"
    for path in sorted(stock.rglob("*")):   # every stock board, layout, certificate and the GATT table
        if path.is_file() and "__pycache__" not in path.parts:
            assert f"atfactory/boards/{path.relative_to(stock)}" in names, path
    for name in ("atfactory/formats/pki.py", "atfactory/site_tools/atfactory_build.py",
                 "atfactory/site_tools/project.SConstruct", "atfactory-0.1.0.dist-info/licenses/LICENSE"):
        assert name in names, name
    assert not any(n.startswith(("tests/", "examples/", "site_scons/")) for n in names)
    assert "atfactory = atfactory.cli:main" in entry_points
    for line in ("License-Expression: Apache-2.0", "Requires-Python: >=3.9",
                 "Classifier: Topic :: Software Development :: Embedded Systems",
                 "Description-Content-Type: text/markdown"):
        assert line in metadata.splitlines(), line
    from packaging.requirements import Requirement
    required = {r.name.lower(): r for r in (Requirement(line.split(": ", 1)[1]) for line in metadata.splitlines()
                                            if line.startswith("Requires-Dist: "))}
    assert {name: str(r.specifier) for name, r in required.items() if r.marker is None} == {
        "scons": ">=4.5", "pluggy": "<2,>=1.3", "cryptography": ">=41", "esptool": "<6,>=5.0"}
    assert str(required["tomli"].marker) == 'python_version < "3.11"'
    assert "## Your own project" in metadata   # the README is the long description

    # --- a fresh environment outside the checkout: the wheel, and the dependencies already here
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path).stdout.strip())
    import site as here
    # plain path lines: the dependencies, not this checkout's editable atfactory (a .pth in them)
    (site / "dependencies.pth").write_text("".join(f"{p}\n" for p in here.getsitepackages()))
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel,
        cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    where = run(python, "-c", "import atfactory, SCons; print(atfactory.__file__)", cwd=tmp_path, env=env).stdout
    assert where.strip() == str(site / "atfactory" / "__init__.py")
    atfactory = venv / "bin" / "atfactory"

    # --- the vendor's project: a board on WROOM-32 with its own certificates and pins
    project = tmp_path / "acme"
    project.mkdir()
    r = run(atfactory, "new", "ACME-1", "--extends", "WROOM-32", cwd=project, env=env)
    assert r.stdout == (f"wrote {project}/atfactory.toml (a new atfactory project)\n"
                        f"wrote {project}/boards/ACME-1.toml: extends WROOM-32; uncomment and set what differs, then: "
                        "atfactory build ACME-1\n")
    again = run(atfactory, "new", "ACME-1", "--extends", "WROOM-32", cwd=project, env=env, ok=False)
    assert again.returncode == 2 and again.stderr == ("atfactory: error: boards/ACME-1.toml: exists; nothing was "
                                                      "overwritten; accepted: an id without a board file in that folder\n")
    board = project / "boards/ACME-1.toml"
    text = board.read_text().replace("# uart_tx_pin = 17", "uart_tx_pin = 4").replace("# uart_rx_pin = 16",
                                                                                      "uart_rx_pin = 5")
    for name, file in (("client_cert", "client.crt"), ("client_key", "client.key"), ("client_ca", "ca.crt")):
        block = f'# [[at_customize.partitions]]\n# name = "{name}"\n# source = ["certs/ACME-1/{file}"]\n'
        assert block in text, name
        text = text.replace(block, block.replace("# ", ""))
    board.write_text(text)
    ca = certificate("ACME CA")
    client = certificate("ACME-1 client", issuer=ca)
    certs = project / "boards/certs/ACME-1"
    put(certs / "ca.crt", ca[0])
    put(certs / "client.crt", client[0])
    put(certs / "client.key", client[1], 0o600)
    base = load_board("WROOM-32", stock_registry())
    make_release(project / "firmware/ESP32", base)   # the ESP-AT release the project names for esp32
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    signing = ed25519.Ed25519PrivateKey.generate()
    put(project / "release.key", signing.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()), 0o600)
    put(project / "release.pub", signing.public_key().public_bytes(serialization.Encoding.PEM,
                                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    (project / "atfactory.toml").write_text('boards = ["boards"]\ndefault_board = "ACME-1"\nsign_key = "release.key"\n'
                                            '[firmware.chip]\nesp32 = "firmware/ESP32"\n')

    r = run(atfactory, "build", "-j", "2", cwd=project, env=env)
    assert "SIGN   build/ACME-1/manifest.json.sig" in r.stdout.splitlines()
    out = project / "build/ACME-1"
    fp = decode_factory_param((out / "customized_partitions/factory_param_ACME-1.bin").read_bytes())
    assert (fp["module_name"], fp["uart_tx_pin"], fp["uart_rx_pin"], fp["uart_cts_pin"]) == ("ACME-1", 4, 5, 15)
    cert_part = (out / "customized_partitions/client_cert.bin").read_bytes()
    assert cert_part[:2] == b"\xf1\xf1" and client[0] in cert_part
    assert client[1] in (out / "customized_partitions/client_key.bin").read_bytes()
    assert (out / "customized_partitions/client_key.bin").stat().st_mode & 0o077 == 0
    image = (out / "factory/factory_ACME-1.bin").read_bytes()
    assert len(image) == 4 << 20 and image[0x2A000:0x2A000 + len(cert_part)] == cert_part
    # the stock parts come from the installed package data: WROOM-32's server certificate
    assert (out / "customized_partitions/server_cert.bin").read_bytes().find(
        (REPO / "site_scons/atfactory/boards/data/certs/server.crt").read_bytes()) > 0
    assert run(atfactory, "build", cwd=project, env=env).stdout.splitlines()[-1] == "scons: `ACME-1' is up to date."

    # --- the same project built by this checkout: byte for byte
    twin = tmp_path / "twin"
    shutil.copytree(project, twin, ignore=shutil.ignore_patterns("build"))
    checkout_env = dict(env, PYTHONPATH=str(REPO / "site_scons"))
    run(sys.executable, "-m", "atfactory", "build", cwd=twin, env=checkout_env)
    assert outputs(twin / "build/ACME-1") == outputs(out)

    # --- one certificate set per device, signed
    rows = ["device_id,client_cert,client_key"]
    device_certs = {}
    for n in (1, 2):
        cert, key = certificate(f"ACME-1 D{n:04}", issuer=ca)
        put(project / f"devices/D{n:04}.crt", cert)
        put(project / f"devices/D{n:04}.key", key, 0o600)
        rows.append(f"D{n:04},D{n:04}.crt,D{n:04}.key")
        device_certs[f"D{n:04}"] = cert
    put(project / "devices/devices.csv", ("\n".join(rows) + "\n").encode())
    r = run(atfactory, "build", "--devices", "devices/devices.csv", "-j", "2", cwd=project, env=env)
    assert "DEVICES ACME-1: 2 devices" in r.stdout
    for device, cert in device_certs.items():
        assert cert in (out / f"devices/{device}/customized_partitions/client_cert.bin").read_bytes()
    assert (out / "devices.json.sig").is_file()

    # --- the gate: the signature, every hash, every device output, and the board
    r = run(atfactory, "verify", "build/ACME-1", "--pubkey", "release.pub", "--board", "ACME-1", cwd=project, env=env)
    lines = r.stdout.splitlines()
    assert lines[0] == f"signature and hashes of {out}:" or lines[0] == "signature and hashes of build/ACME-1:"
    assert "  ok       devices.json signed by this key; 6 device outputs match their SHA-256" in lines
    assert "  ok       no file in the folder outside the signed lists" in lines
    assert lines[-1] == "result: matches the board"
    device_file = out / "devices/D0002/customized_partitions/client_cert.bin"
    good = device_file.read_bytes()
    device_file.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    r = run(atfactory, "verify", "build/ACME-1", "--pubkey", "release.pub", cwd=project, env=env, ok=False)
    assert r.returncode == 1
    assert any(line.startswith("  DIFFERS  ") and "devices/D0002/customized_partitions/client_cert.bin" in line
               for line in r.stdout.splitlines()), r.stdout
    assert r.stdout.splitlines()[-1] == "result: 1 difference(s); the release cannot be trusted"
    device_file.write_bytes(good)
    assert hashlib.sha256(device_file.read_bytes()).digest() == hashlib.sha256(good).digest()

    # --- the tool in a vendor's own SConstruct, from the installed package
    (project / "SConstruct").write_text((REPO / "tests/test_project.py").read_text()
                                        .split("VENDOR_SCONSTRUCT = '''\\\n", 1)[1].split("'''", 1)[0]
                                        .replace('["ACME-1", "ACME-2"]', '["ACME-1"]'))
    run(python, "-m", "SCons", "-Q", cwd=project, env=env)
    mine = outputs(project / "vendor-build/ACME-1")   # no firmware, no key there: the AT partitions
    assert sorted(k for k in mine if k.startswith("customized_partitions/")) == \
        sorted(k for k in outputs(out) if k.startswith("customized_partitions/"))
    for name, data in mine.items():
        if name.startswith("customized_partitions/") or name == "at_customize.bin":
            assert data == (out / name).read_bytes(), name
