"""A devices batch built in shards (``shard=K/N``, each its own machine or CI job) and the merge
of their ledgers (``atfactory merge-ledgers``): the merged devices.json, and its signature, are
byte for byte the unsplit batch's, and a merge of anything but every shard of one batch is refused."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from atfactory.board import load_board
from atfactory.shards import ledger_name, parse_shard, shard_rows
from firmware_factory import make_release
from helpers import run_cli, run_scons, write_signing_key
from test_devices import make_device_pki, rows_for, write_csv

HEADER = "device_id,client_cert,client_key,uart_baudrate"
ROWS = 7   # shards 1/3, 2/3, 3/3 hold 3, 2 and 2 rows
ACCEPTED = "accepted: the devices.shard-K-of-N.json a build with shard=K/N wrote, unchanged"
NOT_A_SHARD = f"not a shard ledger (no shard header; a devices.json is the ledger of a whole batch, merged already); " \
              f"{ACCEPTED}"
ONE_BATCH = "accepted: the shards of one batch, a build each of shard=1/N ... N/N of the same devices CSV and board"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    write_signing_key(root, "release")
    return root


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = tmp_path_factory.mktemp("shard_pki")
    make_device_pki(root / "certs", ROWS + 1)
    return root


def build_shards(root: Path, board: str, csv: str, n: int, *args: str, ks=None):
    """Shards ks (default: all) of ``csv`` into build_dir s<K>of<N>; return their ledgers."""
    ledgers = []
    for k in ks or range(1, n + 1):
        r = run_scons(f"board={board}", f"devices={csv}", f"shard={k}/{n}", f"build_dir=s{k}of{n}", "-j2", *args,
                      cwd=root)
        assert r.returncode == 0, r.stderr
        assert f"DEVICES {board}: {shard_rows(ROWS, (k, n))} devices (shard {k}/{n})\n" in r.stdout
        ledgers.append(root / f"s{k}of{n}" / board / ledger_name((k, n)))
    return ledgers


@pytest.fixture(scope="module")
def batches(pki, keys, tmp_path_factory, registry):
    """Per board (a v2 board with firmware and a factory image per device; an mfg_nvs board): the
    batch unsplit and signed in full/, and in three shards, each with its board signed."""
    made = {}
    for board, extra in (("WROOM-32", ("device_images=yes",)), ("WROOM-32-V5", ())):
        root = tmp_path_factory.mktemp(board)
        if extra:
            extra += (f"firmware={make_release(root / 'fw', load_board(board, registry))}",)
        write_csv(root / "devices.csv", HEADER, rows_for(ROWS, pki, root, lambda i: ",921600" if i == 4 else ","))
        sign = f"sign_key={keys / 'release.key'}"
        r = run_scons(f"board={board}", "devices=devices.csv", "build_dir=full", "-j2", sign, *extra, cwd=root)
        assert r.returncode == 0, r.stderr
        made[board] = (root, build_shards(root, board, "devices.csv", 3, sign, *extra), extra)
    return made


def merge(capsys, *argv):
    return run_cli(capsys, "merge-ledgers", *map(str, argv))


def assemble(root: Path, board: str, ledgers, keys, extra) -> Path:
    """The merge job's release folder, as docs/manufacturing.md makes it: the board built and
    signed again, and every shard's devices/ copied in."""
    r = run_scons(f"board={board}", "build_dir=assembled", f"sign_key={keys / 'release.key'}",
                  *(a for a in extra if a.startswith("firmware=")), cwd=root)
    assert r.returncode == 0, r.stderr
    release = root / "assembled" / board
    for ledger in ledgers:
        shutil.copytree(ledger.parent / "devices", release / "devices", dirs_exist_ok=True)
    return release


