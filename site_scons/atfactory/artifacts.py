"""The outputs of one board: what each file is, where it goes, and what it is made from.

``plan_board`` lists the artifacts of a board's release folder; each one records the exact
board values it reads (``spec``) and its input files, which is what the SCons glue turns into
targets and dependencies.  ``render_artifact`` makes the bytes of one artifact from those alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from .board import Board
from .download_config import DownloadConfig, encode_download_config
from .formats import FormatRegistry, stock_registry
from .formats.partition_table import AtCustomizeFormat
from .fsutil import read_input, relative_name_problem
from .mapping import board_map_spec, render_board_map
from .errors import AtFactoryError, MergeError, display_path
from .merge import check_layout, merge_factory_image
from .partition_table import TABLE_SIZE

KIND_AT_CUSTOMIZE = AtCustomizeFormat.kind
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


def plan_board(board: Board, firmware=None, formats: Optional[FormatRegistry] = None) -> List[Artifact]:
    """Every output of the release folder but the factory image; download.config and the map last."""
    formats = formats or stock_registry()
    artifacts: List[Artifact] = []
    if firmware is not None:
        for f in firmware.files:
            if f.start is None:
                artifacts.append(Artifact((f.path,), KIND_FIRMWARE_COPY, {}, (f.source,), offset=f.offset,
                                          length=os.path.getsize(f.source)))
            else:
                spec = {"start": f.start, "length": f.length}
                if f.patches:
                    spec["patches"] = [list(p) for p in f.patches]
                artifacts.append(Artifact((f.path,), KIND_FIRMWARE_CUT, spec, (f.source,), offset=f.offset,
                                          length=f.length))
    entries = [[p.name, p.type, p.subtype, p.offset, p.size, 0] for p in board.partitions]   # 0: no flags
    artifacts.append(Artifact(("at_customize.bin",), KIND_AT_CUSTOMIZE, {"entries": entries},
                              offset=board.at_customize_offset, length=TABLE_SIZE))
    for p in board.partitions:
        if p.content is None:
            continue
        extra = formats[p.content.kind].extra_targets(p.name, board.module_name)
        targets = [partition_path(p.name)] + [partition_path(name) for name in extra]
        artifacts.append(Artifact(tuple(targets), p.content.kind, p.content.spec, p.content.sources,
                                  secret=p.content.secret, offset=p.offset, partition=p.name, length=p.content.size))
    for a in artifacts:   # names from board files, images and plugins: each target stays in the release folder
        for target in a.targets:
            problem = relative_name_problem(target)
            if problem:
                raise AtFactoryError(f"the output {target!r} {problem}; nothing is written outside the release folder")
    flashed = [[a.offset, a.targets[0]] for a in artifacts if a.offset is not None]
    artifacts.append(Artifact(("flash_map.svg",), KIND_FLASH_MAP, board_map_spec(board, firmware, formats)))
    artifacts.append(Artifact(("download.config",), KIND_DOWNLOAD_CONFIG, {
        "flash": [board.flash_mode, board.flash_freq, board.flash_size],
        "entries": flashed,
    }))
    return artifacts


def factory_image_path(board: Board) -> str:
    return f"factory/factory_{board.module_name}.bin"


def device_image_path(board: Board, device_id: str) -> str:
    """A device's factory image (devices/<device_id>/factory/...): its name says whose it is, so a
    copy taken out of its folder still does."""
    return f"factory/factory_{board.module_name}_{device_id}.bin"


def factory_image_artifact(board: Board, planned: Sequence[Artifact], release_dir: str, host=None,
                           display_base: Optional[str] = None) -> Artifact:
    """The factory image of a board: every flashed artifact, after ``atfactory_pre_merge``.

    Raises MergeError when the files overlap, do not fit the flash or do not exist."""
    flashed = [a for a in planned if a.offset is not None]
    images = sorted((a.offset, os.path.join(release_dir, a.targets[0])) for a in flashed)
    lengths = {os.path.join(release_dir, a.targets[0]): a.length for a in flashed}
    secret_paths = {os.path.join(release_dir, a.targets[0]) for a in flashed if a.secret}
    if host is not None:
        host.pre_merge(board, images)
    layout = []
    for offset, path in images:
        length = lengths.get(path)
        if length is None:
            if not os.path.isfile(path):
                raise MergeError(f"{board.id}: factory image: {display_path(path)} (added by "
                                 "atfactory_pre_merge) does not exist")
            length = os.path.getsize(path)
        layout.append((offset, display_path(path, display_base), length))
    try:
        check_layout(layout, board.flash_size_bytes)
    except MergeError as err:
        raise MergeError(f"{board.id}: {err}") from None
    return plan_factory_image(board, images, secret=any(p in secret_paths for _, p in images))


def plan_factory_image(board: Board, images: Sequence[Tuple[int, str]], secret: bool) -> Artifact:
    """The merge of ``images`` ((offset, absolute path), after the pre-merge hook)."""
    ordered = sorted(images)
    spec = {"chip": board.chip.name, "flash": [board.flash_mode, board.flash_freq, board.flash_size],
            "flash_bytes": board.flash_size_bytes, "offsets": [o for o, _ in ordered]}
    return Artifact((factory_image_path(board),), KIND_FACTORY_IMAGE, spec, tuple(p for _, p in ordered),
                    secret=secret)


def render_artifact(kind: str, spec: Dict[str, object], sources: Sequence[str],
                    formats: Optional[FormatRegistry] = None) -> bytes:
    """The bytes of one artifact from its recorded spec and input files."""
    fmt = (formats or stock_registry()).get(kind)
    if fmt is not None:
        return fmt.render(spec, sources)
    if kind == KIND_FIRMWARE_COPY:
        return read_input(sources[0])
    if kind == KIND_FIRMWARE_CUT:
        with open(sources[0], "rb") as f:
            f.seek(spec["start"])
            cut = bytearray(f.read(spec["length"]))
        cut += b"\xff" * (spec["length"] - len(cut))   # past the end of an image cut short: erased
        for offset, value in spec.get("patches", ()):
            cut[offset] = value
        return bytes(cut)
    if kind == KIND_FACTORY_IMAGE:
        mode, freq, size = spec["flash"]
        return merge_factory_image(spec["chip"], mode, freq, size, spec["flash_bytes"],
                                   list(zip(spec["offsets"], sources)))
    if kind == KIND_FLASH_MAP:
        return render_board_map(spec)
    if kind == KIND_DOWNLOAD_CONFIG:
        mode, freq, size = spec["flash"]
        return encode_download_config(DownloadConfig(mode, freq, size, tuple((o, p) for o, p in spec["entries"])))
    raise ValueError(f"unknown artifact kind {kind!r}")
