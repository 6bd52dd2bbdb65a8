"""The mfg_nvs partition (ESP-AT v3.1+) from board files: every reference vector, and what is refused.

Each reference vector's mfg_nvs.csv says what Espressif's build put in; the test writes the board
file a user would write for that module (module name, chip, at_version, [factory_param],
[mfg_nvs] with the same certificate files and GATT table, the partition at its offset and size),
loads it like any board and compares the partition the build renders with mfg_nvs.bin.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:   # Python < 3.11
    import tomli as tomllib

from atfactory.artifacts import plan_board, render_artifact
from atfactory.errors import BoardError
from atfactory.formats.mfg_nvs import BOARD_KEY_OF
from helpers import CERTS, board_from_text, reference_dir, run_scons, to_toml, toml_value, write

PREFIX = "./components/customized_partitions/"
# stray_files: a README beside a lone certificate makes Espressif's build call it "<set>.0", which
# no board can ask for (stray files are refused).  at_py_modify_bin (at.py's own generator, family A,
# over v4.1 keys) has a test of its own below: its CSV names copies of the stock files.
NOT_FROM_BOARDS = ("stray_files", "at_py_modify_bin")


def _records():
    index = reference_dir() / "mfg_nvs" / "index.json"
    if not index.is_file():
        return [pytest.param(None, id="reference-absent")]
    return [pytest.param(r, id=r["path"]) for r in json.loads(index.read_text())
            if not any(r["path"].endswith(n) for n in NOT_FROM_BOARDS)]


def _csv(path: Path):
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(line for line in f if not line.startswith("#")):
            yield row["key"], row["type"], row["encoding"], row["value"]


def board_for(reference: Path, record: dict) -> str:
    """The board file text that asks for what the vector's build wrote."""
    mfg = reference / "mfg_nvs"
    variant = mfg / record["inputs"]
    root = variant if (variant / "raw_data").is_dir() else mfg / "inputs" / record["tag"] / "common"
    tables = {"factory_param": {}, "mfg_nvs": {}}
    namespace = None
    module_name = None
    for key, kind, encoding, value in _csv(mfg / record["path"] / "mfg_nvs.csv"):
        if kind == "namespace":
            namespace = key
        elif namespace == "factory_param":
            if key == "module_name":
                module_name = value
            else:
                tables["factory_param"][BOARD_KEY_OF[key]] = value if encoding == "string" else int(value)
        elif namespace == "ble_data":
            tables["mfg_nvs"]["ble_data"] = str(root / "raw_data/ble_data/gatts_data.csv")
        else:
            assert value.startswith(PREFIX), value
            tables["mfg_nvs"].setdefault(namespace, []).append(str(root / value[len(PREFIX):]))
    chip = record["platform"][len("PLATFORM_"):].lower()
    version = ".".join(record["tag"][1:].split(".")[:2])
    offset, size = int(record["mfg_nvs_offset"], 16), record["mfg_nvs_size_bytes"]
    freq = {"esp32c2": "60m"}.get(chip, "40m")
    lines = ["[module]", f"name = {toml_value(module_name)}", f'chip = "{chip}"', f'at_version = "{version}"', "",
             "[flash]", 'mode = "dio"', f'freq = "{freq}"', 'size = "4MB"', ""]
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        lines.append("")
    lines += ["[at_customize]", f"offset = 0x{offset - 0x1000:X}", f"size = 0x{size + 0x1000:X}", "",
              "[[at_customize.partitions]]", 'name = "mfg_nvs"', 'type = "data"', 'subtype = "nvs"',
              f"offset = 0x{offset:X}", f"size = 0x{size:X}"]
    return "\n".join(lines) + "\n"