@pytest.mark.parametrize("board", ["WROOM-32", "WROOM-32-V5"])
def test_merged_shards_are_the_unsplit_batch_byte_for_byte(batches, keys, board, capsys, monkeypatch):
    root, ledgers, extra = batches[board]
    monkeypatch.chdir(root)
    full = root / "full" / board
    # rows i with i % 3 == K-1; the shard's ledger is owner-only (it holds digests of key files)
    assert sorted(p.name for p in (ledgers[1].parent / "devices").iterdir()) == ["D00001", "D00004"]
    assert [ledger.stat().st_mode & 0o777 for ledger in ledgers] == [0o600] * 3
    assert not (ledgers[0].parent / "devices.json").exists()
    assert [p.name for p in ledgers[0].parent.glob("*.sig")] == ["manifest.json.sig"]   # the merge signs the devices
    header = json.loads(ledgers[1].read_text().splitlines()[0])
    assert {k: header[k] for k in ("ledger", "format", "board", "shard", "shards", "rows", "csv")} == {
        "ledger": "atfactory shard", "format": 1, "board": board, "shard": 2, "shards": 3, "rows": ROWS,
        "csv": "devices.csv"}
    assert len(json.loads(ledgers[1].read_text().splitlines()[1])["digests"]["client_key"][0]) == 32
    release = assemble(root, board, ledgers, keys, extra)
    out = release / "devices.json"
    code, stdout, err = merge(capsys, "-o", out, "--sign-key", keys / "release.key", *reversed(ledgers))
    assert (code, err) == (0, ""), err
    assert stdout == f"wrote assembled/{board}/devices.json: {ROWS} devices of board {board} from 3 shards\n" \
                     f"wrote assembled/{board}/devices.json.sig\n"
    assert out.read_bytes() == (full / "devices.json").read_bytes()
    assert b"digests" not in out.read_bytes()
    # Ed25519 signatures are deterministic: the same signature
    assert (release / "devices.json.sig").read_bytes() == (full / "devices.json.sig").read_bytes()
    for path in sorted((full / "devices").rglob("*")):
        twin = release / path.relative_to(full)
        assert twin.is_dir() if path.is_dir() else twin.read_bytes() == path.read_bytes(), path
    assert len(list((release / "devices").rglob("*"))) == len(list((full / "devices").rglob("*")))
    # the merge job's release verifies as the unsplit one does: signatures, every hash, nothing unsigned
    code, stdout, err = run_cli(capsys, "verify", str(release), "--pubkey", str(keys / "release.pub"))
    assert (code, err) == (0, ""), stdout
    outputs = sum(len(d["outputs"]) for d in json.loads(out.read_text())["devices"])
    assert f"devices.json signed by this key; {outputs} device outputs match their SHA-256" in stdout
    if extra:   # a device of shard 2, with its own baud rate, against its row
        image = f"assembled/{board}/devices/D00004/factory/factory_{board}_D00004.bin"
        code, stdout, err = run_cli(capsys, "verify", image, "--board", board, "--device", "devices.csv:D00004")
        assert (code, err) == (0, ""), stdout
        assert "  ok       partition factory_param (device D00004)" in stdout.splitlines()
    # unsigned: the same ledger, no signature
    code, _, err = merge(capsys, "-o", root / "plain.json", *ledgers)
    assert (code, err) == (0, "")
    assert (root / "plain.json").read_bytes() == (full / "devices.json").read_bytes()
    assert not (root / "plain.json.sig").exists()


