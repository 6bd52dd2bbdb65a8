"""The catalogue of bad board inputs: every check of docs/board-files.md, and the message it gives.

Each case feeds one bad input and asserts the useful parts of what the user reads: the file,
the dotted key, the offending value and the words that say what is accepted.  Most cases go
through the library (``load_board``); a few run scons as a user would and check the exit code,
the stderr lines and that nothing was written.

Boards are made from ``minimal(chip)``, a fully written board per chip (no ``extends``, no input
files) that ``test_starting_boards_are_valid`` proves good, changed by one dotted key at a time;
or from a small file that ``extends = "WROOM-32"`` for the content checks (certificates, keys,
GATT tables), where the stock inputs give a valid starting point.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import (STOCK_DIR, ANY, AT_VERSION_OF, BOARD_NAME, CERTS, CHIPS, FP_REQUIRED, GATT_COLUMNS, NO_VALUE, REPO,
                     assert_no_key_material, assert_refused, board, board_from_text, check, edit, extending, minimal, only_problem,
                     part_toml, problems_of, run_scons, to_toml, write)

from atfactory import pki
from atfactory.board import BoardRegistry, load_board
from atfactory.errors import BoardError, display_path, format_value

FP_INT_FIELDS = ("magic_flag", "version", "reserved1", "tx_max_power", "uart_port", "start_channel",
                 "channel_num", "uart_baudrate", "uart_tx_pin", "uart_rx_pin", "uart_cts_pin",
                 "uart_rts_pin", "tx_control_pin", "rx_control_pin")
PIN_FIELDS = ("uart_tx_pin", "uart_rx_pin", "uart_cts_pin", "uart_rts_pin", "tx_control_pin", "rx_control_pin")


def loads(tmp_path: Path, text: str, name: str = BOARD_NAME):
    return board_from_text(tmp_path, text, name=name)


@pytest.fixture(scope="module")
def fresh_keys(tmp_path_factory):
    """Keys that belong to no stock certificate: RSA and EC, plain, encrypted, DER and PEM."""
    from cryptography.hazmat.primitives import serialization as s
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    folder = tmp_path_factory.mktemp("keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    pem, der, pkcs8, trad = s.Encoding.PEM, s.Encoding.DER, s.PrivateFormat.PKCS8, s.PrivateFormat.TraditionalOpenSSL
    files = {
        "rsa.key": rsa_key.private_bytes(pem, trad, s.NoEncryption()),
        "ec.key": ec_key.private_bytes(pem, pkcs8, s.NoEncryption()),
        "ec.der": ec_key.private_bytes(der, pkcs8, s.NoEncryption()),
        "encrypted_pkcs8.key": ec_key.private_bytes(pem, pkcs8, s.BestAvailableEncryption(b"secret")),
        "encrypted_trad.key": rsa_key.private_bytes(pem, trad, s.BestAvailableEncryption(b"secret")),
        "encrypted.der": ec_key.private_bytes(der, pkcs8, s.BestAvailableEncryption(b"secret")),
    }
    plain = files["ec.key"].decode().splitlines()
    body = plain[1]
    files["corrupt.key"] = "\n".join([plain[0], body[:10] + "!!!!" + body[14:]] + plain[2:]).encode() + b"\n"
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


# --- the starting points are valid ----------------------------------------------------------

# Espressif's own pins for these chips put one UART pin on a strapping pin (test_pins.py).
STRAPPED = {"esp32": "factory_param.uart_cts_pin = 15: GPIO15 is a strapping pin of ESP32",
            "esp8266": "factory_param.uart_tx_pin = 15: GPIO15 is a strapping pin of ESP8266"}


@pytest.mark.parametrize("chip", CHIPS)
def test_starting_boards_are_valid(tmp_path, chip):
    b = loads(tmp_path, board(chip))
    assert b.chip.name == chip and b.module_name == "TEST-1"
    assert [STRAPPED[chip] in w for w in b.warnings] == ([True] if chip in STRAPPED else [])
    assert b.factory_param["magic_flag"] == 0xFCFC and b.factory_param["version"] == 3
    assert [p.name for p in b.partitions] == ["factory_param", "user_data"]


def test_extending_board_is_valid(tmp_path):
    b = loads(tmp_path, extending())
    assert b.module_name == "test-board" and b.partition("server_key").content is not None


# --- TOML syntax ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, where", [
    ('extends = "WROOM-32"\n[module]\nname = "x\n', "line 3"),
    ('extends = "WROOM-32"\n\n[flash]\nmode = dio\n', "line 4"),
    ('[module]\nchip = "esp32"\n[module]\nname = "a"\n', "line 3"),
    ('[[at_customize.partitions]\nname = "a"\n', "line 1"),
    ('[module]\nchip = "esp32"\nchip = "esp32c3"\n', "line 3"),
    ('[factory_param]\nuart_tx_pin = 0o17\nuart_rx_pin = 01\n', "line 3"),
    ('[at_customize]\noffset = 0x20000\nsize = [\n  1,\n', "end of document, after line 4"),
], ids=["unterminated-string", "bare-word", "table-twice", "array-table-bracket", "key-twice",
        "leading-zero", "unclosed-array"])
def test_toml_syntax_error_names_file_and_line(tmp_path, text, where):
    p = only_problem(tmp_path, text, "", NO_VALUE, "TOML syntax error", where)
    assert str(p).startswith(str(tmp_path / BOARD_NAME) + ": TOML syntax error: ")


def test_board_file_not_utf8(tmp_path):
    path = tmp_path / BOARD_NAME
    path.write_bytes(b'[module]\nname = "caf\xe9"\n')
    with pytest.raises(BoardError) as info:
        load_board(str(path), BoardRegistry())
    (p,) = info.value.problems
    check(p, path, "", NO_VALUE, "not UTF-8", "byte 0xe9", "UTF-8")


# --- unknown keys at every level ------------------------------------------------------------

TOP_KEYS = "extends, module, flash, factory_param, at_customize"
MODULE_KEYS = "name, chip, platform, description, at_version"
PART_KEYS = "name, type, subtype, offset, size, source, remove"
FP_KEYS = ("magic_flag, version, reserved1, module_id, tx_max_power, uart_port, start_channel, channel_num, country_code, "
           "uart_baudrate, uart_tx_pin, uart_rx_pin, uart_cts_pin, uart_rts_pin, tx_control_pin, rx_control_pin")


@pytest.mark.parametrize("dotted, value, key, accepted", [
    ("extend", "WROOM-32", "extend", TOP_KEYS),
    ("modules", {"chip": "esp32"}, "modules", TOP_KEYS),
    ("module.nmae", "X", "module.nmae", MODULE_KEYS),
    ("module.chip_name", "esp32", "module.chip_name", MODULE_KEYS),
    ("flash.speed", "40m", "flash.speed", "mode, freq, size"),
    ("flash.flash_size", "4MB", "flash.flash_size", "mode, freq, size"),
    ("factory_param.uart_tx", 5, "factory_param.uart_tx", FP_KEYS),
    ("factory_param.platform", "PLATFORM_ESP32", "factory_param.platform", FP_KEYS),
    ("factory_param.module_name", "X", "factory_param.module_name", FP_KEYS),
    ("at_customize.partition", [], "at_customize.partition", "offset, size, partitions"),
    ("at_customize.partitions[user_data].sorce", "x.bin", "at_customize.partitions[user_data].sorce", PART_KEYS),
    ("at_customize.partitions[user_data].flags", 1, "at_customize.partitions[user_data].flags", PART_KEYS),
    ("at_customize.partitions[factory_param].encrypted", True, "at_customize.partitions[factory_param].encrypted",
     PART_KEYS),
], ids=lambda v: v if isinstance(v, str) and "," not in v and "[" not in v else None)
def test_unknown_key_is_not_ignored(tmp_path, dotted, value, key, accepted):
    text = board(changes={dotted: value})
    only_problem(tmp_path, text, key, NO_VALUE, "unknown key", "accepted here: " + accepted)


def test_unknown_key_in_a_partition_without_name(tmp_path):
    text = board(add=[{"nmae": "extra", "type": 0x40, "subtype": 0x43, "offset": 0x40000, "size": "4K"}])
    problems = problems_of(tmp_path, text)
    assert len(problems) == 2, problems
    check(problems[0], tmp_path / BOARD_NAME, "at_customize.partitions[2].nmae", NO_VALUE,
          "unknown key", "accepted here: " + PART_KEYS)
    check(problems[1], tmp_path / BOARD_NAME, "at_customize.partitions[2].name", NO_VALUE,
          "missing", "every partition needs a name")


def test_unknown_key_in_the_base_names_the_base(tmp_path):
    base = write(tmp_path / "layouts" / "base.toml", board(changes={"flash.speed": "40m"}))
    leaf = 'extends = "layouts/base.toml"\n[module]\nname = "LEAF"\n'
    only_problem(tmp_path, leaf, "flash.speed", NO_VALUE, "unknown key", "mode, freq, size", file=base)


# --- wrong types for every key --------------------------------------------------------------

INT = "expected an integer"
STR = "expected a string"
INT_OR_STR = "expected an integer or a string"

WRONG_TYPES = [
    ("extends", 5, "extends", STR),
    ("extends", ["WROOM-32"], "extends", STR),
    ("module", 5, "module", "expected a table"),
    ("flash", "4MB", "flash", "expected a table"),
    ("factory_param", [1, 2], "factory_param", "expected a table"),
    ("at_customize", True, "at_customize", "expected a table"),
    ("module.name", 5, "module.name", STR),
    ("module.chip", 32, "module.chip", STR),
    ("module.chip", ["esp32"], "module.chip", STR),
    ("module.platform", True, "module.platform", STR),
    ("module.description", ["x"], "module.description", STR),
    ("module.at_version", 2.4, "module.at_version", STR),
    ("flash.mode", 2, "flash.mode", STR),
    ("flash.freq", 40, "flash.freq", STR),
    ("flash.size", 4, "flash.size", STR),
    *[(f"factory_param.{f}", "1", f"factory_param.{f}", INT) for f in FP_INT_FIELDS],
    ("factory_param.tx_max_power", 19.5, "factory_param.tx_max_power", INT),
    ("factory_param.uart_port", True, "factory_param.uart_port", INT),
    ("factory_param.uart_tx_pin", [17], "factory_param.uart_tx_pin", INT),
    ("factory_param.uart_baudrate", 115200.0, "factory_param.uart_baudrate", INT),
    ("factory_param.country_code", 86, "factory_param.country_code", STR),
    ("at_customize.offset", 1.5, "at_customize.offset", INT_OR_STR),
    ("at_customize.size", True, "at_customize.size", INT_OR_STR),
    ("at_customize.partitions", 5, "at_customize.partitions", "expected an array"),
    ("at_customize.partitions", {"name": "x"}, "at_customize.partitions", "expected an array"),
    ("at_customize.partitions[user_data].name", 5, "at_customize.partitions[1].name", STR),
    ("at_customize.partitions[user_data].type", 1.5, "at_customize.partitions[user_data].type", INT_OR_STR),
    ("at_customize.partitions[user_data].subtype", [1], "at_customize.partitions[user_data].subtype", INT_OR_STR),
    ("at_customize.partitions[user_data].offset", {"a": 1}, "at_customize.partitions[user_data].offset", INT_OR_STR),
    ("at_customize.partitions[user_data].size", False, "at_customize.partitions[user_data].size", INT_OR_STR),
    ("at_customize.partitions[user_data].source", 5, "at_customize.partitions[user_data].source",
     "expected a string or an array"),
    ("at_customize.partitions[user_data].source", [1], "at_customize.partitions[user_data].source[0]",
     "expected a string (a file path)"),
    ("at_customize.partitions[user_data].remove", "yes", "at_customize.partitions[user_data].remove",
     "expected true or false"),
]


@pytest.mark.parametrize("dotted, value, key, words", WRONG_TYPES,
                         ids=[f"{d}={format_value(v)}" for d, v, _, _ in WRONG_TYPES])
def test_wrong_type(tmp_path, dotted, value, key, words):
    expected = value[0] if key.endswith("[0]") else value
    only_problem(tmp_path, board(changes={dotted: value}), key, expected, words)


def test_partition_that_is_not_a_table(tmp_path):
    problems = problems_of(tmp_path, board(changes={"at_customize.partitions": [1, "two"]}))
    assert len(problems) == 2
    check(problems[0], tmp_path / BOARD_NAME, "at_customize.partitions[0]", 1, "expected a table")
    check(problems[1], tmp_path / BOARD_NAME, "at_customize.partitions[1]", "two",
          "expected a table ([[at_customize.partitions]])")


# --- missing required values ----------------------------------------------------------------

MISSING = [
    ("module.chip", "module.chip", "required: one of esp32, esp32c2, esp32c3, esp32c5, esp32c6, esp32c61, esp32s2, esp8266"),
    ("flash.mode", "flash.mode", "required: qio, qout, dio, dout"),
    ("flash.freq", "flash.freq", "required: 80m, 40m, 26m or 20m"),
    ("flash.size", "flash.size", "required: a flash size such as 4MB"),
    *[(f"factory_param.{f}", f"factory_param.{f}", "except magic_flag, version and reserved1 must be given")
      for f in FP_REQUIRED],
    ("at_customize.offset", "at_customize.offset", "required: the offset of the firmware's at_customize partition"),
    ("at_customize.size", "at_customize.size", "required: the size of the firmware's at_customize partition"),
    ("at_customize.partitions[user_data].name", "at_customize.partitions[1].name", "every partition needs a name"),
    *[(f"at_customize.partitions[user_data].{k}", f"at_customize.partitions[user_data].{k}",
       "every partition needs name, type, subtype, offset and size") for k in ("type", "subtype", "offset", "size")],
]


@pytest.mark.parametrize("dotted, key, words", MISSING, ids=[m[0] for m in MISSING])
def test_missing_required_value(tmp_path, dotted, key, words):
    only_problem(tmp_path, board(drop=[dotted]), key, NO_VALUE, "missing", words)


def test_missing_tables_report_every_missing_key(tmp_path):
    data = minimal()
    del data["flash"], data["factory_param"]
    problems = problems_of(tmp_path, to_toml(data))
    keys = [p.key for p in problems]
    assert keys == ["flash.mode", "flash.freq", "flash.size"] + [f"factory_param.{f}" for f in FP_REQUIRED]
    assert all("missing" in str(p) and BOARD_NAME in str(p) for p in problems)


@pytest.mark.parametrize("chip", CHIPS)
def test_optional_values_may_be_omitted(tmp_path, chip):
    # minimal() has no platform, description, magic_flag, version or reserved1, and no at_version
    # where the chip has ESP-AT 2.4
    b = loads(tmp_path, board(chip, drop=["module.name"]))
    assert b.platform == "PLATFORM_" + chip.upper() and b.at_version == AT_VERSION_OF.get(chip, "2.4")
    assert b.description == ""
    assert b.module_name == "test-board"
    assert (b.factory_param["magic_flag"], b.factory_param["version"], b.factory_param["reserved1"]) == (0xFCFC, 3, 0)


# --- strings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dotted, value, words", [
    ("module.name", "A" * 32, ("32 bytes", "at most 31 fit")),
    ("module.name", "ESP32-WROOM-32E-N4R2-CUSTOM-BUILD", ("33 bytes", "at most 31 fit")),
    ("module.platform", "P" * 32, ("32 bytes", "at most 31 fit")),
    ("module.name", "", ("expected 1 to 31 printable ASCII characters",)),
    ("module.name", "Modul\u00e9", ("expected 1 to 31 printable ASCII characters",)),
    ("module.name", "tab\there", ("expected 1 to 31 printable ASCII characters",)),
    ("module.platform", "", ("expected 1 to 31 printable ASCII characters",)),
    ("factory_param.country_code", "ABCD", ("accepted: 1 to 3 ASCII letters or digits",)),
    ("factory_param.country_code", "", ("accepted: 1 to 3 ASCII letters or digits",)),
    ("factory_param.country_code", "C N", ("accepted: 1 to 3 ASCII letters or digits",)),
    ("factory_param.country_code", "\u4e2d", ("accepted: 1 to 3 ASCII letters or digits",)),
])
def test_string_not_accepted(tmp_path, dotted, value, words):
    only_problem(tmp_path, board(changes={dotted: value}), dotted, value, *words)


@pytest.mark.parametrize("dotted, value", [
    ("module.name", "A" * 31), ("module.platform", "P" * 31), ("factory_param.country_code", "ABC"),
    ("factory_param.country_code", "01"), ("module.name", "a b~!"),
])
def test_longest_strings_are_accepted(tmp_path, dotted, value):
    b = loads(tmp_path, board(changes={dotted: value}))
    assert value in (b.module_name, b.platform, b.factory_param["country_code"])


@pytest.mark.parametrize("name, words", [
    ("n" * 17, ("17 bytes", "at most 16")),
    ("server_cert_extra", ("17 bytes", "at most 16")),
    ("x" * 40, ("40 bytes", "at most 16")),
    ("", ("expected 1 to 16 printable ASCII characters",)),
    ("caf\u00e9", ("expected 1 to 16 printable ASCII characters",)),
])
def test_partition_name_not_accepted(tmp_path, name, words):
    text = board(add=[{"name": name, "type": 0x40, "subtype": 0x43, "offset": 0x40000, "size": "4K"}])
    only_problem(tmp_path, text, f"at_customize.partitions[{name}].name", name, *words)


def test_partition_name_of_16_bytes_is_accepted(tmp_path):
    text = board(add=[{"name": "n" * 16, "type": 0x40, "subtype": 0x43, "offset": 0x40000, "size": "4K"}])
    assert loads(tmp_path, text).partition("n" * 16).size == 0x1000


# --- factory_param ranges -------------------------------------------------------------------

RANGES = [
    ("esp32", "tx_max_power", 39, "accepted: (0.25 dBm units on ESP32) 40 to 84"),
    ("esp32", "tx_max_power", 85, "40 to 84"),
    ("esp32c3", "tx_max_power", 85, "(0.25 dBm units on ESP32-C3) 40 to 84"),
    ("esp32s2", "tx_max_power", 0, "(0.25 dBm units on ESP32-S2) 40 to 84"),
    ("esp8266", "tx_max_power", 83, "(0.25 dBm units on ESP8266) 40 to 82"),
    ("esp8266", "tx_max_power", 84, "40 to 82"),
    ("esp32", "uart_port", 3, "ESP32 has UART 0 to 2; accepted: -1 (none) or 0 to 2"),
    ("esp32", "uart_port", -2, "accepted: -1 (none) or 0 to 2"),
    ("esp32c3", "uart_port", 2, "ESP32-C3 has UART 0 to 1; accepted: -1 (none) or 0 to 1"),
    ("esp32s2", "uart_port", 2, "ESP32-S2 has UART 0 to 1; accepted: -1 (none) or 0 to 1"),
    ("esp8266", "uart_port", 2, "ESP8266 has UART 0 to 1; accepted: -1 (none) or 0 to 1"),
    ("esp8266", "uart_port", 1, "ESP-AT on ESP8266 runs AT on UART0 only; accepted: -1 (keeps that default) or 0"),
    ("esp32", "uart_port", 255, "accepted: -1 (none) or 0 to 2"),
    ("esp32", "start_channel", 0, "out of range; accepted: 1 to 14"),
    ("esp32", "start_channel", 15, "out of range; accepted: 1 to 14"),
    ("esp32", "start_channel", -1, "out of range; accepted: 1 to 14"),
    ("esp32", "channel_num", 0, "out of range; accepted: 1 to 14"),
    ("esp32", "channel_num", 15, "out of range; accepted: 1 to 14"),
    ("esp32", "uart_baudrate", 0, "accepted: -1 (none) or 1 to 5000000"),
    ("esp32", "uart_baudrate", -2, "accepted: -1 (none) or 1 to 5000000"),
    ("esp32", "uart_baudrate", 5000001, "accepted: -1 (none) or 1 to 5000000"),
    ("esp32", "uart_baudrate", 2 ** 32, "accepted: -1 (none) or 1 to 5000000"),
    ("esp32", "magic_flag", -1, "out of range; accepted: 0 to 65535"),
    ("esp32", "magic_flag", 0x10000, "out of range; accepted: 0 to 65535"),
    ("esp32", "version", -1, "out of range; accepted: 0 to 255"),
    ("esp32", "version", 256, "out of range; accepted: 0 to 255"),
    ("esp32", "reserved1", -1, "out of range; accepted: 0 to 255"),
    ("esp32", "reserved1", 256, "out of range; accepted: 0 to 255"),
]


@pytest.mark.parametrize("chip, field, value, words", RANGES, ids=[f"{c}-{f}={v}" for c, f, v, _ in RANGES])
def test_factory_param_out_of_range(tmp_path, chip, field, value, words):
    only_problem(tmp_path, board(chip, {f"factory_param.{field}": value}), f"factory_param.{field}", value, words)


@pytest.mark.parametrize("start, count, words", [
    (5, 11, "channels 5 to 15 run past channel 14; accepted with start_channel = 5: 1 to 10"),
    (14, 2, "channels 14 to 15 run past channel 14; accepted with start_channel = 14: 1 to 1"),
    (2, 14, "accepted with start_channel = 2: 1 to 13"),
])
def test_channels_past_14(tmp_path, start, count, words):
    text = board(changes={"factory_param.start_channel": start, "factory_param.channel_num": count})
    only_problem(tmp_path, text, "factory_param.channel_num", count, words)


@pytest.mark.parametrize("chip, changes", [
    ("esp32", {"tx_max_power": 40}), ("esp32", {"tx_max_power": 84}), ("esp8266", {"tx_max_power": 82}),
    ("esp32", {"uart_port": 2}), ("esp32", {"uart_port": -1}), ("esp32c3", {"uart_port": -1}),
    ("esp8266", {"uart_port": -1}), ("esp32", {"start_channel": 14, "channel_num": 1}),
    ("esp32", {"start_channel": 1, "channel_num": 14}), ("esp32", {"uart_baudrate": 5000000}),
    ("esp32", {"uart_baudrate": -1}), ("esp32", {"uart_baudrate": 1}),
    ("esp32", {"magic_flag": 0xFFFF, "version": 255, "reserved1": 255}),
    ("esp32", {"magic_flag": 0, "version": 0, "reserved1": 0}),
])
def test_factory_param_limits_are_accepted(tmp_path, chip, changes):
    b = loads(tmp_path, board(chip, {f"factory_param.{k}": v for k, v in changes.items()}))
    assert all(b.factory_param[k] == v for k, v in changes.items())


# --- GPIOs ----------------------------------------------------------------------------------

GPIO_RANGES = {"esp32": ("ESP32", "0-19, 21-23, 25-27, 32-39"), "esp32c3": ("ESP32-C3", "0-21"),
               "esp32s2": ("ESP32-S2", "0-21, 26-46"), "esp8266": ("ESP8266", "0-16")}
NO_SUCH_GPIO = [
    ("esp32", "uart_rx_pin", 20), ("esp32", "uart_cts_pin", 24), ("esp32", "uart_rx_pin", 28),
    ("esp32", "uart_rx_pin", 31), ("esp32", "uart_rx_pin", 40), ("esp32", "uart_tx_pin", 20),
    ("esp32", "uart_rx_pin", -2),
    ("esp32c3", "uart_tx_pin", 22), ("esp32c3", "uart_rx_pin", 30),
    ("esp32s2", "uart_tx_pin", 22), ("esp32s2", "uart_rx_pin", 25), ("esp32s2", "uart_cts_pin", 47),
    ("esp8266", "uart_tx_pin", 17), ("esp8266", "uart_rts_pin", 20),
    *[("esp32", field, 24) for field in PIN_FIELDS],
]


@pytest.mark.parametrize("chip, field, pin", NO_SUCH_GPIO, ids=[f"{c}-{f}={p}" for c, f, p in NO_SUCH_GPIO])
def test_gpio_the_chip_does_not_have(tmp_path, chip, field, pin):
    title, ranges = GPIO_RANGES[chip]
    only_problem(tmp_path, board(chip, {f"factory_param.{field}": pin}), f"factory_param.{field}", pin,
                 f"{title} has no GPIO{pin}", f"accepted: -1 (unused) or {ranges}")


INPUT_ONLY = [
    ("esp32", "uart_tx_pin", 34), ("esp32", "uart_rts_pin", 35), ("esp32", "tx_control_pin", 36),
    ("esp32", "rx_control_pin", 39), ("esp32s2", "uart_tx_pin", 46), ("esp32s2", "uart_rts_pin", 46),
    ("esp32s2", "rx_control_pin", 46),
]


@pytest.mark.parametrize("chip, field, pin", INPUT_ONLY, ids=[f"{c}-{f}={p}" for c, f, p in INPUT_ONLY])
def test_input_only_gpio_as_output(tmp_path, chip, field, pin):
    title = GPIO_RANGES[chip][0]
    only_problem(tmp_path, board(chip, {f"factory_param.{field}": pin}), f"factory_param.{field}", pin,
                 f"GPIO{pin} is input-only on {title}", "cannot drive this output",
                 "input-only: " + ("34-39" if chip == "esp32" else "46"))


@pytest.mark.parametrize("chip, field, pin", [
    ("esp32", "uart_rx_pin", 34), ("esp32", "uart_cts_pin", 39), ("esp32s2", "uart_rx_pin", 46),
    ("esp32", "uart_rx_pin", 0), ("esp32c3", "uart_rx_pin", 21), ("esp8266", "tx_control_pin", 16),
    ("esp32s2", "uart_rx_pin", 26),
])
def test_gpio_accepted(tmp_path, chip, field, pin):
    assert loads(tmp_path, board(chip, {f"factory_param.{field}": pin})).factory_param[field] == pin


@pytest.mark.parametrize("field, pin, first", [
    ("uart_cts_pin", 17, "uart_tx_pin"), ("uart_rts_pin", 16, "uart_rx_pin"),
    ("tx_control_pin", 15, "uart_cts_pin"), ("rx_control_pin", 14, "uart_rts_pin"),
])
def test_gpio_used_twice(tmp_path, field, pin, first):
    only_problem(tmp_path, board(changes={f"factory_param.{field}": pin}), f"factory_param.{field}", pin,
                 f"GPIO{pin} is already factory_param.{first}", "each GPIO may serve one function")


def test_gpio_used_twice_across_control_pins(tmp_path):
    text = board(changes={"factory_param.tx_control_pin": 4, "factory_param.rx_control_pin": 4})
    only_problem(tmp_path, text, "factory_param.rx_control_pin", 4, "GPIO4 is already factory_param.tx_control_pin")


def test_unused_pins_may_all_be_minus_one(tmp_path):
    b = loads(tmp_path, board(changes={f"factory_param.{f}": -1 for f in PIN_FIELDS}))
    assert all(b.factory_param[f] == -1 for f in PIN_FIELDS)


# --- chip, flash, AT version ----------------------------------------------------------------

ESP32_SIZES = "1MB, 2MB, 4MB, 8MB, 16MB, 32MB, 64MB, 128MB"
ESP32_RELEASES = '"2.0", "2.1", "2.2", "2.4.0", "2.4", "3.0", "3.1", "3.2", "3.3", "3.4", "4.0", "4.1" or "5.0"'
FLASH_CASES = [
    ("esp8266", "flash.size", "128MB", "ESP8266 accepts 512KB, 256KB, 1MB, 2MB, 4MB, 2MB-c1, 4MB-c1, 8MB, 16MB"),
    ("esp8266", "flash.size", "32MB", "ESP8266 accepts"),
    ("esp32", "flash.size", "512KB", "ESP32 accepts " + ESP32_SIZES),
    ("esp32", "flash.size", "256KB", "ESP32 accepts " + ESP32_SIZES),
    ("esp32c3", "flash.size", "2MB-c1", "ESP32-C3 accepts " + ESP32_SIZES),
    ("esp32s2", "flash.size", "4MB-c1", "ESP32-S2 accepts " + ESP32_SIZES),
    ("esp32", "flash.size", "3MB", "ESP32 accepts"),
    ("esp32", "flash.size", "4mb", "ESP32 accepts"),
    ("esp32", "flash.size", "4M", "ESP32 accepts"),
    ("esp32", "flash.size", "", "ESP32 accepts"),
    ("esp32", "flash.mode", "fast", "accepted: qio, qout, dio, dout"),
    ("esp32", "flash.mode", "QIO", "accepted: qio, qout, dio, dout"),
    ("esp8266", "flash.mode", "opi", "accepted: qio, qout, dio, dout"),
    ("esp32", "flash.freq", "30m", "ESP32 accepts 80m, 40m, 26m, 20m"),
    ("esp32c3", "flash.freq", "40MHz", "ESP32-C3 accepts 80m, 40m, 26m, 20m"),
    ("esp8266", "flash.freq", "120m", "ESP8266 accepts 80m, 40m, 26m, 20m"),
    ("esp32", "module.chip", "esp32s3", "unknown chip; accepted: esp32, esp32c2, esp32c3, esp32c5, esp32c6, esp32c61, esp32s2, esp8266"),
    ("esp32", "module.chip", "ESP32", "unknown chip; accepted: esp32, esp32c2, esp32c3, esp32c5, esp32c6, esp32c61, esp32s2, esp8266"),
    ("esp32", "module.chip", "", "unknown chip; accepted"),
    ("esp32", "module.at_version", "2.3", 'there is no ESP-AT 2.3 for ESP32; accepted: ' + ESP32_RELEASES),
    ("esp32", "module.at_version", "v2.4", 'accepted: ' + ESP32_RELEASES),
    ("esp32", "module.at_version", "2.4.2.0", 'accepted: ' + ESP32_RELEASES),
    ("esp32", "module.at_version", "2.4.1", 'accepted: ' + ESP32_RELEASES),
    ("esp8266", "module.at_version", "2.4", 'there is no ESP-AT 2.4 for ESP8266; accepted: "2.0", "2.1", "2.2" or "2.3"'),
    ("esp32s2", "module.at_version", "2.3", 'there is no ESP-AT 2.3 for ESP32-S2; accepted: "2.1", "2.2", "3.4", "4.1" or "5.0"'),
    ("esp32c3", "module.at_version", "2.1", 'there is no ESP-AT 2.1 for ESP32-C3; accepted: "2.2", "2.3", "2.4.0", "2.4", '
                                            '"3.0", "3.1", "3.2", "3.3", "3.4", "4.0", "4.1" or "5.0"'),
]


@pytest.mark.parametrize("chip, dotted, value, words", FLASH_CASES, ids=[f"{c}-{d}={v}" for c, d, v, _ in FLASH_CASES])
def test_chip_and_flash_options(tmp_path, chip, dotted, value, words):
    only_problem(tmp_path, board(chip, {dotted: value}), dotted, value, words)


@pytest.mark.parametrize("chip, size", [("esp8266", "256KB"), ("esp8266", "4MB-c1"), ("esp8266", "16MB"),
                                        ("esp32", "128MB"), ("esp32c3", "1MB"), ("esp32s2", "16MB")])
def test_flash_sizes_accepted(tmp_path, chip, size):
    data = minimal(chip)  # a region that fits the smallest flash
    edit(data, "flash.size", size)
    edit(data, "at_customize.offset", 0x10000)
    edit(data, "at_customize.size", 0x30000)
    edit(data, "at_customize.partitions[factory_param].offset", 0x11000)
    edit(data, "at_customize.partitions[user_data].offset", 0x12000)
    assert loads(tmp_path, to_toml(data)).flash_size == size


# --- partition layout ------------------------------------------------------------------------

def extra(**fields) -> dict:
    part = {"name": "extra", "type": 0x40, "subtype": 0x43, "offset": 0x40000, "size": "4K"}
    part.update(fields)
    return part


LAYOUT = [
    # (id, extra partition fields, key suffix, value, words)
    ("overlap-start", dict(offset=0x32000), "offset", 0x32000,
     ("0x32000-0x33000 overlaps partition user_data (0x31000-0x33000)",)),
    ("overlap-same", dict(offset="0x31000", size="8K"), "offset", "0x31000",
     ("0x31000-0x33000 overlaps partition", "(0x31000-0x33000)")),
    ("misaligned-data", dict(offset=0x24800), "offset", 0x24800,
     ("0x24800 is not a multiple of 0x1000", "accepted: an offset 4 KiB-aligned for a data partition")),
    ("misaligned-data-string", dict(offset="0x24800"), "offset", "0x24800",
     ("0x24800 is not a multiple of 0x1000", "4 KiB-aligned")),
    ("misaligned-by-one", dict(offset=0x40001), "offset", 0x40001, ("0x40001 is not a multiple of 0x1000",)),
    ("app-not-64k", dict(type="app", subtype="ota_0", offset=0x48000, size="64K"), "offset", 0x48000,
     ("0x48000 is not a multiple of 0x10000", "64 KiB-aligned for an app partition")),
    ("app-numeric-type", dict(type=0, subtype=0x10, offset=0x41000, size="64K"), "offset", 0x41000,
     ("0x41000 is not a multiple of 0x10000", "64 KiB-aligned for an app partition")),
    ("size-not-4k", dict(size=0x1800), "size", 0x1800, ("0x1800", "a positive multiple of 0x1000")),
    ("size-6K", dict(size="6K"), "size", "6K", ("0x1800", "a positive multiple of 0x1000")),
    ("size-zero", dict(size=0), "size", 0, ("a positive multiple of 0x1000",)),
    ("size-negative", dict(size=-4096), "size", -4096, ("a positive multiple of 0x1000",)),
    ("size-bytes", dict(size="100"), "size", "100", ("0x64", "a positive multiple of 0x1000")),
    ("size-words", dict(size="lots"), "size", "lots", ('expected a size such as 0x2000 or "8K"',)),
    ("size-unit", dict(size="8KB"), "size", "8KB", ('expected a size such as 0x2000 or "8K"',)),
    ("offset-words", dict(offset="abc"), "offset", "abc", ("expected a number such as 0x24000",)),
    ("offset-octal-string", dict(offset="0o1000"), "offset", "0o1000", ("expected a number such as 0x24000",)),
    ("offset-negative", dict(offset=-0x1000), "offset", -0x1000, ("-0x1000", "4 KiB-aligned")),
    ("in-first-sector", dict(offset=0x20000), "offset", 0x20000,
     ("0x20000-0x21000 is outside the AT partition space 0x21000-0x100000",
      "at_customize.offset + 4K to at_customize.offset + at_customize.size")),
    ("straddles-first-sector", dict(offset=0x20000, size="8K"), "offset", 0x20000,
     ("0x20000-0x22000 is outside the AT partition space 0x21000-0x100000",)),
    ("before-region", dict(offset=0x10000), "offset", 0x10000,
     ("0x10000-0x11000 is outside the AT partition space 0x21000-0x100000",)),
    ("after-region", dict(offset=0x100000), "offset", 0x100000,
     ("0x100000-0x101000 is outside the AT partition space 0x21000-0x100000",)),
    ("straddles-region-end", dict(offset=0xFF000, size="8K"), "offset", 0xFF000,
     ("0xff000-0x101000 is outside the AT partition space 0x21000-0x100000",)),
    ("type-255", dict(type=255), "type", 255, ("accepted: app, data, or a number from 0 to 0xFE",)),
    ("type-negative", dict(type=-1), "type", -1, ("accepted: app, data, or a number from 0 to 0xFE",)),
    ("type-name", dict(type="custom"), "type", "custom", ("accepted: app, data, or a number from 0 to 0xFE",
                                                          "AT partitions use 0x40")),
    ("subtype-256", dict(subtype=256), "subtype", 256, ("accepted: a number from 0 to 255",)),
    ("subtype-name", dict(subtype="bar"), "subtype", "bar", ("accepted: a number from 0 to 255",)),
    ("data-subtype-name", dict(type="data", subtype="fatt"), "subtype", "fatt",
     ("accepted: a number from 0 to 255 or one of ota, phy, nvs", "fat, spiffs, littlefs")),
    ("app-subtype-name", dict(type="app", subtype="ota_16", size="64K"), "subtype", "ota_16",
     ("one of factory, test, ota_0", "ota_15")),
]


@pytest.mark.parametrize("fields, suffix, value, words", [c[1:] for c in LAYOUT], ids=[c[0] for c in LAYOUT])
def test_partition_layout(tmp_path, fields, suffix, value, words):
    only_problem(tmp_path, board(add=[extra(**fields)]), f"at_customize.partitions[extra].{suffix}", value, *words)


def test_partition_covering_two_others(tmp_path):
    problems = problems_of(tmp_path, board(add=[extra(offset=0x2F000, size="16K")]))
    assert [p.key for p in problems] == ["at_customize.partitions[factory_param].offset",
                                         "at_customize.partitions[user_data].offset"], problems
    check(problems[0], tmp_path / BOARD_NAME, problems[0].key, 0x30000,
          "0x30000-0x31000 overlaps partition extra (0x2f000-0x33000)")
    check(problems[1], tmp_path / BOARD_NAME, problems[1].key, 0x31000,
          "0x31000-0x33000 overlaps partition extra (0x2f000-0x33000)")


def test_app_partition_aligned_is_accepted(tmp_path):
    b = loads(tmp_path, board(add=[extra(type="app", subtype="ota_0", offset=0x40000, size="64K")]))
    assert b.partition("extra").type == 0 and b.partition("extra").subtype == 0x10


def test_partitions_at_the_region_edges_are_accepted(tmp_path):
    b = loads(tmp_path, board(add=[extra(offset=0x21000), extra(name="last", subtype=0x44, offset=0xFF000)]))
    assert b.partition("extra").offset == 0x21000 and b.partition("last").end == 0x100000


def test_overlap_in_the_base_is_named_there(tmp_path):
    text = extending(part_toml(name="extra", type=0x40, subtype=0x43, offset=0x25000, size="4K"))
    # server_cert (0x24000-0x26000) of the stock layout: the later partition is the one reported
    only_problem(tmp_path, text, "at_customize.partitions[extra].offset", ANY,
                 "0x25000-0x26000 overlaps partition server_cert (0x24000-0x26000)")


@pytest.mark.parametrize("changes, words", [
    ({"at_customize.offset": 0x20800}, ("0x20800 is not a multiple of 0x1000", "4 KiB-aligned")),
    ({"at_customize.offset": "0x20800"}, ("0x20800 is not a multiple of 0x1000",)),
    ({"at_customize.offset": "abc"}, ("expected an offset such as 0x20000",)),
    ({"at_customize.offset": -0x1000}, ("-0x1000 is not a multiple", "4 KiB-aligned")),
    ({"at_customize.size": 0x1000}, ("0x1000; accepted: a multiple of 0x1000 larger than 0x1000",
                                     "the first sector holds at_customize.bin")),
    ({"at_customize.size": 0x1800}, ("0x1800; accepted: a multiple of 0x1000 larger than 0x1000",)),
    ({"at_customize.size": 0}, ("accepted: a multiple of 0x1000 larger than 0x1000",)),
    ({"at_customize.size": "big"}, ('expected a size such as 0xE0000 or "896K"',)),
])
def test_at_customize_region(tmp_path, changes, words):
    (dotted, value), = changes.items()
    only_problem(tmp_path, board(changes=changes), dotted, value, *words)


def test_at_customize_region_past_the_flash(tmp_path):
    text = board(changes={"flash.size": "1MB", "at_customize.size": 0xE1000})
    only_problem(tmp_path, text, "at_customize.size", 0xE1000,
                 "the region 0x20000-0x101000 ends past the 1M (0x100000) flash")


def test_at_customize_region_filling_the_flash_is_accepted(tmp_path):
    assert loads(tmp_path, board(changes={"flash.size": "1MB"})).at_customize_size == 0xE0000


def test_partition_past_the_flash(tmp_path):
    data = minimal()
    edit(data, "flash.size", "1MB")
    edit(data, "at_customize.offset", 0x80000)
    edit(data, "at_customize.size", 0x100000)
    data["at_customize"]["partitions"] = [extra(offset=0xFF000, size="8K")]
    problems = problems_of(tmp_path, to_toml(data))
    assert len(problems) == 2, problems
    check(problems[0], tmp_path / BOARD_NAME, "at_customize.size", 0x100000,
          "the region 0x80000-0x180000 ends past the 1M (0x100000) flash")
    check(problems[1], tmp_path / BOARD_NAME, "at_customize.partitions[extra].offset", 0xFF000,
          "0xff000-0x101000 ends past the 1M (0x100000) flash")


def test_partition_past_the_flash_of_an_esp8266_board(tmp_path):
    # the ESP8266 default layout (region 0xF0000-0x110000) needs more than 1MB
    text = extending('[flash]\nsize = "1MB"\n', base="WROOM-02")
    problems = problems_of(tmp_path, text)
    layout = STOCK_DIR / "layouts" / "module_esp8266_default.toml"
    check(problems[0], layout, "at_customize.size", 0x20000,
          "the region 0xf0000-0x110000 ends past the 1M (0x100000) flash")
    assert len(problems) > 1 and all("ends past the 1M (0x100000) flash" in str(p) for p in problems)
    assert all(p.key.startswith("at_customize.partitions[") and p.key.endswith("].offset") for p in problems[1:])


def test_duplicate_partition_name_in_one_file(tmp_path):
    text = board(add=[extra(name="user_data", offset=0x40000)])
    only_problem(tmp_path, text, "at_customize.partitions[user_data]", NO_VALUE,
                 "duplicate partition name; each name may appear once in a board")


def test_duplicate_partition_name_in_an_extending_file(tmp_path):
    text = extending(part_toml(name="fatfs", size="512K") + part_toml(name="fatfs", size="256K"))
    only_problem(tmp_path, text, "at_customize.partitions[fatfs]", NO_VALUE, "duplicate partition name")


def _many(n: int) -> str:
    data = minimal()
    data["at_customize"]["partitions"] = [
        {"name": f"p{i}", "type": 0x40, "subtype": i, "offset": 0x21000 + i * 0x1000, "size": "4K"} for i in range(n)]
    return to_toml(data)


def test_more_than_94_partitions(tmp_path):
    only_problem(tmp_path, _many(95), "at_customize.partitions", NO_VALUE,
                 "95 partitions; at_customize.bin holds at most 94")


def test_94_partitions_are_accepted(tmp_path):
    assert len(loads(tmp_path, _many(94)).partitions) == 94


# --- content ---------------------------------------------------------------------------------

def test_raw_content_larger_than_its_partition(tmp_path):
    write(tmp_path / "data" / "big.bin", "x" * 5000)
    text = board(add=[extra(source="data/big.bin")])
    only_problem(tmp_path, text, "at_customize.partitions[extra].size", "4K",
                 "the content is 5000 bytes (0x1388), larger than the partition's 4K (0x1000)")


def test_raw_content_that_fits_exactly(tmp_path):
    (tmp_path / "exact.bin").write_bytes(b"\0" * 4096)
    assert loads(tmp_path, board(add=[extra(source="exact.bin")])).partition("extra").content.size == 4096


def test_certificates_larger_than_their_partition(tmp_path):
    files = [CERTS / n for n in ("ca.crt", "client.crt", "mqtt_client.crt", "server.crt")]
    size = pki.pki_size(f.stat().st_size for f in files)
    assert size > 4096
    text = extending(part_toml(name="server_ca", size="4K", source=[str(f) for f in files]))
    only_problem(tmp_path, text, "at_customize.partitions[server_ca].size", "4K",
                 f"the content is {size} bytes (0x{size:x}), larger than the partition's 4K (0x1000)")


def test_gatt_table_larger_than_its_partition(tmp_path):
    rows = ["index,uuid_len,uuid,perm,val_max_len,val_cur_len,value", "0,16,0x2800,0x01,2,2,FFE0"]
    for i in range(60):
        rows += [f"{2 * i + 1},16,0x2803,0x01,1,1,02", f"{2 * i + 2},16,0x{0xA000 + i:X},0x01,64,32,{'AB' * 32}"]
    write(tmp_path / "big.csv", "\n".join(rows) + "\n")
    text = extending(part_toml(name="ble_data", size="4K", source="big.csv"))
    only_problem(tmp_path, text, "at_customize.partitions[ble_data].size", "4K",
                 "the content is", "larger than the partition's 4K (0x1000)")


@pytest.mark.parametrize("name, sources, words", [
    ("factory_param", ["x.bin"], "factory_param is built from the [factory_param] table; remove its source"),
    ("ble_data", ["a.csv", "b.csv"], "2 files; ble_data is built from exactly one GATT CSV"),
    ("fatfs", ["a.bin", "b.bin"], "2 files; a user partition is one file copied as it is"),
])
def test_wrong_number_of_sources(tmp_path, name, sources, words):
    for s in sources:
        write(tmp_path / s, "0\n")
    only_problem(tmp_path, extending(part_toml(name=name, source=sources)),
                 f"at_customize.partitions[{name}].source", NO_VALUE, words)


@pytest.mark.parametrize("name, source", [
    ("server_cert", "nope.crt"), ("server_key", "certs/nope.key"), ("client_ca", "../nope/ca.crt"),
    ("ble_data", "gatt.csv"), ("fatfs", "fat.img"),
])
def test_missing_source_file(tmp_path, name, source):
    text = extending(part_toml(name=name, source=[source]))
    p = only_problem(tmp_path, text, f"at_customize.partitions[{name}].source", ANY, "no such file")
    assert p.value.endswith(Path(source).name) and (tmp_path / source).resolve().name in str(p)


def test_source_that_is_a_folder(tmp_path):
    (tmp_path / "certs").mkdir()
    p = only_problem(tmp_path, extending(part_toml(name="server_ca", source="certs")),
                     "at_customize.partitions[server_ca].source", ANY, "is a folder; expected a file")
    assert p.value.endswith("certs")


def test_missing_source_in_the_base_names_the_base(tmp_path):
    base = write(tmp_path / "base" / "base.toml", board().replace(
        'name = "user_data"', 'name = "user_data"\nsource = "missing.bin"'))
    p = only_problem(tmp_path, 'extends = "base/base.toml"\n', "at_customize.partitions[user_data].source", ANY,
                     "no such file", file=base)
    assert p.value.endswith("base/missing.bin")


# --- certificates and keys -------------------------------------------------------------------

CERT_CASES = [
    ("server_cert", "garbage.crt", b"hello, I am not a certificate\n", "not a PEM or DER X.509 certificate"),
    ("client_cert", "empty.crt", b"", "the file is empty; expected a PEM or DER certificate"),
    ("mqtt_cert", "blank.crt", b"\n \n", "the file is empty; expected a PEM or DER certificate"),
    ("wpa2_cert", "short.pem", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
     "not a PEM or DER X.509 certificate"),
    ("server_ca", "binary.der", bytes(range(256)), "not a PEM or DER X.509 certificate"),
    ("mqtt_ca", "truncated.crt", (CERTS / "ca.crt").read_bytes()[:600], "not a PEM or DER X.509 certificate"),
]


@pytest.mark.parametrize("name, file, data, words", CERT_CASES, ids=[c[1] for c in CERT_CASES])
def test_certificate_that_does_not_parse(tmp_path, name, file, data, words):
    (tmp_path / file).write_bytes(data)
    p = only_problem(tmp_path, extending(part_toml(name=name, source=file)),
                     f"at_customize.partitions[{name}].source", ANY, words)
    assert p.value.endswith(file)


@pytest.mark.parametrize("name", ["server_cert", "client_ca", "wpa2_ca"])
def test_key_where_a_certificate_is_expected(tmp_path, name, fresh_keys):
    key = fresh_keys / "ec.key"
    p = only_problem(tmp_path, extending(part_toml(name=name, source=str(key))),
                     f"at_customize.partitions[{name}].source", ANY, "holds a private key, expected a certificate")
    assert p.value.endswith("ec.key")
    assert_no_key_material(str(p), key)


KEY_CASES = [
    ("garbage.key", "not a PEM or DER private key"),
    ("empty.key", "the file is empty; expected a PEM or DER private key"),
    ("corrupt.key", "not a PEM or DER private key"),
    ("a_cert.key", "holds no private key (expected -----BEGIN ... PRIVATE KEY-----)"),
    ("der_cert.key", "not a PEM or DER private key"),
]


@pytest.mark.parametrize("file, words", KEY_CASES, ids=[c[0] for c in KEY_CASES])
def test_key_that_does_not_parse(tmp_path, fresh_keys, file, words):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization as s

    inputs = {
        "garbage.key": b"\x30\x03\x02\x01\x00",
        "empty.key": b"",
        "corrupt.key": (fresh_keys / "corrupt.key").read_bytes(),
        "a_cert.key": (CERTS / "server.crt").read_bytes(),
        "der_cert.key": x509.load_pem_x509_certificate((CERTS / "server.crt").read_bytes()).public_bytes(s.Encoding.DER),
    }
    (tmp_path / file).write_bytes(inputs[file])
    with pytest.raises(BoardError) as info:
        loads(tmp_path, extending(part_toml(name="server_key", source=file)))
    (p,) = info.value.problems
    check(p, tmp_path / BOARD_NAME, "at_customize.partitions[server_key].source", ANY, words)
    assert p.value.endswith(file)
    assert_no_key_material(str(info.value), fresh_keys / "corrupt.key")


@pytest.mark.parametrize("file", ["encrypted_pkcs8.key", "encrypted_trad.key", "encrypted.der"])
@pytest.mark.parametrize("name", ["server_key", "mqtt_key"])
def test_encrypted_key(tmp_path, fresh_keys, name, file):
    with pytest.raises(BoardError) as info:
        loads(tmp_path, extending(part_toml(name=name, source=str(fresh_keys / file))))
    (p,) = info.value.problems
    check(p, tmp_path / BOARD_NAME, f"at_customize.partitions[{name}].source", ANY,
          "the private key is encrypted", "decrypt it first", "openssl pkey -in KEY -out KEY.plain")
    assert p.value.endswith(file)
    if file.endswith(".key"):
        assert_no_key_material(str(info.value), fresh_keys / file)


@pytest.mark.parametrize("key_file, name, cert", [
    ("rsa.key", "server_key", "server.crt"), ("ec.key", "mqtt_key", "mqtt_client.crt"),
    ("ec.der", "client_key", "client.crt"), ("rsa.key", "wpa2_key", "wpa2_client.crt"),
])
def test_key_that_does_not_belong_to_its_certificate(tmp_path, fresh_keys, key_file, name, cert):
    with pytest.raises(BoardError) as info:
        loads(tmp_path, extending(part_toml(name=name, source=str(fresh_keys / key_file))))
    (p,) = info.value.problems
    use = name.split("_")[0]
    check(p, tmp_path / BOARD_NAME, f"at_customize.partitions[{name}].source", NO_VALUE,
          f"key 0 ({key_file}) does not belong to certificate 0 of {use}_cert ({cert})",
          "keys pair with certificates by position in file-name order")
    for f in ("rsa.key", "ec.key"):
        assert_no_key_material(str(info.value), fresh_keys / f)


def test_key_of_another_certificate(tmp_path):
    text = extending(part_toml(name="server_key", source=str(CERTS / "client.key")))
    only_problem(tmp_path, text, "at_customize.partitions[server_key].source", NO_VALUE,
                 "key 0 (client.key) does not belong to certificate 0 of server_cert (server.crt)")


def test_certificate_replaced_without_its_key(tmp_path):
    # the new certificate comes from this file, the key it no longer matches from the stock layout
    text = extending(part_toml(name="server_cert", source=str(CERTS / "client.crt")))
    p = only_problem(tmp_path, text, "at_customize.partitions[server_key].source", NO_VALUE,
                     "key 0 (server.key) does not belong to certificate 0 of server_cert (client.crt)",
                     file=STOCK_DIR / "layouts" / "module_esp32_default.toml")
    assert p.file.endswith("module_esp32_default.toml")


def test_more_keys_than_certificates(tmp_path, fresh_keys):
    text = extending(part_toml(name="client_key", source=[str(CERTS / "client.key"), str(fresh_keys / "rsa.key")]))
    with pytest.raises(BoardError) as info:
        loads(tmp_path, text)
    (p,) = info.value.problems
    check(p, tmp_path / BOARD_NAME, "at_customize.partitions[client_key].source", NO_VALUE,
          "2 key(s) for 1 certificate(s) in client_cert", "each certificate needs the key of the same position")
    assert_no_key_material(str(info.value), fresh_keys / "rsa.key", CERTS / "client.key")


def test_more_certificates_than_keys(tmp_path):
    text = extending(part_toml(name="client_cert", source=[str(CERTS / "client.crt"), str(CERTS / "server.crt")]))
    only_problem(tmp_path, text, "at_customize.partitions[client_key].source", NO_VALUE,
                 "1 key(s) for 2 certificate(s) in client_cert",
                 file=STOCK_DIR / "layouts" / "module_esp32_default.toml")


def test_matching_pairs_in_file_name_order_are_accepted(tmp_path):
    # a_*.crt sorts before b_*.crt, and a_*.key before b_*.key: item i pairs with item i
    for n, (c, k) in {"a": ("client.crt", "client.key"), "b": ("server.crt", "server.key")}.items():
        (tmp_path / f"{n}.crt").write_bytes((CERTS / c).read_bytes())
        (tmp_path / f"{n}.key").write_bytes((CERTS / k).read_bytes())
    text = extending(part_toml(name="client_cert", source=["b.crt", "a.crt"])
                     + part_toml(name="client_key", source=["a.key", "b.key"]))
    b = loads(tmp_path, text)
    assert [Path(s).name for s in b.partition("client_key").sources] == ["a.key", "b.key"]


# --- GATT tables ----------------------------------------------------------------------------

GATT_HEADER = GATT_COLUMNS + "\n"
GATT_OK = "0,16,0x2800,0x01,2,2,FFE0\n1,16,0x2803,0x01,1,1,02\n2,16,0xFFE1,0x01,32,2,3031\n"
GATT_CASES = [
    ("perm", GATT_HEADER + "0,16,0x2800,0xZZ,2,2,FFE0\n", "line 2, perm = '0xZZ': not hexadecimal (write it as 0x11)"),
    ("perm-decimal-word", GATT_HEADER + GATT_OK + "3,16,0xFFE2,read,32,0,\n", "line 5, perm = 'read': not hexadecimal"),
    ("uuid", GATT_HEADER + "0,16,0x28G0,0x01,2,2,FFE0\n", "line 2, uuid = '0x28G0': not hexadecimal"),
    ("value", GATT_HEADER + "0,16,0x2800,0x01,2,2,FFEX\n", "line 2, value = 'FFEX': not hexadecimal bytes (write them as 3031 without 0x)"),
    ("value-0x", GATT_HEADER + "0,16,0x2800,0x01,2,2,0xFFE0\n", "line 2, value = '0xFFE0': not hexadecimal bytes"),
    ("uuid_len-17", GATT_HEADER + "0,17,0x2800,0x01,2,2,FFE0\n", "line 2, uuid_len = 17: expected 16, 32 or 128"),
    ("uuid_len-64", GATT_HEADER + GATT_OK.replace("2,16,0xFFE1", "2,64,0xFFE1"), "line 4, uuid_len = 64: expected 16, 32 or 128"),
    ("uuid_len-word", GATT_HEADER + "0,sixteen,0x2800,0x01,2,2,FFE0\n", "line 2, uuid_len = 'sixteen': expected a decimal integer"),
    ("uuid-too-long", GATT_HEADER + "0,16,0x123456,0x01,2,2,FFE0\n", "line 2, uuid = 0x123456: longer than uuid_len = 16 bits"),
    ("val_cur_len", GATT_HEADER + "0,16,0x2800,0x01,2,3,FFE0\n", "line 2, val_cur_len = 3: larger than val_max_len = 2"),
    ("value-too-long", GATT_HEADER + "0,16,0x2800,0x01,2,2,FFE0AA\n", "line 2, value: 3 bytes, larger than val_max_len = 2"),
    ("first-not-service", GATT_HEADER + "0,16,0x2803,0x01,1,1,02\n",
     "line 2, uuid = 0x2803: the first row must declare a service (uuid 0x2800 or 0x2801)"),
    ("value-without-2803", GATT_HEADER + "0,16,0x2800,0x01,2,2,FFE0\n1,16,0xFFE1,0x01,32,9,6174666163746F7279\n",
     "line 3, uuid = 0xFFE1: a characteristic value must follow its declaration row (uuid 0x2803)"),
    ("second-value-without-2803", GATT_HEADER + GATT_OK + "3,16,0xFFE2,0x01,32,0,\n",
     "line 5, uuid = 0xFFE2: a characteristic value must follow its declaration row (uuid 0x2803)"),
    ("descriptor-first", GATT_HEADER + "0,16,0x2800,0x01,2,2,FFE0\n1,16,0x2901,0x01,32,2,4142\n",
     "line 3, uuid = 0x2901: a descriptor must follow a characteristic value"),
    ("empty", "", "the file is empty; expected the header index,uuid_len,uuid,perm,val_max_len,val_cur_len,value"),
    ("header", "a,b,c\n1,2,3\n", "line 1: header 'a,b,c'; expected the columns index,uuid_len,uuid,perm"),
    ("no-rows", GATT_HEADER, "no rows after the header; expected at least a service declaration (uuid 0x2800)"),
    ("cells", GATT_HEADER + "0,16,0x2800,0x01,2,2\n", "line 2: 6 cells, expected 7"),
]


@pytest.mark.parametrize("csv_text, words", [c[1:] for c in GATT_CASES], ids=[c[0] for c in GATT_CASES])
def test_gatt_csv(tmp_path, csv_text, words):
    write(tmp_path / "ble" / "gatt.csv", csv_text)
    p = only_problem(tmp_path, extending(part_toml(name="ble_data", source="ble/gatt.csv")),
                     "at_customize.partitions[ble_data].source", ANY, words)
    assert p.value.endswith("ble/gatt.csv")


def test_gatt_csv_accepted(tmp_path):
    write(tmp_path / "gatt.csv", GATT_HEADER + GATT_OK + "3,16,0x2901,0x01,32,2,4142\n\n9,junk after the end\n")
    assert loads(tmp_path, extending(part_toml(name="ble_data", source="gatt.csv"))).partition("ble_data").content


def test_gatt_csv_not_utf8(tmp_path):
    (tmp_path / "gatt.csv").write_bytes(GATT_HEADER.encode() + b"0,16,0x2800,0x01,2,2,\xff\n")
    only_problem(tmp_path, extending(part_toml(name="ble_data", source="gatt.csv")),
                 "at_customize.partitions[ble_data].source", ANY, "not UTF-8 text", "expected a GATT CSV")


# --- extends -------------------------------------------------------------------------------

def test_extends_unknown_board(tmp_path):
    p = only_problem(tmp_path, extending(base="WROOM-33"), "extends", "WROOM-33",
                     "no board with this id and no such file",
                     "accepted: a board id (", ".toml path relative to this file")
    for board_id in ("WROOM-32", "ESP8266_1MB", "ESP32C3-MINI-1", "ESP32S2-WROOM"):
        assert board_id in str(p)


def test_extends_missing_path(tmp_path):
    only_problem(tmp_path, extending(base="layouts/nope.toml"), "extends", "layouts/nope.toml",
                 "no board with this id and no such file")


def test_extends_cycle_of_two(tmp_path):
    write(tmp_path / "b.toml", 'extends = "a.toml"\n')
    only_problem(tmp_path, 'extends = "b.toml"\n', "extends", NO_VALUE, "cycle in extends: a.toml -> b.toml -> a.toml",
                 name="a.toml", file=tmp_path / "b.toml")


def test_extends_cycle_of_three(tmp_path):
    write(tmp_path / "b.toml", 'extends = "sub/c.toml"\n')
    write(tmp_path / "sub" / "c.toml", 'extends = "../a.toml"\n')
    only_problem(tmp_path, 'extends = "b.toml"\n', "extends", NO_VALUE,
                 "cycle in extends: a.toml -> b.toml -> c.toml -> a.toml", name="a.toml", file=tmp_path / "sub" / "c.toml")


def test_extends_itself(tmp_path):
    only_problem(tmp_path, 'extends = "a.toml"\n' + board(), "extends", NO_VALUE,
                 "cycle in extends: a.toml -> a.toml", name="a.toml")


def test_extends_itself_by_board_id(tmp_path):
    reg = BoardRegistry()
    path = write(tmp_path / "boards" / "Loop.toml", 'extends = "LOOP"\n' + board())
    reg.add_folder(str(tmp_path / "boards"))
    with pytest.raises(BoardError) as info:
        load_board("loop", reg)
    (p,) = info.value.problems
    check(p, path, "extends", NO_VALUE, "cycle in extends: Loop.toml -> Loop.toml")


def test_base_with_a_problem_is_named(tmp_path):
    base = write(tmp_path / "base.toml", board(changes={"factory_param.uart_tx_pin": 20}))
    only_problem(tmp_path, 'extends = "base.toml"\n[module]\nname = "LEAF"\n', "factory_param.uart_tx_pin", 20,
                 "ESP32 has no GPIO20", file=base)


def test_leaf_fixes_the_base(tmp_path):
    write(tmp_path / "base.toml", board(changes={"factory_param.uart_tx_pin": 20}))
    text = 'extends = "base.toml"\n[factory_param]\nuart_tx_pin = 18\n'
    assert loads(tmp_path, text).factory_param["uart_tx_pin"] == 18


def test_remove_a_partition_that_is_not_inherited(tmp_path):
    only_problem(tmp_path, extending(part_toml(name="server_crt", remove=True)),
                 "at_customize.partitions[server_crt].remove", True, "no inherited partition of this name to remove")


def test_remove_in_a_board_without_extends(tmp_path):
    only_problem(tmp_path, board(add=[{"name": "gone", "remove": True}]),
                 "at_customize.partitions[gone].remove", True, "no inherited partition of this name to remove")


def test_remove_an_inherited_partition(tmp_path):
    b = loads(tmp_path, extending(part_toml(name="fatfs", remove=True)))
    assert b.partition("fatfs") is None and b.partition("server_cert") is not None


# --- warnings, not errors -------------------------------------------------------------------

def test_duplicate_type_and_subtype_builds_with_a_warning(tmp_path):
    b = loads(tmp_path, board("esp32c3", add=[extra(subtype=0x42)]))
    (warning,) = b.warnings
    assert warning.startswith(str(tmp_path / BOARD_NAME) + ": ")
    assert "at_customize.partitions[extra].subtype = 66" in warning
    assert "the same type 0x40 and subtype as partition user_data" in warning and "so this builds" in warning
    assert b.partition("extra").subtype == b.partition("user_data").subtype


def test_stock_esp8266_layout_builds_with_a_warning(registry):
    b = load_board("WROOM-02", registry)
    assert any("factory_param" in w and "wpa2_cert" in w for w in b.warnings), b.warnings


# --- every problem at once -------------------------------------------------------------------

def test_every_problem_of_a_board_is_reported_together(tmp_path):
    text = board(changes={"factory_param.uart_tx_pin": 20, "flash.size": "3MB"},
                 add=[extra(source="missing.bin")])
    problems = problems_of(tmp_path, text)
    assert [p.key for p in problems] == ["flash.size", "factory_param.uart_tx_pin",
                                         "at_customize.partitions[extra].source"], problems
    check(problems[0], tmp_path / BOARD_NAME, "flash.size", "3MB", "ESP32 accepts")
    check(problems[1], tmp_path / BOARD_NAME, "factory_param.uart_tx_pin", 20, "ESP32 has no GPIO20")
    check(problems[2], tmp_path / BOARD_NAME, "at_customize.partitions[extra].source", ANY, "no such file")


def test_every_key_problem_of_a_file_is_reported_together(tmp_path):
    text = board(changes={"module.nmae": "X", "flash.mode": 2, "at_customize.partitions[user_data].sorce": "x"})
    problems = problems_of(tmp_path, text)
    assert [p.key for p in problems] == ["module.nmae", "flash.mode", "at_customize.partitions[user_data].sorce"]
    assert "unknown key" in str(problems[0]) and "expected a string" in str(problems[1])


def test_many_problems_across_tables_and_partitions(tmp_path):
    text = board(changes={
        "module.name": "N" * 40, "module.at_version": "3", "flash.mode": "fast",
        "factory_param.tx_max_power": 100, "factory_param.uart_rts_pin": 34, "factory_param.country_code": "CHINA",
        "at_customize.partitions[user_data].offset": 0x31800,
    }, add=[extra(offset=0x20000), extra(name="x" * 17, offset=0x50000)])
    problems = problems_of(tmp_path, text)
    keys = {p.key for p in problems}
    assert keys == {"module.name", "module.at_version", "flash.mode", "factory_param.tx_max_power",
                    "factory_param.uart_rts_pin", "factory_param.country_code",
                    "at_customize.partitions[user_data].offset", "at_customize.partitions[extra].offset",
                    f"at_customize.partitions[{'x' * 17}].name"}, problems
    assert all(str(p).startswith(str(tmp_path / BOARD_NAME) + ": ") for p in problems)


SWEEP_KEYS = ["module.name", "module.chip", "module.platform", "module.at_version", "flash.mode", "flash.freq",
              "flash.size", *[f"factory_param.{f}" for f in FP_INT_FIELDS], "factory_param.country_code",
              "at_customize.offset", "at_customize.size",
              *[f"at_customize.partitions[factory_param].{k}" for k in ("type", "subtype", "offset", "size", "source")]]
SWEEP_VALUES = [0, -1, 2 ** 40, "", "0x", "-0x1000", "1M", "esp32", "app", "\u00e9", True, [], ["x"], 1.0]


@pytest.mark.parametrize("dotted", SWEEP_KEYS)
def test_no_bad_value_crashes_the_checks(tmp_path, dotted):
    """Whatever a key holds, loading gives a board or a BoardError whose problems name file and key."""
    for value in SWEEP_VALUES:
        data = edit(minimal(), dotted, value)
        try:
            loads(tmp_path, to_toml(data))
        except BoardError as err:
            assert err.problems and all(p.file and p.key for p in err.problems), (value, err.problems)


def test_no_missing_value_crashes_the_checks(tmp_path):
    optional = ("module.name", "module.platform", "module.at_version", "factory_param.magic_flag",
                "factory_param.version", "factory_param.reserved1", "at_customize.partitions[factory_param].source")
    for dotted in SWEEP_KEYS + ["module", "flash", "factory_param", "at_customize"]:
        if dotted in optional:
            continue
        with pytest.raises(BoardError) as info:
            loads(tmp_path, to_toml(edit(minimal(), dotted)))
        assert all(p.file and p.key for p in info.value.problems), (dotted, info.value.problems)


# --- the library: unknown board ids ----------------------------------------------------------

def test_unknown_board_id(registry):
    with pytest.raises(BoardError) as info:
        load_board("WROOM-33", registry)
    (p,) = info.value.problems
    check(p, None, "board", "WROOM-33", "no board with this id and no such .toml file", "'all'",
          "the path of a .toml file")
    assert p.file is None and all(i in str(p) for i in registry.ids())


def test_board_path_that_does_not_exist(registry, tmp_path):
    with pytest.raises(BoardError) as info:
        load_board(str(tmp_path / "nope.toml"), registry)
    (p,) = info.value.problems
    check(p, None, "board", str(tmp_path / "nope.toml"), "no such .toml file")


# --- end to end: scons ----------------------------------------------------------------------

def test_scons_reports_every_problem_and_writes_nothing(tmp_path, fresh_keys):
    (tmp_path / "secret.key").write_bytes((fresh_keys / "corrupt.key").read_bytes())
    text = extending('[flash]\nsize = "3MB"\n[factory_param]\nuart_tx_pin = 20\n'
                     + part_toml(name="server_key", source="secret.key"))
    path = write(tmp_path / "bad-board.toml", text)
    out = tmp_path / "out"
    result = run_scons("board=" + str(path), "build_dir=" + str(out), cwd=tmp_path)
    lines = assert_refused(result, out)
    expected = ['flash.size = "3MB": ESP32 accepts', "factory_param.uart_tx_pin = 20: ESP32 has no GPIO20",
                "at_customize.partitions[server_key].source = "]
    assert len(lines) == len(expected), result.stderr
    for line, words in zip(lines, expected):
        assert "bad-board.toml: " in line and words in line, line
    assert "secret.key" in lines[2] and "not a PEM or DER private key" in lines[2]
    assert_no_key_material(result.stdout + result.stderr, fresh_keys / "corrupt.key")
    assert not (out / "bad-board").exists()


def test_scons_toml_syntax_error(tmp_path):
    path = write(tmp_path / "broken.toml", 'extends = "WROOM-32"\n[flash]\nmode = dio\n')
    out = tmp_path / "out"
    result = run_scons("board=" + str(path), "build_dir=" + str(out), cwd=tmp_path)
    (line,) = assert_refused(result, out)
    assert "broken.toml: TOML syntax error" in line and "line 3" in line


def test_scons_extends_cycle(tmp_path):
    write(tmp_path / "b.toml", 'extends = "a.toml"\n')
    path = write(tmp_path / "a.toml", 'extends = "b.toml"\n')
    out = tmp_path / "out"
    result = run_scons("board=a.toml", "build_dir=" + str(out), cwd=tmp_path)
    (line,) = assert_refused(result, out)
    assert "b.toml: extends: cycle in extends: a.toml -> b.toml -> a.toml" in line
    assert path.exists()


def test_scons_unknown_variable(tmp_path):
    out = tmp_path / "out"
    result = run_scons("bord=WROOM-32", "build_dir=" + str(out), cwd=tmp_path)
    assert_refused(result, out)
    assert "unknown variable bord=WROOM-32" in result.stderr
    assert re.search(r"accepted: board, build_dir, firmware, plugins, sign_key, sandbox, release, devices, device_images, shard, VERBOSE", result.stderr), result.stderr


def test_scons_unknown_board_id(tmp_path):
    out = tmp_path / "out"
    result = run_scons("board=WROOM-33", "build_dir=" + str(out), cwd=tmp_path)
    (line,) = assert_refused(result, out)
    assert 'board = "WROOM-33": no board with this id' in line
    assert all(i in line for i in ("WROOM-32", "WROOM-02", "ESP32C3-MINI-1", "ESP32S2-SOLO", "'all'"))


def test_a_chip_without_the_default_release_must_name_one(tmp_path):
    only_problem(tmp_path, board("esp8266", drop=["module.at_version"]), "module.at_version", NO_VALUE,
                 'missing; there is no ESP-AT 2.4 (the default) for ESP8266: set one of '
                 '"2.0", "2.1", "2.2" or "2.3"')


# --- values shown as the board file wrote them ---------------------------------------------------

def _lines(tmp_path, text: str):
    return [str(p) for p in problems_of(tmp_path, text)]


def test_offsets_and_sizes_are_shown_as_written(tmp_path):
    """TOML reads 0x21001 and 135169 alike; a message repeats whichever the user wrote."""
    lines = _lines(tmp_path, extending("""
        [[at_customize.partitions]]
        name = "hex_x"
        type = 0x40
        subtype = 0x42
        offset = 0x21_001   # a comment with 0x99 in it
        size = 0x1000

        [[at_customize.partitions]]
        name = "dec_y"
        type = 0x40
        subtype = 0x43
        offset = 135169
        size = 4096

        [[at_customize.partitions]]
        name = "out_z"
        type = 0x40
        subtype = 0x44
        offset = 0x1000
        size = "4K"
        """))
    name = display_path(tmp_path / BOARD_NAME)
    assert f"{name}: at_customize.partitions[hex_x].offset = 0x21_001: 0x21001 is not a multiple of 0x1000; " \
           "accepted: an offset 4 KiB-aligned for a data partition" in lines
    assert f"{name}: at_customize.partitions[dec_y].offset = 135169: 0x21001 is not a multiple of 0x1000; " \
           "accepted: an offset 4 KiB-aligned for a data partition" in lines
    assert any(line.startswith(f"{name}: at_customize.partitions[out_z].offset = 0x1000: 0x1000-0x2000 is outside "
                               "the AT partition space") for line in lines), lines


def test_an_inherited_offset_is_shown_as_its_file_wrote_it(tmp_path):
    """The stock layout writes ble_data's offset 0x21000; the overlap names it so, in that file."""
    lines = _lines(tmp_path, extending(part_toml(name="user_z", type=0x40, subtype=0x44, offset=0x21000, size="4K")))
    layout = display_path(STOCK_DIR / "layouts" / "module_esp32_default.toml")
    assert f"{layout}: at_customize.partitions[ble_data].offset = 0x21000: 0x21000-0x24000 overlaps partition " \
           "user_z (0x21000-0x22000)" in lines


