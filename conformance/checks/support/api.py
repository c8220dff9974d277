"""The one way checks talk to resources: ``ResourceApi`` (``GroupApi``, ``TaskApi``) keeps the
ledger; plus data guards and a run-owned Patient Group. Plain functions and classes (no
fixtures), so that helper modules can import them without importing conftest.py."""

from __future__ import annotations

import copy
import datetime as dt
import secrets
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Iterable

import httpx
import pytest

from conformance.rules.group import PATIENT_GROUP, group_body
from conformance.client import FhirClient, created_id, json_or_none
from conformance.expectations import expect_created, expect_error, expect_read, last_exchange
from conformance.target import PREREQUISITES, Ledger, TargetData, bundle_resources, next_link
from conformance.verdicts import expect

DATA_NAMES = {
    "practitioners": ("practitioner_ids", "no Practitioner found on the target (Practitioner search returned none)"),
    "patients": ("patient_ids", "no Patient found on the target (Patient search returned none)"),
    "responsibilities": ("free_responsibilities", "every responsibility is held by a team this run did not create"),
}


def require(data: TargetData, wanted: Iterable[str], at_least: int = 1) -> None:
    """Skip, with the reason, when the target lacks what a check needs."""
    for name in wanted:
        attr, reason = DATA_NAMES[name]
        if len(getattr(data, attr)) < at_least:
            why = data.supplier(name, at_least) if data.supplier and name in PREREQUISITES else ""
            if why is None:
                continue                  # created, with the run prefix, and in the ledger
            reason = reason if at_least == 1 else f"{reason} (need {at_least})"
            pytest.skip(f"{reason} {why}".strip())


MALFORMED_IF_MATCH = {       # form -> the header built from the current version's opaque tag
    "bare-version": lambda v: v,
    "weak-unquoted": lambda v: f"W/{v}",
    "not-an-etag": lambda v: "fhirck-not-an-etag",
}


def malformed_if_match(form: str, etag: str) -> str:
    """An If-Match that is not an entity tag, built from the ETag a read sent (SPEC §1: matches nothing)."""
    return MALFORMED_IF_MATCH[form](etag.strip().removeprefix("W/").strip('"'))


def judge_stale_if_unmodified_since(fhir: FhirClient, api: Any, body: dict[str, Any], field: str,
                                    create_requirement: str, read_requirement: str) -> None:
    """Create, read its Last-Modified, update ``field`` with an If-Unmodified-Since an hour older: 412
    and not applied; the same update with the current Last-Modified then succeeds (200)."""
    rtype = body["resourceType"]
    response, _ = api.create(body)
    rid = expect_created(fhir, response, rtype, create_requirement, f"{rtype} create")
    expect_read(fhir, rtype, rid, read_requirement, f"{rtype} read")
    ex = last_exchange(fhir)
    header = ex.response_headers.get("last-modified")
    expect("FHIR-LAST-MODIFIED", header, f"{rtype} read sent no Last-Modified header", ex)
    try:
        modified = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        modified = None
    expect("FHIR-LAST-MODIFIED", modified is not None, f"Last-Modified {header!r} is not an HTTP-date", ex)
    stale = format_datetime((modified - dt.timedelta(hours=1)).astimezone(dt.timezone.utc), usegmt=True)
    put = api.update(rid, {**body, field: body[field] + " stale"}, headers={"If-Unmodified-Since": stale})
    expect_error(fhir, put, "FHIR-PRECONDITION-412", (412,), f"{rtype} update with If-Unmodified-Since {stale}")
    after = expect_read(fhir, rtype, rid, read_requirement, f"{rtype} read after the refused update")
    expect("FHIR-PRECONDITION-412", after.get(field) == body[field],
           f"the refused conditional update changed the {field} to {after.get(field)!r}", last_exchange(fhir))
    put = api.update(rid, {**body, field: body[field] + " fresh"}, headers={"If-Unmodified-Since": header})
    expect("FHIR-PRECONDITION-412", put.status_code == 200,
           f"{rtype} update with the current Last-Modified as If-Unmodified-Since answered {put.status_code}",
           last_exchange(fhir))


def expect_nothing_stored(fhir: FhirClient, rtype: str, field: str, marker: str, violation: str) -> None:
    """After a refused create whose ``field`` was the unique ``marker``, a search by it finds nothing."""
    search = fhir.search(rtype, {field: marker})
    found = [r for r in bundle_resources(json_or_none(search)) if r.get(field) == marker]
    expect("FHIR-REJECT-NOTHING-STORED", search.status_code == 200 and not found,
           f"after a rejected create ({violation}) a search by its {field} found {[r.get('id') for r in found]}",
           last_exchange(fhir))


