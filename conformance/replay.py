"""``fhir-conformance replay REPORT_DIR --check ID``: re-send a failure's request sequence.

The steps come from the run's ``reproduction.json``; ids and status URLs the target
hands out now replace those of the run (see ``reproduce``). The failure "still occurs"
when the target answers the failing request with the same status as in the run; a
different status means the behaviour changed (re-run the check to judge it again).
The token is read from ``FHIR_CONFORMANCE_TOKEN``, never from the report.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx

from . import reproduce
from .http import FhirClient, TokenSource
from .results import EXIT_BROKEN, EXIT_FAILED, EXIT_OK, EXIT_USAGE

TOKEN_ENV = "FHIR_CONFORMANCE_TOKEN"


def replay_command(report_dir: Path, check_id: str, target: str | None, timeout: float, insecure: bool) -> int:
    try:
        found = reproduce.load(report_dir)
    except ValueError as exc:
        print(f"fhir-conformance: {exc}", file=sys.stderr)
        return EXIT_USAGE
    rep = found.get(check_id)
    if rep is None:
        known = ", ".join(sorted(found)) or "none (the run had no failing check)"
        print(f"fhir-conformance: no reproduction for check {check_id!r} in {report_dir}; failing checks: {known}",
              file=sys.stderr)
        return EXIT_USAGE
    token = os.environ.get(TOKEN_ENV)
    needs_token = any(k.lower() == "authorization" for s in rep.steps for k in s.headers)
    if needs_token and not token:
        print(f"fhir-conformance: the sequence sends a bearer token: export {TOKEN_ENV} first", file=sys.stderr)
        return EXIT_USAGE
    print(f"replaying {len(rep.steps)} request(s) of {check_id} against {target or rep.target}")
    print(f"  the run found: [{rep.requirement}] {rep.message.splitlines()[0] if rep.message else ''}")
    fhir = FhirClient(target or rep.target, TokenSource(None), timeout=timeout, verify=not insecure)
    try:
        def send(method: str, url: str, headers: dict[str, str], body: str) -> tuple[int | None, Any, str]:
            if token and "Authorization" in {k.title() for k in headers}:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                headers["Authorization"] = f"Bearer {token}"
            try:
                response = fhir.request(method, url, headers=headers, content=body.encode() if body else None,
                                        auth=False)
            except httpx.HTTPError as exc:
                return None, {}, f"{type(exc).__name__}: {exc}"
            return response.status_code, response.headers, response.text

        answers = reproduce.replay(rep, send, target)
    finally:
        fhir.close()
    for i, (step, status, _) in enumerate(answers, 1):
        mark = "   <- the failing request" if i == len(answers) else ""
        print(f"  {i}. {step.method} {step.url[:110]} -> {status if status is not None else 'no answer'} "
              f"(the run saw {step.status}){mark}")
    last_step, last_status, last_body = answers[-1]
    if last_status is None:
        print(f"the target did not answer the failing request: {last_body}")
        return EXIT_BROKEN
    if last_status == last_step.status:
        print(f"STILL FAILS: the target answered {last_status} again, as in the run")
        if last_body:
            print(last_body[:2000])
        return EXIT_FAILED
    print(f"CHANGED: the target now answers {last_status} (the run saw {last_step.status}); "
          f"re-run the check to judge it: fhir-conformance run --check '{check_id}'")
    return EXIT_OK
