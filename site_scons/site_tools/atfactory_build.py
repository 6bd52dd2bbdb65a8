"""SCons glue for atfactory: one builder per kind of artifact, and the targets of a board.

Everything a target's bytes depend on enters the graph as a ``Value`` node holding sorted
JSON of exactly the board values it reads, plus its real input files; so a change of one pin
rebuilds factory_param and nothing else, and a second run with nothing changed builds
nothing.  The bytes themselves come from ``atfactory.artifacts.render_artifact`` (or, for a
plugin's partition, from the plugin's build function).
"""
from __future__ import annotations

import json
import os
import sys

import SCons.Errors
from SCons.Action import Action
from SCons.Builder import Builder

from atfactory import artifacts as art
from atfactory import content
from atfactory.errors import AtFactoryError, BoardError, display_path
from atfactory.fsutil import write_atomic
from atfactory.manifest import MANIFEST, SIGNATURE, board_inputs, manifest_spec, render_manifest, sign_manifest
from atfactory.merge import MergeError, check_layout
from atfactory.prepare import KIND_PLUGIN, prepare_board

# kind -> (builder name, short label shown for each target)
KINDS = {
    art.KIND_FIRMWARE_COPY: ("AtfFirmwareCopy", "COPY"),
    art.KIND_FIRMWARE_CUT: ("AtfFirmwareCut", "CUT"),
    art.KIND_AT_CUSTOMIZE: ("AtfAtCustomize", "TABLE"),
    content.KIND_FACTORY_PARAM: ("AtfFactoryParam", "PARAM"),
    content.KIND_PKI: ("AtfPki", "PKI"),
    content.KIND_BLE_DATA: ("AtfBleData", "GATT"),
    content.KIND_RAW: ("AtfRawPartition", "RAW"),
    KIND_PLUGIN: ("AtfPluginPartition", "PLUGIN"),
    art.KIND_DOWNLOAD_CONFIG: ("AtfDownloadConfig", "CONFIG"),
    art.KIND_FACTORY_IMAGE: ("AtfFactoryImage", "MERGE"),
    art.KIND_FLASH_MAP: ("AtfFlashMap", "MAP"),
}

# A file of a million typos should not print a million lines.
MAX_PROBLEMS_SHOWN = 100

# (board id, partition) -> (build function, board): plugin partitions are made by plugin code,
# which cannot travel in a Value node; the spec in the Value says which one to call.
_PLUGIN_BUILDERS = {}


def _render(spec, files):
    if spec["kind"] == KIND_PLUGIN:
        s = spec["spec"]
        build, board = _PLUGIN_BUILDERS[(s["board"], s["partition"])]
        try:
            return bytes(build(board, tuple(files)))
        except AtFactoryError:
            raise
        except Exception as exc:
            raise AtFactoryError(f"plugin {s['plugin']}: partition {s['partition']}: build raised "
                                 f"{type(exc).__name__}: {exc}") from exc
    return art.render_artifact(spec["kind"], spec["spec"], files)


def _build(target, source, env):
    spec = json.loads(source[0].read())
    files = [s.abspath for s in source[1:]]
    try:
        data = _render(spec, files)
    except AtFactoryError as err:
        raise SCons.Errors.BuildError(node=target[0], errstr=str(err), exitstatus=2)
    for t in target:
        write_atomic(t.abspath, data, secret=spec.get("secret", False))
    return None


def _make_builder(label):
    def show(target, source, env):
        # Paths as the user sees them from where scons was started (scons -C changes the cwd).
        here = env.GetLaunchDir()
        line = f"{label:<6} {display_path(target[0].abspath, here)}"
        if env.get("VERBOSE"):
            files = ", ".join(display_path(s.abspath, here) for s in source[1:]) or "board values only"
            line += f"  <- {files}"
        return line

    return Builder(action=Action(_build, strfunction=show))


def _value(env, artifact):
    return env.Value(json.dumps({"kind": artifact.kind, "spec": artifact.spec, "secret": artifact.secret},
                                sort_keys=True, separators=(",", ":")))


def _declare(env, out_dir, artifact):
    builder = getattr(env, KINDS[artifact.kind][0])
    targets = [out_dir.File(t) for t in artifact.targets]
    return builder(targets, [_value(env, artifact)] + [env.File(s) for s in artifact.sources])


