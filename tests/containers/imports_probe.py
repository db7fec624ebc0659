"""What a service's code imports, and what is installed: run inside an image (stdlib only).

    python - ROOT_MODULE [ROOT_MODULE ...] < imports_probe.py

Reads the source of the root modules and of every greenlane module they import
(at any depth, in functions too), without importing any of it. Prints one JSON
object: every installed distribution with its Requires-Dist lines, and every
third-party import with the distribution that provides it. The caller (on the
host, with `packaging`) works out which distributions the service needs.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import json
import platform
import re
import sys
from pathlib import Path


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def module_index() -> dict[str, str]:
    """module name -> distribution, from the files each installed distribution lists."""
    index: dict[str, str] = {}
    for dist in md.distributions():
        name = canonical(dist.metadata["Name"])
        for file in dist.files or ():
            parts = list(Path(str(file)).parts)
            if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] == "..":
                continue
            last = parts[-1]
            if last == "__init__.py":
                parts = parts[:-1]
            elif last.endswith(".py"):
                parts[-1] = last[:-3]
            elif last.endswith(".so"):
                parts[-1] = last.split(".", 1)[0]
            else:
                continue
            if parts:
                index.setdefault(".".join(parts), name)
    return index


def greenlane_dirs() -> list[Path]:
    spec = importlib.util.find_spec("greenlane")  # a namespace package: nothing runs
    return [Path(p) for p in (spec.submodule_search_locations or ())] if spec else []


def source_files(module: str, *, whole_package: bool) -> list[Path]:
    """The files of a greenlane module, found by path (importing could run code)."""
    rest = module.split(".")[1:]
    for base in greenlane_dirs():
        target = base.joinpath(*rest)
        if target.with_suffix(".py").is_file():
            return [target.with_suffix(".py")]
        if (target / "__init__.py").is_file():
            return sorted(target.rglob("*.py")) if whole_package else [target / "__init__.py"]
    return []


def module_of(path: Path) -> str:
    for base in greenlane_dirs():
        if path.is_relative_to(base):
            parts = ["greenlane", *path.relative_to(base).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return str(path)


def optional_lines(tree: ast.AST) -> set[int]:
    """Lines of imports inside `try: ... except ImportError` (optional accelerators)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
            for h in node.handlers
        ):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, ast.Import | ast.ImportFrom):
                        lines.add(sub.lineno)
    return lines


def imported_names(tree: ast.AST) -> list[tuple[list[str], int]]:
    """Each import as the dotted names it may mean (`from a import b`: a.b, then a)."""
    found: list[tuple[list[str], int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(([alias.name], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                found.append(([f"{node.module}.{alias.name}", node.module], node.lineno))
    return found


def main(roots: list[str]) -> None:
    index = module_index()
    stdlib = set(sys.stdlib_module_names)
    seen_files: set[Path] = set()
    queue = [f for root in roots for f in source_files(root, whole_package=True)]
    imports: dict[str, dict[str, object]] = {}
    unresolved: list[str] = []
    while queue:
        path = queue.pop()
        if path in seen_files:
            continue
        seen_files.add(path)
        tree = ast.parse(path.read_text(), str(path))
        optional = optional_lines(tree)
        for candidates, line in imported_names(tree):
            top = candidates[-1].split(".")[0]
            if top == "__future__":
                continue
            if top == "greenlane":
                files = next(
                    (f for n in candidates if (f := source_files(n, whole_package=False))), []
                )
                if not files:
                    unresolved.append(f"{candidates[-1]} (imported by {module_of(path)})")
                queue.extend(files)
                continue
            if top in stdlib:
                imports.setdefault(top, {"dist": None, "by": module_of(path), "optional": False})
                continue
            dist = None
            for name in candidates:
                parts = name.split(".")
                for i in range(len(parts), 0, -1):
                    dist = index.get(".".join(parts[:i]))
                    if dist:
                        break
                if dist:
                    break
            key = candidates[-1]
            if dist is None and line not in optional:
                unresolved.append(f"{key} (imported by {module_of(path)})")
            entry = imports.setdefault(key, {"dist": dist, "by": module_of(path), "optional": True})
            entry["optional"] = bool(entry["optional"]) and line in optional
    installed = {
        canonical(d.metadata["Name"]): {
            "version": d.version,
            "requires": list(d.requires or ()),
        }
        for d in md.distributions()
    }
    print(
        json.dumps(
            {
                "modules": sorted(module_of(p) for p in seen_files),
                "imports": imports,
                "unresolved": sorted(set(unresolved)),
                "installed": installed,
                # Requirement markers are the image's: its Python may be another patch
                # release than the runner's (redis needs async-timeout below 3.11.3).
                "python_full_version": platform.python_version(),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
