"""A local certificate authority for `greenlane dev --tls` and the tests (cryptography).

`make_local_pki(folder)` writes a CA, a server certificate for 127.0.0.1 and localhost,
and a client certificate naming a fleet (a SAN URI `urn:greenlane:fleet:<id>`, the form
greenlane.core.auth reads), each key readable by its owner only.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from greenlane.core.auth import FLEET_URI_PREFIX, SCOPE_URI_PREFIX


@dataclass(frozen=True, slots=True)
class LocalPki:
    ca_file: Path
    ca_key_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path
    client_key_file: Path


def _write_key(path: Path, key: object) -> None:
    from cryptography.hazmat.primitives import serialization

    data = key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    path.chmod(0o600)


def _cert_pem(cert: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)  # type: ignore[attr-defined,no-any-return]


def issue(
    ca_cert: object,
    ca_key: object,
    common_name: str,
    *,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    uris: tuple[str, ...] = (),
    organization: str | None = None,
    server: bool = False,
    days: int = 30,
) -> tuple[object, object]:
    """A certificate signed by the CA (and its new EC key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ip_address(i)) for i in ips]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca_cert.subject)  # type: ignore[attr-defined]
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return cert, key


def make_ca(days: int = 30) -> tuple[object, object]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "GreenLane local CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def client_uris(fleet: str, scopes: tuple[str, ...] = ()) -> tuple[str, ...]:
    return (FLEET_URI_PREFIX + fleet, *(SCOPE_URI_PREFIX + s for s in scopes))


def make_local_pki(
    folder: Path, *, fleet: str = "dev", client_name: str = "dev-client"
) -> LocalPki:
    """A CA, a server certificate (127.0.0.1, ::1, localhost) and a client certificate of
    `fleet` in folder (created 0700; keys 0600)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    ca_cert, ca_key = make_ca()
    server_cert, server_key = issue(
        ca_cert,
        ca_key,
        "localhost",
        dns=("localhost",),
        ips=("127.0.0.1", "::1"),
        server=True,
    )
    client_cert, client_key = issue(ca_cert, ca_key, client_name, uris=client_uris(fleet))
    pki = LocalPki(
        folder / "ca.pem",
        folder / "ca.key",
        folder / "server.pem",
        folder / "server.key",
        folder / "client.pem",
        folder / "client.key",
    )
    pki.ca_file.write_bytes(_cert_pem(ca_cert))
    _write_key(pki.ca_key_file, ca_key)
    pki.server_cert_file.write_bytes(_cert_pem(server_cert))
    _write_key(pki.server_key_file, server_key)
    pki.client_cert_file.write_bytes(_cert_pem(client_cert))
    _write_key(pki.client_key_file, client_key)
    return pki
