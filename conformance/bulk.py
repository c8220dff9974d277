"""The Bulk Data export flow as a client sees it: kick-off, polling, downloads, cancel.

Built on ``FhirClient`` alone: kick-offs, polls and deletes are ``request``s, downloads are
``stream``s (a file of any size is checked line by line without being held in memory); all
of them take the one path of ``conformance.http`` (auth and token refresh, rate limit,
concurrency cap, 429 handling, circuit breaker, deadline, recording).

Polling obeys ``Retry-After`` (seconds or HTTP-date), backs off exponentially when it is
absent, retries a 5xx whose OperationOutcome says ``transient``, and gives up after the
configured timeout with :class:`ExportTimeout` (a clear error, never a hang). Every status
URL this client obtains is remembered until it is deleted; :meth:`BulkClient.cleanup`
deletes what is left.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping

import httpx

from .http import Exchange, FhirClient, judge_retry_after, json_or_none, retry_after_seconds  # noqa: F401 (re-exported)
from .rules.bulk_export import NDJSON, PATIENT_REFERENCE_FIELDS
from .target import EXPORT, Ledger
from .validation import ValidationLog

FIRST_POLL = 0.0
MIN_POLL = 0.05         # Retry-After: 0 means 'now'; a short pause keeps polling from spinning
BACKOFF_START, BACKOFF_MAX = 0.5, 10.0
PROBLEMS_KEPT = 3


class ExportTimeout(RuntimeError):
    """The export did not finish within the configured time: the suite cannot conclude."""


def is_transient(body: Any) -> bool:
    return isinstance(body, dict) and any(
        isinstance(i, dict) and i.get("code") in ("transient", "throttled", "timeout", "lock-wait")
        for i in body.get("issue", []) or [])


def parameters_body(pairs: Iterable[tuple[str, str, str]]) -> dict[str, Any]:
    """A Parameters resource from (name, value[x] key, value) triples."""
    params = []
    for name, key, value in pairs:
        params.append({"name": name, key: {"reference": value} if key == "valueReference" else value})
    return {"resourceType": "Parameters", "parameter": params}


@dataclass
class Poll:
    status: int
    retry_after: str | None
    progress: str | None


@dataclass
class PollResult:
    """How polling ended: ``complete`` (200), ``failed`` (an error answer that is not transient)."""

    outcome: str
    response: httpx.Response
    exchange: Exchange | None
    polls: list[Poll] = field(default_factory=list)

    @property
    def manifest(self) -> Any:
        return json_or_none(self.response) if self.outcome == "complete" else None


@dataclass
class FileResult:
    """One downloaded output file: its answer, and every line checked."""

    type: str
    url: str
    status: int | None
    content_type: str
    exchange: Exchange | None
    lines: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    ids: set[str] = field(default_factory=set)
    patient_refs: list[tuple[str, str]] = field(default_factory=list)   # (resource id, Patient id referenced)
    last_updated: list[tuple[str, str]] = field(default_factory=list)   # (resource id, meta.lastUpdated)
    subsetted: int = 0
    types_seen: set[str] = field(default_factory=set)
    validity: ValidationLog = field(default_factory=ValidationLog)      # the first N lines' problems

    def problem(self, line: int, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < PROBLEMS_KEPT:
            self.problems.append(f"line {line}: {message}")

    def summary(self) -> str:
        more = f" (and {self.problem_count - len(self.problems)} more)" if self.problem_count > len(self.problems) else ""
        return f"{self.type} file {self.url}: {self.problem_count} problem(s) in {self.lines} lines: " \
               f"{'; '.join(self.problems)}{more}"


def patient_id_of(reference: str) -> str | None:
    parts = [p for p in reference.split("/") if p]
    if len(parts) >= 2 and parts[-2] == "Patient":
        return parts[-1]
    if "_history" in parts:
        i = parts.index("_history")
        if i >= 2 and parts[i - 2] == "Patient":
            return parts[i - 1]
    return None


class BulkClient:
    """The export flow against one target, on top of a recording FhirClient."""

    def __init__(self, fhir: FhirClient, timeout: float = 120.0, validate_lines: int = 5000,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 ledger: Ledger | None = None):
        self.fhir, self.timeout, self.validate_lines = fhir, timeout, validate_lines
        self.sleep, self.clock = sleep, clock
        self.ledger = ledger if ledger is not None else Ledger()    # the run's: clean-up deletes open exports

    def __repr__(self) -> str:
        return f"BulkClient({self.fhir.base_url!r})"

    # -- kick-off --------------------------------------------------------------------
    def kickoff(self, group_id: str | None, params: Any = None, *, parameters: dict[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, auth: bool = True,
                client: FhirClient | None = None, path: str | None = None) -> tuple[httpx.Response, str | None]:
        """GET (or POST with ``parameters``) [base]/Group/<id>/$export (or ``path``, e.g. ``Patient/$export``);
        returns the answer and status URL."""
        fhir = client or self.fhir
        all_headers = {"Accept": "application/fhir+json", "Prefer": "respond-async", **(headers or {})}
        path = path or f"Group/{group_id}/$export"
        if parameters is not None:
            response = fhir.request("POST", path, json_body=parameters, headers=all_headers, auth=auth)
        else:
            response = fhir.request("GET", path, params=params, headers=all_headers, auth=auth)
        location = response.headers.get("content-location") if response.status_code == 202 else None
        if location:
            self.ledger.delete_at_end(EXPORT, self.fhir.url(location))
        return response, location

    # -- status ----------------------------------------------------------------------
    def poll(self, status_url: str, timeout: float | None = None) -> PollResult:
        """Poll until complete or failed; ExportTimeout after ``timeout`` seconds."""
        limit = self.timeout if timeout is None else timeout
        started = self.clock()
        deadline = started + limit
        polls: list[Poll] = []
        wait, backoff = FIRST_POLL, BACKOFF_START
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                last = polls[-1] if polls else None
                detail = (f"last answer HTTP {last.status}, X-Progress {last.progress!r}" if last else "no answer")
                raise ExportTimeout(f"export at {status_url} did not complete within {limit:g} s "
                                    f"({len(polls)} polls; {detail}); raise --export-timeout for slow targets")
            self.sleep(min(wait, remaining))
            response = self.fhir.request("GET", status_url, headers={"Accept": "application/json"})
            exchange = self.fhir.recorder.last
            retry = response.headers.get("retry-after")
            polls.append(Poll(response.status_code, retry, response.headers.get("x-progress")))
            asked, problem = judge_retry_after(retry)
            self.fhir.polite.judged_retry_after(response, problem)   # an absurd value: reported, not obeyed
            if response.status_code == 200:
                return PollResult("complete", response, exchange, polls)
            if response.status_code in (202, 429) or (response.status_code >= 500
                                                      and is_transient(json_or_none(response))):
                if asked is not None:
                    wait = max(asked, MIN_POLL)
                else:
                    wait, backoff = backoff, min(backoff * 2, BACKOFF_MAX)
                continue
            return PollResult("failed", response, exchange, polls)

    def delete(self, status_url: str) -> httpx.Response:
        response = self.fhir.request("DELETE", status_url)
        if response.status_code < 300:
            self.ledger.deleted(EXPORT, self.fhir.url(status_url))
        return response

    # -- files -----------------------------------------------------------------------
    def download(self, rtype: str, url: str, *, auth: bool = True, check_lines: bool = True) -> FileResult:
        """Stream one output file; check every line (JSON, resourceType; R4 validity for the first N)."""
        result = FileResult(rtype, url, None, "", None)
        response = self.fhir.stream(url, accept=NDJSON, auth=auth)
        try:
            result.status = response.status_code
            result.content_type = response.headers.get("content-type", "")
            if response.status_code != 200 or not check_lines:
                preview = response.read()[:2000].decode("utf-8", "replace")
            else:
                for number, line in enumerate(response.iter_lines(), 1):
                    if line.strip():
                        self._check_line(result, number, line)
                preview = f"({result.lines} NDJSON lines streamed and checked)"
        finally:
            response.close()
        result.exchange = response.extensions.get("conformance.exchange")
        if result.exchange is not None:
            result.exchange.response_body = self.fhir.redact(preview)
        return result

    def resources(self, url: str) -> Iterator[dict[str, Any]]:
        """Every resource of one output file, streamed (for reading a population, not for checking it)."""
        response = self.fhir.stream(url, accept=NDJSON)
        try:
            if response.status_code != 200:
                raise RuntimeError(f"could not download {url}: HTTP {response.status_code}")
            for line in response.iter_lines():
                if line.strip():
                    resource = json.loads(line)
                    if isinstance(resource, dict):
                        yield resource
        finally:
            response.close()

    def _check_line(self, result: FileResult, number: int, line: str) -> None:
        result.lines += 1
        try:
            resource = json.loads(line)
        except ValueError as exc:
            result.problem(number, f"not JSON ({exc})")
            return
        if not isinstance(resource, dict):
            result.problem(number, "not a JSON object")
            return
        rtype = resource.get("resourceType")
        result.types_seen.add(str(rtype))
        if rtype != result.type:
            result.problem(number, f"resourceType {rtype!r} in the {result.type} file")
            return
        rid = resource.get("id")
        if not isinstance(rid, str) or not rid:
            result.problem(number, "no id")
            return
        if self.validate_lines == 0 or result.lines <= self.validate_lines:
            result.validity.check(resource, number)      # R4 JSON Schema + invariants (conformance.validation)
        result.ids.add(rid)
        meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
        if isinstance(meta.get("lastUpdated"), str):
            result.last_updated.append((rid, meta["lastUpdated"]))
        if any(isinstance(t, dict) and t.get("code") == "SUBSETTED" for t in meta.get("tag", []) or []):
            result.subsetted += 1
        if rtype != "Patient":
            for name in PATIENT_REFERENCE_FIELDS:
                ref = resource.get(name)
                if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
                    pid = patient_id_of(ref["reference"])
                    if pid is not None:
                        result.patient_refs.append((rid, pid))


def parse_instant(value: str) -> datetime | None:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
