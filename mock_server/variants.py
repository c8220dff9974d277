"""Named *legal* choices a real server may take, so the suite can prove it does not fail them.

A deviation breaks a rule; a variant keeps every rule and takes another allowed road
(an optional feature left out, a MAY taken, a stricter FHIR reading). The variant
matrix (``tests/test_mock_variants.py``) runs the suite against the mock under each
variant and requires exit 0 with no SHALL failure.

Adding a variant is one entry in ``VARIANTS`` plus one ``if varies("name")`` at the
place in the mock it changes. ``touches`` names the requirements whose checks exercise
the variant (the matrix runs only those, to stay cheap); ``warns`` the ones where a
SHOULD-level warning is the right verdict for that choice; ``implies`` other variants
without which the choice would not be legal (they are switched on with it); ``runs`` check ids
that must run under it (a skip there would hide that the suite copes with the choice).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from flask import current_app


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    allowed_by: str                 # the source that makes the choice legal
    touches: tuple[str, ...]        # requirement ids whose checks exercise it
    warns: tuple[str, ...] = ()     # requirements where a SHOULD warning is the right verdict
    implies: tuple[str, ...] = ()   # variants switched on with it
    runs: tuple[str, ...] = ()      # check ids that must run (pass or warn, not skip) under it


def _v(name: str, touches: str, description: str, allowed_by: str, warns: str = "",
       implies: str = "", runs: str = "") -> tuple[str, Variant]:
    return name, Variant(name, description, allowed_by, tuple(touches.split()), tuple(warns.split()),
                         tuple(implies.split()), tuple(runs.split()))


VARIANTS: dict[str, Variant] = dict(
    [
        # Bulk Data Group $export (SPEC §4)
        _v("export-no-expires", "BULK-EXPORT-EXPIRES BULK-EXPORT-STATUS",
           "The complete status answer carries no Expires header.",
           "Bulk Data IG export.html#response---complete-status: the server MAY return an Expires header"),
        _v("export-extra-output-formats", "BULK-EXPORT-OUTPUT-FORMAT BULK-EXPORT-OUTPUT-FORMAT-UNSUPPORTED",
           "_outputFormat also accepts text/csv and application/x-ndjson (the mock still writes NDJSON).",
           "Bulk Data IG export.html#query-parameters: the server MAY choose to support additional output formats"),
        _v("export-elements-ignored", "BULK-EXPORT-ELEMENTS",
           "_elements is accepted and ignored: full resources, no SUBSETTED tag.",
           "Bulk Data IG export.html#query-parameters: _elements support is optional, SUBSETTED is a SHOULD",
           warns="BULK-EXPORT-ELEMENTS"),
        _v("export-elements-unsupported", "BULK-EXPORT-ELEMENTS BULK-EXPORT-KICKOFF",
           "_elements is refused with 400 and an OperationOutcome (not supported).",
           "Bulk Data IG export.html#query-parameters: _elements support is optional; unsupported parameters "
           "SHOULD be an error"),
        _v("export-no-post-kickoff", "BULK-EXPORT-KICKOFF-POST BULK-EXPORT-PATIENT BULK-EXPORT-KICKOFF",
           "POST $export is answered 404, as by a server without that route; only GET kick-off exists "
           "(so no patient parameter).",
           "Bulk Data IG export.html#bulk-data-kick-off-request: a server MAY support POST; patient is POST-only "
           "and optional"),
        _v("export-no-x-progress", "BULK-EXPORT-STATUS BULK-EXPORT-RETRY-AFTER BULK-EXPORT-KICKOFF",
           "In-progress status answers carry no X-Progress header.",
           "Bulk Data IG export.html#response---in-progress-status: the server MAY return an X-Progress header"),
        _v("export-retry-after-http-date", "BULK-EXPORT-RETRY-AFTER BULK-EXPORT-STATUS BULK-EXPORT-KICKOFF",
           "Retry-After of in-progress answers is an HTTP-date instead of delay-seconds.",
           "Bulk Data IG export.html#bulk-data-status-request: Retry-After with a delay time in seconds or an "
           "http-date; RFC 9110 §10.2.3"),
        _v("export-no-count", "BULK-EXPORT-MANIFEST BULK-EXPORT-FILE-LINES",
           "Manifest output entries carry no count.",
           "Bulk Data IG export.html#response---complete-status: count is optional"),
        _v("export-transaction-time-offset", "BULK-EXPORT-MANIFEST",
           "transactionTime is written with a +00:00 offset instead of Z.",
           "FHIR R4 datatypes.html#instant: a time zone SHALL be given, Z or an offset"),
        _v("export-manifest-extras", "BULK-EXPORT-MANIFEST BULK-EXPORT-FILE-LINES",
           "The manifest also carries an empty deleted array and an extension object.",
           "Bulk Data IG export.html#response---complete-status: deleted and extension are optional members"),
        _v("export-delete-outcome-body", "BULK-EXPORT-DELETE",
           "DELETE of the status URL answers 202 with an informational OperationOutcome body.",
           "Bulk Data IG export.html#bulk-data-delete-request: 202 Accepted, optionally a FHIR OperationOutcome"),
        _v("export-files-open", "BULK-EXPORT-FILE-AUTH BULK-EXPORT-FILE-LINES BULK-EXPORT-MANIFEST",
           "Files download without a token and the manifest says requiresAccessToken: false.",
           "Bulk Data IG export.html#response---complete-status: requiresAccessToken false lets files be "
           "fetched without the access token"),
        _v("groups-read-only-quantity", "BULK-EXPORT-KICKOFF BULK-EXPORT-MEMBERS BULK-EXPORT-MEMBERS-COUNT BULK-EXPORT-COMPLETE "
           "BULK-EXPORT-PATIENT BULK-EXPORT-COMPARTMENT",
           "Groups are read-only (no create or update declared, writes answer 405) and list no member, only "
           "quantity: the suite must find a group with Group?type=person and judge membership by count.",
           "Bulk Data IG export.html#endpoint---group-of-patients: the IG defines no way to create groups; "
           "FHIR R4 group.html: member is 0..*, quantity gives the number of members",
           runs="export-members-count export-patient-param export-compartment-complete"),
        _v("export-member-unreadable", "BULK-EXPORT-MEMBERS BULK-EXPORT-MEMBER-ERRORS",
           "The first member's data of every group export cannot be read: the member is left out and named in an "
           "OperationOutcome of the manifest's error[].",
           "Bulk Data IG export.html#response---complete-status: error[] lists OperationOutcome files for errors "
           "met while exporting; SPEC §4: a member whose data cannot be exported SHOULD appear in error[]",
           runs="export-members export-member-errors"),
        # Bulk Cohort API (SPEC §5)
        _v("supported-profile-string", "BULK-COHORT-CAPABILITY BULK-COHORT-CAPABILITY-ARRAY BULK-COHORT-ASYNC-CREATE",
           "Group's supportedProfile is a lone string instead of an array (the shape departs; the content is "
           "readable): the suite warns and still detects bulk-cohort.",
           "The IG's SHALL (list the profile for Group) is met in content; the JSON shape is judged as a SHOULD "
           "by the kit (BULK-COHORT-CAPABILITY-ARRAY), so a warning is the right verdict",
           warns="BULK-COHORT-CAPABILITY-ARRAY", runs="cohort-capability-profile cohort-capability-profile-array"),
        _v("patient-export-undeclared", "BULK-COHORT-ASYNC-CREATE BULK-COHORT-MEMBERSHIP BULK-COHORT-CAPABILITY",
           "Patient/$export is served but not declared in the CapabilityStatement (the cohort checks' population "
           "oracle then needs --profile bulk-cohort).",
           "FHIR R4 capabilitystatement.html: a CapabilityStatement need not list every operation served; "
           "Bulk Data IG export.html: Patient-level export is optional"),
        _v("cohort-no-member-narrowing", "BULK-COHORT-MEMBER-NARROWING BULK-COHORT-ASYNC-CREATE",
           "A cohort with Group.member is refused with 400 and an OperationOutcome (not-supported).",
           "Bulk Data IG group.html: member is optional; a server SHALL reject what it does not support"),
        _v("cohort-fewer-filter-parameters", "BULK-COHORT-REJECT-UNSUPPORTED BULK-COHORT-ASYNC-CREATE "
           "BULK-COHORT-MEMBERSHIP",
           "Member-filters on Encounter.class, Condition.clinical-status and Observation.value-quantity are "
           "refused as unsupported (400): a different set of filter parameters.",
           "Bulk Data IG group.html: the server chooses (and SHOULD document) the filter parameters it supports "
           "and SHALL reject the others"),
        # FHIR R4 itself
        _v("no-etag", "FHIR-IF-MATCH FHIR-CREATE-201 CANVAS-GROUP-READ",
           "Reads send no ETag (If-Match still works for clients that know the version).",
           "FHIR R4 http.html#versioning: servers SHOULD (not SHALL) return an ETag; SPEC §1 checks If-Match "
           "only where the target sends ETags"),
        _v("location-with-history", "FHIR-CREATE-201 CANVAS-GROUP-CREATE CANVAS-TASK-CREATE",
           "Create answers Location [base]/<Type>/<id>/_history/<vid>.",
           "FHIR R4 http.html#create: Location is the new resource's location including the version id"),
        _v("outcome-diagnostics-only", "FHIR-ERROR-OUTCOME FHIR-NOT-FOUND FHIR-INVALID-JSON",
           "OperationOutcome issues carry diagnostics instead of details.text.",
           "FHIR R4 operationoutcome.html: details and diagnostics are both optional (0..1)"),
        _v("outcome-information-first", "FHIR-ERROR-OUTCOME FHIR-NOT-FOUND FHIR-INVALID-JSON",
           "Every OperationOutcome starts with an information issue before the error issue.",
           "FHIR R4 operationoutcome.html: issue is 1..*, in any order, of any severity"),
        _v("fhir-invariants-enforced", "CANVAS-GROUP-CREATE CANVAS-GROUP-ACTUAL CANVAS-GROUP-UPDATE "
           "FHIR-READONLY-IGNORED CANVAS-TASK-CREATE",
           "FHIR invariants are enforced: a Group with members and actual false (grp-1) and a Task whose "
           "lastModified is before authoredOn (inv-1) are refused with 400.",
           "FHIR R4 group.html#invariants grp-1, task.html#invariants inv-1; http.html#create: a server SHALL "
           "reject a resource that fails FHIR validation rules"),
        _v("export-referenced-practitioners", "BULK-EXPORT-SINCE BULK-EXPORT-COMPARTMENT BULK-EXPORT-FILE-LINES",
           "The Practitioners that exported Tasks reference are exported too, regardless of _since.",
           "Bulk Data IG export.html#query-parameters: resources referenced by exported resources may be "
           "included regardless of _since"),
        _v("export-patient-unsupported", "BULK-EXPORT-PATIENT BULK-EXPORT-KICKOFF",
           "The patient parameter of a POST kick-off is refused with 400 and an OperationOutcome (not-supported).",
           "Bulk Data IG export.html#query-parameters: patient support is optional; an unsupported parameter "
           "SHOULD be an error with an OperationOutcome"),
        _v("no-practitioners-with-create", "CANVAS-TASK-CREATE CANVAS-TASK-SEARCH-OWNER CANVAS-TASK-SEARCH-REQUESTER "
           "CANVAS-GROUP-CREATE",
           "No Practitioner in the data (so no fixture team), but Practitioner create and delete are declared: the "
           "suite creates the Practitioners its checks need and deletes them at the end.",
           "FHIR R4 http.html#create: a server may hold any data; which interactions it supports is its own "
           "choice, declared in the CapabilityStatement",
           runs="task-search-owner-status task-create-valid"),
        # Which server this is, and its access control (SPEC §0)
        _v("generic-fhir", "FHIR-CREATE-201 FHIR-UPDATE-200 FHIR-UPDATE-ID FHIR-RESOURCE-TYPE FHIR-NOT-FOUND "
           "FHIR-ERROR-OUTCOME FHIR-IF-MATCH FHIR-SEARCH-PAGING CANVAS-GROUP-CREATE CANVAS-TASK-CREATE",
           "No Canvas marker in the CapabilityStatement: a generic FHIR server with Group and Task.",
           "SPEC §0: canvas applies only when selected or when the target shows Canvas markers"),
        _v("open-server", "BULK-EXPORT-AUTH BULK-EXPORT-KICKOFF BULK-EXPORT-FILE-AUTH BULK-EXPORT-FILE-LINES "
           "FHIR-AUTH-401 FHIR-CREATE-201 SMART-DISCOVERY",
           "No access control: every request is served with or without a token; files need no token "
           "(requiresAccessToken false); no SMART discovery and no security in the CapabilityStatement.",
           "Bulk Data IG: a server SHOULD implement OAuth 2.0 access management (SHOULD, not SHALL); "
           "only Canvas requires 401",
           warns="BULK-EXPORT-AUTH", implies="generic-fhir"),
        # SMART Backend Services (issue 14)
        _v("token-invalid-client-400", "SMART-TOKEN-INVALID-CLIENT SMART-TOKEN-JTI-REPLAY SMART-TOKEN-EXP-LIMIT",
           "A refused client assertion is answered 400 invalid_client instead of 401.",
           "RFC 6749 §5.2: invalid_client is 400, or 401 where the client authenticated through a header"),
        # Rate limits (issue 11)
        _v("rate-limited", "CANVAS-GROUP-CREATE CANVAS-GROUP-SEARCH-TYPE CANVAS-TASK-CREATE BULK-EXPORT-KICKOFF "
           "BULK-EXPORT-FILE-LINES",
           "Every 40th request is answered 429 with IETF RateLimit / RateLimit-Policy headers and no Retry-After.",
           "RFC 6585 §4 (429 Too Many Requests); draft-ietf-httpapi-ratelimit-headers: a server MAY limit "
           "request rates and say so in RateLimit fields instead of Retry-After"),
    ]
)


def expand(names: Iterable[str]) -> frozenset[str]:
    """``names`` plus every variant they imply; unknown names are an error listing the valid ones."""
    names = set(names)
    unknown = sorted(names - VARIANTS.keys())
    if unknown:
        raise ValueError(f"unknown variant(s): {', '.join(unknown)}; valid names: {', '.join(sorted(VARIANTS))}")
    todo, out = list(names), set()
    while todo:
        name = todo.pop()
        if name not in out:
            out.add(name)
            todo.extend(VARIANTS[name].implies)
    return frozenset(out)


def varies(name: str) -> bool:
    """True when the running app was started with variant ``name`` (or one implying it)."""
    assert name in VARIANTS, name
    return name in current_app.config["MOCK"].variants
