"""End to end: `scons board=<file>` writes the reference bytes for a representative set of boards."""
from __future__ import annotations

from pathlib import Path

from atfactory.download_config import decode_download_config

from helpers import run_scons, write
from reference_boards import (
    PKI_LAYOUTS, PKI_PARTITIONS, at_customize_board, factory_param_board, first_difference, pki_layout,
    pki_sources, read_factory_param_rows,
)


def _row(reference: Path, release: str, platform: str, module: str):
    rows = read_factory_param_rows(reference / "factory_param" / "inputs" / release / "factory_param_data.csv")
    return next(r for r in rows if (r["platform"], r["module_name"]) == (platform, module))


def test_scons_builds_the_reference_bytes(reference, tmp_path):
    # board id -> (board text, {file of the release folder: expected bytes}, other .bin files it
    # writes, what stderr must contain)
    boards = {}

    # Two factory_param rows: an SDIO module (all -1) and an ESP8266 module with a TX control pin.
    for release, platform, module, at_version in [("v2.4.2.0", "PLATFORM_ESP32", "ESP32-SDIO", "2.4"),
                                                  ("v2.2.1.0_esp8266", "PLATFORM_ESP8266", "WROOM-5V2L", "2.2")]:
        expected = (reference / "factory_param" / release / platform / f"{module}.bin").read_bytes()
        boards[f"fp-{module}"] = (
            factory_param_board(_row(reference, release, platform, module), at_version),
            {"customized_partitions/factory_param.bin": expected,
             f"customized_partitions/factory_param_{module}.bin": expected},
            {"at_customize.bin"},
            None,
        )

    # Two partition layouts: ESP32-C3 QCLOUD, and ESP8266's default with its duplicate subtype.
    for family in ("v2.4.2.0/module_esp32c3_qcloud", "v2.2.1.0_esp8266/module_esp8266_default"):
        folder = reference / "partition_table" / family
        boards[f"layout-{folder.name}"] = (
            at_customize_board(folder),
            {"at_customize.bin": (folder / "at_customize.bin").read_bytes()},
            {"customized_partitions/factory_param.bin", f"customized_partitions/factory_param_{folder.name}.bin"},
            "wpa2_cert].subtype = 8" if "esp8266" in family else None,
        )

    # The AT v2.4 PKI board on module_esp32_default with WROOM-32's factory_param and a GATT table.
    folder, row = pki_layout(reference, "2.4")
    sources = dict(pki_sources(reference), ble_data=[reference / "ble_data" / "inputs" / "example.csv"])
    expected = {f"customized_partitions/{p}.bin": (reference / "pki" / f"{p}.bin").read_bytes() for p in PKI_PARTITIONS}
    fp_bin = (reference / "factory_param" / PKI_LAYOUTS["2.4"][2] / "PLATFORM_ESP32" / "WROOM-32.bin").read_bytes()
    expected.update({
        "at_customize.bin": (folder / "at_customize.bin").read_bytes(),
        "customized_partitions/ble_data.bin": (reference / "ble_data" / "example.bin").read_bytes(),
        "customized_partitions/factory_param.bin": fp_bin,
        "customized_partitions/factory_param_WROOM-32.bin": fp_bin,
    })
    boards["pki-v24"] = (at_customize_board(folder, sources=sources, factory_row=row, at_version="2.4"),
                         expected, set(), None)

    build_dir = tmp_path / "out"
    for board_id, (text, files, others, warning) in boards.items():
        path = write(tmp_path / "boards" / f"{board_id}.toml", text)
        result = run_scons(f"board={path}", f"build_dir={build_dir}", cwd=tmp_path)
        assert result.returncode == 0, f"{board_id}: scons failed\n{result.stdout}\n{result.stderr}"
        # Espressif's own pins put a UART pin on a strapping pin (GPIO15): those warnings are expected.
        unexpected = [line for line in result.stderr.splitlines() if "warning" in line and "is a strapping pin of" not in line]
        if warning:
            assert "atfactory: warning:" in result.stderr and warning in result.stderr, result.stderr
        else:
            assert unexpected == [], result.stderr
        release = build_dir / board_id
        for name, data in files.items():
            out = release / name
            assert out.is_file(), f"{board_id}: scons did not write {name}; it wrote " \
                                  f"{sorted(str(p.relative_to(release)) for p in release.rglob('*.bin'))}"
            diff = first_difference(out.read_bytes(), data)
            assert not diff, f"{board_id}/{name}: {diff}"
        written = {p.relative_to(release).as_posix() for p in release.rglob("*.bin")}
        assert written == set(files) | others
        # download.config names every flashed file (factory_param_<MODULE>.bin is a copy).
        config = decode_download_config((release / "download.config").read_bytes())
        assert {path for _, path in config.entries} == \
            {f for f in written if not f.startswith("customized_partitions/factory_param_")}

    # A second run over an unchanged board builds nothing.
    path = tmp_path / "boards" / "pki-v24.toml"
    again = run_scons(f"board={path}", f"build_dir={build_dir}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stdout, again.stdout
