"""The outputs of one board: what each file is, where it goes, and what it is made from.

``plan_board`` lists the artifacts of a board's release folder; each one records the exact
board values it reads (``spec``) and its input files, which is what the SCons glue turns into
targets and dependencies.  ``render_artifact`` makes the bytes of one artifact from those alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from . import content as content_mod
from .board import Board
from .download_config import DownloadConfig, encode_download_config
from .partition_table import Entry, encode_partition_table

KIND_AT_CUSTOMIZE = "at_customize"
KIND_DOWNLOAD_CONFIG = "download_config"
PARTITIONS_DIR = "customized_partitions"


@dataclass(frozen=True)
class Artifact:
    targets: Tuple[str, ...]       # paths relative to the board's release folder
    kind: str
    spec: Dict[str, object]
    sources: Tuple[str, ...] = ()
    secret: bool = False
    offset: Optional[int] = None   # where it is flashed, for flashable artifacts
    partition: Optional[str] = None


def partition_path(name: str) -> str:
    return f"{PARTITIONS_DIR}/{name}.bin"


def plan_board(board: Board) -> List[Artifact]:
    artifacts: List[Artifact] = []
    entries = [[p.name, p.type, p.subtype, p.offset, p.size, p.flags] for p in board.partitions]
    artifacts.append(Artifact(("at_customize.bin",), KIND_AT_CUSTOMIZE, {"entries": entries},
                              offset=board.at_customize_offset))
    for p in board.partitions:
        if p.content is None:
            continue
        targets = [partition_path(p.name)]
        if p.content.kind == content_mod.KIND_FACTORY_PARAM:
            targets.append(partition_path(f"factory_param_{board.module_name}"))
        artifacts.append(Artifact(tuple(targets), p.content.kind, p.content.spec, p.content.sources,
                                  secret=p.content.secret, offset=p.offset, partition=p.name))
    flashed = [[a.offset, a.targets[0]] for a in artifacts]
    artifacts.append(Artifact(("download.config",), KIND_DOWNLOAD_CONFIG, {
        "flash": [board.flash_mode, board.flash_freq, board.flash_size],
        "entries": flashed,
    }))
    return artifacts


def render_artifact(kind: str, spec: Dict[str, object], sources: Sequence[str]) -> bytes:
    if kind == KIND_AT_CUSTOMIZE:
        return encode_partition_table([Entry(*row) for row in spec["entries"]], md5=True)
    if kind == KIND_DOWNLOAD_CONFIG:
        mode, freq, size = spec["flash"]
        return encode_download_config(DownloadConfig(mode, freq, size, tuple((o, p) for o, p in spec["entries"])))
    return content_mod.render(kind, spec, sources)
