"""SCons glue for atfactory: one builder per kind of artifact, and the targets of a board.

Everything a target's bytes depend on enters the graph as a ``Value`` node holding sorted
JSON of exactly the board values it reads, plus its real input files; so a change of one pin
rebuilds factory_param and nothing else, and a second run with nothing changed builds
nothing.  The bytes themselves come from ``atfactory.artifacts.render_artifact``; the builder
of each partition format is made from the session's format registry.  Checks, caches and
error wording live in the library; here library errors only become SCons errors, in one place.
"""
from __future__ import annotations

import functools
import json
import os
import sys
from typing import Optional

import SCons.Errors
import SCons.Util
from SCons.Action import Action
from SCons.Builder import Builder

from atfactory import artifacts as art
from atfactory.site_tools import atfactory_plan as plan_cache
from atfactory.errors import AtFactoryError, BoardError, did_you_mean, display_path
from atfactory.fsutil import write_atomic
from atfactory.stamps import file_stamp, stamp_of
from atfactory.site_tools import factory_images
from atfactory.manifest import MANIFEST, SIGNATURE, board_inputs, manifest_spec, render_manifest, sign_manifest

# Artifact kinds that are not partition formats: kind -> (builder name, short label).
ARTIFACT_BUILDERS = {
    art.KIND_FIRMWARE_COPY: ("AtfFirmwareCopy", "COPY"),
    art.KIND_FIRMWARE_CUT: ("AtfFirmwareCut", "CUT"),
    art.KIND_DOWNLOAD_CONFIG: ("AtfDownloadConfig", "CONFIG"),
    art.KIND_FACTORY_IMAGE: ("AtfFactoryImage", "MERGE"),
    art.KIND_FLASH_MAP: ("AtfFlashMap", "MAP"),
}

# What the actions of this session need beyond their Value nodes, which hold JSON only: the
# format registry (plugin formats hold their build functions), and per target path the objects
# of a post-build stamp or a devices ledger.  Module level, so that every action's signature
# is the stable function below and not a closure.
_ACTIONS = {"formats": None, "builders": {}, "stamps": {}, "files": []}
plan_cache._STATE["tool"] = sys.modules[__name__]   # whatever name SCons imported this tool under


def stop_on_error(declare):
    """Declaration-time library errors become one ``scons: *** ...`` line per problem."""
    @functools.wraps(declare)
    def wrapper(*args, **kwargs):
        try:
            return declare(*args, **kwargs)
        except BoardError as err:
            raise SCons.Errors.StopError("\nscons: *** ".join(err.lines())) from None
        except AtFactoryError as err:
            raise SCons.Errors.StopError(str(err)) from None
    return wrapper


def _build_error(target, err: AtFactoryError) -> SCons.Errors.BuildError:
    """A build-time library error fails that target with exit status 2 (bad input).

    Every action calls this from its own ``except``: SCons hashes an action function's code
    and closure for its signature, so a decorator wrapping each action made creating the
    builders several times slower."""
    text = "\nscons: *** ".join(err.lines()) if isinstance(err, BoardError) else str(err)
    return SCons.Errors.BuildError(node=target[0], errstr=text, exitstatus=2)


def _changed_since_checked(target, source) -> Optional[str]:
    """The first input that changed between the board check (this scons run's start) and now:
    another process, or a plugin, rewrote it; building from it would write unchecked bytes."""
    stamps = _ACTIONS["stamps"].get(target[0].abspath, {})
    for s in source[1:]:
        if s.abspath in stamps and stamp_of(s.abspath) != stamps[s.abspath]:
            return s.abspath
    return None


