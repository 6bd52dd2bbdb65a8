"""Building a devices batch: rows checked and written by worker processes, committed as a whole.

``build_batch`` is the one action of a batch.  It runs ``workers`` chunks at once: chunk 0 in
the calling process (the board is already prepared there), the others as
``python -m atfactory.devices_worker`` processes, which prepare the board exactly as the build
did.  The rows are taken in blocks of ``BLOCK``: each chunk claims the next block no chunk has
claimed yet (a claim file created with O_EXCL in the work folder), so a worker that started
later or runs slower takes fewer blocks and all chunks end together.  A chunk checks and writes
its rows into a staging folder and streams one JSON line per row to its chunk ledger, in CSV
order: the row's outputs with their SHA-256, or its problems.  When every chunk is done, the
ledgers are merged in CSV order (memory stays flat) and checked across the batch: a device id
used twice, the same certificate or key file content in two rows.  Any problem: the staging
folder is removed and every problem is reported, naming its CSV line, so nothing of the batch
is written.  Otherwise the staging folder replaces
``<release>/devices`` in one rename and ``devices.json`` is written (a shard of a batch,
``shard=K/N``: its shard ledger, see atfactory.shards).

Inside the staging folder every file is created new (``O_EXCL``), secrets with mode 0600 from
the first byte; the folder as a whole is the unit of atomicity, so no per-file temporaries.

On a terminal (``progress`` a stream that is a TTY) the batch shows how far it is: rows done of
all rows, rows per second and the time left, one line rewritten in place; anywhere else (CI
logs, pipes) nothing.  Done rows are counted from the chunk ledgers, which are line-buffered.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import heapq
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from . import artifacts as art
from . import shards
from .devices import DEVICES_DIR, DeviceMaker
from .download_config import DownloadConfig, encode_download_config
from .errors import MAX_PROBLEMS, AtFactoryError, BoardError, Problem, display_path
from .fsutil import atomic_open
from .merge import check_layout, merge_factory_image

BLOCK = 64                       # rows a chunk claims at a time
STAGING = ".devices.staging"     # beside devices/: the batch being built
RETIRED = ".devices.retired"     # the previous batch, on its way out
WORK = ".devices.work"           # chunk ledgers (they hold digests of key files: never published)


def _create(path: str, data: bytes, secret: bool) -> None:
    """A new file (never one that exists), owner-only from its creation when secret."""
    fd = os.open(path, _CREATE_FLAGS, 0o600 if secret else 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_hashed(path: str, data: bytes, secret: bool) -> str:
    """_create, and the SHA-256 of ``data`` in hex."""
    _create(path, data, secret)
    return hashlib.sha256(data).hexdigest()


def _mkdir(path: str) -> None:
    """A folder inside a device's new folder (its parents made first where missing)."""
    try:
        os.mkdir(path)
    except FileNotFoundError:
        os.makedirs(path)


def _problem_doc(p: Problem) -> dict:
    doc = {"file": p.file, "key": p.key, "message": p.message}
    if p.has_value:
        doc["value"] = p.value if isinstance(p.value, (str, int, float, bool)) or p.value is None else str(p.value)
        if p.written is not None:
            doc["written"] = p.written
    return doc


def _problem(doc: dict) -> Problem:
    return Problem(doc["file"], doc["key"], doc["message"], doc["value"], doc.get("written")) if "value" in doc \
        else Problem(doc["file"], doc["key"], doc["message"])


class _Claims:
    """keep(j) for DeviceMaker.rows: whether row j is in a block this process claimed, claiming
    each block as its first row comes (rows come in order, so each block is tried once)."""

    def __init__(self, folder: str):
        self.folder, self.block, self.mine = folder, -1, False

    def __call__(self, j: int) -> bool:
        block = j // BLOCK
        if block != self.block:
            self.block = block
            try:
                os.close(os.open(os.path.join(self.folder, f"claim-{block}"), _CREATE_FLAGS, 0o600))
                self.mine = True
            except FileExistsError:
                self.mine = False
        return self.mine


