"""Issue 4: inspect, verify, extract and diff on every shipped board's build and on factory images."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atfactory.board import load_board
from atfactory import partition_table as pt
from atfactory.artifacts import plan_board, render_artifact
from atfactory.cli import main
from atfactory.errors import AtFactoryError
from atfactory.readback import read_path
from helpers import REPO, run_scons
from firmware_factory import make_release

SHIPPED = sorted(p.stem for p in list((REPO / "boards").glob("*.toml")) + list((REPO / "plugins/boards").glob("*.toml")))
IMAGE_BOARDS = ["WROOM-32", "ESP32C3-MINI-1", "ESP32S2-WROOM", "WROOM-02", "ESP8266_1MB", "ACME-W32"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, registry):
    """Every shipped board built (release folders without firmware) and factory images for some."""
    root = tmp_path_factory.mktemp("built")
    r = run_scons("board=all", "-j2", "build_dir=out", cwd=root)
    assert r.returncode == 0, r.stderr
    for board_id in IMAGE_BOARDS:
        board = load_board("WROOM-32" if board_id == "ACME-W32" else board_id, registry)
        release = make_release(root / "fw" / board_id, board)
        r = run_scons(f"board={board_id}", f"firmware={release}", "build_dir=img", cwd=root)
        assert r.returncode == 0, r.stderr
    return root


def image_of(built, board_id):
    return next((built / "img" / board_id / "factory").glob("factory_*.bin"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def key_bodies():
    """Lines of base64 from every private key the shipped boards carry: must never be printed."""
    lines = []
    for key in (REPO / "boards/data/certs").glob("*.key"):
        lines += [l for l in key.read_text().splitlines() if l and not l.startswith("-----")]
    return lines


@pytest.mark.parametrize("board_id", SHIPPED)
def test_inspect_every_shipped_build(built, capsys, board_id):
    folder = built / "out" / board_id
    code, out, err = run(capsys, "inspect", str(folder), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["kind"] == "release"
    names = [p["name"] for p in doc["at_customize"]["partitions"]]
    board = board_of(board_id).board
    assert names == [p.name for p in board.partitions]
    fp = next(p for p in doc["at_customize"]["partitions"] if p["name"] == "factory_param")["content"]["fields"]
    assert fp["module_name"] == board.module_name and fp["uart_tx_pin"] == board.factory_param["uart_tx_pin"]
    assert doc["flash"] == {"mode": board.flash_mode, "freq": board.flash_freq, "size": board.flash_size}
    text = run(capsys, "inspect", str(folder))[1]
    for body in key_bodies():
        assert body not in out and body not in text


_HOST = []


def _registry():
    from atfactory.board import BoardRegistry
    from atfactory.plugins import make_plugin_host
    if not _HOST:
        host = make_plugin_host(entry_points=False)
        reg = BoardRegistry()
        host.register_boards(reg)
        _HOST.append((host, reg))
    return _HOST[0][1]


def board_of(ref):
    """A board as the build sees it: plugins' tables and partitions included."""
    from atfactory.prepare import prepare_board
    _registry()
    host, reg = _HOST[0]
    return prepare_board(ref, reg, host, extra_tables=host.board_tables())


def test_inspect_image_text(built, capsys):
    code, out, _ = run(capsys, "inspect", str(image_of(built, "WROOM-32")))
    assert code == 0
    assert "chip: esp32" in out
    assert "bootloader at 0x1000" in out and "header flash dio 40m 4MB" in out
    assert "  at_customize     type 0x40  subtype 0        offset   0x20000  size 0xe0000" in out
    assert "item type 2 (cert) id 0: 1306 bytes PEM, certificate CN=atfactory-dev-server" in out
    assert "item type 3 (key) id 0: 1675 bytes PEM, private key RSA 2048" in out
    assert "uart_tx_pin = 17" in out
    assert "(erased)" not in out.split("fatfs", 1)[0]
    fatfs = out.split("fatfs", 1)[1]
    assert "(erased)" in fatfs.splitlines()[1]


