"""Partitions whose bytes a plugin makes (``atfactory_register_partitions``).

The content is made once when the board is prepared, to know its size; the build makes it
again from the same inputs.  A plugin's build function cannot travel in the JSON that SCons
tracks, so the session binds it here by (board id, partition) and the spec names which.
"""
from __future__ import annotations

import json
import os
from typing import Callable, Dict, Mapping, Sequence, Tuple

from ..errors import AtFactoryError, PluginError
from . import Content, FormatRegistry, PartitionFormat


class PluginFormat(PartitionFormat):
    kind = "plugin"
    label = "PLUGIN"
    builder = "AtfPluginPartition"

    def __init__(self):
        self._builds: Dict[Tuple[str, str], Tuple[Callable, object]] = {}

    def bind(self, board_id: str, partition: str, build: Callable, board) -> None:
        self._builds[(board_id, partition)] = (build, board)

    def render(self, spec: Mapping[str, object], sources: Sequence[str]) -> bytes:
        from ..plugins import call_build

        entry = self._builds.get((spec["board"], spec["partition"]))
        if entry is None:
            raise AtFactoryError(f"plugin {spec['plugin']}: partition {spec['partition']}: the plugin was not "
                                 f"loaded for board {spec['board']} in this session")
        build, board = entry
        return call_build(spec["plugin"], spec["partition"], build, board, sources)


def plugin_partition(board, p, formats: FormatRegistry) -> dict:
    """A plugin's partition (``plugins.PluginPartition``) as an extra partition of ``board``:
    built once to know its size, and bound so that the build can make it again."""
    from ..plugins import call_build

    data = call_build(p.plugin, p.name, p.build, board, p.inputs)
    try:
        values = json.loads(json.dumps(p.values, sort_keys=True))
    except (TypeError, ValueError):
        raise PluginError(f"plugin {p.plugin}: partition {p.name}: values must be JSON-able "
                          "(numbers, strings, lists, dicts)") from None
    fmt = formats[PluginFormat.kind]
    fmt.bind(board.id, p.name, p.build, board)
    spec = {"plugin": p.plugin, "partition": p.name, "values": values, "board": board.id,
            "files": [os.path.basename(i) for i in p.inputs]}
    content = Content(PluginFormat.kind, len(data), spec, p.inputs, secret=p.secret)
    return {"name": p.name, "type": p.type, "subtype": p.subtype, "offset": p.offset, "size": p.size,
            "origin": f"plugin {p.plugin}", "content": content}
