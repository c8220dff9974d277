"""What the suite learns about the target, and what it leaves behind there.

Safe on a shared vendor server: everything created carries the run prefix; the
suite only ever claims responsibilities that were free when it looked (never one
held by a team it did not create), and on exit it deletes what it created where the
target declares delete, else releases every responsibility its own teams hold and cancels
its tasks, whatever happened to the checks; what it could not remove is reported by id.
"""

from __future__ import annotations

import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import httpx

from .brief import Brief
from .http import FhirClient, created_id, json_or_none
from .rules.group import RESPONSIBILITIES, RESPONSIBILITY_UNIQUE, responsibilities_of

log = logging.getLogger(__name__)
MAX_DISCOVERY_PAGES = 50
CLEANUP_PASSES = 3    # a resource the target rate-limited or failed on is tried again, twice


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
class TargetData(Brief):
    """Ids and free responsibilities found on the target, and the run prefix."""

    run_prefix: str
    practitioner_ids: list[str] = field(default_factory=list)
    patient_ids: list[str] = field(default_factory=list)
    free_responsibilities: list[str] = field(default_factory=list)
    export_group: str | None = None    # which Group the export checks export, and how it was chosen
    # creates missing prerequisites (kind, how many in all) and returns None, or why it could not
    supplier: Callable[[str, int], str | None] | None = field(default=None, compare=False)

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
        while len(ids) < at_least:
            body = {"resourceType": rtype, "active": True,
                    "name": [{"family": self.data.run_prefix, "given": [f"Check{len(ids) + 1}"]}]}
            response = self.client.post(rtype, json_body=body)
            rid = created_id(response, rtype) if response.status_code < 300 else None
            if rid is None:
                return f"and creating one failed: HTTP {response.status_code}"
            self.ledger.created_resource(rtype, rid)
            ids.append(rid)
        return None


@dataclass(repr=False)
class Ledger(Brief):
    """Everything this run created on the target, for clean-up."""

    groups: dict[str, dict[str, Any]] = field(default_factory=dict)   # id -> last body we sent
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)    # id -> body we created it with
    resources: list[str] = field(default_factory=list)   # "Type/id" of prerequisites we created
    # what only DELETE removes, by (kind, path to DELETE): (EXPORT, status URL), (COHORT, "Group/<id>")
    delete_only: dict[tuple[str, str], None] = field(default_factory=dict)     # an ordered set

    def delete_at_end(self, kind: str, path: str) -> None:
        self.delete_only[(kind, path)] = None

    def deleted(self, kind: str, path: str) -> None:
        """A check deleted it already (the DELETE was answered 2xx)."""
        self.delete_only.pop((kind, path), None)

    def created_resource(self, rtype: str, rid: str) -> None:
        """A prerequisite this run created (a Practitioner, a Patient): deleted at the end where allowed."""
        self.resources.append(f"{rtype}/{rid}")

    def __repr__(self) -> str:
        return f"Ledger({len(self.groups)} groups, {len(self.tasks)} tasks, {len(self.delete_only)} to delete)"

    def created_group(self, gid: str, body: dict[str, Any]) -> None:
        self.groups[gid] = body

    def created_task(self, tid: str, body: dict[str, Any]) -> None:
        self.tasks[tid] = body

    def clean_up(self, client: FhirClient, can_delete: Callable[[str], bool],
                 can_search_ids: Callable[[str], bool] = lambda rtype: False) -> CleanUp:
        """Remove what the run created: DELETE where the target declares it, else release the teams'
        responsibilities and cancel the tasks. Each resource is tried on its own (one failure does
        not stop the rest); those the target rate-limited or failed on are tried again in a second
        pass; what still stands is reported with its id.

        Without DELETE, what a team or task is now is learnt by ``_id`` searches of up to
        ``CLEANUP_BATCH`` ids where the target declares ``_id`` (one request, not one read each);
        a resource the searches did not return is read on its own. A type whose DELETE answered
        405 is not sent another DELETE."""
        outcome = CleanUp()
        # exports, cohorts, teams and tasks first (they may point at the prerequisites), then the prerequisites
        phases = [list(self.delete_only) + [("Group", gid) for gid in self.groups] + [("Task", tid) for tid in self.tasks],
                  [tuple(ref.split("/", 1)) for ref in reversed(self.resources)]]
        # within a phase nothing refers to anything else: up to the run's concurrency cap at once
        with ThreadPoolExecutor(max_workers=client.polite.max_concurrency,
                                thread_name_prefix="fhir-cleanup") as pool:
            searched = [ref for ref in phases[0] if can_search_ids(ref[0])]
            known: dict[str, dict[str, Any]] = {}
            for found in pool.map(lambda batch: _current(client, batch), _batches(searched)):
                known.update(found)
            for todo in phases:
                for _ in range(CLEANUP_PASSES):
                    failed = [ref for ref, retry in zip(todo, pool.map(
                        lambda ref: self._try_remove(client, ref, can_delete, outcome, known), todo)) if retry]
                    todo = failed
                    if not todo:
                        break
        return outcome

    def _try_remove(self, client: FhirClient, ref: tuple[str, str], can_delete: Callable[[str], bool],
                    outcome: "CleanUp", known: dict[str, dict[str, Any]]) -> bool:
        """One resource's clean-up, its result in ``outcome``; True when worth another pass."""
        rtype, rid = ref
        name = _reference(rtype, rid)
        if client.polite.tripped:
            outcome.left_behind[name] = "not tried: the target stopped answering"
            return False
        retry = False
        try:
            if rtype in DELETE_ONLY:
                why = self._delete(client, rid, name, outcome, harmless=DELETE_ONLY[rtype])
            else:       # a searched state is used once: a second pass reads afresh
                why = self._remove(client, rtype, rid, can_delete(rtype) and rtype not in outcome.delete_refused,
                                   outcome, known.pop(name, None))
        except (httpx.HTTPError, RuntimeError) as exc:
            why, retry = f"{type(exc).__name__}: {str(exc)[:160]}", True
        if why:
            outcome.left_behind[name] = why
        else:
            outcome.left_behind.pop(name, None)
        return retry

    @staticmethod
    def _delete(client: FhirClient, path: str, name: str, outcome: "CleanUp", harmless: tuple[int, ...]) -> str | None:
        """An export job or a cohort: DELETE is the only way to remove it."""
        answer = client.request("DELETE", path)
        if answer.status_code < 300:
            outcome.deleted.append(name)
            return None
        return None if answer.status_code in harmless else f"DELETE answered HTTP {answer.status_code}"

    @staticmethod
    def _remove(client: FhirClient, rtype: str, rid: str, delete: bool, outcome: "CleanUp",
                current: dict[str, Any] | None = None) -> str | None:
        """None when ``rtype/rid`` is gone or harmless; else why it still stands. ``current``: the
        resource as a search just returned it (else it is read)."""
        if delete:
            answer = client.delete(f"{rtype}/{rid}")
            if answer.status_code < 300 or answer.status_code in (404, 410):
                outcome.deleted.append(f"{rtype}/{rid}")
                return None
            if rtype not in MUTABLE:
                return f"DELETE answered HTTP {answer.status_code}"
            if answer.status_code == 405:
                # the target declares delete, but not for what this run makes (Canvas deletes cohorts,
                # not teams): the rest of this type are left harmless without asking again
                outcome.delete_refused.add(rtype)
        elif rtype not in MUTABLE:
            return f"created by this run; the target does not declare delete on {rtype}"
        if current is None:
            response = client.read(rtype, rid)
            if response.status_code in (404, 410):
                return None
            if response.status_code != 200:
                return f"read answered HTTP {response.status_code}"
            current = json_or_none(response) or {}
        if rtype == "Group":
            if not current.get("characteristic"):
                return None
            body = {k: v for k, v in current.items() if k not in ("characteristic", "meta", "quantity")}
            body["id"] = rid
            done, what = client.update(body, rid), outcome.released
        else:
            if current.get("status") == "cancelled":
                return None
            body = {k: v for k, v in current.items() if k not in ("meta", "lastModified", "note")}
            body.update(id=rid, status="cancelled")
            done, what = client.update(body, rid), outcome.cancelled
        if done.status_code >= 300:
            verb = "releasing its responsibilities" if rtype == "Group" else "cancelling it"
            return f"{verb} answered HTTP {done.status_code}"
        what.append(f"{rtype}/{rid}")
        return None