@pytest.mark.parametrize("name, kind", [
    ("at_customize.bin", "partition_table"),
    ("customized_partitions/factory_param.bin", "factory_param"),
    ("customized_partitions/server_cert.bin", "pki"),
    ("customized_partitions/ble_data.bin", "ble_data"),
])
def test_inspect_single_binaries(built, capsys, name, kind):
    code, out, _ = run(capsys, "inspect", str(built / "out/WROOM-32" / name), "--json")
    assert code == 0
    assert json.loads(out)["kind"] == kind


@pytest.mark.parametrize("board_id", SHIPPED)
def test_verify_every_shipped_build(built, capsys, board_id):
    code, out, _ = run(capsys, "verify", str(built / "out" / board_id), "--board", board_id)
    assert code == 0, out
    assert "result: matches the board" in out


@pytest.mark.parametrize("board_id", IMAGE_BOARDS)
def test_verify_factory_images(built, capsys, board_id):
    code, out, _ = run(capsys, "verify", str(image_of(built, board_id)), "--board", board_id)
    assert code == 0, out


def _tamper(built, tmp_path, offset, data):
    image = bytearray(image_of(built, "WROOM-32").read_bytes())
    image[offset:offset + len(data)] = data
    path = tmp_path / "tampered.bin"
    path.write_bytes(bytes(image))
    return path


def test_verify_names_a_changed_table_row(built, capsys, tmp_path):
    image = image_of(built, "WROOM-32").read_bytes()
    table = pt.decode_partition_table(image[0x20000:0x20000 + 3072])
    moved = [e if e.name != "server_cert" else pt.Entry(e.name, e.type, e.subtype, 0x25000, e.size) for e in table.entries]
    path = _tamper(built, tmp_path, 0x20000, pt.encode_partition_table(moved))   # MD5 made right too
    code, out, _ = run(capsys, "verify", str(path), "--board", "WROOM-32")
    assert code == 1
    assert ("at_customize.bin at 0x20000: server_cert: image type 0x40 subtype 2 at 0x25000 size 0x2000, "
            "board type 0x40 subtype 2 at 0x24000 size 0x2000") in out


@pytest.mark.parametrize("offset, data, expected", [
    (0x20000 + 32 * 1 + 4, (0x24000 + 0x1000).to_bytes(4, "little"), "at_customize.bin at 0x20000: not a partition table (at offset 0x1e0: partition table: MD5 row does not match the entries)"),
    (0x24000 + 100, b"X", "partition server_cert at 0x24000: item 0 (type 2) differs in content"),
    (0x30000 + 16, bytes([4]), "partition factory_param at 0x30000: factory_param.uart_tx_pin is 4, the board says 17"),
    (0x1000 + 2, bytes([0]), "flash.mode: bootloader header says qio, the board dio"),
    (0x1000 + 3, bytes([0x10]), "bootloader header: flash size 2MB (ESP32 encoding, byte 3 = 0x10) but the image is 4194304 bytes"),
    (0x21000, b"\xff" * 0x3000, "partition ble_data at 0x21000: erased in the image, the board has content"),
])
def test_verify_names_what_was_altered(built, capsys, tmp_path, offset, data, expected):
    code, out, _ = run(capsys, "verify", str(_tamper(built, tmp_path, offset, data)), "--board", "WROOM-32")
    assert code == 1
    assert expected in out
    assert "result: " in out and "difference(s)" in out


def test_verify_catches_esp8266_size_encoded_the_esp32_way(built, capsys, tmp_path):
    image = bytearray(image_of(built, "WROOM-02").read_bytes())
    image[3] = 0x1F   # 2MB in the ESP32 table, as Espressif's combine script writes it
    path = tmp_path / "published.bin"
    path.write_bytes(bytes(image))
    code, out, _ = run(capsys, "verify", str(path), "--board", "WROOM-02")
    assert code == 1
    assert "the size was encoded with the ESP32 table (2MB), the defect of Espressif's combine script" in out