def build_artifact(target, source, env):
    spec = json.loads(source[0].read())
    changed = _changed_since_checked(target, source)
    if changed:
        raise _build_error(target, AtFactoryError(f"{display_path(changed)} changed after the board was checked; "
                                                  "nothing was written from it: run the build again to check it"))
    factory_images.start_workers(int(env.GetOption("num_jobs") or 1))
    try:
        if spec["kind"] == art.KIND_FACTORY_IMAGE:   # in a worker process at -j2 and up, hashed once
            return factory_images.build_image(target[0].abspath, spec["spec"], [s.abspath for s in source[1:]],
                                              spec.get("secret", False), int(env.GetOption("num_jobs") or 1))
        data = art.render_artifact(spec["kind"], spec["spec"], [s.abspath for s in source[1:]], _ACTIONS["formats"])
    except AtFactoryError as err:
        raise _build_error(target, err)
    for t in target:
        write_atomic(t.abspath, data, secret=spec.get("secret", False))
    return None


def show_artifact(target, source, env):
    # Paths as the user sees them from where scons was started (scons -C changes the cwd).
    here = env.GetLaunchDir()
    label = _ACTIONS["builders"][json.loads(source[0].read())["kind"]][1]
    line = f"{label:<6} {display_path(target[0].abspath, here)}"
    if env.get("VERBOSE"):
        files = ", ".join(display_path(s.abspath, here) for s in source[1:]) or "board values only"
        line += f"  <- {files}"
    return line


def _artifact_action():
    """The one action of every artifact builder (the label comes from the target's Value node).
    SCons reads an action function's code for its signature when the action is made: making it
    once, not once per builder, saves a no-op build that work a dozen times.  Its function is
    atfactory_plan's, which a cached plan declares too (the same signature either way)."""
    return plan_cache.action("artifact")


def _builders(formats):
    """kind -> (builder name, label) for every artifact kind of this session."""
    kinds = {fmt.kind: (fmt.builder or f"AtfFormat_{fmt.kind}", fmt.label or fmt.kind[:6].upper()) for fmt in formats}
    kinds.update(ARTIFACT_BUILDERS)
    return kinds


def _value(env, artifact):
    return env.Value(json.dumps({"kind": artifact.kind, "spec": artifact.spec, "secret": artifact.secret},
                                sort_keys=True, separators=(",", ":")))


def _declare(env, out_dir, artifact):
    builder = getattr(env, _ACTIONS["builders"][artifact.kind][0])
    targets = [out_dir.File(t) for t in artifact.targets]
    if artifact.kind == art.KIND_FACTORY_IMAGE:
        targets = [factory_images.adopt(t) for t in targets]
    sources = [env.File(s) for s in artifact.sources]
    # the inputs as the check read them (not other outputs of the build): build_artifact refuses any that changed
    _ACTIONS["stamps"][targets[0].abspath] = {s.abspath: stamp_of(s.abspath) for s in sources if not s.has_builder()}
    _ACTIONS["files"] += targets + sources
    return builder(targets, [_value(env, artifact)] + sources)


def _remember_signatures(kind, pending) -> None:
    from atfactory.input_cache import remember, save_input_cache

    for node, stamp in pending:
        csig = getattr(getattr(node, "ninfo", None), "csig", None)
        if not isinstance(csig, str):
            continue   # SCons did not need it
        try:
            if file_stamp(os.stat(node.abspath)) == stamp:   # the content SCons hashed is the one stamped
                remember(kind, node.abspath, stamp, csig)
        except OSError:
            pass
    try:
        save_input_cache()
    except OSError:
        pass   # a cache: the next run hashes again


def use_session(env, host):
    """Install the builders of this session's formats (the stock ones and every plugin's)."""
    formats = host.formats() if host is not None else None
    if formats is None:
        from atfactory.formats import stock_registry
        formats = stock_registry()
    _ACTIONS["formats"] = formats
    _ACTIONS["builders"] = _builders(formats)
    env.Append(BUILDERS={name: Builder(action=_artifact_action()) for name, _ in _ACTIONS["builders"].values()})


