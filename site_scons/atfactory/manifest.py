"""manifest.json: what a release folder holds and what it was made from, and its signature.

The manifest lists every output (path in the release folder, flash offset, size, SHA-256) and
every input (board files, partition sources, firmware files: by role and name, never by
absolute path, so two checkouts give the same bytes), with the atfactory version and the
plugins that took part.  It is deterministic: sorted keys, no time stamps.

``manifest.json.sig`` is an Ed25519 signature of the manifest's bytes, base64 on one line.
``check_release`` verifies the signature and then every output's hash.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import AtFactoryError, InputError, SigningError, display_path
from .fsutil import read_input

MANIFEST = "manifest.json"
SIGNATURE = "manifest.json.sig"
FORMAT = 1


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# path -> (stamp, SHA-256) of files this process hashed or wrote: the boards of one build share
# inputs (certificates, layouts), and a factory image's digest comes from the bytes written.
_KNOWN_SHA256: Dict[str, Tuple[str, str]] = {}


def remember_sha256(path: str, stamp, digest: str) -> None:
    if stamp is not None:
        _KNOWN_SHA256[path] = (stamp, digest)


def _stamped_sha256(path: str) -> str:
    """sha256_file(path), computed once per content: a file whose stamp changed is read again."""
    from .stamps import stamp_of

    stamp = stamp_of(path)   # taken before reading: a change while reading changes it again
    known = _KNOWN_SHA256.get(path)
    if stamp is not None and known is not None and known[0] == stamp:
        return known[1]
    digest = sha256_file(path)
    remember_sha256(path, stamp, digest)
    return digest


def manifest_spec(board, outputs: Sequence[Tuple[str, Optional[int]]], inputs: Sequence[dict],
                  plugins: dict, version: str) -> dict:
    """What the manifest records beyond file contents: the order of ``sources`` follows
    ``outputs`` then ``inputs``."""
    return {
        "format": FORMAT,
        "atfactory": version,
        "board": {"id": board.id, "module": board.module_name, "chip": board.chip.name,
                  "flash": {"mode": board.flash_mode, "freq": board.flash_freq, "size": board.flash_size}},
        "outputs": [[path, offset] for path, offset in outputs],
        "inputs": list(inputs),
        "plugins": [{"name": n, "version": v} for n, v in sorted(plugins.items())],
    }


def board_inputs(board, firmware=None) -> List[Tuple[dict, str]]:
    """(description, absolute path) of every input a board's outputs are made from."""
    found: List[Tuple[dict, str]] = []
    for path in board.files:
        found.append(({"role": "board file", "name": os.path.basename(path)}, path))
    for p in board.partitions:
        for n, source in enumerate(p.sources):
            found.append(({"role": "source", "partition": p.name, "index": n, "name": os.path.basename(source)}, source))
    if firmware is not None:
        for path in firmware.inputs:
            found.append(({"role": "firmware", "name": os.path.relpath(path, firmware.origin).replace(os.sep, "/")
                           if firmware.kind == "release" else os.path.basename(path)}, path))
    return found


def render_manifest(spec: dict, sources: Sequence[str]) -> bytes:
    outputs, inputs = spec["outputs"], spec["inputs"]
    if len(sources) != len(outputs) + len(inputs):
        raise AtFactoryError("manifest: sources do not match the outputs and inputs it lists")
    doc = {k: spec[k] for k in ("format", "atfactory", "board", "plugins")}
    doc["outputs"] = sorted(({"path": path, "offset": offset, "size": os.path.getsize(src), "sha256": _stamped_sha256(src)}
                             for (path, offset), src in zip(outputs, sources)), key=lambda o: o["path"])
    doc["inputs"] = [dict(desc, sha256=_stamped_sha256(src)) for desc, src in zip(inputs, sources[len(outputs):])]
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8")


# --- signing ----------------------------------------------------------------------------------

def _read_key_file(path: str, setting: str) -> bytes:
    try:
        return read_input(path)
    except InputError as err:
        raise SigningError(f"{setting} {display_path(path)}: {err.reading}") from None


