"""A devices batch split into shards that separate machines (CI jobs) build, and the merge of
their ledgers into the one devices.json the whole batch would have written.

``shard=K/N`` builds rows i (counted from 0, in CSV order, blank lines not counted) with
i % N == K - 1: every shard reads the CSV as a stream, needs no row count first, and the
shards differ by at most one row.  Shard K's release folder holds its ``devices/`` and its
ledger, ``devices.shard-K-of-N.json``: one JSON line of header, then one line per device in
CSV order::

    {"batch": "<hex>", "board": "WROOM-32", "csv": "devices.csv", "format": 1, "ledger": "atfactory shard",
     "manifest": "<hex>", "module": "WROOM-32", "rows": 1000000, "shard": 2, "shards": 3}
    {"device_id": "A0002", "digests": {"client_cert": ["<128 bits, hex>", "certs/a0002.crt"]}, "line": 3,
     "outputs": {...}}

``rows``: the rows of the whole CSV; ``manifest``: the SHA-256 of the board's manifest.json
(the board, every input and output by SHA-256, atfactory's and the plugins' versions);
``batch``: a digest of the CSV's bytes, that manifest and the options that change device
outputs or their checks (device_images, release), so shards of one batch agree on it and
shards of anything else do not.  ``outputs`` are the device's as in devices.json; ``digests``
the first 128 bits of the SHA-256 of each certificate or key set the row names, with its cell:
what the batch's check of a certificate or key reused across devices compares.  Those digests
are of key files: the ledger is owner-only (0600), never published; the merged devices.json
holds none.

``merge_ledgers`` takes every shard's ledger, proves they are the shards of one batch and all
of them (one each of 1/N to N/N, the same batch, the number of devices each shard of that many
rows has), makes the checks only the whole batch can make (``devices_worker.check_batch``:
a device id used twice, a certificate or key file in two rows, naming CSV lines), and writes
the batch's devices.json while it checks them, in one pass over the ledgers, as the unsplit
batch does: byte for byte what the unsplit batch writes.
"""
from __future__ import annotations

import functools
import glob
import hashlib
import json
import os
import re
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from .errors import AtFactoryError, BoardError, InputError, Problem, display_path, format_value

FORMAT = 1
KIND = "atfactory shard"
LEDGER_NAME = "devices.shard-{k}-of-{n}.json"
_LEDGER_GLOB = "devices.shard-*-of-*.json"
_SHARD = re.compile(r"([0-9]{1,9})/([0-9]{1,9})\Z")
_HEX = re.compile(r"[0-9a-f]+\Z")


def parse_shard(text: str, setting: str) -> Tuple[int, int]:
    """``K/N`` -> (K, N); ``setting`` names it in the message (``shard=``, ``--shard``)."""
    m = _SHARD.match(text.strip()) if isinstance(text, str) else None
    k, n = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if not m or not 1 <= k <= n:
        sep = "" if setting.endswith("=") else " "
        raise AtFactoryError(f"{setting}{sep}{text}: accepted: K/N, shard K of N with 1 <= K <= N, such as "
                             f"{setting}{sep}1/3, {setting}{sep}2/3, {setting}{sep}3/3 (rows i with i % N == K-1)")
    return k, n


def ledger_name(shard: Tuple[int, int]) -> str:
    return LEDGER_NAME.format(k=shard[0], n=shard[1])


def shard_rows(rows: int, shard: Tuple[int, int]) -> int:
    """How many of a batch's ``rows`` shard K/N builds."""
    k, n = shard
    return (rows - k) // n + 1 if rows >= k else 0


