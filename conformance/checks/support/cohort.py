"""What the cohort checks share: the population read independently (Patient/$export, once per
run), the async create flow, cohort export, and clean-up.

Imported into each ``test_cohort_*`` module. Every cohort the run creates carries the run
prefix in its name and is deleted when the session ends (where the target supports delete).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conformance.brief import BriefDict
from conformance.bulk import BulkClient
from conformance.client import FhirClient, created_id, json_or_none
from conformance.cohort.filters import Filter
from conformance.cohort.oracle import Population, Verdict, judge
from conformance.expectations import is_operation_outcome, outcome_text
from conformance.rules.cohort import expressions_of
from conformance.rules.model import REFUSED
from conformance.session import ConformanceRun
from conformance.strategies.cohort import Facts
from conformance.target import COHORT, Ledger, TargetData
from conformance.verdicts import expect

from .api import create_patient_group
from .export import finish, run_export

ASYNC = "BULK-COHORT-ASYNC-CREATE"
POPULATION_TYPES = "Patient,Condition,Encounter,Observation"
NARROWING_GROUP_SIZE = 60


@dataclass
class Created:
    """How a create ended: ``gid`` when a Group was created, else the refusal."""

    gid: str | None
    status: int
    body: Any
    where: str          # "kick-off", "status" or "sync"
    exchange: Any


class CohortApi:
    """Cohort creates (async by default) and export of a cohort; each cohort created goes into the
    run's ledger (deleted at the end)."""

    def __init__(self, fhir: FhirClient, bulk: BulkClient, run_prefix: str, ledger: Ledger):
        self.fhir, self.bulk, self.run_prefix, self.ledger = fhir, bulk, run_prefix, ledger

    def __repr__(self) -> str:
        return "CohortApi()"

    def name(self, what: str = "cohort") -> str:
        return f"{self.run_prefix} {what} {secrets.token_hex(4)}"

    def submit(self, payload: dict[str, Any]) -> Created:
        """POST with Prefer: respond-async and poll to the end; no verdict (see ``create``)."""
        response = self.fhir.post("Group", json_body=payload,
                                  headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
        exchange = self.fhir.recorder.last
        location = response.headers.get("content-location")
        if response.status_code != 202 or not location:
            return Created(None, response.status_code, json_or_none(response), "kick-off", exchange)
        poll = self.bulk.poll(location)
        body = json_or_none(poll.response)
        gid = _bundle_group_id(body)
        if gid:
            self.ledger.delete_at_end(COHORT, f"Group/{gid}")
        return Created(gid, poll.response.status_code, body, "status", poll.exchange)

    def create(self, payload: dict[str, Any], what: str, optional: str | None = None) -> str:
        """An async create that must succeed (BULK-COHORT-ASYNC-CREATE); returns the Group id.

        ``optional`` names an optional feature the cohort uses (member narrowing, a filter on
        something the target does not declare): refused with an OperationOutcome, the check
        is skipped with that reason, since refusing what one does not support is what the IG asks.
        """
        response = self.fhir.post("Group", json_body=payload,
                                  headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
        ex = self.fhir.recorder.last
        if response.status_code in REFUSED and is_operation_outcome(json_or_none(response)):
            if optional:
                pytest.skip(f"the target does not support {optional} (HTTP {response.status_code}: "
                            f"{outcome_text(json_or_none(response))[:160]})")
            raise RuntimeError(f"{what}: the target refused a cohort the suite believes valid: HTTP "
                               f"{response.status_code} {outcome_text(json_or_none(response))[:300]}")
        expect(ASYNC, response.status_code == 202, f"{what}: async create answered {response.status_code}, "
                                                   "expected 202 Accepted", ex)
        location = response.headers.get("content-location", "")
        expect(ASYNC, location.startswith(("http://", "https://")),
               f"{what}: 202 without an absolute Content-Location ({location!r})", ex)
        poll = self.bulk.poll(location)
        body = json_or_none(poll.response)
        status = poll.response.status_code
        expect(ASYNC, all(p.status in (202, 429) for p in poll.polls[:-1]),
               f"{what}: in-progress status answers were {[p.status for p in poll.polls[:-1]]}, expected 202",
               poll.exchange)
        if 400 <= status < 500 and is_operation_outcome(body) and optional:
            pytest.skip(f"the target does not support {optional} (HTTP {status}: {outcome_text(body)[:160]})")
        if 400 <= status < 600 and is_operation_outcome(body):
            raise RuntimeError(f"{what}: the target's create job failed for a cohort the suite believes valid: "
                               f"HTTP {status} {outcome_text(body)[:300]}")
        expect(ASYNC, status == 200, f"{what}: the completed async create answered HTTP {status}, expected 200 "
                                     "with a batch-response Bundle", poll.exchange)
        expect(ASYNC, isinstance(body, dict) and body.get("resourceType") == "Bundle"
               and body.get("type") == "batch-response",
               f"{what}: the completed status answer is not a Bundle of type batch-response", poll.exchange)
        entries = [e for e in body.get("entry", []) or [] if isinstance(e, dict)]
        expect(ASYNC, len(entries) == 1, f"{what}: the batch-response has {len(entries)} entries, expected 1",
               poll.exchange)
        answer = entries[0].get("response") or {}
        expect(ASYNC, str(answer.get("status", "")).startswith("201"),
               f"{what}: batch-response entry status {answer.get('status')!r}, expected '201 Created'", poll.exchange)
        gid = _bundle_group_id(body)
        expect(ASYNC, gid is not None, f"{what}: batch-response entry has no response.location Group/<id> "
                                       f"(got {answer.get('location')!r})", poll.exchange)
        self.ledger.delete_at_end(COHORT, f"Group/{gid}")
        return gid  # type: ignore[return-value]

    def create_sync(self, payload: dict[str, Any]) -> tuple[httpx.Response, str | None]:
        response = self.fhir.post("Group", json_body=payload)
        gid = created_id(response, "Group") if response.status_code == 201 else None
        if gid:
            self.ledger.delete_at_end(COHORT, f"Group/{gid}")
        return response, gid

    def exported_patients(self, gid: str, what: str) -> set[str]:
        """The Patients a Group/<id>/$export of the cohort yields (``_type=Patient``)."""
        done = run_export(self.bulk, gid, what, {"_type": "Patient"}, requirement="BULK-COHORT-EXPORT")
        finish(self.bulk, done)
        return done.ids("Patient")

    def delete(self, gid: str) -> httpx.Response:
        response = self.fhir.delete(f"Group/{gid}")
        if response.status_code < 300:
            self.ledger.deleted(COHORT, f"Group/{gid}")
        return response


def _bundle_group_id(body: Any) -> str | None:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return None
    for entry in body.get("entry", []) or []:
        location = str(((entry or {}).get("response") or {}).get("location") or "")
        parts = [p for p in location.split("/") if p]
        if "_history" in parts:
            parts = parts[:parts.index("_history")]
        if len(parts) >= 2 and parts[-2] == "Group":
            return parts[-1]
    return None


@pytest.fixture(scope="session")
def cohorts(conformance_run: ConformanceRun, fhir: FhirClient, bulk: BulkClient, target_data: TargetData):
    return CohortApi(fhir, bulk, target_data.run_prefix, conformance_run.ledger)


def read_population(bulk: BulkClient) -> Population:
    """Every Patient and their compartment resources, by a Patient-level export (independent of any cohort)."""
    response, location = bulk.kickoff(None, {"_type": POPULATION_TYPES}, path="Patient/$export")
    if response.status_code != 202 or not location:
        raise RuntimeError(f"Patient/$export (the membership oracle's data) answered HTTP {response.status_code}")
    poll = bulk.poll(location)
    if poll.outcome != "complete" or not isinstance(poll.manifest, dict):
        raise RuntimeError(f"Patient/$export did not complete: HTTP {poll.response.status_code}")
    population = Population()
    for entry in poll.manifest.get("output", []) or []:
        if isinstance(entry, dict) and entry.get("type") in POPULATION_TYPES.split(","):
            population.add_all(bulk.resources(entry["url"]))
    bulk.delete(location)
    return population


@pytest.fixture(scope="session")
def population(conformance_run: ConformanceRun, bulk: BulkClient) -> Facts:
    """The population, read once per run; skipped when the target has no Patient-level export.

    Not declared but the profile forced (``--profile bulk-cohort``): tried anyway (servers often serve
    Patient/$export without declaring it) and reported as undeclared."""
    if "export" not in conformance_run.capabilities.operations("Patient"):
        reason = ("the target's CapabilityStatement does not declare operation '$export' on Patient: the "
                  "membership oracle reads the population with a Patient-level export")
        if "bulk-cohort" not in conformance_run.settings.profiles:
            pytest.skip(reason + " (use --profile bulk-cohort to try it anyway)")
        try:
            population = read_population(bulk)
        except RuntimeError as exc:
            pytest.skip(f"{reason}, and trying it failed: {exc}")
        conformance_run.missing_declarations.add("operation '$export' on Patient")
    else:
        population = read_population(bulk)
    facts = Facts.of(population)
    caps = conformance_run.capabilities
    facts.declared = {rtype: frozenset(caps.search_params(rtype)) for rtype in caps.resources}
    if len(facts.patient_ids) < 2:
        pytest.skip("the Patient-level export holds fewer than 2 patients: no cohort can be told apart")
    return facts


@pytest.fixture(scope="session")
def narrowing_groups(conformance_run: ConformanceRun, fhir: FhirClient, population: Facts,
                     ledger: Ledger, target_data: TargetData) -> dict[str, set[str]]:
    """A Patient Group of our own (every other patient) that cohorts may name as member; {} if none can be made."""
    groups: dict[str, set[str]] = BriefDict()       # a fixture of @given checks: prints as its size
    if "create" in conformance_run.capabilities.interactions("Group"):
        chosen = population.patient_ids[::2][:NARROWING_GROUP_SIZE]
        gid = create_patient_group(fhir, ledger, target_data.run_prefix, "cohort base", chosen)
        if gid:
            groups[gid] = set(chosen)
    return groups


def optional_features(payload: dict[str, Any], declared: dict[str, frozenset[str]]) -> str | None:
    """What of a cohort is optional for the target: member narrowing, filter parameters it does not declare."""
    from urllib.parse import parse_qsl

    parts = []
    if payload.get("member"):
        parts.append("member narrowing (Group.member)")
    undeclared = sorted({f"{rtype}.{name.split(':')[0]}"
                         for expression in expressions_of(payload)
                         for rtype, _, query in [expression.partition("?")]
                         for name, _ in parse_qsl(query, keep_blank_values=True)
                         if name.split(":")[0] not in declared.get(rtype, frozenset())})
    if undeclared:
        parts.append("member-filters on parameters its CapabilityStatement does not declare ("
                     + ", ".join(undeclared[:4]) + ")")
    return " and ".join(parts) or None


def verify_membership(cohorts: CohortApi, facts: Facts, payload: dict[str, Any], filters: list[Filter],
                      base: set[str] | None, requirement: str, what: str) -> Verdict:
    """Create the cohort, export it, and judge the exported Patients against the oracle."""
    gid = cohorts.create(payload, what, optional_features(payload, facts.declared))
    actual = cohorts.exported_patients(gid, f"{what}: export of the cohort")
    verdict = judge(filters, facts.population, actual, base)
    expect(requirement, verdict.agrees,
           f"{what}: the cohort's exported Patients differ from the oracle's\n  filters: "
           + "; ".join(f.expression for f in filters) + "\n" + verdict.describe(), cohorts.fhir.recorder.last)
    cohorts.delete(gid)
    return verdict