def test_verify_warns_on_expiring_certificate(built, capsys, tmp_path):
    import datetime
    from atfactory.verify import load_flash, verify_flash
    data, doc = load_flash(str(image_of(built, "WROOM-32")))
    prepared = board_of("WROOM-32")
    soon = datetime.datetime(2045, 12, 20, tzinfo=datetime.timezone.utc)
    report = verify_flash(data, doc, prepared, now=soon)
    assert report.ok
    assert any("expires on 2046-01-01T00:00:00Z, within 30 days" in w for w in report.warnings)


def test_verify_mismatched_key_pair(built, capsys, tmp_path):
    image = bytearray(image_of(built, "WROOM-32").read_bytes())
    image[0x2C000:0x2E000] = image[0x26000:0x28000]   # server key in place of the client key
    path = tmp_path / "swapped.bin"
    path.write_bytes(bytes(image))
    code, out, _ = run(capsys, "verify", str(path), "--board", "WROOM-32")
    assert code == 1
    assert "client_key item 0 does not belong to client_cert item 0" in out


def _rebuild_matches(board_path: Path, flash: bytes):
    """Every AT artifact of the extracted board equals the flash it was extracted from."""
    prepared = board_of(str(board_path))
    for artifact in plan_board(prepared.board):
        if artifact.offset is None:
            continue
        data = render_artifact(artifact.kind, artifact.spec, artifact.sources)
        assert flash[artifact.offset:artifact.offset + len(data)] == data, artifact.targets[0]
    return prepared.board


@pytest.mark.parametrize("board_id", SHIPPED)
def test_extract_then_rebuild_every_shipped_build(built, capsys, tmp_path, board_id):
    from atfactory.verify import load_flash
    folder = built / "out" / board_id
    code, out, err = run(capsys, "extract", str(folder), "-o", str(tmp_path / "x"))
    assert code == 0, err
    board_file = Path(out.split("wrote ", 1)[1].splitlines()[0])
    flash, _ = load_flash(str(folder))
    if board_id == "ACME-W32":
        return  # device_info is a plugin partition: extracted as raw data, checked in the scons test below
    board = _rebuild_matches(board_file, flash)
    for key in (tmp_path / "x").rglob("*.key"):
        assert key.stat().st_mode & 0o077 == 0
    assert board.flash_size == board_of(board_id).board.flash_size


@pytest.mark.parametrize("board_id", ["WROOM-32", "WROOM-02", "ACME-W32"])
def test_extract_image_then_scons_rebuild_is_byte_identical(built, capsys, tmp_path, board_id):
    image = image_of(built, board_id)
    code, out, err = run(capsys, "extract", str(image), "-o", str(tmp_path / "x"))
    assert code == 0, err
    board_file = Path(out.split("wrote ", 1)[1].splitlines()[0])
    # The extracted board is plain: plugin partitions (ACME's device_info) come back as raw data.
    r = run_scons(f"board={board_file}", f"firmware={image}", "build_dir=rb", cwd=tmp_path,
                  env={"ATFACTORY_DISABLE_PLUGINS": "acme_vendor"})
    assert r.returncode == 0, r.stderr
    rebuilt = next((tmp_path / "rb" / board_file.stem / "factory").glob("factory_*.bin"))
    assert rebuilt.read_bytes() == image.read_bytes()


def test_diff(built, capsys, tmp_path):
    a = image_of(built, "WROOM-32")
    code, out, _ = run(capsys, "diff", str(a), str(a))
    assert (code, out.strip()) == (0, "no differences")
    b = _tamper(built, tmp_path, 0x30000 + 16, bytes([4]))
    code, out, _ = run(capsys, "diff", str(a), str(b))
    assert code == 1
    assert out.splitlines() == ["at_customize.partitions[factory_param].content.fields.uart_tx_pin: 17 -> 4"]
    code, out, _ = run(capsys, "diff", str(built / "out/WROOM-32"), str(built / "out/ESP32S2-WROOM"))
    assert code == 1
    assert "at_customize.partitions[ble_data]: only in the first" in out


