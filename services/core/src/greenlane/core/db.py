"""PostgreSQL connection helpers: where the database is, and a connect that fails in one line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from greenlane.core.devenv import DEV_ENV_FILE, lookup
from greenlane.core.errors import BackendUnavailable

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/greenlane"
DATABASE_URL_VARIABLE = "GREENLANE_DATABASE_URL"


def resolve_database_url(
    explicit: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    dev_env: Path = DEV_ENV_FILE,
) -> str:
    """--database-url, else GREENLANE_DATABASE_URL, else .greenlane/dev.env, else the default."""
    if explicit:
        return explicit
    return lookup(DATABASE_URL_VARIABLE, DEFAULT_DATABASE_URL, environ=environ, path=dev_env)


def redact(conninfo: str) -> str:
    """The URL or DSN without its password, fit for messages and logs."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparsable database URL>"
    user = params.get("user")
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    dbname = params.get("dbname") or user or ""
    who = f"{user}@" if user else ""
    return f"postgresql://{who}{host}:{port}/{dbname}"


def one_line(error: Exception, conninfo: str) -> str:
    """The error's message on one line, with the URL's password (if any) masked."""
    text = " ".join(str(error).split())
    try:
        password = conninfo_to_dict(conninfo).get("password")
    except psycopg.ProgrammingError:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return text


def connect(
    conninfo: str, *, connect_timeout: int = 5, **kwargs: Any
) -> psycopg.Connection[TupleRow]:
    """psycopg.connect in UTC, raising BackendUnavailable with a one-line, password-free message."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as error:
        raise BackendUnavailable(f"bad database URL: {one_line(error, conninfo)}") from None
    params.setdefault("connect_timeout", connect_timeout)
    # Reports print and bucket times in UTC whatever the server's or user's zone.
    params["options"] = f"{params.get('options') or ''} -c TimeZone=UTC".strip()
    try:
        return psycopg.connect(make_conninfo("", **params), **kwargs)
    except psycopg.OperationalError as error:
        raise BackendUnavailable(
            f"cannot connect to PostgreSQL at {redact(conninfo)}: {one_line(error, conninfo)}"
        ) from None
