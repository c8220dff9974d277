"""Search parameters: parse and validate, compile to SQL clauses, page, and build the Bundle."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlencode

from flask import current_app, request

from . import limits, db
from .deviations import deviates
from .http import FhirError
from .urls import base_url

MAX_OFFSET = 2**62  # beyond any table; keeps SQLite's 64-bit OFFSET from overflowing


@dataclass(frozen=True)
class SearchParam:
    """One supported parameter; ``kind`` picks the SQL, ``fhir_type`` goes into metadata."""

    name: str
    kind: str  # "id" | "token" | "string"
    fhir_type: str
    allowed: frozenset[str] | None = None  # closed value set for tokens (else 400)

    @property
    def modifiers(self) -> frozenset[str]:
        return frozenset({"exact", "contains"}) if self.kind == "string" else frozenset()


@dataclass
class Query:
    where: list[str] = field(default_factory=list)
    args: list[Any] = field(default_factory=list)
    used: list[tuple[str, str]] = field(default_factory=list)  # echoed in paging links
    count: int = 10
    offset: int = 0
    seen: set[tuple[str, tuple[Any, ...]]] = field(default_factory=set)

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


def request_params(post_search: bool) -> list[tuple[str, str]]:
    """Query-string parameters, plus the form body of POST _search (merged; repeats kept)."""
    items = list(request.args.items(multi=True))
    if post_search and not deviates("post-search-ignores-body"):
        items += list(request.form.items(multi=True))
    return limits.check_params(items, "search")


def _int(name: str, value: str) -> int:
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
            q.count = min(_int(name, value), config.page_max)
            continue
        if name == "_offset":
            q.offset = min(_int(name, value), MAX_OFFSET)
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
                raise FhirError(400, f"Invalid value for {name}: '{bad[0]}' (expected one of {', '.join(sorted(param.allowed))})")
        q.used.append((key, value))
        if name not in ignored:
            _compile(q, param, modifier, values)
    if deviates("count-ignored"):
        q.count = config.page_default
    return q


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _compile(q: Query, param: SearchParam, modifier: str, values: list[str]) -> None:
    marks = ", ".join("?" * len(values))
    if param.kind == "id":
        q.add(f"r.id IN ({marks})", values)
    elif param.kind == "token":
        q.add("EXISTS (SELECT 1 FROM search_token t WHERE t.rtype = r.rtype AND t.id = r.id"
              f" AND t.param = ? AND t.value IN ({marks}))", [param.name, *values])
    else:
        if modifier == "exact":
            test, args = "s.value = ?", values
        elif modifier == "contains":
            test, args = "s.value_lower LIKE ? ESCAPE '\\'", [f"%{_like(v.lower())}%" for v in values]
        else:
            test, args = "s.value_lower LIKE ? ESCAPE '\\'", [f"{_like(v.lower())}%" for v in values]
        ors = " OR ".join([f"({test})"] * len(values))
        q.add("EXISTS (SELECT 1 FROM search_string s WHERE s.rtype = r.rtype AND s.id = r.id"
              f" AND s.param = ? AND ({ors}))", [param.name, *args])


def run(rtype: str, q: Query, render: Callable[[db.Row], dict[str, Any]]) -> dict[str, Any]:
    """Execute the query in SQL and wrap one page into a searchset Bundle."""
    with db.get_store().read() as conn:
        total, rows = db.page(conn, rtype, [q.condition()] if q.where else [], q.args, q.count, q.offset)
        resources = [render(row) for row in rows]
    base = base_url()
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
