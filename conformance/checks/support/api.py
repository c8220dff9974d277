"""The one way checks talk to resources: ``ResourceApi`` (``GroupApi``, ``TaskApi``) keeps the
ledger; plus data guards and a run-owned Patient Group. Plain functions and classes (no
fixtures), so that helper modules can import them without importing conftest.py."""

from __future__ import annotations

import copy
import secrets
from typing import Any, Iterable

import httpx
import pytest

from conformance.rules.group import PATIENT_GROUP, group_body
from conformance.client import FhirClient, created_id, json_or_none
from conformance.target import Ledger, TargetData, bundle_resources, next_link

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
            pytest.skip(reason if at_least == 1 else f"{reason} (need {at_least})")


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
