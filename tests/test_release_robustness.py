"""Release robustness: reproducible bytes, outputs that survive SIGKILL, and owner-only secrets.

1. Two builds of the same boards from two checkouts at different paths, under different
   environments (hash seed, time zone, locale, -j, build_dir name, file creation order and
   mtimes), give the same files byte for byte, with the same modes, and no output names the
   path of a checkout or a build folder.
2. A ``board=all -j2`` build with firmware for every board, killed with SIGKILL (the whole
   process group) at several points, leaves every output either absent or complete; the next
   run finishes the tree to exactly what an uninterrupted build makes, leaving no temp files.
3. Key-bearing outputs are 0600, and ``write_atomic(secret=True)`` has its temp file 0600
   before a byte is written; ``write_atomic`` removes the stale temporaries of its own output
   and no other's.
"""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from helpers import REPO
from firmware_factory import make_release

# what a build reads -> where the copy has it (the example plugin in the plugins/ beside the SConstruct)
PARTS = {"SConstruct": "SConstruct", "site_scons": "site_scons", "examples/acme/plugins": "plugins"}
IGNORE = shutil.ignore_patterns("__pycache__", "build", ".venv", ".git", "tests")
FIXED_ENV_KEYS = ("PYTHONHASHSEED", "TZ", "LC_ALL", "LANG", "LC_CTYPE", "LANGUAGE", "SOURCE_DATE_EPOCH")


# --- helpers ------------------------------------------------------------------------------------

def copy_checkout(dest: Path, reverse: bool = False) -> Path:
    """Copy the parts of the repository a build reads into ``dest``.

    ``reverse``: create the files one by one in reverse order and give each its own mtime
    (newest first in name order), instead of copytree's order and the original mtimes.
    """
    if not reverse:
        for part, there in PARTS.items():
            src = REPO / part
            if src.is_dir():
                shutil.copytree(src, dest / there, ignore=IGNORE)
            else:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / there)
        return dest
    staging = dest.parent / (dest.name + ".staging")
    copy_checkout(staging)
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    base = 1_500_000_000
    for n, src in enumerate(reversed(files)):
        target = dest / src.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
        shutil.copymode(src, target)
        os.utime(target, (base + 7 * n, base + 7 * n))
    shutil.rmtree(staging)
    return dest


def scons_command(checkout: Path, *args: str) -> list:
    return [sys.executable, "-m", "SCons", "-C", str(checkout), "-Q", *args]


def scons_env(**overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in FIXED_ENV_KEYS and not k.startswith("LC_")}
    env.update(overrides)
    return env


def scons(checkout: Path, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run scons on ``checkout``'s SConstruct (not the repository's) from ``cwd``."""
    cwd.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(scons_command(checkout, *args), cwd=str(cwd), env=env or scons_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"scons {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def ignored(rel: Path) -> bool:
    """SCons's own database and the post-build stamp folder are not outputs to compare."""
    return ".atfactory" in rel.parts or any(part.startswith(".sconsign") for part in rel.parts)


def snapshot(root: Path, with_temps: bool = False) -> dict:
    """relative path -> (bytes, permission bits) of every output file under ``root``."""
    tree = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or ignored(rel) or (is_temp(p.name) and not with_temps):
            continue
        tree[rel.as_posix()] = (p.read_bytes(), p.stat().st_mode & 0o7777)
    return tree


def temps_under(root: Path) -> list:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and is_temp(p.name))


def diff_trees(a: dict, b: dict, limit: int = 15) -> list:
    problems = []
    for rel in sorted(set(a) - set(b)):
        problems.append(f"only in first: {rel}")
    for rel in sorted(set(b) - set(a)):
        problems.append(f"only in second: {rel}")
    for rel in sorted(set(a) & set(b)):
        (da, ma), (db, mb) = a[rel], b[rel]
        if da != db:
            first = next((i for i, (x, y) in enumerate(zip(da, db)) if x != y), min(len(da), len(db)))
            problems.append(f"bytes differ: {rel} ({len(da)} vs {len(db)} bytes, first difference at {first})")
        if ma != mb:
            problems.append(f"mode differs: {rel} ({ma:o} vs {mb:o})")
    return problems[:limit] + ([f"... and {len(problems) - limit} more"] if len(problems) > limit else [])


