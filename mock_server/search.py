"""Search: parse and validate parameters, compile them to SQL, page, and build the Bundle.

Pluggable: a ``SearchParam`` may bring its own ``compile`` (Task's columns, dates, _sort)
and ``run`` its own ``page`` (Task's own index table); everything else — _count/_offset,
unknown parameters, modifiers, closed value sets, paging links — is decided here once.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, request

from . import limits, db
from .auth import requires
from .deviations import deviates
from .http import FhirError
from .urls import base_url

MAX_OFFSET = 2**62  # beyond any table; keeps SQLite's 64-bit OFFSET from overflowing


Compiler = Callable[["Query", str, list[str]], None]   # (query, modifier, values): adds clauses
View = Callable[[sqlite3.Connection, db.Row, str], dict[str, Any]]   # (conn, row, base URL): the resource


@dataclass(frozen=True)
class SearchParam:
    """One supported parameter; ``kind`` picks the SQL (unless ``compile`` is given), ``fhir_type``
    goes into metadata; ``allowed`` is a closed value set (anything else: 400)."""

    name: str
    kind: str  # "id" | "token" | "string" (generic SQL), or what a custom compiler handles
    fhir_type: str
    allowed: Optional[tuple[str, ...]] = None
    compile: Optional[Compiler] = None

    @property
    def modifiers(self) -> frozenset[str]:
        return frozenset({"exact", "contains"}) if self.kind == "string" else frozenset()


def capability(params: Sequence[SearchParam]) -> tuple[tuple[str, str], ...]:
    """(name, FHIR type) pairs for the CapabilityStatement (parameters starting with _sort are not searches)."""
    return tuple((p.name, p.fhir_type) for p in params if p.name != "_sort")


@dataclass
class Query:
    where: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)  # echoed in paging links
    count: int = 10
    offset: int = 0
    seen: set[tuple[str, tuple[Any, ...]]] = field(default_factory=set)
    order: list[str] = field(default_factory=list)  # ORDER BY terms a compiler adds (before creation order)

    def add(self, clause: str, args: list[Any]) -> None:
        """AND one clause; a repeat of an identical clause adds nothing (repeats cost no SQL)."""
        key = (clause, tuple(args))
        if key not in self.seen:
            self.seen.add(key)
            self.where.append(clause)
            self.args.extend(args)

    def condition(self) -> str:
        """The clauses ANDed as a balanced tree: SQLite's expression depth limit (1000) is never reached."""
        return all_of(self.where)


def all_of(clauses: Sequence[str]) -> str:
    if not clauses:
        return "1"
    if len(clauses) == 1:
        return clauses[0]
    half = len(clauses) // 2
    return f"({all_of(clauses[:half])}) AND ({all_of(clauses[half:])})"


def add_routes(bp: Blueprint, rtype: str, answer: Callable[[bool], Response]) -> None:
    """``GET [base]/<rtype>`` and ``POST [base]/<rtype>/_search`` (same result, SPEC §1), both needing
    the search scope; ``answer(post)`` builds the response."""

    @bp.get(f"/{rtype}")
    @requires(rtype, "search")
    def search_get() -> Response:
        return answer(False)

    @bp.post(f"/{rtype}/_search")
    @requires(rtype, "search")
    def search_post() -> Response:
        return answer(True)


def request_params(post_search: bool) -> list[tuple[str, str]]:
    """Query-string parameters, plus the form body of POST _search (merged; repeats kept)."""
    items = list(request.args.items(multi=True))
    if post_search and not deviates("post-search-ignores-body"):
        items += list(request.form.items(multi=True))
    return limits.check_params(items, "search")


