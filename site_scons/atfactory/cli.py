"""``atfactory``: read any AT binary back — inspect, verify, extract, diff — and, in a project
folder (atfactory.toml), build its boards and write new ones: build, new.

Exit status: 0 success (verify: the image matches; diff: no differences), 1 verify found
differences or diff found some, 2 bad input (one line on stderr, no traceback) and anything
unexpected: a bug is reported in one line with a hint, never with status 1, which means
"differs".
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from . import __version__
from .errors import AtFactoryError, BoardError, ExtractError


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
    e = sub.add_parser("extract", help="write a board file and its sources from an image or release folder")
    e.add_argument("path")
    e.add_argument("-o", "--output", required=True, help="folder for <ID>.toml and its sources")
    d = sub.add_parser("diff", help="what differs between two images or folders")
    d.add_argument("a")
    d.add_argument("b")
    _add_project_commands(sub)
    return p


# Every character an image or file can hold may reach the terminal: control characters (ESC
# sequences that move the cursor or retitle the window, carriage returns that overwrite a line)
# are shown escaped.  Newlines and tabs of atfactory's own output pass.
_TERMINAL_SAFE = {c: f"\\u{c:04X}" for c in list(range(0x20)) + list(range(0x7F, 0xA0)) if c not in (0x09, 0x0A)}


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
                "build": cmd_build, "new": cmd_new}[args.command](args)
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
    from .prepare import prepare_board
    from .readback import read_flash
    from .verify import verify_flash

    if not args.board and not args.pubkey:
        raise AtFactoryError("verify needs --board ID|FILE, --pubkey KEY, or both")
    if args.pubkey:
        from .manifest import check_release
        folder, problems, manifest = check_release(args.path, args.pubkey)
        print(f"signature and hashes of {folder}:")
        for line in problems:
            print(f"  DIFFERS  {line}")
        if problems:
            print(f"result: {len(problems)} difference(s); the release cannot be trusted")
            return 1
        print(f"  ok       manifest.json signed by this key; {len(manifest['outputs'])} outputs match their SHA-256")
        if manifest.get("device_outputs_checked"):
            print(f"  ok       devices.json signed by this key; {manifest['device_outputs_checked']} device outputs "
                  "match their SHA-256")
        print("  ok       no file in the folder outside the signed lists")
        if not args.board:
            print("result: matches the signed manifest")
            return 0
    host, registry = _host_and_registry(args.plugins)
    prepared = prepare_board(args.board, registry, host, extra_tables=host.board_tables())
    data, doc = read_flash(args.path, host.formats())
    report = verify_flash(data, doc, prepared, formats=host.formats())
    print(f"verify {args.path} against board {prepared.board.id}:")
    for line in report.matches:
        print(f"  ok       {line}")
    for line in report.notes:
        print(f"  note     {line}")
    for line in report.warnings:
        print(f"  warning  {line}")
    for line in report.differences:
        print(f"  DIFFERS  {line}")
    print("result: " + ("matches the board" if report.ok else f"{len(report.differences)} difference(s)"))
    return 0 if report.ok else 1


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
    if isinstance(a, list) and isinstance(b, list):
        a, b = _keyed(a), _keyed(b)
    if isinstance(a, dict) and isinstance(b, dict):
        lines = []
        for key in list(a) + [k for k in b if k not in a]:
            if (key == "path" and not path) or key == "warnings":   # where the inputs are; said on stderr
                continue
            sub = f"{path}[{key}]" if isinstance(key, int) or " " in str(key) or path.endswith("partitions") \
                else (f"{path}.{key}" if path else str(key))
            if key not in b:
                lines.append(f"{sub}: only in the first")
            elif key not in a:
                lines.append(f"{sub}: only in the second")
            else:
                lines += diff_documents(a[key], b[key], sub)
        return lines
    if a != b:
        return [f"{path}: {_show(a)} -> {_show(b)}"]
    return []


def cmd_diff(args) -> int:
    """Field by field where the documents differ, then every region whose bytes differ: exit 0
    only when every byte is equal."""
    from .compare import byte_differences, flash_regions, whole_file
    from .readback import read_any

    formats = _formats(args)
    (a, doc_a), (b, doc_b) = (read_any(path, formats, invalid_ok=True) for path in (args.a, args.b))
    for doc in (doc_a, doc_b):
        _say_warnings(doc)
    lines = diff_documents(doc_a, doc_b)
    regions = [flash_regions(d) if d["kind"] in ("image", "release") else whole_file(d, len(data))
               for d, data in ((doc_a, a), (doc_b, b))]
    lines += byte_differences(a, regions[0], b, regions[1])
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
    b.add_argument("--sign-key", metavar="KEY", help="Ed25519 private key: sign every manifest.json")
    b.add_argument("--sandbox", action="store_true", help="refuse paths a board names outside its own folder")
    b.add_argument("--clean", action="store_true", help="remove the outputs of these boards instead")
    b.add_argument("--verbose", action="store_true", help="show the inputs of every target")
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
    command = [sys.executable, "-m", "SCons", "-Q", "-f", PROJECT_SCONSTRUCT,
               f"-j{args.jobs}", f"project={found}"]
    if boards:
        command.append("board=" + ",".join(boards))
    for name, value in (("firmware", args.firmware), ("devices", args.devices), ("sign_key", args.sign_key)):
        if value:
            command.append(f"{name}={absolute(value)}")
    command += [f"{name}=yes" for name, on in (("sandbox", args.sandbox), ("device_images", args.device_images),
                                                ("VERBOSE", args.verbose)) if on]
    if args.clean:
        command.append("-c")
    environ = dict(os.environ)   # SCons imports this atfactory, wherever it is installed or checked out
    site = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    environ["PYTHONPATH"] = site + (os.pathsep + environ["PYTHONPATH"] if environ.get("PYTHONPATH") else "")
    sys.stdout.flush()
    return 0 if subprocess.run(command, cwd=os.path.dirname(found), env=environ).returncode == 0 else 2


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
