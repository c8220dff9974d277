"""Bulk Cohort API: capability, async and sync create, profile validation, read, search by name,
delete and export of a cohort (SPEC §5; Bulk Data IG 3.0.0 group.html)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.rules.group import PATIENT_GROUP_TYPE
from conformance.capabilities import BULK_COHORT_PROFILE
from conformance.client import json_or_none
from conformance.expectations import describe_statuses, is_operation_outcome, last_exchange
from conformance.markers import check, needs, profile, verifies
from conformance.rules.cohort import MEMBER_FILTER, PROFILE_STATUSES, REJECTED, cohort_payload, expressions_of
from conformance.rules.cohort import violations as cohort_violations
from conformance.strategies.cohort import invalid_cohort
from conformance.target import iterate_search
from conformance.verdicts import expect

from .support.cohort import CohortApi
from .support.export import finish, run_export

pytestmark = profile("bulk-cohort")


def _simple_cohort(cohorts: CohortApi, facts) -> dict:
    """A small valid cohort from the population's first condition code."""
    system, code = facts.tokens[("Condition", "code")][0] if ("Condition", "code") in facts.tokens else (None, None)
    expression = f"Condition?code={system}|{code}" if code else f"Patient?_id={facts.patient_ids[0]}"
    return cohort_payload(cohorts.name(), [expression])


@check("cohort-capability-profile", "BULK-COHORT-CAPABILITY")
def test_capability_lists_the_profile(conformance_run, fhir):
    profiles = {p.split("|")[0] for p in conformance_run.capabilities.supported_profiles("Group")}
    expect("BULK-COHORT-CAPABILITY", BULK_COHORT_PROFILE in profiles,
           f"rest.resource[Group].supportedProfile is {sorted(profiles)}, without {BULK_COHORT_PROFILE}")


@check("cohort-capability-profile-array", "BULK-COHORT-CAPABILITY-ARRAY")
def test_supported_profile_is_an_array(conformance_run):
    group = conformance_run.capabilities.resources.get("Group", {})
    if "supportedProfile" not in group:
        pytest.skip("rest.resource[Group] has no supportedProfile (judged by cohort-capability-profile)")
    value = group["supportedProfile"]
    expect("BULK-COHORT-CAPABILITY-ARRAY", isinstance(value, list),
           f"rest.resource[Group].supportedProfile is a JSON {type(value).__name__} ({str(value)[:120]!r}), "
           "expected an array; the suite read it as one profile")


@check("cohort-capability-documentation", "BULK-COHORT-DOCUMENTATION")
def test_capability_documents_membership_and_parameters(conformance_run):
    group = conformance_run.capabilities.resources.get("Group", {})
    text = str(group.get("documentation") or "")
    expect("BULK-COHORT-DOCUMENTATION", bool(text.strip()),
           "rest.resource[Group].documentation is empty: the IG asks servers to document when cohort membership "
           "is refreshed and which member-filter search parameters are supported")


@check("cohort-create-async", "BULK-COHORT-ASYNC-CREATE", "BULK-COHORT-READ")
@needs("Group", interaction="create")
def test_async_create_then_read(cohorts: CohortApi, population):
    payload = _simple_cohort(cohorts, population)
    gid = cohorts.create(payload, "async create of a cohort")
    response = cohorts.fhir.read("Group", gid)
    ex = last_exchange(cohorts.fhir)
    body = json_or_none(response)
    expect("BULK-COHORT-READ", response.status_code == 200 and isinstance(body, dict),
           f"read of the created cohort Group/{gid} answered {response.status_code}", ex)
    expect("BULK-COHORT-READ", body.get("name") == payload["name"] and body.get("type") == PATIENT_GROUP_TYPE,
           f"the cohort read back has name {body.get('name')!r}, type {body.get('type')!r}", ex)
    expect("BULK-COHORT-READ", expressions_of(body) == expressions_of(payload),
           f"the cohort read back has member-filters {expressions_of(body)}, sent {expressions_of(payload)}", ex)