def declare_board(env, prepared, build_dir, host=None, sign_key=None):
    """Declare every artifact of a prepared board under ``build_dir/<id>``; return its alias."""
    board = prepared.board
    out_dir = env.Dir(os.path.join(build_dir, board.id))
    for name, builder in prepared.plugin_builders.items():
        _PLUGIN_BUILDERS[(board.id, name)] = builder
    nodes, listed = [], []   # listed: (path in the release folder, flash offset) per node
    planned = art.plan_board(board, prepared.firmware)
    for artifact in planned:
        made = _declare(env, out_dir, artifact)
        nodes += made
        listed += [(t, artifact.offset if n == 0 else None) for n, t in enumerate(artifact.targets)]
    if prepared.firmware is not None:
        made = _declare_factory_image(env, out_dir, board, planned, host)
        nodes += made
        listed.append((art.factory_image_path(board), 0))
    manifest = _declare_manifest(env, out_dir, prepared, nodes, listed, host)
    nodes += manifest
    if sign_key:
        nodes += env.AtfSignature(out_dir.File(SIGNATURE), [manifest[0], env.File(sign_key)])
    if host is not None and host.impls("atfactory_post_build"):
        nodes += _declare_post_build(env, out_dir, board, nodes, host)
    return env.Alias(board.id, nodes)


def _declare_manifest(env, out_dir, prepared, nodes, listed, host):
    from atfactory import __version__
    inputs = board_inputs(prepared.board, prepared.firmware)
    spec = manifest_spec(prepared.board, listed, [d for d, _ in inputs], host.versions() if host else {}, __version__)
    value = env.Value(json.dumps(spec, sort_keys=True, separators=(",", ":")))
    return env.AtfManifest(out_dir.File(MANIFEST), [value] + list(nodes) + [env.File(p) for _, p in inputs])


def _build_manifest(target, source, env):
    spec = json.loads(source[0].read())
    write_atomic(target[0].abspath, render_manifest(spec, [s.abspath for s in source[1:]]))


def _build_signature(target, source, env):
    manifest, key = source[0].abspath, source[1].abspath
    try:
        with open(manifest, "rb") as f:
            data = sign_manifest(f.read(), key)
    except AtFactoryError as err:
        raise SCons.Errors.BuildError(node=target[0], errstr=str(err), exitstatus=2)
    write_atomic(target[0].abspath, data)


def _show_one(label):
    return lambda target, source, env: f"{label:<6} {display_path(target[0].abspath, env.GetLaunchDir())}"


def _declare_factory_image(env, out_dir, board, planned, host):
    flashed = [a for a in planned if a.offset is not None]
    images = sorted((a.offset, out_dir.File(a.targets[0]).abspath) for a in flashed)
    lengths = {out_dir.File(a.targets[0]).abspath: a.length for a in flashed}
    secret_paths = {out_dir.File(a.targets[0]).abspath for a in flashed if a.secret}
    if host is not None:
        try:
            host.pre_merge(board, images)
        except AtFactoryError as err:
            raise SCons.Errors.StopError(str(err))
    layout = []
    for offset, path in images:
        length = lengths.get(path)
        if length is None:
            if not os.path.isfile(path):
                raise SCons.Errors.StopError(f"{board.id}: factory image: {display_path(path)} (added by "
                                             "atfactory_pre_merge) does not exist")
            length = os.path.getsize(path)
        layout.append((offset, display_path(path, env.GetLaunchDir()), length))
    try:
        check_layout(layout, board.flash_size_bytes)
    except MergeError as err:
        raise SCons.Errors.StopError(f"{board.id}: {err}")
    artifact = art.plan_factory_image(board, images, secret=any(p in secret_paths for _, p in images))
    return _declare(env, out_dir, artifact)


# stamp path -> (host, board, outputs): what the post-build action of that stamp calls.
_POST_BUILD = {}


def _run_post_build(target, source, env):
    host, board, outputs = _POST_BUILD[target[0].abspath]
    try:
        host.post_build(board, dict(outputs))
    except AtFactoryError as err:
        raise SCons.Errors.BuildError(node=target[0], errstr=str(err), exitstatus=2)
    write_atomic(target[0].abspath, b"post-build hooks ran for these outputs\n")


def _show_post_build(target, source, env):
    return f"{'HOOKS':<6} post-build of {os.path.basename(target[0].abspath).rsplit('.', 1)[0]}"


def _declare_post_build(env, out_dir, board, nodes, host):
    """A stamp target after every output: the hooks run whenever an output or a plugin changed."""
    outputs = {os.path.relpath(n.abspath, out_dir.abspath).replace(os.sep, "/"): n.abspath for n in nodes}
    outputs["."] = out_dir.abspath
    stamp = env.Dir(os.path.dirname(out_dir.abspath)).File(f".atfactory/{board.id}.post_build")
    _POST_BUILD[stamp.abspath] = (host, board, outputs)
    versions = env.Value(json.dumps(host.versions(), sort_keys=True))
    return env.Command(stamp, [versions] + list(nodes), Action(_run_post_build, strfunction=_show_post_build))


