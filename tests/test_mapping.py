"""Flash maps of builds and of read-back images (atfactory.mapping), read back from their SVG.

A build writes flash_map.svg with the board's regions at scale, its AT partitions magnified in a
second column; ``atfactory inspect --map`` draws the same for any image, and refuses a binary that
has nothing to map.  The drawing itself is tested in test_flash_map.py.
"""
from __future__ import annotations

from helpers import image_of, run_cli


def _rects(svg_path):
    import xml.etree.ElementTree as ET
    root = ET.parse(svg_path).getroot()
    return root, [e for e in root.iter() if e.tag.endswith("rect") and e.get("data-name")]


def test_every_build_writes_a_flash_map(built):
    root, rects = _rects(built / "img/WROOM-32/flash_map.svg")
    assert root.tag.endswith("svg") and root.get("viewBox")
    column1 = {r.get("data-name"): r for r in rects if r.get("data-column") == "1" and not r.get("data-parent")}
    for name in ("bootloader", "partition table", "otadata", "nvs", "at_customize", "factory", "free"):
        assert name in column1, name
    # At scale: the 896K at_customize region is 896/4096 of the 1000-px bar.
    assert abs(float(column1["at_customize"].get("height")) - 1000 * 0xE0000 / 0x400000) < 1
    nested = {r.get("data-name"): r for r in rects if r.get("data-column") == "2"}
    for name in ("server_cert", "factory_param", "fatfs", "at_customize.bin"):
        assert name in nested, name
    assert nested["server_cert"].get("data-offset") == "0x24000" and nested["server_cert"].get("data-size") == "0x2000"
    # Inside the magnified region, 8K of 896K.
    assert abs(float(nested["server_cert"].get("height")) - 1000 * 0x2000 / 0xE0000) < 1
    # Without firmware a board's map still shows its AT partitions within the flash.
    _, rects = _rects(built / "out/ESP8266_1MB/flash_map.svg")
    assert {r.get("data-name") for r in rects} >= {"at_customize", "factory_param", "mqtt_ca", "free"}


def test_inspect_draws_a_map_of_any_image(built, capsys, tmp_path):
    svg = tmp_path / "map.svg"
    code, _, err = run_cli(capsys, "inspect", str(image_of(built, "ESP32C3-MINI-1")), "--map", str(svg))
    assert code == 0, err
    _, rects = _rects(svg)
    names = {r.get("data-name") for r in rects}
    assert {"bootloader", "at_customize", "ble_data", "factory_param"} <= names
    code, _, err = run_cli(capsys, "inspect", str(built / "out/WROOM-32/customized_partitions/ble_data.bin"),
                           "--map", str(svg))
    assert code == 2 and "nothing to map" in err
