"""Reusable expectations about HTTP answers, each stated against a requirement."""

from __future__ import annotations

from typing import Any, Iterable

import httpx

from .http import Exchange, FhirClient, created_id, json_or_none
from .rules.model import REFUSED, Violation
from .validation import INVARIANT, SCHEMA, ValidationLog
from .verdicts import expect


def last_exchange(fhir: FhirClient) -> Exchange | None:
    return fhir.recorder.last


def is_operation_outcome(body: Any) -> bool:
    """An OperationOutcome with at least one error/fatal issue that has a code."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return False
    issues = body.get("issue")
    return isinstance(issues, list) and any(
        isinstance(i, dict) and i.get("severity") in ("error", "fatal") and i.get("code") for i in issues)


def issue_codes(body: Any) -> set[str]:
    if not isinstance(body, dict):
        return set()
    return {i.get("code") for i in body.get("issue", []) or [] if isinstance(i, dict)}


def outcome_text(body: Any) -> str:
    """Every human-readable text in an OperationOutcome, joined."""
    if not isinstance(body, dict):
        return ""
    texts = []
    for issue in body.get("issue", []) or []:
        if isinstance(issue, dict):
            texts.append(str((issue.get("details") or {}).get("text", "")))
            texts.append(str(issue.get("diagnostics", "")))
    return " ".join(texts)


def describe_statuses(statuses: Iterable[int]) -> str:
    """'a 4xx', 'a 4xx or 5xx', '400 or 422', '404': how a person says which answers were expected."""
    wanted = sorted(set(statuses))
    classes = sorted({s // 100 for s in wanted})
    if all(set(range(c * 100, c * 100 + 100)) <= set(wanted) for c in classes) and \
            len(wanted) == 100 * len(classes):
        return "a " + " or ".join(f"{c}xx" for c in classes)
    if len(wanted) == 1:
        return f"HTTP {wanted[0]}"
    return ", ".join(map(str, wanted[:-1])) + f" or {wanted[-1]}"


def expect_error(fhir: FhirClient, response: httpx.Response, requirement: str, statuses: Iterable[int],
                 what: str, code: str | None = None, code_requirement: str | None = None) -> Any:
    """The answer is one of ``statuses`` and carries an OperationOutcome (FHIR-ERROR-OUTCOME)."""
    statuses = tuple(statuses)
    ex = last_exchange(fhir)
    expect(requirement, response.status_code in statuses,
           f"{what}: expected {describe_statuses(statuses)}, got {response.status_code}", ex)
    body = json_or_none(response)
    if response.status_code < 400:
        return body      # not an error at all: the status expectation above said so, once
    expect("FHIR-ERROR-OUTCOME", is_operation_outcome(body),
           f"{what}: HTTP {response.status_code} without an OperationOutcome carrying an error issue with a code", ex)
    if code is not None:
        expect(code_requirement or requirement, code in issue_codes(body),
               f"{what}: expected issue code '{code}', got {sorted(c for c in issue_codes(body) if c)}", ex)
    return body


def expect_created(fhir: FhirClient, response: httpx.Response, resource_type: str, requirement: str,
                   what: str) -> str:
    """201 with an absolute Location [base]/Type/id; returns the id."""
    ex = last_exchange(fhir)
    expect(requirement, 200 <= response.status_code < 300, f"{what}: not accepted (HTTP {response.status_code})", ex)
    expect("FHIR-CREATE-201", response.status_code == 201, f"{what}: expected 201 Created, got {response.status_code}", ex)
    location = response.headers.get("location", "")
    expect("FHIR-CREATE-201", bool(location), f"{what}: 201 without a Location header", ex)
    expected_prefix = f"{fhir.base_url}/{resource_type}/"
    expect("FHIR-CREATE-201", location.startswith(expected_prefix),
           f"{what}: Location {location!r} is not an absolute URL under {expected_prefix}", ex)
    rid = created_id(response, resource_type)
    expect("FHIR-CREATE-201", rid is not None, f"{what}: no id in Location {location!r}", ex)
    return rid  # type: ignore[return-value]


def expect_read(fhir: FhirClient, resource_type: str, rid: str, requirement: str, what: str) -> dict[str, Any]:
    response = fhir.read(resource_type, rid)
    ex = last_exchange(fhir)
    expect(requirement, response.status_code == 200, f"{what}: read {resource_type}/{rid} gave {response.status_code}", ex)
    body = json_or_none(response)
    expect(requirement, isinstance(body, dict) and body.get("resourceType") == resource_type
           and body.get("id") == rid, f"{what}: read did not return {resource_type}/{rid}", ex)
    if isinstance(body, dict) and body.get("resourceType") == resource_type:
        expect_valid(body, f"{what}: {resource_type}/{rid}", ex)
    return body


def expect_rejected(fhir: FhirClient, response: httpx.Response, violation: Violation, interaction: str) -> None:
    """The status policy for an invalid payload: refused (``REFUSED``) with an OperationOutcome;
    the exact reference status of the rule it breaks is checked as FHIR-REJECT-STATUS."""
    what = f"{interaction} with {violation.description}"
    expect_error(fhir, response, violation.requirement, REFUSED, what)
    expect("FHIR-REJECT-STATUS", response.status_code == violation.status,
           f"{what}: reference status is {violation.status}, got {response.status_code}", last_exchange(fhir))


def expect_valid(resource: Any, what: str, exchange: Exchange | None = None,
                 requirements: tuple[str, str] = ("FHIR-RESOURCE-VALID", "FHIR-RESOURCE-INVARIANTS")) -> ValidationLog:
    """A resource the target served meets the R4 JSON Schema (SHALL) and the core invariants
    (SHOULD); the invariants are stated first, so a schema failure does not hide them."""
    log = ValidationLog()
    log.check(resource)
    expect_validity(log, what, exchange, requirements)
    return log


def expect_validity(log: ValidationLog, what: str, exchange: Exchange | None,
                    requirements: tuple[str, str]) -> None:
    """State the two validity requirements (schema, invariants) over what ``log`` gathered."""
    schema_req, invariant_req = requirements
    expect(invariant_req, not log.invalid[INVARIANT], f"{what}: {log.summary(INVARIANT)}", exchange)
    expect(schema_req, not log.invalid[SCHEMA], f"{what}: {log.summary(SCHEMA)}", exchange)