def load_boards(env, ref, registry, host=None, firmware=None, sandbox=False):
    """The boards ``board=`` names ("all", an id, a path), prepared; StopError lists every problem."""
    refs = registry.ids() if ref.lower() == "all" else [ref]
    tables = host.board_tables() if host is not None else None
    prepared, problems = [], []
    for r in refs:
        try:
            prepared.append(prepare_board(r, registry, host, relative_to=env.GetLaunchDir(),
                                          firmware_override=firmware, extra_tables=tables, sandbox=sandbox))
        except BoardError as err:
            problems += err.problems
        except AtFactoryError as err:
            problems.append(str(err))
    if problems:
        shown = [str(p) for p in problems[:MAX_PROBLEMS_SHOWN]]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more problems; fix these first")
        raise SCons.Errors.StopError("\nscons: *** ".join(shown))
    shown = set()
    for p in prepared:
        for warning in p.board.warnings:
            if warning not in shown:
                shown.add(warning)
                sys.stderr.write(f"atfactory: warning: {warning}\n")
    without = [p.board.id for p in prepared if p.firmware is None]
    if without:
        sys.stdout.write(f"atfactory: no firmware for {', '.join(without)}: built the AT partitions only; "
                         "the factory image needs firmware ([firmware] release = \"PATH\" in the board, "
                         "or firmware=PATH)\n")
    return prepared


# ledger path -> (board, release folder, chunks): module-level, so the action's signature is stable.
_LEDGERS = {}


def _write_ledger(target, source, env):
    from atfactory import devices as dev
    board, release, chunks = _LEDGERS[target[0].abspath]
    dev.write_ledger(board, release, chunks, target[0].abspath)


def declare_devices(env, prepared, build_dir, csv_path, host, board_alias, args):
    """The per-device outputs of one board: chunk processes, then the devices.json ledger.

    SCons tracks a handful of nodes per batch (the chunks), not one per device file: the CSV and
    a digest of the files it names decide when the batch is rebuilt."""
    import hashlib
    import sys as _sys
    from atfactory import devices as dev

    board = prepared.board
    release = os.path.join(build_dir, board.id)
    tables = host.board_tables() if host is not None else {}
    try:
        maker = dev.DeviceMaker(prepared, csv_path, tables)
        digest = dev.inputs_digest(csv_path, maker)
        from atfactory import __version__
        key = hashlib.sha256(json.dumps([digest, __version__, host.versions() if host else {},
                                         board.id, args], sort_keys=True).encode()).hexdigest()
        cache = os.path.join(build_dir, ".atfactory", f"{board.id}.devices-checked")
        count = None
        if os.path.isfile(cache):
            with open(cache) as f:
                saved = f.read().split()
            if len(saved) == 2 and saved[0] == key:
                count = int(saved[1])
        if count is None:
            count = dev.check_devices(maker)   # every row, before anything is written
            write_atomic(cache, f"{key} {count}\n".encode())
    except BoardError as err:
        shown = [str(p) for p in err.problems[:MAX_PROBLEMS_SHOWN]]
        raise SCons.Errors.StopError("\nscons: *** ".join(shown))
    chunks = dev.chunk_count(count)
    site = os.path.dirname(os.path.dirname(os.path.abspath(dev.__file__)))
    env["ENV"]["PYTHONPATH"] = site + (os.pathsep + env["ENV"]["PYTHONPATH"] if env["ENV"].get("PYTHONPATH") else "")
    value = env.Value(key)
    ledgers = []
    for c in range(chunks):
        command = [_sys.executable, "-m", "atfactory.devices", "--board", board.path, "--relative-to",
                   env.GetLaunchDir(), "--devices", os.path.abspath(csv_path), "--release", release,
                   "--chunk", str(c), "--chunks", str(chunks),
                   "--input-cache", os.path.join(build_dir, ".atfactory", "inputs.json")] + args
        target = dev.chunk_ledger_path(release, c, chunks)
        ledgers += env.Command(target, [value, env.File(os.path.abspath(csv_path)), board_alias],
                               Action([command], cmdstr=f"{'DEVICES':<6} {board.id}: devices chunk {c + 1} of {chunks}"))

    target = os.path.abspath(os.path.join(release, dev.LEDGER))
    _LEDGERS[target] = (board, release, chunks)
    ledger = env.Command(target, [env.Value(f"{board.id} {chunks}")] + ledgers,
                         Action(_write_ledger, strfunction=_show_one("LEDGER")))
    env.Clean(ledger, os.path.join(release, dev.DEVICES_DIR))
    return ledger


def generate(env):
    for name, label in KINDS.values():
        env["BUILDERS"][name] = _make_builder(label)
    env["BUILDERS"]["AtfManifest"] = Builder(action=Action(_build_manifest, strfunction=_show_one("LIST")))
    env["BUILDERS"]["AtfSignature"] = Builder(action=Action(_build_signature, strfunction=_show_one("SIGN")))
    env.AddMethod(declare_board, "AtfBoard")
    env.AddMethod(load_boards, "AtfLoadBoards")
    env.AddMethod(declare_devices, "AtfDevices")


def exists(env):
    return True