def build_chunk(maker: DeviceMaker, staging: str, claims: Optional[str], images: bool) -> Iterator[dict]:
    """Check the rows of the blocks this chunk claims in the folder ``claims`` (None: every
    row); write each good row's outputs under ``staging`` while no row of this chunk has
    failed; yield one ledger line per row.

    The problems a failed batch shows do not depend on which chunk took which block: a chunk
    stops once it has more than MAX_PROBLEMS problems, so every row up to the CSV's
    (MAX_PROBLEMS + 1)-th problem has been checked by one chunk or another."""
    board = maker.board
    planned = [a for a in art.plan_board(board, maker.prepared.firmware, maker.formats) if a.offset is not None]
    release = os.path.dirname(os.path.abspath(staging))
    layouts: Dict[tuple, tuple] = {}   # what devices that replace the same partitions share (_layout)
    work = os.path.join(release, WORK)
    templates = _ImageTemplates(board, work if os.path.isdir(work) else None)
    try:
        yield from _rows_of_chunk(maker, staging, claims, images, planned, release, layouts, templates)
    finally:
        templates.close()


def _layout(board, planned, release: str, own: Dict[str, bool]) -> tuple:
    """What every device whose own files are ``own`` (path -> secret) shares: its download.config,
    the folders its files need, whether its image is secret (it holds every key it flashes, its
    own or the board's), the board's files it flashes (offset, path) and its own (offset, path)."""
    entries, shared, own_offsets, secret = [], [], [], False
    for a in planned:
        rel = a.targets[0]
        if rel in own:
            entries.append((a.offset, rel))
            own_offsets.append((a.offset, rel))
            secret = secret or own[rel]
        else:
            entries.append((a.offset, f"../../{rel}"))
            shared.append((a.offset, os.path.join(release, rel)))
            secret = secret or a.secret
    config = encode_download_config(DownloadConfig(board.flash_mode, board.flash_freq, board.flash_size,
                                                   tuple(entries)))
    parents = sorted({os.path.dirname(rel) for rel in own} - {""})
    return config, parents, secret, shared, own_offsets


def _rows_of_chunk(maker, staging, claims, images, planned, release, layouts, templates):
    board = maker.board
    failed = 0
    for row in maker.rows(_Claims(claims) if claims is not None else None):
        expired: List[str] = []
        try:
            device_id, files, digests = maker.make(row, expired)
        except BoardError as err:
            failed += len(err.problems)
            yield {"line": row.line, "problems": [_problem_doc(p) for p in err.problems]}
            if failed > MAX_PROBLEMS:   # one more than is shown: the batch can say more follow
                return
            continue
        entry = {"device_id": device_id, "line": row.line,
                 "digests": {name: [digest, row.cells.get(name, "")] for name, digest in digests.items()}}
        if expired:
            entry["expired"] = expired   # the batch warns once (check_batch); no ledger keeps it
        if failed:
            yield entry   # still checked, for the batch's duplicate checks; nothing more is written
            continue
        folder = os.path.join(staging, device_id)
        try:
            os.mkdir(folder)
        except FileExistsError:
            yield entry   # the id of an earlier row: the merge reports it with both lines
            continue
        shape = tuple(sorted((rel, secret) for rel, (_, secret) in files.items()))
        layout = layouts.get(shape)   # the same for every device that replaces the same partitions
        if layout is None:
            layout = layouts[shape] = _layout(board, planned, release, dict(shape))
        config, parents, image_secret, shared_merge, own_offsets = layout
        files["download.config"] = (config, False)
        hashes = {}
        for parent in parents:
            _mkdir(os.path.join(folder, parent))
        for rel, (data, secret) in sorted(files.items()):
            _create(os.path.join(folder, rel), data, secret)
            hashes[rel] = hashlib.sha256(data).hexdigest()
        if images and maker.prepared.firmware is not None:
            rel = art.device_image_path(board, device_id)
            _mkdir(os.path.dirname(os.path.join(folder, rel)))
            own = [(o, os.path.join(folder, r), files[r][0]) for o, r in own_offsets]
            hashes[rel] = templates.write(os.path.join(folder, rel), shared_merge + [(o, p) for o, p, _ in own],
                                          {p: data for _, p, data in own}, image_secret)
        entry["outputs"] = hashes
        yield entry


