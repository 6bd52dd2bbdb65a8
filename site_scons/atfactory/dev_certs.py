"""The development certificates and keys of ``boards/data/certs``: public, never for a product.

``scripts/make_dev_certs.py`` made them so that every stock certificate partition holds
something valid; their private keys are in atfactory's public repository, so a device that
ships them trusts, and is trusted by, anyone.  They are recognised by content, not by path, so
that copies are caught wherever they are and however they are encoded: a file is development
material when its SHA-256 is one of those files', or when the public key it holds (a
certificate's, or a private key's public half) is one of theirs.  A test keeps these digests
equal to the files.

A certificate that the development CA issued for a key of its own is not recognised here.
"""
from __future__ import annotations

import hashlib
from typing import Optional

# SHA-256 of each file of boards/data/certs -> its name there
FILES = {
    "4245cb15835a5c06056daaabbf5bb1e1d226fa41e38bfee0b89298b0cf6e0002": "ca.crt",
    "bbb0cf7dc211f3958e76e9b43efa34c940c54c09d931e86d88846de02fea4ddb": "client.crt",
    "0714a95ba54eacdcb4776b41a19733e50dbd65b0144422ac4b2af68ea8460548": "client.key",
    "e9c258476010a18dc80cae425a6dd81db1f80a2ef0db525b58c6fdd6bdc51186": "mqtt_client.crt",
    "8d46adc0414c9a58d45cc8c8c0d92cac559dfee548444836f48676de6ccee2bb": "mqtt_client.key",
    "b3078fded6d1d518606f1d30abf0946e2e69e7e286026e09e21871bc51368f6c": "server.crt",
    "c1ff3ed4e420a8c860b12f791ca89ac80c5d9191925342ae500fe984eea7c6e9": "server.key",
    "f3755cb8a6460a4c1b026962c8524ccdbbf5227739d12ea1e5ac16c63f192dad": "wpa2_client.crt",
    "1e93907040678e9c670f196f213bea13292ba257d397b6e3e1a1a2c8c9acfb05": "wpa2_client.key",
}

# SHA-256 of the DER SubjectPublicKeyInfo of each key pair -> the stem of its files
PUBLIC_KEYS = {
    "ccebc7d1615bdba204603a170c892dc98ea2fdce3fa526e9d95a30ecb2ac5d04": "ca",
    "0dbefc040c7a35ee21c767a1da116b6502400d958e31e5d32b585835d36b55a3": "client",
    "de6e70e04e87770a1027a751915d4fea0aeae9c202706849e341c9ebd64753e1": "mqtt_client",
    "6a2a43920dfc34a1d5e40d4203b8a891a95c587ecc7bf0ce61a04e3e7aed5984": "server",
    "dfc2dc4565f98926cb703453754cf7bb1ae68691ad952578d1bfd51d3fde2ad5": "wpa2_client",
}

FOLDER = "boards/data/certs"


def development_match(data: Optional[bytes], public_key: Optional[bytes]) -> Optional[str]:
    """The development file ``data`` is, or the stem of the development key pair whose public
    key (DER SubjectPublicKeyInfo) it holds; None when it is neither."""
    if public_key is not None:
        stem = PUBLIC_KEYS.get(hashlib.sha256(public_key).hexdigest())
        if stem is not None:
            return stem
    if data is not None:
        name = FILES.get(hashlib.sha256(data).hexdigest())
        if name is not None:
            return name.rsplit(".", 1)[0]
    return None


_TITLES = {"ca": "CA", "client": "client", "mqtt_client": "MQTT client", "server": "server", "wpa2_client": "WPA2 client"}


def describe(stem: str, role: str) -> str:
    """"atfactory's development server key (boards/data/certs/server.key or a copy: ...)"."""
    what, suffix = ("key", ".key") if role == "key" else ("certificate", ".crt")
    return (f"atfactory's development {_TITLES.get(stem, stem)} {what} ({FOLDER}/{stem}{suffix} or a copy; its "
            "private key is public in atfactory's repository)")
