#!/usr/bin/env python3
"""Make the development PKI that the stock boards carry in their certificate partitions.

A self-signed CA, and server, client, MQTT-client and WPA2-client certificates it signs, each
with an RSA-2048 key (the key type every ESP-AT release supports).  The output is committed
in site_scons/atfactory/boards/data/certs/ so that builds are reproducible; running this again makes new keys.

These keys are public: they exist so that a stock build has something valid in every
certificate partition.  Never ship them in a product; put your own files in your board.

    python scripts/make_dev_certs.py [OUTPUT_DIR]
"""
import datetime
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NOT_BEFORE = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
NOT_AFTER = datetime.datetime(2046, 1, 1, tzinfo=datetime.timezone.utc)
ORG = "atfactory development (not for production)"

LEAVES = {
    # file stem: (common name, extended key usage, DNS names)
    "server": ("atfactory-dev-server", ExtendedKeyUsageOID.SERVER_AUTH, ["localhost"]),
    "client": ("atfactory-dev-client", ExtendedKeyUsageOID.CLIENT_AUTH, []),
    "mqtt_client": ("atfactory-dev-mqtt-client", ExtendedKeyUsageOID.CLIENT_AUTH, []),
    "wpa2_client": ("atfactory-dev-wpa2-client", ExtendedKeyUsageOID.CLIENT_AUTH, []),
}


def _name(cn):
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    ca_key = _key()
    ca_name = _name("atfactory Development CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write(os.path.join(out_dir, "ca.crt"), ca.public_bytes(serialization.Encoding.PEM))
    # The CA key is not kept: nothing needs to sign with it again, and a development CA whose
    # key is gone cannot be used to mint further certificates.
    for stem, (cn, usage, dns) in LEAVES.items():
        key = _key()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if dns:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write(os.path.join(out_dir, f"{stem}.crt"), cert.public_bytes(serialization.Encoding.PEM))
        _write(os.path.join(out_dir, f"{stem}.key"), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    print(f"wrote the development CA and {len(LEAVES)} certificate/key pairs to {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "site_scons", "atfactory", "boards", "data", "certs"))
