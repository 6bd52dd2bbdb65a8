"""Certificate and key partitions (FORMATS.md §3).

    header  F1 F1 | item count (u16) | total length of the items (u32)
    item    type (u8) | id (u8) | content length (u16) | content | 0xFF up to a multiple of 4

Content is the input file exactly as stored (PEM text or DER).  Items are grouped by type in
the order the types first appear and numbered per type from 0, as Espressif's generator does.
"""
from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass
from typing import Dict, Iterable, List, Sequence, Tuple

from .at_releases import AT_RELEASES
from .errors import ContentError, FormatError

MAGIC = b"\xf1\xf1"
HEADER = struct.Struct("<2sHI")
ITEM_HEADER = struct.Struct("<BBH")

TYPE_CA = 1
TYPE_CERT = 2
TYPE_KEY = 3
TYPE_NAMES = {TYPE_CA: "ca", TYPE_CERT: "cert", TYPE_KEY: "key"}
MAX_CONTENT = 0xFFFF
MAX_ID = 0xFF

# What a certificate set is for, and the roles of its files: a set is named "<use>_<role>".
USES = ("server", "client", "mqtt", "wpa2")
ROLES = ("cert", "key", "ca")
# Partition name -> what its items are.  The kind decides the item type from AT v2.4 on.
PKI_PARTITIONS = {f"{use}_{kind}": kind for use in USES for kind in ROLES}
KIND_TYPES = {"ca": TYPE_CA, "cert": TYPE_CERT, "key": TYPE_KEY}


def item_type(kind: str, at_version: str) -> int:
    """AT v2.4 types items by kind; AT v2.2 builds typed every item as a certificate (2)."""
    return KIND_TYPES[kind] if AT_RELEASES[at_version].pki_typed_by_kind else TYPE_CERT


@dataclass(frozen=True)
class PkiItem:
    type: int
    id: int
    content: bytes


def encode_pki(typed_contents: Sequence[Tuple[int, bytes]]) -> bytes:
    """Encode (type, content) pairs: grouped by type in order of first appearance, ids per type."""
    groups: Dict[int, List[bytes]] = {}
    for ptype, content in typed_contents:
        groups.setdefault(ptype, []).append(content)
    items = [PkiItem(t, i, c) for t, contents in groups.items() for i, c in enumerate(contents)]
    return encode_pki_items(items)


def encode_pki_items(items: Iterable[PkiItem]) -> bytes:
    body = bytearray()
    count = 0
    for item in items:
        if len(item.content) > MAX_CONTENT:
            raise FormatError(f"PKI item {count}: {len(item.content)} bytes, at most {MAX_CONTENT} fit its length field")
        if not (0 <= item.type <= 0xFF and 0 <= item.id <= MAX_ID):
            raise FormatError(f"PKI item {count}: type {item.type} or id {item.id} out of range 0-255")
        body += ITEM_HEADER.pack(item.type, item.id, len(item.content)) + item.content
        body += b"\xff" * (-len(item.content) % 4)
        count += 1
    if count > 0xFFFF:
        raise FormatError(f"PKI: {count} items, at most 65535")
    return HEADER.pack(MAGIC, count, len(body)) + bytes(body)


def decode_pki(data: bytes) -> List[PkiItem]:
    """Read every item back; bytes after the declared length (flash padding) are ignored."""
    if len(data) < HEADER.size:
        raise FormatError(f"PKI: {len(data)} bytes, shorter than the {HEADER.size}-byte header", offset=0)
    magic, count, total = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise FormatError(f"PKI: magic {magic.hex()}, expected f1f1", offset=0)
    end = HEADER.size + total
    if end > len(data):
        raise FormatError(f"PKI: header declares {total} bytes of items, only {len(data) - HEADER.size} follow", offset=4)
    items: List[PkiItem] = []
    pos = HEADER.size
    for n in range(count):
        if pos + ITEM_HEADER.size > end:
            raise FormatError(f"PKI: item {n} of {count} starts past the declared length", offset=pos)
        ptype, pid, length = ITEM_HEADER.unpack_from(data, pos)
        content_end = pos + ITEM_HEADER.size + length
        padded_end = content_end + (-length % 4)
        if padded_end > end:
            raise FormatError(f"PKI: item {n} ({length} bytes) runs past the declared length", offset=pos)
        items.append(PkiItem(ptype, pid, bytes(data[pos + ITEM_HEADER.size:content_end])))
        pos = padded_end
    if pos != end:
        raise FormatError(f"PKI: {end - pos} bytes after the last item inside the declared length", offset=pos)
    return items


