"""A board's own namespaces in mfg_nvs ([mfg_nvs.namespaces.<name>]): typed keys after ESP-AT's,
per-device values from a devices CSV, read back, extracted and refused when wrong."""
from __future__ import annotations

from pathlib import Path

import pytest

from atfactory import nvs
from atfactory.errors import ExtractError
from atfactory.formats.mfg_nvs import MfgNvsFormat
from helpers import assert_refused, board_from_text, nvs_oracle, problems_of, run_cli, run_scons, write
from test_mfg_nvs import rendered

VENDOR = """
[mfg_nvs.namespaces.acme]
serial = "SN-000001"
hw_rev = { type = "u8", value = 3 }
offset = { type = "i16", value = -300 }
uptime = { type = "u64", value = 18446744073709551615 }
calibration = { type = "blob", file = "cal.bin" }
salt = { type = "blob", hex = "00 11 22 ff" }
motd = { type = "blob", base64 = "aGVsbG8=" }

[mfg_nvs.namespaces."acme.ota"]
channel = { type = "string", value = "stable" }
"""
ACME = [("acme", [("serial", "string", "SN-000001"), ("hw_rev", "u8", 3), ("offset", "i16", -300),
                  ("uptime", "u64", 2 ** 64 - 1), ("calibration", "blob", b"\x01\x02calibration" * 100),
                  ("salt", "blob", b"\x00\x11\x22\xff"), ("motd", "blob", b"hello")]),
        ("acme.ota", [("channel", "string", "stable")])]


def _vendor_board(tmp_path: Path, body: str = VENDOR, base: str = "WROOM-32-V5") -> str:
    (tmp_path / "cal.bin").write_bytes(b"\x01\x02calibration" * 100)
    return f'extends = "{base}"\n[module]\nname = "ACME-1"\n' + body


def test_own_namespaces_follow_espressifs_in_board_order(tmp_path):
    board = board_from_text(tmp_path, _vendor_board(tmp_path))
    data = rendered(board)
    image = nvs.decode_nvs(data)
    names = [ns.name for ns in image.namespaces]
    assert names[-3:] == ["ble_data", "acme", "acme.ota"]
    stock = [(ns, items) for ns, items in image.namespace_items() if ns not in ("acme", "acme.ota")]
    assert [(ns, list(items)) for ns, items in image.namespace_items()][-2:] == ACME
    # the maintained generator writes the same bytes for ESP-AT's namespaces followed by ours
    assert data == nvs_oracle(stock + ACME, len(data))
    assert str(tmp_path / "cal.bin") in board.partition("mfg_nvs").content.sources


def test_extends_adds_namespaces_and_replaces_keys_in_place(tmp_path):
    write(tmp_path / "base.toml", _vendor_board(tmp_path))
    child = 'extends = "base.toml"\n[mfg_nvs.namespaces.acme]\nhw_rev = { type = "u16", value = 4 }\n' \
            '[mfg_nvs.namespaces.zeta]\nx = "y"\n'
    image = nvs.decode_nvs(rendered(board_from_text(tmp_path, child, name="child.toml")))
    items = dict(image.namespace_items())
    assert [k for k, _, _ in items["acme"]] == ["serial", "hw_rev", "offset", "uptime", "calibration", "salt", "motd"]
    assert ("hw_rev", "u16", 4) in items["acme"]
    assert [ns.name for ns in image.namespaces][-3:] == ["acme", "acme.ota", "zeta"]


