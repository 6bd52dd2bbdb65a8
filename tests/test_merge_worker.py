"""Factory images merged in worker processes (scons -j2 and up, atfactory.merge_worker): the bytes
of esptool's merge, the digests that SCons and the manifest record computed from those bytes, the
errors of an in-process merge, and a worker that dies failing only the merge it had."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import pytest

from atfactory.board import load_board
from atfactory.errors import MergeError
from atfactory.merge import merge_factory_image
from atfactory.merge_worker import MergePool
from atfactory.stamps import stamp_of
from firmware_factory import make_release
from helpers import esptool_merge, run_scons


@pytest.fixture(scope="module")
def release(registry, tmp_path_factory):
    board = load_board("WROOM-32", registry)
    return board, make_release(tmp_path_factory.mktemp("fw") / "release", board)


def _built_lines(r):
    return [line for line in r.stdout.splitlines() if line[:6].strip() in ("MERGE", "LIST", "COPY", "HOOKS")]


def test_parallel_build_merges_in_a_worker_as_esptool_does(release, tmp_path):
    board, source = release
    fw = tmp_path / "release"
    shutil.copytree(source, fw)
    r = run_scons("board=WROOM-32", f"firmware={fw}", "build_dir=out", "-j2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out" / "WROOM-32"
    image_path = out / "factory" / "factory_WROOM-32.bin"
    image = image_path.read_bytes()
    assert image == esptool_merge(out, board)
    assert image_path.stat().st_mode & 0o077 == 0   # it holds key partitions: owner-only, as in process
    listed = {o["path"]: o for o in json.loads((out / "manifest.json").read_text())["outputs"]}
    assert listed["factory/factory_WROOM-32.bin"]["sha256"] == hashlib.sha256(image).hexdigest()
    assert listed["factory/factory_WROOM-32.bin"]["size"] == len(image)
    # The content signature SCons stored came from the worker: a -j1 run, which hashes the image
    # itself, finds the manifest (which depends on the image) up to date.
    time.sleep(2.1)   # settled: the input cache remembers the signatures this run computes
    again = run_scons("board=WROOM-32", f"firmware={fw}", "build_dir=out", "-j1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert _built_lines(again) == []
    # Signatures are SHA-256, and the input cache files them under that algorithm.
    entries = json.loads((tmp_path / "out" / ".atfactory" / "inputs.json").read_text())["entries"]
    csigs = {k.split(" ", 3)[3]: (k.split(" ")[2], v[1]) for k, v in entries.items() if k.startswith("csig ")}
    assert csigs[str(image_path)] == ("sha256", hashlib.sha256(image).hexdigest())
    assert {algorithm for algorithm, _ in csigs.values()} == {"sha256"}
    # A changed firmware file: the copy, the image and the manifest again, the image still esptool's.
    app = fw / "esp-at.bin"
    app.write_bytes(app.read_bytes()[:-4] + b"\x00\x01\x02\x03")
    changed = run_scons("board=WROOM-32", f"firmware={fw}", "build_dir=out", "-j2", cwd=tmp_path)
    assert changed.returncode == 0, changed.stderr
    assert sorted(line.split()[0] for line in _built_lines(changed)) == ["COPY", "LIST", "MERGE"]
    image = image_path.read_bytes()
    assert image == esptool_merge(out, board)
    assert image[0x100000:0x100000 + len(app.read_bytes())] == app.read_bytes()
    assert _built_lines(run_scons("board=WROOM-32", f"firmware={fw}", "build_dir=out", "-j1", cwd=tmp_path)) == []


def _job(tmp_path, entries, secret=False):
    return dict(path=str(tmp_path / "image.bin"), secret=secret, chip="esp32", flash=["dio", "40m", "4MB"],
                flash_bytes=4 * 1024 * 1024, entries=entries, content_hash="md5")


def test_worker_answers_digests_of_what_it_wrote(release, tmp_path):
    board, source = release
    entries = [(0x1000, str(source / "bootloader" / "bootloader.bin")),
               (0x8000, str(source / "partition_table" / "partition-table.bin")), (0x10000, str(source / "esp-at.bin"))]
    pool = MergePool(1)
    try:
        result = pool.merge(**_job(tmp_path, entries, secret=True))
    finally:
        pool.close()
    data = (tmp_path / "image.bin").read_bytes()
    assert data == merge_factory_image("esp32", "dio", "40m", "4MB", 4 * 1024 * 1024, entries)
    assert result == {"stamp": stamp_of(str(tmp_path / "image.bin")), "sha256": hashlib.sha256(data).hexdigest(),
                      "csig": hashlib.md5(data).hexdigest()}
    assert (tmp_path / "image.bin").stat().st_mode & 0o777 == 0o600


def test_worker_error_is_the_in_process_error(release, tmp_path):
    _, source = release
    boot = str(source / "bootloader" / "bootloader.bin")
    entries = [(0x1000, boot), (0x1010, boot)]   # overlapping
    with pytest.raises(MergeError) as here:
        merge_factory_image("esp32", "dio", "40m", "4MB", 4 * 1024 * 1024, entries)
    pool = MergePool(1)
    try:
        with pytest.raises(MergeError) as there:
            pool.merge(**_job(tmp_path, entries))
    finally:
        pool.close()
    assert str(there.value) == str(here.value) and "overlaps" in str(here.value)
    assert not (tmp_path / "image.bin").exists()


def test_a_dead_worker_fails_its_merge_and_the_next_starts_another(release, tmp_path):
    _, source = release
    entries = [(0x1000, str(source / "bootloader" / "bootloader.bin"))]
    pool = MergePool(1)
    try:
        pool.merge(**_job(tmp_path, entries))
        first = pool.started[0]
        first.proc.kill()
        first.proc.wait()
        with pytest.raises(RuntimeError, match=r"factory image: the merge worker process ended \(exit status -9\)"):
            pool.merge(**_job(tmp_path, entries))
        os.unlink(tmp_path / "image.bin")
        assert pool.merge(**_job(tmp_path, entries))["stamp"] == stamp_of(str(tmp_path / "image.bin"))
        assert pool.started and pool.started[0] is not first
    finally:
        pool.close()


def test_start_makes_the_workers_once_and_merges_use_them(release, tmp_path):
    _, source = release
    pool = MergePool(2)
    try:
        pool.start()
        pool.start()
        workers = list(pool.started)
        assert len(workers) == 2 and all(w.proc.poll() is None for w in workers)
        pool.merge(**_job(tmp_path, [(0x1000, str(source / "bootloader" / "bootloader.bin"))]))
        assert pool.started == workers
    finally:
        pool.close()
    assert all(w.proc.returncode == 0 for w in workers)   # stdin closed: each ends on its own
