"""What the export checks share: the flow client, the group exported, and completed exports.

Imported into each ``test_export_*`` module. State lives on the ConformanceRun, so the
baseline export runs once per session whichever module asks first; every export started
is deleted by the checks or, at the latest, when the session ends.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from conformance.brief import Brief
from conformance.rules.bulk_export import NDJSON
from conformance.rules.group import PATIENT_GROUP_TYPE
from conformance.bulk import BulkClient, FileResult, PollResult
from conformance.client import FhirClient, json_or_none
from conformance.expectations import is_operation_outcome
from conformance.session import ConformanceRun
from conformance.target import Ledger, TargetData, iterate_search
from conformance.verdicts import Blocked, expect

from .api import create_patient_group

GROUP_SIZE = 5
MAX_ERROR_LINES = 10_000     # OperationOutcomes read from error[] files per export
PATIENT_REF = re.compile(r"Patient/([A-Za-z0-9\-.]{1,64})")


@dataclass(repr=False)
class ExportGroup(Brief):
    """The group the export checks export, and what the suite knows of its membership.

    ``patient_ids`` are the members the Group lists; a large group may give only ``quantity``
    (SPEC §4), and membership is then judged by count, the weaker check."""

    id: str
    patient_ids: set[str]
    quantity: int | None = None
    how: str = ""

    @property
    def listed(self) -> bool:
        return bool(self.patient_ids)

    def describe(self) -> str:
        size = (f"{len(self.patient_ids)} listed members" if self.listed
                else f"quantity {self.quantity}, members not listed" if self.quantity is not None
                else "no members listed, no quantity")
        return f"Group/{self.id} ({size}; {self.how})"

    def __repr__(self) -> str:
        return f"ExportGroup({self.id!r}, {len(self.patient_ids)} patients)"


@dataclass(repr=False)
class CompletedExport(Brief):
    """A finished export: the poll result, its manifest and every file checked."""

    status_url: str
    request_url: str
    poll: PollResult
    manifest: dict[str, Any]
    files: list[FileResult] = field(default_factory=list)
    error_patients: set[str] | None = None   # the patients error[] names, read on first use

    def __repr__(self) -> str:
        return f"CompletedExport({self.status_url!r}, {len(self.files)} files)"

    def of_type(self, rtype: str) -> list[FileResult]:
        return [f for f in self.files if f.type == rtype]

    def ids(self, rtype: str) -> set[str]:
        return {i for f in self.of_type(rtype) for i in f.ids}

    def patients_in_errors(self, bulk: BulkClient) -> set[str]:
        """The patients the OperationOutcomes of error[] name as ``Patient/<id>`` (files read once)."""
        if self.error_patients is None:
            found: set[str] = set()
            for entry in self.manifest.get("error", []) or []:
                if isinstance(entry, dict) and isinstance(entry.get("url"), str):
                    for n, outcome in enumerate(bulk.resources(entry["url"])):
                        if n >= MAX_ERROR_LINES:
                            break
                        found |= set(PATIENT_REF.findall(json.dumps(outcome)))
            self.error_patients = found
        return self.error_patients


@pytest.fixture(scope="session")
def bulk(conformance_run: ConformanceRun, fhir: FhirClient):
    s = conformance_run.settings
    return BulkClient(fhir, s.export_timeout, s.export_validate_lines, ledger=conformance_run.ledger)


def _member_patients(group: dict[str, Any]) -> set[str]:
    out = set()
    for m in group.get("member", []) or []:
        ref = ((m or {}).get("entity") or {}).get("reference", "")
        parts = ref.split("/")
        if len(parts) >= 2 and parts[-2] == "Patient":
            out.add(parts[-1])
    return out


def _quantity(group: dict[str, Any]) -> int | None:
    value = group.get("quantity")
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def read_group(fhir: FhirClient, gid: str, how: str) -> ExportGroup:
    response = fhir.read("Group", gid)
    if response.status_code != 200:
        raise RuntimeError(f"could not read Group/{gid} to learn its members: HTTP {response.status_code}")
    body = json_or_none(response) or {}
    return ExportGroup(gid, _member_patients(body), _quantity(body), how)


def read_members(fhir: FhirClient, gid: str) -> set[str]:
    return read_group(fhir, gid, "").patient_ids


def find_patient_group(fhir: FhirClient) -> ExportGroup | None:
    """A Group from ``Group?type=person``: the first that lists Patient members, else the largest
    ``quantity`` (a Bulk Data server's groups are often read-only, and large ones list no members)."""
    largest: ExportGroup | None = None
    for found in iterate_search(fhir, "Group", {"type": PATIENT_GROUP_TYPE, "_count": 50}, max_pages=4):
        gid = found.get("id")
        if not gid or found.get("type") not in (None, PATIENT_GROUP_TYPE):
            continue
        members = _member_patients(found)
        if members:
            return ExportGroup(gid, members, _quantity(found), "found with Group?type=person (it lists its members)")
        quantity = _quantity(found)
        if quantity and (largest is None or quantity > (largest.quantity or 0)):
            largest = ExportGroup(gid, set(), quantity,
                                  "found with Group?type=person: no group lists members, the largest quantity")
    return largest


@pytest.fixture(scope="session")
def export_group(conformance_run: ConformanceRun, fhir: FhirClient, target_data: TargetData,
                 ledger: Ledger) -> ExportGroup:
    """--export-group; else a patient group of our own (created from patients found); else one found."""
    group = None
    caps = conformance_run.capabilities
    chosen_id = conformance_run.settings.export_group
    if chosen_id:
        group = read_group(fhir, chosen_id, "named with --export-group")
    elif "create" in caps.interactions("Group") and (
            len(target_data.patient_ids) >= 2 or (target_data.supplier and target_data.supplier("patients", 2) is None)):
        gid = create_patient_group(fhir, ledger, target_data.run_prefix, "export cohort",
                                   target_data.patient_ids[:GROUP_SIZE])
        if gid:
            group = read_group(fhir, gid, "created by this run")
    if group is None:
        group = find_patient_group(fhir)
    if group is None:
        pytest.skip("no patient group to export: Group create is not declared or failed, no --export-group was "
                    "given, and Group?type=person found no group listing Patient members or giving a quantity")
    target_data.export_group = group.describe()
    return group


def require_kickoff(bulk: BulkClient, response: httpx.Response, location: str | None, what: str,
                    requirement: str = "BULK-EXPORT-KICKOFF") -> str:
    """The status URL of an accepted kick-off; anything else blocks the rest of the check (no
    polling of a status URL that was never given)."""
    ex = bulk.fhir.recorder.last
    accepted = (expect(requirement, response.status_code == 202,
                       f"{what}: expected 202 Accepted, got {response.status_code}", ex)
                and expect(requirement, bool(location), f"{what}: 202 without a Content-Location header", ex)
                and expect(requirement, str(location).startswith(("http://", "https://")),
                           f"{what}: Content-Location {location!r} is not an absolute URL", ex))
    if not accepted:
        raise Blocked(f"blocked by {requirement}: {what} was not accepted (HTTP {response.status_code})")
    return str(location)


def require_complete(bulk: BulkClient, status_url: str, what: str) -> PollResult:
    """Poll to the end; a failed job fails BULK-EXPORT-STATUS with the server's answer."""
    result = bulk.poll(status_url)
    if result.outcome != "complete":
        body = json_or_none(result.response)
        expect("BULK-EXPORT-STATUS", is_operation_outcome(body),
               f"{what}: the job failed with HTTP {result.response.status_code} without an OperationOutcome",
               result.exchange)
        expect("BULK-EXPORT-STATUS", False,
               f"{what}: the export job failed: HTTP {result.response.status_code} "
               f"{_issue_text(body)}", result.exchange)
    return result


def _issue_text(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    texts = [str((i.get("details") or {}).get("text") or i.get("diagnostics") or i.get("code"))
             for i in body.get("issue", []) or [] if isinstance(i, dict)]
    return "; ".join(texts)[:300]


def run_export(bulk: BulkClient, group_id: str, what: str, params: Any = None,
               parameters: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
               requirement: str = "BULK-EXPORT-KICKOFF", download: bool = True) -> CompletedExport:
    """Kick off, poll to completion, download and check every file (the job is left for the caller)."""
    response, location = bulk.kickoff(group_id, params, parameters=parameters, headers=headers)
    return complete_export(bulk, response, location, what, requirement, download)


def complete_export(bulk: BulkClient, response: httpx.Response, location: str | None, what: str,
                    requirement: str = "BULK-EXPORT-KICKOFF", download: bool = True) -> CompletedExport:
    """From a kick-off answer: poll to completion, then download and check every file."""
    status_url = require_kickoff(bulk, response, location, what, requirement)
    poll = require_complete(bulk, status_url, what)
    manifest = poll.manifest
    expect("BULK-EXPORT-STATUS", isinstance(manifest, dict),
           f"{what}: the complete status answer is not a JSON manifest", poll.exchange)
    done = CompletedExport(status_url, str(response.request.url), poll, manifest)
    if download:
        for entry in manifest.get("output", []) or []:
            if isinstance(entry, dict) and isinstance(entry.get("url"), str):
                done.files.append(bulk.download(str(entry.get("type")), entry["url"]))
    return done


def finish(bulk: BulkClient, export: CompletedExport) -> None:
    """Delete a finished export we no longer need (best effort; cleanup retries at exit)."""
    try:
        bulk.delete(export.status_url)
    except httpx.HTTPError:
        pass


@pytest.fixture(scope="session")
def baseline_export(bulk: BulkClient, export_group: ExportGroup) -> CompletedExport:
    """One plain GET export of the group, kept until the session ends (its files serve several checks)."""
    return run_export(bulk, export_group.id, "GET kick-off of the group's export",
                      {"_outputFormat": NDJSON})