def blobs(tree: dict):
    """(name, bytes) of every output, and of every member of the zip archives among them."""
    for rel, (data, _) in tree.items():
        yield rel, data
        if rel.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for info in z.infolist():
                    yield f"{rel}!{info.filename}", z.read(info)


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def say(capsys, text: str) -> None:
    with capsys.disabled():
        sys.stdout.write("\n" + text + "\n")
        sys.stdout.flush()


# --- firmware -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def boards(plugin_host, plugin_registry):
    """Every board the registry knows (stock boards and the plugins' ones), loaded."""
    from atfactory.board import load_board

    return {bid: load_board(bid, plugin_registry, extra_tables=plugin_host.board_tables())
            for bid in plugin_registry.ids()}


@pytest.fixture(scope="module")
def releases(boards, tmp_path_factory):
    """An ESP-AT release folder made for each board's own layout."""
    root = tmp_path_factory.mktemp("releases")
    return {bid: make_release(root / bid, board) for bid, board in boards.items()}


# --- 1. reproducible ----------------------------------------------------------------------------

def test_reproducible_across_checkouts_and_environments(tmp_path, releases, capsys):
    started = time.monotonic()
    runs = [
        dict(checkout=tmp_path / "checkout-alpha" / "tree-alpha", reverse=False, cwd=tmp_path / "launch-alpha",
             build_dir="build-alpha", jobs="-j1", env=scons_env(PYTHONHASHSEED="0", TZ="UTC", LC_ALL="C", LANG="C")),
        dict(checkout=tmp_path / "checkout-bravo-with-a-much-longer-path" / "nested" / "atfactory-copy", reverse=True,
             cwd=tmp_path / "launch-bravo" / "deeper", build_dir="release-output-bravo", jobs="-j2",
             env=scons_env(PYTHONHASHSEED="12345", TZ="Asia/Kathmandu", LC_ALL="C.UTF-8", LANG="C.UTF-8")),
    ]
    trees, timings = [], []
    for run in runs:
        t0 = time.monotonic()
        copy_checkout(run["checkout"], reverse=run["reverse"])
        bd = run["build_dir"]
        scons(run["checkout"], run["jobs"], "board=all", f"build_dir={bd}/plain", cwd=run["cwd"], env=run["env"])
        for board_id in ("WROOM-32", "WROOM-02"):
            scons(run["checkout"], run["jobs"], f"board={board_id}", f"firmware={releases[board_id]}",
                  f"build_dir={bd}/fw", cwd=run["cwd"], env=run["env"])
        run["out"] = run["cwd"] / bd
        trees.append(snapshot(run["out"]))
        timings.append(time.monotonic() - t0)

    first, second = trees
    assert len(first) > 300, sorted(first)[:20]
    assert "fw/WROOM-32/factory/factory_WROOM-32.bin" in first
    assert "fw/WROOM-02/factory/factory_WROOM-02.bin" in first
    assert "plain/ACME-W32-release.zip" in first
    assert diff_trees(first, second) == []

    # Key-bearing files are owner-only in both trees.
    for tree in trees:
        for rel, (_, mode) in tree.items():
            name = rel.rsplit("/", 1)[-1]
            if "_key" in name or name.startswith("factory_") and "/factory/" in rel or name.endswith("-release.zip"):
                assert mode == 0o600, f"{rel}: mode {mode:o}, expected 600"

    # No output (nor any member of an archive) names a checkout, a launch folder or a build folder.
    needles = set()
    for run in runs:
        for path in (run["checkout"], run["cwd"], run["out"], run["out"] / "plain", run["out"] / "fw"):
            needles |= {str(path), os.path.realpath(path)}
        needles |= {run["checkout"].parts[len(tmp_path.parts)], run["checkout"].name, run["cwd"].parts[len(tmp_path.parts)],
                    run["build_dir"]}
    needles |= {str(releases["WROOM-32"].parent), str(tmp_path)}
    found = [(rel, needle) for rel, data in blobs(first) for needle in needles
             if needle.encode() in data or needle.encode("utf-16-le") in data]
    assert found == [], found[:10]
    say(capsys, f"reproducible: {len(first)} files compared; run one {timings[0]:.1f}s, run two {timings[1]:.1f}s, "
                f"test {time.monotonic() - started:.1f}s")