class _ImageTemplates:
    """Device factory images from one template per set of device partitions.

    esptool's merge fills every gap with 0xFF and changes nothing but the bootloader's header,
    so a device's image is the merge of the board's shared files alone (the template, made once
    by esptool) with the device's own files in place at their offsets.  The first image of
    each template is also merged by esptool in full and compared: should they ever differ,
    every image of that set is merged by esptool.

    A 4 MB image is never copied in Python.  Where the kernel copies between files
    (copy_file_range: Linux; a reflink where the disk has them) the template is kept in a file
    of the batch's work folder and copied there, then the device's files are written at their
    offsets; this takes the kernel about half the CPU of writing the same bytes from memory.
    Elsewhere the image is written as views of the template between the device's files.  The
    image is hashed from those views in a second thread while it is written."""

    def __init__(self, board, folder: Optional[str]):
        """``folder``: where template files may be kept (the batch's work folder), or None."""
        self.board = board
        self.folder = folder
        self.made: Dict[tuple, Optional[bytes]] = {}   # own offsets -> template, or None: esptool
        self.shared: Dict[tuple, list] = {}            # own offsets -> (offset, name, size) of the shared files
        self.files: Dict[tuple, Optional[int]] = {}    # own offsets -> a template file's descriptor, or None
        self.paths: List[str] = []
        self.pool = None

    def _merge(self, entries) -> bytes:
        b = self.board
        return merge_factory_image(b.chip.name, b.flash_mode, b.flash_freq, b.flash_size, b.flash_size_bytes, entries)

    def write(self, path: str, entries: Sequence[Tuple[int, str]], own: Dict[str, bytes], secret: bool) -> str:
        """Write the image of ``entries`` ((offset, path) of every flashed file; ``own``: path ->
        bytes of the device's) as a new file; its SHA-256 in hex."""
        patches = sorted((o, own[p]) for o, p in entries if p in own)   # the device's files by offset
        key = tuple(o for o, _ in patches)
        if key not in self.made:
            template = self._merge([(o, p) for o, p in entries if p not in own])
            whole = self._merge(entries)
            self.made[key] = template if b"".join(self._pieces(template, patches)) == whole else None
            self.shared[key] = [(o, display_path(p), os.path.getsize(p)) for o, p in entries if p not in own]
            return _create_hashed(path, whole, secret)
        template = self.made[key]
        if template is None:
            return _create_hashed(path, self._merge(entries), secret)
        check_layout(self.shared[key] + [(o, display_path(p), len(own[p])) for o, p in entries if p in own],
                     self.board.flash_size_bytes)
        pieces = self._pieces(template, patches)
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self.pool = ThreadPoolExecutor(max_workers=1)
        digest = self.pool.submit(_sha256_hex, pieces)
        try:
            source = self._template_file(key, template)
            fd = os.open(path, _CREATE_FLAGS, 0o600 if secret else 0o666)
            try:
                if source is None or not _copy_file(source, fd, len(template)):
                    _write_all(fd, pieces)
                else:
                    for offset, data in patches:
                        _pwrite_all(fd, data, offset)
            finally:
                os.close(fd)
        finally:
            hexdigest = digest.result()
        return hexdigest

    def _template_file(self, key: tuple, template: bytes) -> Optional[int]:
        if key in self.files:
            return self.files[key]
        fd = None
        if self.folder is not None and _COPY:
            path = os.path.join(self.folder, f"template-{os.getpid()}-{len(self.paths)}.bin")
            try:   # it holds the board's keys: owner-only, as the work folder's ledgers are
                fd = os.open(path, (_CREATE_FLAGS & ~os.O_WRONLY) | os.O_RDWR, 0o600)
                self.paths.append(path)
                _write_all(fd, [template])
            except OSError:
                if fd is not None:
                    os.close(fd)
                fd = None   # written from memory, then
        self.files[key] = fd
        return fd

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        for fd in self.files.values():
            if fd is not None:
                os.close(fd)
        for path in self.paths:
            try:
                os.unlink(path)
            except OSError:
                pass

    @staticmethod
    def _pieces(template: bytes, patches: Sequence[Tuple[int, bytes]]) -> list:
        """The template with ``patches`` ((offset, bytes), by offset) in place (check_layout:
        they neither overlap nor run past the flash)."""
        view, pieces, pos = memoryview(template), [], 0
        for offset, data in patches:
            pieces += [view[pos:offset], data] if offset > pos else [data]
            pos = offset + len(data)
        pieces.append(view[pos:])
        return pieces