@stop_on_error
def declare_board(env, prepared, build_dir, host=None, sign_key=None):
    """Declare every artifact of a prepared board under ``build_dir/<id>``; return its alias."""
    board = prepared.board
    out_dir = env.Dir(os.path.join(build_dir, board.id))
    nodes, listed = [], []   # listed: (path in the release folder, flash offset) per node
    planned = art.plan_board(board, prepared.firmware, _ACTIONS["formats"])
    for artifact in planned:
        made = _declare(env, out_dir, artifact)
        nodes += made
        listed += [(t, artifact.offset if n == 0 else None) for n, t in enumerate(artifact.targets)]
    if prepared.firmware is not None:
        image = art.factory_image_artifact(board, planned, out_dir.abspath, host, env.GetLaunchDir())
        nodes += _declare(env, out_dir, image)
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
    files = [env.File(p) for _, p in inputs]
    manifest = env.AtfManifest(out_dir.File(MANIFEST), [value] + list(nodes) + files)
    _ACTIONS["files"] += files + list(manifest)
    return manifest


def build_manifest(target, source, env):
    spec = json.loads(source[0].read())
    try:
        write_atomic(target[0].abspath, render_manifest(spec, [s.abspath for s in source[1:]]))
    except AtFactoryError as err:
        raise _build_error(target, err)


def _build_signature(target, source, env):
    from atfactory.fsutil import read_input

    try:
        write_atomic(target[0].abspath, sign_manifest(read_input(source[0].abspath), source[1].abspath))
    except AtFactoryError as err:
        raise _build_error(target, err)


def show_one(label, target, env):
    return f"{label:<6} {display_path(target[0].abspath, env.GetLaunchDir())}"


def _show_one(label):
    return lambda target, source, env: show_one(label, target, env)


def run_post_build(target, source, env):
    host, board, outputs = _ACTIONS[target[0].abspath]
    try:
        host.post_build(board, dict(outputs))
    except AtFactoryError as err:
        raise _build_error(target, err)
    write_atomic(target[0].abspath, b"post-build hooks ran for these outputs\n")


def _declare_post_build(env, out_dir, board, nodes, host):
    """A stamp target after every output: the hooks run whenever an output or a plugin changed."""
    outputs = {os.path.relpath(n.abspath, out_dir.abspath).replace(os.sep, "/"): n.abspath for n in nodes}
    outputs["."] = out_dir.abspath
    # one folder per board: SCons keeps one .sconsign record per folder, read and written whole,
    # so a stamp beside every other board's made each no-op load all boards' dependency lists
    stamp = env.Dir(os.path.dirname(out_dir.abspath)).File(f".atfactory/boards/{board.id}/post_build")
    _ACTIONS[stamp.abspath] = (host, board, outputs)
    versions = env.Value(json.dumps(host.versions(), sort_keys=True))
    return env.Command(stamp, [versions] + list(nodes), plan_cache.action("post_build"))


@stop_on_error
def load_boards(env, ref, registry, host=None, firmware=None, sandbox=False, default_firmware=None, release=False):
    """The boards ``board=`` names ("all", an id, a path, or a list of ids and paths), prepared;
    StopError lists every problem.  ``release`` (release=yes): development certificates and keys
    are refused; without it a build that ships them says so in one warning."""
    from atfactory.prepare import development_warning, prepare_boards

    result = prepare_boards(ref, registry, host, relative_to=env.GetLaunchDir(), firmware_override=firmware,
                            sandbox=sandbox, default_firmware=default_firmware, release=release)
    development = development_warning(result.boards)
    messages = [("stderr", f"atfactory: warning: {warning}\n") for warning in
                result.warnings + ([development] if development else [])]
    messages += [("stdout", f"atfactory: note: {note}\n") for note in result.notes]
    if result.without_firmware:
        messages.append(("stdout", f"atfactory: no firmware for {', '.join(result.without_firmware)}: built the AT "
                                   "partitions only; the factory image needs firmware ([firmware] release = \"PATH\" "
                                   "in the board, or firmware=PATH)\n"))
    for stream, text in messages:
        (sys.stderr if stream == "stderr" else sys.stdout).write(text)
    _ACTIONS.setdefault("messages", []).extend(messages)   # a cached plan prints them again
    return result.boards