def _non_negative(name: str, value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0 or not value.strip().lstrip("+").isdigit():
        raise FhirError(400, f"Invalid value for {name}: '{value}' (expected a non-negative integer)")
    return n


def parse(items: Iterable[tuple[str, str]], params: Sequence[SearchParam], ignored: frozenset[str] = frozenset()) -> Query:
    """Validate the request's parameters (unknown ones are dropped) into a Query."""
    config = current_app.config["MOCK"]
    by_name = {p.name: p for p in params}
    q = Query(count=config.page_default)
    for key, value in items:
        name, _, modifier = key.partition(":")
        if name == "_count":
            q.count = min(_non_negative(name, value), config.page_max)
            continue
        if name == "_offset":
            q.offset = min(_non_negative(name, value), MAX_OFFSET)
            continue
        param = by_name.get(name)
        if param is None:
            continue  # unknown parameters are ignored (lenient handling) and left out of links
        if modifier and modifier not in param.modifiers:
            raise FhirError(400, f"Unsupported modifier '{key}'")
        values = [v for v in value.split(",") if v]
        if not values:
            continue  # FHIR: a parameter with an empty value is ignored
        if param.allowed is not None:
            bad = [v for v in values if v not in param.allowed]
            if bad:
                raise FhirError(400, f"Invalid value for {name}: '{bad[0]}' (expected one of {', '.join(param.allowed)})")
        q.used.append((key, value))
        if name not in ignored:
            if param.compile is not None:
                param.compile(q, modifier, values)
            else:
                _compile(q, param, modifier, values)
    if deviates("count-ignored"):
        q.count = config.page_default
    return q


def _like(text: str) -> str:
    """``text`` escaped for a LIKE pattern with ESCAPE '\\'."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def string_test(column: str, lower_column: str, modifier: str, values: list[str]) -> tuple[str, list[str]]:
    """FHIR string matching on a column: prefix, case-insensitive (default), ``:exact`` or ``:contains``."""
    if modifier == "exact":
        test, args = f"{column} = ?", values
    elif modifier == "contains":
        test, args = f"{lower_column} LIKE ? ESCAPE '\\'", [f"%{_like(v.lower())}%" for v in values]
    else:
        test, args = f"{lower_column} LIKE ? ESCAPE '\\'", [f"{_like(v.lower())}%" for v in values]
    return " OR ".join([f"({test})"] * len(values)), args


def _compile(q: Query, param: SearchParam, modifier: str, values: list[str]) -> None:
    marks = ", ".join("?" * len(values))
    if param.kind == "id":
        q.add(f"r.id IN ({marks})", values)
    elif param.kind == "token":
        q.add("EXISTS (SELECT 1 FROM search_token t WHERE t.rtype = r.rtype AND t.id = r.id"
              f" AND t.param = ? AND t.value IN ({marks}))", [param.name, *values])
    else:
        ors, args = string_test("s.value", "s.value_lower", modifier, values)
        q.add("EXISTS (SELECT 1 FROM search_string s WHERE s.rtype = r.rtype AND s.id = r.id"
              f" AND s.param = ? AND ({ors}))", [param.name, *args])


Page = Callable[[sqlite3.Connection, str, Query], tuple[int, list[db.Row]]]


def resource_page(conn: sqlite3.Connection, rtype: str, q: Query) -> tuple[int, list[db.Row]]:
    """The generic page: the resource table and its search index, in creation order."""
    return db.page(conn, rtype, [q.condition()] if q.where else [], q.args, q.count, q.offset)


def run(rtype: str, q: Query, view: View, page: Page = resource_page) -> dict[str, Any]:
    """Execute the query and wrap one page into a searchset Bundle (one read transaction)."""
    base = base_url()
    with db.get_store().read() as conn:
        total, rows = page(conn, rtype, q)
        resources = [view(conn, row, base) for row in rows]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": total}
    links = _links(f"{base}/{rtype}", q, total)
    if links:
        bundle["link"] = links
    if resources:
        bundle["entry"] = [
            {"fullUrl": f"{base}/{rtype}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in resources
        ]
    return bundle


def _links(url: str, q: Query, total: int) -> list[dict[str, str]]:
    if total == 0:
        return []

    def link(relation: str, offset: int) -> dict[str, str]:
        query = urlencode([*q.used, ("_count", str(q.count)), ("_offset", str(offset))])
        return {"relation": relation, "url": f"{url}?{query}"}

    size = q.count
    last = ((total - 1) // size) * size if size else 0
    links = [link("self", q.offset), link("first", 0)]
    if q.offset > 0 and size:
        links.append(link("previous", max(0, min(q.offset - size, last))))
    if size and q.offset + size < total:
        links.append(link("next", q.offset + size))
    elif size and deviates("paging-next-on-last-page"):
        links.append(link("next", q.offset + size))
    links.append(link("last", last))
    return links
