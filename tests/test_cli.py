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
