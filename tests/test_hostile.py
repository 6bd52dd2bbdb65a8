"""Hostile and careless inputs: every one gets one line naming where and what, exit 2, no
traceback, nothing written (issue 12's classes; path escapes of release folders and extract are
in test_release.py and test_extract.py)."""
from __future__ import annotations

import os

import pytest

from helpers import problem_lines, run_scons, write


def _refused(r, tmp_path):
    assert r.returncode == 2, r.stdout
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = problem_lines(r.stderr)
    assert lines, r.stderr
    return lines


@pytest.mark.parametrize("body, words", [
    ("[factory_param]\nuart_tx_pin = " + "9" * 5000 + "\n",
     "TOML value cannot be read (Exceeds the limit (4300 digits) for integer string conversion"),
    ("x = " + "[" * 3000 + "]" * 3000 + "\n", "TOML nested too deeply to read"),
])
def test_board_files_that_crash_a_toml_reader(tmp_path, body, words):
    board = write(tmp_path / "b.toml", 'extends = "WROOM-32"\n' + body)
    lines = _refused(run_scons(f"board={board}", "build_dir=out", cwd=tmp_path), tmp_path)
    assert any(f"{board}: {words}" in line for line in lines), lines
    assert not (tmp_path / "out/b").exists()


@pytest.mark.parametrize("body, shown", [
    ('[factory_param]\ncountry_code = "CN\\n"\n', 'factory_param.country_code = "CN\\n": accepted: 1 to 3'),
    ('[module]\nname = "A\\u001b[31mRED"\n', 'module.name = "A\\u001B[31mRED"'),
    ('[[at_customize.partitions]]\nname = "client_ca"\nsource = "a\\u0000b"\n', '\\u0000'),
    ('[factory_param]\nuart_tx_pin = ' + "1" * 700 + "\n", "uart_tx_pin = an integer of about 699 digits"),
])
def test_values_in_messages_stay_one_line_without_control_characters(tmp_path, body, shown):
    board = write(tmp_path / "b.toml", 'extends = "WROOM-32"\n' + body)
    r = run_scons(f"board={board}", "build_dir=out", cwd=tmp_path)
    lines = _refused(r, tmp_path)
    assert any(shown in line for line in lines), lines
    assert "\x1b" not in r.stderr and "\x00" not in r.stderr


def test_anchored_patterns_take_no_trailing_newline(tmp_path):
    """'$' matches before a final newline; a country code "CN\\n" would have gone into the bytes."""
    board = write(tmp_path / "b.toml", 'extends = "WROOM-32-V5"\n[mfg_nvs.namespaces.acme]\n'
                                       '"key\\n" = "1"\n')
    lines = _refused(run_scons(f"board={board}", "build_dir=out", cwd=tmp_path), tmp_path)
    assert any("mfg_nvs.namespaces.acme.key\\n: the key 'key\\n' is not a name NVS" in line for line in lines), lines


def _devices(tmp_path, data: bytes, name="devices.csv"):
    path = tmp_path / name
    path.write_bytes(data)
    return run_scons("board=WROOM-32", f"devices={name}", "build_dir=out", cwd=tmp_path)


@pytest.mark.parametrize("data, words", [
    (b"device_id,uart_baudrate\nD1,115200\nD2,\xff\xfe\n", "devices.csv: line 3: not UTF-8 (byte 0xff at column 4)"),
    (b"device_id,uart_baudrate\nD1," + b"1" * 140000 + b"\n",
     "devices.csv: line 2: not a CSV record (field larger than field limit"),
    (b"\xef\xbb\xbfdevice_id,uart_baudrate\nD1,12\x00\n",
     'devices.csv: line 2, factory_param.uart_baudrate = "12\\u0000": expected an integer'),
])
def test_devices_csvs_that_crash_a_csv_reader(tmp_path, data, words):
    r = _devices(tmp_path, data)
    lines = _refused(r, tmp_path)
    assert any(words in line for line in lines), lines
    assert not (tmp_path / "out/WROOM-32/devices").exists()


def test_devices_naming_a_folder_or_a_fifo(tmp_path):
    (tmp_path / "folder").mkdir()
    r = run_scons("board=WROOM-32", "devices=folder", "build_dir=out", cwd=tmp_path)
    assert any('devices = "' in line and "is a folder; expected a CSV file" in line for line in _refused(r, tmp_path))
    os.mkfifo(tmp_path / "fifo")
    r = run_scons("board=WROOM-32", "devices=fifo", "build_dir=out", cwd=tmp_path)
    assert any("is not a regular file (a device, FIFO or socket); expected a CSV file" in line
               for line in _refused(r, tmp_path))