def _build_devices(target, source, env):
    from atfactory.devices_worker import build_batch

    maker, release, command, images, environ = _ACTIONS[target[0].abspath]
    workers = max(1, int(env.GetOption("num_jobs") or 1))
    warnings = []
    try:
        count = build_batch(maker, release, command, workers, images, target[0].abspath, environ, progress=sys.stderr,
                            warnings=warnings)
    except AtFactoryError as err:
        raise _build_error(target, err)
    for warning in warnings:
        sys.stderr.write(f"atfactory: warning: {display_path(maker.csv_path, env.GetLaunchDir())}: {warning}\n")
    sys.stdout.write(f"{'DEVICES':<6} {maker.board.id}: {count} devices{_shard_of(maker)}\n")


def _shard_of(maker) -> str:
    return f" (shard {maker.shard[0]}/{maker.shard[1]})" if maker.shard else ""


def _show_devices(target, source, env):
    maker = _ACTIONS[target[0].abspath][0]
    workers = max(1, int(env.GetOption("num_jobs") or 1))
    return f"{'DEVICES':<6} {maker.board.id}: {display_path(maker.csv_path, env.GetLaunchDir())}{_shard_of(maker)}, " \
           f"{workers} process{'es' if workers > 1 else ''}"


@stop_on_error
def declare_devices(env, prepared, build_dir, csv_path, host, board_alias, args, sign_key=None, shard=None):
    """The per-device outputs of one board: one action, the devices.json ledger its target.

    SCons tracks one node per batch, not one per device file: the CSV and a digest of the files
    it names decide when the batch is rebuilt.  The action runs one worker per -j job.
    ``shard``: (K, N), the rows of shard K of N (``args`` hold it too), whose target is the
    shard's ledger; sign_key signs the merged ledger (``atfactory merge-ledgers``), not a shard's."""
    from atfactory import devices as dev
    from atfactory.devices_worker import worker_command
    from atfactory.shards import ledger_name

    board = prepared.board
    release = os.path.abspath(os.path.join(build_dir, board.id))
    key, maker = dev.batch_key(prepared, csv_path, host, args, shard=shard,
                               paths_cache=os.path.join(build_dir, ".atfactory", f"{board.id}.devices-paths"))
    site = os.path.dirname(os.path.dirname(os.path.abspath(dev.__file__)))
    environ = dict(os.environ)   # the workers import this checkout's atfactory
    environ["PYTHONPATH"] = site + (os.pathsep + environ["PYTHONPATH"] if environ.get("PYTHONPATH") else "")
    command = worker_command(board.path, env.GetLaunchDir(), csv_path, args + [
        "--input-cache", os.path.join(build_dir, ".atfactory", "inputs.json")])
    target = os.path.abspath(os.path.join(release, ledger_name(shard) if shard else dev.LEDGER))
    _ACTIONS[target] = (maker, release, command, "--images" in args, environ)
    ledger = env.Command(target, [env.Value(key), env.File(os.path.abspath(csv_path)), board_alias],
                         Action(_build_devices, strfunction=_show_devices))
    env.Clean(ledger, os.path.join(release, dev.DEVICES_DIR))
    env.Precious(ledger)   # a failed batch leaves the last good one, ledger and devices/, as it was
    if sign_key and not shard:   # the ledger lists every device output with its SHA-256: signing it covers them all
        ledger += env.AtfSignature(target + ".sig", [ledger[0], env.File(sign_key)])
    return ledger


def reject_unknown_variables(variables) -> None:
    """A typo such as ``bord=X`` must not be ignored: stop, listing what is accepted."""
    unknown = variables.UnknownVariables()
    if unknown:
        accepted = ", ".join(variables.keys())
        words = ", ".join(f"{k}={v}" for k, v in unknown.items())
        # one unknown variable: "; did you mean board?"; several: each hint names its variable
        hints = "".join(did_you_mean(k, variables.keys()).replace("did you mean", f"{k}=: did you mean" if
                                                                  len(unknown) > 1 else "did you mean")
                        for k in unknown)
        raise SCons.Errors.StopError(f"unknown variable {words}; accepted: {accepted} (see scons -h){hints}")


