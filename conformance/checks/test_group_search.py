"""Group search and paging, checked against a corpus of groups this run creates.

Expectations are computed from the corpus itself, so the checks hold on a shared
server full of other groups: id-scoped searches must match exactly, open searches
must include ours and contain nothing that breaks the filter.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance.rules.model import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX
from conformance.rules.group import PATIENT_GROUP, PATIENT_GROUP_TYPE, TEAM, TEAM_TYPE, group_body
from conformance.client import FhirClient, json_or_none
from conformance.expectations import expect_created, expect_error, last_exchange
from conformance.markers import check, needs, profile
from conformance.target import bundle_resources, next_link
from conformance.verdicts import expect

pytestmark = [profile("canvas"), needs("Group", interaction="search-type")]
TEAMS, PATIENT_GROUPS = 5, 7


@dataclass
class Corpus:
    prefix: str
    groups: dict[str, dict[str, Any]]      # id -> body sent

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(f"Corpus({self.prefix!r}, {len(self.groups)} groups)")

    def ids(self, type_: str | None = None) -> set[str]:
        return {gid for gid, g in self.groups.items() if type_ is None or g["type"] == type_}

    def with_member(self, reference: str) -> set[str]:
        return {gid for gid, g in self.groups.items()
                if reference in {m["entity"]["reference"] for m in g.get("member", [])}}


@pytest.fixture(scope="module")
def corpus(groups, target_data, fhir) -> Corpus:
    prefix = f"{target_data.run_prefix} srch{secrets.token_hex(3)}"
    made: dict[str, dict[str, Any]] = {}
    plan = [(TEAM, target_data.practitioner_ids)] * TEAMS + [(PATIENT_GROUP, target_data.patient_ids)] * PATIENT_GROUPS
    for i, (variant, ids) in enumerate(plan):
        body = group_body(variant, f"{prefix} {i:02d}", sorted(ids)[: 1 + i % 3] if ids else [])
        response, gid = groups.create(body)
        gid = expect_created(fhir, response, "Group", "FHIR-CREATE-201", f"create search corpus group {i}")
        made[gid] = body
    return Corpus(prefix, made)


def search_all(fhir: FhirClient, params: dict[str, Any], requirement: str, *, via_post: bool = False,
               max_pages: int = 30) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Resources over every page, and the Bundles seen (checking each is a searchset)."""
    response = fhir.search("Group", params, via_post=via_post)
    bundles, resources = [], []
    for _ in range(max_pages):
        ex = last_exchange(fhir)
        expect(requirement, response.status_code == 200, f"search {params} answered {response.status_code}", ex)
        body = json_or_none(response)
        expect("FHIR-SEARCH-BUNDLE", isinstance(body, dict) and body.get("resourceType") == "Bundle"
               and body.get("type") == "searchset" and isinstance(body.get("total"), int),
               f"search {params} did not answer a searchset Bundle with total", ex)
        page = bundle_resources(body)
        expect("FHIR-SEARCH-BUNDLE", all(r.get("resourceType") == "Group" for r in page),
               f"search {params} returned entries that are not Groups", ex)
        bundles.append(body)
        resources += page
        link = next_link(body)
        if not link:
            break
        response = fhir.get(link)
    return resources, bundles


def ids_of(resources: list[dict[str, Any]]) -> set[str]:
    return {r.get("id") for r in resources}


@check("group-search-id", "CANVAS-GROUP-SEARCH-ID", "FHIR-SEARCH-BUNDLE")
@needs("Group", search_param="_id")
@given(data=st.data())
def test_search_by_id(data, corpus, fhir):
    chosen = data.draw(st.lists(st.sampled_from(sorted(corpus.groups)), min_size=1, max_size=5, unique=True))
    found, _ = search_all(fhir, {"_id": ",".join(chosen)}, "CANVAS-GROUP-SEARCH-ID")
    expect("CANVAS-GROUP-SEARCH-ID", ids_of(found) == set(chosen),
           f"_id={','.join(chosen)} returned {sorted(ids_of(found))}", last_exchange(fhir))


