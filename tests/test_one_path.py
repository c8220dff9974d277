"""One path for each request (issue 9): every request to the target goes through ``conformance.http``.

No module reaches into another's private names, and no module outside ``conformance.http``
builds its own httpx client or sends through one."""

from __future__ import annotations

import ast
from pathlib import Path

SUITE = Path(__file__).resolve().parents[1] / "conformance"
HTTP = SUITE / "http"


def modules() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(SUITE.rglob("*.py"))]


def test_no_module_imports_private_names_of_the_client_the_run_or_bulk():
    offenders = []
    for path, tree in modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = node.module or ""
            inside_http = HTTP in path.parents
            if module.split(".")[-1] in ("client", "session", "bulk", "http") or "http" in module.split("."):
                private = [a.name for a in node.names if a.name.startswith("_")]
                reaches_in = any(part.startswith("_") for part in module.split(".")) and not inside_http
                if private or reaches_in:
                    offenders.append(f"{path.relative_to(SUITE)}:{node.lineno} from {module} import "
                                     f"{', '.join(a.name for a in node.names)}")
    assert offenders == []


def test_only_conformance_http_talks_to_httpx_transports():
    """``httpx.Client``/``httpx.get``/``.stream``… outside ``conformance.http`` would be a side door."""
    side_doors = []
    for path, tree in modules():
        if HTTP in path.parents:
            continue
        for node in ast.walk(tree):
            func = node.func if isinstance(node, ast.Call) else None
            if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "httpx"
                    and func.attr in ("Client", "AsyncClient", "get", "post", "put", "delete", "request", "stream",
                                      "HTTPTransport")):
                side_doors.append(f"{path.relative_to(SUITE)}:{node.lineno} httpx.{func.attr}()")
            if isinstance(node, ast.Attribute) and node.attr == "http" and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "fhir":
                side_doors.append(f"{path.relative_to(SUITE)}:{node.lineno} .fhir.http")
    assert side_doors == []