MUTABLE = ("Group", "Task")     # what clean-up can leave harmless without DELETE (release, cancel)
EXPORT, COHORT = "export", "cohort"     # what only DELETE removes: an export job, a Bulk Cohort Group
# DELETE answers that leave nothing to report, by kind (the IG makes cohort deletion optional: 405)
DELETE_ONLY = {EXPORT: (404, 410), COHORT: (404, 405, 410)}


def _reference(kind: str, rid: str) -> str:
    """How clean-up names what it removed or left: ``Group/x``, ``export <status URL>``, ``cohort Group/x``."""
    return f"{kind} {rid}" if kind in DELETE_ONLY else f"{kind}/{rid}"


CLEANUP_BATCH = 50              # ids per clean-up search (a URL of about 2 kB)


def _batches(refs: list[tuple[str, str]]) -> Iterator[tuple[str, list[str]]]:
    """``(type, ids)`` in groups of at most ``CLEANUP_BATCH``."""
    by_type: dict[str, list[str]] = {}
    for rtype, rid in refs:
        by_type.setdefault(rtype, []).append(rid)
    for rtype, ids in by_type.items():
        for start in range(0, len(ids), CLEANUP_BATCH):
            yield rtype, ids[start:start + CLEANUP_BATCH]


def _current(client: FhirClient, batch: tuple[str, list[str]]) -> dict[str, dict[str, Any]]:
    """What ``Type?_id=a,b,...`` returns of those ids, by reference; nothing when the search fails."""
    rtype, ids = batch
    wanted, found = set(ids), {}
    if client.polite.tripped:
        return found
    try:
        for resource in iterate_search(client, rtype, {"_id": ",".join(ids), "_count": str(len(ids))},
                                       max_pages=len(ids)):
            if resource.get("resourceType") == rtype and resource.get("id") in wanted:
                found[f"{rtype}/{resource['id']}"] = resource
    except (httpx.HTTPError, RuntimeError):
        return {}
    return found


@dataclass
class CleanUp:
    """What clean-up did, and what it could not remove (reference -> why)."""

    deleted: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)      # teams whose responsibilities were dropped
    cancelled: list[str] = field(default_factory=list)
    left_behind: dict[str, str] = field(default_factory=dict)
    delete_refused: set[str] = field(default_factory=set)   # types whose DELETE answered 405 (not tried again)

    def problems(self) -> list[str]:
        return [f"could not remove {ref}: {why}" for ref, why in self.left_behind.items()]

    def as_dict(self) -> dict[str, Any]:
        return {"deleted": len(self.deleted), "released": len(self.released), "cancelled": len(self.cancelled),
                "left_behind": [{"reference": ref, "why": why} for ref, why in self.left_behind.items()]}
