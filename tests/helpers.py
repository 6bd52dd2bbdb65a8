"""Helpers the test modules share: scons and board loading, board TOML, problem checks, refusals.

conftest.py holds the fixtures and imports what it needs from here; test modules import from here.
Importing this module first puts the worktree's site_scons on sys.path, so that ``atfactory``
is the one of this checkout, not an installed one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterable, List, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
if sys.path[:1] != [str(REPO / "site_scons")]:
    sys.path.insert(0, str(REPO / "site_scons"))

from atfactory.board import BoardRegistry, load_board  # noqa: E402
from atfactory.errors import BoardError, Problem, display_path, format_value  # noqa: E402

STOCK_DIR = REPO / "site_scons" / "atfactory" / "boards"   # the stock boards: package data
ACME = REPO / "examples" / "acme" / "plugins"   # the example vendor plugin: loaded only where a test asks for it
CERTS = STOCK_DIR / "data" / "certs"
BOARD_NAME = "test-board.toml"
GATT_COLUMNS = "index,uuid_len,uuid,perm,val_max_len,val_cur_len,value"
FP_REQUIRED = ("tx_max_power", "uart_port", "start_channel", "channel_num", "country_code", "uart_baudrate",
               "uart_tx_pin", "uart_rx_pin", "uart_cts_pin", "uart_rts_pin", "tx_control_pin", "rx_control_pin")


def reference_dir() -> Path:
    env = os.environ.get("ATFACTORY_REFERENCE")
    return Path(env) if env else REPO.parent / "shared" / "reference"


# --- files, scons and boards ----------------------------------------------------------------

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def run_scons(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run scons on this repository's SConstruct from ``cwd``, as a user in another folder would."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "SCons", "-C", str(REPO), "-Q", *args],
        cwd=str(cwd), env=full_env, capture_output=True, text=True, timeout=300,
    )


def stock_registry() -> BoardRegistry:
    """The registry of the stock boards alone, as a build without plugins sees it."""
    reg = BoardRegistry()
    reg.add_folder(str(STOCK_DIR), origin="boards/")
    return reg


def board_from_text(tmp_path: Path, text: str, name: str = BOARD_NAME, registry: BoardRegistry = None):
    """Write a board file into tmp_path and load it through the library."""
    path = write(tmp_path / name, text)
    return load_board(str(path), registry or stock_registry())


def board_from_bytes(tmp_path: Path, data: bytes, name: str = BOARD_NAME):
    """Write these bytes as a board file, as they are, and load it through the library."""
    path = tmp_path / name
    path.write_bytes(data)
    return load_board(str(path), stock_registry())


# --- board TOML -----------------------------------------------------------------------------

def toml_value(v) -> str:
    """A Python value as a TOML value: strings in JSON syntax (a TOML basic string, ASCII only)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=True)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {v!r}")


def to_toml(data: dict) -> str:
    """Board data as TOML: top-level values, then tables, partitions as [[at_customize.partitions]]."""
    lines = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, table in data.items():
        if not isinstance(table, dict):
            continue
        lines.append(f"\n[{name}]")
        parts = []
        for key, value in table.items():
            if (name, key) == ("at_customize", "partitions") and isinstance(value, list) and value \
                    and all(isinstance(p, dict) for p in value):
                parts = value
                continue
            lines.append(f"{key} = {toml_value(value)}")
        for part in parts:
            lines.append("\n[[at_customize.partitions]]")
            lines += [f"{k} = {toml_value(v)}" for k, v in part.items()]
    return "\n".join(lines) + "\n"


_PINS = {"esp32": (17, 16, 15, 14), "esp32c3": (7, 6, 5, 4), "esp32s2": (17, 21, 20, 19), "esp8266": (15, 13, 3, 1)}
_FLASH = {"esp32": ("dio", "40m", "4MB"), "esp32c3": ("dio", "40m", "4MB"),
          "esp32s2": ("qio", "80m", "4MB"), "esp8266": ("dio", "80m", "2MB")}
CHIPS = tuple(_PINS)
# ESP-S2 and ESP8266 have no ESP-AT 2.4, the default: their boards name a release (the stock boards')
AT_VERSION_OF = {"esp32s2": "2.2", "esp8266": "2.2"}


