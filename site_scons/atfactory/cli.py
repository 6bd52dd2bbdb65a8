"""``atfactory``: read any AT binary back — inspect, verify, extract, diff — flash a release, and,
in a project folder (atfactory.toml), build its boards and write new ones: build, new; and merge the
ledgers of a devices batch built in shards: merge-ledgers.

Exit status: 0 success (verify: the image matches; diff: no differences), 1 verify found
differences or diff found some, 2 bad input (one line on stderr, no traceback), esptool failing
to flash, and anything unexpected: a bug is reported in one line with a hint, never with
status 1, which means "differs".
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from . import __version__
from .errors import CONTROL_ESCAPES, AtFactoryError, BoardError, ExtractError


def _print_err(message: str) -> None:
    sys.stderr.write(f"atfactory: error: {message}\n")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line and exit 2, like every other bad input
        self.print_usage(sys.stderr)
        _print_err(message)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="atfactory", description="Read ESP-AT binaries back: inspect, verify, extract, diff.")
    p.add_argument("--version", action="version", version=f"atfactory {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    i = sub.add_parser("inspect", help="decode an image, release folder or AT partition")
    i.add_argument("path")
    i.add_argument("--json", action="store_true", help="print one JSON document")
    i.add_argument("--map", metavar="SVG", help="also draw a flash map of an image into this SVG file")
    v = sub.add_parser("verify", help="compare an image or release folder with what its board builds")
    v.add_argument("path")
    v.add_argument("--board", help="board id or .toml file (required unless --pubkey is given)")
    v.add_argument("--pubkey", help="Ed25519 public key: check manifest.json.sig and every hash first")
    v.add_argument("--plugins", default="", help="more plugin folders, comma-separated")
    v.add_argument("--device", metavar="CSV:ID", help="check one device's image: the board's partitions with the "
                                                      "values of this row of a devices CSV")
    v.add_argument("--json", action="store_true", help="print one JSON document (docs/json.md)")
    e = sub.add_parser("extract", help="write a board file and its sources from an image or release folder")
    e.add_argument("path")
    e.add_argument("-o", "--output", required=True, help="folder for <ID>.toml and its sources")
    d = sub.add_parser("diff", help="what differs between two images or folders")
    d.add_argument("a")
    d.add_argument("b")
    d.add_argument("--json", action="store_true", help="print one JSON document (docs/json.md)")
    _add_flash_parser(sub)
    _add_project_commands(sub)
    return p


def _add_flash_parser(sub) -> None:
    from .flashing import DEFAULT_BAUD

    f = sub.add_parser("flash", help="write a release folder or factory image to a device with esptool")
    f.add_argument("path", help="a release folder (as its download.config says), a device's folder, or a factory image")
    f.add_argument("--port", required=True, help="the device's serial port: /dev/ttyUSB0, COM3, ...")
    f.add_argument("--baud", type=_baud, default=DEFAULT_BAUD, help=f"baud rate while writing (default {DEFAULT_BAUD})")
    f.add_argument("--erase", action="store_true", help="erase the whole flash first (esptool write-flash --erase-all)")
    f.add_argument("--dry-run", action="store_true", help="print the esptool command line instead of running it")


def _baud(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer such as 115200 or 460800")
    return value


# Every character an image or file can hold may reach the terminal: control characters (ESC
# sequences that move the cursor or retitle the window, carriage returns that overwrite a line)
# are shown escaped.  Newlines and tabs of atfactory's own output pass.
_TERMINAL_SAFE = {c: e for c, e in CONTROL_ESCAPES.items() if c not in (0x09, 0x0A)}


class _Printable:
    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(text.translate(_TERMINAL_SAFE))

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: Optional[List[str]] = None) -> int:
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Printable(out), _Printable(err)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = out, err


def _main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"inspect": cmd_inspect, "verify": cmd_verify, "extract": cmd_extract, "diff": cmd_diff,
                "build": cmd_build, "new": cmd_new, "flash": cmd_flash,
                "merge-ledgers": cmd_merge_ledgers}[args.command](args)
    except BoardError as err:
        for problem in err.problems:
            _print_err(str(problem))
        return 2
    except AtFactoryError as err:
        _print_err(str(err))
        return 2
    except BrokenPipeError:
        return 0
    except OSError as exc:   # the disk said no: full, read-only, not a folder, no permission
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _print_err(f"{where}{exc.strerror or exc}; nothing was left half-written")
        return 2
    except KeyboardInterrupt:
        _print_err("interrupted")
        return 2
    except Exception as exc:  # a bug: one line and status 2, never 1 ("differs")
        where = _innermost_frame(exc)
        _print_err(f"internal error: {type(exc).__name__}: {_one_line(str(exc))}{where}; this is a bug in atfactory "
                   "or a plugin: please report it with the command that caused it")
        return 2


def _one_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:200]


def _innermost_frame(exc: BaseException) -> str:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" (at {os.path.basename(last.filename)}:{last.lineno})"


# --- inspect ----------------------------------------------------------------------------------

def cmd_inspect(args) -> int:
    from .readback import read_path

    formats = _formats(args)
    doc = read_path(args.path, formats)
    _say_warnings(doc)
    if args.map:
        from .mapping import write_map_for_document
        write_map_for_document(doc, args.map, formats)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=False))
    else:
        print(format_document(doc, formats))
    return 0


def _say_warnings(doc: dict) -> None:
    """What reading the input found odd but harmless (a download.config entry listed twice)."""
    for line in doc.get("warnings", []):
        sys.stderr.write(f"atfactory: warning: {line}\n")


def _formats(args):
    """The format registry of this command: the stock formats and every plugin's."""
    host, _registry = _host_and_registry(getattr(args, "plugins", ""))
    return host.formats()