def test_the_at_py_modify_bin_vector_from_a_board_file(reference, tmp_path):
    """tools/at.py modify_bin rewrites mfg_nvs with its own copy of the old generator (family A)
    over v5.0's keys: a board says so with [mfg_nvs] generator_family = "A"."""
    records = {r["path"]: r for r in json.loads((reference / "mfg_nvs/index.json").read_text())}
    record = records["variants/v5.0.1.0/at_py_modify_bin"]
    stock = board_for(reference, records["v5.0.1.0/PLATFORM_ESP32/WROOM-32"])
    at_py = list(_csv(reference / "mfg_nvs" / record["path"] / "mfg_nvs.csv"))
    # its vN.txt are copies of the stock files, in the stock CSV's order
    stock_files = [v for _, kind, _, v in _csv(reference / "mfg_nvs/v5.0.1.0/PLATFORM_ESP32/WROOM-32/mfg_nvs.csv")
                   if kind == "file"]
    assert [v for _, kind, _, v in at_py if kind == "file"] == [f"./mfg_nvs/v{n}.txt" for n in range(1, 13)]
    assert len(stock_files) == 12
    gatt = write(tmp_path / "gatts_data.csv", "# index,uuid_len,uuid,perm,max_len,cur_len,value\n" +
                 "".join(v + "\n" for k, kind, _, v in at_py if k.startswith("cfg")))
    data = tomllib.loads(stock)
    data["module"]["name"] = next(v for k, _, _, v in at_py if k == "module_name")
    data["factory_param"].update({BOARD_KEY_OF[k]: (v if e == "string" else int(v)) for k, _, e, v in at_py
                                  if k in BOARD_KEY_OF and k != "module_name"})
    data["mfg_nvs"].update(generator_family="A", ble_data=str(gatt))
    text = to_toml(data)
    expected = (reference / "mfg_nvs" / record["path"] / "mfg_nvs.bin").read_bytes()
    data = rendered(board_from_text(tmp_path, text))
    assert data == expected
    from atfactory import nvs
    assert nvs.decode_nvs(data).family == "A"


def test_a_bad_generator_family_is_refused(tmp_path):
    [problem] = _problems(tmp_path, _wroom(tmp_path, extra='generator_family = "C"'))
    assert ': mfg_nvs.generator_family: unknown generator family \'C\'; accepted: A, B' in problem


def rendered(board) -> bytes:
    content = board.partition("mfg_nvs").content
    return render_artifact(content.kind, content.spec, content.sources)


@pytest.mark.parametrize("record", _records())
def test_every_vector_from_a_board_file(reference, record, tmp_path):
    board = board_from_text(tmp_path, board_for(reference, record))
    expected = (reference / "mfg_nvs" / record["path"] / "mfg_nvs.bin").read_bytes()
    assert rendered(board) == expected


def _wroom(tmp_path: Path, at_version: str = "5.0", extra: str = "", fp_extra: str = "", name: str = "WROOM-32") -> str:
    return f"""
[module]
name = "{name}"
chip = "esp32"
at_version = "{at_version}"

[flash]
mode = "dio"
freq = "40m"
size = "4MB"

[factory_param]
tx_max_power = 78
uart_port = 1
start_channel = 1
channel_num = 13
country_code = "CN"
uart_baudrate = 115200
uart_tx_pin = 17
uart_rx_pin = 16
uart_cts_pin = 15
uart_rts_pin = 14
{fp_extra}
[mfg_nvs]
server_cert = ["{CERTS / 'server.crt'}"]
server_key = ["{CERTS / 'server.key'}"]
{extra}
[at_customize]
offset = 0x20000
size = 0xE0000

[[at_customize.partitions]]
name = "mfg_nvs"
type = "data"
subtype = "nvs"
offset = 0x21000
size = "112K"
"""


def _problems(tmp_path, text):
    with pytest.raises(BoardError) as err:
        board_from_text(tmp_path, text)
    return [str(p) for p in err.value.problems]