@check("group-search-type", "CANVAS-GROUP-SEARCH-TYPE")
@needs("Group", search_param="type")
@pytest.mark.parametrize("type_", [TEAM_TYPE, PATIENT_GROUP_TYPE])
def test_search_by_type(type_, corpus, fhir):
    found, _ = search_all(fhir, {"_id": ",".join(sorted(corpus.groups)), "type": type_, "_count": 100},
                          "CANVAS-GROUP-SEARCH-TYPE")
    expect("CANVAS-GROUP-SEARCH-TYPE", ids_of(found) == corpus.ids(type_),
           f"type={type_} among the corpus returned {sorted(ids_of(found))}, expected {sorted(corpus.ids(type_))}",
           last_exchange(fhir))
    response = fhir.search("Group", {"type": type_, "_count": 50})
    page = bundle_resources(json_or_none(response))
    wrong = [g.get("id") for g in page if g.get("type") != type_]
    expect("CANVAS-GROUP-SEARCH-TYPE", not wrong, f"type={type_} returned groups of another type: {wrong}",
           last_exchange(fhir))


@check("group-search-name", "CANVAS-GROUP-SEARCH-NAME")
@needs("Group", search_param="name")
def test_search_by_name(corpus, fhir):
    for value in (corpus.prefix, corpus.prefix.upper()):
        found, _ = search_all(fhir, {"name": value, "_count": 100}, "CANVAS-GROUP-SEARCH-NAME")
        expect("CANVAS-GROUP-SEARCH-NAME", ids_of(found) == set(corpus.groups),
               f"name={value!r} returned {len(found)} groups, expected the {len(corpus.groups)} named so",
               last_exchange(fhir))


@check("group-search-member", "CANVAS-GROUP-SEARCH-MEMBER")
@needs("Group", search_param="member")
def test_search_by_member(corpus, fhir):
    references = sorted({m["entity"]["reference"] for g in corpus.groups.values() for m in g.get("member", [])})
    if not references:
        pytest.skip("the corpus has no members (no Patient or Practitioner found on the target)")
    for reference in (references[0], references[-1]):
        found, _ = search_all(fhir, {"member": reference, "_count": 100}, "CANVAS-GROUP-SEARCH-MEMBER")
        ex = last_exchange(fhir)
        missing = corpus.with_member(reference) - ids_of(found)
        expect("CANVAS-GROUP-SEARCH-MEMBER", not missing, f"member={reference} missed groups {sorted(missing)}", ex)
        wrong = [g.get("id") for g in found
                 if reference not in {((m or {}).get("entity") or {}).get("reference") for m in g.get("member", [])}]
        expect("CANVAS-GROUP-SEARCH-MEMBER", not wrong, f"member={reference} returned groups without it: {wrong}", ex)