def device_args(prepared, sandbox=False, images=False, release=False, shard=None) -> list:
    """The options a device chunk process needs to prepare the board exactly as this build did:
    this session's plugin and board folders, and the firmware unless the board itself names it."""
    plugin_dirs, board_dirs = _ACTIONS["session"]
    args = []
    if prepared.firmware is not None and prepared.firmware_setting != "firmware.release":
        args += ["--firmware", prepared.firmware.origin]
    if plugin_dirs:
        args += ["--plugins", ",".join(plugin_dirs)]
    for folder in board_dirs:
        args += ["--boards", folder]
    if sandbox:
        args.append("--sandbox")
    if release:
        args.append("--release")
    if images:
        args.append("--images")
    if shard:
        args += ["--shard", f"{shard[0]}/{shard[1]}"]
    return args


@stop_on_error
def make_session(env, extra_dirs, board_dirs=(), optional_dirs=()):
    """(plugin host, board registry) of this build, with this session's format builders installed.

    ``extra_dirs``: plugin folders, each of which must exist; ``optional_dirs``: plugin folders
    loaded where they exist (a ``plugins/`` beside the SConstruct); ``board_dirs``: a project's
    boards folders, whose boards join the stock ones and the plugins'.  Relative paths are
    relative to the folder scons was started in."""
    from atfactory.plugins import make_session as make

    def absolute(folders):
        return [os.path.join(env.GetLaunchDir(), d) for d in folders]

    plugin_dirs = [d for d in absolute(optional_dirs) if os.path.isdir(d)] + absolute(extra_dirs)
    board_dirs = absolute(board_dirs)
    host, registry = make(plugin_dirs, board_dirs=board_dirs)
    _ACTIONS["session"] = (plugin_dirs, board_dirs)
    _ACTIONS["plugin_folders"] = absolute(optional_dirs) + plugin_dirs   # a cached plan stamps them, found or not
    use_session(env, host)
    return host, registry


@stop_on_error
def build(env, host, registry, board, build_dir="build", firmware=None, sign_key=None, sandbox=False, devices=None,
          device_images=False, default_firmware=None, release=False, shard=None):
    """Declare every target of ``board`` ("all", an id, a path, or a list of ids and paths) under
    ``build_dir``/<ID>/ and make them the default targets; return them.

    Relative paths are relative to the folder scons was started in.  ``firmware`` overrides every
    board's; ``default_firmware(board)`` gives (path, file, key) for a board that names none.
    ``devices``: a CSV of per-device values for the one board named; ``shard``: "K/N", build
    only shard K of N of its rows (atfactory.shards)."""
    from atfactory.input_cache import _CACHE, save_input_cache, use_input_cache

    launch = env.GetLaunchDir()
    build_dir = os.path.join(launch, build_dir)
    use_input_cache(os.path.join(build_dir, ".atfactory", "inputs.json"))
    shard = check_shard(env, shard, devices)
    boards = load_boards(env, board, registry, host, firmware=firmware or None, sandbox=sandbox,
                         default_firmware=default_firmware, release=release)
    if devices and len(boards) != 1:
        stop(env, "devices= builds the devices of one board; name it with board=ID")
    sign_key = os.path.join(launch, sign_key) if sign_key else None
    if sign_key:
        check_sign_key(env, sign_key)
    lock_build_dir(env, build_dir)   # before the first byte is written into it
    os.makedirs(build_dir, exist_ok=True)
    env.SConsignFile(os.path.join(build_dir, ".sconsign"))
    plan_cache.use_signature_options()   # as a cached plan does (the SConstruct may not have asked it)
    # No Decider() call: SCons's default content decider.  "content-timestamp" trusts whole-second
    # mtimes and misses a file changed within the second of the previous build (seen in the tests).
    targets = []
    for prepared in boards:
        alias = declare_board(env, prepared, build_dir, host, sign_key)
        targets.append(alias)
        if devices:
            targets.append(declare_devices(env, prepared, build_dir, os.path.join(launch, devices), host, alias,
                                           device_args(prepared, sandbox, device_images, release, shard), sign_key,
                                           shard))
    env.Default(targets)
    # the remembered content signatures, as a cached plan primes them; the ones SCons computes are remembered at exit
    plan_cache.prime_signatures(dict.fromkeys(_ACTIONS["files"]), _CACHE["entries"], _remember_signatures)
    save_input_cache()
    if plan_cache.pending() and not (devices or sign_key or shard or env.get("VERBOSE")):
        _store_plan(env, boards, targets, build_dir, dict(board=board, firmware=firmware or None, sandbox=sandbox,
                                                          release=release, launch=launch))
    return targets