def test_a_board_of_our_own_certificates_builds_and_decodes(tmp_path):
    from atfactory import nvs

    board = board_from_text(tmp_path, _wroom(tmp_path))
    image = nvs.decode_nvs(rendered(board))
    assert image.family == "B"
    assert [ns.name for ns in image.namespaces] == ["server_cert", "server_key", "factory_param"]
    items = {(i.namespace, i.key): i.value for i in image.items}
    assert items[("server_cert", "server_cert")] == (CERTS / "server.crt").read_bytes()
    assert items[("factory_param", "module_name")] == "WROOM-32"
    assert items[("factory_param", "sys_store")] == 1
    assert items[("factory_param", "max_tx_power")] == 78
    assert board.partition("mfg_nvs").content.secret   # it holds a private key


@pytest.mark.parametrize("at_version, family, has_sys_store", [("3.1", "A", False), ("4.0", "A", False),
                                                               ("4.1", "B", True), ("5.0", "B", True)])
def test_the_release_decides_family_and_keys(tmp_path, at_version, family, has_sys_store):
    from atfactory import nvs

    image = nvs.decode_nvs(rendered(board_from_text(tmp_path, _wroom(tmp_path, at_version))))
    assert image.family == family
    assert any(i.key == "sys_store" for i in image.items) == has_sys_store


@pytest.mark.parametrize("change, key, words", [
    ({"at_version": "3.1", "fp_extra": "sys_store = 1"}, "factory_param.sys_store", "exists from ESP-AT 4.1"),
    ({"fp_extra": "tx_control_pin = -1"}, "factory_param.tx_control_pin", "ESP-AT 5.0 has no factory_param.tx_control_pin"),
    ({"fp_extra": "sys_store = 2"}, "factory_param.sys_store", "accepted: 0 to 1"),
    ({"fp_extra": "version = 200"}, "factory_param.version", "accepted: -128 to 127"),
    ({"at_version": "3.4", "extra": f'https_cert = ["{CERTS / "client.crt"}"]'}, "mfg_nvs.https_cert",
     "ESP-AT 3.4 has no https certificates"),
    ({"name": "Wroom-32"}, "module.name", "upper-cases module names"),
    ({"extra": f'server_ca = ["{CERTS / "server.key"}"]'}, "mfg_nvs.server_ca", "holds a private key"),
])
def test_bad_mfg_nvs_boards_name_key_and_reason(tmp_path, change, key, words):
    problems = _problems(tmp_path, _wroom(tmp_path, **change))
    assert len(problems) == 1, problems
    assert f": {key}" in problems[0] and words in problems[0]


def test_an_empty_certificate_is_refused(tmp_path):
    (tmp_path / "empty.crt").write_bytes(b"")
    [problem] = _problems(tmp_path, _wroom(tmp_path, extra=f'client_ca = ["{tmp_path / "empty.crt"}"]'))
    assert "mfg_nvs.client_ca" in problem and "empty" in problem


def test_a_key_that_does_not_belong_to_its_certificate(tmp_path):
    text = _wroom(tmp_path).replace(str(CERTS / "server.key"), str(CERTS / "client.key"))
    [problem] = _problems(tmp_path, text)
    assert ": mfg_nvs.server_key: key 0 (client.key) does not belong to certificate 0 of server_cert" in problem


def test_content_that_does_not_fit_says_both_sizes(tmp_path):
    cas = [str(CERTS / n) for n in ("ca.crt", "client.crt", "mqtt_client.crt", "wpa2_client.crt", "server.crt")]
    text = _wroom(tmp_path, extra=f"client_ca = {json.dumps(cas)}").replace('size = "112K"', 'size = "12K"')
    [problem] = _problems(tmp_path, text)
    assert ": at_customize.partitions[mfg_nvs].size = \"12K\": the content is 16K (0x4000), larger than the partition's 12K (0x3000)" \
        in problem


