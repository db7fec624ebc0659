"""Where and how a client connects: target, credential, TLS or mutual TLS."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import grpc

from greenlane.core.wire import TOKEN_METADATA_KEY

__all__ = ["CHANNEL_OPTIONS", "Credential", "TlsFiles", "open_channel"]

# Separate subchannel pools give every channel its own TCP connection; otherwise
# grpc shares one connection between channels with the same target and options.
CHANNEL_OPTIONS: Final = (("grpc.use_local_subchannel_pool", 1),)


@dataclass(frozen=True)
class Credential:
    """A static token (sent as x-api-token) or an OAuth2 JWT (Authorization: Bearer).

    Both are the formats of docs/security.md; with mutual TLS the client certificate may
    be the only credential (then neither is set). repr() never shows the secret.
    """

    token: str = ""
    bearer: str = ""

    def __post_init__(self) -> None:
        if self.token and self.bearer:
            raise ValueError("credential: give a token or a bearer JWT, not both")
        for name in ("token", "bearer"):
            value: str = getattr(self, name)
            if value and (not value.isprintable() or value != value.strip()):
                raise ValueError(f"credential: {name} must be printable, without spaces around")

    def __repr__(self) -> str:
        kind = "token" if self.token else "bearer" if self.bearer else "certificate only"
        return f"Credential({kind})"

    def metadata(self) -> tuple[tuple[str, str], ...]:
        if self.token:
            return ((TOKEN_METADATA_KEY, self.token),)
        if self.bearer:
            return (("authorization", f"Bearer {self.bearer}"),)
        return ()


@dataclass(frozen=True)
class TlsFiles:
    """The CA to trust and, for mutual TLS, the client's certificate and key (PEM files)."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls: cert_file and key_file go together (mutual TLS)")

    def credentials(self) -> grpc.ChannelCredentials:
        ca = Path(self.ca_file).read_bytes()
        cert = Path(self.cert_file).read_bytes() if self.cert_file else None
        key = Path(self.key_file).read_bytes() if self.key_file else None
        return grpc.ssl_channel_credentials(ca, key, cert)


def open_channel(
    target: str,
    tls: TlsFiles | None = None,
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """A channel to ingestion: plaintext, TLS, or mutual TLS; `interceptors` (e.g. gRPC
    client spans) go on every call."""
    chosen = list(interceptors) or None
    if tls is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS, interceptors=chosen)
    return grpc.aio.secure_channel(
        target, tls.credentials(), options=CHANNEL_OPTIONS, interceptors=chosen
    )