def minimal(chip: str = "esp32") -> dict:
    """A complete board without extends or input files; region 0x20000-0x100000; no at_version
    where the chip has the default."""
    tx, rx, cts, rts = _PINS[chip]
    mode, freq, size = _FLASH[chip]
    module = {"name": "TEST-1", "chip": chip}
    if chip in AT_VERSION_OF:
        module["at_version"] = AT_VERSION_OF[chip]
    return {
        "module": module,
        "flash": {"mode": mode, "freq": freq, "size": size},
        "factory_param": {
            "tx_max_power": 78, "uart_port": 0 if chip == "esp8266" else 1, "start_channel": 1,
            "channel_num": 13, "country_code": "CN", "uart_baudrate": 115200, "uart_tx_pin": tx,
            "uart_rx_pin": rx, "uart_cts_pin": cts, "uart_rts_pin": rts, "tx_control_pin": -1,
            "rx_control_pin": -1,
        },
        "at_customize": {
            "offset": 0x20000, "size": 0xE0000,
            "partitions": [
                {"name": "factory_param", "type": 0x40, "subtype": 8, "offset": 0x30000, "size": "4K"},
                {"name": "user_data", "type": 0x40, "subtype": 0x42, "offset": 0x31000, "size": "8K"},
            ],
        },
    }


_DROP = object()


def _walk(data, tokens):
    cur = data
    for tok in tokens:
        if tok.startswith("["):
            cur = next(p for p in cur if isinstance(p, dict) and p.get("name") == tok[1:-1])
        else:
            cur = cur[tok]
    return cur


def edit(data: dict, dotted: str, value=_DROP) -> dict:
    """Set (or drop) ``module.chip`` / ``at_customize.partitions[user_data].size`` in board data."""
    tokens = dotted.replace("[", ".[").split(".")
    parent = _walk(data, tokens[:-1])
    if value is _DROP:
        del parent[tokens[-1]]
    else:
        parent[tokens[-1]] = value
    return data


def board(chip: str = "esp32", changes: Optional[dict] = None, drop: Iterable[str] = (),
          add: Iterable[dict] = ()) -> str:
    """The TOML of ``minimal(chip)`` with dotted keys changed or dropped and partitions added."""
    data = minimal(chip)
    for dotted, value in (changes or {}).items():
        edit(data, dotted, value)
    for dotted in drop:
        edit(data, dotted)
    if add:
        data["at_customize"]["partitions"] += list(add)
    return to_toml(data)


def extending(*parts: str, base: str = "WROOM-32") -> str:
    """A board file that extends ``base``, followed by ``parts`` (TOML text)."""
    return f'extends = "{base}"\n' + "".join(parts)


def part_toml(**fields) -> str:
    """One [[at_customize.partitions]] entry."""
    return "\n[[at_customize.partitions]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in fields.items())


# --- problems -------------------------------------------------------------------------------

ANY = object()       # "do not check the value"
NO_VALUE = object()  # "the problem carries no value"


def problems_of(tmp_path: Path, text, name: str = BOARD_NAME) -> List[Problem]:
    """The problems of a board file given as text (dedented) or as bytes (written as they are)."""
    with pytest.raises(BoardError) as info:
        if isinstance(text, bytes):
            board_from_bytes(tmp_path, text, name)
        else:
            board_from_text(tmp_path, text, name=name)
    problems = info.value.problems
    assert problems, "a BoardError must carry at least one problem"
    assert str(info.value) == "\n".join(str(p) for p in problems)
    return problems


def check(problem: Problem, file, key: str, value=ANY, *words: str) -> Problem:
    """The problem names ``file`` and ``key`` (and ``value``) and says each of ``words``."""
    text = str(problem)
    if file is not None:
        assert problem.file == str(file), text
        assert Path(text.split(": ", 1)[0]).name == Path(file).name, text
    assert problem.key == key, text
    if value is NO_VALUE:
        assert not problem.has_value, text
        assert not key or f": {key}: " in f": {text}", text
    elif value is not ANY:
        assert problem.has_value and problem.value == value and type(problem.value) is type(value), text
        # an integer is shown as the board file wrote it (0x21000), which is its value
        shown = problem.written if problem.written is not None else format_value(value)
        assert problem.written is None or int(problem.written.replace("_", ""), 0) == value, text
        assert f"{key} = {shown}: " in text, text
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
    return problem


def only_problem(tmp_path: Path, text, key: str, value=ANY, *words: str, file=None, name=BOARD_NAME) -> Problem:
    """Exactly one problem, on one line that starts with ``file`` (the board file by default): ``check``."""
    problems = problems_of(tmp_path, text, name=name)
    assert len(problems) == 1, "\n".join(map(str, problems))
    file = file or tmp_path / name
    line = str(problems[0])
    assert "\n" not in line, line
    assert line.startswith(display_path(file) + ": "), line
    if key:
        assert f": {key}" in line, line
    return check(problems[0], file, key, value, *words)


# --- key material ---------------------------------------------------------------------------

def key_material(*pem_files: Path) -> List[str]:
    """The base64 body lines of PEM key files: what must never be echoed back."""
    lines = []
    for path in pem_files:
        for line in path.read_text(errors="replace").splitlines():
            if line and not line.startswith("-----") and ":" not in line and len(line) >= 16:
                lines.append(line)
    assert lines, pem_files
    return lines