@profile("fhir-core")
@check("group-search-paging", "FHIR-SEARCH-PAGING", "FHIR-SEARCH-COUNT")
@needs("Group", search_param="_id")
@given(count=st.integers(min_value=1, max_value=13))
def test_paging_links_are_consistent(count, corpus, fhir):
    ids = sorted(corpus.groups)
    params = {"_id": ",".join(ids), "_count": count}
    found, bundles = search_all(fhir, params, "FHIR-SEARCH-PAGING")
    ex = last_exchange(fhir)
    expected_pages = -(-len(ids) // count)
    sizes = [len(bundle_resources(b)) for b in bundles]
    expect("FHIR-SEARCH-COUNT", sizes[0] == min(count, len(ids)) and max(sizes) <= count,
           f"_count={count} gave pages of {sizes}", ex)
    expect("FHIR-SEARCH-PAGING", next_link(bundles[-1]) is None and len(bundles) == expected_pages,
           f"{len(ids)} results with _count={count}: expected {expected_pages} pages, walked {len(bundles)} "
           f"of sizes {sizes}", ex)
    expect("FHIR-SEARCH-PAGING", len(found) == len(ids_of(found)) and ids_of(found) == set(ids),
           f"pages repeat or miss results: {len(found)} entries, {len(ids_of(found))} distinct of {len(ids)}", ex)
    expect("FHIR-SEARCH-PAGING", all(b.get("total") == len(ids) for b in bundles),
           f"total differs across pages: {[b.get('total') for b in bundles]}", ex)
    for b in bundles:
        relations = {link.get("relation") for link in b.get("link", []) or []}
        expect("FHIR-SEARCH-PAGING", {"self", "first"} <= relations,
               f"a page lacks self/first links: {sorted(r for r in relations if r)}", ex)


@check("group-search-count-default", "FHIR-SEARCH-COUNT")
@needs("Group", search_param="_id")
def test_default_and_maximum_page_size(corpus, fhir):
    ids = sorted(corpus.groups)
    response = fhir.search("Group", {"_id": ",".join(ids)})
    page = bundle_resources(json_or_none(response))
    expect("FHIR-SEARCH-COUNT", len(page) == min(PAGE_SIZE_DEFAULT, len(ids)),
           f"without _count a search for {len(ids)} groups returned {len(page)} on the first page "
           f"(default {PAGE_SIZE_DEFAULT})",
           last_exchange(fhir))
    response = fhir.search("Group", {"_count": 1000})
    page = bundle_resources(json_or_none(response))
    expect("FHIR-SEARCH-COUNT", response.status_code == 200 and len(page) <= PAGE_SIZE_MAX,
           f"_count=1000 answered {response.status_code} with {len(page)} entries (at most {PAGE_SIZE_MAX})",
           last_exchange(fhir))


@profile("fhir-core")
@check("group-search-empty", "FHIR-SEARCH-PAGING", "FHIR-SEARCH-BUNDLE")
@needs("Group", search_param="_id")
def test_empty_result_has_no_links(fhir, target_data):
    response = fhir.search("Group", {"_id": target_data.missing_id()})
    body = json_or_none(response)
    ex = last_exchange(fhir)
    expect("FHIR-SEARCH-BUNDLE", response.status_code == 200 and isinstance(body, dict)
           and body.get("total") == 0 and not bundle_resources(body),
           f"a search matching nothing answered {response.status_code} total={(body or {}).get('total')}", ex)
    expect("FHIR-SEARCH-PAGING", not (body or {}).get("link"), "an empty result carries links", ex)


@profile("fhir-core")
@check("group-search-post", "FHIR-SEARCH-POST")
@needs("Group", search_param="_id")
@given(data=st.data())
def test_post_search_matches_get(data, corpus, fhir):
    chosen = data.draw(st.lists(st.sampled_from(sorted(corpus.groups)), min_size=1, max_size=8, unique=True))
    params = {"_id": ",".join(chosen), "_count": data.draw(st.integers(1, 5))}
    if data.draw(st.booleans()):
        params["type"] = data.draw(st.sampled_from([PATIENT_GROUP_TYPE, TEAM_TYPE]))
    got, _ = search_all(fhir, params, "FHIR-SEARCH-POST")
    posted, _ = search_all(fhir, params, "FHIR-SEARCH-POST", via_post=True)
    expect("FHIR-SEARCH-POST", ids_of(posted) == ids_of(got) and len(posted) == len(got),
           f"POST _search {params} returned {sorted(ids_of(posted))}, GET returned {sorted(ids_of(got))}",
           last_exchange(fhir))


@check("group-search-invalid-value", "FHIR-SEARCH-INVALID", "FHIR-ERROR-OUTCOME")
@pytest.mark.parametrize("params", [{"type": "robot"}, {"_count": "many"}], ids=["type=robot", "_count=many"])
def test_invalid_parameter_value_is_400(params, fhir):
    response = fhir.search("Group", params)
    expect_error(fhir, response, "FHIR-SEARCH-INVALID", (400,), f"search with {params}")