def _hex(n) -> str:
    return f"0x{n:x}" if isinstance(n, int) else str(n)


def format_document(doc: dict, formats=None) -> str:
    from .formats import stock_registry

    formats = formats or stock_registry()
    out: List[str] = []
    kind = doc["kind"]
    out.append(f"{doc.get('path', '')}: {kind}" + (f", {doc['size']} bytes" if "size" in doc else ""))
    if doc.get("chip"):
        out.append(f"chip: {doc['chip']}")
    elif doc.get("image_chip_id") is not None:
        out.append(f"chip: unknown (image chip id 0x{doc['image_chip_id']:x})")
    if doc.get("flash"):
        f = doc["flash"]
        said_by = {"image": " (as the bootloader header says)", "release": " (as download.config says)"}.get(kind, "")
        out.append(f"flash{said_by}: mode {f.get('mode')}, freq {f.get('freq')}, size {f.get('size')}")
    out += [f"note: {note}" for note in doc.get("notes", [])]
    if doc.get("bootloader"):
        b = doc["bootloader"]
        out.append(f"bootloader at {_hex(b['offset'])}: {b.get('length', '?')} bytes, header flash "
                   f"{b['flash']['mode']} {b['flash']['freq']} {b['flash']['size']}")
    if doc.get("application"):
        a = doc["application"]
        out.append(f"application in {a['partition']} at {_hex(a['offset'])}: " + (
            f"{a['length']} bytes, SHA-256 digest {a['digest']}" if "length" in a else a["error"]))
    if doc["kind"] == "image":
        from .readback import document_notes
        out += [f"note: {note}" for note in document_notes(doc)]
    for f in doc.get("files", []):
        out.append(f"  file {_hex(f['offset']):>9}  {f['path']} ({f['length']} bytes)")
    table = doc.get("partition_table") or {}
    if table.get("error"):
        out.append(f"partition table at {_hex(table['offset'])}: {table['error']}")
    elif table:
        out.append(f"partition table at {_hex(table['offset'])} (MD5 {'on' if table['md5'] else 'off'}):")
        out += [_entry_line(e) for e in doc["partition_table"]["partitions"]]
    if kind == "partition_table":
        out.append(f"partition table (MD5 {'on' if doc['md5'] else 'off'}):")
        out += [_entry_line(e) for e in doc["partitions"]]
    if doc.get("at_customize"):
        at = doc["at_customize"]
        out.append(f"at_customize at {_hex(at['offset'])}" + (f", size {_hex(at['size'])}" if "size" in at else "")
                   + (f": {at['error']}" if at.get("error") else ":"))
        for part in at["partitions"]:
            out.append(_entry_line(part))
            lines = _image_end_lines(part, formats) if "image_end" in part else _content_lines(part["content"], formats)
            out += ["      " + line for line in lines]
    if kind in formats:   # a single partition
        out += _content_lines(doc, formats)
    return "\n".join(out)