def _copy_file(source: int, fd: int, size: int) -> bool:
    """Copy ``size`` bytes of the file ``source`` into the empty file ``fd`` in the kernel;
    False, with ``fd`` still empty, where the kernel or the disk cannot."""
    global _COPY
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(source, fd, size - done, done, done)
            if n <= 0:   # some file systems copy nothing rather than say they cannot
                raise OSError(errno.EINVAL, "copy_file_range copied nothing")
            done += n
    except OSError as exc:
        if exc.errno not in _NO_COPY:
            raise
        if done:
            os.ftruncate(fd, 0)
        _COPY = False   # not on this kernel or disk: write from memory from now on
        return False
    return True


_COPY = hasattr(os, "copy_file_range")
_NO_COPY = {errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP),
            errno.EBADF}


def _write_all(fd: int, pieces: Sequence[bytes]) -> None:
    """``pieces`` one after the other at the file's position, in as few system calls as the
    kernel takes (a short write loses nothing)."""
    views = [memoryview(p) for p in pieces if len(p)]
    while views:
        done = os.writev(fd, views[:_IOV_MAX]) if _WRITEV else os.write(fd, views[0])
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if done:
            views[0] = views[0][done:]


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


_IOV_MAX = 1024
_WRITEV = hasattr(os, "writev")   # not on Windows: a piece a call there


