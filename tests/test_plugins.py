"""Plugins through pluggy (atfactory.plugins, atfactory.hookspecs): discovery, every hook, ordering, failures, blocking."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from atfactory import hookspecs
from atfactory import partition_table as pt
from atfactory.factory_param import decode_factory_param
from atfactory.plugins import make_plugin_host
from helpers import ACME, REPO, WITH_ACME, run_scons, write
from firmware_factory import make_release


def hook_names():
    return sorted(n for n in dir(hookspecs) if n.startswith("atfactory_"))


def test_every_hook_is_documented_and_every_documented_hook_exists():
    doc = (REPO / "docs/plugins.md").read_text()
    documented = sorted(re.findall(r"^### `(atfactory_\w+)`$", doc, re.M))
    assert documented == hook_names()
    for name in hook_names():
        assert getattr(hookspecs, name).__doc__.strip(), name


def test_scons_plugins_lists_origin_and_hooks(tmp_path):
    r = run_scons("plugins", WITH_ACME, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "atfactory 0.1.0  from built-in" in r.stdout
    assert "acme_vendor 1.0.0  from examples/acme/plugins/acme_vendor.py" in r.stdout   # relative to the SConstruct
    listed = r.stdout.split("acme_vendor", 1)[1].splitlines()[1]
    for hook in hook_names():
        assert hook in listed


def test_the_example_plugin_loads_only_where_asked_for(tmp_path):
    r = run_scons("plugins", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1:] == ["Plugins (the last listed runs first within a hook):",
                                     "  atfactory 0.1.0  from built-in",
                                     "      hooks: atfactory_register_boards, atfactory_register_formats"]
    r = run_scons("board=ACME-W32", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2 and 'board = "ACME-W32": no board with this id' in r.stderr
    # A plugins/ folder beside the SConstruct is still searched: a copy of the checkout with one.
    import shutil
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    shutil.copy(REPO / "SConstruct", checkout / "SConstruct")
    shutil.copytree(REPO / "site_scons", checkout / "site_scons", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ACME, checkout / "plugins")
    r = subprocess.run([sys.executable, "-m", "SCons", "-C", str(checkout), "-Q", "plugins"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "acme_vendor 1.0.0  from plugins/acme_vendor.py" in r.stdout


def test_vendor_plugin_board_builds_with_every_hook(tmp_path):
    r = run_scons("board=ACME-W32", "build_dir=out", WITH_ACME, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out/ACME-W32"
    # configure_board: the US channel plan; the board's own pins.
    fp = decode_factory_param((out / "customized_partitions/factory_param_ACME-W32.bin").read_bytes())
    assert (fp["country_code"], fp["start_channel"], fp["channel_num"]) == ("US", 1, 11)
    assert (fp["uart_tx_pin"], fp["uart_rx_pin"], fp["module_name"]) == (4, 5, "ACME-W32")
    # register_partitions: device_info placed in the first free space of the region.
    table = pt.decode_partition_table((out / "at_customize.bin").read_bytes())
    info = [e for e in table.entries if e.name == "device_info"]
    assert info == [pt.Entry("device_info", 0x40, 0x60, 0x3D000, 0x1000)]
    data = (out / "customized_partitions/device_info.bin").read_bytes()
    assert data[:4] == b"ACDI"
    assert json.loads(data[6:])["product"] == "ACME-W32"
    assert "0x3d000 customized_partitions/device_info.bin" in (out / "download.config").read_text()
    # post_build: a reproducible archive, owner-only (it holds keys).
    archive = tmp_path / "out/ACME-W32-release.zip"
    first = archive.read_bytes()
    assert archive.stat().st_mode & 0o077 == 0
    names = zipfile.ZipFile(archive).namelist()
    assert "ACME-W32/customized_partitions/device_info.bin" in names
    # Nothing changed: nothing built, hooks not run again.
    again = run_scons("board=ACME-W32", "build_dir=out", WITH_ACME, cwd=tmp_path)
    assert "HOOKS" not in again.stdout and "PLUGIN" not in again.stdout
    # A vendor value the partition reads: only device_info is rebuilt, and the hooks run again.
    board = write(tmp_path / "ACME-W33.toml", 'extends = "ACME-W32"\n[module]\nname = "ACME-W32"\n'
                  '[vendor]\nhw_revision = "1.1"\n')
    r = run_scons(f"board={board.name}", "build_dir=out", WITH_ACME, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    second = (tmp_path / "out/ACME-W33-release.zip").read_bytes()
    assert second != first
    r = run_scons(f"board={board.name}", "build_dir=out", WITH_ACME, cwd=tmp_path)
    assert "HOOKS" not in r.stdout
    board.write_text(board.read_text().replace('"1.1"', '"1.2"'))
    r = run_scons(f"board={board.name}", "build_dir=out", WITH_ACME, cwd=tmp_path)
    assert re.findall(r"^(PLUGIN|HOOKS)\s", r.stdout, re.M) == ["PLUGIN", "HOOKS"]
    assert re.findall(r"^HOOKS.*$", r.stdout, re.M) == ["HOOKS  post-build of ACME-W33"]   # the board, by its id
    # Reproducible: the same board in another build folder gives the same archive.
    assert run_scons("board=ACME-W32", "build_dir=elsewhere", WITH_ACME, cwd=tmp_path).returncode == 0
    assert (tmp_path / "elsewhere/ACME-W32-release.zip").read_bytes() == first


def test_pre_merge_removes_dev_certificates_from_production_images(registry, tmp_path):
    from atfactory.board import load_board
    release = make_release(tmp_path / "release", load_board("WROOM-32", registry))
    board = write(tmp_path / "prod.toml", """
        extends = "ACME-W32"
        [vendor]
        production = true
        """)
    r = run_scons(f"board={board.name}", f"firmware={release}", "build_dir=out", WITH_ACME, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    image = (tmp_path / "out/prod/factory/factory_ACME-W32.bin").read_bytes()
    assert image[0x24000:0x26000] == b"\xff" * 0x2000          # server_cert left out
    assert image[0x30000:0x30002] == b"\xfc\xfc"                 # factory_param kept
    assert image[0x3D000:0x3D004] == b"ACDI"                     # plugin partition merged


def _plugin(folder: Path, name: str, body: str) -> Path:
    return write(folder / f"{name}.py", "from atfactory import hookimpl\n\n" + body)


def test_two_plugins_order_and_tryfirst(tmp_path):
    body = """
