"""No module of a package imports another module's private (``_name``) names: what a module
shares it makes public, so a reader sees its real interface and a refactor sees every user.

Within one module a private name is fine; ``from . import _x`` of a private *module* is fine
too (the package's own layout, e.g. an ``http/_auth.py``). The check is ``ast``-based: it
reads ``from X import _y`` and ``X._y`` attribute access on an imported module name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["conformance", "mock_server"]

# Known offenders another branch is still reshaping; empty since issue 11's http/ package
# landed. Each entry: (importing module, imported module, name).
ALLOWED: set[tuple[str, str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = _module_name(path).split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_imports(path: Path) -> list[tuple[str, str, str]]:
    """(file, module, private name) for every private name this file takes from another module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = str(path.relative_to(ROOT))
    found, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _resolve(path, node)
            for alias in node.names:
                where = ROOT / Path(*f"{source}.{alias.name}".split("."))
                if _is_private(alias.name) and not where.is_dir() and not where.with_suffix(".py").is_file():
                    found.append((rel, source, alias.name))
                else:
                    modules[alias.asname or alias.name] = f"{source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                modules[alias.asname or top] = alias.name if alias.asname else top
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and _is_private(node.attr) and isinstance(node.value, ast.Name)
                and node.value.id in modules and modules[node.value.id].split(".")[0] in PACKAGES):
            found.append((rel, modules[node.value.id], node.attr))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_imports_another_modules_private_names(package: str):
    offenders = [hit for path in sorted((ROOT / package).rglob("*.py")) for hit in private_imports(path)]
    unexpected = [hit for hit in offenders if hit not in ALLOWED]
    assert not unexpected, "private names imported across modules:\n" + "\n".join(
        f"  {f}: {name} from {module}" for f, module, name in unexpected)
    stale = {hit for hit in ALLOWED if hit[0].startswith(f"{package}/")} - set(offenders)
    assert not stale, f"allowed offenders that no longer occur (remove them from ALLOWED): {sorted(stale)}"


def test_the_check_sees_a_private_import():
    """The detector itself can fail: a planted private import is found."""
    pkg = ROOT / PACKAGES[0]
    probe = pkg / "_probe_private_import.py"
    probe.write_text("from .results import _current\nfrom . import results\nx = results._strict\n")
    try:
        hits = private_imports(probe)
    finally:
        probe.unlink()
    assert {(name) for _, _, name in hits} == {"_current", "_strict"}