@check("cohort-create-sync", "BULK-COHORT-SYNC-CREATE")
@needs("Group", interaction="create")
def test_sync_create(cohorts: CohortApi, population):
    response, gid = cohorts.create_sync(_simple_cohort(cohorts, population))
    ex = last_exchange(cohorts.fhir)
    expect("BULK-COHORT-SYNC-CREATE", response.status_code == 201 and gid is not None,
           f"synchronous create of a cohort answered {response.status_code} "
           f"(Location {response.headers.get('location')!r})", ex)


@pytest.mark.parametrize("violation", [
    pytest.param(v, id=v.name, marks=verifies(v.requirement)) for v in cohort_violations()])
@check("cohort-create-invalid", "BULK-COHORT-PROFILE", "BULK-COHORT-REJECT-UNSUPPORTED")
@needs("Group", interaction="create")
@given(data=st.data())
def test_invalid_cohort_is_refused(cohorts: CohortApi, population, violation, data):
    invalid = data.draw(invalid_cohort(population, cohorts.name("invalid"), violation), label="invalid cohort")
    outcome = cohorts.submit(invalid.payload)
    statuses = (REJECTED,) if violation.requirement == "BULK-COHORT-REJECT-UNSUPPORTED" else PROFILE_STATUSES
    what = f"a cohort with {violation.description} ({violation.name})"
    if outcome.gid is not None:
        cohorts.delete(outcome.gid)
        expect(violation.requirement, False, f"{what} was accepted and created as Group/{outcome.gid}",
               outcome.exchange)
        return
    expect(violation.requirement, outcome.status in statuses,
           f"{what}: expected {describe_statuses(statuses)} at kick-off or from the status URL, got "
           f"{outcome.status} (at {outcome.where})", outcome.exchange)
    expect("FHIR-ERROR-OUTCOME", is_operation_outcome(outcome.body),
           f"{what}: HTTP {outcome.status} without an OperationOutcome", outcome.exchange)


FILTER_VIOLATIONS = [v for v in cohort_violations() if v.requirement == "BULK-COHORT-REJECT-UNSUPPORTED"]


@pytest.mark.parametrize("violation", [pytest.param(v, id=v.name) for v in FILTER_VIOLATIONS])
@check("cohort-create-invalid-sync", "BULK-COHORT-REJECT-SYNC")
@needs("Group", interaction="create")
@given(data=st.data())
def test_invalid_filter_refused_in_sync_create(cohorts: CohortApi, population, violation, data):
    """The same rule in the synchronous form: a client's mistake is a 4xx OperationOutcome, never a 500."""
    invalid = data.draw(invalid_cohort(population, cohorts.name("invalid"), violation), label="invalid cohort")
    response, gid = cohorts.create_sync(invalid.payload)
    what = f"synchronous create of a cohort with {violation.description} ({violation.name})"
    if gid is not None:
        cohorts.delete(gid)
    expect("BULK-COHORT-REJECT-SYNC", 400 <= response.status_code < 500,
           f"{what}: expected {REJECTED} (a 4xx), got {response.status_code}", last_exchange(cohorts.fhir))
    expect("FHIR-ERROR-OUTCOME", is_operation_outcome(json_or_none(response)),
           f"{what}: HTTP {response.status_code} without an OperationOutcome", last_exchange(cohorts.fhir))


@check("cohort-search-name", "BULK-COHORT-SEARCH-NAME")
@needs("Group", search_param="name")
def test_search_by_name_finds_the_cohort(cohorts: CohortApi, population):
    payload = _simple_cohort(cohorts, population)
    gid = cohorts.create(payload, "create of a cohort to search for")
    found = [g.get("id") for g in iterate_search(cohorts.fhir, "Group", {"name": payload["name"], "_count": 50},
                                                  max_pages=4)]
    expect("BULK-COHORT-SEARCH-NAME", gid in found,
           f"GET Group?name={payload['name']!r} did not return the cohort Group/{gid} (found {found[:5]})",
           last_exchange(cohorts.fhir))


