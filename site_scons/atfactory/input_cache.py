"""A cache of what parsing a certificate or key found, keyed by file size, times and inode.

Every scons run checks every board before it declares targets; parsing the same certificates
each time (and importing cryptography to do it) was most of a no-op build.  A file whose size,
modification and change times and inode are unchanged gives the public key (and, for a
certificate file, each certificate's subject and expiry date) recorded the last time.  The scons process owns the cache file; chunk processes only read it.
"""
from __future__ import annotations

import datetime
import json
from typing import Dict, List, Optional, Tuple

from .errors import ContentError
from .stamps import stamp_of

FORMAT = 2   # entries: "KIND PATH" -> [stamp, value]
_CACHE: Dict[str, object] = {"path": None, "entries": {}, "dirty": False}


def use_input_cache(path: str) -> None:
    _CACHE.update(path=path, entries={}, dirty=False)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("format") == FORMAT and isinstance(data.get("entries"), dict):
            _CACHE["entries"] = data["entries"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass


def save_input_cache() -> None:
    if _CACHE["path"] and _CACHE["dirty"]:
        from .fsutil import write_atomic
        write_atomic(_CACHE["path"], json.dumps({"format": FORMAT, "entries": _CACHE["entries"]}, sort_keys=True).encode())
        _CACHE["dirty"] = False


def _stamp(path: str) -> Optional[str]:
    """The stamp of ``path`` (atfactory.stamps) while the cache is in use."""
    return stamp_of(path) if _CACHE["path"] else None


def recall(kind: str, path: str, stamp: str):
    """The value remembered for ``path`` under ``kind`` when its stamp was ``stamp``, else None."""
    entry = _CACHE["entries"].get(f"{kind} {path}")
    if isinstance(entry, list) and len(entry) == 2 and entry[0] == stamp:
        return entry[1]
    return None


def remember(kind: str, path: str, stamp: str, value) -> None:
    if _CACHE["path"]:
        _CACHE["entries"][f"{kind} {path}"] = [stamp, value]
        _CACHE["dirty"] = True


def _cached(kind: str, path: str, stamp: Optional[str], compute):
    """The value ``compute()`` gave for this file the last time its stamp was the same (JSON)."""
    value = recall(kind, path, stamp) if stamp else None
    if value is None:
        value = compute()
        if stamp:
            remember(kind, path, stamp, value)
    return value


def public_key_of(path: str, data: bytes, role: str, cache: bool = True) -> bytes:
    """The DER public key of a certificate file (role "cert" or "ca") or private key file ("key")."""
    from . import pki

    kind = "key" if role == "key" else "cert"

    def parse() -> bytes:
        try:
            if kind == "key":
                return pki.public_key_bytes(pki.load_private_key(data).public_key())
            return pki.public_key_bytes(pki.leaf_public_key(data))
        except ContentError as err:
            raise ContentError(err.message, path) from None

    stamp = _stamp(path) if cache else None
    if stamp is None:   # nothing to remember it in (a device row's file, or no cache in use)
        return parse()
    value = _cached(kind, path, stamp, lambda: parse().hex())
    try:
        return bytes.fromhex(value)
    except (TypeError, ValueError):   # a cache file edited by hand
        return parse()


def certificate_dates(path: str) -> List[Tuple[str, datetime.datetime]]:
    """(subject in RFC 4514, notAfter in UTC) of each certificate of a certificate file.
    Raises ContentError (the file cannot be read or is no certificate)."""
    from . import pki
    from .fsutil import read_input

    def parse():
        out = []
        for cert in pki.load_certificates(read_input(path)):
            expires = getattr(cert, "not_valid_after_utc", None) or \
                cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
            out.append([cert.subject.rfc4514_string(), expires.isoformat()])
        return out

    value = _cached("dates", path, _stamp(path), parse)
    try:
        return [(subject, datetime.datetime.fromisoformat(expires)) for subject, expires in value]
    except (TypeError, ValueError):   # a cache file edited by hand
        return [(subject, datetime.datetime.fromisoformat(expires)) for subject, expires in parse()]