@hookimpl{mark}
def atfactory_register_partitions(board, registry):
    registry.add("{name}", subtype={sub}, size="4K", build=lambda board, inputs: b"{name}")
"""
    plugins = tmp_path / "more"
    _plugin(plugins, "alpha", body.format(mark="", name="p_alpha", sub=0x71))
    _plugin(plugins, "beta", body.format(mark="", name="p_beta", sub=0x72))
    r = run_scons(f"plugins={plugins}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    entries = pt.decode_partition_table((tmp_path / "out/WROOM-32/at_customize.bin").read_bytes()).entries
    placed = {e.name: e.offset for e in entries}
    # pluggy calls the plugin registered last (beta) first: it gets the first free space.
    assert placed["p_beta"] == 0x3D000 and placed["p_alpha"] == 0x3E000
    _plugin(plugins, "alpha", body.format(mark="(tryfirst=True)", name="p_alpha", sub=0x71))
    r = run_scons(f"plugins={plugins}", "build_dir=out2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    entries = pt.decode_partition_table((tmp_path / "out2/WROOM-32/at_customize.bin").read_bytes()).entries
    placed = {e.name: e.offset for e in entries}
    assert placed["p_alpha"] == 0x3D000 and placed["p_beta"] == 0x3E000


@pytest.mark.parametrize("hook, body, expected", [
    ("configure", """
@hookimpl
def atfactory_configure_board(board):
    raise RuntimeError("refusing " + board.id)
""", "plugin boom: atfactory_configure_board raised RuntimeError: refusing WROOM-32"),
    ("register", """
@hookimpl
def atfactory_register_partitions(board, registry):
    registry.add("factory_param", subtype=9, size="4K", build=lambda b, i: b"x")
""", "plugin boom: at_customize.partitions[factory_param]: a partition of this name already exists"),
    ("too-big", """
@hookimpl
def atfactory_register_partitions(board, registry):
    registry.add("blob", subtype=0x77, size="4K", build=lambda b, i: b"x" * 5000)
""", 'plugin boom: at_customize.partitions[blob].size = "4K": the content is 5000 bytes (0x1388), larger than the partition\'s 4K (0x1000)'),
    ("overlap", """
@hookimpl
def atfactory_register_partitions(board, registry):
    registry.add("blob", subtype=0x77, size="8K", offset=0x3C000, build=lambda b, i: b"x")
""", "at_customize.partitions[blob].offset = 245760: 0x3c000-0x3e000 overlaps partition mqtt_ca (0x3b000-0x3d000)"),
    ("import", "raise ImportError('no such thing')\n", "plugin boom"),
])
def test_failing_plugin_names_itself_and_the_hook(tmp_path, hook, body, expected):
    plugins = tmp_path / "more"
    _plugin(plugins, "boom", body)
    r = run_scons(f"plugins={plugins}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2, r.stdout
    assert "Traceback" not in r.stderr + r.stdout
    assert expected in r.stderr
    assert not (tmp_path / "out").exists()


def test_pre_merge_overlap_is_an_error(registry, tmp_path):
    from atfactory.board import load_board
    release = make_release(tmp_path / "release", load_board("WROOM-32", registry))
    plugins = tmp_path / "more"
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x01" * 0x3000)
    _plugin(plugins, "stacker", f"""
@hookimpl
def atfactory_pre_merge(board, images):
    images.append((0x25000, {str(blob)!r}))
