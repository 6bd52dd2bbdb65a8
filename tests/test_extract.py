"""Extract (atfactory.extract, ``atfactory extract``): a build or image back to a board file and its inputs.

What is extracted from every shipped build renders the same bytes again, with private keys
owner-only; a factory image extracted and built again by scons with the same firmware is
byte-identical to the original.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from atfactory.artifacts import plan_board, render_artifact
from helpers import SHIPPED, image_of, run_cli, run_scons


def _rebuild_matches(board_of, board_path: Path, flash: bytes):
    """Every AT artifact of the extracted board equals the flash it was extracted from."""
    prepared = board_of(str(board_path))
    for artifact in plan_board(prepared.board):
        if artifact.offset is None:
            continue
        data = render_artifact(artifact.kind, artifact.spec, artifact.sources)
        assert flash[artifact.offset:artifact.offset + len(data)] == data, artifact.targets[0]
    return prepared.board


@pytest.mark.parametrize("board_id", SHIPPED)
def test_extract_then_rebuild_every_shipped_build(built, board_of, capsys, tmp_path, board_id):
    from atfactory.readback import read_flash
    folder = built / "out" / board_id
    code, out, err = run_cli(capsys, "extract", str(folder), "-o", str(tmp_path / "x"))
    assert code == 0, err
    board_file = Path(out.split("wrote ", 1)[1].splitlines()[0])
    flash, _ = read_flash(str(folder))
    if board_id == "ACME-W32":
        return  # device_info is a plugin partition: extracted as raw data, checked in the scons test below
    board = _rebuild_matches(board_of, board_file, flash)
    for key in (tmp_path / "x").rglob("*.key"):
        assert key.stat().st_mode & 0o077 == 0
    assert board.flash_size == board_of(board_id).board.flash_size


@pytest.mark.parametrize("board_id", ["WROOM-32", "WROOM-02", "ACME-W32"])
def test_extract_image_then_scons_rebuild_is_byte_identical(built, capsys, tmp_path, board_id):
    image = image_of(built, board_id)
    code, out, err = run_cli(capsys, "extract", str(image), "-o", str(tmp_path / "x"))
    assert code == 0, err
    board_file = Path(out.split("wrote ", 1)[1].splitlines()[0])
    # The extracted board is plain: plugin partitions (ACME's device_info) come back as raw data.
    r = run_scons(f"board={board_file}", f"firmware={image}", "build_dir=rb", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    rebuilt = next((tmp_path / "rb" / board_file.stem / "factory").glob("factory_*.bin"))
    assert rebuilt.read_bytes() == image.read_bytes()


@pytest.mark.parametrize("name", ["../../evil", "a/b", ".hidden"])
def test_extract_never_turns_an_image_partition_name_into_a_path(capsys, tmp_path, name):
    """Partition names read from an image are data: a name no board can hold stops extract
    before anything is written, wherever it would have pointed."""
    import dataclasses

    from atfactory import partition_table as pt

    r = run_scons("board=WROOM-32", "build_dir=out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "out/WROOM-32"
    table = pt.decode_partition_table((folder / "at_customize.bin").read_bytes())
    entries = [dataclasses.replace(e, name=name) if e.name == "client_ca" else e for e in table.entries]
    (folder / "at_customize.bin").write_bytes(pt.encode_partition_table(entries, md5=table.md5 is not None))
    config = folder / "download.config"
    config.write_text(config.read_text().replace("customized_partitions/client_ca.bin", "customized_partitions/x.bin"))
    (folder / "customized_partitions/client_ca.bin").rename(folder / "customized_partitions/x.bin")
    code, out, err = run_cli(capsys, "extract", str(folder), "-o", str(tmp_path / "x/y"))
    assert code == 2, out
    assert f"partition {name!r}: not a name a board can hold" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "evil").exists()


def test_an_image_module_name_of_dots_names_no_folder_outside(monkeypatch):
    from atfactory.extract import board_id_for
    from atfactory.formats import ModuleSettings
    from atfactory.formats.factory_param import FactoryParamFormat

    doc = {"at_customize": {"partitions": [{"name": "factory_param", "content": {"kind": "factory_param"}}]}}
    for name, expected in (("..", "_.."), (".", "_."), ("../x", "_.._x"), ("A/B", "A_B"), ("WROOM", "WROOM")):
        monkeypatch.setattr(FactoryParamFormat, "module_settings",
                            lambda self, d, name=name: ModuleSettings(name, "PLATFORM_ESP32", {}))
        assert board_id_for(doc) == expected


def test_extract_onto_a_file_is_refused(built, capsys, tmp_path):
    (tmp_path / "taken").write_text("mine")
    code, out, err = run_cli(capsys, "extract", str(built / "out/WROOM-32"), "-o", str(tmp_path / "taken"))
    assert code == 2 and "is a file; expected a folder" in err
    assert (tmp_path / "taken").read_text() == "mine"


def test_extract_names_what_an_image_lacks_in_its_own_generation(built, capsys, tmp_path):
    from helpers import mfg_nvs_layout, tampered

    code, _, err = run_cli(capsys, "extract", str(mfg_nvs_layout(built, tmp_path)), "-o", str(tmp_path / "x"))
    assert (code, err) == (2, "atfactory: error: no readable mfg_nvs partition with a factory_param namespace (the "
                              "image is ESP-AT v3.1+ (mfg_nvs)): the board needs its module settings\n")
    code, _, err = run_cli(capsys, "extract", str(tampered(built, tmp_path, 0x1000 + 12, bytes([9]))),
                           "-o", str(tmp_path / "y"))
    assert code == 2
    assert err.startswith("atfactory: error: cannot tell the chip: the bootloader is for a chip atfactory does not "
                          "know (image chip id 0x9); accepted: an image for esp32, ")
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())