@check("cohort-delete", "BULK-COHORT-DELETE")
@needs("Group", interaction="delete")
def test_delete_then_read_is_gone(cohorts: CohortApi, population):
    gid = cohorts.create(_simple_cohort(cohorts, population), "create of a cohort to delete")
    response = cohorts.delete(gid)
    expect("BULK-COHORT-DELETE", response.status_code in (200, 202, 204),
           f"DELETE Group/{gid} answered {response.status_code}", last_exchange(cohorts.fhir))
    read = cohorts.fhir.read("Group", gid)
    expect("BULK-COHORT-DELETE", read.status_code in (404, 410),
           f"read of the deleted cohort Group/{gid} answered {read.status_code}, expected 404 or 410",
           last_exchange(cohorts.fhir))
    if read.status_code in (404, 410):
        expect("FHIR-ERROR-OUTCOME", is_operation_outcome(json_or_none(read)),
               f"read of the deleted cohort answered {read.status_code} without an OperationOutcome",
               last_exchange(cohorts.fhir))


@check("cohort-export", "BULK-COHORT-EXPORT")
@needs("Group", operation="export")
def test_cohort_export_holds_its_members_and_their_compartments(cohorts: CohortApi, population):
    gid = cohorts.create(_simple_cohort(cohorts, population), "create of a cohort to export")
    done = run_export(cohorts.bulk, gid, "export of a cohort", requirement="BULK-COHORT-EXPORT")
    patients = done.ids("Patient")
    strays = sorted({pid for f in done.files if f.type != "Patient" for _, pid in f.patient_refs} - patients)
    expect("BULK-COHORT-EXPORT", not strays,
           f"the cohort export has compartment resources of {len(strays)} patients it did not export "
           f"(e.g. Patient/{strays[:3]})", done.poll.exchange)
    problems = [f.summary() for f in done.files if f.problem_count]
    expect("BULK-COHORT-EXPORT", not problems, "; ".join(problems)[:1000], done.poll.exchange)
    finish(cohorts.bulk, done)
    cohorts.delete(gid)


@check("cohort-read-filters-kept", "BULK-COHORT-READ")
@needs("Group", interaction="read")
def test_read_keeps_every_member_filter(cohorts: CohortApi, population):
    facts = population
    expressions = [f"Patient?gender={facts.genders[0]}" if facts.genders else f"Patient?_id={facts.patient_ids[0]}"]
    if ("Encounter", "class") in facts.tokens:
        system, code = facts.tokens[("Encounter", "class")][0]
        expressions.append(f"Encounter?class={system}|{code}")
    payload = cohort_payload(cohorts.name(), expressions, [f"Patient/{p}" for p in facts.patient_ids[:3]])
    gid = cohorts.create(payload, "create of a two-filter cohort with members")
    body = json_or_none(cohorts.fhir.read("Group", gid)) or {}
    ex = last_exchange(cohorts.fhir)
    kept = [m for m in body.get("modifierExtension", []) or [] if isinstance(m, dict) and m.get("url") == MEMBER_FILTER]
    expect("BULK-COHORT-READ", len(kept) == len(expressions) and expressions_of(body) == expressions,
           f"the cohort read back has member-filters {expressions_of(body)}, sent {expressions}", ex)
    members = sorted(((m or {}).get("entity") or {}).get("reference", "") for m in body.get("member", []) or [])
    expect("BULK-COHORT-READ", members == sorted(f"Patient/{p}" for p in facts.patient_ids[:3]),
           f"the cohort read back has members {members}", ex)
    expect("BULK-COHORT-READ", body.get("actual") is True, f"actual is {body.get('actual')!r} for a cohort with "
                                                           "members", ex)
    refreshed = [e for e in body.get("extension", []) or [] if isinstance(e, dict)
                 and e.get("url", "").endswith("/members-refreshed")]
    expect("BULK-COHORT-READ", all(isinstance(e.get("valueDateTime"), str) for e in refreshed),
           "members-refreshed without a valueDateTime", ex)
