"""Every robustness promise, against a misbehaving server on real sockets: each affected check is
an *error* with a one-line cause (no traceback, no pass, no hang), an unreachable target ends the
run with exit code 3 and says so first.

No wall-clock bound: the server takes longer than the client's timeout (``delay``) and
then answers normally, so the one-line cause naming the timeout can only come from the
client cutting it off at its deadline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.client import FhirClient, NotJson, Politeness, TargetError, TokenSource, json_or_none

from misbehaving import Misbehaving, refused_url

TIMEOUT = 0.5
MB = 1024 * 1024


def client(url: str, **kw) -> FhirClient:  # type: ignore[no-untyped-def]
    kw.setdefault("timeout", TIMEOUT)
    kw.setdefault("max_body", MB)
    return FhirClient(url, TokenSource("tok"), **kw)


CASES = {  # mode -> expected cause
    "silent": r"did not answer within 0\.5 s \(ReadTimeout\) on GET /Group",
    "slow": r"did not answer within 0\.5 s \(ReadTimeout\) on GET /Group",
    "trickle": r"did not finish answering within 0\.5 s \(slow body",
    "trickle-headers": r"did not answer within 0\.5 s \(headers still incomplete\) on GET /Group",
    "huge": r"response body of 400 MB exceeds the 1 MB cap",
    "huge-chunked": r"response body exceeds the 1 MB cap",
    "redirect-loop": r"redirected more than 5 times \(redirect loop\?\) \(TooManyRedirects\)",
    "drop": r"dropped the connection .*\(RemoteProtocolError\) on GET /Group",
    "html": r"200 with a body that is not JSON \(text/html",
    "garbage": r"200 with a body that is not JSON \(application/fhir\+json",
}


@pytest.mark.parametrize("mode", sorted(CASES))
def test_misbehaviour_is_a_one_line_target_error_within_the_timeout(mode):
    with Misbehaving(mode, delay=3) as srv:
        fhir = client(srv.url)
        with pytest.raises(TargetError, match=CASES[mode]) as info:
            fhir.get("Group")
    assert "\n" not in str(info.value)
    # the failed exchange is recorded with its cause, for the report
    assert fhir.recorder.last is not None and (fhir.recorder.last.error or fhir.recorder.last.status)


def test_refused_connection_is_a_one_line_target_error():
    with pytest.raises(TargetError, match=r"refused the connection .*\(ConnectError\) on GET /Group"):
        client(refused_url()).get("Group")


def test_error_answers_that_are_not_json_are_left_to_the_checks():
    """A 4xx HTML page is a conformance failure (no OperationOutcome) for a check to report, not a
    transport error; .json() on it still raises a one-line NotJson and json_or_none() gives None."""
    import httpx

    from conformance.http import not_json_problem
    from conformance.http._transport import FhirResponse

    response = FhirResponse(404, headers={"content-type": "text/html"}, content=b"<h1>Not Found</h1>",
                            request=httpx.Request("GET", "http://t/Group/x"))
    assert not_json_problem(response, "GET /Group/x") is None
    assert json_or_none(response) is None
    with pytest.raises(NotJson, match=r"404 with a body that is not JSON \(text/html"):
        response.json()


def test_body_cap_holds_memory_bounded_on_a_huge_stream():
    with Misbehaving("huge-chunked") as srv:
        fhir = client(srv.url, max_body=2 * MB)
        with pytest.raises(TargetError, match="exceeds the 2 MB cap"):
            fhir.get("Group")
        assert len(fhir.recorder.last.response_body) == 0   # nothing of it was kept


def test_circuit_breaker_fails_fast_once_the_target_stopped_answering():
    with Misbehaving("silent") as srv:
        fhir = client(srv.url, polite=Politeness(max_consecutive_failures=3))
        for _ in range(3):
            with pytest.raises(TargetError, match="did not answer"):
                fhir.get("Group")
        with pytest.raises(TargetError, match=r"target unresponsive: 3 requests in a row failed"):
            fhir.get("Patient")
        assert len(srv.arrivals) == 3          # the fourth request was never sent


# -- whole runs ------------------------------------------------------------------


def run_cli(url: str, tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_CONFORMANCE_")}
    env["FHIR_CONFORMANCE_TOKEN"] = "secret-token-value"
    report_dir = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "-m", "conformance.cli", "run", "--target", url, "--timeout", "1",
                           "--report-dir", str(report_dir), *args],
                          capture_output=True, text=True, env=env, timeout=120)
    return proc.returncode, proc.stderr + proc.stdout, report_dir


@pytest.mark.parametrize("mode", ["silent", "refused"])
def test_unreachable_target_ends_the_run_with_exit_3_saying_so_first(mode, tmp_path):
    if mode == "refused":
        code, output, _ = run_cli(refused_url(), tmp_path)
    else:
        with Misbehaving("silent") as srv:          # accepts, never answers, /metadata included
            code, output, _ = run_cli(srv.url, tmp_path)
    assert code == 3, output
    first = output.strip().splitlines()[0]
    assert first.startswith("fhir-conformance: target unreachable:"), output
    assert ("did not answer within 1 s" if mode == "silent" else "refused the connection") in first
    assert "Traceback" not in output


@pytest.mark.parametrize("mode", ["slow", "html", "huge", "redirect-loop", "drop"])
def test_checks_meeting_a_misbehaving_target_are_errors_with_one_line_causes(mode, tmp_path):
    with Misbehaving(mode, metadata_ok=True, delay=3) as srv:
        code, output, reports = run_cli(srv.url, tmp_path, "--requirement", "CANVAS-GROUP-SEARCH-TYPE",
                                                 "--examples", "1", "--max-body-mb", "1")
    summary = json.loads((reports / "summary.json").read_text())
    assert code == 3, output[-3000:]
    # the first check meeting the broken shared setup reports it; the others are blocked by it (counted once)
    outcomes = [c["outcome"] for c in summary["checks"]]
    assert "error" in outcomes and set(outcomes) <= {"error", "skipped"}, outcomes
    for check in summary["checks"]:
        message = check["message"].removeprefix("blocked by ").split(": ", 1)[-1] \
            if check["outcome"] == "skipped" else check["message"]
        assert check["outcome"] == "error" or check["message"].startswith("blocked by "), check
        assert message.startswith(("TargetError: ", "NotJson: ")) and "\n" not in message, check
    assert "Traceback" not in output and "conformance/client.py" not in output, output[-3000:]
    junit = (reports / "junit.xml").read_text()
    assert "TargetError: " in junit or "NotJson: " in junit
    assert "secret-token-value" not in output + junit