_PLAN_ACTIONS = {"artifact": "build_artifact", "manifest": "build_manifest", "post_build": "run_post_build"}


def _store_plan(env, boards, targets, build_dir, load) -> None:
    """Store what this full load declared (atfactory_plan): every node under ``targets``, and the
    stamps of every file and folder the load depended on.  Anything else declared: nothing stored."""
    import atfactory
    from SCons.Node.Alias import Alias
    from SCons.Node.FS import File
    from SCons.Node.Python import Value

    from atfactory.input_cache import _CACHE

    functions = {plan_cache.ACTION_KINDS[kind][0]: kind for kind in _PLAN_ACTIONS}
    nodes, aliases, seen = [], [], set()

    def source(n):
        if isinstance(n, Value):
            return {"value": n.value}
        if isinstance(n, Alias):
            return {"alias": str(n)}
        if not isinstance(n, File):   # a FactoryImageFile is one too
            raise LookupError(n)
        return {"file": n.abspath}

    def walk(n):
        if id(n) in seen:
            return
        seen.add(id(n))
        if isinstance(n, Alias):
            aliases.append([str(n), [source(c) for c in n.sources]])
        elif n.has_builder() and not isinstance(n, Value):
            executor = n.get_executor()
            actions = executor.get_action_list()
            kind = functions.get(getattr(actions[0], "execfunction", None)) if len(actions) == 1 else None
            if kind is None or n.precious or n.noclean or n.nocache:
                raise LookupError(n)
            if executor.get_all_targets()[0] is n:
                nodes.append({"action": kind, "targets": [t.abspath for t in executor.get_all_targets()],
                              "sources": [source(s) for s in executor.get_all_sources()]})
        else:
            return
        for child in (n.sources if isinstance(n, Alias) else n.get_executor().get_all_sources()):
            walk(child)

    targets = [n for t in targets for n in (t if isinstance(t, list) else [t])]
    try:
        for t in targets:
            walk(t)
    except LookupError:
        return
    stamps = {}
    for folder in [os.path.dirname(os.path.abspath(atfactory.__file__)), env.Dir("#site_scons").abspath] + \
            _ACTIONS.get("plugin_folders", []):
        plan_cache.walk_stamps(folder, stamps)
    top = env.Dir("#").abspath
    stamps[top] = stamp_of(top)
    for name in ["SConstruct", "Sconstruct", "sconstruct", "SConstruct.py", "Sconstruct.py", "sconstruct.py"] + \
            list(env.GetOption("file") or []):
        stamps[os.path.join(top, name)] = stamp_of(os.path.join(top, name))
    for entry in sys.path:
        stamps[os.path.abspath(entry or ".")] = stamp_of(os.path.abspath(entry or "."))
    for prepared in boards:
        for _, path in board_inputs(prepared.board, prepared.firmware):
            stamps[path] = stamp_of(path)
            stamps[os.path.dirname(path)] = stamp_of(os.path.dirname(path))
        if prepared.firmware is not None:
            plan_cache.walk_stamps(prepared.firmware.origin, stamps)
    built = {t for node in nodes for t in node["targets"]}
    for node in nodes:   # every input file of a target (an image atfactory_pre_merge added, say)
        for s in node["sources"]:
            if "file" in s and s["file"] not in built:
                stamps[s["file"]] = stamp_of(s["file"])
    expires = _earliest_expiry(_CACHE["entries"], stamps)
    if expires is False:
        return
    post_build = {t: v for t, v in _ACTIONS.items() if t.startswith(os.sep) and isinstance(v, tuple) and len(v) == 3}
    plan_cache.store_plan({"nodes": nodes, "aliases": aliases, "default": [str(t) for t in targets],
                           "messages": _ACTIONS.get("messages", []), "expires": expires,
                           "check_stamps": _ACTIONS["stamps"],
                           "post_build": {t: [board.id, outputs] for t, (_, board, outputs) in post_build.items()},
                           "session": list(_ACTIONS["session"]), "load": load,
                           "input_cache": _CACHE["path"]}, stamps, plan_cache.pending()[2])


