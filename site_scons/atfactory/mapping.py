"""Flash maps of boards and of decoded images: what is where, as MapRegions for flash_map.

flash_map (the SVG drawing) is imported where a map is drawn, not here: every scons run plans
each board's map spec, and a run with nothing to build draws none.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from . import partition_table as pt
from .chips import CHIPS, flash_size_bytes
from .errors import AtFactoryError
from .formats import FormatRegistry, stock_registry
from .fsutil import write_atomic

if TYPE_CHECKING:
    from .flash_map import MapRegion

TABLE_OFFSET = pt.MAIN_TABLE_OFFSET
AT_TABLE_SECTOR = pt.AT_CUSTOMIZE_SECTOR


def _main_kind(ptype: int, subtype: int) -> str:
    if ptype == pt.AT_CUSTOMIZE_TYPE and subtype == pt.AT_CUSTOMIZE_SUBTYPE:
        return "at_customize"
    return {0x00: "app", 0x01: "data"}.get(ptype, "data")


def build_regions(bootloader_offset: Optional[int], main_entries: Sequence[Tuple[str, int, int, int, int]],
                  at_offset: Optional[int], at_size: Optional[int],
                  at_entries: Sequence[Tuple[str, int, int, str]], table_offset: int = TABLE_OFFSET) -> List[MapRegion]:
    """main_entries: (name, type, subtype, offset, size); at_entries: (name, offset, size, detail)."""
    from .flash_map import MapRegion

    children = [MapRegion("at_customize.bin", at_offset, AT_TABLE_SECTOR, "partition_table", "AT partition table")] \
        if at_offset is not None else []
    children += [MapRegion(name, offset, size, "erased" if detail.startswith("erased") else "at_partition", detail)
                 for name, offset, size, detail in at_entries]
    regions: List[MapRegion] = []
    if bootloader_offset is not None:
        regions.append(MapRegion("bootloader", bootloader_offset, table_offset - bootloader_offset, "bootloader"))
        regions.append(MapRegion("partition table", table_offset, 0x1000, "partition_table"))
    placed_at = False
    for name, ptype, subtype, offset, size in main_entries:
        kind = _main_kind(ptype, subtype)
        if kind == "at_customize":
            placed_at = True
            regions.append(MapRegion(name, offset, size, kind, "AT partitions", tuple(children)))
        else:
            regions.append(MapRegion(name, offset, size, kind))
    if not placed_at and at_offset is not None:
        end = max([at_offset + (at_size or 0)] + [o + s for _, o, s, _ in at_entries])
        regions.append(MapRegion("at_customize", at_offset, end - at_offset, "at_customize", "AT partitions",
                                 tuple(children)))
    return regions


def _content_detail(part: dict, formats: FormatRegistry) -> str:
    content = part.get("content", {})
    kind = content.get("kind", "")
    if kind == "erased" and part.get("image_end", part["offset"] + 1) <= part["offset"]:
        return "erased: past the end of the image"
    fmt = formats.get(kind)
    return fmt.map_detail(content) if fmt is not None else kind   # erased, invalid


def regions_of_document(doc: dict, formats: Optional[FormatRegistry] = None) -> Tuple[int, List[MapRegion]]:
    formats = formats or stock_registry()
    at = doc.get("at_customize") or {}
    entries = [(p["name"], p["offset"], p["size"], _content_detail(p, formats)) for p in at.get("partitions", [])]
    main = [(e["name"], e["type"], e["subtype"], e["offset"], e["size"])
            for e in (doc.get("partition_table") or {}).get("partitions", [])]
    boot = (doc.get("bootloader") or {}).get("offset")
    flash = doc.get("size") or 0
    size_name = (doc.get("flash") or {}).get("size")
    if size_name and any(size_name in c.flash_sizes for c in CHIPS.values()):
        # an image is drawn at its length, unless it is cut short of the flash it stands for
        flash = max(flash, flash_size_bytes(size_name)) if doc["kind"] != "image" or "image_end" in doc else flash
    table_offset = (doc.get("partition_table") or {}).get("offset", TABLE_OFFSET)
    return flash, build_regions(boot, main, at.get("offset"), at.get("size"), entries, table_offset)


def write_map_for_document(doc: dict, path: str, formats: Optional[FormatRegistry] = None) -> None:
    if "at_customize" not in doc and "partition_table" not in doc:
        raise AtFactoryError(f"--map: {doc.get('path')} is a {doc['kind']}, not an image or release folder; "
                             "nothing to map")
    flash, regions = regions_of_document(doc, formats)
    title = f"{doc.get('path', '')} ({doc.get('chip') or 'unknown chip'})"
    from .flash_map import render_flash_map
    write_atomic(path, render_flash_map(flash, regions, title).encode("utf-8"))


def board_map_spec(board, firmware=None, formats: Optional[FormatRegistry] = None) -> dict:
    """The JSON-able spec of a board's flash map: exactly what the drawing depends on."""
    formats = formats or stock_registry()
    at_entries = []
    for p in board.partitions:
        detail = formats[p.content.kind].board_map_detail(p.content) if p.content else "listed only"
        at_entries.append([p.name, p.offset, p.size, detail])
    main = []
    boot = None
    table_offset = TABLE_OFFSET
    if firmware is not None:
        boot = firmware.bootloader_offset
        table_offset = board.chip.table_offset(board.at_version)
        main = [[e.name, e.type, e.subtype, e.offset, e.size] for e in firmware.table.entries]
    spec = {"flash_bytes": board.flash_size_bytes, "title": f"{board.id}: {board.module_name} ({board.chip.title}, "
            f"{board.flash_size})", "bootloader": boot, "main": main, "at": [board.at_customize_offset,
            board.at_customize_size], "at_entries": at_entries}
    if table_offset != TABLE_OFFSET:   # only where it moved: the maps of every other board stay the same bytes
        spec["table_offset"] = table_offset
    return spec


def render_board_map(spec: dict) -> bytes:
    at_offset, at_size = spec["at"]
    regions = build_regions(spec["bootloader"], [tuple(e) for e in spec["main"]], at_offset, at_size,
                            [tuple(e) for e in spec["at_entries"]], spec.get("table_offset", TABLE_OFFSET))
    from .flash_map import render_flash_map
    return render_flash_map(spec["flash_bytes"], regions, spec["title"]).encode("utf-8")