# --- 2. atomic under SIGKILL --------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_build(boards, releases, tmp_path_factory):
    """A checkout whose every board names its own firmware, and an uninterrupted reference build."""
    root = tmp_path_factory.mktemp("sigkill")
    checkout = copy_checkout(root / "checkout")
    with_firmware = []
    for bid, board in boards.items():
        try:
            rel = Path(board.path).resolve().relative_to(REPO)
        except ValueError:
            continue   # a board from an installed plugin: built without firmware
        part = next(part for part in PARTS if rel.as_posix().startswith(part))   # where the copy has it
        with open(checkout / PARTS[part] / rel.relative_to(part), "a") as f:
            f.write(f'\n[firmware]\nrelease = "{releases[bid]}"\n')
        with_firmware.append(bid)
    args = ("-j2", "board=all")
    t0 = time.monotonic()
    scons(checkout, *args, "build_dir=reference", cwd=root)
    elapsed = time.monotonic() - t0
    reference = snapshot(root / "reference")
    assert temps_under(root / "reference") == []
    for bid in with_firmware:
        module = boards[bid].module_name
        assert f"{bid}/factory/factory_{module}.bin" in reference, bid
    yield dict(root=root, checkout=checkout, args=args, reference=reference, seconds=elapsed,
               with_firmware=with_firmware)
    shutil.rmtree(root, ignore_errors=True)   # some 100 MB of factory images


def _factory_activity(out: Path, with_data: bool = False):
    """The first factory image, temp or complete, under ``out``; None while there is none.

    ``with_data``: only a temp file that has bytes in it (or a complete image) counts.
    """
    try:
        boards = os.listdir(out)
    except OSError:
        return None
    for b in boards:
        try:
            names = os.listdir(os.path.join(out, b, "factory"))
        except OSError:
            continue
        for name in names:
            if name.startswith(".factory_") and with_data:
                try:
                    if os.path.getsize(os.path.join(out, b, "factory", name)) == 0:
                        continue
                except OSError:
                    continue
            if name.startswith(".factory_") or name.startswith("factory_"):
                return f"{b}/factory/{name}"
    return None


# Seconds after the start, or a sign in the tree: the first factory image (temp or output), and
# the first factory temp file with bytes in it (a try at killing a 4 MB write half-way).
KILL_POINTS = [0.1, 0.3, 0.6, 1.0, 1.5, "first factory image", "factory temp with data"]