def _sha256_hex(pieces: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for piece in pieces:
        h.update(piece)
    return h.hexdigest()


def write_chunk(maker: DeviceMaker, staging: str, claims: Optional[str], images: bool, ledger: str,
                after_row=None) -> None:
    """``after_row()``: called after each row's line is written (the batch's progress)."""
    # owner-only: the lines hold digests of the rows' key files; line-buffered: progress counts them
    fd = os.open(ledger, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n", buffering=1) as out:
        for entry in build_chunk(maker, staging, claims, images):
            out.write(json.dumps(entry, sort_keys=True) + "\n")
            if after_row is not None:
                after_row()


class Progress:
    """``done/total (pct), rate/s, M:SS left`` of a batch, rewritten in place on a terminal.

    ``stream``: where to show it; ``build_batch`` makes one only where ``wanted(stream)`` (a TTY),
    so that elsewhere nothing is shown and nothing is counted.  ``count()``: the rows done so
    far; it is asked at most every ``every`` seconds."""

    def __init__(self, stream, total: int, count, clock=time.monotonic, every: float = 0.25):
        self.stream = stream
        self.total = total
        self.count = count
        self.clock = clock
        self.every = every
        self.start = self.last = clock()
        self.width = 0
        self._show(0, self.start, final=False)

    @staticmethod
    def wanted(stream) -> bool:
        try:
            return stream is not None and stream.isatty()
        except (AttributeError, ValueError):
            return False

    def tick(self) -> None:
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self._show(self.count(), now, final=False)

    def finish(self) -> None:
        self._show(self.count(), self.clock(), final=True)
        self.stream.write("\n")
        self.stream.flush()

    def _show(self, done: int, now: float, final: bool) -> None:
        elapsed = now - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        line = f"devices: {done}/{self.total} ({100 * done // max(self.total, 1)}%)"
        if rate:
            line += f", {rate:.0f}/s" if rate >= 10 else f", {rate:.1f}/s"
        if final:
            line += f", done in {_minutes(elapsed)}"
        elif rate:
            line += f", {_minutes((self.total - done) / rate)} left"
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)


def _minutes(seconds: float) -> str:
    seconds = int(seconds + 0.5)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class _Counter:
    """Rows done: those of this process, and the lines each worker's ledger holds so far."""

    def __init__(self, ledgers: Sequence[str]):
        self.mine = 0
        self.seen = {path: [0, 0] for path in ledgers}   # path -> [bytes read, lines]

    def row_done(self) -> None:
        self.mine += 1

    def __call__(self) -> int:
        total = self.mine
        for path, state in self.seen.items():
            try:
                with open(path, "rb") as f:
                    f.seek(state[0])
                    data = f.read()
            except OSError:
                continue   # not created yet
            state[0] += len(data)
            state[1] += data.count(b"\n")
            total += state[1]
        return total


def _wait(proc, progress: Optional[Progress]) -> int:
    while progress is not None:
        try:
            return proc.wait(timeout=progress.every)
        except subprocess.TimeoutExpired:
            progress.tick()
    return proc.wait()


def _entries(path: str) -> Iterator[dict]:
    with open(path, encoding="utf-8") as f:
        for text in f:
            if text.strip():
                yield json.loads(text)


def merged_entries(ledgers: Sequence) -> Iterator[dict]:
    """Every chunk's lines in CSV order (each chunk ledger is in CSV order already).  A ledger:
    a chunk ledger's path, or a function returning the entries of one (the shards of
    ``shards.merge_ledgers``), called once per merge."""
    return heapq.merge(*(_entries(p) if isinstance(p, str) else p() for p in ledgers), key=lambda e: e["line"])


def no_devices(csv_path: str) -> Problem:
    return Problem(csv_path, "line 2", "no devices: the file has a header and no rows")


def check_batch(csv_path: str, ledgers: Sequence, empty_ok: bool = False,
                expired: Optional[list] = None, each=None) -> Tuple[int, List[Problem]]:
    """(rows, problems) of the merged ledgers: each row's own problems, and what only the whole
    batch shows (an id used twice, a certificate or key reused across devices).  ``empty_ok``:
    no rows is no problem (a shard may have none; ``shards.shard_header`` checks the CSV's).
    ``expired``: a list that gets [rows, the first row's words] when rows hold expired
    certificates (``DeviceMaker.make``).  ``each(entry)``: called with every good row's entry, in
    CSV order, during the first pass, until a row with problems or without outputs is seen (such a
    batch fails, and is not written).

    Memory stays flat: a first pass keeps 8 bytes per id and per digest (in 256 buckets) and
    finds the values seen more than once; only when it finds any, or a row's own problem, a
    second pass names each problem with its lines, tracking just those values.  So each ledger
    is read twice at most: a path, or a function returning its entries anew at each call."""
    id_buckets = [bytearray() for _ in range(_BUCKETS)]
    digest_buckets = [bytearray() for _ in range(_BUCKETS)]
    rows, row_problems, expired_rows, first_expired = 0, False, 0, None
    for entry in merged_entries(ledgers):
        rows += 1
        if "problems" in entry:
            row_problems = True
            continue
        if "expired" in entry:
            expired_rows += 1
            first_expired = first_expired or entry["expired"][0]
        if each is not None and not row_problems:
            if "outputs" in entry:
                each(entry)
            else:
                each = None   # a row written by no chunk (its id's folder was taken): the batch fails below
        h = _id_hash(entry["device_id"])
        id_buckets[h & _BUCKET_MASK] += h.to_bytes(8, sys.byteorder)
        for name, (digest, _cell) in entry["digests"].items():
            if not name.endswith("_ca"):
                h = int(digest[:16], 16)
                digest_buckets[h & _BUCKET_MASK] += h.to_bytes(8, sys.byteorder)
    if expired_rows and expired is not None:
        expired += [expired_rows, first_expired]
    id_twice, digest_twice = _seen_twice(id_buckets), _seen_twice(digest_buckets)
    del id_buckets, digest_buckets
    if not rows:
        return 0, [] if empty_ok else [no_devices(csv_path)]
    if not (row_problems or id_twice or digest_twice):
        return rows, []
    return rows, _batch_problems(csv_path, ledgers, id_twice, digest_twice)


_BUCKETS, _BUCKET_MASK = 256, 255


def _id_hash(device_id: str) -> int:
    # ids name folders: "A1" and "a1" are one folder on a case-insensitive disk
    return hash(device_id.lower()) & 0xFFFFFFFFFFFFFFFF   # one process: the same for the same id


def _seen_twice(buckets: Sequence[bytearray]) -> set:
    twice = set()
    for bucket in buckets:
        values = memoryview(bucket).cast("Q").tolist()
        if len(set(values)) != len(values):
            seen = set()
            for v in values:
                if v in seen:
                    twice.add(v)
                seen.add(v)
    return twice


def _batch_problems(csv_path: str, ledgers: Sequence[str], id_twice: set, digest_twice: set) -> List[Problem]:
    """The problems in CSV order, until there are more than MAX_PROBLEMS (BoardError.first_of
    shows the first MAX_PROBLEMS and that more follow); ``id_twice`` and ``digest_twice``: the
    hashes of the ids and digests that the first pass saw more than once (no other can be a
    duplicate)."""
    problems: List[Problem] = []
    ids: Dict[str, Tuple[str, int]] = {}   # lower-cased id -> (id, line)
    seen: Dict[int, Tuple[int, str]] = {}
    for entry in merged_entries(ledgers):
        if len(problems) > MAX_PROBLEMS:
            break   # every row up to here was checked, whichever chunk took it (build_chunk)
        line = entry["line"]
        if "problems" in entry:
            problems += [_problem(p) for p in entry["problems"]]
            continue
        device_id = entry["device_id"]
        folded = device_id.lower()
        if _id_hash(device_id) in id_twice:
            if folded in ids:
                other_id, other_line = ids[folded]
                same = "already used" if other_id == device_id else f"differs only in case from {other_id!r}"
                problems.append(Problem(csv_path, f"line {line}, device_id", f"{same} on line {other_line}; "
                                        "each device needs an id of its own", device_id))
            else:
                ids[folded] = (device_id, line)
        for name, (digest, cell) in sorted(entry["digests"].items()):
            if name.endswith("_ca") or int(digest[:16], 16) not in digest_twice:
                continue   # a CA is shared by design
            digest = int(digest[:32], 16)   # 128 bits tell files apart
            if digest in seen:
                other_line, other_name = seen[digest]
                problems.append(Problem(csv_path, f"line {line}, {name}", f"the same file content as line "
                                        f"{other_line} ({other_name}): a certificate or key reused across devices "
                                        "is a security defect", cell))
            else:
                seen[digest] = (line, name)
    return problems


class LedgerWriter:
    """devices.json written as its devices come, in CSV order (outputs and their SHA-256 per
    device): by a batch, and by a merge of its shards (atfactory.shards), while they check it."""

    def __init__(self, out, board):
        self.out = out
        self.count = 0
        out.write(json.dumps({"board": board.id, "module": board.module_name})[:-1] + ', "devices": [\n')

    def add(self, entry: dict) -> None:
        doc = {"device_id": entry["device_id"], "line": entry["line"], "outputs": entry["outputs"]}
        self.out.write((",\n" if self.count else "") + json.dumps(doc, sort_keys=True))
        self.count += 1

    def end(self) -> None:
        self.out.write("\n]}\n")


def _remove(path: str) -> None:
    if os.path.lexists(path):
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)


