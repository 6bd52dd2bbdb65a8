"""What each AT partition holds, read from its inputs: checked once, rendered by the build.

``read_content`` runs when a board is loaded: it reads and checks every input file and works
out the encoded size, so that a bad certificate or an oversized table stops the build before
anything is written.  ``render`` runs in the build action and produces the bytes from exactly
the values recorded in ``Content.spec`` and the input files, which is what SCons tracks.
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from . import ble_data, factory_param, pki
from .errors import ContentError

KIND_FACTORY_PARAM = "factory_param"
KIND_BLE_DATA = "ble_data"
KIND_PKI = "pki"
KIND_RAW = "raw"


@dataclass(frozen=True)
class Content:
    kind: str
    size: int
    spec: Dict[str, object]           # the board values the bytes depend on (JSON-able)
    sources: Tuple[str, ...]          # input files, in the order they are read
    secret: bool = False              # holds private keys: written owner-readable only
    public_keys: Optional[Tuple[bytes, ...]] = None   # per item, for cert/key pairing


def _read_file(path: str) -> bytes:
    if os.path.isdir(path):
        raise ContentError("is a folder; expected a file", path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            raise ContentError(f"is a symbolic link to {os.readlink(path)}, which does not exist", path) from None
        raise ContentError("no such file", path) from None
    except OSError as exc:
        raise ContentError(f"cannot be read ({exc.strerror})", path) from None
    if not stat.S_ISREG(mode):
        # reading a FIFO waits for a writer, reading /dev/zero never ends
        raise ContentError("is not a regular file (a device, FIFO or socket); expected a file", path)
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ContentError("no such file", path) from None
    except OSError as exc:
        raise ContentError(f"cannot be read ({exc.strerror})", path) from None


# --- a cache of what parsing a certificate or key found, keyed by file size and mtime --------------
# Every scons run checks every board before it declares targets; parsing the same certificates
# each time (and importing cryptography to do it) was most of a no-op build.  A file whose size
# and modification time are unchanged gives the public key recorded the last time.

_CACHE: Dict[str, object] = {"path": None, "entries": {}, "dirty": False}


def use_input_cache(path: str) -> None:
    _CACHE.update(path=path, entries={}, dirty=False)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if data.get("format") == 1:
            _CACHE["entries"] = data["entries"]
    except (OSError, ValueError, KeyError, AttributeError):
        pass


def save_input_cache() -> None:
    if _CACHE["path"] and _CACHE["dirty"]:
        from .fsutil import write_atomic
        write_atomic(_CACHE["path"], json.dumps({"format": 1, "entries": _CACHE["entries"]}, sort_keys=True).encode())
        _CACHE["dirty"] = False


def _public_key_of(path: str, data: bytes, kind: str, cache: bool = True) -> bytes:
    stamp = None
    if cache and _CACHE["path"]:
        try:
            st = os.stat(path)
            stamp = f"{kind}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"
        except OSError:
            pass
    entry = _CACHE["entries"].get(path) if stamp else None
    if stamp and entry and entry[0] == stamp:
        return bytes.fromhex(entry[1])
    try:
        if kind == "key":
            public = pki.public_key_bytes(pki.load_private_key(data).public_key())
        else:
            public = pki.public_key_bytes(pki.load_certificates(data)[0].public_key())
    except ContentError as err:
        raise ContentError(err.message, path) from None
    if stamp and _CACHE["path"]:
        _CACHE["entries"][path] = [stamp, public.hex()]
        _CACHE["dirty"] = True
    return public


def sort_sources(sources: Sequence[str]) -> Tuple[str, ...]:
    """File-name order, as Espressif's generator reads a folder of certificates."""
    return tuple(sorted(sources, key=lambda p: (os.path.basename(p), p)))


def read_content(name: str, sources: Sequence[str], at_version: str,
                 factory_param_values: Optional[dict] = None, cache: bool = True,
                 parse: bool = True) -> Optional[Content]:
    """Check the inputs of partition ``name``; None when it has no content. Raises ContentError.

    ``cache=False`` keeps per-device files (tens of thousands) out of the input cache;
    ``parse=False`` skips parsing certificates and keys (for inputs already checked)."""
    if name == "factory_param":
        if sources:
            raise ContentError("factory_param is built from the [factory_param] table; remove its source")
        if any(f.name not in factory_param_values for f in factory_param.FIELDS):
            return None  # a missing field: the board checks report it by key
        values = {f.name: factory_param_values[f.name] for f in factory_param.FIELDS}
        return Content(KIND_FACTORY_PARAM, factory_param.SIZE, {"values": values}, ())
    if name == "ble_data":
        if not sources:
            return None
        if len(sources) != 1:
            raise ContentError(f"{len(sources)} files; ble_data is built from exactly one GATT CSV")
        rows = _read_gatt(sources[0])
        size = len(ble_data.encode_ble_data(rows))
        return Content(KIND_BLE_DATA, size, {}, tuple(sources))
    if name in pki.PKI_PARTITIONS:
        if not sources:
            return None
        kind = pki.PKI_PARTITIONS[name]
        ordered = sort_sources(sources)
        if len(ordered) > pki.MAX_ID + 1:
            raise ContentError(f"{len(ordered)} files; a partition holds at most {pki.MAX_ID + 1} items")
        lengths, public_keys = [], []
        for path in ordered:
            data = _read_file(path)
            if len(data) > pki.MAX_CONTENT:
                raise ContentError(f"{len(data)} bytes; a certificate or key item holds at most {pki.MAX_CONTENT}", path)
            if parse:
                public_keys.append(_public_key_of(path, data, kind, cache))
            lengths.append(len(data))
        spec = {"item_type": pki.item_type(kind, at_version), "files": [os.path.basename(p) for p in ordered]}
        return Content(KIND_PKI, pki.pki_size(lengths), spec, ordered, secret=(kind == "key"),
                       public_keys=tuple(public_keys) if parse else None)
    if not sources:
        return None
    if len(sources) != 1:
        raise ContentError(f"{len(sources)} files; a user partition is one file copied as it is")
    size = len(_read_file(sources[0]))
    return Content(KIND_RAW, size, {}, tuple(sources))


def _read_gatt(path: str) -> List[dict]:
    data = _read_file(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ContentError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}, at offset {exc.start}); "
                           "expected a GATT CSV in UTF-8", path) from None
    try:
        return ble_data.read_gatt_csv(text)
    except ContentError as err:
        raise ContentError(err.message, path) from None


def render(kind: str, spec: Dict[str, object], sources: Sequence[str]) -> bytes:
    """The bytes of one partition from its recorded spec and input files."""
    if kind == KIND_FACTORY_PARAM:
        return factory_param.encode_factory_param(spec["values"])
    if kind == KIND_BLE_DATA:
        return ble_data.encode_ble_data(_read_gatt(sources[0]))
    if kind == KIND_PKI:
        return pki.encode_pki([(spec["item_type"], _read_file(p)) for p in sources])
    if kind == KIND_RAW:
        return _read_file(sources[0])
    raise ValueError(f"unknown content kind {kind!r}")
