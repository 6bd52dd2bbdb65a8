"""Per-device builds for manufacturing lines: one set of AT partitions per row of a CSV.

    device_id,client_cert,client_key,uart_baudrate
    A0001,certs/a0001.crt,certs/a0001.key,
    A0002,certs/a0002.crt,certs/a0002.key,921600

Columns: ``device_id`` (required, unique, a file name); any ``[factory_param]`` field; any
certificate/key partition of the board (a path relative to the CSV, several joined with
``;``); ``table.key`` for a plugin's board table (laid over the board for that device, so its
partitions are made per device).  Empty cells take the board's value.

Every row is checked like a board before anything is written, with its CSV line number; a
device id or a device certificate/key used twice is an error.  The build streams the CSV: it
never holds more than one row, so memory does not grow with the batch.  Work is split into
chunks that run as separate processes, so ``-j2`` uses both cores.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from . import artifacts as art
from . import factory_param as fp
from . import pki
from .board import _Checker, _check_factory_param
from .content import read_content
from .errors import AtFactoryError, BoardError, ContentError, Problem, display_path
from .fsutil import write_atomic
from .numbers import parse_int
from .toml_layers import Merged

DEVICE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")
DEVICES_DIR = "devices"
LEDGER = "devices.json"
ROWS_PER_CHUNK = 500
MAX_CHUNKS = 8
MAX_PROBLEMS = 100
_FP_FIELDS = [f.name for f in fp.FIELDS if f.name not in ("platform", "module_name")]
_FP_STRINGS = {"country_code"}


@dataclass
class Columns:
    factory_param: List[str] = field(default_factory=list)
    pki: List[str] = field(default_factory=list)
    plugin: List[Tuple[str, str, str]] = field(default_factory=list)   # (column, table, key)


def _rows(path: str) -> Iterator[Tuple[int, Dict[str, str]]]:
    """(line, row) for every data row; the header is validated by ``read_columns``."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader, [])]
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            yield reader.line_num, dict(zip(header, (c.strip() for c in cells))) if len(cells) == len(header) \
                else {"\0cells": str(len(cells))}


def read_columns(path: str, board, plugin_tables) -> Columns:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            header = [h.strip() for h in next(csv.reader(f), [])]
    except FileNotFoundError:
        raise BoardError([Problem(None, "devices", "no such file", display_path(path))]) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BoardError([Problem(path, "line 1", f"not a UTF-8 CSV ({exc})")]) from None
    cols = Columns()
    problems = []
    pki_names = [p.name for p in board.partitions if p.name in pki.PKI_PARTITIONS]
    if "device_id" not in header:
        problems.append(Problem(path, "line 1", "no device_id column; the header must name device_id and the "
                                                "values that differ per device"))
    for name in header:
        if name == "device_id":
            continue
        if name in _FP_FIELDS:
            cols.factory_param.append(name)
        elif name in pki_names:
            cols.pki.append(name)
        elif "." in name and name.split(".", 1)[0] in (plugin_tables or {}):
            table, key = name.split(".", 1)
            cols.plugin.append((name, table, key))
        else:
            accepted = ", ".join(["device_id"] + _FP_FIELDS + pki_names + [f"{t}.<key>" for t in (plugin_tables or {})])
            problems.append(Problem(path, f"line 1, column {name!r}", f"unknown column; accepted: {accepted}"))
    if len(set(header)) != len(header):
        problems.append(Problem(path, "line 1", "a column is named twice"))
    if problems:
        raise BoardError(problems)
    return cols