def test_sigkill_leaves_complete_or_absent_outputs(full_build, capsys):
    started = time.monotonic()
    root, checkout, args, reference = full_build["root"], full_build["checkout"], full_build["args"], full_build["reference"]
    report = []
    for n, point in enumerate(KILL_POINTS):
        out = root / f"killed-{n}"
        proc = subprocess.Popen(scons_command(checkout, *args, f"build_dir={out.name}"), cwd=str(root),
                                env=scons_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        t0 = time.monotonic()
        seen = None
        try:
            if isinstance(point, str):
                while proc.poll() is None and time.monotonic() - t0 < 60:
                    seen = _factory_activity(out, with_data=(point == "factory temp with data"))
                    if seen:
                        break
                    time.sleep(0.001)
            else:
                time.sleep(point)
            at = time.monotonic() - t0
            finished_first = proc.poll() is not None
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        finally:
            proc.wait(timeout=60)

        # Right after the kill: every output present is complete and exactly the reference's.
        present = snapshot(out, with_temps=False) if out.exists() else {}
        temps = temps_under(out) if out.exists() else []
        unknown = sorted(set(present) - set(reference))
        assert unknown == [], f"kill at {point}: files no uninterrupted build makes: {unknown[:10]}"
        wrong = [rel for rel, (data, _) in present.items() if data != reference[rel][0]]
        assert wrong == [], f"kill at {point}: half-written or different outputs: {wrong[:10]}"
        modes = [f"{rel} {mode:o}" for rel, (_, mode) in present.items() if mode != reference[rel][1]]
        assert modes == [], f"kill at {point}: outputs with another mode than the reference's: {modes[:10]}"
        # Every temp file left is one of an output's, beside it.
        for t in temps:
            folder, _, name = t.rpartition("/")
            owners = [rel for rel in reference if rel.rpartition("/")[0] == folder
                      and name.startswith("." + rel.rpartition("/")[2] + ".")]
            assert owners or t.startswith(".atfactory/") or ".sconsign" in name, f"kill at {point}: stray temp {t}"
        interrupted = not finished_first and len(present) < len(reference)
        sizes = [(out / t).stat().st_size for t in temps]
        report.append(dict(point=point, at=at, outputs=len(present), temps=temps, sizes=sizes, seen=seen,
                           finished=finished_first, interrupted=interrupted, returncode=proc.returncode))

        # The next run (no -c) completes the tree to the reference and leaves no temp file.
        scons(checkout, *args, f"build_dir={out.name}", cwd=root)
        assert diff_trees(snapshot(out), reference) == [], f"kill at {point}: rebuilt tree differs"
        assert temps_under(out) == [], f"kill at {point}: temp files remain after the rebuild"
        shutil.rmtree(out)

    lines = [f"sigkill: reference build of {len(reference)} outputs ({len(full_build['with_firmware'])} boards "
             f"with firmware) took {full_build['seconds']:.2f}s; kill points:"]
    for r in report:
        label = f"{r['point']}s" if isinstance(r["point"], float) else r["point"]
        state = ("finished before the kill" if r["finished"] else
                 "killed before any output" if r["outputs"] == 0 else
                 "killed mid-build" if r["interrupted"] else "killed after the last output")
        what = f"{r['outputs']}/{len(reference)} outputs present, {len(r['temps'])} temp file(s) left"
        if r["temps"]:
            shown = [f"{t} ({size} bytes)" for t, size in zip(r["temps"], r["sizes"])]
            what += f": {', '.join(shown[:4])}{', ...' if len(shown) > 4 else ''}"
        if r["seen"]:
            what += f"; saw {r['seen']}"
        lines.append(f"  {label:<22} killed at {r['at']:.3f}s: {state}: {what}")
    lines.append(f"sigkill test: {time.monotonic() - started:.1f}s")
    say(capsys, "\n".join(lines))
    mid_build = [r for r in report if r["interrupted"] and r["outputs"] > 0]
    assert report[5]["seen"] and not report[5]["finished"], "the build was not killed at its first factory image"
    assert len(mid_build) >= 2, "too few kill points landed mid-build: " + \
        "; ".join(f"{r['point']}: {r['outputs']} outputs" for r in report)


# --- 3. owner-only secrets ----------------------------------------------------------------------

def test_key_bearing_outputs_are_owner_only(full_build):
    """After a build: *_key files, factory images holding a key partition and archives are 0600."""
    from atfactory.download_config import decode_download_config

    reference = full_build["reference"]
    ordinary = 0o666 & ~umask()
    checked_images = 0
    for rel, (data, mode) in reference.items():
        name = rel.rsplit("/", 1)[-1]
        if "_key" in name:
            assert mode == 0o600, f"{rel}: mode {mode:o}"
        elif name in ("at_customize.bin", "download.config", "flash_map.svg"):
            assert mode == ordinary, f"{rel}: mode {mode:o}, expected {ordinary:o}"
    for bid in full_build["with_firmware"]:
        config = decode_download_config(reference[f"{bid}/download.config"][0])
        keys = [p for _, p in config.entries if "_key" in p.rsplit("/", 1)[-1]]
        images = [rel for rel in reference if rel.startswith(f"{bid}/factory/")]
        assert len(images) == 1, images
        mode = reference[images[0]][1]
        if keys:
            checked_images += 1
            assert mode == 0o600, f"{images[0]} holds {keys}: mode {mode:o}"
    assert checked_images > 0
    for rel, (_, mode) in reference.items():
        if rel.endswith("-release.zip"):
            assert mode == 0o600, f"{rel}: mode {mode:o}"
    # The files on disk, not only the snapshot's record of them.
    out = full_build["root"] / "reference"
    for p in out.rglob("*_key*.bin"):
        assert os.stat(p).st_mode & 0o777 == 0o600, p


@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_write_atomic_secret_temp_is_0600_before_first_write(tmp_path, monkeypatch, mask):
    from atfactory import fsutil

    events = []
    real_mkstemp, real_fdopen = fsutil.tempfile.mkstemp, fsutil.os.fdopen

    def mkstemp(*a, **kw):
        fd, path = real_mkstemp(*a, **kw)
        events.append(("created", path, os.fstat(fd).st_mode & 0o7777))
        return fd, path

    class Watched:
        def __init__(self, f, fd):
            self._f, self._fd = f, fd

        def write(self, data):
            st = os.fstat(self._fd)
            events.append(("first write" if not any(e[0] == "first write" for e in events) else "write",
                           st.st_ino, st.st_mode & 0o7777))
            return self._f.write(data)

        def __enter__(self):
            self._f.__enter__()
            return self

        def __exit__(self, *exc):
            return self._f.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self._f, name)

    def fdopen(fd, *a, **kw):
        return Watched(real_fdopen(fd, *a, **kw), fd)

    monkeypatch.setattr(fsutil.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(fsutil.os, "fdopen", fdopen)

    target = tmp_path / "sub" / "client_key.bin"
    target.parent.mkdir()
    target.write_bytes(b"old, world-readable")
    os.chmod(target, 0o644)
    old = os.umask(mask)
    try:
        fsutil.write_atomic(str(target), b"SECRET" * 100, secret=True)
    finally:
        os.umask(old)

    created = [e for e in events if e[0] == "created"]
    writes = [e for e in events if e[0] in ("first write", "write")]
    assert created and writes, f"write_atomic no longer creates its temp with mkstemp and writes through fdopen " \
                               f"(events: {events}); update this observation"
    _, tmp, mode_at_creation = created[0]
    assert Path(tmp).parent == target.parent and is_temp(Path(tmp).name)
    assert mode_at_creation == 0o600
    assert writes[0][0] == "first write" and writes[0][2] == 0o600, events
    assert target.read_bytes() == b"SECRET" * 100
    assert target.stat().st_mode & 0o7777 == 0o600
    assert target.stat().st_ino == writes[0][1]          # the file written is the one renamed into place
    assert not Path(tmp).exists() and temps_under(tmp_path) == []


def test_write_atomic_ordinary_output_follows_umask(tmp_path):
    from atfactory import fsutil

    target = tmp_path / "at_customize.bin"
    fsutil.write_atomic(str(target), b"table")
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask()


def test_stale_temporaries_of_one_output_only(tmp_path):
    from atfactory.fsutil import write_atomic
    (tmp_path / ".cfg.bin.bin.abcdEFGH.tmp").write_bytes(b"in flight")   # another output's temporary
    (tmp_path / ".cfg.bin.12345678.tmp").write_bytes(b"stale")
    write_atomic(str(tmp_path / "cfg.bin"), b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cfg.bin.bin.abcdEFGH.tmp", "cfg.bin"]


def test_write_atomic_makes_missing_folders_and_refuses_a_file_in_the_way(tmp_path):
    from atfactory.fsutil import write_atomic
    write_atomic(str(tmp_path / "a" / "b" / "one.bin"), b"1")   # parents made; nothing to list in them
    write_atomic(str(tmp_path / "a" / "b" / "two.bin"), b"2")
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["one.bin", "two.bin"]
    (tmp_path / "in-the-way").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        write_atomic(str(tmp_path / "in-the-way" / "three.bin"), b"3")
    # A folder this process did not make is listed: a killed build's temporary there goes.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / ".cfg.bin.ABCD1234.tmp").write_bytes(b"stale")
    write_atomic(str(tmp_path / "old" / "cfg.bin"), b"new")
    assert sorted(p.name for p in (tmp_path / "old").iterdir()) == ["cfg.bin"]
