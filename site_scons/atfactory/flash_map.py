"""An SVG map of a flash chip, so that one look shows what is where.

Column 1 is the whole flash as one bar, BAR_HEIGHT pixels high for any flash size, so a region's
height is its share of the flash.  At that scale a 4K region of a 4M flash is a pixel high, so
labels ("nvs  0x12000  56K (0xe000)") sit in a column of their own, spread apart, with leader
lines to their regions.  The lowest region with children (at_customize) is magnified in column 2
at its own scale, joined to its place in column 1 by a trapezoid.  Space no region covers is
hatched and labelled "free"; overlapping regions and regions past the end are drawn anyway, in
red, so a broken layout still shows what is wrong.  Rects carry data-name, data-offset,
data-size, data-kind (and data-problem) so that tests and tools can read the map back.
"""
from __future__ import annotations

import html
import re
import zlib
from dataclasses import dataclass
from typing import List, Sequence, Tuple

from .layout import overlapping

BAR_HEIGHT = 1000.0
BAR_WIDTH = 120.0
CHILD_INSET = 14.0       # children drawn inside their parent in column 1 leave its colour showing
TOP = 76.0               # title, legend and column headings sit above the bars
MARGIN = 20.0
CONNECTOR_WIDTH = 110.0
LEADER = 40.0            # room between a label column and its bar for the leader lines
FONT_SIZE = 11.0
CHAR_WIDTH = 6.7         # a monospace character at FONT_SIZE; label columns are sized with it
LABEL_SPACING = 14.0     # least distance between two labels' centres

KIND_FILLS = {
    "bootloader": "#f4a261", "partition_table": "#e9c46a", "app": "#8ab17d", "data": "#7fb8dc",
    "at_customize": "#b39ddb", "at_partition": "#e1d5f5", "erased": "#ffffff",
}
OTHER_FILLS = ("#f28482", "#84a59d", "#f6bd60", "#90be6d", "#43aa8b", "#c9ada7")
FREE = "free"
PROBLEM_COLOUR = "#d00000"
HATCH = ('<pattern id="free-hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
         'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f0f0f0"/>'
         '<line x1="0" y1="0" x2="0" y2="6" stroke="#c4c4c4" stroke-width="2"/></pattern>')


@dataclass(frozen=True)
class MapRegion:
    name: str
    offset: int
    size: int
    kind: str              # picks the colour: "bootloader", "app", "data", "at_partition"...
    detail: str = ""       # short text after the label: "factory_param", "3 certificates"
    children: tuple = ()   # MapRegions inside this one (AT partitions in at_customize)

    @property
    def end(self) -> int:
        return self.offset + self.size


Item = Tuple[MapRegion, Tuple[str, ...]]   # a region or free gap, and its problems
Label = Tuple[float, str, bool]            # centre y of what it names, its text, problem or not


class _Bar:
    """One column's regions and free gaps over [start, limit), at one scale.  A region past the
    end widens the view rather than being cut off, so that it is still drawn at scale."""

    def __init__(self, regions: Sequence[MapRegion], start: int, limit: int, outside: str):
        self.items = sorted(_problems(regions, start, limit, outside) + _free(regions, start, limit),
                            key=lambda item: _order(item[0]))
        self.view_start = min([start] + [r.offset for r in regions])
        view_end = max([limit] + [r.end for r in regions])
        self.scale = BAR_HEIGHT / max(view_end - self.view_start, 1)

    def y(self, address: int) -> float:
        return TOP + (address - self.view_start) * self.scale

    def height(self, size: int) -> float:
        return max(size * self.scale, 1.0)   # a region thinner than a pixel still shows


def _order(region: MapRegion):
    return (region.offset, region.size, region.name, region.kind)


def _problems(regions: Sequence[MapRegion], start: int, limit: int, outside: str) -> List[Item]:
    """The regions in order, each with what is wrong with it: "overlap", `outside` [start, limit)."""
    ordered = sorted(regions, key=_order)
    clashing = overlapping((r.offset, r.end, r) for r in ordered)
    return [(r, ("overlap",) * any(r is c for c in clashing) + (outside,) * (r.offset < start or r.end > limit))
            for r in ordered]


def _free(regions: Sequence[MapRegion], start: int, limit: int) -> List[Item]:
    """The gaps in [start, limit) that no region covers."""
    gaps, cursor = [], start
    for r in sorted(regions, key=_order):
        gap_end = min(r.offset, limit)
        if gap_end > cursor:
            gaps.append((MapRegion(FREE, cursor, gap_end - cursor, FREE), ()))
        cursor = max(cursor, r.end)
    if cursor < limit:
        gaps.append((MapRegion(FREE, cursor, limit - cursor, FREE), ()))
    return gaps


