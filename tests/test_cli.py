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
    assert out.splitlines() == ["at_customize.partitions[factory_param].content.fields.uart_tx_pin: 17 -> 4",
                                "AT partition factory_param (0x30000-0x31000): 1 of 4096 bytes differ, the first at 0x30010"]
    code, out, _ = run_cli(capsys, "diff", str(built / "out/WROOM-32"), str(built / "out/ESP32S2-WROOM"))
    assert code == 1
    assert "at_customize.partitions[ble_data]: only in the first" in out


# --- diff: every byte counts ------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_images(registry, tmp_path_factory):
    """Two factory images of WROOM-32's layout whose applications differ in about 700 KB."""
    import random

    from atfactory.board import load_board
    from firmware_factory import make_factory_image, make_release

    board = load_board("WROOM-32", registry)
    root = tmp_path_factory.mktemp("two_images")
    rand = random.Random(11)
    made = []
    for name in ("a", "b"):
        payload = bytes(rand.randrange(256) for _ in range(700_000))
        made.append(make_factory_image(root / f"{name}.bin", make_release(root / f"release_{name}", board, payload), board))
    return made


def _differing(a: bytes, b: bytes, lo: int, hi: int):
    """(count, first offset) of differing bytes, the slow way."""
    offsets = [i for i in range(lo, hi) if a[i] != b[i]]
    return len(offsets), offsets[0]


def test_diff_counts_the_bytes_of_every_region(two_images, capsys, tmp_path):
    """Applications differing by 700 KB decode alike (the documents only describe the partition
    table and AT partitions): the bytes say where they differ, region by region."""
    a, b = (p.read_bytes() for p in two_images)
    changed = bytearray(b)
    changed[0x9001] ^= 0xFF          # otadata
    changed[0xC000] = 0x00           # free space between otadata and phy_init
    changed[0x1002] ^= 0x01          # the bootloader header's flash mode
    changed[0x3FFFFF] = 0x00         # free space at the end of flash
    (tmp_path / "b.bin").write_bytes(bytes(changed))
    code, out, _ = run_cli(capsys, "diff", str(two_images[0]), str(tmp_path / "b.bin"))
    app, app_first = _differing(a, changed, 0x100000, 0x200000)
    assert app > 600_000
    assert code == 1
    assert out.splitlines() == [
        "bootloader.flash.mode: 'dio' -> 'dout'",
        "flash.mode: 'dio' -> 'dout'",
        "bootloader (0x1000-0x8000): 1 of 28672 bytes differ, the first at 0x1002",
        "partition otadata (0x9000-0xb000): 1 of 8192 bytes differ, the first at 0x9001",
        "free space (0xb000-0xf000): 1 of 16384 bytes differ, the first at 0xc000",
        f"app factory (0x100000-0x200000): {app} of 1048576 bytes differ, the first at 0x{app_first:x}",
        "free space (0x200000-0x400000): 1 of 2097152 bytes differ, the first at 0x3fffff",
    ]
    code, out, _ = run_cli(capsys, "diff", str(two_images[0]), str(two_images[0]))
    assert (code, out) == (0, "no differences\n")


def test_diff_names_bytes_past_the_end_of_the_shorter(two_images, capsys, tmp_path):
    a = two_images[0].read_bytes()
    short = tmp_path / "short.bin"
    short.write_bytes(a[:0x300000])
    code, out, _ = run_cli(capsys, "diff", str(short), str(two_images[0]))
    assert code == 1
    assert out.splitlines() == ["size: 0x300000 -> 0x400000",
                                "image_end: only in the first",   # its header says 4MB: read with an erased tail
                                "past the end of the first (0x300000-0x400000): 1048576 bytes only in the second"]


def _with_at_partition(image: bytes, content: bytes) -> bytes:
    """The image with an at_customize.bin listing factory_param at 0x21000, holding ``content``."""
    from atfactory import partition_table as pt

    flash = bytearray(image)
    table = pt.encode_partition_table([pt.Entry("factory_param", 0x40, 0x08, 0x21000, 0x1000)])
    flash[0x20000:0x20000 + len(table)] = table
    flash[0x21000:0x21000 + len(content)] = content
    return bytes(flash)


def test_diff_tells_two_different_invalid_partitions_apart(two_images, capsys, tmp_path):
    """Both factory_param partitions fail on the same magic, so their documents say the same."""
    base = two_images[0].read_bytes()
    one, two = tmp_path / "one.bin", tmp_path / "two.bin"
    one.write_bytes(_with_at_partition(base, b"\x00\x00" + b"\x11" * 4094))
    two.write_bytes(_with_at_partition(base, b"\x00\x00" + b"\x11" * 100 + b"\x22" * 3994))
    code, out, _ = run_cli(capsys, "diff", str(one), str(two))
    assert code == 1
    assert out.splitlines() == ["AT partition factory_param (0x21000-0x22000): 3994 of 4096 bytes differ, "
                                "the first at 0x21066"]
    # The same two partitions as single files: decoded as invalid, compared byte by byte.
    for path, image in ((one, "one"), (two, "two")):
        (tmp_path / f"factory_param_{image}.bin").write_bytes(path.read_bytes()[0x21000:0x22000])
    code, out, err = run_cli(capsys, "diff", str(tmp_path / "factory_param_one.bin"), str(tmp_path / "factory_param_two.bin"))
    assert (code, err) == (1, "")
    assert out.splitlines() == ["factory_param (0x0-0x1000): 3994 of 4096 bytes differ, the first at 0x66"]
    code, out, _ = run_cli(capsys, "diff", str(tmp_path / "factory_param_one.bin"), str(tmp_path / "factory_param_one.bin"))
    assert (code, out) == (0, "no differences\n")


def test_diff_release_folders_byte_by_byte(registry, capsys, tmp_path):
    """Two release folders whose PHY init data differ in one byte and whose download.config is the same."""
    from atfactory.board import load_board
    from firmware_factory import make_release

    board = load_board("WROOM-32", registry)
    a, b = make_release(tmp_path / "a", board), make_release(tmp_path / "b", board)
    phy = bytearray((b / "phy_init_data.bin").read_bytes())
    phy[7] ^= 0x40
    (b / "phy_init_data.bin").write_bytes(bytes(phy))
    code, out, _ = run_cli(capsys, "diff", str(a), str(b))
    assert code == 1
    assert out.splitlines() == ["partition phy_init (0xf000-0x10000): 1 of 4096 bytes differ, the first at 0xf007"]
    code, out, _ = run_cli(capsys, "diff", str(a), str(a))
    assert (code, out) == (0, "no differences\n")


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