@pytest.mark.parametrize("body, key, words", [
    ('[mfg_nvs.namespaces.averyveryverylongname]\nx = "1"\n', "mfg_nvs.namespaces.averyveryverylongname",
     "1 to 15 bytes"),
    ('[mfg_nvs.namespaces.acme]\nakeythatistoolong16 = "1"\n', "mfg_nvs.namespaces.acme.akeythatistoolong16",
     "1 to 15 bytes"),
    ('[mfg_nvs.namespaces."../up"]\nx = "1"\n', 'mfg_nvs.namespaces.../up', "not a name"),
    ('[mfg_nvs.namespaces.factory_param]\nversion = { type = "i8", value = 1 }\n',
     "mfg_nvs.namespaces.factory_param", "ESP-AT writes the namespace 'factory_param' itself"),
    ('[mfg_nvs.namespaces.acme]\n', "mfg_nvs.namespaces.acme", "no keys"),
    ('[mfg_nvs.namespaces.acme]\nx = { type = "u9", value = 1 }\n', "mfg_nvs.namespaces.acme.x.type = \"u9\"",
     "accepted: u8, i8, u16, i16, u32, i32, u64, i64, string, blob"),
    ('[mfg_nvs.namespaces.acme]\nx = { type = "u16", value = -1 }\n', "mfg_nvs.namespaces.acme.x.value = -1",
     "out of range for u16; accepted: 0 to 65535"),
    ('[mfg_nvs.namespaces.acme]\nx = { type = "i8", value = 128 }\n', "mfg_nvs.namespaces.acme.x.value = 128",
     "accepted: -128 to 127"),
    ('[mfg_nvs.namespaces.acme]\nx = { type = "u8", value = "3" }\n', "mfg_nvs.namespaces.acme.x.value",
     "expected an integer for u8"),
    ('[mfg_nvs.namespaces.acme]\nx = "' + "x" * 3968 + '"\n', "mfg_nvs.namespaces.acme.x",
     "the string is 3968 bytes; an NVS string must fit one page, at most 3967 bytes"),
    ('[mfg_nvs.namespaces.acme]\nx = "a\\u0000b"\n', "mfg_nvs.namespaces.acme.x", "NUL"),
    ('[mfg_nvs.namespaces.acme]\nx = { type = "blob", hex = "zz" }\n', "mfg_nvs.namespaces.acme.x.hex",
     "not hexadecimal"),
    ('[mfg_nvs.namespaces.acme]\nx = { type = "blob", base64 = "@@" }\n', "mfg_nvs.namespaces.acme.x.base64",
     "not base64"),
    ('[mfg_nvs.namespaces.acme]\nx = { type = "blob", hex = "00", file = "cal.bin" }\n',
     "mfg_nvs.namespaces.acme.x", "exactly one of file"),
    ('[mfg_nvs.namespaces.acme]\nx = { type = "blob", value = "00" }\n', "mfg_nvs.namespaces.acme.x.value",
     "a blob takes file"),
    ('[mfg_nvs.namespaces.acme]\nx = { type = "u8", value = 1, colour = 2 }\n',
     "mfg_nvs.namespaces.acme.x.colour", "unknown key"),
    ('[mfg_nvs.namespaces.acme]\nx = { type = "blob", file = "missing.bin" }\n',
     "mfg_nvs.namespaces.acme.x", "no such file"),
    ('[mfg_nvs.namespaces.acme]\nx = { type = "blob", file = "empty.bin" }\n',
     "mfg_nvs.namespaces.acme.x", "the file is empty"),
])
def test_bad_own_namespaces_name_file_key_and_reason(tmp_path, body, key, words):
    (tmp_path / "empty.bin").write_bytes(b"")
    problems = [str(p) for p in problems_of(tmp_path, _vendor_board(tmp_path, body))]
    assert len(problems) == 1, problems
    assert "board.toml" in problems[0] or "empty.bin" in problems[0] or "missing.bin" in problems[0], problems
    assert f": {key}" in problems[0] and words in problems[0], problems


def test_a_v2_board_has_no_mfg_nvs_namespaces(tmp_path):
    problems = [str(p) for p in problems_of(tmp_path, _vendor_board(tmp_path, base="WROOM-32"))]
    assert any(": mfg_nvs: ESP-AT 2.4 has no mfg_nvs partition" in p for p in problems), problems


