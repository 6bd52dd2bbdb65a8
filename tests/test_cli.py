"""The command line (atfactory.cli): diff, errors and their exit codes, the console script and ``-m``.

What inspect, verify and extract find is tested in test_readback.py, test_verify.py,
test_extract.py and test_mapping.py; here is what the command line itself adds.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import image_of, run_cli, tampered


def test_diff(built, capsys, tmp_path):
    a = image_of(built, "WROOM-32")
    code, out, _ = run_cli(capsys, "diff", str(a), str(a))
    assert (code, out.strip()) == (0, "no differences")
    b = tampered(built, tmp_path, 0x30000 + 16, bytes([4]))
    code, out, _ = run_cli(capsys, "diff", str(a), str(b))
    assert code == 1
    assert out.splitlines() == ["at_customize.partitions[factory_param].content.fields.uart_tx_pin: 17 -> 4"]
    code, out, _ = run_cli(capsys, "diff", str(built / "out/WROOM-32"), str(built / "out/ESP32S2-WROOM"))
    assert code == 1
    assert "at_customize.partitions[ble_data]: only in the first" in out


@pytest.mark.parametrize("argv, expected", [
    (["inspect", "/nonexistent/x.bin"], "atfactory: error: /nonexistent/x.bin: cannot be read"),
    (["verify", "x.bin"], "atfactory: error: verify needs --board ID|FILE, --pubkey KEY, or both"),
    (["verify", "x.bin", "--board", "NOPE"], 'atfactory: error: board = "NOPE": no board with this id'),
])
def test_cli_errors(capsys, argv, expected):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert expected in err
    assert "Traceback" not in err


def test_console_script_and_module(built, tmp_path):
    bindir = Path(sys.executable).parent
    for argv in ([str(bindir / "atfactory")], [sys.executable, "-m", "atfactory"]):
        r = subprocess.run(argv + ["inspect", str(built / "out/WROOM-32/customized_partitions/factory_param.bin")],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "module_name = 'WROOM-32'" in r.stdout


@pytest.mark.parametrize("make, reason", [
    (lambda p: "/dev/zero", "/dev/zero: cannot be read: is not a regular file (a device, FIFO or socket)"),
    (lambda p: (__import__("os").mkfifo(p / "fifo"), str(p / "fifo"))[1], "fifo: cannot be read: is not a regular file"),
    (lambda p: str(p), "no download.config; an ESP-AT release folder has one"),
])
def test_read_back_refuses_what_is_no_file_without_waiting(capsys, tmp_path, make, reason):
    """A FIFO waits for a writer and /dev/zero never ends: both are refused before they are read."""
    code, _out, err = run_cli(capsys, "inspect", make(tmp_path))
    assert code == 2
    assert reason in err
    assert len(err.strip().splitlines()) == 1


def test_a_plugin_failing_during_verify_is_bad_input_not_differs(capsys, tmp_path, built, monkeypatch):
    """Exit 1 means "differs": a plugin's error is reported in one line with status 2."""
    import os

    from atfactory.formats.plugin import PluginFormat
    from helpers import write

    write(tmp_path / "p/flaky.py", """
        import os
        from atfactory import hookimpl

        def build(board, inputs):
            if os.environ.get("FLAKY_NOW"):
                raise ValueError("boom")
            return b"ok"

        @hookimpl
        def atfactory_register_partitions(board, registry):
            registry.add("flaky", subtype=0x70, size="4K", build=build)
    """)
    # The build works while the board is prepared and fails when verify makes the partition again.
    monkeypatch.setenv("FLAKY_NOW", "")
    original = PluginFormat.render

    def failing_render(self, spec, sources):
        os.environ["FLAKY_NOW"] = "1"
        return original(self, spec, sources)

    monkeypatch.setattr(PluginFormat, "render", failing_render)
    code, out, err = run_cli(capsys, "verify", str(image_of(built, "WROOM-32")), "--board", "WROOM-32",
                             "--plugins", str(tmp_path / "p"))
    assert code == 2, out + err
    assert err == "atfactory: error: plugin flaky: partition flaky: build raised ValueError: boom\n"


def test_a_bug_exits_2_with_one_line(capsys, monkeypatch):
    import atfactory.readback as readback

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(readback, "read_path", broken)
    code, out, err = run_cli(capsys, "inspect", "x.bin")
    assert code == 2
    assert err.startswith("atfactory: error: internal error: RuntimeError: something nobody expected (at ")
    assert "this is a bug in atfactory or a plugin" in err
    assert len(err.strip().splitlines()) == 1
