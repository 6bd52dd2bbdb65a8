"""The twelve certificate and key partitions of AT v2 (magic F1 F1) in the build and read-back.

Partition ``<use>_<role>`` holds the files of one certificate set (server_cert, client_key,
mqtt_ca, ...): one item per file, in file-name order.
"""
from __future__ import annotations

import os
from typing import Dict, List, Mapping, Optional, Sequence

from ..at_releases import is_v2
from .. import pki
from ..errors import AtFactoryError, ContentError, ExtractError
from ..fsutil import read_input, write_atomic
from ..input_cache import public_key_of
from . import CertificateFile, Content, ImageCertificate, PartitionFormat, ReadContext


def sort_sources(sources: Sequence[str]):
    """File-name order, as Espressif's generator reads a folder of certificates."""
    return tuple(sorted(sources, key=lambda p: (os.path.basename(p), p)))


def read_certificate_files(use: str, role: str, sources: Sequence[str], ctx: ReadContext, partition: str,
                           key: str = "source", max_content: Optional[int] = pki.MAX_CONTENT):
    """(data per file, CertificateFile per file) of one certificate set, in file-name order.

    Each file must parse as what its role says (unless ``ctx.parse`` is off).  Raises ContentError."""
    datas, certs = [], []
    read = ctx.read or read_input
    for path in sort_sources(sources):
        data = read(path)
        if max_content is not None and len(data) > max_content:
            raise ContentError(f"{len(data)} bytes; a certificate or key item holds at most {max_content}", path)
        public = public_key_of(path, data, role, ctx.cache) if ctx.parse else None
        datas.append(data)
        certs.append(CertificateFile(use, role, path, public, partition, key))
    return datas, certs


def describe_item(item: pki.PkiItem) -> dict:
    """Type, id and length; for certificates who and until when; for keys the algorithm only."""
    doc: Dict[str, object] = {"type": item.type, "type_name": pki.TYPE_NAMES.get(item.type, "unknown"),
                              "id": item.id, "length": len(item.content)}
    doc.update(describe_certificate(item.content))
    return doc


def describe_certificate(content: bytes) -> dict:
    """format (PEM/DER) and either "key" (algorithm only), "certificate" or "error"."""
    pem = b"-----BEGIN " in content
    doc: Dict[str, object] = {"format": "PEM" if pem else "DER"}
    if b"PRIVATE KEY" in content or not pem:
        try:
            doc["key"] = _key_summary(pki.load_private_key(content).public_key())
            return doc
        except AtFactoryError as err:
            if pem:
                doc["error"] = str(err)
                return doc
            # DER that is no key: read it as a certificate below
    try:
        certs = pki.load_certificates(content)
    except AtFactoryError as err:
        doc["error"] = str(err)
        return doc
    cert = certs[0]
    doc["certificate"] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": _utc(cert, "not_valid_before"),
        "not_after": _utc(cert, "not_valid_after"),
        "serial": format(cert.serial_number, "x"),
        "key": _key_summary(cert.public_key()),
    }
    if len(certs) > 1:
        doc["certificate"]["chain_length"] = len(certs)
    return doc


def _utc(cert, attr: str) -> str:
    value = getattr(cert, attr + "_utc", None) or getattr(cert, attr)
    # not strftime: its %Y drops the zeros of a year before 1000, which no parser reads back
    return (f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}:"
            f"{value.second:02d}Z")


def _key_summary(public_key) -> dict:
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, ed448, rsa

    if isinstance(public_key, rsa.RSAPublicKey):
        return {"algorithm": "RSA", "size": public_key.key_size}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"algorithm": "EC", "size": public_key.key_size, "curve": public_key.curve.name}
    if isinstance(public_key, dsa.DSAPublicKey):
        return {"algorithm": "DSA", "size": public_key.key_size}
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return {"algorithm": "Ed25519", "size": 256}
    if isinstance(public_key, ed448.Ed448PublicKey):
        return {"algorithm": "Ed448", "size": 456}
    return {"algorithm": type(public_key).__name__}


def describe_item_line(item: dict) -> str:
    head = f"item type {item['type']} ({item['type_name']}) id {item['id']}: {item['length']} bytes {item['format']}"
    if "certificate" in item:
        cert = item["certificate"]
        key = cert["key"]
        return (f"{head}, certificate {cert['subject']}, issuer {cert['issuer']}, valid {cert['not_before']} to "
                f"{cert['not_after']}, {key['algorithm']} {key.get('size', '')}")
    if "key" in item:
        return f"{head}, private key {item['key']['algorithm']} {item['key'].get('size', '')}"
    return f"{head}, unreadable: {item.get('error')}"