def _entry_line(e: dict) -> str:
    from .partition_table import subtype_name, type_name
    return (f"  {e['name']:<16} type {type_name(e['type']):<5} subtype {subtype_name(e['type'], e['subtype']):<8} "
            f"offset {_hex(e['offset']):>9}  size {_hex(e['size'])}")


def _image_end_lines(part: dict, formats) -> List[str]:
    """A partition that an image cut short does not wholly hold, and where the image ends: its
    "(erased)" is not what the image says."""
    end = part["image_end"]
    if end <= part["offset"]:
        return [f"(not in the image, which ends at {_hex(end)}: read as erased)"]
    return [f"(the image ends at {_hex(end)}, inside this partition: the rest is read as erased)"] \
        + _content_lines(part["content"], formats)


def _content_lines(c: dict, formats) -> List[str]:
    kind = c.get("kind")
    if kind == "erased":
        return ["(erased)"]
    if kind == "invalid":
        return [f"(not a valid {c.get('expected', '')}: {c['error']})"]
    fmt = formats.get(kind)
    return fmt.describe(c) if fmt is not None else []


# --- verify -----------------------------------------------------------------------------------

def _host_and_registry(extra_dirs: str):
    """The plugins and boards of a command: the stock ones, those of the atfactory project this
    runs in (atfactory.toml here or in a folder above), and the folders of --plugins."""
    from .plugins import make_session
    from .project import find_project, load_project

    found = find_project(os.getcwd())
    project = load_project(found) if found else None
    return make_session((list(project.plugin_dirs) if project else []) + [d for d in extra_dirs.split(",") if d.strip()],
                        board_dirs=project.board_dirs if project else ())