def build_batch(maker: DeviceMaker, release: str, worker_command: Sequence[str], workers: int, images: bool,
                out_path: str, environ: Optional[dict] = None, progress=None,
                warnings: Optional[List[str]] = None) -> int:
    """Build a whole batch (see the module's docstring); return the number of devices.

    ``worker_command`` starts one worker process without its chunk arguments.  ``progress``: a
    stream (stderr) where a terminal shows the batch's progress.  ``warnings``: a list that gets
    what the batch builds but warns of, a line each, to be shown after the CSV's path (rows with
    expired certificates).  Raises BoardError with every
    problem, and AtFactoryError when a worker fails; nothing of the batch is left behind either way."""
    staging, retired, work = (os.path.join(release, name) for name in (STAGING, RETIRED, WORK))
    for path in (staging, retired, work):
        _remove(path)
    os.makedirs(staging)
    os.makedirs(work)
    try:
        chunks = max(1, workers)
        ledgers = [os.path.join(work, f"chunk-{c}-of-{chunks}.json") for c in range(chunks)]
        claims = None
        if chunks > 1:
            claims = os.path.join(work, "claims")
            os.mkdir(claims)
        procs = []
        for c in range(1, chunks):
            err = tempfile.TemporaryFile(dir=work)
            procs.append((subprocess.Popen(list(worker_command) + ["--staging", staging, "--claims", claims,
                                                                   "--ledger", ledgers[c]],
                                           stdout=subprocess.DEVNULL, stderr=err, env=environ), err))
        shown, after_row = None, None
        if Progress.wanted(progress):
            counter = _Counter(ledgers[1:])
            shown = Progress(progress, sum(1 for _ in maker.rows()), counter)

            def after_row():
                counter.row_done()
                shown.tick()
        try:
            write_chunk(maker, staging, claims, images, ledgers[0], after_row)
        finally:
            failures = []
            for proc, err in procs:
                code = _wait(proc, shown)
                err.seek(0)
                text = err.read().decode("utf-8", "replace").strip()
                err.close()
                if code:
                    failures.append(text or f"a devices worker exited with status {code}")
            if shown is not None:
                shown.finish()
        if failures:
            lines = [line.replace("atfactory: error: ", "", 1) for text in failures for line in text.splitlines()]
            raise AtFactoryError("\n".join(dict.fromkeys(lines)))
        expired: list = []
        with contextlib.ExitStack() as stack:
            # devices.json is written while the batch is checked (one pass over the chunk ledgers), to
            # a temporary that takes its place only once devices/ has (nothing at all on a problem)
            ledger = None if maker.shard is not None else \
                LedgerWriter(stack.enter_context(atomic_open(out_path, text=True)), maker.board)
            rows, problems = check_batch(maker.csv_path, ledgers, empty_ok=maker.shard is not None, expired=expired,
                                         each=ledger.add if ledger is not None else None)
            if problems:
                raise BoardError.first_of(problems)
            if ledger is not None and ledger.count != rows:   # never a ledger short of a device
                raise AtFactoryError(f"the devices ledger got {ledger.count} of {rows} rows; nothing was written")
            if expired and warnings is not None:
                count, first = expired
                what = first if count == 1 else f"{count} rows hold expired certificates, the first: {first}"
                warnings.append(f"{what}; {'it still builds' if count == 1 else 'they still build'}"
                                f", but TLS peers that check dates will refuse {'it' if count == 1 else 'them'}; "
                                "release=yes refuses expired certificates")
            header = shards.shard_header(maker, release, images) if maker.shard is not None else None
            if ledger is not None:
                ledger.end()
            devices = os.path.join(release, DEVICES_DIR)
            if os.path.lexists(devices):
                os.rename(devices, retired)
            os.rename(staging, devices)
            shards.remove_other_ledgers(release, out_path)
            if header is not None:
                shards.write_shard_ledger(header, ledgers, out_path)
        return rows
    finally:
        for path in (staging, retired, work):
            _remove(path)


