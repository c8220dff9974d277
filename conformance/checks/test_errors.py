"""Errors are OperationOutcomes with the documented status (SPEC §1), and the
CapabilityStatement is public."""

from __future__ import annotations

import secrets

import pytest

from conformance.rules.group import PATIENT_GROUP, group_body
from conformance.client import json_or_none
from conformance.expectations import expect_created, expect_error, expect_read, last_exchange
from conformance.markers import check, needs, profile
from conformance.verdicts import expect

pytestmark = profile("fhir-core")


def _group(prefix: str) -> dict:
    return group_body(PATIENT_GROUP, f"{prefix} err {secrets.token_hex(4)}")


@check("metadata-public", "FHIR-METADATA")
def test_capability_statement_needs_no_token(anonymous_fhir):
    response = anonymous_fhir.get("metadata", auth=False)
    body = json_or_none(response)
    expect("FHIR-METADATA", response.status_code == 200 and isinstance(body, dict)
           and body.get("resourceType") == "CapabilityStatement",
           f"GET /metadata without a token answered {response.status_code} "
           f"{(body or {}).get('resourceType') if isinstance(body, dict) else ''}", last_exchange(anonymous_fhir))


@check("error-malformed-json", "FHIR-INVALID-JSON", "FHIR-ERROR-OUTCOME")
@needs("Group", interaction="create")
def test_malformed_json_is_400(fhir):
    response = fhir.post("Group", content='{"resourceType": "Group", "type": ',
                         headers={"Content-Type": "application/fhir+json"})
    expect_error(fhir, response, "FHIR-INVALID-JSON", (400,), "create with a body that is not JSON", code="invalid")


@check("error-wrong-content-type", "FHIR-CONTENT-TYPE", "FHIR-ERROR-OUTCOME")
@needs("Group", interaction="create")
def test_non_json_content_type_is_refused(fhir, target_data, groups):
    import json
    body = _group(target_data.run_prefix)
    response = fhir.post("Group", content=json.dumps(body), headers={"Content-Type": "text/plain"})
    expect_error(fhir, response, "FHIR-CONTENT-TYPE", (400, 415), "create sent as text/plain")


@check("error-body-too-large", "FHIR-BODY-TOO-LARGE", "FHIR-ERROR-OUTCOME")
@needs("Group", interaction="create")
def test_oversized_body_is_413(fhir, target_data):
    import json
    body = _group(target_data.run_prefix)
    body["name"] = body["name"] + " " + "x" * (4 * 1024 * 1024)
    response = fhir.post("Group", content=json.dumps(body), headers={"Content-Type": "application/fhir+json"})
    expect_error(fhir, response, "FHIR-BODY-TOO-LARGE", (413,), "create with a 4 MiB body")


@check("error-unknown-route", "FHIR-UNKNOWN-ROUTE", "FHIR-ERROR-OUTCOME")
def test_unknown_route_is_404(fhir):
    response = fhir.get(f"NoSuchResourceType{secrets.token_hex(3)}/1")
    expect_error(fhir, response, "FHIR-UNKNOWN-ROUTE", (404,), "GET of an unknown route")


@check("group-read-unknown", "FHIR-NOT-FOUND", "FHIR-ERROR-OUTCOME")
@needs("Group", interaction="read")
def test_read_of_unknown_group_is_404(fhir, target_data):
    response = fhir.read("Group", target_data.missing_id())
    expect_error(fhir, response, "FHIR-NOT-FOUND", (404,), "read of an unknown Group", code="not-found")


@check("group-update-unknown", "FHIR-NOT-FOUND", "FHIR-ERROR-OUTCOME")
@needs("Group", interaction="update")
def test_update_of_unknown_group_is_404(fhir, target_data):
    missing = target_data.missing_id()
    body = {**_group(target_data.run_prefix), "id": missing}
    response = fhir.put(f"Group/{missing}", json_body=body)
    expect_error(fhir, response, "FHIR-NOT-FOUND", (404,), "update of an unknown Group", code="not-found")


@profile("canvas")
@check("group-delete-not-supported", "CANVAS-GROUP-NO-DELETE", "FHIR-ERROR-OUTCOME")
@needs("Group", interaction="create")
def test_delete_of_group_is_405(fhir, groups, target_data):
    # Canvas Teams and Patient Groups cannot be deleted, even where the target declares delete on Group
    # for Bulk Cohort groups (SPEC §5): this deletes a Canvas Patient Group the run created.
    response, gid = groups.create(_group(target_data.run_prefix))
    gid = expect_created(fhir, response, "Group", "CANVAS-GROUP-CREATE", "create")
    delete = fhir.delete(f"Group/{gid}")
    expect_error(fhir, delete, "CANVAS-GROUP-NO-DELETE", (405,), "DELETE of a Group", code="not-supported")
    expect_read(fhir, "Group", gid, "CANVAS-GROUP-NO-DELETE", "read after the refused DELETE")


@check("retry-after-valid", "HTTP-RETRY-AFTER-VALID")
@pytest.mark.run_last
def test_retry_after_values_are_believable(conformance_run):
    """Every Retry-After the run met (429s, export polls) asked for a wait the suite could obey."""
    polite = conformance_run.polite
    if not polite.retry_afters:
        pytest.skip("the target sent no Retry-After during the run (no 429, no export in progress)")
    problems = polite.header_problems
    expect("HTTP-RETRY-AFTER-VALID", not problems,
           f"{len(problems)} of {polite.retry_afters} Retry-After value(s) could not be obeyed (the suite backed off "
           f"on its own): " + "; ".join(p for p, _ in problems[:3]), problems[0][1] if problems else None)