def pki_size(content_lengths: Iterable[int]) -> int:
    """The encoded size of a partition with items of these content lengths."""
    return HEADER.size + sum(ITEM_HEADER.size + n + (-n % 4) for n in content_lengths)


# --- reading certificate and key files -------------------------------------------------------

def _is_pem(data: bytes) -> bool:
    return b"-----BEGIN " in data


def load_certificates(data: bytes):
    """Parse a certificate file (PEM, possibly a chain and with text around it, or DER).

    Returns the list of certificates, leaf first.  Raises ContentError with a reason.
    """
    return list(_load_certificates(bytes(data))[0])


def leaf_public_key(data: bytes):
    """The public key of a certificate file's leaf, the file checked as load_certificates does."""
    return _load_certificates(bytes(data))[1]


@functools.lru_cache(maxsize=256)
def _load_certificates(data: bytes) -> tuple:
    """(certificates, the leaf's public key), once per content: the boards of one build share
    their CA and certificate files (certificates are immutable objects; errors are raised every
    time), and the key is read once, as the field check reads it."""
    from cryptography import x509

    if not data.strip():
        raise ContentError("the file is empty; expected a PEM or DER certificate")
    try:
        if _is_pem(data):
            if b"PRIVATE KEY-----" in data and b"CERTIFICATE-----" not in data:
                raise ContentError("holds a private key, expected a certificate")
            if b"PRIVATE KEY-----" in data:
                # The file is written as it is into a partition that is not kept secret.
                raise ContentError("holds a private key besides the certificate; a certificate partition is "
                                   "written as it is and not kept secret: put the key in a file of its own "
                                   "for the *_key partition")
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except ContentError:
        raise
    except Exception as exc:  # cryptography raises ValueError and friends
        if not _is_pem(data) and _is_der_private_key(data):
            raise ContentError("holds a private key (DER), expected a certificate") from None
        extra = 0 if _is_pem(data) else _trailing_bytes(data, x509.load_der_x509_certificate)
        if extra:
            raise ContentError(f"{extra} bytes after the end of the DER certificate; expected the "
                               "certificate alone (cut the file to its DER length)") from None
        raise ContentError(f"not a PEM or DER X.509 certificate ({_reason(exc)})") from None
    keys = []
    for n, cert in enumerate(certs):
        # cryptography parses fields when they are first read: read every one used anywhere
        # now, so that a damaged field is this one error and never a traceback later (a name
        # parsed is a name its RFC 4514 string can be made of: that is left to who shows it).
        try:
            cert.subject, cert.issuer, cert.serial_number
            keys.append(cert.public_key())
            for attr in ("not_valid_before", "not_valid_after"):
                getattr(cert, attr + "_utc", None) or getattr(cert, attr)
        except Exception as exc:  # ValueError, UnsupportedAlgorithm, ...
            where = f"certificate {n} of the chain" if len(certs) > 1 else "the certificate"
            raise ContentError(f"{where} parses but a field of it does not ({_reason(exc)})") from None
    return tuple(certs), keys[0]


