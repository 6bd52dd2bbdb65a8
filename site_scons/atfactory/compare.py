"""``diff``'s byte comparison: every byte of two inputs, region by region.

The document diff says what a difference means (a field, a certificate); this says that nothing
differs unseen.  Each input's bytes are cut into named regions from its own layout (bootloader,
partition table, the partitions of the main table, at_customize.bin, each AT partition, free
space between them); a region where the bytes differ is reported with its range, the count of
differing bytes and the first differing offset, and bytes past the end of the shorter input
are a region of their own.  A single partition is one region.
"""
from __future__ import annotations

from typing import List, NamedTuple, Sequence, Tuple

from . import partition_table as pt

FREE = "free space"
CHUNK = 1 << 16


class Region(NamedTuple):
    start: int
    end: int
    label: str


def flash_regions(doc: dict) -> List[Region]:
    """The named spans of an image or release folder as its decoded document lays them out; a
    smaller span inside a larger one (an AT partition inside at_customize) names its bytes."""
    spans: List[Region] = []
    table = doc.get("partition_table") or {}
    boot = doc.get("bootloader") or {}
    boot_start = boot.get("offset", 0)
    if "offset" in table and table["offset"] > boot_start:
        spans.append(Region(boot_start, table["offset"], "bootloader"))
    elif "length" in boot:
        spans.append(Region(boot_start, boot_start + boot["length"], "bootloader"))
    if "offset" in table:
        spans.append(Region(table["offset"], table["offset"] + pt.AT_CUSTOMIZE_SECTOR, "partition table"))
    for e in table.get("partitions", []):
        if (e["type"], e["subtype"]) == (pt.AT_CUSTOMIZE_TYPE, pt.AT_CUSTOMIZE_SUBTYPE):
            label = f"{e['name']} region, in no AT partition"
        else:
            label = f"{'app' if e['type'] == pt.TYPES['app'] else 'partition'} {e['name']}"
        spans.append(Region(e["offset"], e["offset"] + e["size"], label))
    at = doc.get("at_customize")
    if at:
        spans.append(Region(at["offset"], at["offset"] + pt.AT_CUSTOMIZE_SECTOR, "at_customize.bin"))
        spans += [Region(p["offset"], p["offset"] + p["size"], f"AT partition {p['name']}") for p in at["partitions"]]
    if not table.get("partitions"):   # a release folder without a main table: its other files
        named = {s.start for s in spans}
        spans += [Region(f["offset"], f["offset"] + f["length"], f"file {f['path']}")
                  for f in doc.get("files", []) if f["offset"] not in named]
    return spans


def whole_file(doc: dict, length: int) -> List[Region]:
    """A single partition or table: one region."""
    kind = doc.get("expected") or doc.get("kind", "file")
    return [Region(0, length, kind)]


def _label_at(spans: Sequence[Region], start: int, end: int) -> str:
    """The smallest span covering [start, end) (the last of equals), else free space."""
    covering = [s for s in spans if s.start <= start and end <= s.end]
    if not covering:
        return FREE
    return min(reversed(covering), key=lambda s: s.end - s.start).label


def _segments(a_spans: Sequence[Region], b_spans: Sequence[Region], length: int) -> List[Region]:
    """[0, length) cut where either input's spans begin or end, consecutive pieces of the same
    name joined; a piece the two inputs name differently says both names."""
    points = sorted({0, length} | {p for s in list(a_spans) + list(b_spans) for p in (s.start, s.end)
                                   if 0 < p < length})
    out: List[Region] = []
    for start, end in zip(points, points[1:]):
        a, b = _label_at(a_spans, start, end), _label_at(b_spans, start, end)
        label = a if a == b else f"{a} in the first, {b} in the second"
        if out and out[-1].label == label and out[-1].end == start:
            out[-1] = Region(out[-1].start, end, label)
        else:
            out.append(Region(start, end, label))
    return out


def count_differences(a: bytes, b: bytes, start: int, end: int) -> Tuple[int, int]:
    """(differing bytes, first differing offset or -1) of a[start:end] and b[start:end]."""
    count, first = 0, -1
    for lo in range(start, end, CHUNK):
        hi = min(end, lo + CHUNK)
        x, y = a[lo:hi], b[lo:hi]
        if x == y:
            continue
        xor = (int.from_bytes(x, "little") ^ int.from_bytes(y, "little")).to_bytes(hi - lo, "little")
        count += (hi - lo) - xor.count(0)
        if first < 0:
            first = lo + (hi - lo) - len(xor.lstrip(b"\0"))
    return count, first


def region_differences(a: bytes, a_spans: Sequence[Region], b: bytes, b_spans: Sequence[Region]) -> List[dict]:
    """One record per region whose bytes differ: ``region`` (its name), ``start``, ``end``,
    ``differing`` bytes and the ``first`` differing offset; bytes past the end of the shorter
    input are a record with ``only_in`` ("first" or "second") instead of the last two."""
    shorter = min(len(a), len(b))
    found = []
    for region in _segments(a_spans, b_spans, shorter):
        count, first = count_differences(a, b, region.start, region.end)
        if count:
            found.append({"region": region.label, "start": region.start, "end": region.end, "differing": count,
                          "first": first})
    if len(a) != len(b):
        longer, short = ("first", "second") if len(a) > len(b) else ("second", "first")
        found.append({"region": f"past the end of the {short}", "start": shorter, "end": max(len(a), len(b)),
                      "only_in": longer})
    return found


def region_line(r: dict) -> str:
    span = f"{r['region']} (0x{r['start']:x}-0x{r['end']:x})"
    if "only_in" in r:
        return f"{span}: {r['end'] - r['start']} bytes only in the {r['only_in']}"
    return f"{span}: {r['differing']} of {r['end'] - r['start']} bytes differ, the first at 0x{r['first']:x}"
