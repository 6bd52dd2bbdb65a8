"""The outputs of one board: what each file is, where it goes, and what it is made from.

``plan_board`` lists the artifacts of a board's release folder; each one records the exact
board values it reads (``spec``) and its input files, which is what the SCons glue turns into
targets and dependencies.  ``render_artifact`` makes the bytes of one artifact from those alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from . import content as content_mod
from .board import Board
from .download_config import DownloadConfig, encode_download_config
from .mapping import board_map_spec, render_board_map
from .merge import merge_factory_image
from .partition_table import TABLE_SIZE, Entry, encode_partition_table

KIND_AT_CUSTOMIZE = "at_customize"
KIND_DOWNLOAD_CONFIG = "download_config"
KIND_FIRMWARE_COPY = "firmware_copy"
KIND_FIRMWARE_CUT = "firmware_cut"
KIND_FACTORY_IMAGE = "factory_image"
KIND_FLASH_MAP = "flash_map"
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
    length: Optional[int] = None   # its size in bytes, where known before it is built


def partition_path(name: str) -> str:
    return f"{PARTITIONS_DIR}/{name}.bin"


def plan_board(board: Board, firmware=None) -> List[Artifact]:
    """Every output of the release folder but the factory image; download.config and the map last."""
    artifacts: List[Artifact] = []
    if firmware is not None:
        for f in firmware.files:
            if f.start is None:
                artifacts.append(Artifact((f.path,), KIND_FIRMWARE_COPY, {}, (f.source,), offset=f.offset,
                                          length=os.path.getsize(f.source)))
            else:
                artifacts.append(Artifact((f.path,), KIND_FIRMWARE_CUT, {"start": f.start, "length": f.length},
                                          (f.source,), offset=f.offset, length=f.length))
    entries = [[p.name, p.type, p.subtype, p.offset, p.size, p.flags] for p in board.partitions]
    artifacts.append(Artifact(("at_customize.bin",), KIND_AT_CUSTOMIZE, {"entries": entries},
                              offset=board.at_customize_offset, length=TABLE_SIZE))
    for p in board.partitions:
        if p.content is None:
            continue
        targets = [partition_path(p.name)]
        if p.content.kind == content_mod.KIND_FACTORY_PARAM:
            targets.append(partition_path(f"factory_param_{board.module_name}"))
        spec = dict(p.content.spec, board=board.id) if p.content.kind == "plugin" else p.content.spec
        artifacts.append(Artifact(tuple(targets), p.content.kind, spec, p.content.sources,
                                  secret=p.content.secret, offset=p.offset, partition=p.name, length=p.content.size))
    flashed = [[a.offset, a.targets[0]] for a in artifacts if a.offset is not None]
    artifacts.append(Artifact(("flash_map.svg",), KIND_FLASH_MAP, board_map_spec(board, firmware)))
    artifacts.append(Artifact(("download.config",), KIND_DOWNLOAD_CONFIG, {
        "flash": [board.flash_mode, board.flash_freq, board.flash_size],
        "entries": flashed,
    }))
    return artifacts


def factory_image_path(board: Board) -> str:
    return f"factory/factory_{board.module_name}.bin"


def plan_factory_image(board: Board, images: Sequence[Tuple[int, str]], secret: bool) -> Artifact:
    """The merge of ``images`` ((offset, absolute path), after the pre-merge hook)."""
    ordered = sorted(images)
    spec = {"chip": board.chip.name, "flash": [board.flash_mode, board.flash_freq, board.flash_size],
            "flash_bytes": board.flash_size_bytes, "offsets": [o for o, _ in ordered]}
    return Artifact((factory_image_path(board),), KIND_FACTORY_IMAGE, spec, tuple(p for _, p in ordered),
                    secret=secret)


def render_artifact(kind: str, spec: Dict[str, object], sources: Sequence[str]) -> bytes:
    if kind == KIND_FIRMWARE_COPY:
        with open(sources[0], "rb") as f:
            return f.read()
    if kind == KIND_FIRMWARE_CUT:
        with open(sources[0], "rb") as f:
            f.seek(spec["start"])
            return f.read(spec["length"])
    if kind == KIND_FACTORY_IMAGE:
        mode, freq, size = spec["flash"]
        return merge_factory_image(spec["chip"], mode, freq, size, spec["flash_bytes"],
                                   list(zip(spec["offsets"], sources)))
    if kind == KIND_FLASH_MAP:
        return render_board_map(spec)
    if kind == KIND_AT_CUSTOMIZE:
        return encode_partition_table([Entry(*row) for row in spec["entries"]], md5=True)
    if kind == KIND_DOWNLOAD_CONFIG:
        mode, freq, size = spec["flash"]
        return encode_download_config(DownloadConfig(mode, freq, size, tuple((o, p) for o, p in spec["entries"])))
    return content_mod.render(kind, spec, sources)
