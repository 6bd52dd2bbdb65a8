"""The cached build plan: a no-op rebuild that does not import the atfactory library.

A full load (plugins, board checks, the plan of every artifact) ends by writing what it
declared -- targets, sources, Value contents, aliases, the default targets and the messages it
printed -- to ``build_dir/.atfactory/plans/``, keyed by the command line, the environment, the
interpreter, and the stamp (size, modification and change times in ns, inode) of every file and
folder the load depended on: atfactory's own code and stock boards, the SConstruct, the board
chain, its data files, the firmware, the plugin folders and sys.path.  A later run whose key and
stamps all match declares the same nodes from it with the actions below, which import the
library and load the session only when SCons runs one of them; every other run loads fully.

Not cached: -h, -c, named targets (``scons plugins``), devices=, sign_key=, shard=, VERBOSE=,
a file changed within 2 s of the load (its stamp may not show a change), and a certificate that
has expired since.  The plan holds paths, board values and messages, never key material: a
private key's bytes are not in the board values, no digest of any input is stored, and the
environment is keyed by one SHA-256 of all its variables.

This module imports no part of atfactory at load time; the actions are the same functions
whether the plan came from the cache or from a full load, so SCons stores the same action
signature either way.
"""
from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import sys
import threading
import time

from atfactory.stamps import SETTLED_NS, file_stamp, stamp_of

FORMAT = 2   # 2: check_stamps hold atfactory.stamps strings (format 1: size, mtime, inode lists)
CACHEABLE_ARGUMENTS = ("board", "build_dir", "firmware", "plugins", "sandbox", "release")
DEFAULT_BUILD_DIR = "build"

# what the actions need from a cached plan, and the key a full load is to store its plan under
_STATE = {"plan": None, "loaded": False, "pending": None, "lock": threading.Lock()}


# --- the actions: one function each, whichever way the plan was made ------------------------

def _tool(session=True):
    """The SCons tool module, with the session of a cached plan loaded (once, under a lock)."""
    tool = _STATE.get("tool")
    if tool is None:   # a cached plan: SCons did not load the tool; atfactory_build registers itself
        from atfactory.site_tools import atfactory_build as tool   # noqa: F401
        tool = _STATE["tool"]
    if session and _STATE["plan"] is not None and not _STATE["loaded"]:
        with _STATE["lock"]:
            if not _STATE["loaded"]:
                tool.load_cached_session(_STATE["plan"])
                _STATE["loaded"] = True
    return tool


def _build(target, source, env):
    return _tool().build_artifact(target, source, env)


def _show(target, source, env):
    return _tool().show_artifact(target, source, env)


def _build_manifest(target, source, env):
    return _tool().build_manifest(target, source, env)


def _show_manifest(target, source, env):
    return _tool().show_one("LIST", target, env)


def _run_post_build(target, source, env):
    return _tool().run_post_build(target, source, env)


def _show_post_build(target, source, env):
    # the stamp is build_dir/.atfactory/boards/<ID>/post_build: name the board, as users know it
    return f"{'HOOKS':<6} post-build of {os.path.basename(os.path.dirname(target[0].abspath))}"


ACTION_KINDS = {"artifact": (_build, _show), "manifest": (_build_manifest, _show_manifest),
                "post_build": (_run_post_build, _show_post_build)}
_ACTIONS = {}


def action(kind: str):
    """The one SCons Action of ``kind`` (SCons reads a function's code when an Action is made)."""
    if kind not in _ACTIONS:
        from SCons.Action import Action
        function, show = ACTION_KINDS[kind]
        _ACTIONS[kind] = Action(function, strfunction=show)
    return _ACTIONS[kind]


# --- the key -------------------------------------------------------------------------------

def _key(arglist, launch: str) -> dict:
    import SCons
    import SCons.Util
    # the environment by its digest: variables may hold a CI's secrets, which the plan must not
    environ = hashlib.sha256(json.dumps(sorted(os.environ.items())).encode("utf-8")).hexdigest()
    return {"format": FORMAT, "arguments": [list(a) for a in arglist], "launch": launch, "cwd": os.getcwd(),
            "environ": environ, "python": [sys.executable, sys.version], "sys_path": list(sys.path),
            "scons": [SCons.__version__, SCons.Util.get_hash_format() or "default"]}


