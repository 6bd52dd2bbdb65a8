"""Typos get "did you mean X?" appended to the one-line message that lists what is accepted:
board ids (board=, extends, verify --board), board-file keys, devices CSV columns, SCons variables."""
from __future__ import annotations

import pytest

from atfactory.errors import did_you_mean
from helpers import NO_VALUE, assert_refused, extending, only_problem, problem_lines, run_cli, run_scons, write


@pytest.mark.parametrize("word, choices, hint", [
    ("WROM-32", ["WROOM-32", "WROVER-32", "SOLO-1"], "; did you mean WROOM-32?"),
    ("WROOM-32", ["WROOM-32", "WROVER-32"], ""),          # a choice itself: no typo to point at
    ("Uart_tx_pin", ["uart_tx_pin"], "; did you mean uart_tx_pin?"),   # keys are case-sensitive
    ("uart_tx_pni", ["uart_tx_pin", "uart_rx_pin"], "; did you mean uart_tx_pin?"),
    ("bord", ["board", "build_dir"], "; did you mean board?"),
    ("zzzz", ["board", "build_dir"], ""),                  # nothing close: nothing said
    ("", ["board"], ""),
])
def test_did_you_mean(word, choices, hint):
    assert did_you_mean(word, choices) == hint


def test_a_misspelt_table_and_key(tmp_path):
    only_problem(tmp_path, extending('[factory_parm]\nuart_tx_pin = 5\n'), "factory_parm", NO_VALUE,
                 "unknown key; accepted here: extends, module, flash, factory_param,",
                 "; did you mean factory_param?")
    p = only_problem(tmp_path, extending('[factory_param]\nuart_tx_pni = 5\n'), "factory_param.uart_tx_pni", NO_VALUE)
    assert str(p).endswith("rx_control_pin, sys_store; did you mean uart_tx_pin?")
    p = only_problem(tmp_path, extending('[[at_customize.partitions]]\nname = "server_cert"\nsorce = "x.crt"\n'),
                     "at_customize.partitions[server_cert].sorce", NO_VALUE)
    assert str(p).endswith("; did you mean source?")


def test_a_key_nothing_resembles_gets_no_guess(tmp_path):
    p = only_problem(tmp_path, extending('[factory_param]\nqqqqqqqq = 5\n'), "factory_param.qqqqqqqq", NO_VALUE)
    assert "did you mean" not in str(p)


def test_a_misspelt_base_board(tmp_path):
    p = only_problem(tmp_path, 'extends = "WROM-32"\n', "extends", "WROM-32", "no board with this id")
    assert str(p).endswith("or a .toml path relative to this file; did you mean WROOM-32?")


def test_scons_typos(tmp_path):
    out = tmp_path / "out"
    r = run_scons("board=WROM-32", "build_dir=out", cwd=tmp_path)
    (line,) = assert_refused(r, out)
    assert line.startswith('scons: *** board = "WROM-32": no board with this id and no such .toml file; accepted: a '
                           "board id (ESP32-D2WD, ")   # the example ACME board loads only where asked for
    assert line.endswith("'all', or the path of a .toml file; did you mean WROOM-32?  Stop.")
    r = run_scons("bord=WROOM-32", "build_dir=out", cwd=tmp_path)
    (line,) = assert_refused(r, out)
    assert line.endswith("(see scons -h); did you mean board?  Stop.")
    r = run_scons("bord=WROOM-32", "devcies=x.csv", "build_dir=out", cwd=tmp_path)
    (line,) = assert_refused(r, out)
    assert line.endswith("(see scons -h); bord=: did you mean board?; devcies=: did you mean devices?  Stop.")
    write(tmp_path / "b.toml", extending('[factory_param]\nuart_tx_pni = 5\n'))
    r = run_scons("board=b.toml", "build_dir=out", cwd=tmp_path)
    (line,) = assert_refused(r, out)
    assert line.startswith(f"scons: *** {tmp_path / 'b.toml'}: factory_param.uart_tx_pni: unknown key") \
        and line.endswith("; did you mean uart_tx_pin?  Stop.")


def test_a_misspelt_devices_column(tmp_path):
    (tmp_path / "devices.csv").write_text("device_id,uart_baudrat\nA,921600\n")
    r = run_scons("board=WROOM-32", "devices=devices.csv", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2
    (line,) = problem_lines(r.stderr)
    assert "devices.csv: line 1, column 'uart_baudrat': unknown column; accepted: device_id, " in line
    assert line.endswith(", mqtt_ca; did you mean uart_baudrate?  Stop.")   # no plugin table: no vendor.<key>


def test_verify_board_typo(capsys, tmp_path):
    code, out, err = run_cli(capsys, "verify", str(tmp_path), "--board", "ESP32C3-MINI1")
    assert (code, out) == (2, "")
    assert err.startswith('atfactory: error: board = "ESP32C3-MINI1": no board with this id')
    assert err.endswith("; did you mean ESP32C3-MINI-1?\n") and err.count("\n") == 1