def _trailing_bytes(data: bytes, load) -> int:
    """How many bytes follow a DER element that ``load`` accepts on its own; 0 when that is not the case."""
    if len(data) < 2 or data[0] != 0x30:   # a SEQUENCE, as certificates and keys are
        return 0
    if data[1] < 0x80:
        end = 2 + data[1]
    else:
        count = data[1] & 0x7F
        if not 1 <= count <= 4 or len(data) < 2 + count:
            return 0
        end = 2 + count + int.from_bytes(data[2:2 + count], "big")
    if end >= len(data):
        return 0
    try:
        load(data[:end])
    except Exception:
        return 0
    return len(data) - end


def _is_der_private_key(data: bytes) -> bool:
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_der_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
    except TypeError:
        return True   # an encrypted DER key
    except Exception:
        return False
    return True


def load_private_key(data: bytes):
    """Parse an unencrypted private key (PEM or DER).  Raises ContentError with a reason."""
    from cryptography.hazmat.primitives import serialization

    if not data.strip():
        raise ContentError("the file is empty; expected a PEM or DER private key")
    pem = _is_pem(data)
    if pem and (b"ENCRYPTED" in data):
        raise ContentError(_ENCRYPTED)
    try:
        # Only the public half is used (to pair keys with certificates); skipping the RSA
        # consistency proof makes loading a key ~1000x faster, and a key whose structure is
        # broken still fails to parse.
        if pem:
            if b"PRIVATE KEY-----" not in data:
                raise ContentError("holds no private key (expected -----BEGIN ... PRIVATE KEY-----)")
            return serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
        return serialization.load_der_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
    except ContentError:
        raise
    except TypeError:
        # cryptography: "Password was not given but private key is encrypted"
        raise ContentError(_ENCRYPTED) from None
    except Exception as exc:
        extra = 0 if pem else _trailing_bytes(data, lambda der: serialization.load_der_private_key(
            der, password=None, unsafe_skip_rsa_key_validation=True))
        if extra:
            raise ContentError(f"{extra} bytes after the end of the DER private key; expected the key alone "
                               "(cut the file to its DER length)") from None
        raise ContentError(f"not a PEM or DER private key ({_reason(exc)})") from None


_ENCRYPTED = ("the private key is encrypted; the AT firmware needs it in the clear: "
              "decrypt it first, e.g. 'openssl pkey -in KEY -out KEY.plain'")


# cryptography's parse errors, in words: PEM framing (the pem crate's error names) and ASN.1.
_PEM_ERROR = re.compile(r"^Unable to load PEM file\..*? for more details\. (\w+)")
_PEM_REASONS = {
    "NotUtf8": "the PEM block holds bytes that are not text",
    "InvalidData": "the PEM block is not valid base64",
    "MalformedFraming": "no complete -----BEGIN ...----- ... -----END ...----- block",
    "MismatchedTags": "the PEM block's BEGIN and END lines name different things",
    "MissingBeginTag": "a PEM block without its -----BEGIN ...----- line",
    "MissingEndTag": "a PEM block without its -----END ...----- line",
    "MissingData": "an empty PEM block",
}
_ASN1_ERROR = re.compile(r"ParseError \{ kind: (\w+)|ASN\.1 parsing error: ([a-z ]+)")
_ASN1_REASONS = {   # "ExtraData" (certificates) or "extra data" (keys), lower case without spaces
    "extradata": "bytes after the end of the DER data",
    "shortdata": "the DER data ends early (truncated?)",
    "invalidlength": "a DER length that does not fit the data",
    "unexpectedtag": "DER data of another kind (unexpected ASN.1 tag)",
}


def _reason(exc: Exception) -> str:
    # First line only, without anything that could echo key material back.
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    pem = _PEM_ERROR.match(text)
    if pem:
        return _PEM_REASONS.get(pem.group(1), f"PEM: {pem.group(1)}")
    asn1 = _ASN1_ERROR.search(text)
    if asn1:
        kind = (asn1.group(1) or asn1.group(2)).strip()
        return _ASN1_REASONS.get(kind.replace(" ", "").lower(), f"ASN.1: {kind}")
    if text.startswith("Could not deserialize key data"):
        return "a key format or key type that cannot be read"
    return text[:160]


def public_key_bytes(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