""")
    r = run_scons(f"plugins={plugins}", f"firmware={release}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2
    assert "overlaps" in r.stderr and "blob.bin" in r.stderr
    assert not (tmp_path / "out/WROOM-32/factory").exists()


def test_blocked_plugin(tmp_path):
    env = {"ATFACTORY_DISABLE_PLUGINS": "acme_vendor"}
    listing = run_scons("plugins", WITH_ACME, cwd=tmp_path, env=env)
    assert listing.returncode == 0 and "acme_vendor" not in listing.stdout
    r = run_scons("board=ACME-W32", "build_dir=out", WITH_ACME, cwd=tmp_path, env=env)
    assert r.returncode == 2
    assert 'board = "ACME-W32": no board with this id' in r.stderr
    # Without the plugin, its [vendor] table is an unknown key again.
    board = write(tmp_path / "v.toml", 'extends = "WROOM-32"\n[vendor]\nname = "x"\n')
    r = run_scons(f"board={board.name}", "build_dir=out", WITH_ACME, cwd=tmp_path, env=env)
    assert r.returncode == 2 and "v.toml: vendor: unknown key" in r.stderr


def test_plugin_table_is_checked(tmp_path):
    board = write(tmp_path / "v.toml", 'extends = "WROOM-32"\n[vendor]\nnmae = "x"\n')
    r = run_scons(f"board={board.name}", "build_dir=out", WITH_ACME, cwd=tmp_path)
    assert r.returncode == 2
    assert "v.toml: vendor: unknown key 'nmae'; accepted: name, product, hw_revision, country, production" in r.stderr
    assert "v.toml: vendor: name: missing" in r.stderr


@pytest.fixture(scope="module")
def installed_example(tmp_path_factory):
    """examples/atfactory-buildinfo installed (with its entry point) into a folder on PYTHONPATH."""
    import shutil
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "atfactory-buildinfo"
    shutil.copytree(REPO / "examples/atfactory-buildinfo", source)   # pip builds in place: not in the repo
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(source)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return target


def test_entry_point_plugin(installed_example, tmp_path):
    env = {"PYTHONPATH": str(installed_example)}
    listing = run_scons("plugins", cwd=tmp_path, env=env)
    assert "buildinfo 1.0.0  from entry point of atfactory-buildinfo 1.0.0" in listing.stdout
    board = write(tmp_path / "b.toml", 'extends = "WROOM-32"\n[buildinfo]\nlabel = "line 3"\n')
    r = run_scons(f"board={board.name}", "build_dir=out", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out/b/customized_partitions/build_info.bin").read_bytes() == b"board=b;module=b;label=line 3"
    blocked = run_scons("plugins", cwd=tmp_path, env=dict(env, ATFACTORY_DISABLE_PLUGINS="buildinfo"))
    assert "buildinfo" not in blocked.stdout


def test_entry_point_precheck_reads_what_importlib_metadata_reads(installed_example, tmp_path):
    """A no-op skips pluggy's scan only when no distribution on the path has an [atfactory]
    section in its entry_points.txt; anything it cannot read that way says "scan"."""
    from atfactory.plugins import may_declare_entry_points

    assert may_declare_entry_points("atfactory", [str(installed_example)])
    assert not may_declare_entry_points("atfactory_other", [str(installed_example)])
    other = tmp_path / "site"
    write(other / "tool-1.0.dist-info/entry_points.txt", "[console_scripts]\ntool = tool:main\n\n[ atfactory_x ]\n")
    write(other / "old-2.0.egg-info", "Metadata-Version: 1.0\n")    # a file: declares nothing
    write(other / "bare-1.0.dist-info/METADATA", "Metadata-Version: 2.1\n")
    assert not may_declare_entry_points("atfactory", [str(other), str(tmp_path / "missing")])
    assert may_declare_entry_points("atfactory_x", [str(other)])
    write(other / "late-1.0.dist-info/entry_points.txt", "[atfactory]\nlate = late_plugin\n")
    assert may_declare_entry_points("atfactory", [str(other)])
    assert may_declare_entry_points("atfactory", [str(tmp_path / "x.egg")])       # eggs: pluggy scans
    zipped = tmp_path / "lib.zip"
    zipped.write_bytes(b"PK\x05\x06" + bytes(18))
    assert may_declare_entry_points("atfactory", [str(zipped)])
    # never a false "none": here (no plugin installed) importlib.metadata finds none either
    import importlib.metadata
    declared = list(importlib.metadata.entry_points(group="atfactory"))
    assert may_declare_entry_points("atfactory") or not declared
    assert may_declare_entry_points("console_scripts")   # this venv's own console scripts


def test_host_call_order_matches_pluggy():
    host = make_plugin_host(entry_points=False)
    impls = host.impls("atfactory_register_boards")
    assert [i.plugin_name for i in impls][0] == "atfactory"    # tryfirst: the stock boards come first
