"""Before any check: is the target reachable, is it a FHIR server, does it take our credentials?

Each of these is a property of the *setup*, not a departure of the server, so a bad
answer ends the run with its own verdict (SPEC §0, §6) instead of failing every check:

- no answer at all: exit 3 (unreachable);
- ``GET [base]/metadata`` is not a CapabilityStatement: exit 3 (not a FHIR server);
- the token (or the client credentials) is refused on a read every profile needs: exit 2;
- an https target that speaks only TLS below 1.2 (which the suite's client refuses): BULK-TLS
  fails, exit 1, and nothing else is sent.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
from pathlib import Path

import httpx

from . import smart
from .http import AuthError, json_or_none
from .results import EXIT_BROKEN, EXIT_USAGE, RunVerdict, not_fhir, tls_too_old, token_refused
from .rules.catalogue import catalogue
from .session import ConformanceRun
from .options import Settings

PROBE_ORDER = ("Group", "Patient", "Practitioner", "Task")


def _metadata_problem(response: httpx.Response) -> str | None:
    content_type = response.headers.get("content-type", "").split(";")[0] or "no Content-Type"
    if response.status_code != 200:
        return f"answered HTTP {response.status_code} ({content_type})"
    body = json_or_none(response)
    if not isinstance(body, dict):
        return f"answered 200 with a body that is not JSON ({content_type})"
    if body.get("resourceType") != "CapabilityStatement":
        return f"answered 200 with a {body.get('resourceType') or 'JSON document without resourceType'}"
    return None


def probe_path(run: ConformanceRun) -> str | None:
    """A read every selected profile needs: a search (or read) on the first declared resource."""
    caps = run.capabilities
    declared = [t for t in PROBE_ORDER if t in caps.resources] + sorted(set(caps.resources) - set(PROBE_ORDER))
    for rtype in declared:
        if "search-type" in caps.interactions(rtype):
            return f"{rtype}?_count=1"
    for rtype in declared:
        if "read" in caps.interactions(rtype):
            return f"{rtype}/fhirck-preflight-no-such-id"
    return None


def check_target(settings: Settings) -> RunVerdict | None:
    """None when the run may start, else the verdict that ends it."""
    run = ConformanceRun(settings)
    try:
        from .http import TokenSource

        try:
            response = run.new_client(TokenSource(None)).get("metadata", auth=False)
        except httpx.HTTPError as exc:      # TargetError: already one line, in the reader's terms
            return _old_tls(run) or RunVerdict(EXIT_BROKEN, "UNREACHABLE",
                                               f"target unreachable: {settings.target}: {exc}")
        except (OSError, ValueError) as exc:   # unreadable CA bundle / client certificate
            return RunVerdict(EXIT_BROKEN, "UNREACHABLE", f"{settings.target}: TLS setup failed: {exc}")
        problem = _metadata_problem(response)
        if problem:
            return not_fhir(f"GET {run.target}/metadata", problem)
        path = probe_path(run)
        if path is None:
            return None
        has_credentials = bool(settings.token or settings.client_id)
        try:
            answer = run.client.get(path)
        except AuthError as exc:
            return RunVerdict(EXIT_USAGE, "TOKEN REFUSED", run.redact(f"could not obtain a token: {exc}"))
        except httpx.HTTPError:
            return None          # a misbehaving answer: the checks meet it and report it as errors
        if answer.status_code in (401, 403):
            return token_refused(answer.status_code, f"GET {run.target}/{path}", has_credentials)
        return None
    finally:
        if "http" in run.__dict__:
            run.http.close()


def _old_tls(run: ConformanceRun) -> RunVerdict | None:
    """Why an https target the suite's client could not talk to is not just unreachable: it answers
    a handshake, but only in a TLS version below 1.2, which the client refuses (BULK-TLS)."""
    if not run.target.startswith("https://"):
        return None
    try:
        version = smart.negotiated_tls(run, run.target)
    except (ssl.SSLError, OSError):
        return None             # no handshake at all: unreachable, with the client's own reason
    return None if smart.tls_is_modern(version) else tls_too_old(smart.origin(run.target), version)


def write_stopped_summary(settings: Settings, verdict: RunVerdict) -> None:
    """A summary.json for a run that ended before any check (CI reads it like any other)."""
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    summary = {
        "target": settings.target, "started": now, "finished": now, "seed": settings.seed,
        "exit_code": verdict.exit_code, "verdict": verdict.as_dict(), "profiles": {}, "checks": [],
        "requirements": [{"id": r.id, "profile": r.profile, "strength": r.strength, "source": r.source,
                          "statement": r.statement, "checks": [], "reason": verdict.reason,
                          "verdict": "fail" if r.id == verdict.failed_requirement else "untested"}
                         for r in catalogue().values()],
    }
    out = Path(settings.report_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
