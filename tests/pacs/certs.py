"""Test certificates for DICOM TLS, made with the ``cryptography`` package (no openssl call, no network).

:func:`make_pki` writes, into a folder, a test certificate authority and
leaf certificates signed by it (each valid for ``127.0.0.1`` and
``localhost``, for both TLS server and client use), plus a second, unrelated
authority whose leaf plays the intruder.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

#: Key size of the test keys (bits): small enough to generate in milliseconds, accepted by OpenSSL's default level.
KEY_BITS = 2048


@dataclass(frozen=True)
class Identity:
    """A certificate and its private key (PEM files)."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """The files of a test public-key infrastructure.

    Attributes
    ----------
    ca : Path
        The trusted authority's certificate (PEM).
    node, pacs, client : Identity
        Leaf identities signed by ``ca`` (the medlung node, Orthanc, a DICOM client).
    rogue_ca : Path
        An unrelated authority's certificate.
    rogue : Identity
        A leaf signed by ``rogue_ca``: a client (or server) nobody trusts.
    """

    ca: Path
    node: Identity
    pacs: Identity
    client: Identity
    rogue_ca: Path
    rogue: Identity


def _key():
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def _name(common_name: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "medlung tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _authority(common_name: str):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(common_name: str, authority):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca_cert, ca_key = authority
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _write(folder: Path, name: str, cert, key=None) -> Identity | Path:
    from cryptography.hazmat.primitives import serialization

    cert_path = folder / f"{name}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is None:
        return cert_path
    key_path = folder / f"{name}.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
    return Identity(cert_path, key_path)


def make_pki(folder: Path) -> Pki:
    """Write a test authority, three leaves it signs, and an unrelated authority with its leaf into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = _authority("medlung test CA")
    rogue_ca = _authority("rogue CA")
    return Pki(
        ca=_write(folder, "ca", ca[0]),
        node=_write(folder, "node", *_leaf("medlung node", ca)),
        pacs=_write(folder, "pacs", *_leaf("orthanc", ca)),
        client=_write(folder, "client", *_leaf("modality", ca)),
        rogue_ca=_write(folder, "rogue_ca", rogue_ca[0]),
        rogue=_write(folder, "rogue", *_leaf("intruder", rogue_ca)),
    )
