"""The format registry (atfactory.formats): lookup, registration through the hook, a plugin's own format."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from atfactory import builtin_plugin
from atfactory.errors import PluginError
from atfactory.formats import FormatRegistry, PartitionFormat, stock_formats, stock_registry
from atfactory.plugins import make_plugin_host
from helpers import ACME, CERTS, WITH_ACME, board_from_text, extending, part_toml, run_cli, run_scons, write

STOCK = ["factory_param", "pki", "ble_data", "mfg_nvs", "at_customize", "plugin", "raw"]


def test_stock_formats_in_order():
    assert [f.kind for f in stock_registry()] == STOCK
    assert [f.kind for f in stock_formats()] == STOCK


@pytest.mark.parametrize("name, kind", [
    ("factory_param", "factory_param"), ("server_cert", "pki"), ("wpa2_ca", "pki"), ("client_key", "pki"),
    ("ble_data", "ble_data"), ("user_data", "raw"), ("server_certs", "raw"), ("Factory_Param", "raw"),
])
def test_a_partition_goes_to_the_format_that_claims_it(name, kind):
    assert stock_registry().for_partition(name, "2.4").kind == kind
    assert stock_registry().for_partition(name, None).kind == kind   # read-back knows no release


@pytest.mark.parametrize("data, file_name, kind", [
    (b"\xfc\xfc\x03" + b"\xff" * 100, "x.bin", "factory_param"),
    (b"\xf1\xf1\x00\x00", "x.bin", "pki"),
    (b"\x02\x00\x27\x95{}", "x.bin", "ble_data"),
    (b"\x00\x01", "factory_param_WROOM-32.bin", "factory_param"),   # by name when no magic says
    (b"\x00\x01", "x.bin", None),
])
def test_a_whole_file_is_recognised_by_magic_then_by_name(data, file_name, kind):
    found = stock_registry().detect(data, file_name)
    assert (found.kind if found else None) == kind


def test_a_duplicate_kind_is_refused_naming_the_owner():
    registry = FormatRegistry()
    registry.add(stock_formats()[0], "atfactory")
    with pytest.raises(PluginError) as err:
        registry.add(stock_formats()[0], "acme")
    assert str(err.value) == ("format 'factory_param' is already registered by plugin atfactory; "
                              "each format needs a kind of its own")


def test_only_formats_with_a_kind_are_accepted():
    registry = FormatRegistry()
    with pytest.raises(PluginError, match="dict is not a format; accepted: an instance of a subclass"):
        registry.add({"kind": "x"})
    with pytest.raises(PluginError, match="PartitionFormat has no kind"):
        registry.add(PartitionFormat())


def test_the_fallback_takes_what_nobody_claims_and_is_asked_last():
    class Everything(PartitionFormat):
        kind = "everything"

        def claims(self, name, at_version):
            return True

    registry = FormatRegistry()
    for fmt in stock_formats():
        registry.add(fmt)
    registry.add(Everything(), "greedy")
    assert registry.for_partition("server_cert", "2.4").kind == "pki"     # stock formats come first
    assert registry.for_partition("user_data", "2.4").kind == "everything"  # before the fallback
    with pytest.raises(LookupError):
        FormatRegistry().for_partition("x", "2.4")


def _plugin(folder: Path, name: str, kind: str) -> Path:
    return write(folder / f"{name}.py", f"""
        from atfactory import hookimpl
        from atfactory.formats import PartitionFormat

        class F(PartitionFormat):
            kind = {kind!r}

        @hookimpl
        def atfactory_register_formats(registry):
            registry.add(F())
    """)


def test_two_plugins_registering_one_kind_stop_the_session_naming_both(tmp_path):
    _plugin(tmp_path / "p", "alpha", "label")
    _plugin(tmp_path / "p", "beta", "label")
    host = make_plugin_host([str(tmp_path / "p")], entry_points=False)
    with pytest.raises(PluginError) as err:
        host.formats()
    message = str(err.value)
    assert message.startswith("plugin ")
    assert "atfactory_register_formats: format 'label' is already registered by plugin " in message
    assert "alpha" in message and "beta" in message


def test_a_plugin_cannot_take_a_stock_kind(tmp_path):
    _plugin(tmp_path / "p", "rogue", "pki")
    host = make_plugin_host([str(tmp_path / "p")], entry_points=False)
    with pytest.raises(PluginError, match="^plugin rogue: atfactory_register_formats: format 'pki' is already "
                                          "registered by plugin atfactory"):
        host.formats()


def test_the_builtin_plugin_registers_the_stock_formats_through_the_hook():
    host = make_plugin_host([], entry_points=False)
    assert [f.kind for f in host.formats()] == STOCK
    assert {host.formats().owner(k) for k in STOCK} == {builtin_plugin.NAME}


# --- a plugin's format end to end: ACME's device_info ---------------------------------------------

def _device_info(fields: dict) -> bytes:
    text = json.dumps(fields).encode()
    return b"ACDI" + len(text).to_bytes(2, "little") + text


def _acme_board(tmp_path: Path, data: bytes) -> Path:
    (tmp_path / "info.bin").write_bytes(data)
    return write(tmp_path / "info-board.toml", extending(part_toml(
        name="device_info", type="0x40", subtype="0x60", offset="0x3D000", size="4K", source="info.bin")))


def test_a_plugin_format_builds_reads_back_and_explains(tmp_path, capsys, monkeypatch):
    info = _device_info({"module": "X", "product": "lamp"})
    board = _acme_board(tmp_path, info)
    r = run_scons(f"board={board}", "build_dir=out", WITH_ACME, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ACDI   out/info-board/customized_partitions/device_info.bin" in r.stdout
    built = tmp_path / "out/info-board/customized_partitions/device_info.bin"
    assert built.read_bytes() == info
    monkeypatch.chdir(ACME.parent)   # the example's project folder: the command loads its plugins

    code, out, err = run_cli(capsys, "inspect", str(built))
    assert code == 0, err
    assert "product = 'lamp'" in out

    # inspect of the release folder decodes the partition by its format, and the map labels it
    code, out, err = run_cli(capsys, "inspect", str(tmp_path / "out/info-board"), "--json")
    doc = json.loads(out)
    [part] = [p for p in doc["at_customize"]["partitions"] if p["name"] == "device_info"]
    assert part["content"] == {"kind": "acme_device_info", "fields": {"module": "X", "product": "lamp"}}
    assert "ACME device info" in (tmp_path / "out/info-board/flash_map.svg").read_text()

    # verify names the field that differs, in the format's own words
    (tmp_path / "info.bin").write_bytes(_device_info({"module": "X", "product": "desk lamp"}))
    code, out, err = run_cli(capsys, "verify", str(tmp_path / "out/info-board"), "--board", str(board))
    assert code == 1, out + err
    assert "partition device_info at 0x3d000: vendor.product is 'lamp', the board says 'desk lamp'" in out


def test_a_plugin_format_checks_its_inputs(tmp_path):
    board = _acme_board(tmp_path, b"not a device info")
    r = run_scons(f"board={board}", "build_dir=out", WITH_ACME, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert (f"{tmp_path}/info-board.toml: at_customize.partitions[device_info].source = \"{tmp_path}/info.bin\": "
            "not an ACME device_info image (at offset 0x0: magic 6e6f7420, expected 41434449 (ACDI))") in r.stderr
    assert not (tmp_path / "out" / "info-board").exists()


def test_without_the_plugin_the_partition_is_plain_data(tmp_path):
    info = _device_info({"module": "X"})
    board = _acme_board(tmp_path, info)
    r = run_scons(f"board={board}", "build_dir=out", WITH_ACME, cwd=tmp_path, env={"ATFACTORY_DISABLE_PLUGINS": "acme_vendor"})
    assert r.returncode == 0, r.stderr
    assert "RAW    out/info-board/customized_partitions/device_info.bin" in r.stdout


def test_board_loading_asks_the_registry(tmp_path):
    """A board partition's content comes from its format's read: here a plugin-less registry's raw."""
    board = board_from_text(tmp_path, extending(part_toml(name="blob", type="0x40", subtype="0x66",
                                                          offset="0x3D000", size="4K", source=str(CERTS / "ca.crt"))))
    assert board.partition("blob").content.kind == "raw"
    assert board.partition("server_cert").content.kind == "pki"
    assert [c.set_name for c in board.certificate_sets()["server_cert"]] == ["server_cert"]
