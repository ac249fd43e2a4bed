"""The simulated site's CA and the certificate its engine and imageio daemons serve."""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "olvm-sim"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _san(hosts) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def cert_names(cert_file: Path) -> set[str]:
    """The host names and addresses a certificate is valid for (its subjectAltName)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(n) for n in san.get_values_for_type(x509.IPAddress)} | set(san.get_values_for_type(x509.DNSName))


def ensure_pki(directory: Path, extra_hosts: tuple[str, ...] | list[str] = ()) -> Pki:
    """A CA and a server certificate for 127.0.0.1/localhost and `extra_hosts`, made once and kept across restarts.

    A kept certificate that lacks a host asked for now is issued again (by the same CA when its key was kept)."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca_key_file = directory / "ca.key"
    hosts = list(dict.fromkeys(["127.0.0.1", "localhost", *extra_hosts]))
    if all(p.exists() for p in (pki.ca_file, pki.cert_file, pki.key_file)):
        if set(hosts) <= cert_names(pki.cert_file):
            return pki
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(not_valid_before=now - datetime.timedelta(days=1), not_valid_after=now + datetime.timedelta(days=3650))
    if pki.ca_file.exists() and ca_key_file.exists():
        ca = x509.load_pem_x509_certificate(pki.ca_file.read_bytes())
        ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder(subject_name=_name("olvm-sim CA"), issuer_name=_name("olvm-sim CA"),
                                      public_key=ca_key.public_key(), serial_number=x509.random_serial_number(),
                                      **valid)
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, encipher_only=False, decipher_only=False),
                             critical=True)
              .sign(ca_key, hashes.SHA256()))
        ca_key_file.write_bytes(ca_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
        ca_key_file.chmod(0o600)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder(subject_name=_name("127.0.0.1"), issuer_name=ca.subject,
                                    public_key=key.public_key(), serial_number=x509.random_serial_number(), **valid)
            .add_extension(_san(hosts), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pki.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    pki.key_file.chmod(0o600)
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return pki