def cmd_verify(args) -> int:
    result = verify_result(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_verify(result)
    return 0 if result["ok"] else 1


def verify_result(args) -> dict:
    """What ``verify`` found, as the JSON document ``--json`` prints (docs/json.md)."""
    from .prepare import prepare_board
    from .readback import read_flash
    from .verify import verify_flash

    if not args.board and not args.pubkey:
        raise AtFactoryError("verify needs --board ID|FILE, --pubkey KEY, or both")
    if args.device and not args.board:
        raise AtFactoryError(f"--device {args.device}: needs --board, the board the devices CSV was built for")
    result = {"command": "verify", "path": args.path, "board": None, "device": None, "signature": None,
              "matches": [], "notes": [], "warnings": [], "differences": [], "ok": True}
    if args.pubkey:
        from .manifest import check_release
        folder, problems, manifest = check_release(args.path, args.pubkey)
        result["signature"] = {"folder": folder, "ok": not problems, "differences": problems,
                               "outputs": len(manifest.get("outputs", [])),
                               "device_outputs": manifest.get("device_outputs_checked", 0)}
        if problems or not args.board:
            result["ok"] = not problems
            return result
    host, registry = _host_and_registry(args.plugins)
    prepared = prepare_board(args.board, registry, host, extra_tables=host.board_tables())
    device = _device_outputs(args.device, prepared, host) if args.device else None
    data, doc = read_flash(args.path, host.formats())
    report = verify_flash(data, doc, prepared, formats=host.formats(), device=device)
    result.update(board=prepared.board.id, matches=report.matches, notes=report.notes, warnings=report.warnings,
                  differences=report.differences, ok=report.ok)
    if device is not None:
        result["device"] = {"csv": args.device.rpartition(":")[0], "id": device[0], "line": device[2],
                            "partitions": sorted(device[1])}
    return result


def _device_outputs(spec: str, prepared, host):
    """``CSV:DEVICE_ID`` -> (device id, {release path: bytes} of the partitions its row changes,
    CSV line), made by DeviceMaker as the devices build makes them."""
    from .devices import DeviceMaker

    csv_path, _, device_id = spec.rpartition(":")
    if not csv_path or not device_id:
        raise AtFactoryError(f"--device {spec}: expected CSV:DEVICE_ID, such as devices.csv:A0001")
    maker = DeviceMaker(prepared, csv_path, host.board_tables(), formats=host.formats())
    row = maker.row_of(device_id)
    made_id, files, _digests = maker.make(row)
    return made_id, {rel: data for rel, (data, _secret) in files.items()}, row.line


def _print_verify(result: dict) -> None:
    signature = result["signature"]
    if signature is not None:
        print(f"signature and hashes of {signature['folder']}:")
        for line in signature["differences"]:
            print(f"  DIFFERS  {line}")
        if signature["differences"]:
            print(f"result: {len(signature['differences'])} difference(s); the release cannot be trusted")
            return
        print(f"  ok       manifest.json signed by this key; {signature['outputs']} outputs match their SHA-256")
        if signature["device_outputs"]:
            print(f"  ok       devices.json signed by this key; {signature['device_outputs']} device outputs "
                  "match their SHA-256")
        print("  ok       no file in the folder outside the signed lists")
        if result["board"] is None:
            print("result: matches the signed manifest")
            return
    device = result["device"]
    which = f", device {device['id']} ({device['csv']} line {device['line']})" if device else ""
    print(f"verify {result['path']} against board {result['board']}{which}:")
    for word, key in (("ok", "matches"), ("note", "notes"), ("warning", "warnings"), ("DIFFERS", "differences")):
        for line in result[key]:
            print(f"  {word:<8} {line}")
    print("result: " + ("matches the board" if result["ok"] else f"{len(result['differences'])} difference(s)"))


# --- extract ----------------------------------------------------------------------------------

def cmd_extract(args) -> int:
    from .extract import extract_into
    from .readback import read_flash

    formats = _formats(args)
    data, doc = read_flash(args.path, formats)
    _say_warnings(doc)
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise ExtractError(f"-o {args.output}: is a file; expected a folder (made if it does not exist)")
    board_path, notes = extract_into(data, doc, args.output, formats)
    print(f"wrote {board_path}")
    for note in notes:
        print(f"note: {note}")
    return 0


# --- flash ------------------------------------------------------------------------------------

def cmd_flash(args) -> int:
    """Check everything first, then write with esptool (or, with --dry-run, print its command line)."""
    from .flashing import command_line, esptool_args, plan_flash, run_esptool

    if not args.port.strip():
        raise AtFactoryError("--port '': expected a serial port such as /dev/ttyUSB0 or COM3")
    argv = esptool_args(plan_flash(args.path, _formats(args)), args.port, args.baud, args.erase)
    if args.dry_run:
        print(command_line(argv))
        return 0
    run_esptool(argv)
    return 0


# --- diff -------------------------------------------------------------------------------------

def _keyed(items: list) -> dict:
    """Lists of named things (partitions, PKI items, GATT rows) are compared by name, not position."""
    out = {}
    for n, v in enumerate(items):
        if isinstance(v, dict) and "name" in v:
            out[v["name"]] = v
        elif isinstance(v, dict) and "id" in v and "type" in v:
            out[f"{v.get('type_name', v['type'])} {v['id']}"] = v
        elif isinstance(v, dict) and "index" in v:
            out[f"index {v['index']}"] = v
        else:
            out[n] = v
    return out


def diff_documents(a, b, path: str = "") -> List[str]:
    """One line per difference, partition by partition and field by field."""
    return [_field_line(d) for d in field_differences(a, b, path)]


def field_differences(a, b, path: str = "") -> List[dict]:
    """One record per difference of two decoded documents: ``field`` (its dotted path), ``first``
    and ``second`` (the values), or ``only_in`` ("first", "second") and that side's value."""
    if isinstance(a, list) and isinstance(b, list):
        a, b = _keyed(a), _keyed(b)
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in list(a) + [k for k in b if k not in a]:
            if (key == "path" and not path) or key == "warnings":   # where the inputs are; said on stderr
                continue
            sub = f"{path}[{key}]" if isinstance(key, int) or " " in str(key) or path.endswith("partitions") \
                else (f"{path}.{key}" if path else str(key))
            if key not in b:
                found.append({"field": sub, "only_in": "first", "first": a[key]})
            elif key not in a:
                found.append({"field": sub, "only_in": "second", "second": b[key]})
            else:
                found += field_differences(a[key], b[key], sub)
        return found
    if a != b:
        return [{"field": path, "first": a, "second": b}]
    return []


def _field_line(d: dict) -> str:
    if "only_in" in d:
        return f"{d['field']}: only in the {d['only_in']}"
    return f"{d['field']}: {_show(d['first'])} -> {_show(d['second'])}"


def cmd_diff(args) -> int:
    """Field by field where the documents differ, then every region whose bytes differ: exit 0
    only when every byte is equal."""
    from .compare import flash_regions, region_differences, region_line, whole_file
    from .readback import read_any

    formats = _formats(args)
    (a, doc_a), (b, doc_b) = (read_any(path, formats, invalid_ok=True) for path in (args.a, args.b))
    for doc in (doc_a, doc_b):
        _say_warnings(doc)
    fields = field_differences(doc_a, doc_b)
    spans = [flash_regions(d) if d["kind"] in ("image", "release") else whole_file(d, len(data))
             for d, data in ((doc_a, a), (doc_b, b))]
    regions = region_differences(a, spans[0], b, spans[1])
    if args.json:
        print(json.dumps({"command": "diff", "first": args.a, "second": args.b, "equal": not (fields or regions),
                          "fields": fields, "regions": regions}, indent=2))
        return 1 if fields or regions else 0
    lines = [_field_line(d) for d in fields] + [region_line(r) for r in regions]
    for line in lines:
        print(line)
    if not lines:
        print("no differences")
    return 1 if lines else 0


def _show(v) -> str:
    return _hex(v) if isinstance(v, int) and not isinstance(v, bool) and v > 255 else repr(v) if isinstance(v, str) else str(v)


# --- build, new: an atfactory project ---------------------------------------------------------

def _add_project_commands(sub) -> None:
    b = sub.add_parser("build", help="build boards of the atfactory project this runs in (atfactory.toml)")
    b.add_argument("boards", nargs="*", metavar="BOARD",
                   help="board ids or .toml paths, or 'all' (the project's own boards); default: the project's "
                        "default_board, or all of its own boards")
    b.add_argument("-j", "--jobs", type=_jobs, default=1, metavar="N", help="build N targets (device chunks) at once")
    b.add_argument("--firmware", help="ESP-AT release folder or factory image for every board built")
    b.add_argument("--devices", metavar="CSV", help="per-device values: one set of AT partitions per row")
    b.add_argument("--device-images", action="store_true", help="with --devices: a full factory image per device")
    b.add_argument("--shard", metavar="K/N", help="with --devices: build shard K of N of its rows only (rows i with "
                                                  "i %% N == K-1); atfactory merge-ledgers merges the shards' ledgers")
    b.add_argument("--sign-key", metavar="KEY", help="Ed25519 private key: sign every manifest.json")
    b.add_argument("--sandbox", action="store_true", help="refuse paths a board names outside its own folder")
    b.add_argument("--release", action="store_true",
                   help="production build: refuse atfactory's development certificates and keys, expired certificates")
    b.add_argument("--clean", action="store_true", help="remove the outputs of these boards instead")
    b.add_argument("--verbose", action="store_true", help="show the inputs of every target")
    m = sub.add_parser("merge-ledgers", help="merge the ledgers of a sharded devices batch into its devices.json",
                       description="Check that the shard ledgers are every shard of one devices batch, each once, and "
                                   "make the checks of the whole batch (device ids, certificates and keys used twice); "
                                   "then write OUT, byte for byte the devices.json of the unsplit batch.")
    m.add_argument("ledgers", nargs="+", metavar="SHARD_LEDGER", help="devices.shard-K-of-N.json of each shard")
    m.add_argument("-o", "--output", required=True, metavar="OUT", help="the devices.json to write (atomically)")
    m.add_argument("--sign-key", metavar="KEY", help="Ed25519 private key: also write OUT.sig, as sign_key= signs "
                                                     "devices.json")
    n = sub.add_parser("new", help="write a board file of your own that extends a stock board")
    n.add_argument("id", metavar="ID", help="the new board's id: its file name and module name")
    n.add_argument("--extends", required=True, metavar="BASE", help="the id of the board it extends (WROOM-32)")
    n.add_argument("--dir", help="folder of the board file (default: the project's boards folder, or boards/)")


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"-j {text!r}: expected a number of jobs, 1 or more")
    return value