def human_size(n: int) -> str:
    """0x1000 -> "4K", 0x180000 -> "1.5M", 100 -> "100B"."""
    for unit, factor in (("M", 1 << 20), ("K", 1 << 10)):
        if abs(n) >= factor:
            return f"{n / factor:.1f}".rstrip("0").rstrip(".") + unit
    return f"{n}B"


_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(s: str) -> str:
    """Text for an SVG element or attribute: escaped, and without characters XML 1.0 forbids."""
    return html.escape(_NOT_XML.sub("?", str(s)), quote=True)


def _n(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


def _fill(kind: str) -> str:
    if kind == FREE:
        return "url(#free-hatch)"
    # crc32, not hash(): str hashes change from run to run, and the output must not.
    return KIND_FILLS.get(kind) or OTHER_FILLS[zlib.crc32(kind.encode()) % len(OTHER_FILLS)]


def _label_text(region: MapRegion, problems: Tuple[str, ...]) -> str:
    text = f"{region.name}  {hex(region.offset)}  {human_size(region.size)} ({hex(region.size)})"
    if region.detail:
        text += f"  {region.detail}"
    return text + "".join(f"  [{p}]" for p in problems)


def _rect(item: Item, x: float, y: float, width: float, height: float, column: int, parent="") -> str:
    region, problems = item
    stroke = (f'stroke="{PROBLEM_COLOUR}" stroke-width="2" fill-opacity="0.7" data-problem="{" ".join(problems)}"'
              if problems else 'stroke="#555555" stroke-width="0.5"')
    stroke += f' data-parent="{_text(parent)}"' if parent else ""
    return (f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(width)}" height="{_n(height)}" '
            f'fill="{_fill(region.kind)}" {stroke} data-name="{_text(region.name)}" '
            f'data-offset="{hex(region.offset)}" data-size="{hex(region.size)}" '
            f'data-kind="{_text(region.kind)}" data-column="{column}">'
            f'<title>{_text(_label_text(region, problems))}</title></rect>')


def _draw_bar(out: List[str], bar: _Bar, column: int, expanded=None) -> List[Label]:
    """Rects for a bar's regions (and inset children of all but the expanded one); their labels."""
    labels: List[Label] = []
    for region, problems in bar.items:
        y, height = bar.y(region.offset), bar.height(region.size)
        out.append(_rect((region, problems), 0.0, y, BAR_WIDTH, height, column))
        labels.append((y + height / 2, _label_text(region, problems), bool(problems)))
        if region.children and region is not expanded:
            for child in _problems(region.children, region.offset, region.end, "outside-parent"):
                cy, ch = bar.y(child[0].offset), bar.height(child[0].size)
                out.append(_rect(child, CHILD_INSET, cy, BAR_WIDTH - CHILD_INSET, ch, column, region.name))
                labels.append((cy + ch / 2, _label_text(*child), bool(child[1])))
    return labels


def _spread(wanted: Sequence[float], low: float, gap: float) -> List[float]:
    """Positions for labels wanted at the sorted `wanted` y's, at least `gap` apart and not above
    `low`.  Crowded labels form a cluster centred on where its members want to be, so a run of
    small regions gets its labels around it rather than all pushed below it."""
    clusters: List[List[float]] = []   # [top, wanted y of each member...]
    for w in wanted:
        clusters.append([max(low, w), w])
        while len(clusters) > 1 and clusters[-2][0] + gap * (len(clusters[-2]) - 1) > clusters[-1][0] + 1e-9:
            members = clusters.pop()[1:]
            members = clusters.pop()[1:] + members
            top = sum(members) / len(members) - gap * (len(members) - 1) / 2
            clusters.append([max(low, top)] + members)
    return [c[0] + gap * i for c in clusters for i in range(len(c) - 1)]


def _draw_labels(out: List[str], labels: List[Label], text_x: float, bar_edge: float) -> float:
    """Labels at text_x, anchored towards the bar at bar_edge, with leader lines; the lowest y."""
    toward, anchor = (1, "end") if bar_edge > text_x else (-1, "start")
    labels = sorted(labels, key=lambda label: label[0])
    ys = _spread([centre for centre, _, _ in labels], TOP, LABEL_SPACING)
    for (centre, text, problem), y in zip(labels, ys):
        colour = PROBLEM_COLOUR if problem else "#222222"
        points = [(text_x + 4 * toward, y), (text_x + 12 * toward, y), (bar_edge - 6 * toward, centre),
                  (bar_edge, centre)]
        out.append(f'<polyline points="{" ".join(f"{_n(a)},{_n(b)}" for a, b in points)}" fill="none" '
                   f'stroke="{colour if problem else "#888888"}" stroke-width="0.75"/>')
        out.append(f'<text class="label" x="{_n(text_x)}" y="{_n(y + FONT_SIZE * 0.35)}" '
                   f'text-anchor="{anchor}" fill="{colour}">{_text(text)}</text>')
    return max(ys, default=TOP)


def _label_width(labels: List[Label]) -> float:
    return max((len(text) for _, text, _ in labels), default=0) * CHAR_WIDTH


