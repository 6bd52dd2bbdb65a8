"""``atfactory flash``: what it would have esptool write (``--dry-run``, parsed by esptool's own
command-line parser), what it refuses before esptool runs, and how esptool's failures are reported.

No hardware here: the only esptool run opens a serial port that does not exist."""
from __future__ import annotations

import os
import shlex
import shutil

import pytest

from helpers import image_of, run_cli, tampered

PORT = "/dev/ttyUSB0"
AT_FILES = [(0x20000, "at_customize.bin")] + [(o, f"customized_partitions/{n}.bin") for o, n in [
    (0x21000, "ble_data"), (0x24000, "server_cert"), (0x26000, "server_key"), (0x28000, "server_ca"),
    (0x2A000, "client_cert"), (0x2C000, "client_key"), (0x2E000, "client_ca"), (0x30000, "factory_param"),
    (0x31000, "wpa2_cert"), (0x33000, "wpa2_key"), (0x35000, "wpa2_ca"), (0x37000, "mqtt_cert"),
    (0x39000, "mqtt_key"), (0x3B000, "mqtt_ca")]]
FIRMWARE_FILES = [(0x1000, "bootloader/bootloader.bin"), (0x8000, "partition_table/partition-table.bin"),
                  (0x9000, "ota_data_initial.bin"), (0xF000, "phy_init_data.bin"), (0x100000, "esp-at.bin")]


def dry_run(capsys, *argv):
    code, out, err = run_cli(capsys, "flash", *argv, "--dry-run")
    assert (code, err) == (0, ""), err
    assert out.endswith("\n") and out.count("\n") == 1
    return out[:-1]


def esptool_parse(argv):
    """esptool's own click parser over ``argv``: (global options, write-flash options), files read."""
    import esptool

    group = esptool.cli
    group._esp = None   # what EsptoolGroup.__call__ sets before parsing
    with group.make_context("esptool", list(argv)) as ctx:
        protected = vars(ctx).get("_protected_args")   # click 8.2+; before, the public protected_args
        name, command, rest = group.resolve_command(ctx, (ctx.protected_args if protected is None else protected) + ctx.args)
        with command.make_context(name, rest, parent=ctx) as sub:
            params = dict(sub.params)
            params["addr_filename"] = [(offset, f.name, f.read()) for offset, f in params["addr_filename"]]
            for f in getattr(sub, "_open_files", []) + getattr(ctx, "_open_files", []):
                f.close()
            return name, dict(ctx.params), params


def test_dry_run_of_a_release_folder(built, capsys):
    folder = built / "out/WROOM-32"
    line = dry_run(capsys, str(folder), "--port", PORT)
    files = " ".join(f"0x{o:x} {folder}/{rel}" for o, rel in AT_FILES)
    assert line == (f"esptool --chip esp32 --port {PORT} --baud 460800 write-flash --flash-mode dio --flash-freq 40m "
                    f"--flash-size 4MB {files}")
    name, options, params = esptool_parse(shlex.split(line)[1:])
    assert name == "write-flash"
    assert (options["chip"], options["port"], options["baud"]) == ("esp32", PORT, 460800)
    assert (params["flash_mode"], params["flash_freq"], params["flash_size"], params["erase_all"]) == \
        ("dio", "40m", "4MB", False)
    assert [(o, n, data) for o, n, data in params["addr_filename"]] == \
        [(o, str(folder / rel), (folder / rel).read_bytes()) for o, rel in AT_FILES]