def cmd_build(args) -> int:
    """The project's SCons build, run as python -m SCons with the SConstruct atfactory ships:
    incremental, into the project's build folder.  SCons's own status is passed on as 0 or 2."""
    import subprocess

    from .project import PROJECT_FILE, find_project, load_project
    from .site_tools import PROJECT_SCONSTRUCT

    here = os.getcwd()
    found = find_project(here)
    if found is None:
        raise AtFactoryError(f"no {PROJECT_FILE} in {here} or a folder above it: atfactory build runs in a project "
                             "folder; `atfactory new ID --extends WROOM-32` makes one")
    load_project(found)   # its problems now, one line each, before SCons starts

    def absolute(path: str) -> str:
        return os.path.abspath(os.path.join(here, os.path.expanduser(path)))

    boards = []
    for ref in args.boards:
        if "," in ref:
            raise AtFactoryError(f"BOARD = {ref!r}: one board per argument; accepted: board ids and .toml paths "
                                 "without ',', or 'all'")
        boards.append(absolute(ref) if ref.endswith(".toml") or os.sep in ref or "/" in ref else ref)
    if args.device_images and not args.devices:
        raise AtFactoryError("--device-images makes a factory image per device of --devices CSV; give --devices")
    if args.shard is not None:
        from .shards import parse_shard

        parse_shard(args.shard, "--shard")
        if not args.devices:
            raise AtFactoryError(f"--shard {args.shard} builds one shard of the rows of --devices CSV; give --devices")
    command = [sys.executable, "-m", "SCons", "-Q", "-f", PROJECT_SCONSTRUCT,
               f"-j{args.jobs}", f"project={found}"]
    if boards:
        command.append("board=" + ",".join(boards))
    for name, value in (("firmware", args.firmware), ("devices", args.devices), ("sign_key", args.sign_key)):
        if value:
            command.append(f"{name}={absolute(value)}")
    if args.shard is not None:
        command.append(f"shard={args.shard}")
    command += [f"{name}=yes" for name, on in (("sandbox", args.sandbox), ("release", args.release),
                                                ("device_images", args.device_images), ("VERBOSE", args.verbose)) if on]
    if args.clean:
        command.append("-c")
    environ = dict(os.environ)   # SCons imports this atfactory, wherever it is installed or checked out
    site = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environ["PYTHONPATH"] = site + (os.pathsep + environ["PYTHONPATH"] if environ.get("PYTHONPATH") else "")
    sys.stdout.flush()
    return 0 if subprocess.run(command, cwd=os.path.dirname(found), env=environ).returncode == 0 else 2


def cmd_merge_ledgers(args) -> int:
    """The shards' ledgers -> the batch's devices.json (and its signature): atfactory.shards."""
    from .errors import display_path
    from .shards import merge_ledgers

    header, devices = merge_ledgers(args.ledgers, args.output, args.sign_key)
    print(f"wrote {display_path(args.output)}: {devices} devices of board {header['board']} from "
          f"{header['shards']} shard{'s' if header['shards'] > 1 else ''}")
    if args.sign_key:
        print(f"wrote {display_path(args.output + '.sig')}")
    return 0


def cmd_new(args) -> int:
    from .newboard import new_board

    path, project_file, notes = new_board(args.id, args.extends, args.dir, os.getcwd())
    if project_file:
        print(f"wrote {project_file} (a new atfactory project)")
    print(f"wrote {path}: extends {args.extends}; uncomment and set what differs, then: atfactory build {args.id}")
    for note in notes:
        print(f"note: {note}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