class PkiFormat(PartitionFormat):
    kind = "pki"
    label = "PKI"
    builder = "AtfPki"

    def claims(self, name: str, at_version: str) -> bool:
        return name in pki.PKI_PARTITIONS and is_v2(at_version)

    def read(self, name: str, sources: Sequence[str], ctx: ReadContext) -> Optional[Content]:
        if not sources:
            return None
        role = pki.PKI_PARTITIONS[name]
        if len(sources) > pki.MAX_ID + 1:
            raise ContentError(f"{len(sources)} files; a partition holds at most {pki.MAX_ID + 1} items")
        datas, certs = read_certificate_files(name.rsplit("_", 1)[0], role, sources, ctx, name)
        spec = {"item_type": pki.item_type(role, ctx.at_version), "files": [os.path.basename(c.path) for c in certs]}
        data = pki.encode_pki([(spec["item_type"], d) for d in datas]) if ctx.render else None   # the bytes just read
        return Content(self.kind, pki.pki_size(len(d) for d in datas), spec, tuple(c.path for c in certs),
                       secret=(role == "key"), certificates=tuple(certs), data=data)

    def render(self, spec: Mapping[str, object], sources: Sequence[str]) -> bytes:
        return pki.encode_pki([(spec["item_type"], read_input(p)) for p in sources])

    def certificate_slots(self, name: str, at_version: str):
        return (name,) if name in pki.PKI_PARTITIONS else ()

    def read_certificates(self, name: str, sets: Mapping[str, Sequence[str]], ctx: ReadContext) -> Content:
        return self.read(name, sets[name], ctx)

    def board_map_detail(self, content: Content) -> str:
        n = len(content.sources)
        return f"{n} item{'s' if n != 1 else ''}"

    def detect(self, data: bytes) -> bool:
        return data[:2] == pki.MAGIC

    def decode(self, data: bytes, name: str = "") -> dict:
        doc = {"kind": self.kind, "items": [describe_item(i) for i in pki.decode_pki(data)]}
        if name in pki.PKI_PARTITIONS:
            doc["partition_kind"] = pki.PKI_PARTITIONS[name]
        return doc

    def explain(self, have: bytes, want: bytes) -> Optional[str]:
        try:
            have_items, want_items = pki.decode_pki(have), pki.decode_pki(want)
        except AtFactoryError as err:
            return f"not a certificate/key partition ({err})"
        if len(have_items) != len(want_items):
            return f"{len(have_items)} items in the image, {len(want_items)} from the board"
        for n, (a, b) in enumerate(zip(have_items, want_items)):
            if (a.type, a.id) != (b.type, b.id):
                same = " (the content is the same)" if a.content == b.content else ""
                return f"item {n}: type {a.type} id {a.id} in the image, type {b.type} id {b.id} from the board{same}"
            if a.content != b.content:
                return f"item {b.id} (type {b.type} in the image and from the board) differs in content"
        return None

    def implied_at_versions(self, name: str, doc: dict) -> Optional[frozenset]:
        role = pki.PKI_PARTITIONS.get(name)
        if role is None or role == "cert":
            return None   # certificates are type 2 in every release
        from ..at_releases import AT_RELEASES
        versions = frozenset(v for v in AT_RELEASES if is_v2(v))
        for item in doc["items"]:
            versions &= {v for v in AT_RELEASES if pki.item_type(role, v) == item["type"]}
        return versions

    def image_certificates(self, name: str, doc: dict, raw: bytes) -> List[ImageCertificate]:
        role = pki.PKI_PARTITIONS.get(name)
        if role is None:
            return []
        use = name.rsplit("_", 1)[0]
        return [ImageCertificate(use, role, i.id, i.content) for i in pki.decode_pki(raw)]

    def extract(self, name: str, doc: dict, raw: bytes, src_dir: str, notes: List[str]) -> List[str]:
        items = pki.decode_pki(raw)
        role = pki.PKI_PARTITIONS[name]
        paths = []
        for n, item in enumerate(items):
            if item.id != len([i for i in items[:n] if i.type == item.type]):
                raise ExtractError(f"partition {name}: item ids are not numbered 0, 1, 2... per type; "
                                   "a rebuild could not reproduce them")
            ext = {"key": "key", "ca": "crt", "cert": "crt"}[role]
            if b"-----BEGIN " not in item.content:
                ext = "der"
            path = os.path.join(src_dir, name, f"{name}_{n:03d}.{ext}")
            write_atomic(path, item.content, secret=(role == "key"))
            paths.append(path)
        if len({i.type for i in items}) > 1:
            raise ExtractError(f"partition {name}: items of several types in one partition; a board partition holds one kind")
        return paths

    def describe(self, doc: dict) -> List[str]:
        return [describe_item_line(item) for item in doc["items"]]

    def map_detail(self, doc: dict) -> str:
        n = len(doc.get("items", []))
        return f"{n} item{'s' if n != 1 else ''}"
