"""Per-device builds for manufacturing lines: one set of AT partitions per row of a CSV.

    device_id,client_cert,client_key,uart_baudrate
    A0001,certs/a0001.crt,certs/a0001.key,
    A0002,certs/a0002.crt,certs/a0002.key,921600

Columns: ``device_id`` (required, unique, a file name); any ``[factory_param]`` field; any
certificate set a partition of the board can hold (``client_cert``, ``client_key``, ...: a path
relative to the CSV, several joined with ``;``); ``mfg_nvs.<namespace>.<key>`` for a key of the
board's own mfg_nvs namespaces (``vendor_nvs``; a blob cell is a file path relative to the CSV);
``table.key`` for a plugin's board table (laid over the board for that device, so its
partitions are made per device).  Empty cells take the board's value.

Every row is checked like a board, with its CSV line number; a device id or a device
certificate/key used twice is an error; a batch with any problem writes nothing
(``devices_worker`` builds and commits a batch).  The CSV is streamed: no more than one row is
held at a time.  ``DeviceMaker.make`` turns one row into its outputs; what it reads of the
board itself (certificate sets, GATT table) is read once per batch (``ReadContext.memo``).
"""
from __future__ import annotations

import codecs
import csv
import dataclasses
import datetime
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from . import artifacts as art
from . import factory_param as fp
from . import pki
from . import vendor_nvs
from .checks import Checker, DateRules, parse_date
from .errors import BoardError, ContentError, InputError, Problem, did_you_mean, display_path
from .formats import CERTIFICATE_USES, ReadContext, public_keys
from .formats.factory_param import check_table
from .fsutil import atomic_open, check_regular_file, read_input
from .numbers import parse_int
from .plugins import call_build
from .stamps import stamp_fields
from .toml_layers import Merged

DEVICE_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}\Z")
DEVICES_DIR = "devices"
LEDGER = "devices.json"
_FP_FIELDS = [f.name for f in fp.FIELDS if f.name not in ("platform", "module_name")]
_FP_STRINGS = {"country_code"}


@dataclass
class Columns:
    factory_param: List[str] = field(default_factory=list)
    certificates: List[str] = field(default_factory=list)   # certificate set names
    plugin: List[Tuple[str, str, str]] = field(default_factory=list)   # (column, table, key)
    vendor: List[Tuple[str, vendor_nvs.VendorKey]] = field(default_factory=list)   # mfg_nvs.<ns>.<key>

    def width(self) -> int:
        return 1 + len(self.factory_param) + len(self.certificates) + len(self.plugin) + len(self.vendor)


@dataclass(frozen=True)
class Row:
    line: int
    cells: Dict[str, str]         # column -> stripped cell
    width: Optional[int] = None   # the number of cells when it is not the header's


def _text_lines(path: str, digest=None) -> Iterator[str]:
    """The CSV's lines as text, each decoded on its own so that bad UTF-8 names its own line;
    ``digest`` (a hashlib object) is given every byte as read."""
    try:
        check_regular_file(path, "a CSV file")
    except InputError as err:
        raise BoardError([Problem(None, "devices", err.message, display_path(path))]) from None
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if digest is not None:
                digest.update(raw)
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise BoardError([Problem(path, f"line {number}", f"not UTF-8 (byte 0x{raw[exc.start]:02x} at "
                                                                  f"column {exc.start + 1}); a devices CSV is UTF-8 text")]) from None


def _reader(path: str, digest=None) -> Iterator[Tuple[int, List[str]]]:
    """(line number, cells) of every record; csv's own errors (a cell over its size limit, a
    stray quote) name the line."""
    reader = csv.reader(_text_lines(path, digest))
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise BoardError([Problem(path, f"line {reader.line_num}", f"not a CSV record ({exc})")]) from None
        yield reader.line_num, cells