def remove_other_ledgers(release: str, keep: str) -> None:
    """A new batch replaced ``devices/`` and is about to write its ledger ``keep``: every other
    ledger of the folder (devices.json and its signature, other shards' ledgers) describes
    devices that are gone.  The signature of ``keep`` stays: SCons remakes it when it changed."""
    from .devices import LEDGER

    keep = os.path.abspath(keep)
    whole = os.path.abspath(os.path.join(release, LEDGER))
    stale = glob.glob(os.path.join(glob.escape(release), _LEDGER_GLOB))
    if keep != whole:
        stale += [whole, whole + ".sig"]
    for path in stale:
        if os.path.abspath(path) != keep and os.path.lexists(path):
            os.unlink(path)


# --- a shard's ledger ---------------------------------------------------------------------------

def _file_sha256(path: str) -> str:
    from .manifest import sha256_file

    try:
        return sha256_file(path)
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror or exc})", path) from None


def shard_header(maker, release: str, images: bool) -> dict:
    """The header line of the shard ``maker.shard`` of the batch ``maker`` builds into ``release``."""
    from .devices import _rows
    from .devices_worker import no_devices
    from .manifest import MANIFEST

    k, n = maker.shard
    csv_sha256 = hashlib.sha256()
    rows = sum(1 for _ in _rows(maker.csv_path, csv_sha256))   # one pass: the rows counted, the bytes hashed
    if not rows:
        raise BoardError([no_devices(maker.csv_path)])
    manifest = _file_sha256(os.path.join(release, MANIFEST))
    batch = hashlib.sha256(json.dumps({"csv": csv_sha256.hexdigest(), "manifest": manifest,
                                       "device_images": bool(images), "release": bool(maker.prepared.release)},
                                      sort_keys=True).encode()).hexdigest()
    return {"ledger": KIND, "format": FORMAT, "board": maker.board.id, "module": maker.board.module_name,
            "shard": k, "shards": n, "rows": rows, "csv": os.path.basename(maker.csv_path),
            "manifest": manifest, "batch": batch}


def write_shard_ledger(header: dict, ledgers: Sequence[str], out_path: str) -> None:
    """The shard's ledger from its merged chunk ledgers, owner-only (it holds key files' digests)."""
    from .devices_worker import merged_entries
    from .fsutil import atomic_open

    with atomic_open(out_path, secret=True, text=True) as out:
        out.write(json.dumps(header, sort_keys=True) + "\n")
        for entry in merged_entries(ledgers):
            doc = {"device_id": entry["device_id"], "line": entry["line"], "outputs": entry["outputs"],
                   "digests": {name: [digest[:32], cell] for name, (digest, cell) in entry["digests"].items()}}
            out.write(json.dumps(doc, sort_keys=True) + "\n")


# --- reading shard ledgers back -----------------------------------------------------------------

_ACCEPTED = "accepted: the devices.shard-K-of-N.json a build with shard=K/N wrote, unchanged"
_HEADER_KEYS = {"ledger": str, "format": int, "board": str, "module": str, "shard": int, "shards": int, "rows": int,
                "csv": str, "manifest": str, "batch": str}


class Shard(NamedTuple):
    path: str
    header: dict


def _line_problem(path: str, number: int, why: str) -> Problem:
    return Problem(path, f"line {number}", f"not a shard ledger line atfactory wrote ({why}); {_ACCEPTED}")