class DeviceMaker:
    """Turns rows into device outputs, checking each like a board."""

    def __init__(self, prepared, csv_path: str, plugin_tables=None, checked: bool = False):
        """``checked``: every row passed check_devices already (chunk processes): certificates
        and keys are not parsed again."""
        self.checked = checked
        self.prepared = prepared
        self.board = prepared.board
        self.csv_path = os.path.abspath(csv_path)
        self.csv_dir = os.path.dirname(self.csv_path)
        self.plugin_tables = plugin_tables or {}
        self.columns = read_columns(self.csv_path, self.board, self.plugin_tables)
        self.base_table = {k: self.board.factory_param[k] for k in _FP_FIELDS}
        self.shared = {p.name: p for p in self.board.partitions}
        self._plugin_shared = {}
        for name, (build, seen) in prepared.plugin_builders.items():
            self._plugin_shared[name] = bytes(build(seen, self.board.partition(name).sources))

    def rows(self):
        return _rows(self.csv_path)

    def make(self, line: int, row: Dict[str, str]):
        """(device_id, {release path: (bytes, secret)}, {partition: digest for duplicate checks})."""
        problems: List[Problem] = []

        def fail(key: str, message: str, value=Problem._NO_VALUE):
            problems.append(Problem(self.csv_path, f"line {line}, {key}", message, value))

        if "\0cells" in row:
            cells = row["\0cells"]
            width = len(self.columns.factory_param) + len(self.columns.pki) + len(self.columns.plugin) + 1
            raise BoardError([Problem(self.csv_path, f"line {line}", f"{cells} cells; the header has {width}")])
        device_id = row.get("device_id", "")
        if not DEVICE_ID.match(device_id):
            fail("device_id", "accepted: 1 to 64 letters, digits, '_', '-' or '.', not starting with '.' "
                              "(it names the device's folder)", device_id)
        files: Dict[str, Tuple[bytes, bool]] = {}
        digests: Dict[str, str] = {}
        board = self.board

        # factory_param: the board's values with the row's laid over them, checked like a board.
        given = {k: row[k] for k in self.columns.factory_param if row.get(k, "") != ""}
        if given:
            table = dict(self.base_table)
            merged = Merged()
            for key, text in given.items():
                if key in _FP_STRINGS:
                    table[key] = text
                else:
                    try:
                        table[key] = parse_int(text)
                    except ValueError:
                        fail(f"factory_param.{key}", "expected an integer (decimal or 0x...)", text)
                        continue
                merged.origin[("factory_param", key)] = self.csv_path
            merged.data["factory_param"] = table
            sub: List[Problem] = []
            values = _check_factory_param(_Checker(merged, self.csv_path, sub), board.chip)
            for p in sub:
                problems.append(Problem(self.csv_path, f"line {line}, {p.key}", p.message, p.value) if p.has_value
                                else Problem(self.csv_path, f"line {line}, {p.key}", p.message))
            if not sub:
                values.update(platform=board.platform, module_name=board.module_name)
                data = fp.encode_factory_param(values)
                files[art.partition_path("factory_param")] = (data, False)
                files[art.partition_path(f"factory_param_{board.module_name}")] = (data, False)

        # certificate and key partitions
        public_keys: Dict[str, Tuple[bytes, ...]] = {}
        for name in self.columns.pki:
            cell = row.get(name, "")
            if not cell:
                continue
            sources = [os.path.normpath(os.path.join(self.csv_dir, s.strip())) for s in cell.split(";") if s.strip()]
            try:
                content = read_content(name, sources, board.at_version, cache=False, parse=not self.checked)
            except ContentError as err:
                fail(name, err.message, display_path(err.path) if err.path else cell)
                continue
            part = self.shared[name]
            if content.size > part.size:
                fail(name, f"the content is {content.size} bytes, larger than the partition's {part.size}", cell)
                continue
            rendered = art.render_artifact(content.kind, content.spec, content.sources)
            # Same files give the same partition bytes: the duplicate check hashes those.
            digests[name] = hashlib.sha256(rendered).hexdigest()
            if content.public_keys is not None:
                public_keys[name] = content.public_keys
            files[art.partition_path(name)] = (rendered, content.secret)
        for use in ("server", "client", "mqtt", "wpa2"):
            cert, key = f"{use}_cert", f"{use}_key"
            if cert not in public_keys and key not in public_keys:
                continue
            a = public_keys.get(cert) or (self.shared[cert].content.public_keys if cert in self.shared and self.shared[cert].content else None)
            b = public_keys.get(key) or (self.shared[key].content.public_keys if key in self.shared and self.shared[key].content else None)
            if a is not None and b is not None and tuple(a) != tuple(b):
                fail(key if key in public_keys else cert, f"does not pair with {cert if key in public_keys else key} "
                     "(each key must belong to the certificate of the same position)", row.get(key) or row.get(cert))

        # plugin tables: laid over the board for this device; plugin partitions made again.
        overlay: Dict[str, dict] = {}
        for column, table, key in self.columns.plugin:
            if row.get(column, "") != "":
                overlay.setdefault(table, {})[key] = row[column]
        if overlay:
            data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in board.data.items()}
            for table, values in overlay.items():
                merged_table = dict(data.get(table) or {})
                merged_table.update(values)
                sub = []
                self.plugin_tables[table](self.csv_path, merged_table, sub)
                for p in sub:
                    fail(table, p.message)
                data[table] = merged_table
            device_board = dataclasses.replace(board, data=data)
            for name, (build, _seen) in self.prepared.plugin_builders.items():
                part = board.partition(name)
                content = bytes(build(device_board, part.sources))
                if len(content) > part.size:
                    fail(name, f"the plugin made {len(content)} bytes, larger than the partition's {part.size}")
                elif content != self._plugin_shared[name]:
                    files[art.partition_path(name)] = (content, part.content.secret)
        if problems:
            raise BoardError(problems)
        return device_id, files, digests