def _plan_path(build_dir: str, key: dict) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:32]
    return os.path.join(build_dir, ".atfactory", "plans", digest + ".json")


def _eligible(arglist, targets) -> bool:
    from SCons.Script import GetOption

    if targets or GetOption("help") or GetOption("clean"):
        return False
    names = [name for name, _ in arglist]
    return all(n in CACHEABLE_ARGUMENTS for n in names) and len(set(names)) == len(names)


def use_signature_options() -> None:
    """Content signatures in SHA-256 (SCons's default is MD5), for a cached plan and a full load
    alike: 2.5x faster to compute here (SHA instructions), and a factory image's is the SHA-256
    its merge computes for the manifest anyway.  In effect at once (SCons applies the option only
    after the SConstruct), so that remembered signatures are filed under the algorithm they are
    in; ``--hash-format`` on the command line still wins.

    Files are hashed in chunks of 64 KiB.  SCons 4.x means that by default, but scales its
    default (65536, in bytes) once more as if it were KiB: every file under 64 MiB was read whole
    to be hashed, so a 100,000-device ledger (36 MB) sat in the scons process's memory at the end
    of the batch.  The chunk size changes no signature (the hash of the same bytes either way);
    ``--hash-chunksize`` on the command line still wins."""
    import SCons.Node.FS
    import SCons.Script
    import SCons.Util
    SCons.Script.SetOption("hash_format", "sha256")
    SCons.Util.set_hash_format(SCons.Script.GetOption("hash_format"))
    if not any(a.startswith(("--hash-chunksize", "--md5-chunksize")) for a in sys.argv[1:]):
        SCons.Script.SetOption("hash_chunksize", HASH_CHUNK_KIB)
        SCons.Node.FS.File.hash_chunksize = HASH_CHUNK_KIB * 1024


HASH_CHUNK_KIB = 64


def cached_build(arglist, targets, launch: str) -> bool:
    """Declare the cached plan of this command line and return True; else remember its key (the
    full load stores its plan) and return False.  Any doubt is a full load."""
    started = time.time_ns()
    use_signature_options()   # before the key, which names the algorithm
    if not _eligible(arglist, targets):
        return False
    key = _key(arglist, launch)
    build_dir = os.path.join(launch, dict(arglist).get("build_dir", DEFAULT_BUILD_DIR))
    path = _plan_path(build_dir, key)
    _STATE["pending"] = (key, path, started)
    try:
        with open(path, encoding="utf-8") as f:
            plan = json.load(f)
        valid = plan.get("key") == key and _unchanged(plan, started)
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return False
    if not valid:
        return False
    try:
        import SCons.Script
        env = SCons.Script.Environment(tools=[], ENV=os.environ.copy())
        if lock_build_dir(build_dir) is not True:
            return False   # the full load says why
        declare(env, plan, build_dir)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        raise SystemExit(f"scons: *** {path}: a cached build plan that does not declare; delete it and build again")
    for stream, text in plan["messages"]:
        (sys.stderr if stream == "stderr" else sys.stdout).write(text)
    _STATE["plan"], _STATE["pending"] = plan, None
    return True


def _unchanged(plan: dict, started: int) -> bool:
    if not isinstance(plan.get("stamps"), dict) or plan.get("format") != FORMAT:
        return False
    expires = plan.get("expires")
    if expires is not None and time.time() >= expires:
        return False   # a certificate expired since: the full load warns (or refuses)
    for path, stamp in plan["stamps"].items():
        if stamp_of(path) != stamp:
            return False
    return True


def declare(env, plan: dict, build_dir: str) -> None:
    """Declare every node of ``plan`` (as a full load declared them) and its default targets."""
    env.SConsignFile(os.path.join(build_dir, ".sconsign"))
    builders = {}

    def source(s):
        if "value" in s:
            return env.Value(s["value"])
        if "alias" in s:
            return env.Alias(s["alias"])
        return env.File(s["file"])

    from SCons.Builder import Builder
    for node in plan["nodes"]:
        kind = node["action"]
        if kind not in builders:
            builders[kind] = Builder(action=action(kind))
        builders[kind](env, [env.File(t) for t in node["targets"]], [source(s) for s in node["sources"]])
    for name, sources in plan["aliases"]:
        env.Alias(name, [source(s) for s in sources])
    env.Default([env.Alias(a) for a in plan["default"]])
    _prime(env, plan)