def read_header(path: str) -> Shard:
    """The header of a shard ledger; BoardError naming the file when it is none."""
    from .fsutil import check_regular_file

    try:
        check_regular_file(path, "a shard ledger")
        with open(path, "rb") as f:
            first = f.readline(1 << 16)   # a header is a few hundred bytes
    except InputError as err:
        raise BoardError([Problem(path, "", err.message)]) from None
    except OSError as exc:
        raise BoardError([Problem(path, "", f"cannot be read ({exc.strerror or exc})")]) from None
    try:
        header = json.loads(first.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        header = None
    if not isinstance(header, dict) or header.get("ledger") != KIND:
        raise BoardError([Problem(path, "line 1", "not a shard ledger (no shard header; a devices.json is the "
                                                  f"ledger of a whole batch, merged already); {_ACCEPTED}")])
    for key, kind in _HEADER_KEYS.items():
        value = header.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise BoardError([_line_problem(path, 1, f"the header's {key} is {json.dumps(value)}")])
    if header["format"] != FORMAT:
        raise BoardError([Problem(path, "line 1, format", f"a shard ledger of format {header['format']}; this "
                                                          f"atfactory reads format {FORMAT}", header["format"])])
    if not 1 <= header["shard"] <= header["shards"] or header["rows"] < 0:
        shown = f"shard {header['shard']}/{header['shards']} of {header['rows']} rows"
        raise BoardError([_line_problem(path, 1, shown)])
    return Shard(path, header)


def _check_entry(doc) -> str:
    """Why ``doc`` is not a device line of a shard ledger; "" when it is one."""
    from .devices import DEVICE_ID
    from .fsutil import relative_name_problem

    if not isinstance(doc, dict) or set(doc) != {"device_id", "line", "outputs", "digests"}:
        return "expected device_id, line, outputs and digests"
    if not isinstance(doc["device_id"], str) or not DEVICE_ID.match(doc["device_id"]):
        return f"device_id {json.dumps(doc['device_id'])}"
    if not isinstance(doc["line"], int) or isinstance(doc["line"], bool) or doc["line"] < 2:
        return f"line {json.dumps(doc['line'])}"
    outputs, digests = doc["outputs"], doc["digests"]
    if not isinstance(outputs, dict) or not outputs or not isinstance(digests, dict):
        return "outputs or digests is not a table"
    for rel, digest in outputs.items():
        if relative_name_problem(rel) or not (isinstance(digest, str) and len(digest) == 64 and _HEX.match(digest)):
            return f"output {json.dumps(rel)}"
    for name, pair in digests.items():
        if not (isinstance(name, str) and isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)
                and len(pair[0]) == 32 and _HEX.match(pair[0]) and isinstance(pair[1], str)):
            return f"digest of {json.dumps(name)}"
    return ""


def _device_lines(shard: Shard, read: Dict[str, int]) -> Iterator[dict]:
    """The device lines of a shard ledger, each checked; when the file ends, ``read[path]`` is
    how many there were.  BoardError names a line that is not one."""
    path = shard.path
    last = 1
    n = 0
    with open(path, "rb") as f:
        f.readline()   # the header, read already
        for number, raw in enumerate(f, 2):
            try:
                doc = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise BoardError([_line_problem(path, number, "not JSON")]) from None
            why = _check_entry(doc)
            if not why and doc["line"] <= last:
                why = f"CSV line {doc['line']} after line {last}"
            if why:
                raise BoardError([_line_problem(path, number, why)])
            last = doc["line"]
            n += 1
            yield doc
    read[path] = n


def check_shards(shards: Sequence[Shard], out_path: str) -> List[Problem]:
    """Whether ``shards`` are every shard of one batch, each once (headers only)."""
    from .manifest import MANIFEST

    problems: List[Problem] = []
    first = shards[0]
    base = first.header
    for shard in shards[1:]:
        h = shard.header
        for key, noun, why in (("board", "board", ""), ("module", "module", ""), ("shards", "number of shards", ""),
                               ("batch", "batch", ": built from another CSV, board build or device options")):
            if h[key] != base[key]:
                problems.append(Problem(shard.path, key, f"not the {noun} of {display_path(first.path)} "
                                        f"({format_value(base[key])}){why}; accepted: the shards of one batch, a "
                                        "build each of shard=1/N ... N/N of the same devices CSV and board", h[key]))
                break
        else:
            if h["rows"] != base["rows"]:   # the same batch digest: the same CSV
                problems.append(_line_problem(shard.path, 1, f"{h['rows']} rows, {display_path(first.path)} says "
                                                             f"{base['rows']} of the same CSV"))
    if problems:
        return problems
    n = base["shards"]
    seen: Dict[int, str] = {}
    for shard in shards:
        k = shard.header["shard"]
        if k in seen:
            problems.append(Problem(shard.path, "shard", f"given twice (also {display_path(seen[k])}); accepted: "
                                                         "each shard once", f"{k}/{n}"))
        else:
            seen[k] = shard.path
    missing = [f"{k}/{n}" for k in range(1, n + 1) if k not in seen]
    if missing:
        problems.append(Problem(None, "shards", f"{', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''} "
                                f"missing ({len(missing)} of {n}): accepted: the ledgers of every shard 1/{n} ... "
                                f"{n}/{n} of the batch, each once"))
    manifest = os.path.join(os.path.dirname(os.path.abspath(out_path)), MANIFEST)
    if os.path.isfile(manifest) and _file_sha256(manifest) != base["manifest"]:
        problems.append(Problem(manifest, "", "another board build than the one the shards were built with (its "
                                "SHA-256 differs from theirs): accepted: the release folder of the same board, "
                                "firmware, plugins and atfactory as the shards"))
    return problems