def check_devices(maker: DeviceMaker) -> int:
    """Check every row (ids, values, certificates, duplicates); return the count.  BoardError lists problems."""
    problems: List[Problem] = []
    ids: Dict[str, int] = {}
    seen: Dict[str, Tuple[int, str]] = {}
    count = 0
    for line, row in maker.rows():
        count += 1
        try:
            device_id, _files, digests = maker.make(line, row)
        except BoardError as err:
            problems += err.problems
        else:
            if device_id in ids:
                problems.append(Problem(maker.csv_path, f"line {line}, device_id", f"already used on line {ids[device_id]}; "
                                        "each device needs an id of its own", device_id))
            ids[device_id] = line
            for name, digest in digests.items():
                if pki.PKI_PARTITIONS[name] == "ca":
                    continue   # a CA is shared by design
                if digest in seen:
                    other_line, other_name = seen[digest]
                    problems.append(Problem(maker.csv_path, f"line {line}, {name}", f"the same file content as line "
                                            f"{other_line} ({other_name}): a certificate or key reused across devices "
                                            "is a security defect", row.get(name)))
                else:
                    seen[digest] = (line, name)
        if len(problems) >= MAX_PROBLEMS:
            break
    if not count and not problems:
        problems.append(Problem(maker.csv_path, "line 2", "no devices: the file has a header and no rows"))
    if problems:
        raise BoardError(problems)
    return count


