"""The release gate: does an image (or release folder) hold what its board would build?

``verify_flash`` renders every AT artifact of the board in memory and compares it with the
flash, partition by partition, then checks the image on its own terms: bootloader header
against image size and chip encoding, the application's digest, partitions inside flash and
region, certificate/key pairs, certificate validity.  The result lists differences (fail),
warnings (pass) and notes (how the image was read: an erased tail).
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from . import pki
from .artifacts import plan_board, render_artifact
from .at_releases import AT_RELEASES, GENERATION_TITLES, describe_generations
from .chips import CHIPS, flash_size_bytes
from .errors import AtFactoryError, FormatError
from .esp_image import short_image_note
from .formats import CERTIFICATE_USES, FormatRegistry, stock_registry
from .readback import header_size_problem, image_releases

EXPIRY_WARNING_DAYS = 30


@dataclass
class Report:
    differences: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    matches: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)    # how the image was read (an erased tail)

    @property
    def ok(self) -> bool:
        return not self.differences


def verify_flash(data: bytes, doc: dict, prepared, now: Optional[datetime.datetime] = None,
                 formats: Optional[FormatRegistry] = None,
                 device: Optional[Tuple[str, Dict[str, bytes], int]] = None) -> Report:
    """``formats``: the session's registry, the one ``prepared`` was made with (default: stock).
    ``device``: (device id, {release path: bytes}, CSV line) of a devices CSV row: the partitions
    its row changes are compared with those bytes, every other with the board's."""
    formats = formats or stock_registry()
    board = prepared.board
    report = Report(warnings=list(doc.get("warnings", [])))
    _compare_flash_settings(doc, board, report)
    if doc.get("chip") and doc["chip"] != board.chip.name:
        report.differences.append(f"chip: the image is for {CHIPS[doc['chip']].title}, the board for {board.chip.title}")
    elif doc.get("image_chip_id") is not None:
        report.differences.append(f"chip: the image is for a chip atfactory does not know (image chip id "
                                  f"0x{doc['image_chip_id']:x}), the board for {board.chip.title}")
    _compare_generation(data, doc, board, report, formats)
    for artifact in plan_board(board, formats=formats):
        if artifact.offset is None:
            continue
        own = device[1].get(artifact.targets[0]) if device is not None else None
        expected = own if own is not None else render_artifact(artifact.kind, artifact.spec, artifact.sources, formats)
        if artifact.partition is None:   # at_customize.bin
            label, size = artifact.targets[0], artifact.length
        else:
            label, size = f"partition {artifact.partition}", board.partition(artifact.partition).size
        if own is not None:
            label += f" (device {device[0]})"
        actual = data[artifact.offset:artifact.offset + size]
        actual += b"\xff" * (size - len(actual))   # past the end of a release folder's files: erased
        wanted = expected + b"\xff" * (size - len(expected))
        if actual == wanted:
            report.matches.append(label)
        else:
            report.differences.append(f"{label} at 0x{artifact.offset:x}: "
                                      + _explain(formats.get(artifact.kind), actual, wanted, expected))
    _self_checks(data, doc, board, report, now or datetime.datetime.now(datetime.timezone.utc), formats)
    return report


def _compare_generation(data: bytes, doc: dict, board, report: Report, formats: FormatRegistry) -> None:
    """A v3.1+ image (mfg_nvs) against a v2 board, or the other way round: say so first, since
    every partition then differs."""
    versions = image_releases(data, doc, formats)
    release = AT_RELEASES.get(board.at_version)
    if versions and release is not None and release.generation not in {AT_RELEASES[v].generation for v in versions}:
        report.differences.append(f"ESP-AT generation: the image is {describe_generations(versions)}, the board "
                                  f"(module.at_version = \"{board.at_version}\") builds for "
                                  f"{GENERATION_TITLES[release.generation]}")


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


def _explain(fmt, actual: bytes, wanted: bytes, expected: bytes) -> str:
    if actual.strip(b"\xff") == b"":
        return "erased in the image, the board has content"
    reason = fmt.explain(actual, expected) if fmt is not None else None
    if reason:
        return reason
    first = next((i for i, (a, b) in enumerate(zip(actual, wanted)) if a != b), min(len(actual), len(wanted)))
    return f"bytes differ from offset +0x{first:x}"


