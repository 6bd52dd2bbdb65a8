"""``--json`` of inspect, verify and diff: one document on stdout, the keys and types docs/json.md
writes down, and the exit status of the text output (0 match, 1 differs, 2 bad input, no document)."""
from __future__ import annotations

import json
import re

import pytest

from helpers import REPO, image_of, run_cli, run_scons, tampered

DOC = (REPO / "docs/json.md").read_text()
VERIFY_KEYS = {"command": str, "path": str, "board": (str, type(None)), "device": (dict, type(None)),
               "signature": (dict, type(None)), "matches": list, "notes": list, "warnings": list,
               "differences": list, "ok": bool}


def documented(key: str) -> bool:
    return f"`{key}`" in DOC


def run_json(capsys, *argv):
    code, out, err = run_cli(capsys, *argv, "--json")
    return code, json.loads(out), err


def check_verify_doc(doc: dict) -> None:
    assert set(doc) == set(VERIFY_KEYS)
    for key, types in VERIFY_KEYS.items():
        assert isinstance(doc[key], types), (key, doc[key])
        assert documented(key), key
    assert all(isinstance(line, str) for key in ("matches", "notes", "warnings", "differences") for line in doc[key])


def test_verify_json_matches_the_text(built, capsys):
    image = str(image_of(built, "WROOM-32"))
    code, doc, err = run_json(capsys, "verify", image, "--board", "WROOM-32")
    assert (code, err) == (0, "")
    check_verify_doc(doc)
    assert (doc["command"], doc["path"], doc["board"], doc["device"], doc["signature"], doc["ok"]) == \
        ("verify", image, "WROOM-32", None, None, True)
    code, text, _ = run_cli(capsys, "verify", image, "--board", "WROOM-32")
    assert [f"  ok       {m}" for m in doc["matches"]] == [line for line in text.splitlines() if line.startswith("  ok")]
    assert doc["matches"][:4] == ["flash.mode", "flash.freq", "flash.size", "at_customize.bin"]


def test_verify_json_differs(built, capsys, tmp_path):
    path = str(tampered(built, tmp_path, 0x30000 + 16, bytes([4])))
    code, doc, _ = run_json(capsys, "verify", path, "--board", "WROOM-32")
    assert code == 1
    check_verify_doc(doc)
    assert doc["ok"] is False
    assert doc["differences"] == ["partition factory_param at 0x30000: factory_param.uart_tx_pin is 4, the board says 17"]
    assert "partition factory_param" not in doc["matches"]


@pytest.fixture(scope="module")
def signed_folder(tmp_path_factory):
    from helpers import write_signing_key

    root = tmp_path_factory.mktemp("signed_json")
    write_signing_key(root, "k")
    r = run_scons("board=ESP32C3-MINI-1", f"sign_key={root / 'k.key'}", "build_dir=out", cwd=root)
    assert r.returncode == 0, r.stderr
    return root


def test_verify_json_signature(signed_folder, capsys, tmp_path):
    import shutil

    folder = signed_folder / "out/ESP32C3-MINI-1"
    pub = str(signed_folder / "k.pub")
    code, doc, _ = run_json(capsys, "verify", str(folder), "--pubkey", pub)
    assert code == 0
    check_verify_doc(doc)
    outputs = len(json.loads((folder / "manifest.json").read_text())["outputs"])
    assert doc["signature"] == {"folder": str(folder), "ok": True, "differences": [], "outputs": outputs,
                                "device_outputs": 0}
    assert (doc["board"], doc["matches"], doc["ok"]) == (None, [], True)
    code, doc, _ = run_json(capsys, "verify", str(folder), "--pubkey", pub, "--board", "ESP32C3-MINI-1")
    assert (code, doc["board"], doc["ok"], doc["signature"]["ok"]) == (0, "ESP32C3-MINI-1", True, True)
    assert "partition factory_param" in doc["matches"]
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    (copy / "customized_partitions/ble_data.bin").write_bytes(b"altered")
    code, doc, _ = run_json(capsys, "verify", str(copy), "--pubkey", pub, "--board", "ESP32C3-MINI-1")
    assert code == 1
    check_verify_doc(doc)
    assert doc["signature"]["differences"] == ["customized_partitions/ble_data.bin: SHA-256 differs from the "
                                               "manifest: the file was altered"]
    assert (doc["ok"], doc["signature"]["ok"], doc["board"]) == (False, False, None)   # not compared: untrusted


def test_diff_json(built, capsys, tmp_path):
    a = str(image_of(built, "WROOM-32"))
    code, doc, _ = run_json(capsys, "diff", a, a)
    assert (code, doc) == (0, {"command": "diff", "first": a, "second": a, "equal": True, "fields": [], "regions": []})
    b = str(tampered(built, tmp_path, 0x30000 + 16, bytes([4])))
    code, doc, _ = run_json(capsys, "diff", a, b)
    assert code == 1
    assert doc == {"command": "diff", "first": a, "second": b, "equal": False,
                   "fields": [{"field": "at_customize.partitions[factory_param].content.fields.uart_tx_pin",
                               "first": 17, "second": 4}],
                   "regions": [{"region": "AT partition factory_param", "start": 0x30000, "end": 0x31000,
                                "differing": 1, "first": 0x30010}]}
    assert all(documented(k) for k in list(doc) + list(doc["fields"][0]) + list(doc["regions"][0]))


def test_diff_json_sides_and_lengths(built, capsys, tmp_path):
    a = image_of(built, "WROOM-32")
    short = tmp_path / "short.bin"
    short.write_bytes(a.read_bytes()[:0x300000])
    code, doc, _ = run_json(capsys, "diff", str(short), str(a))
    assert code == 1
    assert doc["fields"] == [{"field": "size", "first": 0x300000, "second": 0x400000},
                             {"field": "image_end", "only_in": "first", "first": 0x300000}]
    assert doc["regions"] == [{"region": "past the end of the first", "start": 0x300000, "end": 0x400000,
                               "only_in": "second"}]
    assert documented("only_in")


@pytest.mark.parametrize("argv", [
    ["verify", "/nonexistent.bin", "--board", "WROOM-32"],
    ["verify", "x.bin", "--board", "NOPE"],
    ["diff", "/nonexistent.bin", "/nonexistent.bin"],
    ["inspect", "/nonexistent.bin"],
])
def test_bad_input_is_status_2_without_a_document(capsys, argv):
    code, out, err = run_cli(capsys, *argv, "--json")
    assert (code, out) == (2, "")
    assert err.startswith("atfactory: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("which", ["image", "release"])
def test_inspect_json_keys_are_documented(built, capsys, which):
    path = image_of(built, "WROOM-32") if which == "image" else built / "out/WROOM-32"
    code, doc, _ = run_json(capsys, "inspect", str(path))
    assert code == 0 and doc["kind"] == which
    assert [k for k in doc if not documented(k)] == []
    for part in doc["at_customize"]["partitions"]:
        assert [k for k in part if not documented(k)] == [], part
        assert re.search(rf"^\| `{part['content']['kind']}` \|", DOC, re.M), part["content"]["kind"]