@pytest.mark.parametrize("argv, expected", [
    (["inspect", "/nonexistent/x.bin"], "atfactory: error: /nonexistent/x.bin: cannot be read"),
    (["verify", "x.bin"], "atfactory: error: verify needs --board ID|FILE, --pubkey KEY, or both"),
    (["verify", "x.bin", "--board", "NOPE"], 'atfactory: error: board = "NOPE": no board with this id'),
])
def test_cli_errors(capsys, argv, expected):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert expected in err
    assert "Traceback" not in err


def test_unknown_bytes(capsys, tmp_path):
    path = tmp_path / "random.bin"
    path.write_bytes(b"\x00\x01" * 100)
    code, _, err = run(capsys, "inspect", str(path))
    assert code == 2 and "not an AT binary atfactory knows" in err


def test_console_script_and_module(built, tmp_path):
    bindir = Path(sys.executable).parent
    for argv in ([str(bindir / "atfactory")], [sys.executable, "-m", "atfactory"]):
        r = subprocess.run(argv + ["inspect", str(built / "out/WROOM-32/customized_partitions/factory_param.bin")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "module_name = 'WROOM-32'" in r.stdout


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=0x9000 + 64), offset=st.sampled_from([0, 2, 0x8000]))
def test_fuzz_read_path_never_crashes(tmp_path, data, offset):
    """Arbitrary bytes, in places where the detector looks: a decoded document or our error."""
    blob = bytearray(b"\xff" * offset) + data
    if offset == 0x8000 and len(blob) > 0x8000:
        blob[0x8000:0x8002] = pt.ENTRY_MAGIC
    path = tmp_path / "fuzz.bin"
    path.write_bytes(bytes(blob))
    try:
        doc = read_path(str(path))
    except AtFactoryError:
        return
    json.dumps(doc)


def _rects(svg_path):
    import xml.etree.ElementTree as ET
    root = ET.parse(svg_path).getroot()
    return root, [e for e in root.iter() if e.tag.endswith("rect") and e.get("data-name")]


def test_every_build_writes_a_flash_map(built):
    root, rects = _rects(built / "img/WROOM-32/flash_map.svg")
    assert root.tag.endswith("svg") and root.get("viewBox")
    column1 = {r.get("data-name"): r for r in rects if r.get("data-column") == "1" and not r.get("data-parent")}
    for name in ("bootloader", "partition table", "otadata", "nvs", "at_customize", "factory", "free"):
        assert name in column1, name
    # At scale: the 896K at_customize region is 896/4096 of the 1000-px bar.
    assert abs(float(column1["at_customize"].get("height")) - 1000 * 0xE0000 / 0x400000) < 1
    nested = {r.get("data-name"): r for r in rects if r.get("data-column") == "2"}
    for name in ("server_cert", "factory_param", "fatfs", "at_customize.bin"):
        assert name in nested, name
    assert nested["server_cert"].get("data-offset") == "0x24000" and nested["server_cert"].get("data-size") == "0x2000"
    # Inside the magnified region, 8K of 896K.
    assert abs(float(nested["server_cert"].get("height")) - 1000 * 0x2000 / 0xE0000) < 1
    # Without firmware a board's map still shows its AT partitions within the flash.
    _, rects = _rects(built / "out/ESP8266_1MB/flash_map.svg")
    assert {r.get("data-name") for r in rects} >= {"at_customize", "factory_param", "mqtt_ca", "free"}


def test_inspect_draws_a_map_of_any_image(built, capsys, tmp_path):
    svg = tmp_path / "map.svg"
    code, _, err = run(capsys, "inspect", str(image_of(built, "ESP32C3-MINI-1")), "--map", str(svg))
    assert code == 0, err
    _, rects = _rects(svg)
    names = {r.get("data-name") for r in rects}
    assert {"bootloader", "at_customize", "ble_data", "factory_param"} <= names
    code, _, err = run(capsys, "inspect", str(built / "out/WROOM-32/customized_partitions/ble_data.bin"), "--map", str(svg))
    assert code == 2 and "nothing to map" in err
