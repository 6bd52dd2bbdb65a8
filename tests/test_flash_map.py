"""The SVG flash map: read back with ElementTree, its geometry must match the layout at scale."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from atfactory.flash_map import BAR_HEIGHT, FONT_SIZE, MapRegion, human_size, render_flash_map

SVG = "{http://www.w3.org/2000/svg}"
FLASH_4MB = 0x400000

AT_CHILDREN = (
    MapRegion("ble_data", 0x21000, 0x3000, "at_partition"),
    MapRegion("server_cert", 0x24000, 0x2000, "at_partition", "1 certificate"),
    MapRegion("server_key", 0x26000, 0x2000, "at_partition"),
    MapRegion("server_ca", 0x28000, 0x2000, "at_partition"),
    MapRegion("client_cert", 0x2A000, 0x2000, "at_partition"),
    MapRegion("client_key", 0x2C000, 0x2000, "at_partition"),
    MapRegion("client_ca", 0x2E000, 0x2000, "at_partition"),
    MapRegion("factory_param", 0x30000, 0x1000, "at_partition", "factory_param"),
    MapRegion("fatfs", 0x70000, 0x90000, "at_partition"),
)
ESP32_LAYOUT = (
    MapRegion("bootloader", 0x1000, 0x7000, "bootloader"),
    MapRegion("partition_table", 0x8000, 0x1000, "partition_table"),
    MapRegion("phy_init", 0xF000, 0x1000, "data"),
    MapRegion("otadata", 0x10000, 0x2000, "data"),
    MapRegion("nvs", 0x12000, 0xE000, "data"),
    MapRegion("at_customize", 0x20000, 0xE0000, "at_customize", children=AT_CHILDREN),
    MapRegion("ota_0", 0x100000, 0x180000, "app"),
    MapRegion("ota_1", 0x280000, 0x180000, "app"),
)


def render(regions=ESP32_LAYOUT, flash_size=FLASH_4MB, title="ESP32 4MB") -> ET.Element:
    return ET.fromstring(render_flash_map(flash_size, regions, title))


def rects(root, column=None, kind=None):
    """The region and free-space rects (those with data-name), optionally of one column or kind."""
    return [r for r in root.iter(SVG + "rect") if "data-name" in r.attrib
            and (column is None or r.get("data-column") == str(column))
            and (kind is None or r.get("data-kind") == kind)]


def regions_of(rect_elements):
    return sorted((r.get("data-name"), int(r.get("data-offset"), 16), int(r.get("data-size"), 16),
                   r.get("data-kind")) for r in rect_elements)


def geometry(rect):
    return float(rect.get("y")), float(rect.get("height"))


def by_name(root, name, column=1):
    [rect] = [r for r in rects(root, column) if r.get("data-name") == name]
    return rect


def assert_tiles(pieces, start, end):
    """(offset, size) pieces cover [start, end) exactly: contiguous, no overlap, no gap."""
    cursor = start
    for offset, size in sorted(pieces):
        assert offset == cursor, f"gap or overlap at {hex(cursor)}"
        cursor = offset + size
    assert cursor == end


# --- the document -----------------------------------------------------------------------------

def test_svg_root_has_size_viewbox_and_title():
    root = render(title="ESP32-WROOM-32 AT")
    assert root.tag == SVG + "svg"
    width, height = float(root.get("width")), float(root.get("height"))
    assert width > 0 and height >= BAR_HEIGHT
    assert root.get("viewBox").split() == ["0", "0", root.get("width"), root.get("height")]
    assert root.find(SVG + "title").text == "ESP32-WROOM-32 AT"


def test_same_input_same_string_whatever_the_order():
    first = render_flash_map(FLASH_4MB, ESP32_LAYOUT, "t")
    assert render_flash_map(FLASH_4MB, ESP32_LAYOUT, "t") == first
    assert render_flash_map(FLASH_4MB, tuple(reversed(ESP32_LAYOUT)), "t") == first


# --- column 1: the whole flash ----------------------------------------------------------------

def test_one_rect_per_region_with_its_data_attributes():
    root = render()
    drawn = [r for r in rects(root, 1) if r.get("data-kind") != "free"]
    assert regions_of(drawn) == sorted((r.name, r.offset, r.size, r.kind) for r in ESP32_LAYOUT)
    assert by_name(root, "nvs").get("data-offset") == "0x12000"
    assert by_name(root, "nvs").get("data-size") == "0xe000"
    assert not any("data-problem" in r.attrib for r in rects(root))


def test_column1_is_the_whole_flash_at_scale():
    root = render()
    scale = BAR_HEIGHT / FLASH_4MB
    top, _ = geometry(next(r for r in rects(root, 1) if r.get("data-offset") == "0x0"))
    for rect in rects(root, 1):
        y, height = geometry(rect)
        offset, size = int(rect.get("data-offset"), 16), int(rect.get("data-size"), 16)
        assert abs(y - (top + offset * scale)) <= 1, rect.get("data-name")
        assert abs(height - size * scale) <= 1, rect.get("data-name")
    ota_1_y, ota_1_height = geometry(by_name(root, "ota_1"))
    assert abs(ota_1_y + ota_1_height - (top + BAR_HEIGHT)) <= 1   # the bar is BAR_HEIGHT for 4MB
    assert abs(ota_1_height - 375) <= 1                              # 1.5M of 4M


def test_bar_height_does_not_depend_on_flash_size():
    regions = (MapRegion("app", 0x10000, 0x100000, "app"),)
    for flash_size in (0x100000 * 2, 0x1000000):
        column = rects(render(regions, flash_size), 1)
        top = min(geometry(r)[0] for r in column)
        bottom = max(sum(geometry(r)) for r in column)
        assert abs(bottom - top - BAR_HEIGHT) <= 1


def test_free_rects_cover_exactly_the_gaps():
    root = render()
    free = rects(root, 1, kind="free")
    assert regions_of(free) == [("free", 0x0, 0x1000, "free"), ("free", 0x9000, 0x6000, "free")]
    column = rects(root, 1)
    assert sum(int(r.get("data-size"), 16) for r in column) == FLASH_4MB
    assert_tiles([(int(r.get("data-offset"), 16), int(r.get("data-size"), 16)) for r in column], 0, FLASH_4MB)
    assert all(r.get("fill") == "url(#free-hatch)" for r in free)
    assert root.find(f".//{SVG}pattern[@id='free-hatch']") is not None


def test_empty_flash_is_one_free_rect():
    [free] = rects(render(()), 1)
    assert (free.get("data-kind"), free.get("data-offset"), free.get("data-size")) == ("free", "0x0", "0x400000")


def test_tiny_region_is_still_visible():
    root = render()
    assert geometry(by_name(root, "partition_table"))[1] >= 1   # 4K of 4M is under a pixel at scale


# --- column 2: at_customize magnified ---------------------------------------------------------

def test_expanded_region_children_are_in_column2_at_its_scale():
    root = render()
    column = rects(root, 2)
    children = [r for r in column if r.get("data-kind") != "free"]
    assert regions_of(children) == sorted((c.name, c.offset, c.size, c.kind) for c in AT_CHILDREN)
    assert not [r for r in rects(root, 1) if r.get("data-name") in {c.name for c in AT_CHILDREN}]
    scale = BAR_HEIGHT / 0xE0000
    top = min(geometry(r)[0] for r in column)
    for rect in column:
        y, height = geometry(rect)
        offset, size = int(rect.get("data-offset"), 16), int(rect.get("data-size"), 16)
        assert abs(y - (top + (offset - 0x20000) * scale)) <= 1, rect.get("data-name")
        assert abs(height - size * scale) <= 1, rect.get("data-name")
    assert abs(geometry(by_name(root, "fatfs", 2))[1] - BAR_HEIGHT * 0x90000 / 0xE0000) <= 1


def test_free_space_inside_the_expanded_region_is_drawn():
    root = render()
    column = rects(root, 2)
    assert ("free", 0x20000, 0x1000, "free") in regions_of(column)      # at_customize.bin's sector
    assert ("free", 0x31000, 0x3F000, "free") in regions_of(column)     # factory_param .. fatfs
    assert_tiles([(int(r.get("data-offset"), 16), int(r.get("data-size"), 16)) for r in column],
                 0x20000, 0x100000)


def test_trapezoid_joins_the_region_to_its_magnified_column():
    root = render()
    [polygon] = root.iter(SVG + "polygon")
    ys = sorted(float(point.split(",")[1]) for point in polygon.get("points").split())
    region_y, region_height = geometry(by_name(root, "at_customize"))
    column = rects(root, 2)
    column_top = min(geometry(r)[0] for r in column)
    column_bottom = max(sum(geometry(r)) for r in column)
    assert ys == pytest.approx(sorted([region_y, region_y + region_height, column_top, column_bottom]), abs=0.02)


def test_only_the_first_region_with_children_is_expanded():
    other = MapRegion("extra", 0x300000, 0x40000, "data", children=(
        MapRegion("inner_a", 0x300000, 0x10000, "at_partition"),
        MapRegion("inner_b", 0x320000, 0x8000, "at_partition"),
    ))
    regions = ESP32_LAYOUT[:-1] + (MapRegion("ota_1", 0x280000, 0x80000, "app"), other)
    root = render(regions)
    assert {r.get("data-name") for r in rects(root, 2)} - {"free"} == {c.name for c in AT_CHILDREN}
    scale = BAR_HEIGHT / FLASH_4MB
    top, _ = geometry(next(r for r in rects(root, 1) if r.get("data-offset") == "0x0"))
    inner = [r for r in rects(root, 1) if r.get("data-parent") == "extra"]
    assert regions_of(inner) == [("inner_a", 0x300000, 0x10000, "at_partition"),
                                 ("inner_b", 0x320000, 0x8000, "at_partition")]
    for rect in inner:
        y, height = geometry(rect)
        assert abs(y - (top + int(rect.get("data-offset"), 16) * scale)) <= 1
        assert abs(height - int(rect.get("data-size"), 16) * scale) <= 1


def test_without_children_there_is_one_column():
    root = render(tuple(r for r in ESP32_LAYOUT if not r.children))
    assert rects(root, 2) == []
    assert list(root.iter(SVG + "polygon")) == []
    assert float(root.get("width")) < float(render().get("width"))


# --- labels -----------------------------------------------------------------------------------

def labels(root):
    return [t for t in root.iter(SVG + "text") if t.get("class") == "label"]


def test_every_region_and_gap_is_labelled_with_offset_and_size():
    texts = [t.text for t in labels(render())]
    assert "nvs  0x12000  56K (0xe000)" in texts
    assert "ota_0  0x100000  1.5M (0x180000)" in texts
    assert "factory_param  0x30000  4K (0x1000)  factory_param" in texts
    assert "free  0x9000  24K (0x6000)" in texts
    for region in ESP32_LAYOUT + AT_CHILDREN:
        assert any(t.startswith(f"{region.name}  {hex(region.offset)}  ") for t in texts), region.name
    assert len(texts) == len(rects(render()))


def test_labels_do_not_overlap():
    root = render()
    columns = {}
    for text in labels(root):
        columns.setdefault(text.get("x"), []).append(float(text.get("y")))
    assert len(columns) == 2
    for ys in columns.values():
        ys.sort()
        assert all(b - a >= FONT_SIZE for a, b in zip(ys, ys[1:])), ys


def test_each_label_has_a_leader_line_to_its_region():
    root = render()
    lines = list(root.iter(SVG + "polyline"))
    assert len(lines) == len(labels(root))
    nvs_y, nvs_height = geometry(by_name(root, "nvs"))
    ends = [float(line.get("points").split()[-1].split(",")[1]) for line in lines]
    assert any(abs(end - (nvs_y + nvs_height / 2)) < 0.02 for end in ends)


@pytest.mark.parametrize("size,text", [(0x1000, "4K"), (0x180000, "1.5M"), (0x90000, "576K"),
                                       (0x400000, "4M"), (100, "100B")])
def test_human_size(size, text):
    assert human_size(size) == text


# --- broken layouts and awkward names ---------------------------------------------------------

def test_overlap_and_past_end_are_drawn_and_marked():
    regions = (
        MapRegion("nvs", 0x9000, 0x6000, "data"),
        MapRegion("phy_init", 0xE000, 0x1000, "data"),          # overlaps nvs's last page
        MapRegion("ota_0", 0x10000, 0x100000, "app"),
        MapRegion("too_big", 0x380000, 0x100000, "app"),         # ends 1M past a 4M flash
        MapRegion("beyond", 0x500000, 0x1000, "data"),           # starts past the end
    )
    root = render(regions)
    problems = {r.get("data-name"): r.get("data-problem") for r in rects(root, 1) if r.get("data-kind") != "free"}
    assert problems == {"nvs": "overlap", "phy_init": "overlap", "ota_0": None,
                        "too_big": "past-end", "beyond": "past-end"}
    assert by_name(root, "too_big").get("stroke") == by_name(root, "nvs").get("stroke") != by_name(root, "ota_0").get("stroke")
    free = rects(root, 1, kind="free")
    assert regions_of(free) == [("free", 0x0, 0x9000, "free"), ("free", 0xF000, 0x1000, "free"),
                                ("free", 0x110000, 0x270000, "free")]
    assert any("[past-end]" in t.text for t in labels(root))


def test_children_outside_their_region_are_marked():
    region = MapRegion("at_customize", 0x20000, 0x10000, "at_customize", children=(
        MapRegion("early", 0x1F000, 0x2000, "at_partition"),
        MapRegion("ok", 0x24000, 0x1000, "at_partition"),
        MapRegion("late", 0x2F000, 0x2000, "at_partition"),
    ))
    problems = {r.get("data-name"): r.get("data-problem") for r in rects(render((region,)), 2)}
    assert problems == {"early": "outside-parent", "ok": None, "late": "outside-parent", "free": None}


def test_names_and_title_are_escaped():
    svg = render_flash_map(FLASH_4MB, (MapRegion("a<b&c", 0x9000, 0x1000, 'k"ind', detail="x>y"),), "t<&>")
    assert "a&lt;b&amp;c" in svg and "a<b&c" not in svg
    root = ET.fromstring(svg)
    rect = by_name(root, "a<b&c")
    assert rect.get("data-kind") == 'k"ind'
    assert root.find(SVG + "title").text == "t<&>"
    assert any(t.text == "a<b&c  0x9000  4K (0x1000)  x>y" for t in labels(root))


def test_control_characters_do_not_break_the_xml():
    root = render((MapRegion("bad\x01name", 0x9000, 0x1000, "data"),))
    assert by_name(root, "bad?name") is not None