def test_a_v2_board_cannot_have_mfg_nvs_and_a_v3_board_needs_it(tmp_path):
    problems = _problems(tmp_path, _wroom(tmp_path, at_version="2.4"))
    assert any("at_customize.partitions[mfg_nvs] = \"mfg_nvs\": ESP-AT 2.4 has no mfg_nvs partition" in p
               for p in problems), problems
    assert any(": mfg_nvs: ESP-AT 2.4 has no mfg_nvs partition" in p for p in problems), problems
    without = _wroom(tmp_path).split("[[at_customize.partitions]]")[0]
    [problem] = _problems(tmp_path, without)
    assert "at_customize.partitions: no mfg_nvs partition; ESP-AT 5.0 reads" in problem


def test_chips_exist_only_in_their_releases(tmp_path):
    text = _wroom(tmp_path).replace('chip = "esp32"', 'chip = "esp32c6"').replace("uart_tx_pin = 17", "uart_tx_pin = 7")
    text = text.replace('at_version = "5.0"', 'at_version = "2.4"')
    problems = _problems(tmp_path, text)
    assert any('module.at_version = "2.4": there is no ESP-AT 2.4 for ESP32-C6; accepted: "3.2"' in p
               for p in problems), problems


def test_scons_builds_mfg_nvs(tmp_path):
    board = write(tmp_path / "v5-board.toml", _wroom(tmp_path))
    r = run_scons(f"board={board}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "NVS    out/v5-board/customized_partitions/mfg_nvs.bin" in r.stdout
    out = tmp_path / "out/v5-board"
    assert (out / "customized_partitions/mfg_nvs.bin").read_bytes() == rendered(board_from_text(tmp_path, _wroom(tmp_path)))
    assert (out / "customized_partitions/mfg_nvs.bin").stat().st_mode & 0o077 == 0   # holds a key
    assert "0x21000 customized_partitions/mfg_nvs.bin" in (out / "download.config").read_text()


def test_inspect_and_verify_read_mfg_nvs_back(tmp_path, capsys):
    from helpers import run_cli

    board = write(tmp_path / "v5-board.toml", _wroom(tmp_path))
    assert run_scons(f"board={board}", "build_dir=out", cwd=tmp_path).returncode == 0
    out = tmp_path / "out/v5-board"
    code, text, err = run_cli(capsys, "inspect", str(out))
    assert code == 0, err
    assert "NVS image, generator family B, 28 pages" in text
    assert "  module_name (string) = 'WROOM-32'" in text
    assert "  server_key (blob, 1675 bytes, PEM): private key RSA 2048" in text
    assert "PRIVATE KEY" not in text and "MII" not in text      # never the key itself
    code, text, err = run_cli(capsys, "verify", str(out), "--board", str(board))
    assert code == 0, text + err
    assert "ok       partition mfg_nvs" in text
    changed = write(tmp_path / "v5-other.toml", _wroom(tmp_path).replace("uart_tx_pin = 17", "uart_tx_pin = 4"))
    code, text, err = run_cli(capsys, "verify", str(out), "--board", str(changed))
    assert code == 1
    assert "partition mfg_nvs at 0x21000: factory_param.uart_tx_pin is 17 (i32), the board says 4 (i32)" in text


# --- at_customize.bin of every v3.1+ module_config, from board files -----------------------------

def _at_customize_records():
    root = reference_dir() / "mfg_nvs" / "at_customize"
    if not root.is_dir():
        return [pytest.param(None, None, id="reference-absent")]
    return [pytest.param(tag.name, folder.name, id=f"{tag.name}/{folder.name}")
            for tag in sorted(root.iterdir()) for folder in sorted(tag.iterdir())]


def _csv_table(path: Path):
    """The rows of an ESP-IDF partition CSV (comments and blank lines skipped)."""
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            yield [cell.strip() for cell in line.split(",")]


def _chip_of_module_config(folder: str) -> str:
    name = folder[len("module_"):]
    for chip in ("esp32c61", "esp32c2", "esp32c3", "esp32c5", "esp32c6", "esp32s2"):
        if name.startswith(chip):
            return chip
    return "esp32"


@pytest.mark.parametrize("tag, folder", _at_customize_records())
def test_every_at_customize_from_a_board_file(reference, tmp_path, tag, folder):
    config = reference / "mfg_nvs" / "inputs" / tag / "common" / "module_config" / folder
    [region] = [row for row in _csv_table(config / "partitions_at.csv") if row[0] == "at_customize"]
    chip = _chip_of_module_config(folder)
    pins = {"esp32": (17, 16, 15, 14), "esp32s2": (17, 21, 20, 19)}.get(chip, (7, 6, 5, 4))
    lines = ["[module]", 'name = "M"', f'chip = "{chip}"', f'at_version = "{".".join(tag[1:].split(".")[:2])}"', "",
             "[flash]", 'mode = "dio"', f'freq = "{"60m" if chip == "esp32c2" else "40m"}"', 'size = "4MB"', "",
             "[factory_param]", "tx_max_power = 78", "uart_port = 1", "start_channel = 1", "channel_num = 13",
             'country_code = "CN"', "uart_baudrate = 115200",
             *(f"uart_{p}_pin = {n}" for p, n in zip(("tx", "rx", "cts", "rts"), pins)), "",
             "[at_customize]", f"offset = {region[3]}", f"size = {region[4]}"]
    for name, ptype, subtype, offset, size in _csv_table(config / "at_customize.csv"):
        lines += ["", "[[at_customize.partitions]]", f'name = "{name}"', f'type = "{ptype}"',
                  f'subtype = "{subtype}"', f'offset = "{offset}"', f'size = "{size}"']
    board = board_from_text(tmp_path, "\n".join(lines) + "\n")
    [table] = [a for a in plan_board(board) if a.targets == ("at_customize.bin",)]
    expected = (reference / "mfg_nvs" / "at_customize" / tag / folder / "at_customize.bin").read_bytes()
    assert render_artifact(table.kind, table.spec, table.sources) == expected


# --- the stock boards of ESP-AT v5.0.1.0 -------------------------------------------------------------

def _v5_records():
    index = reference_dir() / "mfg_nvs" / "index.json"
    if not index.is_file():
        return [pytest.param(None, id="reference-absent")]
    return [pytest.param(r, id=r["path"]) for r in json.loads(index.read_text()) if r["tag"] == "v5.0.1.0"
            and not r["path"].startswith("variants/")]


def _v5_board_id(record) -> str:
    module, chip = record["module"], record["platform"][len("PLATFORM_"):]
    title = {"ESP32C3": "ESP32C3", "ESP32": "ESP32", "ESP32S2": "ESP32S2"}.get(chip, chip)
    return {"MINI-1": f"{title}-MINI-1", "MINI": "ESP32S2-MINI"}.get(module, module) + "-V5"


def test_there_is_a_stock_board_for_every_v5_module(reference, registry):
    records = [p.values[0] for p in _v5_records()]
    assert len(records) == 23
    ids = [_v5_board_id(r) for r in records]
    assert all(registry.get(i) is not None for i in ids), [i for i in ids if registry.get(i) is None]
    assert len({i.lower() for i in registry.ids()}) == len(registry.ids())


@pytest.mark.parametrize("record", _v5_records())
def test_stock_v5_boards_hold_their_modules_rows(reference, registry, record):
    """The factory_param namespace of each stock v5 board is its row's; its namespaces are the
    stock build's (with the project's own certificates and GATT table in them)."""
    from atfactory import nvs
    from atfactory.board import load_board

    board = load_board(_v5_board_id(record), registry)
    image = nvs.decode_nvs(rendered(board))
    ours = [(i.key, i.type, i.value) for i in image.items if i.namespace == "factory_param"]
    expected, namespaces, namespace = [], [], None
    for key, kind, encoding, value in _csv(reference / "mfg_nvs" / record["path"] / "mfg_nvs.csv"):
        if kind == "namespace":
            namespace = key
            namespaces.append(key)
        elif namespace == "factory_param":
            expected.append((key, encoding, value if encoding == "string" else int(value)))
    assert ours == expected
    assert [ns.name for ns in image.namespaces] == namespaces
    part = board.partition("mfg_nvs")
    assert (part.offset, part.size) == (int(record["mfg_nvs_offset"], 16), record["mfg_nvs_size_bytes"])


@pytest.mark.parametrize("path, chip, version", [("v3.4.0.0/PLATFORM_ESP32/WROOM-32", "esp32", "4.0"),
                                                 ("v3.1.0.0/PLATFORM_ESP32C2/ESP32C2-2MB", "esp32c2", "4.0"),
                                                 ("v5.0.1.0/PLATFORM_ESP32C5/ESP32C5-4MB", "esp32c5", "5.0"),
                                                 ("variants/v5.0.1.0/all_pki", "esp32c3", "5.0")])
def test_extract_of_a_reference_image_rebuilds_it(reference, tmp_path, path, chip, version):
    """Decode Espressif's image, write [mfg_nvs] and [factory_param] back, build: the same bytes."""
    from atfactory.extract import _at_version
    from atfactory.formats import stock_registry
    from atfactory.formats.mfg_nvs import MfgNvsFormat

    raw = (reference / "mfg_nvs" / path / "mfg_nvs.bin").read_bytes()
    fmt = MfgNvsFormat()
    doc = fmt.decode(raw)
    part = {"name": "mfg_nvs", "content": doc}
    assert _at_version([part], stock_registry(), chip) == version
    notes = []
    tables = fmt.extract_tables("mfg_nvs", doc, raw, str(tmp_path / "src"), notes)
    settings = fmt.module_settings(doc)
    factory = dict(settings.factory_param)
    lines = ["[module]", f"name = {toml_value(settings.module_name)}", f'chip = "{chip}"', f'at_version = "{version}"',
             "", "[flash]", 'mode = "dio"', f'freq = "{"60m" if chip == "esp32c2" else "40m"}"', 'size = "4MB"', "",
             "[factory_param]", *(f"{k} = {toml_value(v)}" for k, v in factory.items()), "",
             "[mfg_nvs]", *(f"{k} = {toml_value(v)}" for k, v in tables["mfg_nvs"].items()), "",
             "[at_customize]", "offset = 0x1E000", f"size = 0x{len(raw) + 0x2000:X}", "",
             "[[at_customize.partitions]]", 'name = "mfg_nvs"', 'type = "data"', 'subtype = "nvs"',
             "offset = 0x1F000", f"size = 0x{len(raw):X}"]
    board = board_from_text(tmp_path, "\n".join(lines) + "\n")
    assert rendered(board) == raw
    for key in (tmp_path / "src").rglob("*.key"):
        assert key.stat().st_mode & 0o077 == 0


# --- firmware of both generations -------------------------------------------------------------------

@pytest.fixture(scope="module")
def releases(tmp_path_factory, registry):
    """Release folders atfactory built with firmware: a v2 one (WROOM-32) and a v5.0 one (WROOM-32-V5),
    each a complete ESP-AT release folder with its own at_customize.bin and AT partitions."""
    from atfactory.board import load_board
    from firmware_factory import make_release

    work = tmp_path_factory.mktemp("generations")
    out = {}
    for board_id in ("WROOM-32", "WROOM-32-V5", "ESP32C5-4MB-V5"):
        fw = make_release(work / "fw" / board_id, load_board(board_id, registry))
        r = run_scons(f"board={board_id}", f"firmware={fw}", "build_dir=out", cwd=work)
        assert r.returncode == 0, r.stderr
        out[board_id] = work / "out" / board_id
    return out


@pytest.mark.parametrize("board_id, firmware_of, words", [
    ("WROOM-32", "WROOM-32-V5", "the board builds for ESP-AT v2 (factory_param and certificate partitions), but "
                                "the firmware in"),
    ("WROOM-32-V5", "WROOM-32", "the board builds for ESP-AT v3.1+ (mfg_nvs), but the firmware in"),
])
def test_a_board_of_one_generation_on_firmware_of_the_other_is_refused(releases, tmp_path, board_id, firmware_of, words):
    r = run_scons(f"board={board_id}", f"firmware={releases[firmware_of]}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    [line] = [l for l in r.stderr.splitlines() if "module.at_version" in l]
    assert words in line and "choose the at_version of the firmware" in line
    assert not (tmp_path / "out" / board_id).exists()


def test_firmware_of_another_v3_release_is_a_warning(releases, tmp_path):
    board = write(tmp_path / "older.toml", _wroom(tmp_path, at_version="3.4"))
    r = run_scons(f"board={board}", f"firmware={releases['WROOM-32-V5']}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (f'atfactory: warning: {tmp_path}/older.toml: module.at_version = "3.4": the firmware\'s own AT partitions were '
            'written by ESP-AT "4.1" or "5.0"; the board\'s are written as 3.4 writes them') in r.stderr


def test_a_v5_factory_image_of_esp32c5_has_its_table_at_0xc000(releases, capsys, tmp_path):
    from helpers import run_cli

    image = releases["ESP32C5-4MB-V5"] / "factory" / "factory_ESP32C5-4MB.bin"
    data = image.read_bytes()
    assert data[0xC000:0xC002] == b"\xaa\x50" and data[0x8000:0x8002] != b"\xaa\x50"
    code, text, err = run_cli(capsys, "inspect", str(image), "--json")
    assert code == 0, err
    doc = json.loads(text)
    assert doc["chip"] == "esp32c5" and doc["bootloader"]["offset"] == 0x2000
    assert doc["partition_table"]["offset"] == 0xC000
    code, text, err = run_cli(capsys, "verify", str(image), "--board", "ESP32C5-4MB-V5")
    assert code == 0, text + err
    # the image as firmware of its own board: it changes only inside mfg_nvs when the pins change
    other = write(tmp_path / "c5-pins.toml", 'extends = "ESP32C5-4MB-V5"\n[factory_param]\nuart_tx_pin = 2\n')
    r = run_scons(f"board={other}", f"firmware={image}", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rebuilt = (tmp_path / "out/c5-pins/factory/factory_ESP32C5-4MB.bin").read_bytes()
    differing = [i for i in range(len(data)) if data[i] != rebuilt[i]]
    assert differing and 0x31000 <= differing[0] and differing[-1] < 0x31000 + 124 * 1024


def test_a_quote_in_the_module_name_is_written_right(tmp_path):
    """ESP-AT's build turns MY"BOARD into MYBOARD" (no escaping); the NVS string holds it as written."""
    from atfactory import nvs

    board = board_from_text(tmp_path, _wroom(tmp_path, name='MY\\"BOARD'))
    items = {(i.namespace, i.key): i.value for i in nvs.decode_nvs(rendered(board)).items}
    assert items[("factory_param", "module_name")] == 'MY"BOARD'


def test_extract_of_an_at_py_image_keeps_its_generator_family(reference, tmp_path):
    from atfactory.formats.mfg_nvs import MfgNvsFormat

    raw = (reference / "mfg_nvs/variants/v5.0.1.0/at_py_modify_bin/mfg_nvs.bin").read_bytes()
    fmt = MfgNvsFormat()
    doc = fmt.decode(raw)
    assert fmt.implied_at_versions("mfg_nvs", doc) == {"4.1", "5.0"}   # the keys say v4.1+, the pages say A
    table = fmt.extract_tables("mfg_nvs", doc, raw, str(tmp_path), [])["mfg_nvs"]
    assert table["generator_family"] == "A"
    stock = (reference / "mfg_nvs/v5.0.1.0/PLATFORM_ESP32/WROOM-32/mfg_nvs.bin").read_bytes()
    assert "generator_family" not in fmt.extract_tables("mfg_nvs", fmt.decode(stock), stock, str(tmp_path / "s"),
                                                        [])["mfg_nvs"]