def judge_malformed_if_match(fhir: FhirClient, api: Any, body: dict[str, Any], field: str, form: str,
                             read_requirement: str) -> None:
    """Create, read its ETag, update ``field`` with a malformed If-Match: 412 (or 400), and not applied.
    ``api`` is a GroupApi or TaskApi (create records the ledger); skipped where reads send no ETag."""
    rtype = body["resourceType"]
    response, _ = api.create(body)
    rid = expect_created(fhir, response, rtype, "FHIR-CREATE-201", f"{rtype} create")
    expect_read(fhir, rtype, rid, read_requirement, f"{rtype} read")
    etag = last_exchange(fhir).response_headers.get("etag")
    if not etag:
        pytest.skip(f"the target sends no ETag on {rtype} read: If-Match is judged only where ETags are sent")
    header = malformed_if_match(form, etag)
    put = api.update(rid, {**body, field: body[field] + " malformed"}, headers={"If-Match": header})
    expect_error(fhir, put, "FHIR-IF-MATCH-MALFORMED", (412, 400), f"{rtype} update with malformed If-Match {header!r}")
    after = expect_read(fhir, rtype, rid, read_requirement, f"{rtype} read after the refused update")
    expect("FHIR-IF-MATCH-MALFORMED", after.get(field) == body[field],
           f"the {rtype} update with malformed If-Match {header!r} was applied: {field} is now {after.get(field)!r}",
           last_exchange(fhir))


class ResourceApi:
    """Create, update, read and search one resource type, recording what this run created in the
    ledger so it can clean up (teams give back responsibilities, tasks are left cancelled)."""

    resource_type = ""

    def __init__(self, fhir: FhirClient, ledger: Ledger):
        self.fhir, self.ledger = fhir, ledger

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def remember(self, rid: str, payload: dict[str, Any]) -> None:
        raise NotImplementedError

    def create(self, payload: dict[str, Any]) -> tuple[httpx.Response, str | None]:
        response = self.fhir.post(self.resource_type, json_body=payload)
        rid = created_id(response, self.resource_type) if response.status_code < 300 else None
        if rid:
            self.remember(rid, payload)
        return response, rid

    def update(self, rid: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        body = copy.deepcopy(payload)
        body.setdefault("id", rid)
        return self.fhir.put(f"{self.resource_type}/{rid}", json_body=body, headers=headers)

    def read(self, rid: str) -> tuple[httpx.Response, dict[str, Any] | None]:
        response = self.fhir.read(self.resource_type, rid)
        return response, json_or_none(response) if response.status_code == 200 else None

    def search_all(self, params: dict[str, Any], max_pages: int = 30) -> tuple[list[dict[str, Any]], list[Any]]:
        """Every resource over all pages (and the bundles); a page that is not a 200 ends the list with
        its response."""
        response = self.fhir.search(self.resource_type, params)
        found, bundles = [], []
        for _ in range(max_pages):
            if response.status_code != 200:
                return found, bundles + [response]
            body = json_or_none(response)
            bundles.append(body)
            found += bundle_resources(body)
            link = next_link(body)
            if not link:
                break
            response = self.fhir.get(link)
        return found, bundles


class GroupApi(ResourceApi):
    resource_type = "Group"

    def remember(self, rid: str, payload: dict[str, Any]) -> None:
        self.ledger.created_group(rid, payload)

    def release(self, gid: str, payload: dict[str, Any], always: bool = False) -> None:
        """Give back any responsibility the team holds (best effort; the ledger retries at exit)."""
        if always or payload.get("characteristic"):
            body = {k: v for k, v in payload.items() if k != "characteristic"}
            self.update(gid, body)


class TaskApi(ResourceApi):
    resource_type = "Task"

    def remember(self, rid: str, payload: dict[str, Any]) -> None:
        self.ledger.created_task(rid, payload)


def create_patient_group(fhir: FhirClient, ledger: Ledger, prefix: str, label: str,
                         patient_ids: Iterable[str]) -> str | None:
    """A Patient Group of this run (named with the run prefix), recorded in the ledger;
    None when the target refuses it, so callers can fall back or skip."""
    body = group_body(PATIENT_GROUP, f"{prefix} {label} {secrets.token_hex(3)}", patient_ids)
    response, gid = GroupApi(fhir, ledger).create(body)
    return gid if response.status_code == 201 else None