def _earliest_expiry(entries, stamps):
    """The earliest notAfter (POSIX time) of the certificates among ``stamps``, None without any;
    False when a certificate file's dates are not known (the plan is then not stored)."""
    import datetime

    earliest = None
    for key, value in entries.items():
        kind, _, path = key.partition(" ")
        if path not in stamps or kind not in ("cert", "dates"):
            continue
        dates = entries.get(f"dates {path}")
        if not (isinstance(dates, list) and len(dates) == 2 and isinstance(dates[1], list)):
            return False
        for _, expires in dates[1]:
            when = datetime.datetime.fromisoformat(expires).timestamp()
            earliest = when if earliest is None else min(earliest, when)
    return earliest


def load_cached_session(plan) -> None:
    """What the actions of a cached plan need, made when SCons first runs one: the session's
    formats, the inputs' stamps at the check the plan was made from, and each post-build hook's
    board (checked again) and outputs."""
    import SCons.Script

    plugin_dirs, board_dirs = plan["session"]
    from atfactory.plugins import make_session as make

    host, registry = make(plugin_dirs, board_dirs=board_dirs)
    _ACTIONS["session"] = (plugin_dirs, board_dirs)
    use_session(SCons.Script.Environment(tools=[]), host)
    _ACTIONS["stamps"] = plan["check_stamps"]
    if plan["post_build"]:
        from atfactory.prepare import prepare_boards

        load = plan["load"]
        result = prepare_boards(load["board"], registry, host, relative_to=load["launch"],
                                firmware_override=load["firmware"], sandbox=load["sandbox"], release=load["release"])
        by_id = {p.board.id: p.board for p in result.boards}
        for target, (board_id, outputs) in plan["post_build"].items():
            _ACTIONS[target] = (host, by_id[board_id], outputs)


@stop_on_error
def check_shard(env, text, devices):
    """shard=K/N -> (K, N), or None without it; a bad value or one without devices= stops."""
    from atfactory.shards import parse_shard

    if not text:
        return None
    shard = parse_shard(text, "shard=")
    if not devices:
        raise AtFactoryError(f"shard={text}: splits the rows of devices=CSV into shards; accepted: shard=K/N "
                             "with devices=CSV")
    return shard


@stop_on_error
def project_of(env, path=""):
    """The atfactory project of this build: ``path`` (its atfactory.toml, or its folder; relative
    to where scons was started), else the project of the SConstruct's folder (or one above it)."""
    from atfactory.project import PROJECT_FILE, find_project, load_project

    found = os.path.join(env.GetLaunchDir(), path) if path else find_project(env.Dir("#").abspath)
    if not found:
        raise AtFactoryError(f"no {PROJECT_FILE} in {display_path(env.Dir('#').abspath)} or a folder above it; "
                             f"accepted: project=PATH of an {PROJECT_FILE}, or a project folder to build in")
    return load_project(found)


@stop_on_error
def project_boards(env, project, registry, refs):
    """What a project build builds: ``refs`` (ids and paths), else the project's default_board,
    else (and for 'all') every board of the project's own."""
    project.check_against(registry)
    refs = list(refs) or [project.default_board or "all"]
    if any(r.lower() == "all" for r in refs):
        if len(refs) > 1:
            raise AtFactoryError(f"board = {','.join(refs)}: 'all' (every board of the project) comes alone; "
                                 "accepted: 'all', or board ids and .toml paths")
        refs = project.own_boards(registry)
        if not refs:
            raise AtFactoryError(f"{display_path(project.path)}: the project has no boards of its own yet (none in "
                                 f"boards = {[display_path(d) for d in project.board_dirs]}); "
                                 "`atfactory new ID --extends WROOM-32` writes one, or name a stock board")
    return refs