def test_merge_refuses_anything_but_every_shard_of_one_batch(batches, pki, keys, capsys, monkeypatch):
    root, ledgers, _ = batches["WROOM-32-V5"]
    monkeypatch.chdir(root)
    l1, l2, l3 = (str(p.relative_to(root)) for p in ledgers)
    other_root, other_ledgers, _ = batches["WROOM-32"]
    v2 = str(other_ledgers[1])
    # a shard of 4, and a shard of another CSV (one row's baud rate changed)
    (four,) = build_shards(root, "WROOM-32-V5", "devices.csv", 4, ks=[2])
    write_csv(root / "other.csv", HEADER, rows_for(ROWS, pki, root, lambda i: ",921600" if i == 5 else ","))
    r = run_scons("board=WROOM-32-V5", "devices=other.csv", "shard=2/3", "build_dir=other", cwd=root)
    assert r.returncode == 0, r.stderr
    other = "other/WROOM-32-V5/devices.shard-2-of-3.json"
    base = json.loads(ledgers[0].read_text().splitlines()[0])
    cases = [
        ((l1, l3), "shards: 2/3 missing (1 of 3): accepted: the ledgers of every shard 1/3 ... 3/3 of the batch, "
                   "each once"),
        ((l1, l2, l2, l3), f'{l2}: shard = "2/3": given twice (also {l2}); accepted: each shard once'),
        ((l1, v2, l3), f'{v2}: board = "WROOM-32": not the board of {l1} ("WROOM-32-V5"); {ONE_BATCH}'),
        ((l1, four.relative_to(root), l3), f"{four.relative_to(root)}: shards = 4: not the number of shards of "
                                           f"{l1} (3); {ONE_BATCH}"),
        ((l1, other, l3), f'{other}: batch = "{json.loads(Path(other).read_text().splitlines()[0])["batch"]}": not the '
                          f'batch of {l1} ("{base["batch"]}"): built from another CSV, board build or device options; '
                          f"{ONE_BATCH}"),
        ((l1, "nope.json", l3), "nope.json: no such file"),
        ((l1, "full/WROOM-32-V5/devices.json", l3), f"full/WROOM-32-V5/devices.json: line 1: {NOT_A_SHARD}"),
    ]
    for argv, message in cases:
        code, stdout, err = merge(capsys, "-o", "out/devices.json", "--sign-key", keys / "release.key", *argv)
        assert (code, stdout, err) == (2, "", f"atfactory: error: {message}\n"), argv
    # corrupt ledgers: a device line missing, one garbled, one naming a path outside its folder, a header altered
    lines = ledgers[1].read_text().splitlines(keepends=True)
    entry = json.loads(lines[1])
    corrupt = {
        "short.json": (lines[:-1], f"short.json: 1 device; shard 2/3 of a batch of {ROWS} rows has 2: the ledger is "
                                   f"incomplete or was altered; {ACCEPTED}"),
        "garbled.json": ([lines[0], "{not json\n"] + lines[2:], f"garbled.json: line 2: not a shard ledger line "
                                                                f"atfactory wrote (not JSON); {ACCEPTED}"),
        "escape.json": (lines[:2] + [json.dumps(dict(entry, line=99, outputs={"../../x": "0" * 64})) + "\n"],
                        f'escape.json: line 3: not a shard ledger line atfactory wrote (output "../../x"); {ACCEPTED}'),
        "order.json": ([lines[0], lines[2], lines[1]], f"order.json: line 3: not a shard ledger line atfactory wrote "
                                                       f"(CSV line {entry['line']} after line "
                                                       f"{json.loads(lines[2])['line']}); {ACCEPTED}"),
        "rows.json": ([json.dumps(dict(json.loads(lines[0]), rows=8)) + "\n"] + lines[1:],
                      f"rows.json: line 1: not a shard ledger line atfactory wrote (8 rows, {l1} says {ROWS} of the "
                      f"same CSV); {ACCEPTED}"),
        "empty.json": ([], f"empty.json: line 1: {NOT_A_SHARD}"),
    }
    for name, (content, message) in corrupt.items():
        (root / name).write_text("".join(content))
        code, stdout, err = merge(capsys, "-o", "out/devices.json", l1, name, l3)
        assert (code, stdout, err) == (2, "", f"atfactory: error: {message}\n"), name
    # a release folder of another board build; a bad signing key
    code, _, err = merge(capsys, "-o", other_root / "full/WROOM-32/devices.json", l1, l2, l3)
    assert (code, err) == (2, f"atfactory: error: {other_root}/full/WROOM-32/manifest.json: another board build than "
                              "the one the shards were built with (its SHA-256 differs from theirs): accepted: the "
                              "release folder of the same board, firmware, plugins and atfactory as the shards\n")
    code, _, err = merge(capsys, "-o", "out/devices.json", "--sign-key", "nope.key", l1, l2, l3)
    assert (code, err) == (2, "atfactory: error: --sign-key nope.key: cannot be read: no such file\n")
    assert not (root / "out").exists()


def test_merge_makes_the_checks_of_the_whole_batch(pki, tmp_path, capsys, monkeypatch):
    """A device id (in any case) or a certificate and key in two shards: each shard builds, the
    merge refuses with the lines the unsplit batch reports."""
    rows = rows_for(ROWS, pki, tmp_path, lambda i: ",")
    rows[1] = "d00000" + rows[1][6:]              # shard 2: shard 1's id, in other case
    rows[5] = "D00099" + rows[0][6:]              # shard 3: shard 1's certificate and key
    write_csv(tmp_path / "devices.csv", HEADER, rows)
    whole = run_scons("board=WROOM-32-V5", "devices=devices.csv", "build_dir=full", cwd=tmp_path)
    assert whole.returncode == 2
    said = [line.split("devices.csv: ", 1)[1] for line in whole.stderr.splitlines() if "devices.csv: line" in line]
    assert len(said) == 3 and said[0].startswith('line 3, device_id = "d00000": differs only in case from \'D00000\' '
                                                 "on line 2"), said
    ledgers = build_shards(tmp_path, "WROOM-32-V5", "devices.csv", 3)
    monkeypatch.chdir(tmp_path)
    code, stdout, err = merge(capsys, "-o", "out.json", *ledgers)
    assert (code, stdout) == (2, "")
    assert err == "".join(f"atfactory: error: devices.csv: {line}\n" for line in said)
    assert "line 7, client_cert" in err and "the same file content as line 2 (client_cert)" in err
    assert not (tmp_path / "out.json").exists()