def assert_no_key_material(text: str, *key_files: Path) -> None:
    for key_file in key_files:
        for line in key_material(key_file):
            assert line not in text, f"key material of {key_file.name} in the message"
            assert line[:24] not in text, f"key material of {key_file.name} in the message"


# --- scons refusals -------------------------------------------------------------------------

def problem_lines(stderr: str) -> List[str]:
    """The ``scons: *** `` lines of a run's stderr: one per problem."""
    return [line for line in stderr.splitlines() if line.startswith("scons: *** ")]


def assert_nothing_written(out: Path) -> None:
    assert not out.exists() or all(p.name.startswith(".sconsign") for p in out.iterdir()), list(out.iterdir())


def assert_refused(result: subprocess.CompletedProcess, out: Path) -> List[str]:
    """scons refused the input: status 2, no traceback, nothing in ``out`` but its signature file.

    Returns the problem lines of stderr.
    """
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert_nothing_written(out)
    return problem_lines(result.stderr)


# --- firmware -------------------------------------------------------------------------------

def esptool_merge(release: Path, board) -> bytes:
    """What esptool's merge-bin makes of a release folder with the board's flash options."""
    from esptool.cmds import merge_bin
    from esptool.logger import log

    from atfactory.download_config import decode_download_config

    log.set_verbosity("silent")
    config = decode_download_config((release / "download.config").read_bytes())
    pairs = [(offset, (release / rel).read_bytes()) for offset, rel in config.entries]
    return bytes(merge_bin(pairs, board.chip.name, output=None, flash_mode=board.flash_mode,
                           flash_freq=board.flash_freq, flash_size=board.flash_size, format="raw",
                           pad_to_size=board.flash_size))


# --- boards built once, and the command line on them ------------------------------------------

SHIPPED = sorted(p.stem for p in list(STOCK_DIR.glob("*.toml")) + list((ACME / "boards").glob("*.toml")))
IMAGE_BOARDS = ["WROOM-32", "ESP32C3-MINI-1", "ESP32S2-WROOM", "WROOM-02", "ESP8266_1MB", "ACME-W32"]
WITH_ACME = f"plugins={ACME}"   # the scons variable that loads it


def image_of(built: Path, board_id: str) -> Path:
    """The factory image the ``built`` fixture made for ``board_id`` (one of IMAGE_BOARDS)."""
    return next((built / "img" / board_id / "factory").glob("factory_*.bin"))


def tampered(built: Path, tmp_path: Path, offset: int, data: bytes, board_id: str = "WROOM-32",
             name: str = "tampered.bin") -> Path:
    """The factory image of ``board_id`` with ``data`` written at ``offset``, as tmp_path / name."""
    image = bytearray(image_of(built, board_id).read_bytes())
    image[offset:offset + len(data)] = data
    path = tmp_path / name
    path.write_bytes(bytes(image))
    return path


def mfg_nvs_layout(built: Path, tmp_path: Path, name: str = "v3.bin") -> Path:
    """WROOM-32's image with at_customize.bin listing one erased mfg_nvs partition, as ESP-AT
    v3.1+ lays it out (its factory_param and certificates live in that NVS partition)."""
    from atfactory import partition_table as pt

    image = bytearray(image_of(built, "WROOM-32").read_bytes())
    image[0x20000:0x70000] = b"\xff" * 0x50000
    image[0x20000:0x20000 + pt.TABLE_SIZE] = pt.encode_partition_table([pt.Entry("mfg_nvs", 0x01, 0x02, 0x21000, 0x1C000)])
    path = tmp_path / name
    path.write_bytes(bytes(image))
    return path


def write_signing_key(folder: Path, name: str) -> Path:
    """A new Ed25519 key pair: ``name``.key (PEM, unencrypted, owner-only) and ``name``.pub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = folder / f"{name}.key"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    (folder / f"{name}.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    return private


def run_cli(capsys, *argv: str):
    """``atfactory ARGV`` in this process: (exit code, stdout, stderr)."""
    from atfactory.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def nvs_oracle(content, size: int) -> bytes:
    """esp-idf-nvs-partition-gen (0.1.9, family B: what ESP-AT v4.1+ builds run) over the same
    (namespace, [(key, type, value)]) content: the test-only oracle for atfactory.nvs."""
    import contextlib
    import io

    from esp_idf_nvs_partition_gen import nvs_partition_gen as gen

    out = io.BytesIO()
    with contextlib.redirect_stdout(io.StringIO()):
        image = gen.nvs_open(out, size - 4096, gen.Page.VERSION2)
        for ns_name, items in content:
            gen.write_entry(image, ns_name, "namespace", "", "")
            for key, type_name, value in items:
                # "binary" data takes the path a "file" row takes once the file is read.
                gen.write_entry(image, key, "data", "binary" if type_name == "blob" else type_name, value)
        gen.nvs_close(image)
    return out.getvalue()
