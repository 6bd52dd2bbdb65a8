"""Per-device builds for manufacturing lines (atfactory.devices): ``scons board=ID devices=devices.csv``."""
from __future__ import annotations

import datetime
import hashlib
import json
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from atfactory import pki
from atfactory.board import load_board
from atfactory.download_config import decode_download_config
from atfactory.factory_param import decode_factory_param
from helpers import WITH_ACME, run_scons
from firmware_factory import make_release

T0, T1 = datetime.datetime(2026, 1, 1), datetime.datetime(2036, 1, 1)


def make_device_pki(folder: Path, count: int, valid=(T0, T1), name="dev", ca_name="line CA"):
    """An EC CA and ``count`` device certificates with their keys (cert_N.pem, key_N.pem):
    CN <name>-N, valid from ``valid[0]`` to ``valid[1]``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    for n in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name}-{n}")]))
                .issuer_name(ca).public_key(key.public_key()).serial_number(n + 1)
                .not_valid_before(valid[0]).not_valid_after(valid[1]).sign(ca_key, hashes.SHA256()))
        (folder / f"cert_{n}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (folder / f"key_{n}.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


@pytest.fixture(scope="module")
def device_pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("pki")
    make_device_pki(root / "certs", 520)
    return root


def write_csv(path: Path, header: str, rows):
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


def rows_for(n, pki_dir: Path, csv_dir: Path, extra=lambda i: ""):
    rel = Path(*([".."] * len(csv_dir.relative_to(csv_dir.anchor).parts))) / pki_dir.relative_to(pki_dir.anchor)
    return [f"D{i:05d},{rel}/certs/cert_{i}.pem,{rel}/certs/key_{i}.pem{extra(i)}" for i in range(n)]


def test_devices_end_to_end(device_pki, tmp_path):
    csv = write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key,uart_baudrate",
                    rows_for(20, device_pki, tmp_path, lambda i: ",921600" if i == 3 else ","))
    r = run_scons("board=WROOM-32", f"devices={csv.name}", "build_dir=out", "-j2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    release = tmp_path / "out/WROOM-32"
    ledger = json.loads((release / "devices.json").read_text())
    assert [d["device_id"] for d in ledger["devices"]] == [f"D{i:05d}" for i in range(20)]
    for entry in ledger["devices"]:
        folder = release / "devices" / entry["device_id"]
        for rel, digest in entry["outputs"].items():
            assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == digest
        n = int(entry["device_id"][1:])
        items = pki.decode_pki((folder / "customized_partitions/client_cert.bin").read_bytes())
        assert items[0].content == (device_pki / f"certs/cert_{n}.pem").read_bytes()
        assert (folder / "customized_partitions/client_key.bin").stat().st_mode & 0o077 == 0
        config = decode_download_config((folder / "download.config").read_bytes())
        paths = dict((p, o) for o, p in config.entries)
        assert paths["customized_partitions/client_cert.bin"] == 0x2A000
        assert paths["../../customized_partitions/server_cert.bin"] == 0x24000   # shared with the board
        for _, p in config.entries:
            assert (folder / p).is_file(), p
        has_fp = (folder / "customized_partitions/factory_param.bin").exists()
        assert has_fp == (n == 3)   # only the device whose row sets a factory_param value
    fp = decode_factory_param((release / "devices/D00003/customized_partitions/factory_param_WROOM-32.bin").read_bytes())
    assert fp["uart_baudrate"] == 921600 and fp["uart_tx_pin"] == 17
    again = run_scons("board=WROOM-32", f"devices={csv.name}", "build_dir=out", cwd=tmp_path)
    assert "DEVICES" not in again.stdout
    # A new certificate file for one device rebuilds the batch; the ledger records it.
    cert, key = device_pki / "certs/cert_5.pem", device_pki / "certs/key_5.pem"
    original = cert.read_bytes(), key.read_bytes()
    make_device_pki(tmp_path / "fresh", 1)
    cert.write_bytes((tmp_path / "fresh/cert_0.pem").read_bytes())
    (device_pki / "certs/key_5.pem").write_bytes((tmp_path / "fresh/key_0.pem").read_bytes())
    try:
        third = run_scons("board=WROOM-32", f"devices={csv.name}", "build_dir=out", cwd=tmp_path)
        assert third.returncode == 0, third.stderr
        assert "DEVICES WROOM-32: 20 devices" in third.stdout
    finally:
        cert.write_bytes(original[0])
        key.write_bytes(original[1])
    # scons -c removes the devices too.
    assert run_scons("-c", "board=WROOM-32", f"devices={csv.name}", "build_dir=out", cwd=tmp_path).returncode == 0
    assert not (release / "devices").exists()


def test_many_devices_run_in_one_process_per_job(device_pki, tmp_path):
    csv = write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key", rows_for(520, device_pki, tmp_path))
    r = run_scons("board=WROOM-32", f"devices={csv.name}", "build_dir=out", "-j2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "DEVICES WROOM-32: devices.csv, 2 processes\n" in r.stdout and "DEVICES WROOM-32: 520 devices\n" in r.stdout
    ledger = json.loads((tmp_path / "out/WROOM-32/devices.json").read_text())
    assert len(ledger["devices"]) == 520
    assert [d["line"] for d in ledger["devices"]] == list(range(2, 522))
    assert sorted(p.name for p in (tmp_path / "out/WROOM-32").iterdir() if p.name.startswith(".devices")) == []
    # one job: the same bytes, the same ledger
    one = run_scons("board=WROOM-32", f"devices={csv.name}", "build_dir=one", cwd=tmp_path)
    assert one.returncode == 0 and "1 process\n" in one.stdout, one.stderr
    assert (tmp_path / "one/WROOM-32/devices.json").read_bytes() == (tmp_path / "out/WROOM-32/devices.json").read_bytes()


def test_chunks_claim_each_block_of_rows_once(tmp_path):
    """Two chunks going through the rows at their own pace: each block is kept by the first to
    reach it, whole, and skipped by the other."""
    from atfactory.devices_worker import BLOCK, _Claims

    first, second = _Claims(str(tmp_path)), _Claims(str(tmp_path))
    rows = 5 * BLOCK + 7
    kept = {"first": [], "second": []}

    def go(name, claimer, rows_from, rows_to):
        kept[name] += [j for j in range(rows_from, rows_to) if claimer(j)]
    go("first", first, 0, BLOCK + 3)              # blocks 0 and 1
    go("second", second, 0, 3 * BLOCK)            # 0 and 1 are taken: block 2
    go("first", first, BLOCK + 3, 4 * BLOCK)      # the rest of block 1; block 3
    go("second", second, 3 * BLOCK, rows)         # blocks 4 and 5
    go("first", first, 4 * BLOCK, rows)           # nothing left
    blocks = {name: sorted({j // BLOCK for j in js}) for name, js in kept.items()}
    assert blocks == {"first": [0, 1, 3], "second": [2, 4, 5]}
    assert sorted(kept["first"] + kept["second"]) == list(range(rows))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"claim-{b}" for b in range(6))


def test_a_failed_batch_reports_the_same_problems_with_any_number_of_jobs(tmp_path):
    """Over MAX_PROBLEMS bad rows: -j2 (chunks claiming blocks as they go) shows the same lines as -j1."""
    from atfactory.devices_worker import BLOCK
    from atfactory.errors import MAX_PROBLEMS

    count = 2 * MAX_PROBLEMS + BLOCK
    write_csv(tmp_path / "devices.csv", "device_id,client_cert", [f"D{i:05d},missing/{i}.pem" for i in range(count)])
    one = run_scons("board=WROOM-32", "devices=devices.csv", "build_dir=one", cwd=tmp_path)
    two = run_scons("board=WROOM-32", "devices=devices.csv", "build_dir=two", "-j2", cwd=tmp_path)
    assert one.returncode == two.returncode == 2
    lines = [line for line in one.stderr.splitlines() if "devices.csv: line" in line]
    assert len(lines) == MAX_PROBLEMS
    assert "devices.csv: line 2, client_cert = " in one.stderr and f"line {MAX_PROBLEMS + 1}, client_cert" in one.stderr
    assert f"line {MAX_PROBLEMS + 2}, client_cert" not in one.stderr
    assert one.stderr.endswith("scons: *** ... and more problems after these; fix these first\n")
    assert one.stderr.replace("/one/", "/two/") == two.stderr
    assert not (tmp_path / "two/WROOM-32/devices").exists()


def test_a_new_batch_replaces_the_last_and_a_failed_one_keeps_it(device_pki, tmp_path):
    rows = rows_for(4, device_pki, tmp_path)
    write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key", rows[:2])
    assert run_scons("board=WROOM-32", "devices=devices.csv", "build_dir=out", "-j2", cwd=tmp_path).returncode == 0
    release = tmp_path / "out/WROOM-32"
    write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key", rows[2:])
    assert run_scons("board=WROOM-32", "devices=devices.csv", "build_dir=out", "-j2", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in (release / "devices").iterdir()) == ["D00002", "D00003"]   # no stale devices
    good = (release / "devices.json").read_bytes()
    write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key", rows[:1] + ["D00009,nope.pem,nope.key"])
    r = run_scons("board=WROOM-32", "devices=devices.csv", "build_dir=out", "-j2", cwd=tmp_path)
    assert r.returncode == 2 and "devices.csv: line 3, client_cert = " in r.stderr
    assert (release / "devices.json").read_bytes() == good
    assert sorted(p.name for p in (release / "devices").iterdir()) == ["D00002", "D00003"]
    assert not [p for p in release.iterdir() if p.name.startswith(".devices")]


@pytest.mark.parametrize("mutate, expected", [
    (lambda rows: rows[:3] + [rows[1]], 'line 5, device_id = "D00001": already used on line 3; each device needs an id of its own'),
    (lambda rows: rows[:3] + ["D99999" + rows[0][6:]], 'line 5, client_cert = "'),
    (lambda rows: [rows[0] + ",40"], 'line 2, factory_param.uart_tx_pin = 40: ESP32 has no GPIO40'),
    (lambda rows: [rows[0] + ",0x28"], 'line 2, factory_param.uart_tx_pin = 0x28: ESP32 has no GPIO40'),   # as written
    (lambda rows: [rows[0] + ",6"], 'line 2, factory_param.uart_tx_pin = 6: GPIO6 is wired to the SPI flash on ESP32 '
                                    'modules (SPICLK); accepted: -1 (unused) or 0-5, 12-19'),
    (lambda rows: [rows[0] + ",x"], 'line 2, factory_param.uart_tx_pin = "x": expected an integer'),
    (lambda rows: [rows[0].replace("cert_0.pem", "nope.pem") + ","], 'line 2, client_cert = "'),
    (lambda rows: [rows[0].replace("key_0.pem", "key_1.pem") + ","], ('line 2, client_key = "', "does not pair with client_cert")),
    (lambda rows: ["../evil" + rows[0][6:] + ","], 'line 2, device_id = "../evil": accepted: 1 to 64 letters'),
])
def test_bad_rows_fail_and_nothing_of_the_batch_is_written(device_pki, tmp_path, mutate, expected):
    rows = rows_for(3, device_pki, tmp_path, lambda i: "," if True else "")
    header = "device_id,client_cert,client_key,uart_tx_pin"
    rows = [r for r in mutate([r.rstrip(",") for r in rows])]
    rows = [r if r.count(",") == 3 else r + "," for r in rows]
    csv = write_csv(tmp_path / "devices.csv", header, rows)
    r = run_scons("board=WROOM-32", f"devices={csv.name}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2, r.stdout
    for part in (expected if isinstance(expected, tuple) else (expected,)):
        assert "devices.csv: " + part in r.stderr if part.startswith("line") else part in r.stderr
    assert "Traceback" not in r.stderr
    # the board's own partitions are fine and built; nothing of the batch is written
    assert not (tmp_path / "out/WROOM-32/devices").exists()
    assert not (tmp_path / "out/WROOM-32/devices.json").exists()
    assert not [p for p in (tmp_path / "out/WROOM-32").iterdir() if p.name.startswith(".devices")]


def test_duplicate_certificate_is_a_security_defect(device_pki, tmp_path):
    rows = rows_for(3, device_pki, tmp_path)
    rows.append("D00099" + rows[1][6:])   # device D00001's certificate and key again
    csv = write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key", rows)
    r = run_scons("board=WROOM-32", f"devices={csv.name}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2
    assert "line 5, client_cert = " in r.stderr
    assert "the same file content as line 3 (client_cert): a certificate or key reused across devices is a security defect" in r.stderr


@pytest.mark.parametrize("header, expected", [
    ("client_cert,client_key", "line 1: no device_id column"),
    ("device_id,client_crt", "line 1, column 'client_crt': unknown column; accepted: device_id, magic_flag"),
])
def test_bad_headers(tmp_path, header, expected):
    csv = write_csv(tmp_path / "devices.csv", header, ["a,b"])
    r = run_scons("board=WROOM-32", f"devices={csv.name}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2
    assert expected in r.stderr


def test_device_images_and_plugin_columns(device_pki, tmp_path, registry):
    release = make_release(tmp_path / "fw", load_board("WROOM-32", registry))
    rows = rows_for(3, device_pki, tmp_path, lambda i: f",rev-{i}")
    csv = write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key,vendor.hw_revision", rows)
    r = run_scons("board=ACME-W32", WITH_ACME, f"devices={csv.name}", f"firmware={release}", "device_images=yes",
                  "build_dir=out", "-j2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "out/ACME-W32/devices"
    infos = [json.loads((root / f"D0000{i}/customized_partitions/device_info.bin").read_bytes()[6:]) for i in range(3)]
    assert [i["hw_revision"] for i in infos] == ["rev-0", "rev-1", "rev-2"]
    image = (root / "D00001/factory/factory_ACME-W32_D00001.bin").read_bytes()
    assert len(image) == 4 << 20
    assert image[0x2A000:0x2A000 + 8] == (root / "D00001/customized_partitions/client_cert.bin").read_bytes()[:8]
    assert image[0x24000:0x24008] == (tmp_path / "out/ACME-W32/customized_partitions/server_cert.bin").read_bytes()[:8]
    assert (root / "D00001/factory/factory_ACME-W32_D00001.bin").stat().st_mode & 0o077 == 0
    # each image is named for its device (factory_<MODULE>_<device_id>.bin), in its folder and the ledger
    ledger = json.loads((tmp_path / "out/ACME-W32/devices.json").read_text())
    for n, entry in enumerate(ledger["devices"]):
        name = f"factory/factory_ACME-W32_D0000{n}.bin"
        assert [str(p.relative_to(root / entry["device_id"])) for p in (root / entry["device_id"] / "factory").iterdir()] == [name]
        assert entry["outputs"][name] == hashlib.sha256((root / entry["device_id"] / name).read_bytes()).hexdigest()


def test_devices_need_one_board(tmp_path):
    csv = write_csv(tmp_path / "devices.csv", "device_id", ["A"])
    r = run_scons("board=all", f"devices={csv.name}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2 and "devices= builds the devices of one board" in r.stderr


def test_devices_of_a_v5_board_get_their_own_mfg_nvs(device_pki, tmp_path):
    """ESP-AT v3.1+: one mfg_nvs per device holding its certificate, key and factory values,
    everything else of the board's; a certificate used twice is refused."""
    from atfactory import nvs

    csv = write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key,uart_tx_pin",
                    rows_for(3, device_pki, tmp_path, lambda i: ",4" if i == 1 else ","))
    r = run_scons("board=WROOM-32-V5", f"devices={csv}", "build_dir=out", "-j2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    root = tmp_path / "out/WROOM-32-V5/devices"
    shared = nvs.decode_nvs((tmp_path / "out/WROOM-32-V5/customized_partitions/mfg_nvs.bin").read_bytes())
    for i in range(3):
        image = nvs.decode_nvs((root / f"D0000{i}/customized_partitions/mfg_nvs.bin").read_bytes())
        items = {(x.namespace, x.key): x.value for x in image.items}
        assert items[("client_cert", "client_cert")] == (device_pki / f"certs/cert_{i}.pem").read_bytes()
        assert items[("client_key", "client_key")] == (device_pki / f"certs/key_{i}.pem").read_bytes()
        assert items[("factory_param", "uart_tx_pin")] == (4 if i == 1 else 17)
        assert [ns.name for ns in image.namespaces] == [ns.name for ns in shared.namespaces]
        assert items[("server_cert", "server_cert")] == {(x.namespace, x.key): x.value for x in shared.items}[
            ("server_cert", "server_cert")]
        assert (root / f"D0000{i}/customized_partitions/mfg_nvs.bin").stat().st_mode & 0o077 == 0
        config = decode_download_config((root / f"D0000{i}/download.config").read_bytes())
        assert (0x21000, "customized_partitions/mfg_nvs.bin") in config.entries
    again = write_csv(tmp_path / "twice.csv", "device_id,client_cert,client_key",
                      rows_for(2, device_pki, tmp_path) + [rows_for(1, device_pki, tmp_path)[0].replace("D00000", "D00009")])
    r = run_scons("board=WROOM-32-V5", f"devices={again}", "build_dir=out2", cwd=tmp_path)
    assert r.returncode == 2
    assert "line 4, client_cert" in r.stderr and "the same file content as line 2" in r.stderr


def test_a_device_image_holding_only_the_boards_keys_is_owner_only(tmp_path, registry):
    """A row that changes no key still flashes the board's server_key: its factory image holds it."""
    release = make_release(tmp_path / "fw", load_board("WROOM-32", registry))
    write_csv(tmp_path / "devices.csv", "device_id,uart_baudrate", ["D1,921600"])
    r = run_scons("board=WROOM-32", "devices=devices.csv", f"firmware={release}", "device_images=yes",
                  "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "out/WROOM-32/devices/D1"
    assert not (folder / "customized_partitions/server_key.bin").exists()   # shared with the board
    image = folder / "factory/factory_WROOM-32_D1.bin"
    key = (tmp_path / "out/WROOM-32/customized_partitions/server_key.bin").read_bytes()
    assert key.rstrip(b"\xff") and image.read_bytes()[0x26000:0x26000 + len(key)] == key
    assert image.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("board", ["WROOM-32", "WROOM-32-V5"])
def test_every_device_image_is_esptools_merge_of_its_files(device_pki, tmp_path, registry, board):
    """Images after the first of a set are the board's template with the device's files copied
    in: each must equal esptool's merge of the files its download.config lists."""
    from atfactory.merge import merge_factory_image

    b = load_board(board, registry)
    release = make_release(tmp_path / "fw", b)
    # rows with and without their own factory_param value: two sets of device partitions
    write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key,uart_baudrate",
              rows_for(5, device_pki, tmp_path, lambda i: ",921600" if i in (1, 3) else ","))
    r = run_scons(f"board={board}", "devices=devices.csv", f"firmware={release}", "device_images=yes",
                  "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for i in range(5):
        folder = tmp_path / f"out/{board}/devices/D{i:05d}"
        config = decode_download_config((folder / "download.config").read_bytes())
        want = merge_factory_image(b.chip.name, config.flash_mode, config.flash_freq, config.flash_size,
                                   b.flash_size_bytes, [(o, str(folder / p)) for o, p in config.entries])
        assert (folder / f"factory/factory_{b.module_name}_D{i:05d}.bin").read_bytes() == want, i


def test_inputs_digest_keeps_the_csvs_paths_and_still_sees_a_changed_file(device_pki, tmp_path, registry):
    import os

    from atfactory import devices as dev
    from atfactory.prepare import prepare_board

    csv = write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key", rows_for(3, device_pki, tmp_path))
    maker = dev.DeviceMaker(prepare_board("WROOM-32", registry), str(csv))
    cache = tmp_path / "cache/paths"
    first = dev.inputs_digest(str(csv), maker, str(cache))
    assert cache.read_text().count("\n") == 1 + 6 + 1   # a header, the six files the rows name, the count
    assert dev.inputs_digest(str(csv), maker) == first   # the same without the cache

    def no_parse():
        raise AssertionError("the CSV's rows were parsed")
    parse = maker.rows
    maker.rows = no_parse
    assert dev.inputs_digest(str(csv), maker, str(cache)) == first   # from the cache
    key = device_pki / "certs/key_1.pem"
    st = key.stat()
    os.utime(key, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))   # the same bytes, touched
    try:
        assert dev.inputs_digest(str(csv), maker, str(cache)) != first
    finally:
        os.utime(key, ns=(st.st_atime_ns, st.st_mtime_ns))
    maker.rows = parse
    now = dev.inputs_digest(str(csv), maker)   # the touch moved the change time on
    cache.write_bytes(cache.read_bytes()[:-3])   # a cut cache: the rows are parsed again, the cache made anew
    parsed = []
    maker.rows = lambda: parsed.append(1) or parse()
    assert dev.inputs_digest(str(csv), maker, str(cache)) == now and parsed
    maker.rows = no_parse
    assert dev.inputs_digest(str(csv), maker, str(cache)) == now
    maker.rows = parse
    cache.write_text(cache.read_text().replace("cert_0", "cert_9"))   # a damaged cache: a wrong path
    csv.write_text(csv.read_text().replace("D00000", "D00009"))       # the CSV changed: the cache is not used
    assert dev.inputs_digest(str(csv), maker, str(cache)) != first
    assert "cert_0.pem" in cache.read_text()


# --- verify IMAGE --board B --device CSV:ID ----------------------------------------------------

@pytest.fixture(scope="module")
def device_batch(device_pki, tmp_path_factory, registry):
    """WROOM-32 with firmware, three devices (the second with its own baud rate) and their images."""
    root = tmp_path_factory.mktemp("device_batch")
    release = make_release(root / "fw", load_board("WROOM-32", registry))
    write_csv(root / "devices.csv", "device_id,client_cert,client_key,uart_baudrate",
              rows_for(3, device_pki, root, lambda i: ",921600" if i == 1 else ","))
    r = run_scons("board=WROOM-32", "devices=devices.csv", f"firmware={release}", "device_images=yes",
                  "build_dir=out", cwd=root)
    assert r.returncode == 0, r.stderr
    return root


def test_verify_a_device_image_against_its_row(device_batch, capsys, monkeypatch):
    from helpers import run_cli

    monkeypatch.chdir(device_batch)
    image = "out/WROOM-32/devices/D00001/factory/factory_WROOM-32_D00001.bin"
    code, out, err = run_cli(capsys, "verify", image, "--board", "WROOM-32", "--device", "devices.csv:D00001")
    assert (code, err) == (0, ""), out
    lines = out.splitlines()
    assert lines[0] == f"verify {image} against board WROOM-32, device D00001 (devices.csv line 3):"
    assert "  ok       partition client_cert (device D00001)" in lines
    assert "  ok       partition client_key (device D00001)" in lines
    assert "  ok       partition factory_param (device D00001)" in lines   # its row sets uart_baudrate
    assert "  ok       partition server_cert" in lines                      # the board's
    assert lines[-1] == "result: matches the board"
    # the image of another device, or the board alone, differs where the rows differ
    code, out, _ = run_cli(capsys, "verify", image, "--board", "WROOM-32", "--device", "devices.csv:D00002")
    assert code == 1
    assert [line for line in out.splitlines() if "DIFFERS" in line] == [
        "  DIFFERS  partition client_cert (device D00002) at 0x2a000: item 0 (type 2 in the image and from the board) "
        "differs in content",
        "  DIFFERS  partition client_key (device D00002) at 0x2c000: item 0 (type 3 in the image and from the board) "
        "differs in content",
        "  DIFFERS  partition factory_param at 0x30000: factory_param.uart_baudrate is 921600, the board says 115200"]
    code, out, _ = run_cli(capsys, "verify", image, "--board", "WROOM-32")
    assert code == 1 and out.endswith("result: 3 difference(s)\n")
    code, out, _ = run_cli(capsys, "verify", image, "--board", "WROOM-32", "--device", "devices.csv:D00001", "--json")
    doc = json.loads(out)
    assert (code, doc["ok"], doc["differences"]) == (0, True, [])
    assert doc["device"] == {"csv": "devices.csv", "id": "D00001", "line": 3, "partitions": [
        "customized_partitions/client_cert.bin", "customized_partitions/client_key.bin",
        "customized_partitions/factory_param.bin", "customized_partitions/factory_param_WROOM-32.bin"]}


@pytest.mark.parametrize("argv, message", [
    (["--board", "WROOM-32", "--device", "devices.csv:D00009"],
     'devices.csv: device_id = "D00009": no row has this device id (3 rows); did you mean D00002?'),
    (["--board", "WROOM-32", "--device", "devices.csv"],
     "--device devices.csv: expected CSV:DEVICE_ID, such as devices.csv:A0001"),
    (["--board", "WROOM-32", "--device", "nope.csv:D1"], 'devices = "nope.csv": no such file'),
    (["--pubkey", "x.pub", "--device", "devices.csv:D00001"],
     "--device devices.csv:D00001: needs --board, the board the devices CSV was built for"),
])
def test_verify_device_bad_input(device_batch, capsys, monkeypatch, argv, message):
    from helpers import run_cli

    monkeypatch.chdir(device_batch)
    code, out, err = run_cli(capsys, "verify", "out/WROOM-32/devices/D00001/factory/factory_WROOM-32_D00001.bin", *argv)
    assert (code, out, err) == (2, "", f"atfactory: error: {message}\n")


def test_verify_device_row_checked_like_a_build(device_batch, capsys, monkeypatch):
    """A row that would not build is reported as the build reports it, exit 2."""
    from helpers import run_cli

    monkeypatch.chdir(device_batch)
    (device_batch / "bad.csv").write_text("device_id,uart_tx_pin\nD1,40\n")
    code, out, err = run_cli(capsys, "verify", "out/WROOM-32/factory/factory_WROOM-32.bin", "--board", "WROOM-32",
                             "--device", "bad.csv:D1")
    assert (code, out) == (2, "")
    assert err == "atfactory: error: bad.csv: line 2, factory_param.uart_tx_pin = 40: ESP32 has no GPIO40; " \
                  "accepted: -1 (unused) or 0-19, 21-23, 25-27, 32-39\n"


# --- progress on a terminal, nothing elsewhere ---------------------------------------------------

class FakeTerminal:
    def __init__(self, tty=True):
        self.text, self.tty = "", tty

    def write(self, text):
        self.text += text

    def flush(self):
        pass

    def isatty(self):
        return self.tty


def test_progress_line():
    from atfactory.devices_worker import Progress

    times = iter([100.0, 100.1, 104.0, 105.0, 135.0])
    done = iter([50, 100, 300])
    term = FakeTerminal()
    p = Progress(term, 300, lambda: next(done), clock=lambda: next(times), every=0.25)   # shown at once
    p.tick()                      # 0.1 s after the start: too soon, nothing asked or shown
    p.tick()                      # 4 s: 50 rows
    p.tick()                      # 5 s: 100 rows
    p.finish()                    # 35 s: all 300
    assert term.text.split("\r")[1:] == [
        "devices: 0/300 (0%)",
        "devices: 50/300 (16%), 12/s, 0:20 left",
        "devices: 100/300 (33%), 20/s, 0:10 left",
        "devices: 300/300 (100%), 8.6/s, done in 0:35\n"]
    slow = FakeTerminal()
    q = Progress(slow, 5000, iter([4000, 5000]).__next__, clock=iter([0.0, 1000.0, 4000.0]).__next__)
    q.tick()
    q.finish()                    # hours when it takes them
    assert slow.text == ("\rdevices: 0/5000 (0%)\rdevices: 4000/5000 (80%), 4.0/s, 4:10 left"
                         "\rdevices: 5000/5000 (100%), 1.2/s, done in 1:06:40\n")


def test_progress_only_on_a_terminal(device_pki, tmp_path, registry):
    """build_batch shows progress on a TTY stream and writes nothing to any other."""
    from atfactory.devices import DeviceMaker
    from atfactory.devices_worker import build_batch
    from atfactory.prepare import prepare_board

    csv = write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key", rows_for(3, device_pki, tmp_path))
    prepared = prepare_board("WROOM-32", registry)
    release = tmp_path / "release"
    release.mkdir()
    for tty in (True, False):
        term = FakeTerminal(tty)
        maker = DeviceMaker(prepared, str(csv))
        assert build_batch(maker, str(release), [], 1, False, str(release / "devices.json"), progress=term) == 3
        if tty:
            assert term.text.startswith("\rdevices: 0/3 (0%)")
            assert re.search(r"\rdevices: 3/3 \(100%\), \d+/s, done in 0:\d\d\n$", term.text), term.text
        else:
            assert term.text == ""


def test_scons_shows_progress_on_a_terminal_only(tmp_path):
    """-j2 (a worker process writes half the rows) under a pseudo-terminal, and in a pipe as CI runs it."""
    import os
    import pty
    import subprocess
    import sys
    import threading

    from helpers import REPO

    write_csv(tmp_path / "devices.csv", "device_id,uart_baudrate", [f"X{i},921600" for i in range(40)])
    argv = [sys.executable, "-m", "SCons", "-C", str(REPO), "-Q", "board=WROOM-32", "devices=devices.csv", "-j2"]
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv + ["build_dir=tty"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = []

    def read():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:   # EIO: the child side closed
                return
            if not data:
                return
            seen.append(data)

    reader = threading.Thread(target=read)
    reader.start()
    proc.communicate(timeout=300)
    reader.join(timeout=60)
    os.close(master)
    assert proc.returncode == 0
    terminal = b"".join(seen).decode()
    assert re.search(r"\rdevices: 40/40 \(100%\), \d+/s, done in 0:\d\d *\r\n", terminal), terminal
    piped = run_scons("board=WROOM-32", "devices=devices.csv", "-j2", "build_dir=pipe", cwd=tmp_path)
    assert piped.returncode == 0 and "DEVICES WROOM-32: 40 devices" in piped.stdout
    assert "devices:" not in piped.stderr and "\r" not in piped.stderr + piped.stdout


@pytest.mark.parametrize("writev", [True, False])
def test_an_image_written_in_pieces_survives_short_writes(tmp_path, monkeypatch, writev):
    """Without a kernel copy a device image is written as views of its template and the
    device's files; a kernel that takes fewer bytes than asked (a signal, a FUSE disk) loses none."""
    import os

    from atfactory import devices_worker as dw

    real_writev, real_write = os.writev, os.write
    monkeypatch.setattr(dw, "_WRITEV", writev)
    monkeypatch.setattr(dw.os, "writev", lambda fd, views: real_writev(fd, [bytes(b"".join(views))[:777]]))
    monkeypatch.setattr(dw.os, "write", lambda fd, data: real_write(fd, bytes(data)[:500]))
    template = bytes(range(256)) * 40
    own = {"a": b"\x01" * 300, "b": b"\x02" * 10}
    pieces = dw._ImageTemplates._pieces(template, [(0, own["a"]), (10230, own["b"])])
    expected = b"\x01" * 300 + template[300:10230] + b"\x02" * 10
    assert b"".join(bytes(p) for p in pieces) == expected
    fd = os.open(tmp_path / "image.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    dw._write_all(fd, pieces)
    os.close(fd)
    assert (tmp_path / "image.bin").read_bytes() == expected
    assert dw._sha256_hex(pieces) == hashlib.sha256(expected).hexdigest()


@pytest.mark.skipif(not hasattr(__import__("os"), "copy_file_range"), reason="copy_file_range: Linux only")
def test_a_kernel_copy_that_stops_midway_falls_back_to_an_empty_file(tmp_path, monkeypatch):
    """Copied in the kernel, short copies are resumed; a disk that refuses after a first part
    leaves the image empty for the write from memory, and no later image tries again."""
    import errno
    import os

    from atfactory import devices_worker as dw

    templates = dw._ImageTemplates(None, str(tmp_path))
    template = os.urandom(100000)
    source = templates._template_file(("k",), template)
    (kept,) = templates.paths
    assert os.stat(kept).st_mode & 0o777 == 0o600   # the template holds the board's keys
    real = os.copy_file_range
    monkeypatch.setattr(dw.os, "copy_file_range", lambda src, dst, count, a, b: real(src, dst, min(count, 3000), a, b))
    fd = os.open(tmp_path / "copied.bin", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    assert dw._copy_file(source, fd, len(template))
    os.close(fd)
    assert (tmp_path / "copied.bin").read_bytes() == template
    calls = []

    def refuse(src, dst, count, a, b):
        calls.append(a)
        if a:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst, 5000, a, b)
    monkeypatch.setattr(dw.os, "copy_file_range", refuse)
    monkeypatch.setattr(dw, "_COPY", True)
    fd = os.open(tmp_path / "refused.bin", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    assert not dw._copy_file(source, fd, len(template))
    os.close(fd)
    assert (tmp_path / "refused.bin").read_bytes() == b"" and calls == [0, 5000] and dw._COPY is False
    assert templates._template_file(("other",), template) is None   # no second template file
    templates.close()
    assert not os.path.exists(kept)


def _expired_pki(folder: Path, count: int):
    """``count`` device pairs whose certificates expired on 2025-06-30 (CN old-N)."""
    make_device_pki(folder, count, (datetime.datetime(2020, 1, 1), datetime.datetime(2025, 6, 30)), "old", "old CA")


def test_expired_device_certificates_build_with_one_warning(device_pki, tmp_path):
    """As a board's: a row's certificate that has expired builds, and the batch warns once,
    naming how many rows and the first; the ledger is what it would be without the warning."""
    _expired_pki(tmp_path / "old", 2)
    good = rows_for(1, device_pki, tmp_path)
    csv = write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key",
                    good + [f"D9000{n},old/cert_{n}.pem,old/key_{n}.pem" for n in range(2)])
    r = run_scons("board=WROOM-32", f"devices={csv.name}", "build_dir=out", "-j2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warnings = [line for line in r.stderr.splitlines() if "expired" in line]
    assert warnings == ["atfactory: warning: devices.csv: 2 rows hold expired certificates, the first: line 3, "
                        'client_cert = "old/cert_0.pem": certificate CN=old-0 expired on 2025-06-30; they still build, '
                        "but TLS peers that check dates will refuse them; release=yes refuses expired certificates"]
    ledger = json.loads((tmp_path / "out/WROOM-32/devices.json").read_text())
    assert [d["device_id"] for d in ledger["devices"]] == ["D00000", "D90000", "D90001"]
    assert "expired" not in (tmp_path / "out/WROOM-32/devices.json").read_text()
    one = write_csv(tmp_path / "one.csv", "device_id,client_cert,client_key", ["D1,old/cert_1.pem,old/key_1.pem"])
    r = run_scons("board=WROOM-32", f"devices={one.name}", "build_dir=out1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert [line for line in r.stderr.splitlines() if "expired" in line] == [
        'atfactory: warning: one.csv: line 2, client_cert = "old/cert_1.pem": certificate CN=old-1 expired on '
        
        "2025-06-30; it still builds, but TLS peers that check dates will refuse it; release=yes refuses expired "
        "certificates"]


def test_release_refuses_expired_device_certificates_and_valid_until_dates_them(device_pki, tmp_path, registry):
    """release=yes: a row's expired certificate is a problem of that row; [release] valid_until:
    a row's certificate that expires before it is one too (T1 of device_pki is 2036-01-01)."""
    import dataclasses

    from atfactory.devices import DeviceMaker, _rows
    from atfactory.errors import BoardError
    from atfactory.prepare import prepare_board

    _expired_pki(tmp_path / "old", 1)
    csv = write_csv(tmp_path / "devices.csv", "device_id,client_cert,client_key",
                    rows_for(1, device_pki, tmp_path) + ["D9,old/cert_0.pem,old/key_0.pem"])
    prepared = dataclasses.replace(prepare_board("WROOM-32", registry), release=True)
    maker = DeviceMaker(prepared, str(csv))
    good, old = list(_rows(str(csv)))
    assert maker.make(good)[0] == "D00000"
    with pytest.raises(BoardError) as err:
        maker.make(old)
    assert err.value.lines() == [f"{csv}: line 3, client_cert = \"old/cert_0.pem\": certificate "
                                 "CN=old-0 expired on 2025-06-30; release=yes refuses expired certificates: accepted: "
                                 "certificates valid today"]
    board = dataclasses.replace(prepared.board, data=dict(prepared.board.data, release={"valid_until": "2040-01-01"}))
    dated = DeviceMaker(dataclasses.replace(prepared, board=board, release=False), str(csv))
    with pytest.raises(BoardError) as err:
        dated.make(good)
    (line,) = err.value.lines()
    assert line.startswith(f"{csv}: line 2, client_cert = ") and line.endswith(
        ": certificate CN=dev-0 expires 2036-01-01, before the board's [release] valid_until 2040-01-01; replace it "
        "or move the date")