def _self_checks(data: bytes, doc: dict, board, report: Report, now, formats: FormatRegistry) -> None:
    boot = doc.get("bootloader")
    if doc["kind"] == "image" and boot:
        if boot["flash"].get("defect"):
            report.differences.append(f"bootloader header: {boot['flash']['defect']}; re-merge with esptool")
        else:   # an unknown size value, or an image longer than the flash its header gives
            problem = header_size_problem(doc["chip"], boot["flash"], doc["size"])
            if problem:
                report.differences.append(problem)
        if "image_end" in doc:
            report.notes.append(short_image_note(doc["image_end"], flash_size_bytes(doc["flash"]["size"])))
    _check_application(doc, report)
    for e in (doc.get("partition_table") or {}).get("partitions", []):
        if e["offset"] + e["size"] > board.flash_size_bytes:
            report.differences.append(f"partition table: {e['name']} (0x{e['offset']:x}-0x{e['offset'] + e['size']:x}) "
                                      f"ends past the {board.flash_size} flash")
    at = doc.get("at_customize") or {}
    lo = at.get("offset")
    hi = lo + at["size"] if lo is not None and "size" in at else None
    for part in at.get("partitions", []):
        if hi is not None and not (lo < part["offset"] and part["offset"] + part["size"] <= hi):
            report.differences.append(f"at_customize: {part['name']} (0x{part['offset']:x}) lies outside the "
                                      f"at_customize region 0x{lo:x}-0x{hi:x}")
        for label, cert in _certificates_of(part):
            try:
                not_after = datetime.datetime.strptime(cert["not_after"], "%Y-%m-%dT%H:%M:%SZ").replace(
                    tzinfo=datetime.timezone.utc)
            except ValueError:
                report.warnings.append(f"{label}: certificate {cert['subject']} has an end date atfactory cannot "
                                       f"read ({cert['not_after']})")
                continue
            if not_after < now:
                report.warnings.append(f"{label}: certificate {cert['subject']} expired on {cert['not_after']}")
            elif not_after - now < datetime.timedelta(days=EXPIRY_WARNING_DAYS):
                report.warnings.append(f"{label}: certificate {cert['subject']} expires on "
                                       f"{cert['not_after']}, within {EXPIRY_WARNING_DAYS} days")
    _check_pairs_in_image(data, at.get("partitions", []), report, formats)


def _check_application(doc: dict, report: Report) -> None:
    """The released application must end as it was built: with its SHA-256 digest where the
    header flags one, and on ESP8266 always (ESP8266_RTOS_SDK v3, which builds every ESP-AT
    release for it, appends one without a flag; an image cut at the parsed end has lost it)."""
    app = doc.get("application")
    if not app or "digest" not in app:
        return
    where = f"application in {app['partition']} at 0x{app['offset']:x}"
    if app["digest"] == "wrong":
        report.differences.append(f"{where}: its SHA-256 digest does not match the image")
    elif app["digest"] == "none" and doc.get("chip") == "esp8266":
        report.differences.append(f"{where}: no SHA-256 digest after the image; ESP8266_RTOS_SDK v3 appends one "
                                  "to every application it builds")


def _certificates_of(part: dict):
    """(label, decoded certificate) of every certificate a decoded AT partition holds: the items
    of a v2 certificate partition, the blobs of mfg_nvs's certificate namespaces."""
    content = part.get("content") or {}
    for item in content.get("items", []):
        if item.get("certificate"):
            yield f"{part['name']} item {item['id']}", item["certificate"]
    for ns, keys in (content.get("namespaces") or {}).items():
        for key, entry in keys.items():
            if isinstance(entry, dict) and entry.get("certificate"):
                yield f"{part['name']} {ns}.{key}", entry["certificate"]


def _check_pairs_in_image(data: bytes, parts: list, report: Report, formats: FormatRegistry) -> None:
    """Each key in the image must belong to the certificate of its set with the same id."""
    stored = {}
    for part in parts:
        content = part.get("content") or {}
        fmt = formats.get(content.get("kind"))
        if fmt is None:
            continue
        raw = data[part["offset"]:part["offset"] + part["size"]]
        try:
            for item in fmt.image_certificates(part["name"], content, raw):
                stored.setdefault((item.use, item.role), {})[item.id] = item
        except FormatError:
            continue   # shown as invalid content already
    for use in dict.fromkeys(list(CERTIFICATE_USES) + [u for u, _ in stored]):   # mfg_nvs adds https, wss
        certs, keys = stored.get((use, "cert")), stored.get((use, "key"))
        if not certs or not keys:
            continue
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
