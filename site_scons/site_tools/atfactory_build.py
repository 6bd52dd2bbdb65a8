"""SCons glue for atfactory: one builder per kind of artifact, and the targets of a board.

Everything a target's bytes depend on enters the graph as a ``Value`` node holding sorted
JSON of exactly the board values it reads, plus its real input files; so a change of one pin
rebuilds factory_param and nothing else, and a second run with nothing changed builds
nothing.  The bytes themselves come from ``atfactory.artifacts.render_artifact``.
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
from atfactory.board import load_board
from atfactory.errors import AtFactoryError, BoardError, display_path
from atfactory.fsutil import write_atomic

# kind -> (builder name, short label shown for each target)
KINDS = {
    art.KIND_AT_CUSTOMIZE: ("AtfAtCustomize", "TABLE"),
    content.KIND_FACTORY_PARAM: ("AtfFactoryParam", "PARAM"),
    content.KIND_PKI: ("AtfPki", "PKI"),
    content.KIND_BLE_DATA: ("AtfBleData", "GATT"),
    content.KIND_RAW: ("AtfRawPartition", "COPY"),
    art.KIND_DOWNLOAD_CONFIG: ("AtfDownloadConfig", "CONFIG"),
}


def _spec_of(source):
    """The artifact's recorded description: the Value node that is its first source."""
    return json.loads(source[0].read())


def _build(target, source, env):
    spec = _spec_of(source)
    files = [s.abspath for s in source[1:]]
    try:
        data = art.render_artifact(spec["kind"], spec["spec"], files)
    except AtFactoryError as err:
        raise SCons.Errors.BuildError(node=target[0], errstr=str(err), exitstatus=2)
    for t in target:
        write_atomic(t.abspath, data, secret=spec.get("secret", False))
    return None


def _make_builder(label):
    def show(target, source, env):
        if env.get("VERBOSE"):
            files = ", ".join(display_path(s.abspath) for s in source[1:]) or "board values only"
            return f"{label:<6} {display_path(target[0].abspath)}  <- {files}"
        return f"{label:<6} {display_path(target[0].abspath)}"

    return Builder(action=Action(_build, strfunction=show))


def declare_board(env, board, build_dir):
    """Declare every artifact of ``board`` under ``build_dir/<id>``; return the board's alias."""
    out_dir = env.Dir(os.path.join(build_dir, board.id))
    nodes = []
    for artifact in art.plan_board(board):
        builder = getattr(env, KINDS[artifact.kind][0])
        value = env.Value(json.dumps({"kind": artifact.kind, "spec": artifact.spec, "secret": artifact.secret},
                                     sort_keys=True, separators=(",", ":")))
        targets = [out_dir.File(t) for t in artifact.targets]
        nodes += builder(targets, [value] + [env.File(s) for s in artifact.sources])
    return env.Alias(board.id, nodes)


def load_boards(env, ref, registry):
    """The boards ``board=`` names ("all", an id, a path), checked; StopError lists every problem."""
    refs = registry.ids() if ref.lower() == "all" else [ref]
    boards, problems = [], []
    for r in refs:
        try:
            boards.append(load_board(r, registry, relative_to=env.GetLaunchDir()))
        except BoardError as err:
            problems += err.problems
    if problems:
        raise SCons.Errors.StopError("\nscons: *** ".join(str(p) for p in problems))
    shown = set()
    for board in boards:
        for warning in board.warnings:
            if warning not in shown:
                shown.add(warning)
                sys.stderr.write(f"atfactory: warning: {warning}\n")
    return boards


def generate(env):
    for kind, (name, label) in KINDS.items():
        env["BUILDERS"][name] = _make_builder(label)
    env.AddMethod(declare_board, "AtfBoard")
    env.AddMethod(load_boards, "AtfLoadBoards")


def exists(env):
    return True
