"""The release gate: does an image (or release folder) hold what its board would build?

``verify_flash`` renders every AT artifact of the board in memory and compares it with the
flash, partition by partition, then checks the image on its own terms: bootloader header
against image size and chip encoding, partitions inside flash and region, certificate/key
pairs, certificate validity.  The result lists differences (fail) and warnings (pass).
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import List, Optional

from . import factory_param as fp
from . import partition_table as pt
from . import pki
from .artifacts import KIND_AT_CUSTOMIZE, plan_board, render_artifact
from .chips import CHIPS, flash_size_bytes
from .errors import AtFactoryError
from .readback import read_flash

EXPIRY_WARNING_DAYS = 30


@dataclass
class Report:
    differences: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    matches: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


load_flash = read_flash   # the flash bytes and decoded document of an image or release folder


def verify_flash(data: bytes, doc: dict, prepared, now: Optional[datetime.datetime] = None) -> Report:
    board = prepared.board
    report = Report()
    _compare_flash_settings(doc, board, report)
    if doc.get("chip") and doc["chip"] != board.chip.name:
        report.differences.append(f"chip: the image is for {CHIPS[doc['chip']].title}, the board for {board.chip.title}")
    for artifact in plan_board(board):
        if artifact.offset is None:
            continue
        if artifact.kind == "plugin":
            build, seen = prepared.plugin_builders[artifact.partition]
            expected = bytes(build(seen, artifact.sources))
        else:
            expected = render_artifact(artifact.kind, artifact.spec, artifact.sources)
        label = "at_customize.bin" if artifact.kind == KIND_AT_CUSTOMIZE else f"partition {artifact.partition}"
        size = pt.TABLE_SIZE if artifact.kind == KIND_AT_CUSTOMIZE else board.partition(artifact.partition).size
        actual = data[artifact.offset:artifact.offset + size]
        actual += b"\xff" * (size - len(actual))   # past the end of a release folder's files: erased
        wanted = expected + b"\xff" * (size - len(expected))
        if actual == wanted:
            report.matches.append(label)
        else:
            report.differences.append(f"{label} at 0x{artifact.offset:x}: " + _explain(artifact, actual, wanted, expected))
    _self_checks(data, doc, board, report, now or datetime.datetime.now(datetime.timezone.utc))
    return report


def _compare_flash_settings(doc: dict, board, report: Report) -> None:
    flash = doc.get("flash") or {}
    for key, want in (("mode", board.flash_mode), ("freq", board.flash_freq), ("size", board.flash_size)):
        have = flash.get(key)
        if have is None:
            continue
        if have != want:
            where = "bootloader header" if doc["kind"] == "image" else "download.config"
            report.differences.append(f"flash.{key}: {where} says {have}, the board {want}")
        else:
            report.matches.append(f"flash.{key}")


def _explain(artifact, actual: bytes, wanted: bytes, expected: bytes) -> str:
    if actual.strip(b"\xff") == b"":
        return "erased in the image, the board has content"
    if artifact.kind == "factory_param":
        try:
            have = fp.decode_factory_param(actual)
            want = fp.decode_factory_param(expected)
            fields = [f"factory_param.{k} is {have[k]!r}, the board says {want[k]!r}" for k in want if have.get(k) != want[k]]
            if fields:
                return "; ".join(fields)
        except AtFactoryError:
            pass
    if artifact.kind == KIND_AT_CUSTOMIZE:
        try:
            have = {e.name: e for e in pt.decode_partition_table(actual).entries}
            want = {e.name: e for e in pt.decode_partition_table(expected).entries}
            notes = [f"{n} missing" for n in want if n not in have] + [f"{n} not in the board" for n in have if n not in want]
            notes += [f"{n}: image {_row(have[n])}, board {_row(want[n])}" for n in want if n in have and have[n] != want[n]]
            if notes:
                return "; ".join(notes)
        except AtFactoryError as err:
            return f"not a partition table ({err})"
    if artifact.kind == "pki":
        try:
            have_items = pki.decode_pki(actual)
            want_items = pki.decode_pki(expected)
            if len(have_items) != len(want_items):
                return f"{len(have_items)} items in the image, {len(want_items)} from the board"
            for a, b in zip(have_items, want_items):
                if a != b:
                    what = "content" if a.content != b.content else "type or id"
                    return f"item {b.id} (type {b.type}) differs in {what}"
        except AtFactoryError as err:
            return f"not a certificate/key partition ({err})"
    first = next((i for i, (a, b) in enumerate(zip(actual, wanted)) if a != b), min(len(actual), len(wanted)))
    return f"bytes differ from offset +0x{first:x}"


def _row(e: pt.Entry) -> str:
    return f"type 0x{e.type:02x} subtype {e.subtype} at 0x{e.offset:x} size 0x{e.size:x}"


def _self_checks(data: bytes, doc: dict, board, report: Report, now) -> None:
    boot = doc.get("bootloader")
    if doc["kind"] == "image" and boot:
        chip = CHIPS[doc["chip"]]
        byte3 = boot["flash"]["header_byte3"]
        declared = boot["flash"]["size"]
        if declared in chip.flash_sizes and flash_size_bytes(declared) != len(data):
            msg = (f"bootloader header: flash size {declared} ({chip.title} encoding, byte 3 = 0x{byte3:02x}) "
                   f"but the image is {len(data)} bytes")
            if chip.name == "esp8266":
                esp32_sizes = {v: k for k, v in CHIPS["esp32"].flash_sizes.items()}
                guess = esp32_sizes.get(byte3 & 0xF0)
                if guess and flash_size_bytes(guess) == len(data):
                    msg += (f": the size was encoded with the ESP32 table ({guess}), the defect of Espressif's "
                            "combine script; re-merge with esptool")
            report.differences.append(msg)
    for e in (doc.get("partition_table") or {}).get("partitions", []):
        if e["offset"] + e["size"] > board.flash_size_bytes:
            report.differences.append(f"partition table: {e['name']} (0x{e['offset']:x}-0x{e['offset'] + e['size']:x}) "
                                      f"ends past the {board.flash_size} flash")
    at = doc.get("at_customize") or {}
    lo = at.get("offset")
    hi = lo + at["size"] if lo is not None and "size" in at else None
    by_name = {}
    for part in at.get("partitions", []):
        by_name[part["name"]] = part
        if hi is not None and not (lo < part["offset"] and part["offset"] + part["size"] <= hi):
            report.differences.append(f"at_customize: {part['name']} (0x{part['offset']:x}) lies outside the "
                                      f"at_customize region 0x{lo:x}-0x{hi:x}")
        content = part.get("content", {})
        for item in content.get("items", []):
            cert = item.get("certificate")
            if not cert:
                continue
            not_after = datetime.datetime.strptime(cert["not_after"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
            if not_after < now:
                report.warnings.append(f"{part['name']} item {item['id']}: certificate {cert['subject']} expired on {cert['not_after']}")
            elif not_after - now < datetime.timedelta(days=EXPIRY_WARNING_DAYS):
                report.warnings.append(f"{part['name']} item {item['id']}: certificate {cert['subject']} expires on "
                                       f"{cert['not_after']}, within {EXPIRY_WARNING_DAYS} days")
    _check_pairs_in_image(data, by_name, report)


def _check_pairs_in_image(data: bytes, parts: dict, report: Report) -> None:
    for use in ("server", "client", "mqtt", "wpa2"):
        cert, key = parts.get(f"{use}_cert"), parts.get(f"{use}_key")
        if not cert or not key or cert["content"].get("kind") != "pki" or key["content"].get("kind") != "pki":
            continue
        certs = {i.id: i for i in pki.decode_pki(data[cert["offset"]:cert["offset"] + cert["size"]])}
        keys = {i.id: i for i in pki.decode_pki(data[key["offset"]:key["offset"] + key["size"]])}
        for item_id, k in sorted(keys.items()):
            c = certs.get(item_id)
            if c is None:
                report.differences.append(f"{use}_key item {item_id}: no certificate with id {item_id} in {use}_cert")
                continue
            try:
                a = pki.public_key_bytes(pki.load_certificates(c.content)[0].public_key())
                b = pki.public_key_bytes(pki.load_private_key(k.content).public_key())
            except AtFactoryError as err:
                report.differences.append(f"{use}_cert/{use}_key item {item_id}: {err}")
                continue
            if a != b:
                report.differences.append(f"{use}_key item {item_id} does not belong to {use}_cert item {item_id}")