# --- the worker process: python -m atfactory.devices_worker ---------------------------------------

def worker_command(board_path: str, relative_to: str, csv_path: str, args: Sequence[str]) -> List[str]:
    return [sys.executable, "-m", "atfactory.devices_worker", "--board", board_path, "--relative-to", relative_to,
            "--devices", os.path.abspath(csv_path)] + list(args)


def _main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    from .plugins import make_session
    from .prepare import prepare_board

    p = argparse.ArgumentParser(prog="python -m atfactory.devices_worker")
    p.add_argument("--board", required=True)
    p.add_argument("--relative-to", required=True)
    p.add_argument("--devices", required=True)
    p.add_argument("--staging", required=True)
    p.add_argument("--ledger", required=True)
    p.add_argument("--claims", default=None, help="the folder where chunks claim blocks of rows (default: every row)")
    p.add_argument("--firmware", default="")
    p.add_argument("--plugins", default="")
    p.add_argument("--boards", action="append", default=[], help="a project's boards folder (repeatable)")
    p.add_argument("--sandbox", action="store_true")
    p.add_argument("--release", action="store_true")
    p.add_argument("--images", action="store_true")
    p.add_argument("--input-cache", default="")
    p.add_argument("--shard", default="", help="K/N: the rows of shard K of N")
    args = p.parse_args(argv)
    if args.input_cache:
        from .input_cache import use_input_cache

        use_input_cache(args.input_cache)   # read only here: the scons process owns the file
    try:
        host, registry = make_session([d for d in args.plugins.split(",") if d], board_dirs=args.boards)
        tables = host.board_tables()
        prepared = prepare_board(args.board, registry, host, relative_to=args.relative_to,
                                 firmware_override=args.firmware or None, extra_tables=tables, sandbox=args.sandbox,
                                 release=args.release)
        maker = DeviceMaker(prepared, args.devices, tables, formats=host.formats(),
                            shard=shards.parse_shard(args.shard, "--shard") if args.shard else None)
        write_chunk(maker, args.staging, args.claims, args.images, args.ledger)
    except BoardError as err:
        for line in err.lines():
            sys.stderr.write(f"atfactory: error: {line}\n")
        return 2
    except AtFactoryError as err:
        sys.stderr.write(f"atfactory: error: {err}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
