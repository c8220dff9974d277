"""Group $export content: exactly the members, their compartments, and the filters honoured
(_type, _since, _elements, patient). Checks no other suite makes (SPEC §4 Content)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conformance.bulk import BulkClient, parameters_body, parse_instant
from conformance.client import created_id, json_or_none
from conformance.expectations import expect_error, is_operation_outcome
from conformance.markers import check, needs, profile
from conformance.rules.bulk_export import PARAMETERS, REFERENCED_ONLY
from conformance.target import iterate_search
from conformance.verdicts import expect

from .support.export import CompletedExport, ExportGroup, complete_export, finish, read_members, run_export

pytestmark = [profile("bulk-export"), needs("Group", operation="export")]


@check("export-members", "BULK-EXPORT-MEMBERS")
def test_exported_patients_are_the_members(baseline_export: CompletedExport, export_group: ExportGroup, fhir,
                                           bulk: BulkClient):
    if not export_group.listed:
        pytest.skip(f"Group/{export_group.id} lists no members (only quantity {export_group.quantity}): "
                    "membership is judged by count alone in export-members-count, the weaker check")
    members = read_members(fhir, export_group.id)
    exported = baseline_export.ids("Patient")
    # a member the server could not export and says so in error[] is disclosed, not missing
    # (export-member-errors judges that it is said)
    reported = (members - exported) & baseline_export.patients_in_errors(bulk)
    missing, extra = sorted(members - exported - reported), sorted(exported - members)
    ex = (baseline_export.of_type("Patient") or [None])[0]
    expect("BULK-EXPORT-MEMBERS", not missing and not extra,
           f"exported Patients differ from Group/{export_group.id}'s {len(members)} members: "
           f"{len(missing)} missing {missing[:3]}, {len(extra)} not members {extra[:3]}"
           + (f" ({len(reported)} more named in error[])" if reported else ""),
           ex.exchange if ex else baseline_export.poll.exchange)


@check("export-member-errors", "BULK-EXPORT-MEMBER-ERRORS")
def test_unexported_members_are_named_in_errors(baseline_export: CompletedExport, export_group: ExportGroup,
                                                bulk: BulkClient):
    if not export_group.listed:
        pytest.skip(f"Group/{export_group.id} lists no members: which member is missing cannot be told")
    absent = export_group.patient_ids - baseline_export.ids("Patient")
    silent = sorted(absent - baseline_export.patients_in_errors(bulk))
    expect("BULK-EXPORT-MEMBER-ERRORS", not silent,
           f"{len(silent)} members of Group/{export_group.id} are neither exported nor named in an OperationOutcome "
           f"of error[] (e.g. {', '.join(f'Patient/{p}' for p in silent[:3])}): left out silently",
           baseline_export.poll.exchange)


@check("export-members-count", "BULK-EXPORT-MEMBERS-COUNT")
def test_exported_patients_match_the_group_size(baseline_export: CompletedExport, export_group: ExportGroup,
                                                bulk: BulkClient):
    """The weaker check, and the only one for a group that gives just quantity: the count, not the ids.
    Members the server names in error[] count as disclosed (export-member-errors judges that)."""
    size = len(export_group.patient_ids) if export_group.listed else export_group.quantity
    if size is None:
        pytest.skip(f"Group/{export_group.id} gives neither members nor quantity: membership cannot be judged")
    exported = baseline_export.ids("Patient")
    reported = baseline_export.patients_in_errors(bulk) - exported
    basis = "listed members" if export_group.listed else "quantity (members not listed: judged by count only)"
    ex = (baseline_export.of_type("Patient") or [None])[0]
    expect("BULK-EXPORT-MEMBERS-COUNT", len(exported) + len(reported) == size,
           f"Group/{export_group.id} has {size} by its {basis} but its export holds {len(exported)} distinct "
           f"Patients" + (f" and names {len(reported)} more in error[]" if reported else ""),
           ex.exchange if ex else baseline_export.poll.exchange)


@check("export-compartment", "BULK-EXPORT-COMPARTMENT")
def test_compartment_resources_reference_exported_patients(baseline_export: CompletedExport):
    patients = baseline_export.ids("Patient")
    problems, first = [], None
    for f in baseline_export.files:
        if f.type == "Patient":
            continue
        strays = [(rid, pid) for rid, pid in f.patient_refs if pid not in patients]
        if strays:
            first = first or f.exchange
            problems.append(f"{f.type}: {len(strays)} resources reference non-exported patients, e.g. "
                            + ", ".join(f"{f.type}/{r} -> Patient/{p}" for r, p in strays[:3]))
    expect("BULK-EXPORT-COMPARTMENT", not problems, "; ".join(problems), first)


ORACLE_MEMBERS = 10       # members whose compartments are searched one by one
COMPARTMENT_PARAM = "patient"


def _ensure_a_task(conformance_run, fhir, ledger, target_data, member: str) -> None:
    """Where the target declares Task create and search by patient, give one member a Task (run prefix,
    recorded in the ledger) so that the oracle has a compartment resource to look for."""
    caps = conformance_run.capabilities
    if "create" not in caps.interactions("Task"):
        return
    if not target_data.practitioner_ids and (not target_data.supplier or target_data.supplier("practitioners", 1)):
        return                       # no requester, and none could be created
    if any(True for _ in iterate_search(fhir, "Task", {COMPARTMENT_PARAM: f"Patient/{member}", "_count": 1},
                                        max_pages=1)):
        return
    body = {"resourceType": "Task", "status": "requested", "intent": "unknown",
            "description": f"{target_data.run_prefix} export completeness",
            "requester": {"reference": f"Practitioner/{target_data.practitioner_ids[0]}"},
            "for": {"reference": f"Patient/{member}"}}
    response = fhir.post("Task", json_body=body)
    tid = created_id(response, "Task") if response.status_code < 300 else None
    if tid:
        ledger.created_task(tid, body)


@check("export-compartment-complete", "BULK-EXPORT-COMPLETE")
def test_export_holds_what_search_finds(bulk: BulkClient, export_group: ExportGroup,
                                        baseline_export: CompletedExport, conformance_run, fhir, ledger, target_data):
    """The completeness oracle: for each type the target lets one search by patient, every member's
    resources that search finds are in the export (checked per type, for several members)."""
    caps = conformance_run.capabilities
    types = sorted(t for t in caps.resources if t != "Patient" and t not in REFERENCED_ONLY
                   and COMPARTMENT_PARAM in caps.search_params(t) and "search-type" in caps.interactions(t))
    if not types:
        pytest.skip("the target declares no search by patient on any compartment type: nothing to compare with")
    members = sorted(export_group.patient_ids or baseline_export.ids("Patient"))[:ORACLE_MEMBERS]
    if not members:
        pytest.skip(f"no member of Group/{export_group.id} is known (none listed, none exported)")
    if "Task" in types:
        _ensure_a_task(conformance_run, fhir, ledger, target_data, members[0])
    expected: dict[str, set[str]] = {t: set() for t in types}
    for rtype in types:
        for member in members:
            expected[rtype] |= {r["id"] for r in iterate_search(
                fhir, rtype, {COMPARTMENT_PARAM: f"Patient/{member}", "_count": 100}, max_pages=10) if r.get("id")}
    if not any(expected.values()):
        pytest.skip(f"searching {', '.join(types)} by patient found nothing for {len(members)} members: "
                    "no compartment resource to look for in the export")
    done = run_export(bulk, export_group.id, "kick-off of the export to compare with search")
    try:
        problems = [f"{rtype}: {len(missing)} of {len(found)} found by {rtype}?{COMPARTMENT_PARAM}= are not in the "
                    f"export (e.g. {', '.join(f'{rtype}/{i}' for i in missing[:3])})"
                    for rtype, found in expected.items()
                    if (missing := sorted(found - done.ids(rtype)))]
        expect("BULK-EXPORT-COMPLETE", not problems,
               f"the export of Group/{export_group.id} misses members' compartment resources the target serves "
               "through search: " + "; ".join(problems), done.poll.exchange)
    finally:
        finish(bulk, done)


@check("export-type", "BULK-EXPORT-TYPE")
def test_type_limits_the_types(bulk: BulkClient, export_group: ExportGroup):
    wanted = {"Patient", "Observation"}
    done = run_export(bulk, export_group.id, "kick-off with _type=Patient,Observation",
                      {"_type": ",".join(sorted(wanted))})
    try:
        listed = {str(e.get("type")) for e in done.manifest.get("output", []) if isinstance(e, dict)}
        seen = set().union(*(f.types_seen for f in done.files)) if done.files else set()
        expect("BULK-EXPORT-TYPE", listed <= wanted and seen <= wanted,
               f"_type=Patient,Observation exported files of {sorted(listed)} holding {sorted(seen)}", done.poll.exchange)
    finally:
        finish(bulk, done)


@check("export-since", "BULK-EXPORT-SINCE")
def test_since_excludes_older_resources(bulk: BulkClient, export_group: ExportGroup, baseline_export: CompletedExport):
    stamps = sorted(t for f in baseline_export.files for _, v in f.last_updated if (t := parse_instant(v)))
    if len(stamps) < 2:
        pytest.skip("the baseline export has fewer than two resources with meta.lastUpdated to choose a cutoff")
    cutoff = stamps[len(stamps) // 2]
    if cutoff == stamps[0]:
        cutoff = cutoff + timedelta(microseconds=1)
    since = cutoff.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    cutoff = parse_instant(since)
    done = run_export(bulk, export_group.id, f"kick-off with _since={since}", {"_since": since})
    try:
        # only the patients' own data is judged: the IG lets a server add the resources they
        # reference (a Practitioner, an Organization) regardless of _since
        older = [(f.type, rid, v) for f in done.files if f.type not in REFERENCED_ONLY for rid, v in f.last_updated
                 if (t := parse_instant(v)) is not None and t < cutoff]
        expect("BULK-EXPORT-SINCE", not older,
               f"_since={since} exported {len(older)} resources last updated before it, e.g. "
               + ", ".join(f"{t}/{r} ({v})" for t, r, v in older[:3]), done.poll.exchange)
    finally:
        finish(bulk, done)


@check("export-elements", "BULK-EXPORT-ELEMENTS")
def test_elements_results_are_subsetted(bulk: BulkClient, export_group: ExportGroup, fhir):
    params = {"_type": "Patient", "_elements": "gender"}
    response, location = bulk.kickoff(export_group.id, params)
    if response.status_code != 202:
        expect_error(fhir, response, "BULK-EXPORT-ELEMENTS", range(400, 500), "kick-off with unsupported _elements")
        pytest.skip(f"the target does not support _elements (HTTP {response.status_code})")
    done = complete_export(bulk, response, location, "kick-off with _elements=gender")
    try:
        untagged = [(f.type, f.lines - f.subsetted) for f in done.files if f.subsetted < f.lines]
        expect("BULK-EXPORT-ELEMENTS", not untagged,
               f"resources exported with _elements lack the SUBSETTED tag: {untagged}", done.poll.exchange)
    finally:
        finish(bulk, done)


@check("export-patient-param", "BULK-EXPORT-PATIENT")
def test_patient_parameter_limits_and_checks_membership(bulk: BulkClient, export_group: ExportGroup,
                                                       baseline_export: CompletedExport, target_data, fhir):
    # a group that lists no members: its members are known from its export (judged elsewhere)
    known = export_group.patient_ids or baseline_export.ids("Patient")
    if not known:
        pytest.skip(f"Group/{export_group.id} lists no members and its export holds no Patient to name")
    member = sorted(known)[0]
    body = parameters_body([("patient", PARAMETERS["patient"].type, f"Patient/{member}"),
                            ("_type", PARAMETERS["_type"].type, "Patient")])
    response, location = bulk.kickoff(export_group.id, parameters=body)
    if response.status_code in (404, 405, 501):
        if location:
            bulk.delete(location)
        pytest.skip(f"the target does not support POST kick-off (HTTP {response.status_code})")
    if 400 <= response.status_code < 500 and is_operation_outcome(json_or_none(response)):
        # the IG: patient support is optional, and an unsupported parameter SHOULD be an error with
        # an OperationOutcome, which is what this is
        pytest.skip(f"the target does not support the patient parameter (HTTP {response.status_code} "
                    "with an OperationOutcome)")
    done = complete_export(bulk, response, location, f"POST kick-off with patient=Patient/{member}",
                           "BULK-EXPORT-PATIENT")
    try:
        exported = done.ids("Patient")
        expect("BULK-EXPORT-PATIENT", exported == {member},
               f"patient=Patient/{member} exported Patients {sorted(exported)[:5]}", done.poll.exchange)
    finally:
        finish(bulk, done)
    outsider = next((p for p in target_data.patient_ids if p not in known), target_data.missing_id())
    body = parameters_body([("patient", PARAMETERS["patient"].type, f"Patient/{outsider}")])
    response, location = bulk.kickoff(export_group.id, parameters=body)
    if location:
        bulk.delete(location)
    expect_error(fhir, response, "BULK-EXPORT-PATIENT", range(400, 500),
                 f"POST kick-off with non-member patient=Patient/{outsider}")
