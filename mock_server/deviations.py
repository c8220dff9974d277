"""Named switches that each break exactly one requirement, so the suite can prove it notices."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from flask import current_app


@dataclass(frozen=True)
class Deviation:
    name: str
    description: str
    breaks: tuple[str, ...]


def _d(name: str, breaks: str, description: str) -> tuple[str, Deviation]:
    return name, Deviation(name, description, (breaks,))


DEVIATIONS: dict[str, Deviation] = dict(
    [
        _d("responsibility-not-unique", "CANVAS-GROUP-RESP-UNIQUE", "Responsibilities are not unique: any team may claim any responsibility."),
        _d("create-missing-location", "FHIR-CREATE-201", "Create answers 201 without a Location header."),
        _d("create-returns-200", "FHIR-CREATE-201", "Create answers 200 instead of 201."),
        _d("type-enum-not-enforced", "CANVAS-GROUP-TYPE", "Any non-empty Group.type string is accepted and stored."),
        _d("errors-not-operationoutcome", "FHIR-ERROR-OUTCOME", 'Error bodies are {"error": "<text>"} instead of an OperationOutcome.'),
        _d("search-ignores-type", "CANVAS-GROUP-SEARCH-TYPE", "Group search ignores the type parameter."),
        _d("paging-next-on-last-page", "FHIR-SEARCH-PAGING", "The last page also carries a next link (to an offset past the end)."),
        _d("auth-not-enforced", "FHIR-AUTH-401", "Missing or invalid bearer tokens are accepted as full access."),
        _d("scopes-not-enforced", "FHIR-AUTH-403", "Token scopes are not checked."),
        _d("quantity-always-zero", "CANVAS-GROUP-QUANTITY", "Group.quantity always reads 0."),
        _d("actual-echoed", "CANVAS-GROUP-ACTUAL", "Group.actual reads as last sent instead of always true."),
        _d("if-unmodified-since-ignored", "FHIR-PRECONDITION-412", "If-Unmodified-Since is ignored on update (If-Match still honoured)."),
        _d("if-match-malformed-ignored", "FHIR-IF-MATCH-MALFORMED", "A malformed If-Match (not an entity tag) is ignored: the update is applied."),
        _d("readonly-rejected", "FHIR-READONLY-IGNORED", "A body carrying quantity or member.entity.display is rejected with 400."),
        _d("member-existence-unchecked", "CANVAS-GROUP-MEMBER-EXISTS", "Members referencing missing resources are accepted."),
        _d("member-kind-unchecked", "CANVAS-GROUP-MEMBER-KIND", "Members of the wrong kind for the group type are accepted."),
        _d("patient-group-characteristic-allowed", "CANVAS-GROUP-RESP-TEAM-ONLY", "Patient Groups may carry responsibility characteristics."),
        _d("delete-allowed", "CANVAS-GROUP-NO-DELETE", "DELETE /Group/<id> answers 204 and deletes the group."),
        _d("count-ignored", "FHIR-SEARCH-COUNT", "_count is ignored: pages always hold 10 entries."),
        _d("read-actual-not-boolean", "FHIR-RESOURCE-VALID", "Group reads and searches show actual as the string 'yes' (not a JSON boolean)."),
        _d("read-group-not-actual", "FHIR-RESOURCE-INVARIANTS", "Group reads and searches show actual false for groups with members (breaks grp-1)."),
        _d("post-search-ignores-body", "FHIR-SEARCH-POST", "POST _search ignores its form-encoded body."),
        _d("update-id-mismatch-accepted", "FHIR-UPDATE-ID", "An update whose body id differs from the URL id is accepted."),
        _d("dropped-responsibility-not-freed", "CANVAS-GROUP-RESP-FREE", "Responsibilities dropped by an update stay reserved by the old team."),
        _d("keep-own-responsibility-rejected", "CANVAS-GROUP-RESP-KEEP", "An update re-sending the team's own responsibility is refused with 422."),
        _d("unknown-elements-accepted", "FHIR-UNKNOWN-ELEMENT", "Elements unknown to FHIR R4 Group are silently accepted."),
        _d("empty-strings-accepted", "FHIR-EMPTY-STRING", "Empty string values are accepted."),
        _d("name-not-required", "CANVAS-GROUP-NAME", "A Group without name is accepted."),
        _d("update-keeps-old-members", "CANVAS-GROUP-UPDATE", "Update ignores the new member list and keeps the old one."),
        _d("not-found-as-400", "FHIR-NOT-FOUND", "Unknown ids are answered 400 invalid instead of 404 not-found."),
        _d("rejected-create-stored", "FHIR-REJECT-NOTHING-STORED", "A create rejected with 422 for a missing/wrong-kind member is stored anyway."),
        _d("last-modified-missing", "FHIR-LAST-MODIFIED", "Reads send no Last-Modified header."),
        _d("wrong-json-types-accepted", "FHIR-JSON-TYPES", 'Strings are accepted for booleans and numbers (e.g. "actual": "true").'),
    ]
)

# Task (SPEC §3): each breaks one Task rule.
DEVIATIONS.update(
    [
        _d("task-owner-kept-when-omitted", "CANVAS-TASK-OMIT-OWNER-CLEARED", "An update without owner keeps the old owner."),
        _d("task-restriction-kept-when-omitted", "CANVAS-TASK-OMIT-RESTRICTION-CLEARED", "An update without restriction keeps the old due date."),
        _d("task-input-kept-when-omitted", "CANVAS-TASK-OMIT-INPUT-CLEARED", "An update without input keeps the old labels."),
        _d("task-description-kept-when-omitted", "CANVAS-TASK-OMIT-DESCRIPTION", "An update (or create) without description is accepted; an update keeps the old one."),
        _d("task-authored-cleared-when-omitted", "CANVAS-TASK-OMIT-AUTHORED-KEPT", "An update without authoredOn clears it."),
        _d("task-group-cleared-when-omitted", "CANVAS-TASK-OMIT-GROUP-KEPT", "An update without the task-group extension removes the team."),
        _d("task-notes-replaced", "CANVAS-TASK-NOTES-APPEND", "Notes in an update replace the stored notes instead of being appended."),
        _d("task-intent-not-enforced", "CANVAS-TASK-INTENT", "Any intent string is accepted and stored."),
        _d("task-owner-kind-unchecked", "CANVAS-TASK-OWNER", "An owner referencing an existing non-Practitioner (e.g. a Patient) is accepted."),
        _d("task-label-search-ignored", "CANVAS-TASK-SEARCH-LABEL", "Task search ignores the label parameter."),
        _d("task-status-search-ignored", "CANVAS-TASK-SEARCH-STATUS", "Task search ignores the status parameter."),
        _d("task-sort-ignored", "CANVAS-TASK-SORT", "Task search ignores _sort (creation order)."),
        _d("task-due-lt-as-le", "CANVAS-TASK-SEARCH-DUE", "The due prefix lt is treated as le (a task due exactly then matches)."),
        ("task-group-display-stale", Deviation(
            "task-group-display-stale", "The team display is the team's name when the task was written, not its current name.",
            ("CANVAS-TASK-GROUP-DISPLAY", "CANVAS-TASK-MODEL"))),
    ]
)

# Bulk Data Group export (issue 4; mock_server/bulk)
DEVIATIONS.update(
    [
        _d("export-content-location-missing", "BULK-EXPORT-KICKOFF", "Kick-off answers 202 without Content-Location."),
        _d("export-request-no-query", "BULK-EXPORT-MANIFEST", "The manifest's request omits the kick-off query string."),
        _d("export-non-member-patient", "BULK-EXPORT-MEMBERS", "A Patient who is not a group member is exported too."),
        _d("export-missing-member", "BULK-EXPORT-MEMBERS", "One member Patient is left out of the export."),
        _d("export-foreign-compartment", "BULK-EXPORT-COMPARTMENT", "One compartment resource references a non-exported patient."),
        _d("export-type-ignored", "BULK-EXPORT-TYPE", "_type is ignored: every type is exported."),
        _d("export-since-ignored", "BULK-EXPORT-SINCE", "_since is ignored: older resources are exported too."),
        _d("export-delete-not-stopping", "BULK-EXPORT-DELETE", "DELETE answers 202 but the job goes on and stays pollable."),
        _d("export-download-without-token", "BULK-EXPORT-FILE-AUTH", "Files download without a bearer token although requiresAccessToken is true."),
        _d("export-retry-after-missing", "BULK-EXPORT-RETRY-AFTER", "In-progress status answers carry no Retry-After."),
        _d("export-output-url-relative", "BULK-EXPORT-MANIFEST", "Manifest output urls are relative paths."),
        _d("export-wrong-line-type", "BULK-EXPORT-FILE-LINES", "Patient and Practitioner files' lines claim resourceType Observation."),
        _d("export-unknown-group-accepted", "BULK-EXPORT-UNKNOWN-GROUP", "Kick-off for an unknown group answers 202 (an empty export)."),
        _d("export-output-format-strict", "BULK-EXPORT-OUTPUT-FORMAT", "Only _outputFormat=application/fhir+ndjson is accepted."),
        _d("export-kickoff-auth-not-enforced", "BULK-EXPORT-AUTH", "Kick-off without a bearer token is accepted."),
        _d("export-unknown-type-accepted", "BULK-EXPORT-INVALID-PARAM",
           "A _type naming a type the server does not export is accepted (202) and yields an empty manifest."),
        _d("export-malformed-since-accepted", "BULK-EXPORT-INVALID-PARAM",
           "A malformed _since is accepted (202) and yields an empty manifest."),
        _d("export-empty-group-stuck", "BULK-EXPORT-EMPTY-GROUP",
           "An export of a group without members stays in progress for ever (202 on every poll)."),
        _d("export-unreadable-member-silent", "BULK-EXPORT-MEMBER-ERRORS",
           "The first member's data cannot be read, and it is silently left out of the export (nothing in error[])."),
        _d("export-drops-tasks", "BULK-EXPORT-COMPLETE",
           "Every other Task of the members (found by Task?patient=) is left out of the export."),
        _d("export-file-content-type-wrong", "BULK-EXPORT-FILE-LINES", "Files are served as application/json."),
        _d("export-invalid-binding", "BULK-EXPORT-RESOURCE-VALID", "Exported Patients carry gender 'unknown-value' (outside the required binding)."),
        _d("export-invariant-broken", "BULK-EXPORT-RESOURCE-INVARIANTS", "Exported Observations carry a dataAbsentReason beside their value (breaks obs-6)."),
    ]
)

# Bulk Cohort API (issue 5; mock_server/cohort)
DEVIATIONS.update(
    [
        _d("cohort-filters-ored", "BULK-COHORT-FILTERS-AND", "Several member-filters are ORed instead of ANDed."),
        _d("cohort-member-narrowing-ignored", "BULK-COHORT-MEMBER-NARROWING", "Group.member is ignored: filters apply to every Patient."),
        _d("cohort-unsupported-param-ignored", "BULK-COHORT-REJECT-UNSUPPORTED", "An unsupported search parameter in a member-filter is silently ignored."),
        _d("cohort-date-ge-as-gt", "BULK-COHORT-DATE", "The date prefix ge is evaluated as gt (the boundary day/instant itself is left out)."),
        _d("cohort-poll-201", "BULK-COHORT-ASYNC-CREATE", "The completed async create's status answers 201 instead of 200."),
        _d("cohort-batch-response-no-location", "BULK-COHORT-ASYNC-CREATE", "The batch-response entry has no response.location."),
        _d("cohort-token-system-ignored", "BULK-COHORT-TOKEN", "A token system|code matches the code in any system."),
        _d("cohort-comma-anded", "BULK-COHORT-TOKEN", "Comma-separated values of one parameter are ANDed instead of ORed."),
        _d("cohort-name-not-required", "BULK-COHORT-PROFILE", "A cohort without name is accepted."),
        _d("cohort-delete-not-deleting", "BULK-COHORT-DELETE", "DELETE of a cohort answers 204 but the cohort can still be read."),
        _d("cohort-sync-invalid-filter-500", "BULK-COHORT-REJECT-SYNC",
           "A synchronous cohort create with an invalid or unsupported member-filter answers 500."),
        _d("cohort-search-name-ignored", "BULK-COHORT-SEARCH-NAME", "Cohorts are not found by a name search."),
    ]
)

# SMART Backend Services, TLS and Bulk Data declarations (issue 14; mock_server/auth.py, server.py)
DEVIATIONS.update(
    [
        _d("smart-config-token-endpoint-relative", "SMART-DISCOVERY", "smart-configuration's token_endpoint is a relative path."),
        _d("smart-config-no-private-key-jwt", "SMART-DISCOVERY-BACKEND", "smart-configuration's token_endpoint_auth_methods_supported omits private_key_jwt."),
        _d("smart-config-no-asymmetric-capability", "SMART-DISCOVERY-ASYMMETRIC", "smart-configuration's capabilities omit client-confidential-asymmetric."),
        _d("token-response-no-scope", "SMART-TOKEN-RESPONSE", "Token responses carry no scope."),
        _d("token-grant-type-invalid-request", "SMART-TOKEN-GRANT-TYPE", "An unknown grant_type is answered invalid_request instead of unsupported_grant_type."),
        _d("token-assertion-type-unchecked", "SMART-TOKEN-ASSERTION-TYPE", "Any client_assertion_type is accepted with a client_assertion."),
        _d("token-aud-unchecked", "SMART-TOKEN-INVALID-CLIENT", "An assertion's aud is not checked."),
        _d("token-expired-accepted", "SMART-TOKEN-INVALID-CLIENT", "Expired assertions are accepted."),
        _d("token-exp-limit-unchecked", "SMART-TOKEN-EXP-LIMIT", "Assertions expiring more than five minutes ahead are accepted."),
        _d("token-jti-replay-accepted", "SMART-TOKEN-JTI-REPLAY", "A replayed assertion (same jti) is accepted again."),
        _d("token-scope-not-bound", "SMART-SCOPE-ENFORCED", "Tokens from a signed assertion get full access whatever scope they were granted."),
        _d("capability-no-instantiates", "BULK-DECLARE-INSTANTIATES", "The CapabilityStatement has no instantiates."),
        _d("export-definition-url-wrong", "BULK-DECLARE-OPDEF", "Group's export operation names a non-standard OperationDefinition URL."),
        _d("export-download-without-token-403", "BULK-EXPORT-FILE-AUTH-STATUS", "A file request without a token is answered 403 instead of 401."),
        # TLS listener (fhir-mock --tls-cert; mock_server/server.py): no effect on plain http
        _d("tls-legacy-only", "BULK-TLS", "The TLS listener negotiates TLS 1.0 or 1.1 only (security level 0)."),
        _d("tls-off", "BULK-TLS-HTTP", "Given a TLS certificate, the mock still serves plain http."),
    ]
)


def validate_names(names: Iterable[str]) -> None:
    """Reject unknown deviation names early, listing the valid ones."""
    unknown = sorted(set(names) - DEVIATIONS.keys())
    if unknown:
        raise ValueError(
            f"unknown deviation(s): {', '.join(unknown)}; valid names: {', '.join(sorted(DEVIATIONS))}"
        )


def deviates(name: str) -> bool:
    """True when the running app was started with deviation ``name``."""
    assert name in DEVIATIONS, name
    return name in current_app.config["MOCK"].deviations
