"""Entry point: `python -m greenlane.liveops` and the `greenlane-liveops` script."""

from __future__ import annotations

from greenlane.liveops.cli import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    run()
