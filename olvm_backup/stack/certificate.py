"""The API's certificate when none is configured: `olvm-backup up` generates a self-signed one (EC P-256, ten
years, for 127.0.0.1, localhost and this host's name) into the data dir once and keeps it, so a browser's exception
for it lasts. The key is written 0600 before anything is in it."""
from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import socket
from pathlib import Path

from ..config import Settings

DIRECTORY = "api"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file there already keeps its mode through O_CREAT: made private before it is written
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def self_signed(directory: Path, hosts: list[str] | None = None) -> tuple[Path, Path]:
    """(cert, key) under `directory`, generated unless both are there already."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cert_file, key_file = directory / "tls.pem", directory / "tls.key"
    if cert_file.exists() and key_file.exists():
        return cert_file, key_file
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    hosts = list(dict.fromkeys(hosts or ["127.0.0.1", "localhost", socket.gethostname()]))
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "olvm-backup"),
                         x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder(subject_name=subject, issuer_name=subject, public_key=key.public_key(),
                                    serial_number=x509.random_serial_number(),
                                    not_valid_before=now - datetime.timedelta(days=1),
                                    not_valid_after=now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256()))
    _write_private(key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_file, key_file


def with_api_certificate(settings: Settings) -> tuple[Settings, bool]:
    """`settings` with a certificate for the API: the configured one, or the generated one (True when generated
    now or earlier rather than configured)."""
    if settings.api.tls_cert and settings.api.tls_key:
        return settings, False
    cert, key = self_signed(settings.data_dir / DIRECTORY)
    api = dataclasses.replace(settings.api, tls_cert=str(cert), tls_key=str(key))
    return dataclasses.replace(settings, api=api), True
