"""Unit tests of what the export and Practitioner-needing checks find or create on a target (issue 11):
the export group's choice, its settings, and the ledger's prerequisites. A fake client, no server."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import httpx

from conformance.checks.support.export import find_patient_group
from conformance.target import COHORT, EXPORT, Ledger, Supplier, TargetData


def _bundle(*groups: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset",
                                     "entry": [{"resource": g} for g in groups]})


class FakeClient:
    """Answers searches from a list and records writes; creates get ids c1, c2, ..."""

    def __init__(self, search: httpx.Response | None = None, delete_status: int = 204):
        self.answer, self.delete_status = search, delete_status
        self.posted: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.polite = SimpleNamespace(tripped=False, max_concurrency=1)    # never tripped; one request at a time

    def search(self, rtype: str, params: dict[str, Any]) -> httpx.Response:
        return self.answer

    def post(self, rtype: str, json_body: dict[str, Any]) -> httpx.Response:
        self.posted.append(json_body)
        return httpx.Response(201, headers={"Location": f"http://t/{rtype}/c{len(self.posted)}"})

    def delete(self, path: str) -> httpx.Response:
        self.deleted.append(path)
        return httpx.Response(self.delete_status)


def _group(gid: str, members: int = 0, quantity: int | None = None) -> dict[str, Any]:
    g: dict[str, Any] = {"resourceType": "Group", "id": gid, "type": "person"}
    if members:
        g["member"] = [{"entity": {"reference": f"Patient/{gid}-{i}"}} for i in range(members)]
    if quantity is not None:
        g["quantity"] = quantity
    return g


def test_a_group_listing_members_is_preferred_over_a_larger_quantity():
    chosen = find_patient_group(FakeClient(_bundle(_group("big", quantity=900), _group("listed", 2, 2))))
    assert chosen.id == "listed" and chosen.listed and chosen.patient_ids == {"listed-0", "listed-1"}
    assert "Group/listed (2 listed members" in chosen.describe()


def test_without_member_lists_the_largest_quantity_is_chosen_and_said():
    chosen = find_patient_group(FakeClient(_bundle(_group("a", quantity=3), _group("b", quantity=40),
                                                   _group("c"))))
    assert chosen.id == "b" and not chosen.listed and chosen.quantity == 40
    assert "quantity 40, members not listed" in chosen.describe() and "largest quantity" in chosen.describe()
    assert find_patient_group(FakeClient(_bundle(_group("empty"), _group("zero", quantity=0)))) is None


def test_missing_practitioners_are_created_with_the_prefix_and_deleted_where_declared():
    client, ledger, data = FakeClient(), Ledger(), TargetData("fhirck-t", practitioner_ids=["p0"])
    supply = Supplier(client, ledger, lambda rtype: {"read", "create", "delete"}, data)
    assert supply("practitioners", 3) is None
    assert data.practitioner_ids == ["p0", "c1", "c2"]
    assert all(b["name"][0]["family"] == "fhirck-t" for b in client.posted)
    outcome = ledger.clean_up(client, can_delete=lambda rtype: True)
    assert outcome.left_behind == {} and client.deleted == ["Practitioner/c2", "Practitioner/c1"]
    assert outcome.deleted == ["Practitioner/c2", "Practitioner/c1"]


def test_without_create_the_reason_is_given_and_without_delete_what_stays_is_named():
    data = TargetData("fhirck-t")
    reason = Supplier(FakeClient(), Ledger(), lambda rtype: {"read"}, data)("patients", 1)
    assert reason and "does not declare create on Patient" in reason and data.patient_ids == []
    client, ledger = FakeClient(), Ledger()
    assert Supplier(client, ledger, lambda rtype: {"create"}, data)("patients", 1) is None
    outcome = ledger.clean_up(client, can_delete=lambda rtype: False)
    assert client.deleted == [] and "does not declare delete on Patient" in outcome.left_behind["Patient/c1"]


class SlowDeletes(FakeClient):
    """DELETEs that take a while, counting how many are in flight at once."""

    def __init__(self, concurrency: int):
        super().__init__()
        self.polite = SimpleNamespace(tripped=False, max_concurrency=concurrency)
        self.in_flight = self.most_in_flight = 0
        self.lock = threading.Lock()

    def delete(self, path: str) -> httpx.Response:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        threading.Event().wait(0.02)
        with self.lock:
            self.in_flight -= 1
        return super().delete(path)


def test_clean_up_sends_up_to_the_concurrency_cap_and_removes_teams_before_their_prerequisites():
    client, ledger = SlowDeletes(concurrency=3), Ledger()
    for i in range(9):
        ledger.created_group(f"g{i}", {"resourceType": "Group"})
    for i in range(6):
        ledger.created_resource("Practitioner", f"p{i}")
    outcome = ledger.clean_up(client, can_delete=lambda rtype: True)
    assert outcome.left_behind == {} and len(outcome.deleted) == 15
    assert 1 < client.most_in_flight <= 3          # several at once, never more than the cap
    kinds = [path.split("/")[0] for path in client.deleted]
    assert kinds == ["Group"] * 9 + ["Practitioner"] * 6     # a phase ends before the next begins


class GroupServer(FakeClient):
    """Teams that cannot be deleted (405) and answer ``_id`` searches; counts what clean-up sends."""

    def __init__(self, groups: dict[str, dict[str, Any]], id_search: bool = True):
        super().__init__(delete_status=405)
        self.groups, self.id_search = groups, id_search
        self.reads: list[str] = []
        self.searches: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []

    def search(self, rtype: str, params: dict[str, Any]) -> httpx.Response:
        self.searches.append(params)
        ids = params["_id"].split(",")
        return _bundle(*(self.groups[i] for i in ids if i in self.groups and self.id_search))

    def read(self, rtype: str, rid: str) -> httpx.Response:
        self.reads.append(rid)
        return httpx.Response(200, json=self.groups[rid])

    def update(self, body: dict[str, Any], rid: str) -> httpx.Response:
        self.updates.append(body)
        self.groups[rid] = body
        return httpx.Response(200, json=body)


def _team(gid: str, holds: bool) -> dict[str, Any]:
    team = {"resourceType": "Group", "id": gid, "type": "practitioner", "actual": True, "name": gid}
    if holds:
        team["characteristic"] = [{"code": {"text": "responsibility"}, "valueCodeableConcept": {"text": "x"},
                                   "exclude": False}]
    return team


def test_clean_up_learns_the_teams_by_id_searches_and_stops_deleting_after_405():
    teams = {f"g{i}": _team(f"g{i}", holds=i % 10 == 0) for i in range(120)}
    client, ledger = GroupServer(dict(teams)), Ledger()
    for gid, team in teams.items():
        ledger.created_group(gid, team)
    outcome = ledger.clean_up(client, can_delete=lambda rtype: True, can_search_ids=lambda rtype: True)
    assert outcome.left_behind == {} and sorted(outcome.released) == sorted(f"Group/g{i}" for i in range(0, 120, 10))
    assert len(client.searches) == 3 and all(len(p["_id"].split(",")) <= 50 for p in client.searches)
    assert client.reads == []                           # what each team is now came from the searches
    assert len(client.deleted) == 1                     # one 405 says it: no DELETE for the other 119
    assert not any(g.get("characteristic") for g in client.groups.values())


def test_clean_up_reads_what_the_searches_did_not_return():
    teams = {f"g{i}": _team(f"g{i}", holds=True) for i in range(3)}
    client, ledger = GroupServer(dict(teams), id_search=False), Ledger()
    for gid, team in teams.items():
        ledger.created_group(gid, team)
    outcome = ledger.clean_up(client, can_delete=lambda rtype: False, can_search_ids=lambda rtype: True)
    assert sorted(client.reads) == ["g0", "g1", "g2"] and len(outcome.released) == 3 and outcome.left_behind == {}


class DeleteOnly(FakeClient):
    """Answers DELETE by path from a table (default 202)."""

    def __init__(self, answers: dict[str, int]):
        super().__init__()
        self.answers = answers

    def request(self, method: str, path: str) -> httpx.Response:
        assert method == "DELETE"
        self.deleted.append(path)
        return httpx.Response(self.answers.get(path, 202))


def test_clean_up_deletes_the_exports_and_cohorts_the_run_left_open():
    ledger = Ledger()
    for url in ("http://t/bulk/1", "http://t/bulk/2", "http://t/bulk/3"):
        ledger.delete_at_end(EXPORT, url)
    ledger.deleted(EXPORT, "http://t/bulk/3")           # a check deleted it already
    for gid in ("c1", "c2", "c3"):
        ledger.delete_at_end(COHORT, f"Group/{gid}")
    client = DeleteOnly({"http://t/bulk/2": 404, "Group/c2": 405, "Group/c3": 500})
    outcome = ledger.clean_up(client, can_delete=lambda rtype: True)
    assert sorted(client.deleted) == ["Group/c1", "Group/c2", "Group/c3", "http://t/bulk/1", "http://t/bulk/2"]
    assert sorted(outcome.deleted) == ["cohort Group/c1", "export http://t/bulk/1"]
    # gone already (404) and cohorts the target cannot delete (405, optional in the IG) are not problems
    assert outcome.left_behind == {"cohort Group/c3": "DELETE answered HTTP 500"}
    assert outcome.problems() == ["could not remove cohort Group/c3: DELETE answered HTTP 500"]
