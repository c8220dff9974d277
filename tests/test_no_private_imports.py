"""No module reaches into another module's private (underscore) names.

A module's underscore names are its own business; what others need it exports. Checked
with ``ast`` over every module of each package: ``from x import _name`` and
``module._name`` on an imported module of the package both count, whether the other
module is named absolutely or relatively. Dunder names (``__version__``) are public.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["mock_server"]


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of ``from <level dots><target> import ...`` written in ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def violations(package: str) -> list[str]:
    found: list[str] = []
    for path in sorted((ROOT / package).rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        imported_modules: dict[str, str] = {}   # local name -> module of the package it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(module, is_package, node.level, node.module)
                if source.split(".")[0] != package:
                    continue
                for alias in node.names:
                    if _private(alias.name) and source != module:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {source}.{alias.name}")
                    imported_modules[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package:
                        imported_modules[alias.asname or alias.name.split(".")[0]] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in imported_modules):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} uses "
                             f"{imported_modules[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_imports_another_modules_private_names(package: str) -> None:
    assert (ROOT / package).is_dir(), f"package {package} not found under {ROOT}"
    assert violations(package) == []


def test_the_check_sees_a_private_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself can fail: a planted ``from .a import _x`` and ``a._y`` are both reported."""
    pkg = tmp_path / "planted"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("_x = 1\n_y = 2\n")
    (pkg / "b.py").write_text("from .a import _x\nfrom . import a\nprint(a._y, _x)\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    found = violations("planted")
    assert len(found) == 2 and "planted.a._x" in found[0] and "planted.a._y" in found[1], found
