"""End-to-end: run scons as a user would, from another folder, and look at what it wrote."""
from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from helpers import STOCK_DIR, run_scons, write

WROOM32_FILES = sorted(
    ["at_customize.bin", "download.config", "flash_map.svg", "manifest.json"]
    + [f"customized_partitions/{n}.bin" for n in (
        "ble_data", "factory_param", "factory_param_WROOM-32",
        "server_cert", "server_key", "server_ca", "client_cert", "client_key", "client_ca",
        "wpa2_cert", "wpa2_key", "wpa2_ca", "mqtt_cert", "mqtt_key", "mqtt_ca")]
)
BUILT = re.compile(r"^(TABLE|PARAM|PKI|GATT|RAW|PLUGIN|COPY|CUT|CONFIG|MERGE|MAP|LIST|SIGN)\s+(\S+)$", re.M)


def built(stdout: str):
    """The targets a run built, as 'customized_partitions/x.bin' relative to the board folder."""
    return sorted(re.sub(r"^.*?/(?=at_customize|customized_partitions|download|flash_map|manifest)", "", p)
                  for _, p in BUILT.findall(stdout))


def files_under(folder: Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_default_board_is_wroom32(tmp_path):
    r = run_scons("build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out" / "WROOM-32"
    assert files_under(out) == WROOM32_FILES
    assert built(r.stdout) == sorted(f for f in WROOM32_FILES if "factory_param_" not in f)
    assert (out / "download.config").read_text() == (
        "--flash_mode dio --flash_freq 40m --flash_size 4MB 0x20000 at_customize.bin "
        "0x21000 customized_partitions/ble_data.bin 0x24000 customized_partitions/server_cert.bin "
        "0x26000 customized_partitions/server_key.bin 0x28000 customized_partitions/server_ca.bin "
        "0x2a000 customized_partitions/client_cert.bin 0x2c000 customized_partitions/client_key.bin "
        "0x2e000 customized_partitions/client_ca.bin 0x30000 customized_partitions/factory_param.bin "
        "0x31000 customized_partitions/wpa2_cert.bin 0x33000 customized_partitions/wpa2_key.bin "
        "0x35000 customized_partitions/wpa2_ca.bin 0x37000 customized_partitions/mqtt_cert.bin "
        "0x39000 customized_partitions/mqtt_key.bin 0x3b000 customized_partitions/mqtt_ca.bin\n")
    fp = (out / "customized_partitions/factory_param.bin").read_bytes()
    assert fp == (out / "customized_partitions/factory_param_WROOM-32.bin").read_bytes()
    assert fp[16:20] == bytes([17, 16, 15, 14])
    # A second run with nothing changed builds nothing.
    again = run_scons("build_dir=out", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert built(again.stdout) == []
    assert "`WROOM-32' is up to date." in again.stdout


def test_key_partitions_are_owner_only(tmp_path):
    r = run_scons("build_dir=out", "board=ESP8266_1MB", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    parts = tmp_path / "out" / "ESP8266_1MB" / "customized_partitions"
    for f in parts.iterdir():
        mode = stat.S_IMODE(f.stat().st_mode)
        if f.name.endswith("_key.bin"):
            assert mode == 0o600, f
        else:
            assert mode & 0o044, f   # ordinary outputs follow the umask


def _vendor_board(tmp_path: Path) -> Path:
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("server.crt", "server.key"):
        shutil.copy(STOCK_DIR / "data/certs" / name, certs / name)
    return write(tmp_path / "ACME-1.toml", """
        extends = "WROOM-32"

        [module]
        name = "ACME-1"

        [factory_param]
        uart_tx_pin = 5
        uart_rx_pin = 4

        [[at_customize.partitions]]
        name = "server_cert"
        source = ["certs/server.crt"]

        [[at_customize.partitions]]
        name = "server_key"
        source = "certs/server.key"
        """)


def test_board_by_path_and_incremental_rebuilds(tmp_path):
    board = _vendor_board(tmp_path)
    first = run_scons(f"board={board.name}", "build_dir=out", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "out" / "ACME-1"
    assert (out / "customized_partitions/factory_param_ACME-1.bin").is_file()
    assert (out / "customized_partitions/factory_param.bin").read_bytes()[16:18] == bytes([5, 4])

    # Same content, new timestamp: nothing to do.
    cert = tmp_path / "certs/server.crt"
    os.utime(cert, (1, 1))
    assert built(run_scons(f"board={board.name}", "build_dir=out", cwd=tmp_path).stdout) == []

    # Another certificate (with its key) rebuilds exactly those two partitions.
    shutil.copy(STOCK_DIR / "data/certs/client.crt", cert)
    shutil.copy(STOCK_DIR / "data/certs/client.key", tmp_path / "certs/server.key")
    r = run_scons(f"board={board.name}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert built(r.stdout) == ["customized_partitions/server_cert.bin", "customized_partitions/server_key.bin",
                               "manifest.json"]

    # One pin rebuilds the two factory_param files and nothing else.
    board.write_text(board.read_text().replace("uart_rx_pin = 4", "uart_rx_pin = 18"))
    r = run_scons(f"board={board.name}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert built(r.stdout) == ["customized_partitions/factory_param.bin", "manifest.json"]
    assert (out / "customized_partitions/factory_param_ACME-1.bin").read_bytes()[17] == 18

    # Moving a partition rebuilds the table and download.config, not the partition contents.
    board.write_text(board.read_text().replace('name = "server_cert"', 'name = "server_cert"\noffset = 0x40000'))
    r = run_scons(f"board={board.name}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert built(r.stdout) == ["at_customize.bin", "download.config", "flash_map.svg", "manifest.json"]


def test_no_op_takes_content_signatures_from_the_input_cache(tmp_path):
    """A file whose stamp (size, mtime and ctime in ns, inode) is unchanged gets the content
    signature remembered in .atfactory/inputs.json instead of being hashed again; a stamp
    that changed is hashed, and exactly what depends on the file rebuilds."""
    import json

    assert run_scons("board=WROOM-32", "build_dir=out", cwd=tmp_path).returncode == 0
    noop = run_scons("board=WROOM-32", "build_dir=out", cwd=tmp_path)
    assert built(noop.stdout) == [] and noop.returncode == 0, noop.stdout + noop.stderr
    cache = tmp_path / "out/.atfactory/inputs.json"
    doc = json.loads(cache.read_text())
    # the stock files were checked out long ago (just written files are not remembered yet)
    key = next(k for k in doc["entries"] if k.startswith("csig ") and k.endswith("data/certs/server.crt"))
    stamp, csig = doc["entries"][key]
    assert re.fullmatch(r"[0-9a-f]{32,}", csig), csig
    path = key.split(" ", 3)[3]
    st = os.stat(path)
    assert stamp == f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
    # SCons believes the cache: a wrong signature there reads as changed content
    doc["entries"][key] = [stamp, "0" * len(csig)]
    cache.write_text(json.dumps(doc))
    r = run_scons("board=WROOM-32", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert built(r.stdout) == ["customized_partitions/server_cert.bin", "manifest.json"], r.stdout
    assert built(run_scons("board=WROOM-32", "build_dir=out", cwd=tmp_path).stdout) == []


def test_clean_removes_outputs(tmp_path):
    assert run_scons("build_dir=out", "board=wroom-02", cwd=tmp_path).returncode == 0
    out = tmp_path / "out" / "WROOM-02"   # ids match case-insensitively; folders use the real id
    assert (out / "at_customize.bin").is_file()
    r = run_scons("-c", "build_dir=out", "board=WROOM-02", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert files_under(out) == [] if out.exists() else True


def test_all_boards_build_in_parallel_and_then_rest(tmp_path):
    r = run_scons("board=all", "-j2", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ids = sorted(p.stem for p in STOCK_DIR.glob("*.toml"))   # the stock boards: no plugin is loaded by default
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir() and not p.name.startswith(".")) == ids
    for board_id in ids:
        assert (tmp_path / "out" / board_id / "at_customize.bin").stat().st_size == 3072
        assert (tmp_path / "out" / board_id / "download.config").is_file()
    again = run_scons("board=all", "-j2", "build_dir=out", cwd=tmp_path)
    assert again.returncode == 0
    assert built(again.stdout) == []


def test_help_lists_boards_and_variables(tmp_path):
    r = run_scons("-h", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for word in ("board:", "build_dir:", "VERBOSE:"):
        assert word in r.stdout
    for board in STOCK_DIR.glob("*.toml"):
        assert re.search(rf"^\s+{re.escape(board.stem)}\s+\S", r.stdout, re.M), board.stem
    assert re.search(r"^\s+ESP32C6-4MB-V5\s+esp32c6\s+AT 5.0\s+ESP32-C6", r.stdout, re.M)
    assert re.search(r"^\s+WROOM-32\s+esp32\s+AT 2.4\s+ESP32-WROOM-32", r.stdout, re.M)


def test_help_works_even_with_a_broken_default(tmp_path):
    # -h must not try to build: a bad board= is only reported when building.
    r = run_scons("-h", "board=does-not-exist", cwd=tmp_path)
    assert r.returncode == 0


@pytest.mark.parametrize("args, expected", [
    (["bord=WROOM-32"], "unknown variable bord=WROOM-32; accepted: board, build_dir, firmware, plugins, sign_key, sandbox, release, devices, device_images, shard, VERBOSE"),
    (["board=NOPE-1"], 'board = "NOPE-1": no board with this id and no such .toml file; accepted: a board id ('),
])
def test_command_line_mistakes(tmp_path, args, expected):
    r = run_scons(*args, "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2
    assert expected in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "out").exists()


def test_verbose_names_inputs(tmp_path):
    r = run_scons("build_dir=out", "VERBOSE=1", cwd=tmp_path)
    assert r.returncode == 0
    assert re.search(r"^PKI\s+out/WROOM-32/customized_partitions/server_cert.bin\s+<- .*server.crt$", r.stdout, re.M)


def test_help_shows_each_boards_release_in_one_column(tmp_path):
    """Release names of different lengths ("2.4", "2.4.0") line the descriptions up."""
    from atfactory.board import BoardRegistry
    from atfactory.help_text import board_help

    for name, version in (("OLD", "2.0"), ("EARLY-24", "2.4.0"), ("NOW", "2.4")):
        write(tmp_path / f"{name}.toml", f'[module]\nchip = "esp32"\nat_version = "{version}"\ndescription = "d {name}"\n')
    reg = BoardRegistry()
    reg.add_folder(str(tmp_path), origin="tmp/")
    lines = board_help(reg).splitlines()
    assert "    EARLY-24  esp32     AT 2.4.0  d EARLY-24" in lines
    assert "    OLD       esp32     AT 2.0    d OLD" in lines
    assert "    NOW       esp32     AT 2.4    d NOW" in lines
