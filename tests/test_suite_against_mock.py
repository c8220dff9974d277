"""The suite against the reference mock: green, complete, tidy, and it keeps secrets."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from mock_server import MockConfig
from mock_server.server import run_in_thread

from suite_runner import LIMITED, TOKEN, TOKENS, run_suite, smart_client

pytestmark = pytest.mark.slow
PLAIN_HTTP_VERDICTS = {"BULK-TLS": "skip", "BULK-TLS-HTTP": "warn"}


@pytest.fixture(scope="module")
def green_run(tmp_path_factory):
    """One full run against a conforming mock (file database, as users run it), as a SMART Backend
    Services client (the token URL found by discovery), so that the smart-backend profile runs too."""
    tmp = tmp_path_factory.mktemp("green")
    jwks_clients, env = smart_client(tmp / "smart")
    config = MockConfig(db=str(tmp / "mock.sqlite3"), tokens=TOKENS, jwks_clients=jwks_clients)
    with run_in_thread(config) as base_url:
        run = run_suite(tmp / "reports", "--seed", "20261121", "--examples", "8", target=base_url, token=None,
                        env=env)
        run.private_d = json.loads(Path(env["FHIR_CONFORMANCE_PRIVATE_KEY"]).read_text())["d"]  # type: ignore[attr-defined]
        teams = httpx.get(f"{base_url}/Group", params={"type": "practitioner", "_count": 100},
                          headers={"Authorization": f"Bearer {TOKEN}"}).json()
    return run, teams


def test_suite_passes_the_mock_with_every_requirement_verified(green_run):
    run, _ = green_run
    assert run.exit_code == 0, run.output[-4000:]
    not_passed = {rid: v for rid, v in run.verdicts().items() if v != "pass"}
    # plain http by design (a development server): warned about, and no TLS to check (see test_auth_tls)
    assert not_passed == PLAIN_HTTP_VERDICTS, not_passed
    assert run.summary["profiles"]["smart-backend"]["passed"] >= 10, run.summary["profiles"]
    counts = run.summary["profiles"]["canvas"]
    assert counts["failed"] == 0 and counts["warnings"] == 0 and counts["errors"] == 0, counts
    assert counts["passed"] > 100


def test_reports_are_written_and_carry_no_secret(green_run):
    run, _ = green_run
    for name in ("report.html", "junit.xml", "summary.json"):
        text = (run.report_dir / name).read_text(encoding="utf-8")
        assert TOKEN not in text and LIMITED not in text, f"a secret leaked into {name}"
        assert run.private_d not in text, f"the SMART private key leaked into {name}"
    assert "<testsuite" in (run.report_dir / "junit.xml").read_text()
    assert run.summary["seed"] == 20261121
    assert "verdict: PASS" in run.output


def test_run_releases_every_responsibility_it_claimed(green_run):
    run, teams = green_run
    prefix = run.summary["run_prefix"]
    ours = [g for g in teams.get("entry", []) if g["resource"]["name"].startswith(prefix)]
    holding = [g["resource"]["id"] for g in ours if g["resource"].get("characteristic")]
    assert ours, "the run created no team, so this test proves nothing"
    assert holding == [], f"teams of this run still hold responsibilities: {holding}"
    # the fixture teams' responsibilities were never touched
    fixture_held = {c["valueCodeableConcept"]["text"] for g in teams["entry"]
                    if not g["resource"]["name"].startswith("fhirck-")
                    for c in g["resource"].get("characteristic", [])}
    assert {"REVIEW_COVERAGES", "COLLECT_PATIENT_PAYMENTS"} <= fixture_held


def test_client_credentials_are_used_and_kept_secret(tmp_path):
    config = MockConfig(db=":memory:", tokens=TOKENS, clients={"kit-client": ("kit-secret-value", "")})
    with run_in_thread(config) as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "7", "--examples", "2", "--client-id", "kit-client",
                        "--requirement", "CANVAS-GROUP-CREATE", target=base_url, token=None, limited=None,
                        env={"FHIR_CONFORMANCE_CLIENT_SECRET": "kit-secret-value"})
    assert run.exit_code == 0, run.output[-3000:]
    assert run.verdicts()["CANVAS-GROUP-CREATE"] == "pass"
    for name in ("report.html", "junit.xml", "summary.json"):
        assert "kit-secret-value" not in (run.report_dir / name).read_text()


def test_unsupported_capabilities_are_skipped_with_the_reason(tmp_path):
    config = MockConfig(db=":memory:", tokens=TOKENS)
    with run_in_thread(config) as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "3", "--examples", "2", target=base_url, limited=None,
                        env={"FHIR_CONFORMANCE_REQUIREMENTS": "FHIR-AUTH-403 CANVAS-GROUP-SEARCH-TYPE"})
    verdicts = {r["id"]: r for r in run.summary["requirements"]}
    assert verdicts["FHIR-AUTH-403"]["verdict"] == "skip"
    assert "limited token" in verdicts["FHIR-AUTH-403"]["reason"]
    assert verdicts["CANVAS-GROUP-SEARCH-TYPE"]["verdict"] == "pass"
    assert run.exit_code == 0, run.output[-2000:]