def _rows(path: str, digest=None, start: int = 0, step: int = 1, keep=None) -> Iterator[Row]:
    """Every data row, or rows ``start``, ``start + step``, ... of them and of those the ones
    ``keep(index among them)`` is true for; the header is validated by ``read_columns``.
    ``digest`` (a hashlib object) has had every byte of the file once the rows are all read."""
    records = _reader(path, digest)
    header = [h.strip() for h in next(records, (0, []))[1]]
    index = -1
    for line, cells in records:
        if not any(c.strip() for c in cells):
            continue
        index += 1
        if index < start or (index - start) % step or (keep is not None and not keep((index - start) // step)):
            continue   # another shard's or worker's row: parsed (a cell may hold a line break), not kept
        if len(cells) == len(header):
            yield Row(line, dict(zip(header, (c.strip() for c in cells))))
        else:
            yield Row(line, {}, len(cells))


def certificate_columns(board, formats) -> Dict[str, str]:
    """Certificate set name -> the partition that holds it, for every set the board can hold."""
    columns: Dict[str, str] = {}
    for p in board.partitions:
        fmt = formats.get(p.content.kind) if p.content else formats.for_partition(p.name, board.at_version)
        for name in fmt.certificate_slots(p.name, board.at_version):
            columns.setdefault(name, p.name)
    return columns


def read_columns(path: str, board, plugin_tables, cert_columns: Dict[str, str]) -> Columns:
    header = [h.strip() for h in next(_reader(path), (0, []))[1]]
    cols = Columns()
    problems = []
    cert_names = list(cert_columns)
    # the board's release's [factory_param] fields, in the v2 layout's order where they are in it
    fp_fields = [f for f in _FP_FIELDS if f in board.factory_param] + \
        [f for f in board.factory_param if f not in _FP_FIELDS and f not in ("platform", "module_name")]
    vendor_keys = {f"{vendor_nvs.COLUMN_PREFIX}{k.namespace}.{k.key}": k for k in vendor_columns(board)}
    if "device_id" not in header:
        problems.append(Problem(path, "line 1", "no device_id column; the header must name device_id and the "
                                                "values that differ per device"))
    for name in header:
        if name == "device_id":
            continue
        if name in fp_fields:
            cols.factory_param.append(name)
        elif name in cert_columns:
            cols.certificates.append(name)
        elif name in vendor_keys:
            cols.vendor.append((name, vendor_keys[name]))
        elif "." in name and name.split(".", 1)[0] in (plugin_tables or {}):
            table, key = name.split(".", 1)
            cols.plugin.append((name, table, key))
        else:
            known = ["device_id"] + fp_fields + cert_names + list(vendor_keys)
            accepted = ", ".join(known + [f"{t}.<key>" for t in (plugin_tables or {})])
            problems.append(Problem(path, f"line 1, column {name!r}", f"unknown column; accepted: {accepted}"
                                    + did_you_mean(name, known)))
    if len(set(header)) != len(header):
        problems.append(Problem(path, "line 1", "a column is named twice"))
    if problems:
        raise BoardError(problems)
    return cols


def vendor_columns(board) -> List[vendor_nvs.VendorKey]:
    """The keys of the board's own mfg_nvs namespaces (a devices CSV can set each per device)."""
    table = (board.data.get("mfg_nvs") or {}).get(vendor_nvs.TABLE)
    return vendor_nvs.declared(table) if isinstance(table, dict) else []


class DeviceMaker:
    """Turns rows into device outputs, checking each like a board."""

    def __init__(self, prepared, csv_path: str, plugin_tables=None, formats=None, shard=None):
        """``formats``: the session's registry (default: stock); ``shard``: (K, N), the rows of
        shard K of N (atfactory.shards), or None for every row."""
        from .formats import stock_registry

        self.prepared = prepared
        self.shard = shard
        self.board = prepared.board
        self.formats = formats or stock_registry()
        self.csv_path = os.path.abspath(csv_path)
        self.csv_dir = os.path.dirname(self.csv_path)
        self.plugin_tables = plugin_tables or {}
        self.cert_partitions = certificate_columns(self.board, self.formats)
        self.columns = read_columns(self.csv_path, self.board, self.plugin_tables, self.cert_partitions)
        # the release's [factory_param] fields (v2: every field of the 4 KB layout; v3.1+: mfg_nvs's)
        self.base_table = {k: v for k, v in self.board.factory_param.items() if k not in ("platform", "module_name")}
        self.shared = {p.name: p for p in self.board.partitions}
        self.shared_sets = self.board.certificate_sets()
        # each partition a row can change with the CSV's columns, with its format, looked up once
        # per batch rather than once per row
        part_formats = [(p, self.formats.get(p.content.kind) if p.content else
                        self.formats.for_partition(p.name, self.board.at_version)) for p in self.board.partitions]
        row_sets = {self.cert_partitions[name] for name in self.columns.certificates}
        self.row_part_formats = [(p, fmt) for p, fmt in part_formats
                                 if p.name in row_sets or (self.columns.factory_param and fmt.reads_factory_param)
                                 or (self.columns.vendor and fmt.reads_vendor_namespaces)]
        self.memo: dict = {}   # what formats read of the board itself, once per batch (ReadContext.memo)
        # the rows' certificates are dated as the board's are (checks._check_certificate_dates)
        self.dates = DateRules(prepared.release, parse_date((self.board.data.get("release") or {}).get("valid_until")))
        self._plugin_shared = {}
        for name, (build, seen) in prepared.plugin_builders.items():
            self._plugin_shared[name] = call_build(self.board.partition(name).content.spec["plugin"], name, build,
                                                   seen, self.board.partition(name).sources)

    def rows(self, keep=None):
        """The rows this maker builds: every row, or rows i with i % N == K-1 of shard K/N; of
        those, with ``keep``, the ones ``keep(j)`` is true for, j counting them from 0."""
        k, n = self.shard if self.shard is not None else (1, 1)
        return _rows(self.csv_path, start=k - 1, step=n, keep=keep)

    def row_of(self, device_id: str) -> Row:
        """The row of ``device_id`` (the first, as the batch's duplicate check keeps it)."""
        ids = []
        for row in self.rows():
            cell = row.cells.get("device_id", "")
            if cell == device_id:
                return row
            ids.append(cell)
        raise BoardError([Problem(self.csv_path, "device_id", f"no row has this device id ({len(ids)} rows)"
                                  + did_you_mean(device_id, ids), device_id)])

    def make(self, row: Row, expired: Optional[List[str]] = None):
        """(device_id, {release path: (bytes, secret)}, {set name: digest for duplicate checks}).
        ``expired``: a list that gets what the row holds of certificates expired by now (a
        warning: they still build; release=yes refuses them)."""
        problems: List[Problem] = []

        def fail(key: str, message: str, value=Problem.NO_VALUE):
            problems.append(Problem(self.csv_path, f"line {row.line}, {key}", message, value))

        if row.width is not None:
            raise BoardError([Problem(self.csv_path, f"line {row.line}",
                                      f"{row.width} cells; the header has {self.columns.width()}")])
        device_id = row.cells.get("device_id", "")
        if not DEVICE_ID.match(device_id):
            fail("device_id", "accepted: 1 to 64 letters, digits, '_', '-' or '.', not starting with '.' "
                              "(it names the device's folder)", device_id)
        files: Dict[str, Tuple[bytes, bool]] = {}
        digests: Dict[str, str] = {}
        values = self._factory_values(row, fail, problems)
        self._partitions(row, values, files, digests, fail, expired)
        self._plugin_tables(row, files, fail)
        if problems:
            raise BoardError(problems)
        return device_id, files, digests

    def _factory_values(self, row: Row, fail, problems) -> Optional[Dict[str, object]]:
        """The board's [factory_param] with the row's values laid over them, checked like a board;
        None when the row gives none (or they are wrong: the problems say so)."""
        board = self.board
        given = {k: row.cells[k] for k in self.columns.factory_param if row.cells.get(k, "") != ""}
        if not given:
            return None
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
                if text.strip().lower().startswith("0x"):   # messages repeat it as written
                    merged.written[("factory_param", key)] = text.strip()
            merged.origin[("factory_param", key)] = self.csv_path
        merged.data["factory_param"] = table
        sub: List[Problem] = []
        values = check_table(Checker(merged, self.csv_path, sub), board.chip, board.at_version, board.module_name)
        for p in sub:
            problems.append(Problem(self.csv_path, f"line {row.line}, {p.key}", p.message, p.value, p.written) if p.has_value
                            else Problem(self.csv_path, f"line {row.line}, {p.key}", p.message))
        if sub:
            return None
        values.update(platform=board.platform, module_name=board.module_name)
        return values

    def _partitions(self, row: Row, values, files, digests, fail, expired=None) -> None:
        """Every partition the row changes, made again once: with the row's factory_param values
        (formats that read them) and its certificate sets; keys paired with certificates."""
        board = self.board
        overrides: Dict[str, Dict[str, List[str]]] = {}   # partition -> {set name: files}
        for name in self.columns.certificates:
            cell = row.cells.get(name, "")
            if cell:
                sources = [os.path.normpath(os.path.join(self.csv_dir, s.strip())) for s in cell.split(";") if s.strip()]
                overrides.setdefault(self.cert_partitions[name], {})[name] = sources
        row_keys: Dict[str, Tuple[bytes, ...]] = {}
        tables = self._vendor_tables(row, fail)
        read_files: Dict[str, bytes] = {}   # the row's files, each read once

        def read(path: str) -> bytes:
            data = read_files.get(path)
            if data is None:
                data = read_files[path] = read_input(path)
            return data

        for part, fmt in self.row_part_formats:
            sets = overrides.get(part.name)
            if not sets and not (values is not None and fmt.reads_factory_param) \
                    and not (tables is not None and fmt.reads_vendor_namespaces):
                continue
            # The board's own certificates were parsed when it was loaded: only the row's are parsed here.
            ctx = ReadContext(board.at_version, values or board.factory_param, cache=False,
                              parse=bool(sets), tables=tables or board.data,
                              partition_size=part.size, memo=self.memo, read=read, render=True)
            column = next(iter(sets)) if sets else part.name
            try:
                content = fmt.read_certificates(part.name, sets, ctx) if sets else fmt.read(part.name, part.declared, ctx)
            except ContentError as err:
                named = err.key.split(".", 1)[1] if err.key and err.key.startswith("mfg_nvs.") else None
                column = named if sets and named in sets else column
                vendor = _vendor_column(err.key)
                column = vendor if vendor and row.cells.get(vendor) else column
                fail(column, err.message, display_path(err.path) if err.path else row.cells.get(column, ""))
                continue
            if content is None:
                continue
            if content.size > part.size:
                fail(column, f"the content is {content.size} bytes, larger than the partition's {part.size}",
                     row.cells.get(column, ""))
                continue
            data = content.data if content.data is not None else fmt.render(content.spec, content.sources)
            for name in (part.name,) + tuple(fmt.extra_targets(part.name, board.module_name)):
                files[art.partition_path(name)] = (data, content.secret)
            if sets and self.prepared.release:
                self._refuse_development(content, sets, row, fail)
            if sets:
                self._check_dates(content, sets, row, read, fail, expired)
            for set_name, sources in (sets or {}).items():
                # Same files, same digest: the duplicate check compares these.
                digest = hashlib.sha256()
                for source in sources:
                    digest.update(read(source))
                digests[set_name] = digest.hexdigest()
                keys = [c.public_key for c in content.certificates if c.set_name == set_name]
                if keys and all(k is not None for k in keys):
                    row_keys[set_name] = tuple(keys)
        for use in CERTIFICATE_USES:
            cert, key = f"{use}_cert", f"{use}_key"
            if cert not in row_keys and key not in row_keys:
                continue
            a = row_keys.get(cert) or self._shared_keys(cert)
            b = row_keys.get(key) or self._shared_keys(key)
            if a is not None and b is not None and tuple(a) != tuple(b):
                fail(key if key in row_keys else cert, f"does not pair with {cert if key in row_keys else key} "
                     "(each key must belong to the certificate of the same position)",
                     row.cells.get(key) or row.cells.get(cert))

    @staticmethod
    def _refuse_development(content, sets, row: Row, fail) -> None:
        """release=yes: a row's certificate or key that is atfactory's development material (or a copy)."""
        from .dev_certs import describe, development_match

        for cert in content.certificates:
            stem = development_match(None, cert.public_key) if cert.set_name in sets else None
            if stem is not None:
                fail(cert.set_name, f"{display_path(cert.path)} is {describe(stem, cert.role)}; release=yes refuses "
                                    "development certificates and keys: accepted: certificates and keys of your own",
                     row.cells.get(cert.set_name, ""))

    def _check_dates(self, content, sets, row: Row, read, fail, expired) -> None:
        """The row's certificates (and CAs): expired by now is a warning (``expired``), with
        release=yes a problem; expiring before the board's [release] valid_until, a problem."""
        for cert_file in content.certificates:
            if cert_file.set_name not in sets or cert_file.role not in ("cert", "ca"):
                continue
            try:
                chain = pki.load_certificates(read(cert_file.path))   # parsed already: the same content is cached
            except ContentError:
                continue   # reported by the content checks
            cell = row.cells.get(cert_file.set_name, "")
            for cert in chain:
                expires = getattr(cert, "not_valid_after_utc", None) or \
                    cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
                expiry, late = self.dates.verdict(expires)
                if expiry is None and not late:
                    continue
                where = f"certificate {cert.subject.rfc4514_string()}"   # the cell names the file
                if expiry == "refuse":
                    fail(cert_file.set_name, f"{where} expired on {expires:%Y-%m-%d}; release=yes refuses expired "
                                             "certificates: accepted: certificates valid today", cell)
                elif expiry == "warn" and expired is not None:
                    expired.append(f"line {row.line}, {cert_file.set_name} = {json.dumps(cell)}: {where} expired on "
                                   f"{expires:%Y-%m-%d}")
                if late:
                    fail(cert_file.set_name, f"{where} expires {expires:%Y-%m-%d}, before the board's [release] "
                                             f"valid_until {self.dates.until.isoformat()}; replace it or move the "
                                             "date", cell)

    def _vendor_tables(self, row: Row, fail) -> Optional[dict]:
        """The board's tables with the row's mfg_nvs namespace keys laid over them; None when it gives none."""
        given = [(column, key) for column, key in self.columns.vendor if row.cells.get(column, "") != ""]
        if not given:
            return None
        namespaces = {ns: dict(keys) for ns, keys in self.board.data["mfg_nvs"][vendor_nvs.TABLE].items()}
        for column, key in given:
            try:
                namespaces[key.namespace][key.key] = vendor_nvs.cell_value(key, row.cells[column], self.csv_dir)
            except ValueError as exc:
                fail(column, str(exc), row.cells[column])
        tables = dict(self.board.data)
        tables["mfg_nvs"] = dict(tables["mfg_nvs"], **{vendor_nvs.TABLE: namespaces})
        return tables

    def _shared_keys(self, set_name: str) -> Optional[Tuple[bytes, ...]]:
        """The board's own keys of a set this row does not replace."""
        files = self.shared_sets.get(set_name)
        return public_keys(files) if files else None

    def _plugin_tables(self, row: Row, files, fail) -> None:
        """Plugin tables: laid over the board for this device; plugin partitions made again."""
        board = self.board
        overlay: Dict[str, dict] = {}
        for column, table, key in self.columns.plugin:
            if row.cells.get(column, "") != "":
                overlay.setdefault(table, {})[key] = row.cells[column]
        if not overlay:
            return
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
            content = call_build(part.content.spec["plugin"], name, build, device_board, part.sources)
            if len(content) > part.size:
                fail(name, f"the plugin made {len(content)} bytes, larger than the partition's {part.size}")
            elif content != self._plugin_shared[name]:
                files[art.partition_path(name)] = (content, part.content.secret)


def _vendor_column(board_key: Optional[str]) -> Optional[str]:
    """mfg_nvs.namespaces.<ns>.<key> -> the devices column mfg_nvs.<ns>.<key>."""
    prefix = f"mfg_nvs.{vendor_nvs.TABLE}."
    if board_key and board_key.startswith(prefix):
        return vendor_nvs.COLUMN_PREFIX + board_key[len(prefix):]
    return None


def batch_key(prepared, csv_path: str, host, args: Sequence[str], shard=None,
              paths_cache: Optional[str] = None) -> Tuple[str, "DeviceMaker"]:
    """(key, maker) of a devices batch: the header is checked now (a bad column stops the build
    before anything runs); the rows are checked by the workers that build them.

    The key is a digest of what the outputs depend on beyond the board (the CSV and the files
    it names, atfactory's and the plugins' versions, the options).  ``paths_cache``: a file
    where the paths the CSV names are kept for the next build (see ``inputs_digest``)."""
    from . import __version__

    tables = host.board_tables() if host is not None else {}
    maker = DeviceMaker(prepared, csv_path, tables, formats=host.formats() if host is not None else None, shard=shard)
    digest = inputs_digest(csv_path, maker, paths_cache)
    key = hashlib.sha256(json.dumps([digest, __version__, host.versions() if host else {},
                                     prepared.board.id, list(args)], sort_keys=True).encode()).hexdigest()
    return key, maker


def inputs_digest(csv_path: str, maker: DeviceMaker, paths_cache: Optional[str] = None) -> str:
    """What the device outputs depend on beyond the board: the CSV's bytes and the files it
    names, by size, modification and change times and inode (cheap to take for hundreds of
    thousands of files; a file changed in any way changes one of them).

    The paths the CSV names are a function of its bytes, columns and shard: ``paths_cache`` keeps
    them from the last build under a digest of these, so that a no-op build reads the CSV once
    instead of parsing every row.  Paths are streamed, never held: memory stays flat."""
    with open(csv_path, "rb") as f:
        text_digest = hashlib.sha256(f.read()).hexdigest()
    blob_columns = [column for column, key in maker.columns.vendor if key.type == "blob"]
    columns = maker.columns.certificates + blob_columns
    list_key = hashlib.sha256(json.dumps([text_digest, maker.csv_dir, columns, maker.shard]).encode()).hexdigest()
    if paths_cache and columns:
        h = _stamps_digest(list_key, _cached_paths(paths_cache, list_key))
        if h is not None:
            return h

    def paths():
        return (os.fsencode(os.path.normpath(os.path.join(maker.csv_dir, s.strip())))
                for row in maker.rows() for name in columns
                for s in (row.cells.get(name) or "").split(";") if s.strip())
    if not (paths_cache and columns):
        return _stamps_digest(list_key, paths())
    try:
        with atomic_open(paths_cache) as out:
            return _stamps_digest(list_key, _saving(paths(), out, list_key))
    except OSError:
        return _stamps_digest(list_key, paths())   # only a cache: go on without it


_PATHS_HEAD, _PATHS_END = b"atfactory devices paths 2 ", b"\0end "   # no path holds a NUL


def _stamps_digest(list_key: str, paths) -> Optional[str]:
    """The digest of the paths' list (``list_key``: the CSV's bytes and columns) and every path's
    stamp, in order; None when ``paths`` ends with None (a cache found incomplete)."""
    h = hashlib.sha256(list_key.encode())
    stat, fields, lines = os.stat, stamp_fields, []
    for path in paths:
        if path is None:
            return None
        try:
            st = stat(path)
            lines.append(b"%d %d %d %d" % fields(st))
        except OSError:
            lines.append(b"missing")   # the worker that reads it reports it
        if len(lines) == 4096:
            h.update(b"\n".join(lines) + b"\n")
            lines.clear()
    h.update(b"\n".join(lines) + b"\n")
    return h.hexdigest()


def _cached_paths(cache: str, key: str):
    """The paths (bytes) kept in ``cache`` under ``key``; a final None when the file is not complete."""
    try:
        f = open(cache, "rb")
    except OSError:
        yield None
        return
    with f:
        if f.readline() != _PATHS_HEAD + key.encode() + b"\n":
            yield None
            return
        count = 0
        for line in f:
            if line.startswith(_PATHS_END):
                if line == _PATHS_END + str(count).encode() + b"\n":
                    return
                break
            if not line.endswith(b"\n"):
                break
            count += 1
            yield line[:-1]
        yield None


def _saving(paths, out, key: str):
    """``paths``, each written to ``out`` as it passes (a cache file, see _cached_paths)."""
    out.write(_PATHS_HEAD + key.encode() + b"\n")
    count = 0
    for path in paths:
        if b"\n" in path:
            raise OSError("a path with a line break cannot be kept one a line")   # no cache: atomic_open drops it
        out.write(path + b"\n")
        count += 1
        yield path
    out.write(_PATHS_END + str(count).encode() + b"\n")