def _prime(env, plan) -> None:
    """The remembered content signatures of unchanged files, as a full load primes them."""
    path = plan.get("input_cache")
    try:
        with open(path, encoding="utf-8") as f:
            entries = json.load(f)["entries"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    files = {t for n in plan["nodes"] for t in n["targets"]}
    files.update(s["file"] for n in plan["nodes"] for s in n["sources"] if "file" in s)
    prime_signatures([env.File(name) for name in sorted(files)], entries, functools.partial(_remember, path))


def prime_signatures(nodes, entries: dict, remember) -> None:
    """Give each of ``nodes`` (SCons File nodes) the content signature ``entries`` (the input
    cache's: "KIND PATH" -> [stamp, value]) hold for it when its stamp is the one it had when the
    signature was computed, so that a no-op build does not hash the firmware and factory images
    again.  SCons reuses a signature itself only for files older than two days (--max-drift), by
    whole-second mtime.  At exit, ``remember(kind, pending)`` is given the other settled files
    and their stamps, to remember the signatures SCons computed for them in this run."""
    import SCons
    import SCons.Util

    kind = f"csig {SCons.__version__} {SCons.Util.get_hash_format() or 'default'}"   # as the input cache files them
    prefix, now, pending = kind + " ", time.time_ns(), []
    for node in nodes:
        st = node.stat()   # memoized: SCons uses this same result
        if st is None:
            continue
        stamp = file_stamp(st)
        entry = entries.get(prefix + node.abspath)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == stamp and isinstance(entry[1], str):
            node.get_ninfo().csig = entry[1]   # a node rebuilt in this run gets a new ninfo
        elif now - max(st.st_mtime_ns, st.st_ctime_ns) > SETTLED_NS:
            pending.append((node, stamp))
    if pending:
        atexit.register(remember, kind, pending)


def _remember(path, kind, pending) -> None:
    """Signatures SCons computed in a cached run, remembered by the library as a full load does."""
    if any(isinstance(getattr(getattr(n, "ninfo", None), "csig", None), str) for n, _ in pending):
        from atfactory.input_cache import use_input_cache
        use_input_cache(path)
        _tool(session=False)._remember_signatures(kind, pending)


# --- storing the plan of a full load ---------------------------------------------------------

def pending():
    """(key, plan path, start time in ns) when this run may store its plan, else None."""
    return _STATE["pending"]


def walk_stamps(folder: str, stamps: dict) -> None:
    """The stamps of ``folder`` (a missing one is stamped None), every folder and file under it,
    __pycache__ aside (byte code follows its source)."""
    if not os.path.isdir(folder):
        stamps[folder] = stamp_of(folder)
        return
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        stamps[root] = stamp_of(root)
        for name in files:
            stamps[os.path.join(root, name)] = stamp_of(os.path.join(root, name))


def store_plan(plan: dict, files, started: int) -> bool:
    """Write ``plan`` with the stamps of ``files`` (path -> stamp or None) unless one changed
    within 2 s of this load's start.  A cache: a failure to write it is no error."""
    for path, stamp in files.items():
        if stamp is None:
            continue
        st = os.stat(path)
        if file_stamp(st) != stamp or max(st.st_mtime_ns, st.st_ctime_ns) > started - SETTLED_NS:
            return False
    key, path, _ = _STATE["pending"]
    plan = dict(plan, format=FORMAT, key=key, stamps=files)
    try:
        from atfactory.fsutil import write_atomic
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, json.dumps(plan, sort_keys=True).encode("utf-8"))
    except OSError:
        return False
    return True


_LOCKS = []   # held for the life of the scons process; the OS releases them when it ends, even on SIGKILL


def lock_build_dir(build_dir: str):
    """Take the lock of ``build_dir`` (one build at a time); True, or False when it is held
    (None: the folder cannot be made or written; the caller says so)."""
    try:
        import fcntl
    except ImportError:   # pragma: no cover - Windows
        return True
    folder = os.path.join(build_dir, ".atfactory")
    try:
        os.makedirs(folder, exist_ok=True)
        handle = open(os.path.join(folder, "build.lock"), "a+")
    except OSError as exc:
        return exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return False
    _LOCKS.append(handle)
    return True