def test_dry_run_with_firmware_erase_and_baud(built, capsys):
    """A release folder with firmware: every file of its download.config, in offset order."""
    folder = built / "img/ESP32C3-MINI-1"
    line = dry_run(capsys, str(folder), "--port", "COM3", "--baud", "921600", "--erase")
    words = shlex.split(line)
    assert words[:15] == ["esptool", "--chip", "esp32c3", "--port", "COM3", "--baud", "921600", "write-flash",
                          "--flash-mode", "dio", "--flash-freq", "40m", "--flash-size", "4MB", "--erase-all"]
    pairs = list(zip(words[15::2], words[16::2]))
    assert [int(o, 16) for o, _ in pairs] == sorted(int(o, 16) for o, _ in pairs)
    assert pairs[0] == ("0x0", f"{folder}/bootloader/bootloader.bin")   # the C3's bootloader is at 0
    assert ("0x1e000", f"{folder}/at_customize.bin") in pairs
    _, options, params = esptool_parse(words[1:])
    assert (options["chip"], options["baud"], params["erase_all"]) == ("esp32c3", 921600, True)
    assert len(params["addr_filename"]) == len(pairs)


def test_dry_run_of_a_factory_image(built, capsys):
    image = image_of(built, "WROOM-32")
    line = dry_run(capsys, str(image), "--port", PORT)
    assert line == (f"esptool --chip esp32 --port {PORT} --baud 460800 write-flash --flash-mode dio --flash-freq 40m "
                    f"--flash-size 4MB 0x0 {image}")
    _, _, params = esptool_parse(shlex.split(line)[1:])
    assert params["addr_filename"] == [(0, str(image), image.read_bytes())]
    image = image_of(built, "WROOM-02")
    assert dry_run(capsys, str(image), "--port", PORT) == (
        f"esptool --chip esp8266 --port {PORT} --baud 460800 write-flash --flash-mode dio --flash-freq 80m "
        f"--flash-size 2MB 0x0 {image}")


def test_an_esp8266_image_with_an_esp32_encoded_size_flashes_its_real_size(built, capsys, tmp_path):
    """Espressif's combine script writes ESP8266 sizes with the ESP32 table (2MB -> 0x1F): the
    read-back takes the size the image needs, and esptool writes that into the header."""
    path = tampered(built, tmp_path, 3, bytes([0x1F]), board_id="WROOM-02", name="published.bin")
    words = shlex.split(dry_run(capsys, str(path), "--port", PORT))
    assert words[words.index("--flash-size") + 1] == "2MB" and words[words.index("--flash-freq") + 1] == "80m"


@pytest.fixture(scope="module")
def batch(tmp_path_factory, registry):
    from atfactory.board import load_board
    from firmware_factory import make_release
    from helpers import run_scons

    root = tmp_path_factory.mktemp("flash_devices")
    release = make_release(root / "fw", load_board("WROOM-32", registry))
    (root / "devices.csv").write_text("device_id,uart_baudrate\nD1,921600\nD2,\n")
    r = run_scons("board=WROOM-32", "devices=devices.csv", f"firmware={release}", "build_dir=out", cwd=root)
    assert r.returncode == 0, r.stderr
    return root


def test_dry_run_of_a_device_folder(batch, capsys):
    """Its download.config names the shared files as ../../...: resolved inside the release folder."""
    release = batch / "out/WROOM-32"
    line = dry_run(capsys, str(release / "devices/D1"), "--port", PORT)
    pairs = dict(zip(shlex.split(line)[14::2], shlex.split(line)[15::2]))
    assert pairs["0x30000"] == f"{release}/devices/D1/customized_partitions/factory_param.bin"   # its own
    assert pairs["0x24000"] == f"{release}/customized_partitions/server_cert.bin"               # the board's
    assert pairs["0x1000"] == f"{release}/bootloader/bootloader.bin"
    assert len(pairs) == len(AT_FILES) + len(FIRMWARE_FILES)
    _, _, params = esptool_parse(shlex.split(line)[1:])
    fp = next(data for offset, _, data in params["addr_filename"] if offset == 0x30000)
    assert fp == (release / "devices/D1/customized_partitions/factory_param.bin").read_bytes()


@pytest.fixture
def no_esptool(monkeypatch):
    """esptool must not run: every refusal comes before it."""
    import esptool

    def called(argv):
        raise AssertionError(f"esptool ran with {argv}")
    monkeypatch.setattr(esptool, "main", called)


