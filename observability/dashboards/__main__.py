"""Write the dashboards' JSON, or with --check fail when the committed JSON is stale."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from observability.dashboards import BOARDS
from observability.dashboards.kit import render

OUT = Path(__file__).resolve().parents[1] / "grafana" / "dashboards"


def stale(out: Path) -> list[str]:
    """Files that differ from what the boards generate, are missing, or are left over."""
    wanted = {b.filename: render(b) for b in BOARDS}
    found = []
    for name, text in sorted(wanted.items()):
        path = out / name
        if not path.is_file() or path.read_text() != text:
            found.append(name)
    found += sorted(p.name for p in out.glob("*.json") if p.name not in wanted)
    return found


def write(out: Path) -> list[str]:
    out.mkdir(parents=True, exist_ok=True)
    changed = stale(out)
    for board in BOARDS:
        (out / board.filename).write_text(render(board))
    for path in out.glob("*.json"):
        if path.name not in {b.filename for b in BOARDS}:
            path.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m observability.dashboards")
    parser.add_argument("--check", action="store_true", help="fail when a file is stale")
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder (default {OUT})")
    args = parser.parse_args(argv)
    if args.check:
        found = stale(args.out)
        if found:
            print(
                f"stale dashboards in {args.out}: {', '.join(found)}; run `make dashboards`",
                file=sys.stderr,
            )
            return 1
        return 0
    changed = write(args.out)
    print(f"{len(BOARDS)} dashboards in {args.out}; changed: {', '.join(changed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
