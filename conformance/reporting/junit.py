"""junit.xml: test cases named by stable check id (CI dashboards show the ids users type)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..results import CheckResult


def _junit_address(nodeid: str) -> tuple[str, str]:
    """(classname, name) as pytest's junitxml writes them for a node id."""
    parts = nodeid.split("::")
    path = parts[0].replace("/", ".").removesuffix(".py")
    return ".".join([path, *parts[1:-1]]), parts[-1]


def rename_junit_cases(path: Path, results: Iterable[CheckResult]) -> None:
    """Name each test case by its stable check id (classname: the profile) and add its node id.

    pytest writes test cases under Python function names; CI dashboards should show the
    ids users type (``--check ID``) and read everywhere else (SPEC §6).
    """
    import xml.etree.ElementTree as ET

    if not path.is_file():
        return
    by_address = {_junit_address(r.nodeid): r for r in results}
    tree = ET.parse(path)
    for case in tree.iter("testcase"):
        result = by_address.get((case.get("classname", ""), case.get("name", "")))
        if result is None:
            continue
        case.set("classname", f"fhir-conformance.{result.profile}")
        case.set("name", result.check_id)
        props = case.find("properties")
        if props is None:
            props = ET.Element("properties")
            case.insert(0, props)
        ET.SubElement(props, "property", name="nodeid", value=result.nodeid)
        ET.SubElement(props, "property", name="outcome", value=result.outcome)
    tree.write(path, encoding="utf-8", xml_declaration=True)
