"""Resource validity beyond structure: what the target serves, against the FHIR R4 JSON Schema
(SHALL) and the core R4 invariants (SHOULD), each problem with its line, element path and rule.

Every read through ``expect_read`` is validated too (``conformance.expectations``); these
checks make sure the validity requirements are judged on a sample even when no other check
reads, and for exports on the files the baseline export downloaded (``conformance.bulk``).
"""

from __future__ import annotations

import pytest

from conformance.client import json_or_none
from conformance.expectations import expect_validity
from conformance.markers import check, needs, profile
from conformance.session import ConformanceRun
from conformance.validation import ValidationLog

from .support.export import CompletedExport

READ_TYPES = ("Group", "Patient", "Task")
SAMPLE = 10
READ_REQUIREMENTS = ("FHIR-RESOURCE-VALID", "FHIR-RESOURCE-INVARIANTS")
BULK_REQUIREMENTS = ("BULK-EXPORT-RESOURCE-VALID", "BULK-EXPORT-RESOURCE-INVARIANTS")


@check("resource-read-valid", *READ_REQUIREMENTS)
@profile("fhir-core")
def test_resources_read_are_valid(conformance_run: ConformanceRun, fhir):
    """A search page of each declared type (the Bundle and its entries) and a read of its first entry."""
    caps = conformance_run.capabilities
    types = [t for t in READ_TYPES if "search-type" in caps.interactions(t)]
    if not types:
        pytest.skip(f"the target declares search on none of {', '.join(READ_TYPES)}")
    log, first_bad = ValidationLog(), []

    def judge(response) -> dict | None:
        body = json_or_none(response)
        if response.status_code != 200 or not isinstance(body, dict):
            return None    # the answer itself is judged by the search and read checks
        if log.check(body) and not first_bad:
            first_bad.append(fhir.recorder.last)
        return body

    for rtype in types:
        bundle = judge(fhir.search(rtype, {"_count": SAMPLE})) or {}
        entries = [e.get("resource") for e in bundle.get("entry", []) or [] if isinstance(e, dict)]
        first = next((r for r in entries if isinstance(r, dict) and r.get("id")), None)
        if first is not None and "read" in caps.interactions(rtype):
            judge(fhir.read(rtype, str(first["id"])))
    if not log.resources:
        pytest.skip(f"no search of {', '.join(types)} answered 200 with a Bundle")
    expect_validity(log, f"{log.resources} answers read from the target (Bundles with their entries)",
                    first_bad[0] if first_bad else fhir.recorder.last, READ_REQUIREMENTS)


@check("export-resources-valid", *BULK_REQUIREMENTS)
@profile("bulk-export")
@needs("Group", operation="export")
def test_exported_resources_are_valid(baseline_export: CompletedExport):
    """Every line the baseline export's files held (up to export_validate_lines per file)."""
    log, first_bad = ValidationLog(), None
    for f in baseline_export.files:
        log.merge(f.validity)
        if first_bad is None and any(f.validity.invalid.values()):
            first_bad = f
    if not log.resources:
        pytest.skip("the baseline export held no resource to validate")
    where = f" in the {first_bad.type} file {first_bad.url}" if first_bad else ""
    expect_validity(log, f"exported lines{where}", first_bad.exchange if first_bad else baseline_export.poll.exchange,
                    BULK_REQUIREMENTS)