def test_a_later_file_written_in_decimal_is_shown_in_decimal(tmp_path):
    assert "size = 917504\n" in board()
    write(tmp_path / "base.toml", board().replace("size = 917504\n", "size = 0xE0001\n"))
    base_lines = _lines(tmp_path, 'extends = "base.toml"\n')
    assert any("at_customize.size = 0xE0001: 0xe0001; accepted" in line for line in base_lines), base_lines
    lines = _lines(tmp_path, 'extends = "base.toml"\n[at_customize]\nsize = 917505\n')
    assert any(line.startswith(f"{display_path(tmp_path / BOARD_NAME)}: at_customize.size = 917505: 0xe0001; accepted") for line in lines), lines


def test_an_integer_in_a_string_or_comment_is_not_taken_for_a_value(tmp_path):
    from atfactory.toml_layers import integer_literals, tomllib

    text = ('a = 0x10  # b = 0x20\nb = "0x30 \\" 0x40"\nc = \'0x50\'\nd = """\n0x60 ""\n"""\ne = [0b11, 1_000, 0o17]\n'
            'f = 2030-01-01T10:00:00-07:00\ng = 1.5e3\n0x70 = 0x80\n')
    assert integer_literals(text, tomllib.loads(text)) == {
        ("a",): "0x10", ("e", 0): "0b11", ("e", 1): "1_000", ("e", 2): "0o17", ("0x70",): "0x80"}