def declare_variables(env, args, board_help, plugins_help, defaults=None, extra=()):
    """The command-line variables of an atfactory SConstruct, read from ``args`` (ARGUMENTS) into
    ``env``; an unknown one stops the build.  ``extra``: more variables, listed first."""
    from SCons.Variables import BoolVariable, Variables

    from atfactory.registry import DEFAULT_BOARD

    defaults = dict({"board": DEFAULT_BOARD, "build_dir": "build", "sign_key": "", "sandbox": False, "release": False},
                    **(defaults or {}))
    variables = Variables(None, args)
    variables.AddVariables(
        *extra,
        ("board", board_help, defaults["board"]),
        ("build_dir", "where release folders go: <build_dir>/<board id>/", defaults["build_dir"]),
        ("firmware", "ESP-AT release folder or factory image to customize (overrides [firmware] release)", ""),
        ("plugins", plugins_help, ""),
        ("sign_key", "Ed25519 private key: sign manifest.json into manifest.json.sig", defaults["sign_key"]),
        BoolVariable("sandbox", "refuse paths a board file names outside its own folder (for boards you did not write)",
                     defaults["sandbox"]),
        BoolVariable("release", "production build: refuse atfactory's development certificates and keys, and expired "
                     "certificates", defaults["release"]),
        ("devices", "CSV of per-device values: one set of AT partitions per row, under <ID>/devices/", ""),
        BoolVariable("device_images", "with devices=: also a full factory image per device", False),
        ("shard", "with devices=: build shard K/N of the rows only (rows i with i % N == K-1), whose ledgers "
                  "atfactory merge-ledgers merges", ""),
        BoolVariable("VERBOSE", "show the inputs of every target", False),
    )
    variables.Update(env)
    reject_unknown_variables(variables)
    return variables


@stop_on_error
def check_sign_key(env, path):
    """Refuse a bad signing key before anything is written."""
    from atfactory.manifest import load_signing_key

    load_signing_key(path)


def lock_build_dir(env, build_dir):
    """One build at a time per build_dir: a second one stops in one line instead of racing the
    first over the same outputs (and .sconsign).  POSIX advisory lock; elsewhere, no lock."""
    held = plan_cache.lock_build_dir(build_dir)
    if held is False:
        raise SCons.Errors.StopError(f"build_dir {display_path(build_dir, env.GetLaunchDir())} is in use by another "
                                     "atfactory build; wait for it to finish, or use another build_dir=")
    if held is not True:
        raise SCons.Errors.StopError(f"build_dir {display_path(build_dir, env.GetLaunchDir())}: cannot be made or "
                                     f"written ({held.strerror or held}); accepted: a folder this user can write")


def stop(env, message):
    raise SCons.Errors.StopError(message)


def generate(env):
    env["BUILDERS"]["AtfManifest"] = Builder(action=plan_cache.action("manifest"))
    env["BUILDERS"]["AtfSignature"] = Builder(action=Action(_build_signature, strfunction=_show_one("SIGN")))
    env.AddMethod(make_session, "AtfSession")
    env.AddMethod(build, "AtfBuild")
    env.AddMethod(declare_variables, "AtfVariables")
    env.AddMethod(project_of, "AtfProject")
    env.AddMethod(project_boards, "AtfProjectBoards")
    env.AddMethod(check_sign_key, "AtfCheckSignKey")
    env.AddMethod(declare_board, "AtfBoard")
    env.AddMethod(load_boards, "AtfLoadBoards")
    env.AddMethod(declare_devices, "AtfDevices")
    env.AddMethod(stop, "AtfStop")
    env.AddMethod(lock_build_dir, "AtfLockBuildDir")


def exists(env):
    return True
