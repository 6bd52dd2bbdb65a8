"""download.config (FORMATS.md §5): the one line of flash options and ``offset path`` pairs."""
from __future__ import annotations

import pytest

from atfactory.board import load_board
from atfactory.download_config import DownloadConfig, decode_download_config, encode_download_config
from atfactory.errors import FormatError

from reference_boards import build_artifacts

# The example line of FORMATS.md §5, as an ESP-AT release folder has it.
RELEASE_LINE = (
    b"--flash_mode dio --flash_freq 40m --flash_size 4MB 0x8000 partition_table/partition-table.bin "
    b"0x10000 ota_data_initial.bin 0xf000 phy_init_data.bin 0x1000 bootloader/bootloader.bin "
    b"0x100000 esp-at.bin 0x20000 at_customize.bin 0x24000 customized_partitions/server_cert.bin\n"
)
RELEASE_CONFIG = DownloadConfig("dio", "40m", "4MB", (
    (0x8000, "partition_table/partition-table.bin"), (0x10000, "ota_data_initial.bin"),
    (0xF000, "phy_init_data.bin"), (0x1000, "bootloader/bootloader.bin"), (0x100000, "esp-at.bin"),
    (0x20000, "at_customize.bin"), (0x24000, "customized_partitions/server_cert.bin"),
))


def test_encode_release_line():
    assert encode_download_config(RELEASE_CONFIG) == RELEASE_LINE


def test_decode_release_line():
    assert decode_download_config(RELEASE_LINE) == RELEASE_CONFIG


def test_round_trip_keeps_entry_order_and_offsets():
    config = DownloadConfig("qio", "80m", "2MB-c1", ((0x0, "bootloader/bootloader.bin"), (0x200000, "a.bin"),
                                                     (0x1000, "b.bin")))
    data = encode_download_config(config)
    assert data == b"--flash_mode qio --flash_freq 80m --flash_size 2MB-c1 0x0 bootloader/bootloader.bin " \
                   b"0x200000 a.bin 0x1000 b.bin\n"
    assert decode_download_config(data) == config


def test_no_entries():
    config = DownloadConfig("dout", "20m", "1MB", ())
    assert encode_download_config(config) == b"--flash_mode dout --flash_freq 20m --flash_size 1MB\n"
    assert decode_download_config(encode_download_config(config)) == config


def test_decode_accepts_any_white_space_decimal_offsets_and_dashed_options():
    data = b"  --flash-mode dio\t--flash_freq 40m\r\n--flash_size 4MB   65536 a.bin\n\n"
    assert decode_download_config(data) == DownloadConfig("dio", "40m", "4MB", ((0x10000, "a.bin"),))


def test_stock_board_wroom32_line(registry):
    board = load_board("WROOM-32", registry)
    data = build_artifacts(board)["download.config"]
    assert data == (
        b"--flash_mode dio --flash_freq 40m --flash_size 4MB 0x20000 at_customize.bin "
        b"0x21000 customized_partitions/ble_data.bin 0x24000 customized_partitions/server_cert.bin "
        b"0x26000 customized_partitions/server_key.bin 0x28000 customized_partitions/server_ca.bin "
        b"0x2a000 customized_partitions/client_cert.bin 0x2c000 customized_partitions/client_key.bin "
        b"0x2e000 customized_partitions/client_ca.bin 0x30000 customized_partitions/factory_param.bin "
        b"0x31000 customized_partitions/wpa2_cert.bin 0x33000 customized_partitions/wpa2_key.bin "
        b"0x35000 customized_partitions/wpa2_ca.bin 0x37000 customized_partitions/mqtt_cert.bin "
        b"0x39000 customized_partitions/mqtt_key.bin 0x3b000 customized_partitions/mqtt_ca.bin\n"
    )
    config = decode_download_config(data)
    assert (config.flash_mode, config.flash_freq, config.flash_size) == ("dio", "40m", "4MB")
    # Every file the line names is an artifact of the board, flashed at its partition's offset.
    out = build_artifacts(board)
    for offset, path in config.entries:
        assert path in out
    assert dict((p, o) for o, p in config.entries)["customized_partitions/factory_param.bin"] == \
        board.partition("factory_param").offset


def test_stock_board_esp8266_line(registry):
    data = build_artifacts(load_board("WROOM-02", registry))["download.config"]
    assert data.startswith(b"--flash_mode dio --flash_freq 80m --flash_size 2MB 0xf0000 at_customize.bin "
                           b"0xf1000 customized_partitions/factory_param.bin ")


def test_encode_refuses_white_space_in_a_path():
    with pytest.raises(FormatError, match="'my file.bin'"):
        encode_download_config(DownloadConfig("dio", "40m", "4MB", ((0x1000, "my file.bin"),)))


@pytest.mark.parametrize("config", [
    DownloadConfig("dio", "40m", "4MB", ((0x1000, ""),)),
    DownloadConfig("", "40m", "4MB", ()),
    DownloadConfig("d io", "40m", "4MB", ()),
], ids=["empty-path", "empty-option", "option-with-space"])
def test_encode_refuses_what_the_line_cannot_hold(config):
    # Whatever encode writes must decode to the same config: a value the one-line format cannot
    # hold is refused when writing, as a path with white space already is.
    with pytest.raises(FormatError):
        encode_download_config(config)


@pytest.mark.parametrize("data,message", [
    (b"--flash_mode dio --flash_freq 40m --flash_size", "option --flash_size has no value"),
    (b"--flash_mode dio --flash_freq 40m --flash_size 4MB 0x1000", "offset 0x1000 has no file"),
    (b"--flash_mode dio --flash_freq 40m --flash_size 4MB bootloader.bin 0x1000", "'bootloader.bin' is neither"),
    (b"--flash_mode dio 0x1000 a.bin", "missing --flash_freq, --flash_size"),
    (b"", "missing --flash_mode, --flash_freq, --flash_size"),
])
def test_decode_errors(data, message):
    with pytest.raises(FormatError, match=message):
        decode_download_config(data)


def test_decode_non_ascii_names_the_offset():
    with pytest.raises(FormatError, match="not ASCII") as exc:
        decode_download_config(b"--flash_mode dio \xff")
    assert exc.value.offset == 17