class _Board(NamedTuple):   # what LedgerWriter reads of a board
    id: str
    module_name: str


def merge_ledgers(paths: Sequence[str], out_path: str, sign_key: Optional[str] = None) -> Tuple[dict, int]:
    """Check the shard ledgers ``paths`` and write the batch's devices.json at ``out_path``
    (atomically), and ``out_path + ".sig"`` with ``sign_key``; return (header, devices).
    BoardError with every problem, and nothing written, when they are not one whole batch."""
    from .fsutil import missing_folders, remove_empty_folders, write_atomic
    from .manifest import load_signing_key, sign_manifest

    if sign_key:
        load_signing_key(sign_key, "--sign-key")   # a bad key stops the merge before anything is written
    problems: List[Problem] = []
    shards: List[Shard] = []
    for path in paths:
        try:
            shards.append(read_header(path))
        except BoardError as err:
            problems += err.problems
    if problems:
        raise BoardError(problems)
    problems = check_shards(shards, out_path)
    if problems:
        raise BoardError(problems)
    header = shards[0].header
    # devices.json is written during the check, one pass over the ledgers, to a temporary that
    # takes its place only when nothing is wrong (and then no folder made for it is left either)
    made = missing_folders(os.path.dirname(os.path.abspath(out_path)))
    try:
        rows = _merge_into(out_path, header, shards)
    except BaseException:
        remove_empty_folders(made)
        raise
    if sign_key:
        from .fsutil import read_input

        write_atomic(out_path + ".sig", sign_manifest(read_input(out_path), sign_key))
    return header, rows


def _merge_into(out_path: str, header: dict, shards: Sequence[Shard]) -> int:
    """devices.json of the shards, checked as a whole while it is written; the number of devices."""
    from .devices_worker import LedgerWriter, check_batch
    from .fsutil import atomic_open

    read: Dict[str, int] = {}
    with atomic_open(out_path, text=True) as out:
        ledger = LedgerWriter(out, _Board(header["board"], header["module"]))
        rows, problems = check_batch(header["csv"], [functools.partial(_device_lines, s, read) for s in shards],
                                     each=ledger.add)
        if problems:
            raise BoardError.first_of(problems)
        for shard in shards:
            expected = shard_rows(header["rows"], (shard.header["shard"], header["shards"]))
            count = read[shard.path]
            if count != expected:
                problems.append(Problem(shard.path, "", f"{count} device{'s' if count != 1 else ''}; shard "
                                        f"{shard.header['shard']}/{header['shards']} of a batch of {header['rows']} "
                                        f"rows has {expected}: the ledger is incomplete or was altered; {_ACCEPTED}"))
        if problems:
            raise BoardError(problems)
        if ledger.count != rows:   # never a ledger short of a device
            raise AtFactoryError(f"the devices ledger got {ledger.count} of {rows} rows; nothing was written")
        ledger.end()
    return rows
