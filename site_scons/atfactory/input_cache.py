"""A cache of what parsing a certificate or key found, keyed by file size, times and inode.

Every scons run checks every board before it declares targets; parsing the same certificates
each time (and importing cryptography to do it) was most of a no-op build.  A file whose size,
modification and change times and inode are unchanged gives the public key recorded the last
time.  The scons process owns the cache file; chunk processes only read it.
"""
from __future__ import annotations

import json
import os
from typing import Dict

from .errors import ContentError

_CACHE: Dict[str, object] = {"path": None, "entries": {}, "dirty": False}


def use_input_cache(path: str) -> None:
    _CACHE.update(path=path, entries={}, dirty=False)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("format") == 1 and isinstance(data.get("entries"), dict):
            _CACHE["entries"] = data["entries"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass


def save_input_cache() -> None:
    if _CACHE["path"] and _CACHE["dirty"]:
        from .fsutil import write_atomic
        write_atomic(_CACHE["path"], json.dumps({"format": 1, "entries": _CACHE["entries"]}, sort_keys=True).encode())
        _CACHE["dirty"] = False


def public_key_of(path: str, data: bytes, role: str, cache: bool = True) -> bytes:
    """The DER public key of a certificate file (role "cert" or "ca") or private key file ("key")."""
    from . import pki

    kind = "key" if role == "key" else "cert"
    stamp = None
    if cache and _CACHE["path"]:
        try:
            st = os.stat(path)
            stamp = f"{kind}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
        except OSError:
            pass
    entry = _CACHE["entries"].get(path) if stamp else None
    if stamp and isinstance(entry, list) and len(entry) == 2 and entry[0] == stamp:
        try:
            return bytes.fromhex(entry[1])
        except (TypeError, ValueError):
            pass
    try:
        if kind == "key":
            public = pki.public_key_bytes(pki.load_private_key(data).public_key())
        else:
            public = pki.public_key_bytes(pki.leaf_public_key(data))
    except ContentError as err:
        raise ContentError(err.message, path) from None
    if stamp and _CACHE["path"]:
        _CACHE["entries"][path] = [stamp, public.hex()]
        _CACHE["dirty"] = True
    return public
