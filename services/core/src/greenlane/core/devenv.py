"""The running `greenlane dev`'s settings file (.greenlane/dev.env), for local clients.

The file is an env file as pydantic-settings reads one (`env_file`, python-dotenv's
format: `KEY=value`, `export KEY=value`, quotes, `#` comments). A settings class reads
it with `Settings(_env_file=DEV_ENV_FILE)`: a GREENLANE_ variable still wins, a missing
file holds nothing. For the few clients that need one value, or where it came from
(to name the file in a message), `read_env_file` and `lookup` read it the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from pydantic_settings import BaseSettings, DotEnvSettingsSource, SettingsConfigDict

DEV_ENV_FILE: Final = Path(".greenlane") / "dev.env"


class _AnyKey(BaseSettings):
    """Every key of an env file, whatever it is named (no field filters them)."""

    model_config = SettingsConfigDict(extra="allow", case_sensitive=True)


def read_env_file(path: Path = DEV_ENV_FILE) -> dict[str, str]:
    """The file's KEY=value pairs, parsed by pydantic-settings' env-file reader.

    A missing or unreadable file holds nothing: there is simply no platform running here.
    """
    if not path.is_file():
        return {}
    try:
        values = DotEnvSettingsSource(_AnyKey, env_file=path, case_sensitive=True).env_vars
    except (OSError, UnicodeDecodeError):
        return {}
    return {key: value for key, value in values.items() if value is not None}


def lookup(
    name: str,
    default: str,
    *,
    environ: Mapping[str, str] | None = None,
    path: Path = DEV_ENV_FILE,
) -> str:
    """$name, else its value in the dev.env file, else default."""
    env = os.environ if environ is None else environ
    return env.get(name) or read_env_file(path).get(name) or default
