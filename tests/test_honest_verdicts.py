"""No verdict without a test: not-FHIR targets, refused tokens, empty runs, harmless short tokens.

Each case is a run of ``fhir-conformance`` as users start it (SPEC §0, §6).
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from contextlib import contextmanager
from typing import Iterator

import pytest

from conformance.results import CheckResult, judge
from mock_server import MockConfig
from mock_server.server import run_in_thread

from suite_runner import TOKENS, run_suite


@contextmanager
def static_file_server(directory) -> Iterator[str]:
    """What ``python3 -m http.server`` serves: a directory listing, 404 for /metadata."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a: None  # type: ignore[assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("metadata", [None, {"resourceType": "Patient", "id": "x"}])
def test_a_target_that_is_not_a_fhir_server_ends_with_exit_3_said_first(metadata, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    if metadata is not None:    # a JSON answer that is no CapabilityStatement
        (site / "metadata").write_text(json.dumps(metadata))
    with static_file_server(site) as url:
        run = run_suite(tmp_path / "reports", "--examples", "1", target=url)
    assert run.exit_code == 3, run.output
    first = run.output.strip().splitlines()[0]
    assert first.startswith("fhir-conformance: the target is not a FHIR server: GET"), run.output
    assert "PASS" not in run.output
    assert run.summary["verdict"]["label"] == "NOT A FHIR SERVER"
    assert {r["verdict"] for r in run.summary["requirements"]} == {"untested"}


@pytest.mark.parametrize("token", ["wrong-token-value", None])
def test_a_refused_token_is_a_usage_error_not_a_departure(token, tmp_path):
    config = MockConfig(db=":memory:", tokens=TOKENS)
    with run_in_thread(config) as url:
        run = run_suite(tmp_path / "reports", "--examples", "1", target=url, token=token, limited=None)
    assert run.exit_code == 2, run.output[-2000:]
    first = run.output.strip().splitlines()[0]
    expected = "the target refused the token (401 on GET" if token else "the target requires a token (401 on GET"
    assert expected in first, run.output
    assert "FAIL" not in run.output and "wrong-token-value" not in run.output
    assert run.summary["exit_code"] == 2


def test_a_run_in_which_nothing_executed_is_never_a_pass(tmp_path):
    config = MockConfig(db=":memory:", tokens=TOKENS)
    with run_in_thread(config) as url:   # FHIR-AUTH-403 needs a limited token: its checks all skip
        run = run_suite(tmp_path / "reports", "--requirement", "FHIR-AUTH-403", target=url, limited=None)
    assert run.exit_code == 3, run.output[-2000:]
    assert "verdict: NOTHING TESTED: nothing was tested (" in run.output
    assert "skipped: " in run.summary["verdict"]["reason"] and "limited token" in run.summary["verdict"]["reason"]


def test_judge_counts_the_skip_reasons():
    results = [CheckResult("n", "c", "canvas", (), "skipped", message="profile 'canvas' not declared")] * 3
    results += [CheckResult("n", "d", "bulk-export", (), "skipped", message="no $export")]
    verdict = judge([], results)
    assert (verdict.exit_code, verdict.label) == (3, "NOTHING TESTED")
    assert "4 checks skipped: 3 × profile 'canvas' not declared; 1 × no $export" in verdict.reason
    assert judge([], results + [CheckResult("n", "e", "canvas", (), "passed")]).label == "PASS"


@pytest.mark.parametrize("token, limited", [("x", "e"), ("test", "pass")])
def test_one_letter_and_common_word_tokens_leave_every_report_intact(token, limited, tmp_path):
    config = MockConfig(db=":memory:", tokens={token: "", limited: "system/*.read"})
    with run_in_thread(config) as url:
        run = run_suite(tmp_path / "reports", "--seed", "5", "--examples", "2", "--requirement", "CANVAS-GROUP-CREATE",
                        "--requirement", "FHIR-AUTH-403", target=url, token=token, limited=limited)
    assert "Traceback" not in run.output
    assert run.exit_code == 0, run.output[-3000:]
    summary = run.summary                      # parses, with every key intact
    assert {"exit_code", "requirements", "profiles", "verdict"} <= set(summary)
    verdicts = run.verdicts()
    assert verdicts["CANVAS-GROUP-CREATE"] == "pass" and verdicts["FHIR-AUTH-403"] == "pass"
    assert summary["verdict"]["label"] == "PASS"
    junit = (run.report_dir / "junit.xml").read_text()
    assert "<testsuite" in junit and "Bearer " + token + '"' not in junit
    html = (run.report_dir / "report.html").read_text()
    assert "Bearer " + token + " " not in html