def test_sandbox_refuses_a_blob_file_outside_the_board_folder(tmp_path):
    outside = tmp_path / "secret.bin"
    outside.write_bytes(b"x")
    folder = tmp_path / "untrusted"
    write(folder / "b.toml", 'extends = "WROOM-32-V5"\n[mfg_nvs.namespaces.acme]\n'
                             'x = { type = "blob", file = "../secret.bin" }\n')
    r = run_scons(f"board={folder / 'b.toml'}", "sandbox=yes", "build_dir=out", cwd=tmp_path)
    lines = assert_refused(r, tmp_path / "out")
    assert any("mfg_nvs.namespaces.acme.x.file" in line and "resolves outside" in line for line in lines), lines


def test_inspect_extract_and_rebuild_keep_own_namespaces(tmp_path, capsys):
    write(tmp_path / "acme.toml", _vendor_board(tmp_path))
    r = run_scons(f"board={tmp_path / 'acme.toml'}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    image = tmp_path / "out/acme/customized_partitions/mfg_nvs.bin"
    code, out, err = run_cli(capsys, "inspect", str(image))
    assert code == 0, err
    assert "namespace acme:\n  serial (string) = 'SN-000001'\n  hw_rev (u8) = 3\n  offset (i16) = -300\n" in out
    assert "  calibration (blob, 1300 bytes)" in out
    code, out, err = run_cli(capsys, "extract", str(tmp_path / "out/acme"), "-o", str(tmp_path / "ex"))
    assert code == 0, err
    text = (tmp_path / "ex/ACME-1.toml").read_text()
    assert 'namespaces."acme"."uptime" = { type = "u64", value = 18446744073709551615 }' in text
    assert (tmp_path / "ex/ACME-1/mfg_nvs/namespaces/acme/calibration.bin").read_bytes() == \
        (tmp_path / "cal.bin").read_bytes()
    r = run_scons(f"board={tmp_path / 'ex/ACME-1.toml'}", "build_dir=again", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "again/ACME-1/customized_partitions/mfg_nvs.bin").read_bytes() == image.read_bytes()


def test_extract_refuses_a_key_name_that_is_no_file_name(tmp_path, capsys):
    """An image made elsewhere may name a key '../x': it never becomes a path."""
    board = board_from_text(tmp_path, _vendor_board(tmp_path, '[mfg_nvs.namespaces.acme]\nx = "1"\n'))
    items = [(ns, list(i)) for ns, i in nvs.decode_nvs(rendered(board)).namespace_items()]
    items[-1] = ("acme", [("../../evil", "blob", b"x")])
    size = board.partition("mfg_nvs").size
    (tmp_path / "mfg_nvs.bin").write_bytes(nvs.encode_nvs(items, size, "B"))
    code, out, err = run_cli(capsys, "inspect", str(tmp_path / "mfg_nvs.bin"))
    assert code == 0 and "  ../../evil (blob, 1 bytes)" in out
    fmt = MfgNvsFormat()
    raw = (tmp_path / "mfg_nvs.bin").read_bytes()
    with pytest.raises(ExtractError, match="namespace acme: the key '../../evil' is not a name"):
        fmt.extract_tables("mfg_nvs", fmt.decode(raw), raw, str(tmp_path / "src"), [])
    assert not (tmp_path / "src").exists() and not (tmp_path / "evil").exists()


def test_devices_set_own_keys_per_device(tmp_path):
    write(tmp_path / "acme.toml", _vendor_board(tmp_path))
    (tmp_path / "a.bin").write_bytes(b"CAL-A")
    (tmp_path / "b.bin").write_bytes(b"CAL-B")
    write(tmp_path / "devices.csv", "device_id,mfg_nvs.acme.serial,mfg_nvs.acme.calibration,mfg_nvs.acme.hw_rev\n"
                                    "D1,SN-1,a.bin,\nD2,SN-2,b.bin,7\n")
    r = run_scons(f"board={tmp_path / 'acme.toml'}", "devices=devices.csv", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for device, serial, cal, rev in (("D1", "SN-1", b"CAL-A", 3), ("D2", "SN-2", b"CAL-B", 7)):
        image = nvs.decode_nvs((tmp_path / f"out/acme/devices/{device}/customized_partitions/mfg_nvs.bin").read_bytes())
        items = {(i.namespace, i.key): i.value for i in image.items}
        assert items[("acme", "serial")] == serial and items[("acme", "calibration")] == cal
        assert items[("acme", "hw_rev")] == rev and items[("acme", "salt")] == b"\x00\x11\x22\xff"


def test_devices_factory_param_columns_alone_remake_mfg_nvs(tmp_path):
    write(tmp_path / "devices.csv", "device_id,uart_baudrate\nD1,921600\nD2,\n")
    r = run_scons("board=WROOM-32-V5", "devices=devices.csv", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    image = nvs.decode_nvs((tmp_path / "out/WROOM-32-V5/devices/D1/customized_partitions/mfg_nvs.bin").read_bytes())
    assert {(i.namespace, i.key): i.value for i in image.items}[("factory_param", "uart_baudrate")] == 921600


@pytest.mark.parametrize("header, row, words", [
    ("mfg_nvs.acme.hw_rev", "300", "line 2, mfg_nvs.acme.hw_rev = \"300\": out of range for u8; accepted: 0 to 255"),
    ("mfg_nvs.acme.hw_rev", "three", "line 2, mfg_nvs.acme.hw_rev = \"three\": expected an integer for u8"),
    ("mfg_nvs.acme.calibration", "missing.bin", "line 2, mfg_nvs.acme.calibration = "),
    ("mfg_nvs.acme.nope", "1", "line 1, column 'mfg_nvs.acme.nope': unknown column; accepted: device_id"),
])
def test_bad_device_cells_for_own_keys(tmp_path, header, row, words):
    write(tmp_path / "acme.toml", _vendor_board(tmp_path))
    write(tmp_path / "devices.csv", f"device_id,{header}\nD1,{row}\n")
    r = run_scons(f"board={tmp_path / 'acme.toml'}", "devices=devices.csv", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2 and words in r.stderr, r.stderr
    assert not (tmp_path / "out/acme/devices").exists()


def test_verify_checks_certificate_pairs_and_dates_inside_mfg_nvs(tmp_path, capsys):
    """verify's own checks (keys belong to their certificates, certificates in date) read the
    certificate namespaces of mfg_nvs as they read v2 certificate partitions."""
    assert run_scons("board=WROOM-32-V5", "build_dir=out", cwd=tmp_path).returncode == 0
    release = tmp_path / "out/WROOM-32-V5"
    image = release / "customized_partitions/mfg_nvs.bin"
    data = image.read_bytes()
    items = [(ns, list(i)) for ns, i in nvs.decode_nvs(data).namespace_items()]
    values = {ns: i for ns, i in items}
    swapped = [(ns, values["client_key"] if ns == "server_key" else i) for ns, i in items]
    swapped = [(ns, [("server_key", t, v) for _, t, v in i] if ns == "server_key" else i) for ns, i in swapped]
    image.write_bytes(nvs.encode_nvs(swapped, len(data), "B"))
    code, out, err = run_cli(capsys, "verify", str(release), "--board", "WROOM-32-V5")
    assert code == 1, out + err
    assert "server_key item 0 does not belong to server_cert item 0" in out
    from atfactory.formats.mfg_nvs import MfgNvsFormat
    certs = MfgNvsFormat().image_certificates("mfg_nvs", {}, data)
    assert {(c.use, c.role, c.id) for c in certs} >= {("server", "cert", 0), ("client", "cert", 0),
                                                     ("client", "key", 0), ("mqtt", "key", 0)}
