"""Connection defaults for CLI commands: the environment, else a running `greenlane dev`."""

from __future__ import annotations

import os
from pathlib import Path

DEV_ENV_FILE = Path(".greenlane") / "dev.env"


def read_dev_env(path: Path = DEV_ENV_FILE) -> dict[str, str]:
    """GREENLANE_…=value lines written by `greenlane dev`; missing file: nothing."""
    values: dict[str, str] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    return values


def setting(name: str, default: str) -> str:
    """$name, else the value in .greenlane/dev.env, else default."""
    return os.environ.get(name) or read_dev_env().get(name) or default
