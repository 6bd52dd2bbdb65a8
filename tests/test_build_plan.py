"""The cached build plan (atfactory_plan): a run whose inputs are all unchanged declares what the
last full load declared without importing the library; anything changed loads fully.

Every run here sets PYTHONPROFILEIMPORTTIME (part of the plan's key, like every environment
variable), so that stderr shows whether the board library was imported: a full load imports
atfactory.board, a run from the cached plan does not.  Files written by a test are younger than
2 s, so the tests wait before the run that is to store a plan.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from firmware_factory import make_release
from helpers import ACME, REPO, STOCK_DIR, load_board, stock_registry

BUILT = re.compile(r"^(TABLE|PARAM|PKI|GATT|RAW|PLUGIN|COPY|CUT|CONFIG|MERGE|MAP|LIST|SIGN|HOOKS)\s+(.+)$", re.M)
TRACE = {"PYTHONPROFILEIMPORTTIME": "1"}


def built(r):
    return [m.group(2).rsplit("/", 1)[-1] for m in BUILT.finditer(r.stdout)]


def run(tmp_path, *args):
    """run_scons, without PYTEST_CURRENT_TEST (it differs between a fixture and its test, and
    the whole environment is part of a plan's key)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.update(TRACE)
    return subprocess.run([sys.executable, "-m", "SCons", "-C", str(REPO), "-Q", *args], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)


def scons(tmp_path, *args):
    r = run(tmp_path, *args)
    assert r.returncode in (0, 2), r.stdout + r.stderr
    return r


def full_load(r) -> bool:
    """The SConstruct went past the cached plan (only its full path imports help_text)."""
    return re.search(r"\| +atfactory\.help_text$", r.stderr, re.M) is not None


def messages(r):
    return [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("atfactory:")]


def settle():
    time.sleep(2.1)   # a file changed within 2 s is not trusted by its stamp


def plans(tmp_path):
    return sorted((tmp_path / "out/.atfactory/plans").glob("*.json"))


@pytest.fixture()
def vendor_tree(tmp_path):
    """ACME-W32 (the example plugin's board: post-build hooks) with firmware, built, then a
    second full load that stores the plan, then a run from the plan."""
    shutil.copytree(ACME, tmp_path / "plugins")
    (tmp_path / "certs").mkdir()
    for name in ("server.crt", "server.key"):
        shutil.copy(STOCK_DIR / "data/certs" / name, tmp_path / "certs" / name)
    board_file = tmp_path / "plugins/boards/ACME-W32.toml"
    board_file.write_text(board_file.read_text() + '''
[[at_customize.partitions]]
name = "server_cert"
source = ["../../certs/server.crt"]

[[at_customize.partitions]]
name = "server_key"
source = "../../certs/server.key"
''')
    # the layout of WROOM-32, which ACME-W32 extends
    make_release(tmp_path / "release", load_board(str(STOCK_DIR / "WROOM-32.toml"), stock_registry()))
    args = ("board=ACME-W32", "build_dir=out", "plugins=plugins", "firmware=release")
    first = scons(tmp_path, *args)
    assert first.returncode == 0 and "factory_ACME-W32.bin" in built(first), first.stdout + first.stderr
    settle()
    second = scons(tmp_path, *args)
    assert full_load(second) and built(second) == [] and len(plans(tmp_path)) == 1, second.stdout + second.stderr
    third = scons(tmp_path, *args)
    assert not full_load(third) and built(third) == [] and third.returncode == 0, third.stdout + third.stderr
    return tmp_path, args, second


def test_cached_and_full_loads_keep_each_others_targets(vendor_tree):
    tmp_path, args, full = vendor_tree
    for plan in plans(tmp_path):   # a full load after a cached run: nothing to build either
        plan.unlink()
    again = scons(tmp_path, *args)
    assert full_load(again) and built(again) == [], again.stdout
    cached = scons(tmp_path, *args)
    assert not full_load(cached) and built(cached) == [], cached.stdout
    assert messages(cached) == messages(full)


def test_a_deleted_output_is_rebuilt_from_the_cached_plan(vendor_tree):
    tmp_path, args, _ = vendor_tree
    out = tmp_path / "out/ACME-W32"
    image = out / "factory/factory_ACME-W32.bin"
    param = out / "customized_partitions/factory_param.bin"
    before = image.read_bytes(), param.read_bytes(), (out / "manifest.json").read_bytes()
    image.unlink()
    param.unlink()
    r = scons(tmp_path, *args, "-j2")
    assert r.returncode == 0 and not full_load(r), r.stdout + r.stderr
    assert sorted(built(r)) == ["factory_ACME-W32.bin", "factory_param.bin"], r.stdout
    assert (image.read_bytes(), param.read_bytes(), (out / "manifest.json").read_bytes()) == before
    again = scons(tmp_path, *args)
    assert built(again) == [] and not full_load(again), again.stdout


@pytest.mark.parametrize("change", ["board", "data", "firmware", "plugin", "argument"])
def test_a_changed_input_or_argument_loads_fully(vendor_tree, change):
    tmp_path, args, _ = vendor_tree
    board = tmp_path / "plugins/boards/ACME-W32.toml"
    if change == "board":
        board.write_text(board.read_text().replace("uart_tx_pin = 4", "uart_tx_pin = 16"))
        expected = {"factory_param.bin", "factory_ACME-W32.bin"}   # factory_param_ACME-W32.bin: the same action
    elif change == "data":   # another certificate with its key
        shutil.copy(STOCK_DIR / "data/certs/client.crt", tmp_path / "certs/server.crt")
        shutil.copy(STOCK_DIR / "data/certs/client.key", tmp_path / "certs/server.key")
        expected = {"server_cert.bin", "server_key.bin", "factory_ACME-W32.bin"}
    elif change == "firmware":
        phy = tmp_path / "release/phy_init_data.bin"
        phy.write_bytes(b"\x01" + phy.read_bytes()[1:])
        expected = {"phy_init_data.bin", "factory_ACME-W32.bin"}
    elif change == "plugin":   # the post-build hook is the plugin's: it runs again
        plugin = tmp_path / "plugins/acme_vendor.py"
        plugin.write_text(plugin.read_text() + "\n# changed\n")
        expected = set()
    else:
        args = args + ("release=no",)
        expected = set()
    r = scons(tmp_path, *args)
    assert r.returncode == 0 and full_load(r), r.stdout + r.stderr
    assert {b for b in built(r) if b not in ("manifest.json", "post-build of ACME-W32")} == expected, r.stdout


def test_printed_warnings_are_printed_from_the_cached_plan(tmp_path):
    r = scons(tmp_path, "board=WROOM-32", "build_dir=out")
    assert r.returncode == 0
    settle()   # python -m SCons: the launch folder, where out/ was just made, is on sys.path
    full = scons(tmp_path, "board=WROOM-32", "build_dir=out")
    cached = scons(tmp_path, "board=WROOM-32", "build_dir=out")
    assert full_load(full) and not full_load(cached)
    warned = messages(full)
    assert any("development certificates" in m for m in warned) and any("no firmware" in m for m in warned)
    assert messages(cached) == warned
    assert cached.stderr.count("atfactory: warning:") == full.stderr.count("atfactory: warning:")


def test_a_corrupt_plan_is_ignored(tmp_path):
    scons(tmp_path, "board=WROOM-32", "build_dir=out")
    settle()
    scons(tmp_path, "board=WROOM-32", "build_dir=out")
    [plan] = plans(tmp_path)
    for text in ("{not json", json.dumps({"format": 1}), json.dumps([1, 2])):
        plan.write_text(text)
        r = scons(tmp_path, "board=WROOM-32", "build_dir=out")
        assert r.returncode == 0 and full_load(r) and built(r) == [], r.stdout + r.stderr
        assert not full_load(scons(tmp_path, "board=WROOM-32", "build_dir=out"))


def test_the_plan_holds_no_key_material(vendor_tree):
    tmp_path, _, _ = vendor_tree
    text = plans(tmp_path)[0].read_text()
    assert os.environ["PATH"] not in text   # the environment only by its digest
    keys = [p for p in (STOCK_DIR / "data/certs").glob("*.key")]
    assert keys
    for key in keys:
        data = key.read_bytes()
        body = b"".join(data.splitlines()[1:-1]).decode()
        assert body[:40] not in text
        for algorithm in ("md5", "sha1", "sha256"):
            assert hashlib.new(algorithm, data).hexdigest() not in text


# SCons, its chunk size for hashing a file as the build leaves it (printed at exit)
CHUNK_PROBE = ("import atexit, sys, SCons.Node.FS as fs; "
               "atexit.register(lambda: print('hash chunk', fs.File.hash_chunksize)); "
               "sys.argv[0] = 'scons'; import SCons.Script; SCons.Script.main()")


def test_files_are_hashed_in_64_kib_chunks_from_a_plan_and_a_full_load(vendor_tree):
    """SCons 4.x scales its default chunk (65536) to 64 MiB, so every file under that size was
    read whole to be hashed: a 100,000-device ledger in memory.  Both loads set 64 KiB; the
    command line's --hash-chunksize still wins."""
    tmp_path, args, _ = vendor_tree
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.update(TRACE)

    def probe(*extra):
        r = subprocess.run([sys.executable, "-c", CHUNK_PROBE, "-C", str(REPO), "-Q", *extra, *args],
                           cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        return r, re.findall(r"^hash chunk (\d+)$", r.stdout, re.M)

    full, chunk = probe()   # a command line of its own (python -c): a full load, which stores its plan
    assert full_load(full) and chunk == ["65536"], full.stdout
    cached, chunk = probe()
    assert not full_load(cached) and chunk == ["65536"], cached.stdout
    given, chunk = probe("--hash-chunksize=128")
    assert chunk == [str(128 * 1024)], given.stdout


@pytest.mark.parametrize("args", [("-c",), ("-h",), ("plugins",), ("VERBOSE=1",), ("sign_key=none.key",)])
def test_other_command_lines_load_fully(tmp_path, args):
    scons(tmp_path, "board=WROOM-32", "build_dir=out")
    settle()
    scons(tmp_path, "board=WROOM-32", "build_dir=out")
    assert not full_load(scons(tmp_path, "board=WROOM-32", "build_dir=out"))
    r = run(tmp_path, "board=WROOM-32", "build_dir=out", *args)
    assert full_load(r), r.stdout + r.stderr
