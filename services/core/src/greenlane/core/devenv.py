"""The running `greenlane dev`'s settings file (.greenlane/dev.env), for local clients."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

DEV_ENV_FILE: Final = Path(".greenlane") / "dev.env"


def read_env_file(path: Path = DEV_ENV_FILE) -> dict[str, str]:
    """KEY=value lines (also `export KEY=value`, values optionally quoted), # comments.

    A missing or unreadable file holds nothing: there is simply no platform running here.
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").strip().partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


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