def refused(capsys, *argv) -> str:
    code, out, err = run_cli(capsys, "flash", *argv)
    assert (code, out) == (2, ""), out + err
    assert err.startswith("atfactory: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err[len("atfactory: error: "):-1]


def _copy(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _edit_config(folder, *replacements):
    """``folder``'s download.config with each (old, new) replaced in it."""
    text = (folder / "download.config").read_text()
    for old, new in replacements:
        text = text.replace(old, new)
    (folder / "download.config").write_text(text)
    return folder


def test_refused_before_esptool_runs(built, batch, capsys, tmp_path, no_esptool):
    folder = _copy(built / "out/WROOM-32", tmp_path / "rel")
    (folder / "customized_partitions/ble_data.bin").unlink()
    assert refused(capsys, str(folder), "--port", PORT) == \
        f"{folder}: download.config names files that are not in the folder: customized_partitions/ble_data.bin"

    folder = _copy(built / "out/WROOM-32", tmp_path / "linked")
    (tmp_path / "elsewhere.bin").write_bytes(b"\0" * 16)
    (folder / "customized_partitions/ble_data.bin").unlink()
    os.symlink(tmp_path / "elsewhere.bin", folder / "customized_partitions/ble_data.bin")
    assert refused(capsys, str(folder), "--port", PORT) == (
        f"{folder}: download.config: 'customized_partitions/ble_data.bin' resolves outside the release folder; "
        "accepted: files inside it, symbolic links included only when they point inside it")

    device = _edit_config(_copy(batch / "out/WROOM-32", tmp_path / "batch") / "devices/D1",
                          ("../../esp-at.bin", "../../../esp-at.bin"))
    assert refused(capsys, str(device), "--port", PORT) == (
        f"{device}: download.config: the entry at 0x100000 names '../../../esp-at.bin', which leads out of the "
        "release folder; accepted: a path relative to the release folder, '/'-separated, without '..' but to the "
        "shared files of a device's release folder")

    folder = _edit_config(_copy(built / "out/WROOM-32", tmp_path / "size"), ("--flash_size 4MB", "--flash_size 3MB"))
    assert refused(capsys, str(folder), "--port", PORT) == (
        f"{folder / 'download.config'}: flash_size '3MB' is no ESP32 setting; accepted: 1MB, 2MB, 4MB, 8MB, 16MB, "
        "32MB, 64MB, 128MB")
    _edit_config(folder, ("--flash_size 3MB", "--flash_size 1MB"), ("0x3b000 ", "0x100000 "))
    assert refused(capsys, str(folder), "--port", PORT) == (
        f"{folder / 'download.config'}: 0x100000 customized_partitions/mqtt_ca.bin ends at 0x10050c, past the 1MB "
        "flash (--flash_size 1MB); accepted: files that fit the flash")

    folder = _copy(built / "out/WROOM-32", tmp_path / "nochip")
    (folder / "manifest.json").unlink()
    assert refused(capsys, str(folder), "--port", PORT).startswith(f"{folder}: cannot tell the chip: no bootloader")


def test_refused_images(built, capsys, tmp_path, no_esptool):
    single = built / "out/WROOM-32/customized_partitions/factory_param.bin"
    assert refused(capsys, str(single), "--port", PORT) == (
        f"{single}: not a factory image (no partition table at 0x8000 or the chip's offset); accepted: a factory "
        "image, or a release folder with its download.config")
    unknown = tampered(built, tmp_path, 0x1000 + 12, bytes([9]))
    assert refused(capsys, str(unknown), "--port", PORT).startswith(
        f"{unknown}: its bootloader is for a chip atfactory does not know (image chip id 0x9); accepted: an image for ESP32,")
    long = tmp_path / "long.bin"
    long.write_bytes(image_of(built, "WROOM-32").read_bytes() + b"\xff" * 4096)
    assert refused(capsys, str(long), "--port", PORT) == (
        f"{long}: 4198400 bytes, larger than the 4MB flash its bootloader header gives; accepted: an image no "
        "larger than its flash")
    assert refused(capsys, str(tmp_path / "nope.bin"), "--port", PORT) == \
        f"{tmp_path / 'nope.bin'}: cannot be read: no such file"


@pytest.mark.parametrize("argv, words", [
    (["x.bin"], "the following arguments are required: --port"),
    (["x.bin", "--port", PORT, "--baud", "fast"], "argument --baud: 'fast': expected a positive integer such as 115200 or 460800"),
    (["x.bin", "--port", "  "], "--port '': expected a serial port such as /dev/ttyUSB0 or COM3"),
])
def test_bad_options(capsys, argv, words, no_esptool):
    from atfactory.cli import main

    try:
        code = main(["flash", *argv])
    except SystemExit as exc:   # a usage error: argparse's usage line and one error line
        code = exc.code
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert err.splitlines()[-1] == f"atfactory: error: {words}"


def test_flash_runs_esptool_with_the_dry_run_arguments(built, capsys, monkeypatch):
    import esptool

    folder = built / "out/WROOM-32"
    line = dry_run(capsys, str(folder), "--port", PORT, "--erase")
    seen = []
    monkeypatch.setattr(esptool, "main", lambda argv: seen.append(argv))
    code, out, err = run_cli(capsys, "flash", str(folder), "--port", PORT, "--erase")
    assert (code, out, err) == (0, "", "")
    assert seen == [shlex.split(line)[1:]]

    def fails(argv):
        raise esptool.FatalError("Failed to connect to ESP32: No serial data received.\nFor troubleshooting steps ...")
    monkeypatch.setattr(esptool, "main", fails)
    assert refused(capsys, str(folder), "--port", PORT) == \
        "esptool: Failed to connect to ESP32: No serial data received."


def test_flash_to_a_port_that_does_not_exist(built, capsys, tmp_path):
    """esptool itself runs, fails to open the port, and that is one line with status 2."""
    port = str(tmp_path / "ttyNOPE")
    code, out, err = run_cli(capsys, "flash", str(image_of(built, "WROOM-32")), "--port", port)
    assert code == 2
    assert err == f"atfactory: error: esptool: Could not open {port}, the port is busy or doesn't exist.\n"


def test_a_device_folder_reads_back_like_a_release_folder(batch, capsys, monkeypatch):
    """inspect and verify read a device's folder as the flash its download.config describes."""
    monkeypatch.chdir(batch)
    code, out, _ = run_cli(capsys, "inspect", "out/WROOM-32/devices/D1")
    assert code == 0
    assert out.splitlines()[:2] == ["out/WROOM-32/devices/D1: release, 4194304 bytes", "chip: esp32"]
    assert "  file   0x30000  customized_partitions/factory_param.bin (4096 bytes)" in out.splitlines()
    shared = (batch / "out/WROOM-32/customized_partitions/server_cert.bin").stat().st_size
    assert f"  file   0x24000  ../../customized_partitions/server_cert.bin ({shared} bytes)" in out.splitlines()
    code, out, _ = run_cli(capsys, "verify", "out/WROOM-32/devices/D1", "--board", "WROOM-32", "--device", "devices.csv:D1")
    assert (code, out.splitlines()[-1]) == (0, "result: matches the board")
    code, out, _ = run_cli(capsys, "verify", "out/WROOM-32/devices/D1", "--board", "WROOM-32")
    assert code == 1 and "factory_param.uart_baudrate is 921600, the board says 115200" in out


def test_a_release_folder_cannot_name_files_above_it(built, capsys, tmp_path, no_esptool):
    """Only a device's folder may name ../../ files, and only those of its own release folder."""
    folder = _edit_config(_copy(built / "out/WROOM-32", tmp_path / "rel"), ("at_customize.bin", "../at_customize.bin"))
    assert refused(capsys, str(folder), "--port", PORT) == (
        f"{folder}: download.config: the entry at 0x20000 names '../at_customize.bin', which leads out of the "
        "release folder; accepted: a path relative to the release folder, '/'-separated, without '..'")