def test_a_shard_rebuilds_when_it_changes_and_only_then(keys, tmp_path, capsys, monkeypatch):
    """The shard is part of the batch: the same shard again is a no-op, another rebuilds, and a
    batch that replaces devices/ removes the ledgers of the devices it replaced.  A shard may
    have no rows; the merge counts it."""
    write_csv(tmp_path / "devices.csv", "device_id,uart_baudrate", ["D1,921600", "D2,57600"])
    release = tmp_path / "out/WROOM-32"
    kept = tmp_path / "kept"
    kept.mkdir()

    def build(*args):
        r = run_scons("board=WROOM-32", "devices=devices.csv", "build_dir=out", *args, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return r.stdout

    def ledgers():
        return sorted(p.name for p in release.iterdir() if p.name.startswith("devices."))

    def devices():
        return sorted(p.name for p in (release / "devices").iterdir())

    assert "DEVICES WROOM-32: 0 devices (shard 3/3)\n" in build("shard=3/3")
    assert (ledgers(), devices()) == (["devices.shard-3-of-3.json"], [])
    assert len((release / "devices.shard-3-of-3.json").read_text().splitlines()) == 1   # the header alone
    assert "DEVICES" not in build("shard=3/3")
    shutil.copy(release / "devices.shard-3-of-3.json", kept)
    assert "DEVICES WROOM-32: 1 devices (shard 1/3)\n" in build("shard=1/3")
    assert (ledgers(), devices()) == (["devices.shard-1-of-3.json"], ["D1"])
    shutil.copy(release / "devices.shard-1-of-3.json", kept)
    assert "DEVICES WROOM-32: 2 devices\n" in build(f"sign_key={keys / 'release.key'}")
    assert ledgers() == ["devices.json", "devices.json.sig"]
    csv_bytes = (tmp_path / "devices.csv").read_bytes()
    (tmp_path / "devices.csv").write_bytes(csv_bytes + b"\n")   # a blank line: the batch again, the same ledger
    assert "DEVICES WROOM-32: 2 devices\n" in build(f"sign_key={keys / 'release.key'}")   # and so signature
    (tmp_path / "devices.csv").write_bytes(csv_bytes)   # the CSV the kept shards were built from
    assert ledgers() == ["devices.json", "devices.json.sig"]
    shutil.copy(release / "devices.json", kept / "whole.json")
    assert "DEVICES WROOM-32: 1 devices (shard 2/3)\n" in build(f"sign_key={keys / 'release.key'}", "shard=2/3")
    assert (ledgers(), devices()) == (["devices.shard-2-of-3.json"], ["D2"])
    assert "DEVICES WROOM-32: 2 devices\n" in build()   # the unsplit ledger again: it was removed
    monkeypatch.chdir(tmp_path)
    code, _, err = merge(capsys, "-o", "merged.json", kept / "devices.shard-1-of-3.json",
                         kept / "devices.shard-3-of-3.json", tmp_path / "s2.json")
    assert code == 2 and err == "atfactory: error: s2.json: no such file\n"
    build("shard=2/3")
    code, _, err = merge(capsys, "-o", "merged.json", kept / "devices.shard-1-of-3.json",
                         kept / "devices.shard-3-of-3.json", release / "devices.shard-2-of-3.json")
    assert (code, err) == (0, "")
    assert (tmp_path / "merged.json").read_bytes() == (kept / "whole.json").read_bytes()


BAD_SHARD = "accepted: K/N, shard K of N with 1 <= K <= N, such as shard=1/3, shard=2/3, shard=3/3 (rows i with " \
            "i % N == K-1)"


@pytest.mark.parametrize("args, message", [
    (["devices=devices.csv", "shard=0/3"], f"shard=0/3: {BAD_SHARD}"),
    (["devices=devices.csv", "shard=4/3"], f"shard=4/3: {BAD_SHARD}"),
    (["devices=devices.csv", "shard=x"], f"shard=x: {BAD_SHARD}"),
    (["devices=devices.csv", "shard=1/0"], f"shard=1/0: {BAD_SHARD}"),
    (["shard=1/2"], "shard=1/2: splits the rows of devices=CSV into shards; accepted: shard=K/N with devices=CSV"),
])
def test_bad_shards_stop_the_build(tmp_path, args, message):
    write_csv(tmp_path / "devices.csv", "device_id", ["A"])
    r = run_scons("board=WROOM-32", "build_dir=out", *args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"scons: *** {message}  Stop."]
    assert not (tmp_path / "out").exists()


def test_every_shard_of_a_csv_without_rows_fails(tmp_path):
    write_csv(tmp_path / "devices.csv", "device_id,uart_baudrate", [])
    r = run_scons("board=WROOM-32", "devices=devices.csv", "shard=2/3", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 2
    assert f"{tmp_path}/devices.csv: line 2: no devices: the file has a header and no rows" in r.stderr
    assert [p.name for p in (tmp_path / "out/WROOM-32").iterdir() if p.name.startswith((".devices", "devices"))] == []


def test_atfactory_build_takes_a_shard(tmp_path):
    from test_project import atfactory

    (tmp_path / "atfactory.toml").write_text("")
    write_csv(tmp_path / "devices.csv", "device_id,uart_baudrate", ["D1,921600", "D2,", "D3,57600"])
    r = atfactory("build", "WROOM-32", "--shard", "x", "--devices", "devices.csv", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (2, "atfactory: error: --shard x: accepted: K/N, shard K of N with 1 <= K <= N, "
                                           "such as --shard 1/3, --shard 2/3, --shard 3/3 (rows i with i % N == K-1)\n")
    r = atfactory("build", "WROOM-32", "--shard", "1/2", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (2, "atfactory: error: --shard 1/2 builds one shard of the rows of --devices "
                                           "CSV; give --devices\n")
    assert not (tmp_path / "build").exists()
    r = atfactory("build", "WROOM-32", "--devices", "devices.csv", "--shard", "2/2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "DEVICES WROOM-32: 1 devices (shard 2/2)\n" in r.stdout
    assert [p.name for p in (tmp_path / "build/WROOM-32/devices").iterdir()] == ["D2"]


def test_the_merge_reads_each_ledger_once_and_writes_nothing_when_one_is_short(batches, tmp_path, monkeypatch):
    """devices.json is written while the ledgers are checked, as the unsplit batch does; a shard
    ledger that lost its last device stops the merge with no devices.json and no temporary."""
    from atfactory import shards
    from atfactory.errors import BoardError

    root, ledgers, _ = batches["WROOM-32-V5"]
    opened = []
    real = shards._device_lines

    def counted(shard, read):
        opened.append(shard.path)
        return real(shard, read)
    monkeypatch.setattr(shards, "_device_lines", counted)
    out = tmp_path / "devices.json"
    header, rows = shards.merge_ledgers([str(p) for p in ledgers], str(out))
    assert rows == ROWS and sorted(opened) == sorted(str(p) for p in ledgers)   # once each
    assert out.read_bytes() == (root / "full/WROOM-32-V5/devices.json").read_bytes()
    short = tmp_path / "short" / ledgers[1].name
    short.parent.mkdir()
    short.write_bytes(b"".join(ledgers[1].read_bytes().splitlines(keepends=True)[:-1]))
    again = tmp_path / "again" / "devices.json"
    again.parent.mkdir()
    with pytest.raises(BoardError) as err:
        shards.merge_ledgers([str(ledgers[0]), str(short), str(ledgers[2])], str(again))
    assert "the ledger is incomplete or was altered" in str(err.value)
    assert again.parent.is_dir() and list(again.parent.iterdir()) == []   # its own folder stays


def test_shard_arithmetic():
    for rows in range(0, 12):
        for n in range(1, 6):
            counts = [shard_rows(rows, (k, n)) for k in range(1, n + 1)]
            assert counts == [len(range(k - 1, rows, n)) for k in range(1, n + 1)] and sum(counts) == rows
    assert parse_shard(" 2/3", "shard=") == (2, 3)
