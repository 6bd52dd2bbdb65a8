#!/usr/bin/env python3
"""atfactory benchmarks: build times and peak memory, each against a baseline of the same run.

    .venv/bin/python bench/run.py                      # the full run (100,000 devices in figures 4 and 6: long)
    .venv/bin/python bench/run.py --quick              # smoke run: 3 repeats, 200 devices (about 75 s)
    .venv/bin/python bench/run.py --devices 1000,10000 # device counts of figures 4 and 6
    .venv/bin/python bench/run.py --figures 1,3        # only some figures (setup is always done)

This is not a test: it prints a table and writes ``bench/.cache/last-run.json``.  Nothing in
the repository is modified: the SConstruct, site_scons/ (the stock boards included) and the example plugin
(examples/acme/plugins/, as the copy's plugins/) are copied into a
temporary folder (removed at the end unless ``--keep``), and every build writes there.  The
per-device certificates of figure 4 and the server certificates of figure 3 are made once with
``cryptography`` (EC P-256) and cached in ``bench/.cache/`` (ignored by git).

Method
------
* Every measured command is a fresh child process.  Wall time is ``time.perf_counter()`` around
  the child (spawn to reap).  Peak memory is the ``ru_maxrss`` of the command and every
  descendant it waited for, reported by ``/usr/bin/time -f %M`` (or, where that is missing, by
  a tiny Python wrapper from ``getrusage(RUSAGE_CHILDREN)``): the largest single process of the
  tree.  The wrapper matters: a child forked straight from this process would inherit this
  process's own high-water mark.  SCons runs its builders in threads, so for most builds this is
  the scons process; figure 4 also samples /proc every 50 ms for the RSS summed over the tree.
* Each run also records how busy the machine was with other processes meanwhile ("other load",
  from /proc/stat less the child's own CPU time); a series whose median exceeds 0.25 CPU is
  flagged as noisy.  Before starting, the script waits (``--wait-quiet``) for the machine to
  be quiet.
* Each measurement is repeated (``--repeat``, default 5; 3 with ``--quick``) and the median is
  reported; the measurement and its baseline are interleaved run by run, so that drift of the
  machine affects both alike.  One unmeasured warm-up run precedes each series (Python byte
  code of the copied site_scons, the page cache).
  Sub-second measurements (figure 1, the profile experiment) are repeated 2n+1 times.
* Every figure is a ratio against a baseline measured in the same run on the same machine.
* The children cache Python byte code as a user's Python does, into the work folder
  (PYTHONPYCACHEPREFIX), even where PYTHONDONTWRITEBYTECODE is set (as in some sandboxes:
  row 1a' shows what that costs); nothing is written into the repository or the venv.

Figures
-------
1a  no-op rebuild of WROOM-32 (built, no firmware)   vs  ``scons -Q`` on an empty SConstruct
1b  the same with firmware (factory image built), in the tree ``board=all`` built  vs  the same
    empty SConstruct
1c  the same as 1b for a v5.0 board (WROOM-32-V5)    vs  the same empty SConstruct
2   cold ``scons -Q board=all -j2``, firmware for every board  vs  a shell script running one
    ``python -m esptool merge-bin`` per board from the download.config the build wrote
    (goal <= 0.3x; also their CPU time, user + sys of each process tree: the build's merge
    workers included; 2b: the same script run two at a time with ``xargs -P 2``, for information)
3   ``board=all -j2`` after replacing the server certificate/key pair of WROOM-32 (which
    ACME-W32 extends)  vs  the no-op ``board=all -j2`` of the same tree; lists what was rebuilt
4   ``scons board=WROOM-32 devices=CSV -j2`` (v2: client_cert.bin, client_key.bin, download.config a
    device) for each device count (default 1,000, 10,000, 100,000)  vs  the 3,000 devices/s goal and
    the disk floor: plain Python making the same folders and files (a copy of one device's folder
    per device, two processes), in creates/s and MB/s; the checked floor: the same program, which
    first parses each row's certificate and key with cryptography and compares their public keys
    (what no per-device build can skip); the no-op rebuild (goal < 2 s at 100,000);
    peak memory of the largest count vs the smallest (goal <= 1.2x).  Runs of 50,000 devices or
    more remove their outputs once measured (100,000 mfg_nvs devices are ~11 GB).
5   cold build of a WROOM-32 with 16MB flash and firmware  vs  the same board with 4MB flash;
    reference: esptool's ``merge_bin`` of that 16MB image in-process in a fresh Python
6   the same series for ``board=WROOM-32-V5`` (a 112 KiB mfg_nvs.bin and a download.config a
    device)  and, up to 10,000 devices, esp-idf-nvs-partition-gen 0.1.9 making the same images in
    one Python process; every image compared byte for byte
7   ``device_images=yes`` with firmware, WROOM-32, 1,000 devices (``--image-devices``; 4 MB a
    device, so 100,000 would not fit the disk): MB/s the batch writes vs the disk floor writing
    the same folders and files (goal: within 1.5x)
Profile: ``-X importtime`` (imports beyond those of the empty SConstruct, by package) and
cProfile of the no-op rebuild of 1a (and of 1b), and one experiment: the no-op of 1a with
``DefaultEnvironment(tools=[])`` put first in (a copy of) the SConstruct.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import pstats
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

sys.dont_write_bytecode = True   # leave no byte code in the repository from this process
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
CACHE = BENCH / ".cache"
PY = sys.executable
STOCK = Path("site_scons/atfactory/boards")   # the stock boards, in a copy of the repository
SCONS = str(Path(PY).parent / "scons") if (Path(PY).parent / "scons").exists() else shutil.which("scons")
sys.path[:0] = [str(REPO / "site_scons"), str(REPO / "tests")]

# Every target SCons builds prints "LABEL  path" (see site_scons/site_tools/atfactory_build.py).
LABEL_LINE = re.compile(r"^(PKI|PARAM|TABLE|CONFIG|MAP|LIST|MERGE|HOOKS|COPY|CUT|GATT|RAW|PLUGIN|SIGN|[A-Z]{3,8})\s+(\S.*)$")
GOAL_DEVICES_PER_S = 3000.0     # issue 14 goal 3, at 10,000 and 100,000 devices
GOAL_NOOP_S = 2.0                 # the no-op rebuild of a 100,000-device batch
GOAL_IMAGES_VS_DISK = 1.5         # goal 4: device factory images within 1.5x a plain write of the same bytes
BIG_BATCH = 50000                 # from this many devices a run's outputs are removed once measured (disk)
VENDOR_TABLES = {"vendor": lambda *args: None}   # let load_board accept the ACME plugin's table


# --- running and measuring ------------------------------------------------------------------

@dataclass
class Run:
    seconds: float
    maxrss_kb: int            # the largest single process of the tree (ru_maxrss)
    returncode: int
    output: str
    tree_peak_kb: int = 0     # sampled: the largest sum of RSS over the tree at one moment
    other_cpu: float = 0.0    # CPUs kept busy by processes other than this one's tree, on average
    cpu_s: float = 0.0        # user + sys CPU seconds of the command and every descendant it waited for


_TICK = os.sysconf("SC_CLK_TCK")


def _busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot (every core summed)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICK


# The children's environment: set by main() (bytecode caching on, into the work folder).
ENV = dict(os.environ)
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children(pid: int):
    """Child pids of ``pid`` (from every thread: SCons starts processes from worker threads)."""
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _tree_rss_kb(root: int) -> int:
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE_KB
        except (OSError, ValueError, IndexError):
            continue
        stack += _children(pid)
    return total


# Peak memory: ru_maxrss of a child forked from this (large) process starts at this process's
# own peak (Linux carries the high-water mark across exec), so each command is started by a small
# program that reports its own children's peak: /usr/bin/time, or a tiny Python if it is missing.
TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
_WRAPPER = ("import resource, subprocess, sys\n"
            "code = subprocess.call(sys.argv[2:])\n"
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
            "sys.exit(code if code >= 0 else 128 - code)\n")


def run(cmd, cwd, check=True, sample=False, env=None) -> Run:
    """Run ``cmd`` in a fresh child: wall time (perf_counter around it) and peak RSS of the
    command and its descendants (the largest single process, as /usr/bin/time -v reports it).

    ``sample``: also poll /proc every 50 ms for the RSS summed over the process tree (children
    running at the same time add up there, unlike in ru_maxrss)."""
    import threading

    cmd = [str(c) for c in cmd]
    peak = [0]
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        launcher = [TIME, "-f", "%M", "-o", rss.name] if TIME else [PY, "-c", _WRAPPER, rss.name]
        busy0 = _busy_seconds()
        t0 = time.perf_counter()
        proc = subprocess.Popen(launcher + cmd, cwd=str(cwd), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env or ENV)
        done = threading.Event()
        if sample:
            def poll():
                while not done.wait(0.05):
                    peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
            sampler = threading.Thread(target=poll, daemon=True)
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        busy = _busy_seconds() - busy0
        done.set()
        if sample:
            sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
        lines = [l for l in open(rss.name).read().splitlines() if l.strip().isdigit()]
        maxrss = int(lines[-1]) if lines else 0
    other = max(0.0, busy - usage.ru_utime - usage.ru_stime) / seconds
    result = Run(seconds, maxrss, proc.returncode, text, max(peak[0], maxrss), other,
                 usage.ru_utime + usage.ru_stime)
    if check and result.returncode != 0:
        raise SystemExit(f"bench: command failed ({result.returncode}): {' '.join(cmd)}\n"
                         f"{text[-3000:]}")
    return result


def timeline(cmd, cwd):
    """One unmeasured run, its output lines timestamped and the RSS of its root process sampled:
    (seconds, [(t, line)], [(t, rss_kb)])."""
    import threading

    t0 = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, env=ENV, text=True, bufsize=1)
    lines, rss, done = [], [], threading.Event()

    def poll():
        while not done.wait(0.05):
            try:
                with open(f"/proc/{proc.pid}/statm") as f:
                    rss.append((time.perf_counter() - t0, int(f.read().split()[1]) * PAGE_KB))
            except (OSError, ValueError, IndexError):
                pass
    sampler = threading.Thread(target=poll, daemon=True)
    sampler.start()
    for line in proc.stdout:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
    proc.wait()
    done.set()
    sampler.join()
    return time.perf_counter() - t0, lines, rss


def scons(cwd, *args, check=True, sample=False, env=None) -> Run:
    return run([PY, SCONS, "-Q", *args], cwd, check=check, sample=sample, env=env)


def machine_load(seconds=1.0) -> float:
    """CPUs kept busy by other processes over ``seconds`` (this process sleeps meanwhile)."""
    busy0 = _busy_seconds()
    time.sleep(seconds)
    return (_busy_seconds() - busy0) / seconds


def wait_quiet(limit_s: float, quiet=False):
    """Wait (at most ``limit_s``) until other processes use less than 0.2 CPU."""
    deadline = time.monotonic() + limit_s
    load = machine_load()
    if load >= 0.2 and not quiet:
        log(f"waiting for the machine to be quiet (other processes use {load:.2f} CPU; at most {limit_s:.0f} s)")
    while load >= 0.2 and time.monotonic() < deadline:
        load = machine_load(2.0)
    if load >= 0.2 and not quiet:
        log(f"warning: other processes still use {load:.2f} CPU: the figures will be noisy")
    return load


def settle():
    """Flush dirty pages (from the previous run's files and their removal) outside the timing."""
    os.sync()


def med(runs, attr="seconds"):
    return statistics.median(getattr(r, attr) for r in runs)


def built_lines(output: str):
    """(label, rest) for every target line a build printed."""
    out = []
    for line in output.splitlines():
        m = LABEL_LINE.match(line)
        if m and not line.startswith("scons:"):
            out.append((m.group(1), m.group(2).strip()))
    return out


def log(msg=""):
    print(msg, flush=True)


def fmt_s(seconds):
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def fmt_mb(kb):
    return f"{kb / 1024:.0f} MB"


def spread(runs, attr="seconds"):
    values = sorted(getattr(r, attr) for r in runs)
    if attr == "seconds":
        other = statistics.median(r.other_cpu for r in runs)
        return "[" + ", ".join(f"{v * 1000:.0f}" for v in values) + f"] ms (other load {other:.2f} CPU)"
    return "[" + ", ".join(f"{v / 1024:.0f}" for v in values) + "] MB"


# --- the machine ----------------------------------------------------------------------------

def machine_info():
    info = {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "cpu_model": "?",
            "memory": "?", "kernel": platform.release(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory"] = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    import cryptography
    import esptool
    import SCons
    info["scons"] = SCons.__version__
    info["esptool"] = esptool.__version__
    info["cryptography"] = cryptography.__version__
    info["usr_bin_time"] = os.path.exists("/usr/bin/time")
    info["code"] = code_version()
    info["loadavg"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return info


def code_version():
    """The commit measured, and whether the work tree had changes (the bench copies it as it is)."""
    import hashlib

    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True).stdout
    head = git("rev-parse", "--short", "HEAD").strip() or "?"
    changed = [l[3:] for l in git("status", "--porcelain", "--", "SConstruct", "site_scons", "examples/acme").splitlines()]
    if not changed:
        return head
    digest = hashlib.sha256(git("diff", "HEAD", "--", "SConstruct", "site_scons", "examples/acme").encode()).hexdigest()[:8]
    return f"{head} + uncommitted changes to {len(changed)} files (diff {digest}: {', '.join(changed)})"


# --- certificates (cached) ------------------------------------------------------------------

def _ec_material(ca_key, ca_name, cn, not_before, not_after):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                              serialization.NoEncryption()))


def _write(path: Path, data: bytes, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def bench_ca():
    """A small EC P-256 CA in bench/.cache/ca/, made once."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = CACHE / "ca"
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "atfactory bench (not for production)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "atfactory bench CA")])
    if (folder / "ca.key").exists():
        key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), None)
        return key, name
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    _write(folder / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))
    _write(folder / "ca.key", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()), 0o600)
    return key, name


def _validity():
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return now - datetime.timedelta(days=1), now + datetime.timedelta(days=3650)


def server_pairs():
    """Two server certificate/key pairs, A and B (for figure 3)."""
    folder = CACHE / "server"
    if not (folder / "b.key").exists():
        ca_key, ca_name = bench_ca()
        nb, na = _validity()
        for tag in ("a", "b"):
            cert, key = _ec_material(ca_key, ca_name, f"atfactory-bench-server-{tag}", nb, na)
            _write(folder / f"{tag}.crt", cert)
            _write(folder / f"{tag}.key", key, 0o600)
    return {tag: ((folder / f"{tag}.crt").read_bytes(), (folder / f"{tag}.key").read_bytes()) for tag in "ab"}


def device_certs(count: int) -> float:
    """Make sure bench/.cache/devices/ holds ``count`` device pairs; seconds spent making new ones."""
    folder = CACHE / "devices"
    stamp = folder / "count"
    have = int(stamp.read_text()) if stamp.exists() else 0
    if have >= count:
        return 0.0
    ca_key, ca_name = bench_ca()
    nb, na = _validity()
    t0 = time.perf_counter()
    for n in range(have, count):
        cert, key = _ec_material(ca_key, ca_name, f"atfactory-bench-device-{n:05d}", nb, na)
        sub = folder / f"d{n // 1000:03d}"
        _write(sub / f"cert_{n}.pem", cert)
        _write(sub / f"key_{n}.pem", key, 0o600)
        if (n + 1) % 1000 == 0:
            stamp.write_text(str(n + 1))
    stamp.write_text(str(count))
    return time.perf_counter() - t0


# The baseline of figure 6: the maintained generator making each device's image in one process,
# from the board's own content with the device's client certificate and key in place.
NVS_GEN_SCRIPT = """
import contextlib, csv, io, os, sys
sys.path.insert(0, "site_scons")
from atfactory import nvs
from esp_idf_nvs_partition_gen import nvs_partition_gen as gen
shared = open(r"{shared}", "rb").read()
content = nvs.decode_nvs(shared).namespace_items()
base = os.path.dirname(r"{csv}")
rows = list(csv.DictReader(open(r"{csv}")))
os.makedirs(r"{out}", exist_ok=True)
for row in rows:
    blobs = {{"client_cert": open(os.path.join(base, row["client_cert"]), "rb").read(),
             "client_key": open(os.path.join(base, row["client_key"]), "rb").read()}}
    buf = io.BytesIO()
    with contextlib.redirect_stdout(io.StringIO()):
        image = gen.nvs_open(buf, len(shared) - 4096, gen.Page.VERSION2)
        for ns, items in content:
            gen.write_entry(image, ns, "namespace", "", "")
            for key, kind, value in items:
                value = blobs.get(ns, value) if kind == "blob" else value
                gen.write_entry(image, key, "data", "binary" if kind == "blob" else kind, value)
        gen.nvs_close(image)
    with open(os.path.join(r"{out}", row["device_id"] + ".bin"), "wb") as f:
        f.write(buf.getvalue())
"""


# The machine's floor for figures 4, 6 and 7: plain Python making the same folders and files as
# the build's devices/ (a copy of one device's folder per device: its folders, and each file with
# its bytes and mode), split over two processes as the build's -j2 is, with nothing to compute.
DISK_FLOOR_SCRIPT = """
import os, shutil, sys, time
from multiprocessing import Process
sample = r"{sample}"
dirs, files = [], []
for root, ds, fs in os.walk(sample):
    rel = os.path.relpath(root, sample)
    dirs += [os.path.normpath(os.path.join(rel, d)) for d in sorted(ds)]
    files += [(os.path.normpath(os.path.join(rel, f)), open(os.path.join(root, f), "rb").read(),
               os.stat(os.path.join(root, f)).st_mode & 0o777) for f in sorted(fs)]
{check}
def part(k):
    for n in range(k, {count}, 2):
        check(n)
        d = os.path.join(r"{out}", "dev-%06d" % n)
        os.mkdir(d)
        for sub in dirs:
            os.mkdir(os.path.join(d, sub))
        for rel, data, mode in files:
            fd = os.open(os.path.join(d, rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            digest(data)
shutil.rmtree(r"{out}", ignore_errors=True)
os.makedirs(r"{out}")
t0 = time.perf_counter()
procs = [Process(target=part, args=(k,)) for k in (0, 1)]
[p.start() for p in procs]
[p.join() for p in procs]
print("floor_seconds", time.perf_counter() - t0)   # the creating alone: no start-up, as a long batch sees it
sys.exit(max(p.exitcode for p in procs))
"""


# The checked floor of figures 4, 6 and 7: the disk floor's program, which also parses each
# row's certificate and key with cryptography and compares their public keys before writing the
# device's files, and takes each file's SHA-256 (the ledger lists them): the plainest program
# doing what a per-device build cannot skip.
PAIR_CHECK = """
import csv, hashlib
from cryptography import x509
from cryptography.hazmat.primitives import serialization
DER, SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
with open(r"{csv}", newline="") as f:
    rows = [(os.path.join(os.path.dirname(r"{csv}"), r["client_cert"]),
             os.path.join(os.path.dirname(r"{csv}"), r["client_key"])) for r in csv.DictReader(f)]
def check(n):
    cert_path, key_path = rows[n]
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None, unsafe_skip_rsa_key_validation=True)
    if cert.public_key().public_bytes(DER, SPKI) != key.public_key().public_bytes(DER, SPKI):
        sys.exit("a pair does not match: " + cert_path)
def digest(data):   # the ledger lists every output's SHA-256
    hashlib.sha256(data).digest()
"""
NO_CHECK = "def check(n):\n    pass\ndef digest(data):\n    pass\n"


def device_tree(folder: Path):
    """(files, bytes) of one device's folder."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def devices_csv(count: int) -> Path:
    """bench/.cache/devices_<count>.csv: device_id,client_cert,client_key, paths relative to it."""
    path = CACHE / f"devices_{count}.csv"
    if not path.exists():
        lines = ["device_id,client_cert,client_key"]
        for n in range(count):
            sub = f"devices/d{n // 1000:03d}"
            lines.append(f"dev-{n:05d},{sub}/cert_{n}.pem,{sub}/key_{n}.pem")
        path.write_text("\n".join(lines) + "\n")
    return path


# --- the work tree --------------------------------------------------------------------------

def copy_repo(dst: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    dst.mkdir(parents=True)
    shutil.copy2(REPO / "SConstruct", dst / "SConstruct")
    shutil.copytree(REPO / "site_scons", dst / "site_scons", ignore=ignore)
    # the example vendor plugin, in the plugins/ folder the SConstruct searches, as every build had it
    shutil.copytree(REPO / "examples" / "acme" / "plugins", dst / "plugins", ignore=ignore)
    return dst


def registry_for(root: Path):
    from atfactory.board import BoardRegistry
    registry = BoardRegistry()
    registry.add_folder(str(root / STOCK))
    for p in sorted((root / "plugins" / "boards").glob("*.toml")):
        registry.add(str(p))
    return registry


def load(ref, registry):
    from atfactory.board import load_board
    return load_board(ref, registry, extra_tables=VENDOR_TABLES)


def append(path: Path, text: str):
    with open(path, "a") as f:
        f.write("\n" + text)


def parse_download_config(path: Path):
    words = path.read_text().split()
    options, entries, i = {}, [], 0
    while i < len(words):
        if words[i].startswith("--"):
            options[words[i][2:]] = words[i + 1]
        else:
            entries.append((int(words[i], 0), words[i + 1]))
        i += 2
    return options, entries


def setup(work: Path):
    """plain/: a pristine copy.  fw/: a copy whose every board has [firmware] release, whose
    WROOM-32 takes its server certificate and key from bench_certs/, plus bench_boards/ with
    WROOM-32 at 16MB and 4MB (figure 5)."""
    from firmware_factory import make_release

    plain = copy_repo(work / "plain")
    fw = copy_repo(work / "fw")
    pairs = server_pairs()
    _write(fw / "bench_certs" / "server.crt", pairs["a"][0])
    _write(fw / "bench_certs" / "server.key", pairs["a"][1], 0o600)
    for size in ("16MB", "4MB"):
        (fw / "bench_boards").mkdir(exist_ok=True)
        (fw / "bench_boards" / f"BENCH-{size}.toml").write_text(
            f'# figure 5: WROOM-32 with {size} of flash\nextends = "WROOM-32"\n\n[flash]\nsize = "{size}"\n')
    registry = registry_for(fw)
    releases = {}
    for board_id in registry.ids():
        releases[board_id] = make_release(work / "releases" / board_id, load(board_id, registry))
    for size in ("16MB", "4MB"):
        path = fw / "bench_boards" / f"BENCH-{size}.toml"
        releases[path.stem] = make_release(work / "releases" / path.stem, load(str(path), registry))
    boards = {}
    for board_id in registry.ids():
        path = Path(registry.get(board_id).path)
        text = path.read_text()
        assert "[firmware]" not in text, f"{path} already has a [firmware] table"
        append(path, f'[firmware]\nrelease = "{releases[board_id]}"\n')
        boards[board_id] = load(board_id, registry).chip.name
    for size in ("16MB", "4MB"):
        append(fw / "bench_boards" / f"BENCH-{size}.toml", f'[firmware]\nrelease = "{releases[f"BENCH-{size}"]}"\n')
    append(fw / STOCK / "WROOM-32.toml",
           '# figure 3: a server certificate/key pair of the benchmark\n'
           '[[at_customize.partitions]]\nname = "server_cert"\nsource = ["../../../bench_certs/server.crt"]\n\n'
           '[[at_customize.partitions]]\nname = "server_key"\nsource = ["../../../bench_certs/server.key"]\n')
    (work / "empty").mkdir()
    (work / "empty" / "SConstruct").write_text("")
    return plain, fw, boards, pairs


# --- the figures ----------------------------------------------------------------------------

class Bench:
    def __init__(self, args, work: Path):
        self.args = args
        self.work = work
        self.n = args.repeat
        self.rows = []       # the final table
        self.results = {}    # everything, for last-run.json
        self.remarks = []    # anything that looked wrong
        self.current = ""    # the figure being measured
        self.retried = 0     # runs made again because the machine was busy

    def row(self, figure, measured, baseline, ratio, goal, met):
        self.rows.append((figure, measured, baseline, ratio, goal, met))

    def remark(self, text):
        self.remarks.append(text)
        log(f"  !! {text}")

    def fresh(self, name: str) -> Path:
        """A new, never used folder for one run's outputs.  Nothing is deleted between runs: on
        ext4, creating files soon after deleting many is slow (inode allocation skips and scans
        recently deleted inodes), which made each repeat of figure 4 slower than the one before."""
        self._fresh = getattr(self, "_fresh", 0) + 1
        return self.work / "runs" / f"{name}-{self._fresh}"

    def interleaved(self, *series, cheap=False):
        """series: callables returning a Run; each run once per repeat, in turn.  ``cheap``: a
        sub-second measurement, repeated 2n+1 times (its median is more exposed to noise)."""
        out = [[] for _ in series]
        for _ in range(2 * self.n + 1 if cheap else self.n):
            for i, fn in enumerate(series):
                out[i].append(self.measure(fn))
        self.check_load(out)
        return out

    def measure(self, fn, retries=2):
        """fn() -> Run; a run during which other processes kept the machine busy (another
        session's test suite, say) is dropped and made again once the machine is quiet."""
        result = fn()
        for _ in range(retries):
            if result.other_cpu <= 0.25:
                break
            self.retried += 1
            wait_quiet(self.args.wait_quiet, quiet=True)
            result = fn()
        return result

    def check_load(self, series):
        worst = max(statistics.median(r.other_cpu for r in runs) for runs in series)
        self.max_other = max(getattr(self, "max_other", 0.0), worst)
        if worst > 0.25:
            self.remark(f"{self.current}: other processes kept {worst:.2f} CPU busy (median) during a measurement: "
                        "its figures are noisy; run again on a quiet machine")

    # 1 ------------------------------------------------------------------------------------
    def fig1(self, plain, fw):
        self.current = "figure 1a"
        log("\n[1] no-op rebuild of WROOM-32 vs scons -Q on an empty SConstruct")
        empty = self.work / "empty"
        out_plain = self.work / "out-plain"
        scons(plain, "board=WROOM-32", f"build_dir={out_plain}")                 # build it
        scons(plain, "board=WROOM-32", f"build_dir={out_plain}")                 # warm-up
        scons(empty)
        floor_py = [run([PY, "-c", "pass"], empty) for _ in range(2 * self.n + 1)]
        noop, base = self.interleaved(lambda: scons(plain, "board=WROOM-32", f"build_dir={out_plain}"),
                                      lambda: scons(empty), cheap=True)
        self._check_noop(noop, "1a")
        ratio = med(noop) / med(base)
        log(f"  no-op WROOM-32      median {fmt_s(med(noop))} {spread(noop)}  peak {fmt_mb(med(noop, 'maxrss_kb'))}")
        log(f"  empty SConstruct    median {fmt_s(med(base))} {spread(base)}  peak {fmt_mb(med(base, 'maxrss_kb'))}")
        log(f"  python -c pass      median {fmt_s(med(floor_py))}")
        log(f"  ratio {ratio:.2f}x (goal <= 1.5x)")
        self.results["1a"] = {"noop_s": med(noop), "empty_s": med(base), "python_s": med(floor_py), "ratio": ratio,
                              "noop_maxrss_kb": med(noop, "maxrss_kb"), "empty_maxrss_kb": med(base, "maxrss_kb")}
        self.row("1a no-op WROOM-32 (no firmware)", fmt_s(med(noop)), f"{fmt_s(med(base))} empty SConstruct",
                 f"{ratio:.2f}x", "<= 1.5x", ratio <= 1.5)
        self.noop_s = med(noop)
        self.empty = base
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            nobc = {**ENV, "PYTHONDONTWRITEBYTECODE": "1"}
            nobc.pop("PYTHONPYCACHEPREFIX", None)   # as here: site_scons compiled at every run
            nb_noop, nb_base = self.interleaved(
                lambda: scons(plain, "board=WROOM-32", f"build_dir={out_plain}", env=nobc),
                lambda: scons(empty, env=nobc), cheap=True)
            r = med(nb_noop) / med(nb_base)
            log(f"  with PYTHONDONTWRITEBYTECODE=1 (as set in this environment): no-op {fmt_s(med(nb_noop))}, "
                f"empty {fmt_s(med(nb_base))}, ratio {r:.2f}x")
            self.results["1a_nobytecode"] = {"noop_s": med(nb_noop), "empty_s": med(nb_base), "ratio": r}
            self.row("1a' same, PYTHONDONTWRITEBYTECODE=1", fmt_s(med(nb_noop)), f"{fmt_s(med(nb_base))} empty SConstruct",
                     f"{r:.2f}x", "(info)", None)

    def fig1b(self, fw, out_all, board="WROOM-32", fig="1b", version="v2"):
        """A no-op rebuild of one board with firmware in the tree ``board=all`` built: 1b for a v2
        board (WROOM-32), 1c for a v5.0 board (WROOM-32-V5)."""
        self.current = f"figure {fig}"
        log(f"\n[{fig}] no-op rebuild of {board} ({version}) with firmware (factory image) vs the empty SConstruct")
        empty = self.work / "empty"
        scons(fw, f"board={board}", f"build_dir={out_all}")   # warm-up
        noop, base = self.interleaved(lambda: scons(fw, f"board={board}", f"build_dir={out_all}"),
                                      lambda: scons(empty), cheap=True)
        self._check_noop(noop, fig)
        ratio = med(noop) / med(base)
        log(f"  no-op {board}+fw   median {fmt_s(med(noop))} {spread(noop)}  peak {fmt_mb(med(noop, 'maxrss_kb'))}")
        log(f"  empty SConstruct    median {fmt_s(med(base))} {spread(base)}")
        log(f"  ratio {ratio:.2f}x (goal <= 1.15x)")
        self.results[fig] = {"noop_s": med(noop), "empty_s": med(base), "ratio": ratio}
        self.row(f"{fig} no-op {board} (with firmware)", fmt_s(med(noop)), f"{fmt_s(med(base))} empty SConstruct",
                 f"{ratio:.2f}x", "<= 1.15x", ratio <= 1.15)

    def _check_noop(self, runs, fig):
        for r in runs:
            built = built_lines(r.output)
            if built:
                self.remark(f"figure {fig}: a no-op run built {len(built)} targets: {built[:3]}")
                return

    # 2 ------------------------------------------------------------------------------------
    def fig2(self, fw, boards, out_all):
        self.current = "figure 2"
        log(f"\n[2] cold scons board=all -j2 with firmware ({len(boards)} boards) vs one esptool merge-bin per board")
        first = scons(fw, "board=all", "-j2", f"build_dir={out_all}")   # warm-up; its download.configs feed the script
        lines = built_lines(first.output)
        log(f"  warm-up build: {len(lines)} targets, {fmt_s(first.seconds)}")
        script, script_p2 = self._merge_scripts(boards, out_all)
        last = {}

        def cold_build():
            settle()
            return scons(fw, "board=all", "-j2", f"build_dir={self.fresh('cold')}")

        def by_hand(which):
            def go():
                last["dir"] = self.fresh("script")
                last["dir"].mkdir(parents=True)
                settle()
                return run(["bash", which, last["dir"]], self.work)
            return go

        series = [cold_build, by_hand(script)] + ([] if self.args.quick else [by_hand(script_p2)])
        results = self.interleaved(*series)
        builds, hand = results[0], results[1]
        self._compare_images(boards, out_all, last["dir"])
        ratio = med(builds) / med(hand)
        cpu_ratio = med(builds, "cpu_s") / med(hand, "cpu_s")
        log(f"  scons board=all -j2      median {fmt_s(med(builds))} {spread(builds)}  peak {fmt_mb(med(builds, 'maxrss_kb'))}"
            f"  CPU {med(builds, 'cpu_s'):.2f} s")
        log(f"  esptool script ({len(boards)} procs) median {fmt_s(med(hand))} {spread(hand)}  peak {fmt_mb(med(hand, 'maxrss_kb'))}"
            f"  CPU {med(hand, 'cpu_s'):.2f} s")
        log(f"  ratio {ratio:.2f}x (goal <= 0.3x); CPU time (user + sys of each process tree) {cpu_ratio:.2f}x")
        self.results["2"] = {"scons_s": med(builds), "script_s": med(hand), "ratio": ratio,
                             "scons_cpu_s": med(builds, "cpu_s"), "script_cpu_s": med(hand, "cpu_s"),
                             "cpu_ratio": cpu_ratio,
                             "scons_maxrss_kb": med(builds, "maxrss_kb"), "targets": len(lines),
                             "script_maxrss_kb": med(hand, "maxrss_kb")}
        self.row(f"2  cold board=all -j2 + firmware ({len(boards)} boards)", fmt_s(med(builds)),
                 f"{fmt_s(med(hand))} esptool script", f"{ratio:.2f}x", "<= 0.3x", ratio <= 0.3)
        self.row("2  (info) the same in CPU time, user + sys", f"{med(builds, 'cpu_s'):.2f} s",
                 f"{med(hand, 'cpu_s'):.2f} s esptool script", f"{cpu_ratio:.2f}x", "-", None)
        if len(results) > 2:
            p2 = results[2]
            ratio2 = med(builds) / med(p2)
            log(f"  esptool script -P 2      median {fmt_s(med(p2))} {spread(p2)}  ratio {ratio2:.2f}x")
            self.results["2"].update({"script_p2_s": med(p2), "ratio_p2": ratio2})
            self.row("2b (info) same vs script run 2 at a time", fmt_s(med(builds)), f"{fmt_s(med(p2))} xargs -P 2",
                     f"{ratio2:.2f}x", "-", None)

    def _merge_scripts(self, boards, out_all):
        commands = []
        for board_id, chip in sorted(boards.items()):
            release = out_all / board_id
            options, entries = parse_download_config(release / "download.config")
            words = [PY, "-m", "esptool", "--chip", chip, "merge-bin", "-o", f"factory_{board_id}.bin",
                     "--flash-mode", options["flash_mode"], "--flash-freq", options["flash_freq"],
                     "--flash-size", options["flash_size"], "--pad-to-size", options["flash_size"]]
            for offset, rel in entries:
                words += [f"0x{offset:x}", str(release / rel)]
            words = [shlex.quote(w) for w in words]
            words[words.index("-o") + 1] = f'"$OUT"/factory_{board_id}.bin'   # the output folder: $1 of the script
            commands.append(" ".join(words))
        script = self.work / "merge_all.sh"
        script.write_text("#!/bin/bash\n# one esptool merge-bin per board, as a user would script it\nset -e\nOUT=\"$1\"\n"
                          + "\n".join(c + " >/dev/null" for c in commands) + "\n")
        cmds = self.work / "merge_commands.txt"
        cmds.write_text("\n".join(c + " >/dev/null" for c in commands) + "\n")
        script_p2 = self.work / "merge_all_p2.sh"
        script_p2.write_text("#!/bin/bash\nset -e\nexport OUT=\"$1\"\n"
                             f"xargs -d '\\n' -P 2 -n 1 bash -c < {shlex.quote(str(cmds))}\n")
        return script, script_p2

    def _compare_images(self, boards, out_all, outdir):
        differ = []
        for board_id in sorted(boards):
            built = next((out_all / board_id / "factory").glob("factory_*.bin"), None)
            mine = outdir / f"factory_{board_id}.bin"
            if built is None or not mine.exists():
                differ.append(f"{board_id} (missing)")
            elif built.read_bytes() != mine.read_bytes():
                differ.append(board_id)
        self.results["2_image_mismatch"] = differ
        if differ:
            self.remark(f"figure 2: the factory image differs from esptool merge-bin's for: {', '.join(differ)}")
        else:
            log(f"  every factory image is byte-identical to esptool merge-bin's ({len(boards)} boards)")

    # 3 ------------------------------------------------------------------------------------
    def fig3(self, fw, out_all, pairs):
        self.current = "figure 3"
        log("\n[3] board=all -j2 after replacing WROOM-32's server certificate/key vs the no-op of the same tree")
        scons(fw, "board=all", "-j2", f"build_dir={out_all}")   # up to date (warm-up)
        state = {"tag": "a"}

        def change_and_build():
            state["tag"] = "b" if state["tag"] == "a" else "a"
            cert, key = pairs[state["tag"]]
            _write(fw / "bench_certs" / "server.crt", cert)
            _write(fw / "bench_certs" / "server.key", key, 0o600)
            return scons(fw, "board=all", "-j2", f"build_dir={out_all}")

        rebuilds, noops = self.interleaved(change_and_build,
                                           lambda: scons(fw, "board=all", "-j2", f"build_dir={out_all}"))
        self._check_noop(noops, "3 (baseline)")
        targets = sorted({f"{label:<6} {os.path.relpath(rest, out_all) if rest.startswith('/') else rest}"
                          for label, rest in built_lines(rebuilds[0].output)})
        counts = {len(built_lines(r.output)) for r in rebuilds}
        if len(counts) > 1:
            self.remark(f"figure 3: the rebuilds built different numbers of targets: {sorted(counts)}")
        ratio = med(rebuilds) / med(noops)
        log(f"  rebuild after cert change median {fmt_s(med(rebuilds))} {spread(rebuilds)}")
        log(f"  no-op board=all -j2       median {fmt_s(med(noops))} {spread(noops)}")
        log(f"  ratio {ratio:.2f}x; rebuilt {len(targets)} targets:")
        for t in targets:
            log(f"    {t}")
        self.results["3"] = {"rebuild_s": med(rebuilds), "noop_s": med(noops), "ratio": ratio, "targets": targets}
        # Only targets of WROOM-32 and of ACME-W32 (which extends it) that depend on the pair.
        affected = ("/WROOM-32/", "/ACME-W32/", "of WROOM-32", "of ACME-W32")
        unrelated = {"TABLE", "CONFIG", "MAP", "PARAM", "GATT", "COPY", "CUT", "RAW", "PLUGIN"}
        only = bool(targets) and all(
            t.split()[0] not in unrelated and any(a in "/" + t.split(None, 1)[1] for a in affected) for t in targets)
        self.row("3  board=all after 1 cert/key change", fmt_s(med(rebuilds)), f"{fmt_s(med(noops))} no-op board=all",
                 f"{ratio:.2f}x", f"only its targets ({len(targets)} rebuilt)", only)

    # 4 ------------------------------------------------------------------------------------
    def fig4(self, plain, counts):
        self.current = "figure 4"
        log(f"\n[4] per-device builds: scons board=WROOM-32 devices=CSV -j2, {', '.join(map(str, counts))} devices")
        made = device_certs(max(counts))
        if made:
            log(f"  made {max(counts)} device certificates/keys (EC P-256) in {made:.1f} s (cached in bench/.cache/devices)")
        probe_dir = self.work / "out-dev-probe"
        probe_csv = devices_csv(2)
        probe = scons(plain, "board=WROOM-32", f"devices={probe_csv}", f"build_dir={probe_dir}", "-j2", check=False)
        if probe.returncode != 0:
            first = next((l for l in probe.output.splitlines() if "***" in l or "rror" in l), probe.output.strip()[:300])
            pending = "unknown variable devices" in probe.output
            status = "pending (devices= not accepted yet)" if pending else "failed"
            log(f"  {status}: {first.strip()}")
            self.results["4"] = {"status": status, "message": first.strip()}
            for n in counts:
                self.row(f"4  devices={n} -j2", status.split(" ")[0], f"{fmt_s(self.noop_s)} no-op 1a", "-",
                         f">= {GOAL_DEVICES_PER_S:.0f} dev/s", None)
            return
        self.results["4"] = self._device_series("4", plain, "WROOM-32", counts)

    def disk_floor(self, sample: Path, n: int, name: str, csv: Optional[Path] = None):
        """The disk floor of ``n`` devices like ``sample`` (DISK_FLOOR_SCRIPT): seconds, devices/s,
        files/s (folders and files created) and MB/s written, measured now.  ``csv``: the checked
        floor instead, each row's pair parsed and compared first (PAIR_CHECK)."""
        out = self.fresh(name)
        files, size = device_tree(sample)
        folders = 1 + sum(1 for p in sample.rglob("*") if p.is_dir())
        settle()
        check = PAIR_CHECK.format(csv=csv) if csv else NO_CHECK
        r = self.measure(lambda: run([PY, "-c", DISK_FLOOR_SCRIPT.format(sample=sample, count=n, out=out, check=check)],
                                     self.work))
        if n >= BIG_BATCH:
            shutil.rmtree(out, ignore_errors=True)
        seconds = float(re.search(r"floor_seconds (\S+)", r.output).group(1))
        return {"seconds": seconds, "process_s": r.seconds, "devices_per_s": n / seconds, "files_per_s": n * files / seconds,
                "creates_per_s": n * (files + folders) / seconds, "mb_per_s": n * size / seconds / 1e6,
                "device_files": files, "device_folders": folders, "device_bytes": size}

    def _device_series(self, fig: str, tree: Path, board: str, counts, extra=(), prebuilt=False, rows=True):
        """``scons board=B devices=CSV -j2`` for each count (cold, in a fresh build_dir), its no-op
        rebuild, and the disk floor of the same outputs (plain Python, this run): one dict per count.
        ``prebuilt``: the board is built in the build_dir first, so that only the batch is timed."""
        per_size = {}
        budget = 40.0 if self.args.quick else 150.0
        for n in counts:
            csv = devices_csv(n)
            runs, spent = [], 0.0
            last = {}

            def cold():
                if n >= BIG_BATCH and "out" in last:
                    shutil.rmtree(last["out"], ignore_errors=True)   # 100,000 devices take gigabytes
                last["out"] = self.fresh(f"dev{fig}-{n}")
                if prebuilt:
                    scons(tree, f"board={board}", f"build_dir={last['out']}", "-j2")
                settle()
                return scons(tree, f"board={board}", f"devices={csv}", f"build_dir={last['out']}", "-j2", *extra,
                             sample=True)
            for i in range(self.n):
                r = self.measure(cold)
                runs.append(r)
                spent += r.seconds
                if spent > budget:
                    break
            self.check_load([runs])
            out = last["out"]
            devices_dir = out / board / "devices"
            files = sum(len(f) for _, _, f in os.walk(devices_dir))
            labels = {}
            for label, _ in built_lines(runs[-1].output):
                labels[label] = labels.get(label, 0) + 1
            noops = [scons(tree, f"board={board}", f"devices={csv}", f"build_dir={out}", "-j2", *extra, sample=True)
                     for _ in range(1 if self.args.quick else 3)]
            noop = sorted(noops, key=lambda r: r.seconds)[len(noops) // 2]
            rebuilt = built_lines(noop.output)
            if rebuilt:
                self.remark(f"figure {fig}: the no-op rebuild of {n} devices built {len(rebuilt)} targets")
            sample = devices_dir / sorted(os.listdir(devices_dir))[0]
            floor = self.disk_floor(sample, n, f"floor{fig}-{n}")
            checked = self.disk_floor(sample, n, f"checked{fig}-{n}", csv)
            written = n * floor["device_bytes"]
            if n >= BIG_BATCH:
                shutil.rmtree(out, ignore_errors=True)
            phases = self._device_phases(tree, board, csv, n, extra) if n < BIG_BATCH and fig == "4" else {}
            rate = n / med(runs)
            rss, tree_kb = med(runs, "maxrss_kb"), med(runs, "tree_peak_kb")
            per_size[n] = {"seconds": med(runs), "runs": len(runs), "all_s": [r.seconds for r in runs],
                           "devices_per_s": rate, "maxrss_kb": rss, "tree_peak_kb": tree_kb,
                           "device_files": files, "targets": labels, "noop_s": noop.seconds,
                           "noop_all_s": [r.seconds for r in noops], "noop_maxrss_kb": noop.maxrss_kb,
                           "phases": phases, "disk_floor": floor, "checked_floor": checked,
                           "mb_per_s": written / med(runs) / 1e6,
                           "out": None if n >= BIG_BATCH else str(out)}
            log(f"  {n:>6} devices: median {fmt_s(med(runs))} {spread(runs)} ({len(runs)} runs), {rate:.0f} devices/s; "
                f"peak {fmt_mb(rss)} largest process, {fmt_mb(tree_kb)} whole tree (sampled); "
                f"{files} files under devices/; targets {labels}")
            log(f"          no-op rebuild {fmt_s(noop.seconds)}, peak {fmt_mb(noop.maxrss_kb)}; disk floor "
                f"{floor['devices_per_s']:.0f} devices/s = {floor['creates_per_s']:.0f} creates/s "
                f"({floor['device_folders']} folders + {floor['device_files']} files a device), "
                f"{floor['mb_per_s']:.0f} MB/s; the build wrote {per_size[n]['mb_per_s']:.0f} MB/s")
            if not rows:
                continue
            goal = n >= 10000
            self.row(f"{fig}  {board} devices={n} -j2 (cold)", f"{fmt_s(med(runs))} = {rate:.0f} dev/s",
                     f"{floor['devices_per_s']:.0f} dev/s disk floor", f"{rate / floor['devices_per_s']:.2f}x floor; "
                     f"{rate / GOAL_DEVICES_PER_S:.2f}x goal", f">= {GOAL_DEVICES_PER_S:.0f} dev/s" +
                     ("" if goal else " (at >= 10000)"), rate >= GOAL_DEVICES_PER_S if goal else None)
            self.row(f"{fig}  {board} devices={n}: disk floor", f"{floor['creates_per_s']:.0f} creates/s, "
                     f"{floor['mb_per_s']:.0f} MB/s", "plain Python, 2 processes", "-", "(the machine's limit)", None)
            bound = checked["devices_per_s"]
            log(f"          checked floor {bound:.0f} devices/s (the disk floor's program parsing and comparing each "
                "row's certificate and key with cryptography first): the plainest program doing what a per-device "
                "build cannot skip")
            self.row(f"{fig}  {board} devices={n}: checked floor", f"{bound:.0f} dev/s",
                     f"{rate:.0f} dev/s built", f"{rate / bound:.2f}x floor",
                     f"(the goal needs >= {GOAL_DEVICES_PER_S:.0f})", None)
            self.row(f"{fig}  {board} devices={n}: peak memory", f"{fmt_mb(rss)} (tree {fmt_mb(tree_kb)})",
                     f"{fmt_mb(self.results['1a']['noop_maxrss_kb'])} no-op 1a" if "1a" in self.results else "-",
                     f"{rss / self.results['1a']['noop_maxrss_kb']:.2f}x" if "1a" in self.results else "-", "-", None)
            big = n >= 100000
            self.row(f"{fig}  {board} devices={n}: no-op rebuild", fmt_s(noop.seconds),
                     f"{fmt_s(self.noop_s)} no-op 1a" if self.noop_s else "-",
                     f"{noop.seconds / self.noop_s:.2f}x" if self.noop_s else "-",
                     f"< {GOAL_NOOP_S:.0f} s" + ("" if big else " (at 100000)"), noop.seconds < GOAL_NOOP_S if big else None)
        if len(counts) > 1 and rows:
            lo, hi = per_size[counts[0]], per_size[counts[-1]]
            mem_ratio = hi["maxrss_kb"] / lo["maxrss_kb"]
            tree_ratio = hi["tree_peak_kb"] / lo["tree_peak_kb"]
            marginal = (counts[-1] - counts[0]) / max(hi["seconds"] - lo["seconds"], 1e-9)
            log(f"  peak memory {counts[-1]} vs {counts[0]}: {mem_ratio:.2f}x largest process, {tree_ratio:.2f}x whole tree; "
                f"marginal rate {marginal:.0f} devices/s")
            self.row(f"{fig}  {board} peak memory {counts[-1]} vs {counts[0]} devices",
                     f"{fmt_mb(hi['maxrss_kb'])} (tree {fmt_mb(hi['tree_peak_kb'])})",
                     f"{fmt_mb(lo['maxrss_kb'])} (tree {fmt_mb(lo['tree_peak_kb'])})",
                     f"{mem_ratio:.2f}x (tree {tree_ratio:.2f}x)", "<= 1.2x", mem_ratio <= 1.2)
            self.row(f"{fig}  {board} marginal rate {counts[0]}->{counts[-1]} devices", f"{marginal:.0f} dev/s", "-",
                     f"{marginal / GOAL_DEVICES_PER_S:.2f}x goal", "(info)", None)
            per_size["marginal_devices_per_s"] = marginal
        return per_size

    def _device_phases(self, tree, board, csv, n, extra=()):
        """Where the time of a cold devices build goes, from one extra timestamped run."""
        out = self.fresh(f"dev{n}-timeline")
        settle()
        total, lines, rss = timeline([PY, SCONS, "-Q", f"board={board}", f"devices={csv}", f"build_dir={out}", "-j2",
                                      *extra], tree)
        labelled = [(t, m.group(1)) for t, l in lines for m in [LABEL_LINE.match(l)] if m]
        if not labelled:
            return {}
        first = labelled[0][0]
        dev = [t for t, label in labelled if label == "DEVICES"]
        batch_from = dev[0] if dev else first   # the batch prints nothing more until it is done

        def rss_until(t):
            return max((kb for at, kb in rss if at <= t), default=0)
        phases = {"total_s": total, "startup_and_check_s": first, "board_partitions_s": batch_from - first,
                  "device_batch_s": total - batch_from,
                  "scons_rss_after_check_kb": rss_until(first), "scons_rss_before_batch_kb": rss_until(batch_from),
                  "scons_rss_peak_kb": max((kb for _, kb in rss), default=0)}
        log(f"  {n:>6} devices, one timestamped run ({fmt_s(total)}): startup + board + device check "
            f"{fmt_s(first)} (scons at {fmt_mb(phases['scons_rss_after_check_kb'])}), board partitions "
            f"{fmt_s(phases['board_partitions_s'])}, the batch (chunks, batch check, devices.json) "
            f"{fmt_s(phases['device_batch_s'])} (scons peak {fmt_mb(phases['scons_rss_peak_kb'])})")
        return phases

    # 5 ------------------------------------------------------------------------------------
    def fig6(self, plain, counts):
        """Per-device mfg_nvs (a v5.0 board): the series of figure 4, and esp-idf-nvs-partition-gen
        making the same images in one Python process (up to 10,000 devices: it makes ~300 a second)."""
        self.current = "figure 6"
        log(f"\n[6] per-device mfg_nvs: scons board=WROOM-32-V5 devices=CSV -j2, {', '.join(map(str, counts))} devices; "
            "vs esp-idf-nvs-partition-gen 0.1.9 in one process (up to 10000)")
        device_certs(max(counts))
        results = self._device_series("6", plain, "WROOM-32-V5", counts)
        for n in counts:
            if n > 10000:
                continue
            out = Path(results[n]["out"])
            csv = devices_csv(n)
            base_dir = self.fresh(f"nvsgen{n}")
            script = NVS_GEN_SCRIPT.format(shared=out / "WROOM-32-V5/customized_partitions/mfg_nvs.bin",
                                           csv=csv, out=base_dir)
            theirs = self.measure(lambda: run([PY, "-c", script], plain))
            devices = sorted(d for d in (out / "WROOM-32-V5/devices").iterdir() if d.is_dir())
            same = len(devices) == n and all((d / "customized_partitions/mfg_nvs.bin").read_bytes() ==
                                             (base_dir / f"{d.name}.bin").read_bytes() for d in devices)
            ours = results[n]["seconds"]
            ratio = theirs.seconds / ours
            results[n].update(generator_s=theirs.seconds, generator_ratio=ratio, identical=same)
            log(f"  {n} devices: atfactory {fmt_s(ours)} ({n / ours:.0f}/s, whole build), generator "
                f"{fmt_s(theirs.seconds)} ({n / theirs.seconds:.0f}/s, images only): {ratio:.1f}x; byte-identical: {same}")
            self.row(f"6  mfg_nvs devices={n} vs generator", f"{n / ours:.0f} dev/s", f"{n / theirs.seconds:.0f} dev/s "
                     "esp-idf-nvs-partition-gen", f"{ratio:.1f}x", "(info; byte-identical)", same)
        self.results["6"] = results

    def fig7(self, fw, count):
        """Per-device factory images (device_images=yes, firmware): MB/s written by the batch vs
        plain Python writing the same folders and files (the disk floor) in this run."""
        self.current = "figure 7"
        log(f"\n[7] per-device factory images: scons board=WROOM-32 devices=CSV device_images=yes -j2, {count} devices "
            "(the board built first in the same build_dir; only the batch is timed)")
        device_certs(count)
        res = self._device_series("7", fw, "WROOM-32", [count], extra=("device_images=yes",), prebuilt=True,
                                   rows=False)[count]
        floor = res["disk_floor"]
        ours = res["mb_per_s"]
        ratio = floor["mb_per_s"] / ours
        log(f"  {count} devices: {ours:.0f} MB/s written ({floor['device_bytes'] / 1e6:.1f} MB a device), plain write of the "
            f"same bytes {floor['mb_per_s']:.0f} MB/s: {ratio:.2f}x")
        self.row(f"7  device images, {count} devices", f"{ours:.0f} MB/s", f"{floor['mb_per_s']:.0f} MB/s plain write",
                 f"{ratio:.2f}x", f"<= {GOAL_IMAGES_VS_DISK}x", ratio <= GOAL_IMAGES_VS_DISK)
        checked = res["checked_floor"]
        log(f"  checked floor (the same writes, each row's pair parsed and each file's SHA-256 taken, as the ledger "
            f"needs): {checked['mb_per_s']:.0f} MB/s; the build is {checked['mb_per_s'] / ours:.2f}x slower")
        self.row("7  device images: checked floor", f"{checked['mb_per_s']:.0f} MB/s",
                 f"{floor['mb_per_s']:.0f} MB/s plain write", f"{floor['mb_per_s'] / checked['mb_per_s']:.2f}x",
                 "(info: hashing and pair checks alone)", None)
        self.row("7  device images vs the checked floor", f"{ours:.0f} MB/s", f"{checked['mb_per_s']:.0f} MB/s checked",
                 f"{checked['mb_per_s'] / ours:.2f}x", "(info)", None)
        self.results["7"] = res

    def fig5(self, fw):
        self.current = "figure 5"
        log("\n[5] cold build of WROOM-32 at 16MB with firmware vs the same board at 4MB")
        outs = {}

        def build(size):
            def go():
                outs[size] = self.fresh(size)
                settle()
                return scons(fw, f"board=bench_boards/BENCH-{size}.toml", f"build_dir={outs[size]}", "-j2")
            return go

        build("16MB")(), build("4MB")()   # warm-up
        big, small = self.interleaved(build("16MB"), build("4MB"))
        image16 = outs["16MB"] / "BENCH-16MB" / "factory" / "factory_BENCH-16MB.bin"
        size16 = image16.stat().st_size
        if size16 != 16 * 1024 * 1024:
            self.remark(f"figure 5: the 16MB factory image is {size16} bytes")
        # reference: esptool's merge_bin in-process, in a fresh Python (and the same Python without the merge)
        options, entries = parse_download_config(outs["16MB"] / "BENCH-16MB" / "download.config")
        spec = {"chip": "esp32", "mode": options["flash_mode"], "freq": options["flash_freq"],
                "size": options["flash_size"], "out": str(self.work / "merge16.bin"),
                "entries": [(o, str(outs["16MB"] / "BENCH-16MB" / p)) for o, p in entries]}
        code = ("import json, sys, time\n"
                "from esptool.cmds import merge_bin\nfrom esptool.logger import log\n"
                "log.set_verbosity('silent')\ns = json.loads(sys.argv[1])\n"
                "pairs = [(o, open(p, 'rb').read()) for o, p in s['entries']]\n"
                "if s.get('merge', True):\n"
                "    t = time.perf_counter()\n"
                "    data = merge_bin(pairs, s['chip'], output=None, flash_freq=s['freq'], flash_mode=s['mode'],\n"
                "                     flash_size=s['size'], format='raw', pad_to_size=s['size'])\n"
                "    print(json.dumps({'merge_s': time.perf_counter() - t, 'bytes': len(data)}))\n"
                "    open(s['out'], 'wb').write(data)\n")
        refs = [self.measure(lambda: run([PY, "-c", code, json.dumps(spec)], self.work)) for _ in range(self.n)]
        merge_s = statistics.median(json.loads(r.output.strip().splitlines()[-1])["merge_s"] for r in refs)
        floor = [self.measure(lambda: run([PY, "-c", code, json.dumps({**spec, "merge": False})], self.work))
                 for _ in range(self.n)]
        same = Path(spec["out"]).read_bytes() == image16.read_bytes()
        if not same:
            self.remark("figure 5: the build's 16MB factory image differs from esptool merge_bin's")
        t_ratio = med(big) / med(small)
        m_ratio = med(big, "maxrss_kb") / med(small, "maxrss_kb")
        log(f"  16MB build  median {fmt_s(med(big))} {spread(big)}  peak {fmt_mb(med(big, 'maxrss_kb'))} {spread(big, 'maxrss_kb')}")
        log(f"   4MB build  median {fmt_s(med(small))} {spread(small)}  peak {fmt_mb(med(small, 'maxrss_kb'))}")
        log(f"  ratio time {t_ratio:.2f}x, peak memory {m_ratio:.2f}x")
        log(f"  reference: esptool merge_bin 16MB in-process {merge_s * 1000:.0f} ms; that Python's peak "
            f"{fmt_mb(med(refs, 'maxrss_kb'))} ({fmt_mb(med(floor, 'maxrss_kb'))} without the merge); "
            f"identical to the build's image: {same}")
        self.results["5"] = {"s16": med(big), "s4": med(small), "rss16_kb": med(big, "maxrss_kb"),
                             "rss4_kb": med(small, "maxrss_kb"), "time_ratio": t_ratio, "mem_ratio": m_ratio,
                             "merge_bin_s": merge_s, "merge_bin_maxrss_kb": med(refs, "maxrss_kb"),
                             "merge_bin_floor_maxrss_kb": med(floor, "maxrss_kb"), "identical": same}
        self.row("5  cold build 16MB + firmware: time", fmt_s(med(big)), f"{fmt_s(med(small))} same board 4MB",
                 f"{t_ratio:.2f}x", "-", None)
        self.row("5  cold build 16MB + firmware: peak memory", fmt_mb(med(big, "maxrss_kb")),
                 f"{fmt_mb(med(small, 'maxrss_kb'))} same board 4MB", f"{m_ratio:.2f}x", "-", None)
        self.row("5  (ref) esptool merge_bin 16MB in-process", f"{merge_s * 1000:.0f} ms, {fmt_mb(med(refs, 'maxrss_kb'))}",
                 f"{fmt_mb(med(floor, 'maxrss_kb'))} without merge", "-", "-", None)

    # profile ------------------------------------------------------------------------------
    def profile(self, plain, fw, out_all):
        self.current = "profile experiment"
        log("\n[profile] no-op rebuild of WROOM-32: -X importtime, cProfile, one experiment")
        out_plain = self.work / "out-plain"
        empty = self.work / "empty"
        cases = [("no firmware (1a)", plain, out_plain)]
        if not self.args.quick:
            cases.append(("with firmware (1b)", fw, out_all))
        self.results["profile"] = {}
        floor = importtime(run([PY, "-X", "importtime", SCONS, "-Q"], empty).output)
        for name, tree, out in cases:
            rows = importtime(run([PY, "-X", "importtime", SCONS, "-Q", "board=WROOM-32", f"build_dir={out}"], tree).output)
            total_us = sum(r[0] for r in rows.values())
            extra = {mod: r for mod, r in rows.items() if mod not in floor}
            groups = {}
            for mod, (self_us, _, _) in extra.items():
                top = mod.split(".")[0]
                groups[top] = groups.get(top, 0) + self_us
            log(f"  {name}: imports {total_us / 1000:.0f} ms ({len(rows)} modules) under -X importtime; "
                f"the empty SConstruct imports {sum(r[0] for r in floor.values()) / 1000:.0f} ms ({len(floor)} modules)")
            log(f"    imported beyond the empty SConstruct: {sum(r[0] for r in extra.values()) / 1000:.0f} ms in "
                f"{len(extra)} modules, by package (self times summed):")
            for top, us in sorted(groups.items(), key=lambda g: -g[1])[:10]:
                log(f"      {us / 1000:7.1f} ms  {top}")
            top_self = sorted(extra.items(), key=lambda r: -r[1][0])[:10]
            log("    slowest of those modules (self time):")
            for mod, (self_us, cum_us, _) in top_self:
                log(f"      {self_us / 1000:7.1f} ms  {mod}")
            prof = self.work / f"noop-{len(self.results['profile'])}.prof"
            cp = run([PY, "-m", "cProfile", "-o", prof, SCONS, "-Q", "board=WROOM-32", f"build_dir={out}"], tree)
            stats = pstats.Stats(str(prof))
            entries = []
            for (path, line, func), (cc, nc, tt, ct, callers) in stats.stats.items():
                entries.append((tt, ct, nc, short(path, line, func)))
            noise = ("<frozen importlib", "builtins.exec", "builtins.__import__", "_call_with_frames_removed",
                     "builtins.__build_class__", ".venv/bin/scons", "Main.py:1481(main)", "Main.py:1419(_exec_main)")
            by_tt = sorted(entries, key=lambda e: -e[0])[:12]
            by_ct = [e for e in sorted(entries, key=lambda e: -e[1]) if not any(n in e[3] for n in noise)][:30]
            log(f"    cProfile: {stats.total_tt * 1000:.0f} ms profiled (wall {fmt_s(cp.seconds)} under the profiler; "
                "profiled times run about 1.3x the real ones)")
            log("    functions by own time:")
            for tt, ct, nc, where in by_tt:
                log(f"      {tt * 1000:7.1f} ms own {ct * 1000:7.1f} ms cum {nc:>7} calls  {where}")
            log("    functions by cumulative time (import machinery left out):")
            for tt, ct, nc, where in by_ct:
                log(f"      {ct * 1000:7.1f} ms cum {tt * 1000:7.1f} ms own {nc:>7} calls  {where}")
            self.results["profile"][name] = {
                "imports_total_ms": total_us / 1000,
                "imports_beyond_empty_ms": sum(r[0] for r in extra.values()) / 1000,
                "imports_beyond_empty_by_package_ms": {k: v / 1000 for k, v in groups.items()},
                "profiled_ms": stats.total_tt * 1000,
                "by_own_ms": [(w, tt * 1000, nc) for tt, _, nc, w in by_tt],
                "by_cum_ms": [(w, ct * 1000, nc) for _, ct, nc, w in by_ct],
            }
        # Experiment: SCons makes its default environment, with every default tool (compilers
        # detected by running them), when the SConstruct first calls a global such as Decider();
        # the empty SConstruct pays for it too, at the end of the run.
        log("  experiment: DefaultEnvironment(tools=[]) as the first line of the SConstruct")
        if "DefaultEnvironment(" in (plain / "SConstruct").read_text():
            log("    skipped: the SConstruct already makes its default environment itself")
            return
        lean = self.work / "plain-lean"
        shutil.copytree(plain, lean)
        (lean / "SConstruct").write_text("DefaultEnvironment(tools=[])\n" + (plain / "SConstruct").read_text())
        lean_empty = self.work / "empty-lean"
        lean_empty.mkdir()
        (lean_empty / "SConstruct").write_text("DefaultEnvironment(tools=[])\n")
        out_lean = self.work / "out-lean"
        scons(lean, "board=WROOM-32", f"build_dir={out_lean}")
        scons(lean, "board=WROOM-32", f"build_dir={out_lean}")
        scons(lean_empty)
        noop, noop_lean, base, base_lean = self.interleaved(
            lambda: scons(plain, "board=WROOM-32", f"build_dir={out_plain}"),
            lambda: scons(lean, "board=WROOM-32", f"build_dir={out_lean}"),
            lambda: scons(empty), lambda: scons(lean_empty), cheap=True)
        log(f"    no-op 1a {fmt_s(med(noop))} -> {fmt_s(med(noop_lean))} ({(med(noop) - med(noop_lean)) * 1000:+.0f} ms saved); "
            f"empty SConstruct {fmt_s(med(base))} -> {fmt_s(med(base_lean))}; ratio to the usual empty SConstruct "
            f"{med(noop_lean) / med(base):.2f}x")
        self.results["profile"]["experiment_default_env"] = {
            "noop_s": med(noop), "noop_lean_s": med(noop_lean), "empty_s": med(base), "empty_lean_s": med(base_lean)}
        self.row("P  (info) 1a with DefaultEnvironment(tools=[])", fmt_s(med(noop_lean)),
                 f"{fmt_s(med(base))} empty SConstruct", f"{med(noop_lean) / med(base):.2f}x", "<= 1.5x",
                 med(noop_lean) / med(base) <= 1.5)


def importtime(text):
    """module -> (self us, cumulative us, depth) from -X importtime output."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)", line)
        if m:
            rows[m.group(4)] = (int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2)
    return rows


def short(path, line, func):
    if path == "~":
        return func
    for prefix in (str(REPO) + "/", "site-packages/"):
        if prefix in path:
            path = path.split(prefix, 1)[1]
    path = re.sub(r"^.*/(site_scons|lib/python3\.\d+)/", r"\1/", path)
    return f"{path}:{line}({func})"


def print_table(rows):
    rows = sorted(rows, key=lambda r: r[0].split()[0])   # by figure; stable within a figure
    head = ("figure", "measured (median)", "baseline (median)", "ratio", "goal", "met?")
    cells = [head] + [(f, m, b, r, g, "-" if ok is None else ("yes" if ok else "NO")) for f, m, b, r, g, ok in rows]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(head))]
    line = "+".join("-" * (w + 2) for w in widths)
    out = []
    for i, c in enumerate(cells):
        out.append("|" + "|".join(f" {str(v):<{w}} " for v, w in zip(c, widths)) + "|")
        if i == 0:
            out.append("|" + line + "|")
    log("\n".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 repeats, 200 devices, no parallel-script row")
    ap.add_argument("--devices", help="device counts of figures 4 and 6, comma-separated (default 1000,10000,100000; "
                                      "--quick 200)")
    ap.add_argument("--image-devices", type=int, help="devices of figure 7 (default 1000; --quick 20): 4 MB each")
    ap.add_argument("--repeat", type=int, help="repeats per measurement (default 5; --quick 3)")
    ap.add_argument("--figures", default="1,2,3,4,5,6,7,profile", help="which figures to run (default all)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    ap.add_argument("--wait-quiet", type=float, default=60.0, metavar="S",
                    help="wait at most S seconds for other processes to go quiet before starting (default 60)")
    args = ap.parse_args()
    args.repeat = args.repeat or (3 if args.quick else 5)
    counts = [int(x) for x in (args.devices or ("200" if args.quick else "1000,10000,100000")).split(",") if x.strip()]
    image_devices = args.image_devices or (20 if args.quick else 1000)
    figures = {f.strip() for f in args.figures.split(",")}
    started = time.perf_counter()

    quiet = wait_quiet(args.wait_quiet)
    info = machine_info()
    info["other_load_at_start"] = f"{quiet:.2f} CPU"
    log("atfactory bench: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    log(f"repeats {args.repeat}; medians reported; python {PY}; scons {SCONS}")
    CACHE.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="atf-bench-"))
    # Children cache their byte code as a user's Python does, but into the work folder
    # (PYTHONPYCACHEPREFIX), so that neither the repository nor the venv is written to.
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        log("note: PYTHONDONTWRITEBYTECODE is set here; the children run without it (row 1a' shows its cost)")
    bench = Bench(args, work)
    try:
        t0 = time.perf_counter()
        plain, fw, boards, pairs = setup(work)
        log(f"setup: copies of the repository, {len(boards) + 2} firmware releases, in {time.perf_counter() - t0:.1f} s ({work})")
        out_all = work / "out-all"
        bench.noop_s = None
        if "1" in figures or "4" in figures or "profile" in figures:
            bench.fig1(plain, fw)
        if figures & {"2", "3", "1", "profile"}:
            if "2" in figures:
                bench.fig2(fw, boards, out_all)
            else:
                scons(fw, "board=all", "-j2", f"build_dir={out_all}")
        if "1" in figures:
            bench.fig1b(fw, out_all)
            bench.fig1b(fw, out_all, "WROOM-32-V5", "1c", "v5.0")
        if "3" in figures:
            bench.fig3(fw, out_all, pairs)
        if "5" in figures:
            bench.fig5(fw)
        if "profile" in figures:
            bench.profile(plain, fw, out_all)
        if "4" in figures:
            bench.fig4(plain, counts)
        if "6" in figures:
            bench.fig6(plain, counts)
        if "7" in figures:
            bench.fig7(fw, image_devices)
    finally:
        if args.keep:
            log(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.perf_counter() - started
    info["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    log(f"\nResults ({args.repeat} repeats, medians; {info['nproc']} CPUs {info['cpu_model']}; "
        f"Python {info['python']}, SCons {info['scons']}, esptool {info['esptool']}; total {elapsed:.0f} s; "
        f"code {info['code']})\n")
    print_table(bench.rows)
    if bench.retried:
        log(f"\n{bench.retried} runs were made again because other processes kept the machine busy during them.")
    if bench.remarks:
        log("\nLooked wrong:")
        for r in bench.remarks:
            log(f"  - {r}")
    (CACHE / "last-run.json").write_text(json.dumps(
        {"when": datetime.datetime.now().isoformat(timespec="seconds"), "machine": info, "args": vars(args),
         "elapsed_s": elapsed, "retried": bench.retried, "results": bench.results, "remarks": bench.remarks,
         "table": [list(r) for r in bench.rows]}, indent=2, default=str))


if __name__ == "__main__":
    main()