def render_flash_map(flash_size: int, regions: Sequence[MapRegion], title: str) -> str:
    """An SVG document (str) showing every region of flash at scale, labelled, free space hatched.

    Regions may come in any order; the lowest one with children is magnified in column 2.
    Each bar is a <g> translated to its column: rect x is relative to it, y is absolute.
    """
    regions = sorted(regions, key=_order)
    expanded = next((r for r in regions if r.children), None)
    flash = _Bar(regions, 0, flash_size, "past-end")
    bar1: List[str] = []
    labels1 = _draw_bar(bar1, flash, 1, expanded)
    bar1_x = MARGIN + _label_width(labels1) + LEADER
    bar1.append(_outline(flash.y(0), flash_size * flash.scale))
    if flash.y(flash_size) < TOP + BAR_HEIGHT - 0.5:   # something lies past the end: show where it is
        bar1.append(f'<line x1="-8" y1="{_n(flash.y(flash_size))}" x2="{_n(BAR_WIDTH + 8)}" '
                    f'y2="{_n(flash.y(flash_size))}" stroke="{PROBLEM_COLOUR}" stroke-dasharray="4 2"/>')
    out = [f'<g transform="translate({_n(bar1_x)},0)">', *bar1, "</g>"]
    lowest = _draw_labels(out, labels1, bar1_x - LEADER, bar1_x)
    headings = [(bar1_x, f"flash {human_size(flash_size)} ({hex(flash_size)})")]
    width = bar1_x + BAR_WIDTH + MARGIN

    if expanded:
        inside = _Bar(expanded.children, expanded.offset, expanded.end, "outside-parent")
        bar2_x, right = bar1_x + BAR_WIDTH + CONNECTOR_WIDTH, bar1_x + BAR_WIDTH
        top, bottom = flash.y(expanded.offset), flash.y(expanded.offset) + flash.height(expanded.size)
        top2, bottom2 = inside.y(expanded.offset), inside.y(expanded.end)
        out.insert(0, f'<polygon points="{_n(right)},{_n(top)} {_n(bar2_x)},{_n(top2)} {_n(bar2_x)},{_n(bottom2)} '
                      f'{_n(right)},{_n(bottom)}" fill="{_fill(expanded.kind)}" fill-opacity="0.35" '
                      f'stroke="#777777" stroke-width="0.75"/>')
        bar2: List[str] = []
        labels2 = _draw_bar(bar2, inside, 2)
        out += [f'<g transform="translate({_n(bar2_x)},0)">', *bar2, _outline(top2, bottom2 - top2), "</g>"]
        lowest = max(lowest, _draw_labels(out, labels2, bar2_x + BAR_WIDTH + LEADER, bar2_x + BAR_WIDTH))
        headings.append((bar2_x, f"{expanded.name} {human_size(expanded.size)} magnified"))
        width = bar2_x + BAR_WIDTH + LEADER + _label_width(labels2) + MARGIN

    kinds = list(dict.fromkeys(r.kind for r in regions + [c for r in regions for c in r.children])) + [FREE]
    legend, legend_end = _legend(kinds)
    width = max(width, legend_end + MARGIN, MARGIN * 2 + len(title) * 10)   # title: 16 px bold
    height = max(TOP + BAR_HEIGHT, lowest + FONT_SIZE) + MARGIN
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" font-family="DejaVu Sans Mono, monospace" '
        f'font-size="{_n(FONT_SIZE)}">',
        f"<title>{_text(title)}</title>",
        f"<defs>{HATCH}</defs>",
        f'<rect width="{_n(width)}" height="{_n(height)}" fill="#ffffff"/>',
        f'<text x="{_n(MARGIN)}" y="26" font-size="16" font-weight="bold">{_text(title)}</text>',
        *legend,
        *(f'<text x="{_n(x + BAR_WIDTH / 2)}" y="{_n(TOP - 8)}" text-anchor="middle" '
          f'font-weight="bold">{_text(text)}</text>' for x, text in headings),
    ]
    return "\n".join(head + out + ["</svg>"]) + "\n"


def _outline(y: float, height: float) -> str:
    return (f'<rect x="0" y="{_n(y)}" width="{_n(BAR_WIDTH)}" height="{_n(height)}" fill="none" '
            f'stroke="#222222" stroke-width="1.5"/>')


def _legend(kinds: Sequence[str]) -> Tuple[List[str], float]:
    """A swatch and a name for each kind, in one row under the title; the row's right end."""
    items, x = [], MARGIN
    for kind in kinds:
        items.append(f'<rect x="{_n(x)}" y="42" width="12" height="12" fill="{_fill(kind)}" stroke="#555555" '
                     f'stroke-width="0.5"/><text x="{_n(x + 16)}" y="52">{_text(kind)}</text>')
        x += 16 + len(kind) * CHAR_WIDTH + 14
    return items, x