def chunk_count(rows: int) -> int:
    return max(1, min(MAX_CHUNKS, (rows + ROWS_PER_CHUNK - 1) // ROWS_PER_CHUNK))


def inputs_digest(csv_path: str, maker: DeviceMaker) -> str:
    """What the device outputs depend on beyond the board: the CSV and the files it names,
    by size and modification time (cheap to take for tens of thousands of files)."""
    h = hashlib.sha256()
    st = os.stat(csv_path)
    h.update(f"{st.st_size}:{st.st_mtime_ns}\n".encode())
    with open(csv_path, "rb") as f:
        h.update(hashlib.sha256(f.read()).digest())
    for _line, row in maker.rows():
        for name in maker.columns.pki:
            for s in (row.get(name) or "").split(";"):
                if s.strip():
                    path = os.path.normpath(os.path.join(maker.csv_dir, s.strip()))
                    try:
                        st = os.stat(path)
                        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
                    except OSError:
                        h.update(f"{path}:missing\n".encode())
    return h.hexdigest()


def build_chunk(maker: DeviceMaker, release_dir: str, chunk: int, chunks: int, images: bool):
    """Write the outputs of rows chunk, chunk + chunks, ...; yield their ledger entries."""
    board = maker.board
    planned = [a for a in art.plan_board(board, maker.prepared.firmware) if a.offset is not None]
    for n, (line, row) in enumerate(maker.rows()):
        if n % chunks != chunk:
            continue
        device_id, files, _digests = maker.make(line, row)
        folder = os.path.join(release_dir, DEVICES_DIR, device_id)
        entries = []
        merge_list = []
        for a in planned:
            rel = a.targets[0]
            if rel in files:
                entries.append((a.offset, rel))
                merge_list.append((a.offset, os.path.join(folder, rel)))
            else:
                entries.append((a.offset, f"../../{rel}"))
                merge_list.append((a.offset, os.path.join(release_dir, rel)))
        from .download_config import DownloadConfig, encode_download_config
        files["download.config"] = (encode_download_config(DownloadConfig(
            board.flash_mode, board.flash_freq, board.flash_size, tuple(entries))), False)
        hashes = {}
        for rel, (data, secret) in sorted(files.items()):
            write_atomic(os.path.join(folder, rel), data, secret=secret)
            hashes[rel] = hashlib.sha256(data).hexdigest()
        if images and maker.prepared.firmware is not None:
            from .merge import merge_factory_image
            image = merge_factory_image(board.chip.name, board.flash_mode, board.flash_freq, board.flash_size,
                                        board.flash_size_bytes, merge_list)
            rel = art.factory_image_path(board)
            write_atomic(os.path.join(folder, rel), image, secret=any(s for _, s in files.values()))
            hashes[rel] = hashlib.sha256(image).hexdigest()
        yield {"device_id": device_id, "line": line, "outputs": hashes}


def chunk_ledger_path(release_dir: str, chunk: int, chunks: int) -> str:
    return os.path.join(release_dir, DEVICES_DIR, f".chunk-{chunk}-of-{chunks}.json")


def _chunk_entries(path: str):
    with open(path, encoding="utf-8") as f:
        for text in f:
            if text.strip():
                yield json.loads(text)


def write_ledger(board, release_dir: str, chunks: int, out_path: str) -> None:
    """devices.json, streamed: chunk ledgers are each in CSV order, so a merge keeps memory flat."""
    import heapq
    import tempfile

    folder = os.path.dirname(out_path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(out_path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps({"board": board.id, "module": board.module_name})[:-1] + ', "devices": [\n')
            streams = [_chunk_entries(chunk_ledger_path(release_dir, c, chunks)) for c in range(chunks)]
            for n, entry in enumerate(heapq.merge(*streams, key=lambda e: e["line"])):
                out.write((",\n" if n else "") + json.dumps(entry, sort_keys=True))
            out.write("\n]}\n")
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    from .fsutil import _UMASK
    return _UMASK


# --- the chunk worker: python -m atfactory.devices ----------------------------------------------

def _main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    from .board import BoardRegistry
    from .plugins import make_plugin_host
    from .prepare import prepare_board

    p = argparse.ArgumentParser(prog="python -m atfactory.devices")
    p.add_argument("--board", required=True)
    p.add_argument("--relative-to", required=True)
    p.add_argument("--devices", required=True)
    p.add_argument("--release", required=True)
    p.add_argument("--chunk", type=int, required=True)
    p.add_argument("--chunks", type=int, required=True)
    p.add_argument("--firmware", default="")
    p.add_argument("--plugins", default="")
    p.add_argument("--sandbox", action="store_true")
    p.add_argument("--images", action="store_true")
    p.add_argument("--input-cache", default="")
    args = p.parse_args(argv)
    if args.input_cache:
        from .content import use_input_cache
        use_input_cache(args.input_cache)   # read only here: the scons process owns the file
    try:
        host = make_plugin_host([d for d in args.plugins.split(",") if d])
        registry = BoardRegistry()
        host.register_boards(registry)
        tables = host.board_tables()
        prepared = prepare_board(args.board, registry, host, relative_to=args.relative_to,
                                 firmware_override=args.firmware or None, extra_tables=tables, sandbox=args.sandbox)
        maker = DeviceMaker(prepared, args.devices, tables, checked=True)
        path = chunk_ledger_path(args.release, args.chunk, args.chunks)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        partial = path + ".partial"
        with open(partial, "w", encoding="utf-8") as out:   # one JSON line per device, streamed
            for entry in build_chunk(maker, args.release, args.chunk, args.chunks, args.images):
                out.write(json.dumps(entry, sort_keys=True) + "\n")
        os.replace(partial, path)
    except BoardError as err:
        for problem in err.problems[:MAX_PROBLEMS]:
            sys.stderr.write(f"atfactory: error: {problem}\n")
        return 2
    except AtFactoryError as err:
        sys.stderr.write(f"atfactory: error: {err}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
