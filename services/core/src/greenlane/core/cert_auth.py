"""Client certificates (cryptography): the fleet and scopes a certificate names."""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtensionOID, NameOID

from greenlane.core.auth import (
    ALL_SCOPES,
    FLEET_PATTERN,
    FLEET_URI_PREFIX,
    SCOPE_URI_PREFIX,
    CertificateIdentity,
)


def certificate_identity(pem_or_der: bytes) -> CertificateIdentity | None:
    """The fleet a client certificate names (a SAN URI `urn:greenlane:fleet:<id>`, else
    the subject's O), its SAN URIs `urn:greenlane:scope:<scope>`, and its CN; None when
    it names no fleet."""
    try:
        if pem_or_der.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(pem_or_der)
        else:
            cert = x509.load_der_x509_certificate(pem_or_der)
    except ValueError:
        return None
    fleet: str | None = None
    scopes: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
        uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        uris = []
    for uri in uris:
        if uri.startswith(FLEET_URI_PREFIX) and fleet is None:
            fleet = uri[len(FLEET_URI_PREFIX) :]
        elif uri.startswith(SCOPE_URI_PREFIX):
            scopes.add(uri[len(SCOPE_URI_PREFIX) :])
    if fleet is None:
        orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        fleet = str(orgs[0].value) if orgs else None
    if fleet is None or not FLEET_PATTERN.fullmatch(fleet):
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = "cert:" + (str(names[0].value)[:48] if names else fleet)
    known = frozenset(s for s in scopes if s in ALL_SCOPES)
    return CertificateIdentity(fleet, known if scopes else None, subject)
