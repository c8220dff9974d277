"""What the suite learns about the target, and what it leaves behind there.

Safe on a shared vendor server: everything created carries the run prefix; the
suite only ever claims responsibilities that were free when it looked (never one
held by a team it did not create), and on exit it releases every responsibility
its own teams hold, whatever happened to the checks.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .client import FhirClient, created_id, json_or_none
from .rules.group import RESPONSIBILITIES, RESPONSIBILITY_UNIQUE, responsibilities_of

log = logging.getLogger(__name__)
MAX_DISCOVERY_PAGES = 50


def new_run_prefix() -> str:
    return f"fhirck-{secrets.token_hex(4)}"


def bundle_resources(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        return []
    return [e["resource"] for e in body.get("entry", []) or []
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)]


def next_link(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    for link in body.get("link", []) or []:
        if isinstance(link, dict) and link.get("relation") == "next":
            return link.get("url")
    return None


def iterate_search(client: FhirClient, resource_type: str, params: dict[str, Any],
                   max_pages: int = MAX_DISCOVERY_PAGES) -> Iterator[dict[str, Any]]:
    """Every resource of a search, following next links (bounded)."""
    response = client.search(resource_type, params)
    for _ in range(max_pages):
        if response.status_code != 200:
            return
        body = json_or_none(response)
        yield from bundle_resources(body)
        link = next_link(body)
        if not link:
            return
        response = client.get(link)


@dataclass(repr=False)
class TargetData:
    """Ids and free responsibilities found on the target, and the run prefix."""

    run_prefix: str
    practitioner_ids: list[str] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    free_responsibilities: list[str] = field(default_factory=list)
    export_group: str | None = None    # which Group the export checks export, and how it was chosen
    # creates missing prerequisites (kind, how many in all) and returns None, or why it could not
    supplier: Callable[[str, int], str | None] | None = field(default=None, compare=False)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis pretty-prints dataclasses field by field; keep falsifying examples short."""
        printer.text(repr(self))

    def __repr__(self) -> str:
        return (f"TargetData(run_prefix={self.run_prefix!r}, {len(self.practitioner_ids)} practitioners, "
                f"{len(self.patient_ids)} patients, free={self.free_responsibilities!r})")

    def missing_id(self) -> str:
        """An id no resource on the target has (random, prefixed)."""
        return f"{self.run_prefix}-missing-{secrets.token_hex(6)}"


def discover(client: FhirClient, run_prefix: str, own_groups: set[str]) -> TargetData:
    data = TargetData(run_prefix)
    for rtype, dest in (("Practitioner", data.practitioner_ids), ("Patient", data.patient_ids)):
        response = client.search(rtype, {"_count": 50})
        if response.status_code == 200:
            dest.extend(r["id"] for r in bundle_resources(json_or_none(response)) if r.get("id"))
    held: dict[str, str] = {}
    rivals = dict(p.split("=") for p in RESPONSIBILITY_UNIQUE.among.partition("?")[2].split("&"))
    for team in iterate_search(client, "Group", {**rivals, "_count": 100}):
        if team.get("id") in own_groups:
            continue
        for text in responsibilities_of(team):
            held[text] = team.get("id", "?")
    data.free_responsibilities = [r for r in RESPONSIBILITIES if r not in held]
    return data


PREREQUISITES = {"practitioners": ("Practitioner", "practitioner_ids"), "patients": ("Patient", "patient_ids")}


@dataclass(repr=False)
class Supplier:
    """Creates the Practitioners and Patients checks need when the target has too few and declares
    create; each carries the run prefix and goes into the ledger (deleted at the end where the
    target declares delete)."""

    client: FhirClient
    ledger: Ledger
    interactions: Callable[[str], set[str]]
    data: TargetData

    def __call__(self, kind: str, at_least: int) -> str | None:
        rtype, attr = PREREQUISITES[kind]
        ids: list[str] = getattr(self.data, attr)
        if "create" not in self.interactions(rtype):
            return f"and the target does not declare create on {rtype}, so the suite cannot add them"
        deletable = "delete" in self.interactions(rtype)
        while len(ids) < at_least:
            body = {"resourceType": rtype, "active": True,
                    "name": [{"family": self.data.run_prefix, "given": [f"Check{len(ids) + 1}"]}]}
            response = self.client.post(rtype, json_body=body)
            rid = created_id(response, rtype) if response.status_code < 300 else None
            if rid is None:
                return f"and creating one failed: HTTP {response.status_code}"
            self.ledger.created_resource(rtype, rid, deletable)
            ids.append(rid)
        return None


@dataclass(repr=False)
class Ledger:
    """Everything this run created on the target, for clean-up."""

    groups: dict[str, dict[str, Any]] = field(default_factory=dict)   # id -> last body we sent
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)    # id -> body we created it with
    resources: dict[str, bool] = field(default_factory=dict)          # "Type/id" -> the target declares delete

    def created_resource(self, rtype: str, rid: str, deletable: bool) -> None:
        """A prerequisite this run created (a Practitioner, a Patient): deleted at the end where allowed."""
        self.resources[f"{rtype}/{rid}"] = deletable

    def delete_resources(self, client: FhirClient) -> list[str]:
        """Delete the prerequisites we created, newest first; say which stay behind and why."""
        problems = []
        for ref, deletable in reversed(list(self.resources.items())):
            if not deletable:
                problems.append(f"left {ref} on the target (created by this run; the target does not declare "
                                "delete on it)")
                continue
            response = client.delete(ref)
            if response.status_code < 300 or response.status_code in (404, 410):
                del self.resources[ref]
            else:
                problems.append(f"could not delete {ref}: HTTP {response.status_code}")
        return problems

    def created_group(self, gid: str, body: dict[str, Any]) -> None:
        self.groups[gid] = body

    def created_task(self, tid: str, body: dict[str, Any]) -> None:
        self.tasks[tid] = body

    def release_all(self, client: FhirClient) -> list[str]:
        """Drop the responsibilities of every team we created; returns problems met."""
        problems = []
        for gid in list(self.groups):
            response = client.read("Group", gid)
            if response.status_code != 200:
                continue
            current = json_or_none(response) or {}
            if not current.get("characteristic"):
                continue
            body = {k: v for k, v in current.items() if k not in ("characteristic", "meta", "quantity")}
            body["id"] = gid
            put = client.update(body, gid)
            if put.status_code >= 300:
                problems.append(f"could not release responsibilities of Group/{gid}: HTTP {put.status_code}")
        problems += self.cancel_tasks(client)
        problems += self.delete_resources(client)
        return problems

    def cancel_tasks(self, client: FhirClient) -> list[str]:
        """Leave every task this run created ``cancelled``, keeping its other content."""
        problems = []
        for tid in list(self.tasks):
            response = client.read("Task", tid)
            if response.status_code != 200:
                continue
            current = json_or_none(response) or {}
            if current.get("status") == "cancelled":
                continue
            body = {k: v for k, v in current.items() if k not in ("meta", "lastModified", "note")}
            body.update(id=tid, status="cancelled")
            put = client.update(body, tid)
            if put.status_code >= 300:
                problems.append(f"could not cancel Task/{tid}: HTTP {put.status_code}")
        return problems