def test_a_second_build_on_the_same_build_dir_is_refused_while_the_first_runs(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    (tmp_path / "out/.atfactory").mkdir(parents=True)
    with open(tmp_path / "out/.atfactory/build.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)   # as a running build holds it
        r = run_scons("board=WROOM-32", "build_dir=out", cwd=tmp_path)
        lines = _refused(r, tmp_path)
        assert any("is in use by another atfactory build" in line for line in lines), lines
        assert not (tmp_path / "out/WROOM-32").exists()
    assert run_scons("board=WROOM-32", "build_dir=out", cwd=tmp_path).returncode == 0   # released: builds


def _flipped_certificates():
    """The project's client certificate (DER) with one bit flipped at every byte."""
    import base64

    from helpers import CERTS

    lines = (CERTS / "client.crt").read_bytes().splitlines()
    der = base64.b64decode(b"".join(lines[1:-1]))
    for i in range(len(der)):
        yield i, der[:i] + bytes([der[i] ^ 0x01]) + der[i + 1:]


def test_no_one_bit_change_of_a_certificate_makes_a_traceback():
    """cryptography parses lazily: fields that fail when first read were tracebacks in every verb."""
    from atfactory.errors import ContentError
    from atfactory.formats.pki import describe_certificate
    from atfactory.pki import load_certificates

    failed = 0
    for i, der in _flipped_certificates():
        doc = describe_certificate(der)   # never raises
        assert "certificate" in doc or "error" in doc or "key" in doc, (i, doc)
        try:
            load_certificates(der)
        except ContentError:
            failed += 1
    assert failed > 20   # many flips break it, and each is a ContentError


def test_a_certificate_with_a_damaged_field_is_one_line_in_the_build(tmp_path):
    der = dict(_flipped_certificates())[61]   # parses, but its issuer does not
    (tmp_path / "bad.der").write_bytes(der)
    board = write(tmp_path / "b.toml", 'extends = "WROOM-32"\n[[at_customize.partitions]]\nname = "client_ca"\n'
                                       'source = ["bad.der"]\n')
    lines = _refused(run_scons(f"board={board}", "build_dir=out", cwd=tmp_path), tmp_path)
    assert any("client_ca" in line and "parses but a field of it does not" in line for line in lines), lines


def test_control_characters_from_an_image_never_reach_the_terminal(tmp_path, capsys):
    from atfactory import nvs
    from helpers import run_cli

    items = [("factory_param", [("module_name", "string", "EVIL\x1b]0;pwned\x07\r")]),
             ("acme", [("note", "string", "\x1b[2Jcleared"), ("k\x1b", "u8", 1)])]
    (tmp_path / "mfg_nvs.bin").write_bytes(nvs.encode_nvs(items, 0x3000, "B"))
    code, out, err = run_cli(capsys, "inspect", str(tmp_path / "mfg_nvs.bin"))
    assert code == 0, err
    assert "\x1b" not in out + err and "\r" not in out and "\x07" not in out
    assert "\\x1b[2Jcleared" in out and "k\\u001B (u8) = 1" in out


@pytest.mark.parametrize("config, words", [
    ("--flash_mode dio --flash_freq 40m --flash_size 4MB 0xFFFFFFFFFF big.bin\n", "offset 0xFFFFFFFFFF of 'big.bin' is beyond any flash"),
    ("--flash_mode dio --flash_freq 40m --flash_size 4MB -0x10 neg.bin\n", "offset -0x10 of 'neg.bin' is beyond any flash"),
])
def test_download_config_offsets_beyond_any_flash(tmp_path, capsys, config, words):
    from helpers import run_cli

    (tmp_path / "rel").mkdir()
    (tmp_path / "rel/download.config").write_text(config)
    (tmp_path / "rel" / config.split()[-1]).write_bytes(b"\xff" * 16)
    code, out, err = run_cli(capsys, "inspect", str(tmp_path / "rel"))
    assert code == 2 and words in err and "Traceback" not in err, err


def test_a_build_dir_that_cannot_be_a_folder(tmp_path):
    (tmp_path / "taken").write_text("a file")
    lines = _refused(run_scons("board=WROOM-32", "build_dir=taken", cwd=tmp_path), tmp_path)
    assert any("build_dir taken: cannot be made or written (Not a directory)" in line for line in lines), lines
    assert (tmp_path / "taken").read_text() == "a file"


def test_extract_to_a_place_that_cannot_be_written(tmp_path, capsys):
    from helpers import run_cli

    assert run_scons("board=WROOM-32", "build_dir=out", cwd=tmp_path).returncode == 0
    code, out, err = run_cli(capsys, "extract", str(tmp_path / "out/WROOM-32"), "-o", "/proc/atfactory-x")
    assert code == 2 and "internal error" not in err and "nothing was left half-written" in err, err


def test_an_input_changed_between_check_and_build_is_not_built(tmp_path):
    """The check reads a source in scons's first phase; the action reads it again later. A
    source rewritten in between (another process, a plugin) is refused, not built unchecked."""
    import json
    import sys

    from helpers import REPO

    sys.path.insert(0, str(REPO / "site_scons/atfactory/site_tools"))
    import SCons.Errors
    import atfactory_build as tool
    from atfactory import artifacts as art
    from atfactory.stamps import stamp_of

    source = tmp_path / "userdata.bin"
    source.write_bytes(b"checked")

    class Node:
        def __init__(self, path, text=None):
            self.abspath, self._text = str(path), text

        def read(self):
            return self._text

    artifact = art.Artifact(("customized_partitions/userdata.bin",), "raw", {"size": 4096}, (str(source),))
    target = Node(tmp_path / "out/customized_partitions/userdata.bin")
    tool._ACTIONS["stamps"][target.abspath] = {str(source): stamp_of(str(source))}
    value = Node(None, json.dumps({"kind": artifact.kind, "spec": artifact.spec, "secret": False}))
    source.write_bytes(b"swapped after the check, and longer")
    with pytest.raises(SCons.Errors.BuildError) as err:
        tool.build_artifact([target], [value, Node(source)], None)
    assert "changed after the board was checked; nothing was written from it" in str(err.value.errstr)
    assert not os.path.exists(target.abspath)


@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", "A\\\\B"])
def test_a_module_name_never_becomes_a_path(tmp_path, name):
    board = write(tmp_path / "b.toml", f'extends = "WROOM-32"\n[module]\nname = "{name}"\n')
    r = run_scons(f"board={board}", "build_dir=out", cwd=tmp_path)
    lines = _refused(r, tmp_path)
    assert any("module.name = " in line and "names the release's factory_param_<name>.bin" in line
               for line in lines), lines
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.bin").exists()


def test_no_output_path_leaves_the_release_folder_whatever_names_it():
    """The last guard: plan_board refuses any target a format (or a plugin's) would put outside."""
    from atfactory import artifacts as art
    from atfactory.board import load_board
    from atfactory.errors import AtFactoryError
    from atfactory.formats import stock_registry
    from atfactory.formats.factory_param import FactoryParamFormat
    from helpers import stock_registry as boards

    class Escaping(FactoryParamFormat):
        def extra_targets(self, partition_name, module_name):
            return ("../../escape",)

    registry = stock_registry()
    formats = type(registry)()
    for fmt in registry:
        formats.add(Escaping() if fmt.kind == "factory_param" else fmt, "test")
    board = load_board("WROOM-32", boards())
    with pytest.raises(AtFactoryError, match=r"the output 'customized_partitions/../../escape.bin' has an empty, "
                                             r"'.' or '..' component"):
        art.plan_board(board, None, formats)


def test_device_ids_that_differ_only_in_case_are_one_folder_somewhere(tmp_path):
    write(tmp_path / "devices.csv", "device_id,uart_baudrate\nDev-1,115200\ndev-1,57600\n")
    r = run_scons("board=WROOM-32", "devices=devices.csv", "build_dir=out", cwd=tmp_path)
    lines = _refused(r, tmp_path)
    assert any("line 3, device_id = \"dev-1\": differs only in case from 'Dev-1' on line 2" in line
               for line in lines), lines
    assert not (tmp_path / "out/WROOM-32/devices").exists()


# --- a bounded fuzz run: mutated images through every read-back verb ----------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 0x40000 - 1), st.integers(0, 255)), min_size=1, max_size=12),
       cut=st.one_of(st.none(), st.integers(0x1000, 0x400000)))
def test_mutated_images_never_crash_a_verb(built, capsys, tmp_path, edits, cut):
    """Bytes changed where the bootloader, the tables and the AT partitions are, the image cut
    anywhere: every verb answers with 0, 1 or 2 and one-line messages, never a traceback."""
    from helpers import image_of, run_cli

    data = bytearray(image_of(built, "WROOM-32").read_bytes())
    for offset, value in edits:
        data[offset] = value
    path = tmp_path / "mutated.bin"
    path.write_bytes(bytes(data[:cut] if cut else data))
    original = str(image_of(built, "WROOM-32"))
    for argv in (["inspect", str(path)], ["inspect", str(path), "--json"], ["verify", str(path), "--board", "WROOM-32"],
                 ["diff", original, str(path)]):
        code, out, err = run_cli(capsys, *argv)
        assert code in (0, 1, 2), (argv, code)
        assert "internal error" not in err and "Traceback" not in err, (argv, err)
        assert "\x1b" not in out + err
