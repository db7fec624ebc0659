"""Environment defaults of the simulator; its command-line flags take precedence."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from greenlane.core.settings import DEV_TOKEN, BaseServiceSettings, TokenList, parse_tokens
from greenlane.simulator.config import DEFAULT_TARGET, parse_target


class SimulatorSettings(BaseServiceSettings):
    """GREENLANE_INGESTION_ADDR, GREENLANE_API_TOKEN(S), and the shared logging settings."""

    ingestion_addr: str | None = None
    api_token: SecretStr | None = None
    # TLS towards ingestion (greenlane dev --tls writes them to dev.env).
    tls_ca_file: str = ""
    tls_client_cert_file: str = ""
    tls_client_key_file: str = ""
    # The server's list; a client on the same environment can use its first token.
    api_tokens: TokenList = Field(default_factory=list)
    # GREENLANE_TRACE_RATIO: the share of car statuses that start a trace, when the
    # process exports spans (OTEL_EXPORTER_OTLP_ENDPOINT); --trace-ratio overrides it.
    trace_ratio: float = Field(0.01, ge=0.0, le=1.0, allow_inf_nan=False)

    @field_validator("ingestion_addr")
    @classmethod
    def _addr(cls, value: str | None) -> str | None:
        return None if value is None else parse_target(value)

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return parse_tokens(value)

    @property
    def target(self) -> str:
        return self.ingestion_addr or DEFAULT_TARGET

    @property
    def token(self) -> SecretStr:
        if self.api_token is not None and self.api_token.get_secret_value().strip():
            return self.api_token
        if self.api_tokens:
            return self.api_tokens[0]
        return SecretStr(DEV_TOKEN)