def load_signing_key(path: str, setting: str = "sign_key ="):
    """An Ed25519 private key (PEM or DER, unencrypted).  Raises SigningError with what to do,
    naming ``setting`` (the variable or option that gave the path)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    data = _read_key_file(path, setting)
    if b"ENCRYPTED" in data:
        raise SigningError(f"{setting} {display_path(path)}: the key is encrypted; the build signs unattended, "
                           "so give it a decrypted copy (openssl pkey -in KEY -out KEY.plain) kept owner-readable")
    try:
        loader = serialization.load_pem_private_key if b"-----BEGIN" in data else serialization.load_der_private_key
        key = loader(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningError(f"{setting} {display_path(path)}: not a PEM or DER private key "
                           f"({str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise SigningError(f"{setting} {display_path(path)}: a {type(key).__name__.replace('PrivateKey', '')} key; "
                           "accepted: an Ed25519 key (openssl genpkey -algorithm ed25519 -out KEY)")
    return key


def sign_manifest(manifest: bytes, key_path: str) -> bytes:
    signature = load_signing_key(key_path).sign(manifest)
    return base64.b64encode(signature) + b"\n"


def load_public_key(path: str):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    data = _read_key_file(path, "--pubkey")
    try:
        loader = serialization.load_pem_public_key if b"-----BEGIN" in data else serialization.load_der_public_key
        key = loader(data)
    except (ValueError, TypeError):
        if b"PRIVATE KEY" in data:
            raise SigningError(f"--pubkey {display_path(path)}: this is a private key; give the public key "
                               "(openssl pkey -in KEY -pubout -out KEY.pub)") from None
        raise SigningError(f"--pubkey {display_path(path)}: not a PEM or DER public key") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise SigningError(f"--pubkey {display_path(path)}: not an Ed25519 public key")
    return key


def find_release_folder(path: str) -> str:
    """The folder holding manifest.json for a release folder, or for a file inside one."""
    candidates = [path] if os.path.isdir(path) else []
    folder = os.path.dirname(os.path.abspath(path))
    candidates += [folder, os.path.dirname(folder)]
    for c in candidates:
        if os.path.isfile(os.path.join(c, MANIFEST)):
            return c
    raise SigningError(f"{display_path(path)}: no {MANIFEST} in it or beside it; build with sign_key=KEY")


def check_release(path: str, pubkey_path: str) -> Tuple[str, List[str], dict]:
    """Signature first, then every output hash.  Returns (release folder, problems, manifest)."""
    from cryptography.exceptions import InvalidSignature

    folder = find_release_folder(path)
    key = load_public_key(pubkey_path)
    manifest_bytes = _read_key_file(os.path.join(folder, MANIFEST), "manifest")
    sig_path = os.path.join(folder, SIGNATURE)
    if not os.path.isfile(sig_path):
        return folder, [f"{SIGNATURE}: missing; the release is not signed"], {}
    try:
        signature = base64.b64decode(_read_key_file(sig_path, "signature").strip(), validate=True)
        key.verify(signature, manifest_bytes)
    except (InvalidSignature, ValueError):
        return folder, [f"{MANIFEST}: the signature in {SIGNATURE} does not match the manifest and this key: "
                        "the manifest was altered or signed with another key"], {}
    try:
        manifest = json.loads(manifest_bytes)
        outputs = [(str(o["path"]), str(o["sha256"])) for o in manifest["outputs"]]
    except (ValueError, TypeError, KeyError):
        return folder, [f"{MANIFEST}: signed, but not a manifest atfactory wrote (its JSON has no outputs list)"], {}
    problems = []
    covered = {MANIFEST, SIGNATURE}
    for rel, digest in outputs:
        covered.add(rel)
        _check_output(folder, rel, digest, "the manifest", problems)
    device_outputs = 0
    if os.path.lexists(os.path.join(folder, DEVICES_LEDGER)):
        covered |= {DEVICES_LEDGER, DEVICES_SIGNATURE}
        before = len(covered)
        problems += _check_devices(folder, key, covered)
        device_outputs = len(covered) - before
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if rel not in covered:
                problems.append(f"{rel}: in the release folder but in no signed list: an unsigned file, or an output "
                                "of an earlier build with other settings")
    manifest["device_outputs_checked"] = device_outputs
    return folder, problems, manifest


DEVICES_LEDGER = "devices.json"
DEVICES_SIGNATURE = "devices.json.sig"


def _check_output(folder: str, rel: str, digest: str, listed_in: str, problems: List[str]) -> None:
    full = os.path.join(folder, rel)
    if not os.path.isfile(full):
        problems.append(f"{rel}: listed in {listed_in}, missing from the release folder")
    elif sha256_file(full) != digest:
        problems.append(f"{rel}: SHA-256 differs from {listed_in}: the file was altered")


def _check_devices(folder: str, key, covered: set) -> List[str]:
    """devices.json is signed on its own (devices.json.sig); every device output it lists is checked."""
    from cryptography.exceptions import InvalidSignature

    sig_path = os.path.join(folder, DEVICES_SIGNATURE)
    if not os.path.isfile(sig_path):
        return [f"{DEVICES_SIGNATURE}: missing; the devices of this release are not signed"]
    ledger_bytes = _read_key_file(os.path.join(folder, DEVICES_LEDGER), "devices ledger")
    try:
        key.verify(base64.b64decode(_read_key_file(sig_path, "signature").strip(), validate=True), ledger_bytes)
    except (InvalidSignature, ValueError):
        return [f"{DEVICES_LEDGER}: the signature in {DEVICES_SIGNATURE} does not match it and this key: the "
                "ledger was altered or signed with another key"]
    problems: List[str] = []
    try:
        devices = [(str(d["device_id"]), dict(d["outputs"])) for d in json.loads(ledger_bytes)["devices"]]
    except (ValueError, TypeError, KeyError):
        return [f"{DEVICES_LEDGER}: signed, but not a ledger atfactory wrote"]
    for device_id, outputs in devices:
        for rel, digest in sorted(outputs.items()):
            path = f"devices/{device_id}/{rel}"
            covered.add(path)
            _check_output(folder, path, str(digest), DEVICES_LEDGER, problems)
    return problems
