"""Unit tests of what the export and Practitioner-needing checks find or create on a target (issue 11):
the export group's choice, its settings, and the ledger's prerequisites. A fake client, no server."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx

from conformance.checks.support.export import find_patient_group
from conformance.target import Ledger, Supplier, TargetData


def _bundle(*groups: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset",
                                     "entry": [{"resource": g} for g in groups]})


class FakeClient:
    """Answers searches from a list and records writes; creates get ids c1, c2, ..."""

    def __init__(self, search: httpx.Response | None = None, delete_status: int = 204):
        self.answer, self.delete_status = search, delete_status
        self.posted: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.polite = SimpleNamespace(tripped=False)    # the client's circuit breaker: never tripped here

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
