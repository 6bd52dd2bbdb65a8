"""Projects of a vendor's own (atfactory.project, atfactory.newboard): ``atfactory new`` and
``atfactory build`` in a folder with an atfactory.toml, and the tool in a vendor's SConstruct."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atfactory.board import load_board
from atfactory.factory_param import decode_factory_param
from helpers import REPO, run_cli, stock_registry, write
from firmware_factory import make_release


def atfactory(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The ``atfactory`` command of this checkout, run in ``cwd``."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "site_scons"))
    return subprocess.run([sys.executable, "-m", "atfactory", *args], cwd=str(cwd), env=env,
                          capture_output=True, text=True, timeout=300)


def built(stdout: str):
    return [line.split()[1] for line in stdout.splitlines() if line[:6].strip().isupper() and len(line.split()) == 2]


def uncomment(path: Path, *starts: str) -> None:
    """Uncomment the lines of ``path`` that start with '# ' + one of ``starts``."""
    lines = path.read_text().splitlines()
    path.write_text("\n".join(line[2:] if line.startswith("# ") and line[2:].startswith(starts) else line
                              for line in lines) + "\n")


# --- atfactory new -------------------------------------------------------------------------------

def test_new_writes_a_project_and_a_board_that_builds_as_its_base(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "new", "ACME-1", "--extends", "WROOM-32")
    assert code == 0, err
    board_file = tmp_path / "boards/ACME-1.toml"
    assert out.splitlines() == [f"wrote {tmp_path}/atfactory.toml (a new atfactory project)",
                                f"wrote {board_file}: extends WROOM-32; uncomment and set what differs, then: "
                                "atfactory build ACME-1"]
    text = board_file.read_text()
    for line in ('extends = "WROOM-32"', 'name = "ACME-1"   # written into factory_param (at most 31 characters)',
                 "# uart_tx_pin = 17", "# uart_cts_pin = 15   # -1: no hardware flow control", '# size = "4MB"',
                 '# name = "client_key"', '# source = ["certs/ACME-1/client.key"]', '# source = ["certs/ACME-1/ca.crt"]',
                 '# release = "../firmware/ESP-AT-RELEASE"'):
        assert line in text.splitlines(), line
    assert 'boards = ["boards"]' in (tmp_path / "atfactory.toml").read_text().splitlines()[2]
    # As written, the board is WROOM-32 under another name.
    board, base = load_board(str(board_file), stock_registry()), load_board("WROOM-32", stock_registry())
    assert board.factory_param == dict(base.factory_param, module_name="ACME-1")
    assert [(p.name, p.sources) for p in board.partitions] == [(p.name, p.sources) for p in base.partitions]
    # A second board in the same project: its boards folder, no second project file.
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    code, out, err = run_cli(capsys, "new", "acme-2", "--extends", "ESP32C3-MINI-1")
    assert code == 0, err
    assert out == f"wrote {tmp_path}/boards/acme-2.toml: extends ESP32C3-MINI-1; uncomment and set what differs, " \
                  "then: atfactory build acme-2\n"
    assert "# uart_tx_pin = 7" in (tmp_path / "boards/acme-2.toml").read_text()


def test_new_on_a_v5_board_lists_the_mfg_nvs_certificates(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "new", "ACME-5", "--extends", "WROOM-32-V5", "--dir", "mine")
    assert code == 0, err
    text = (tmp_path / "mine/ACME-5.toml").read_text()
    assert "# [mfg_nvs]" in text and '# client_key = ["certs/ACME-5/client.key"]' in text
    assert "at_customize.partitions" not in text
    assert 'boards = ["mine"]' in (tmp_path / "atfactory.toml").read_text()


@pytest.mark.parametrize("board_id", ["../evil", "a/b", ".hidden", "x.toml", "_x", "a..b", "", "N" * 32, "a b", "é"])
def test_new_refuses_an_id_that_is_not_a_plain_name(tmp_path, capsys, monkeypatch, board_id):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "new", board_id, "--extends", "WROOM-32")
    assert code == 2 and out == ""
    assert err.startswith("atfactory: error: ID = ") and "not a plain name; accepted: letters, digits" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_new_refuses_an_existing_file_and_overwrites_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "new", "ACME-1", "--extends", "WROOM-32")[0] == 0
    board_file = tmp_path / "boards/ACME-1.toml"
    board_file.write_text("# mine\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code, out, err = run_cli(capsys, "new", "ACME-1", "--extends", "WROOM-02")
    assert code == 2 and out == ""
    assert err == "atfactory: error: boards/ACME-1.toml: exists; nothing was overwritten; accepted: an id without " \
                  "a board file in that folder\n"
    # case-insensitive ids: another spelling of a project's board or a stock board is taken too
    code, out, err = run_cli(capsys, "new", "wroom-32", "--extends", "WROOM-02")
    assert code == 2 and "ID = \"wroom-32\": the board WROOM-32 (" in err and "has this id" in err
    assert board_file.read_text() == "# mine\n"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_new_refuses_an_unknown_base(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "new", "ACME-1", "--extends", "WROOM-33")
    assert code == 2
    assert err.startswith('atfactory: error: --extends "WROOM-33": no board with this id; accepted: the id of a stock '
                          "board or of one of the project's (ESP32-D2WD, ")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit) as exit:   # a usage error, as argparse reports it: status 2
        run_cli(capsys, "new", "ACME-1")
    assert exit.value.code == 2 and "the following arguments are required: --extends" in capsys.readouterr().err


# --- atfactory.toml ------------------------------------------------------------------------------

@pytest.mark.parametrize("text, line", [
    ('bords = ["boards"]\n', 'atfactory.toml: bords: unknown key; accepted: boards, plugins, default_board, build_dir, '
                             'sign_key, sandbox, firmware'),
    ('boards = "boards"\n', 'atfactory.toml: boards = "boards": expected a list of folder paths relative to the project'),
    ('boards = ["nope"]\n', 'atfactory.toml: boards = ["nope"]: \'nope\' is not a folder; accepted: existing folders'),
    ('sandbox = "yes"\n', 'atfactory.toml: sandbox = "yes": expected true or false'),
    ('build_dir = 3\n', 'atfactory.toml: build_dir = 3: expected a non-empty string'),
    ('[firmware.chip]\nesp33 = "fw"\n', 'atfactory.toml: firmware.chip.esp33: no such chip; accepted: esp32'),
    ('[firmware.board]\nWROOM-33 = "fw"\n', 'atfactory.toml: firmware.board.WROOM-33: no board with this id'),
    ('[firmware]\nrelease = "fw"\n', 'atfactory.toml: firmware.release: unknown key; accepted: board'),
    ('default_board = "NOPE"\n', 'atfactory.toml: default_board = "NOPE": no board with this id'),
    ('boards = [\n', 'atfactory.toml: '),
])
def test_a_bad_project_file_is_one_line_and_builds_nothing(tmp_path, text, line):
    (tmp_path / "atfactory.toml").write_text(text)
    r = atfactory("build", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    [error] = [e for e in r.stderr.splitlines() if "error" in e or "***" in e]
    assert line in error, error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atfactory.toml"]


def test_build_outside_a_project_says_where_it_looked(tmp_path):
    r = atfactory("build", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr == f"atfactory: error: no atfactory.toml in {tmp_path} or a folder above it: atfactory build runs " \
                       "in a project folder; `atfactory new ID --extends WROOM-32` makes one\n"


# --- atfactory build ------------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path, capsys, monkeypatch) -> Path:
    """A project with ACME-1 (extends WROOM-32, its own pins) and ACME-2 (extends ACME-1)."""
    root = tmp_path / "proj"
    root.mkdir()
    monkeypatch.chdir(root)
    assert run_cli(capsys, "new", "ACME-1", "--extends", "WROOM-32")[0] == 0
    board = root / "boards/ACME-1.toml"
    board.write_text(board.read_text().replace("# uart_tx_pin = 17", "uart_tx_pin = 4")
                     .replace("# uart_rx_pin = 16", "uart_rx_pin = 5"))
    write(root / "boards/ACME-2.toml", 'extends = "ACME-1"\n[module]\nname = "ACME-2"\n')
    return root


def test_build_builds_the_projects_boards_incrementally_and_stock_ones_by_id(project, registry, tmp_path):
    r = atfactory("build", "-j", "2", cwd=project)
    assert r.returncode == 0, r.stderr
    for board_id, tx in (("ACME-1", 4), ("ACME-2", 4)):
        fp = decode_factory_param((project / f"build/{board_id}/customized_partitions/factory_param_{board_id}.bin")
                                  .read_bytes())
        assert (fp["module_name"], fp["uart_tx_pin"], fp["uart_rx_pin"]) == (board_id, tx, 5)
    assert sorted(p.name for p in (project / "build").iterdir() if not p.name.startswith(".")) == ["ACME-1", "ACME-2"]
    assert "scons: Entering directory" not in r.stdout
    again = atfactory("build", cwd=project)
    assert again.returncode == 0 and built(again.stdout) == []
    # One pin: one board's factory_param (one action, its two files) and the manifest, nothing else.
    board = project / "boards/ACME-2.toml"
    board.write_text(board.read_text() + "[factory_param]\nuart_baudrate = 921600\n")
    r = atfactory("build", "ACME-2", cwd=project / "boards")   # from a subfolder of the project
    assert r.returncode == 0, r.stderr
    assert built(r.stdout) == ["build/ACME-2/customized_partitions/factory_param.bin", "build/ACME-2/manifest.json"]
    # A stock board, by id, into the project's build folder; byte for byte the repository's build.
    r = atfactory("build", "WROOM-02", cwd=project)
    assert r.returncode == 0, r.stderr
    here = subprocess.run([sys.executable, "-m", "SCons", "-C", str(REPO), "-Q", "board=WROOM-02",
                           f"build_dir={tmp_path / 'repo'}"], capture_output=True, text=True)
    assert here.returncode == 0, here.stderr
    for path in (tmp_path / "repo/WROOM-02").rglob("*"):
        if path.is_file():
            assert (project / "build/WROOM-02" / path.relative_to(tmp_path / "repo/WROOM-02")).read_bytes() == \
                path.read_bytes(), path
    r = atfactory("build", "--clean", "WROOM-02", cwd=project)
    assert r.returncode == 0 and not (project / "build/WROOM-02/at_customize.bin").exists()


def test_build_takes_firmware_by_chip_and_by_board_from_the_project(project, registry, tmp_path):
    release = make_release(tmp_path / "fw-esp32", load_board("WROOM-32", registry))
    bad = make_release(tmp_path / "fw-c3", load_board("ESP32C3-MINI-1", registry))
    (project / "atfactory.toml").write_text(f'boards = ["boards"]\ndefault_board = "ACME-1"\nbuild_dir = "out"\n'
                                            f'[firmware.chip]\nesp32 = "{release}"\n')
    r = atfactory("build", cwd=project)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (project / "out").iterdir() if not p.name.startswith(".")) == ["ACME-1"]
    image = (project / "out/ACME-1/factory/factory_ACME-1.bin").read_bytes()
    assert len(image) == 4 << 20 and image[0x30000:0x30002] == b"\xfc\xfc"
    # firmware.board wins over firmware.chip, and its problems name the project file and key.
    with open(project / "atfactory.toml", "a") as f:
        f.write(f'[firmware.board]\nACME-1 = "{bad}"\n')
    r = atfactory("build", cwd=project)
    assert r.returncode == 2
    assert f"{project}/atfactory.toml: firmware.board.ACME-1 = \"{bad}\": the firmware is for" in r.stderr or \
        f"atfactory.toml: firmware.board.ACME-1 = \"{bad}\": the bootloader is at" in r.stderr, r.stderr
    # --firmware wins over both.
    r = atfactory("build", "--firmware", str(release), cwd=project)
    assert r.returncode == 0, r.stderr


def test_build_refuses_what_it_cannot_build(project):
    r = atfactory("build", "ACME-1,ACME-2", cwd=project)
    assert r.returncode == 2 and "BOARD = 'ACME-1,ACME-2': one board per argument" in r.stderr
    r = atfactory("build", "all", "ACME-1", cwd=project)
    assert r.returncode == 2 and "'all' (every board of the project) comes alone" in r.stderr
    r = atfactory("build", "-j", "0", cwd=project)
    assert r.returncode == 2 and "-j '0': expected a number of jobs, 1 or more" in r.stderr
    r = atfactory("build", "--device-images", cwd=project)
    assert r.returncode == 2 and "give --devices" in r.stderr
    r = atfactory("build", "--devices", "d.csv", cwd=project)   # two boards
    assert r.returncode == 2 and "devices= builds the devices of one board" in r.stderr
    assert not (project / "build").exists()
    empty = project / "empty"
    empty.mkdir()
    (empty / "atfactory.toml").write_text("boards = []\n")
    r = atfactory("build", cwd=empty)
    assert r.returncode == 2 and "the project has no boards of its own yet" in r.stderr


def test_the_example_project_builds_its_plugin_board(tmp_path):
    """examples/acme: a project whose plugin adds ACME-W32, its default board."""
    import shutil
    shutil.copytree(REPO / "examples/acme", tmp_path / "acme", ignore=shutil.ignore_patterns("__pycache__"))
    r = atfactory("build", cwd=tmp_path / "acme")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "acme/build/ACME-W32/customized_partitions/device_info.bin").read_bytes()[:4] == b"ACDI"
    assert (tmp_path / "acme/build/ACME-W32-release.zip").is_file()


# --- the tool in a vendor's own SConstruct ---------------------------------------------------------

VENDOR_SCONSTRUCT = '''\
import atfactory.site_tools

env = Environment(tools=["atfactory_build"], toolpath=[atfactory.site_tools.TOOLPATH])
host, registry = env.AtfSession([], board_dirs=["boards"])
env.AtfBuild(host, registry, ["ACME-1", "ACME-2"], "vendor-build")
'''


def test_a_vendors_own_sconstruct_builds_as_atfactory_build_does(project):
    readme = (REPO / "README.md").read_text()
    assert VENDOR_SCONSTRUCT.replace('["ACME-1", "ACME-2"]', '["ACME-1"]') in readme   # the lines README shows
    (project / "SConstruct").write_text(VENDOR_SCONSTRUCT)
    env = dict(os.environ, PYTHONPATH=str(REPO / "site_scons"))
    r = subprocess.run([sys.executable, "-m", "SCons", "-Q"], cwd=project, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert atfactory("build", cwd=project).returncode == 0
    for board_id in ("ACME-1", "ACME-2"):
        mine = sorted(p.relative_to(project / "vendor-build") for p in (project / "vendor-build" / board_id).rglob("*"))
        assert mine == sorted(p.relative_to(project / "build") for p in (project / "build" / board_id).rglob("*"))
        for rel in mine:
            if (project / "build" / rel).is_file():
                assert (project / "vendor-build" / rel).read_bytes() == (project / "build" / rel).read_bytes()
    again = subprocess.run([sys.executable, "-m", "SCons", "-Q"], cwd=project, env=env, capture_output=True, text=True)
    assert again.returncode == 0 and built(again.stdout) == []
