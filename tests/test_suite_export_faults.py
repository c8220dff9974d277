"""The suite against the mock's simulated export faults: each is met the way the spec expects."""
from __future__ import annotations

import time

import pytest

from mock_server import MockConfig
from mock_server.server import run_in_thread

from suite_runner import TOKENS, run_suite

pytestmark = pytest.mark.slow


def _run(tmp_path, fault: str, requirement: str, env: dict[str, str] | None = None, **config):
    mock = MockConfig(db=str(tmp_path / "mock.sqlite3"), tokens=TOKENS, faults=frozenset({fault}), **config)
    with run_in_thread(mock) as base_url:
        return run_suite(tmp_path / "reports", "--seed", "11", "--no-shrink", "--requirement", requirement,
                         target=base_url, env=env)


def test_transient_status_error_is_retried(tmp_path):
    run = _run(tmp_path, "transient-error", "BULK-EXPORT-MEMBERS")
    assert run.exit_code == 0, run.output[-3000:]
    assert run.verdicts()["BULK-EXPORT-MEMBERS"] == "pass"


def test_failed_job_is_reported_as_a_failure(tmp_path):
    run = _run(tmp_path, "failed-job", "BULK-EXPORT-MEMBERS")
    assert run.exit_code == 1, run.output[-3000:]
    verdicts = {r["id"]: r for r in run.summary["requirements"]}
    assert verdicts["BULK-EXPORT-STATUS"]["verdict"] == "fail"
    assert "export job failed: HTTP 500" in verdicts["BULK-EXPORT-STATUS"]["reason"]


def test_slow_job_times_out_with_a_clear_error(tmp_path):
    started = time.monotonic()
    run = _run(tmp_path, "slow-job", "BULK-EXPORT-MEMBERS", env={"FHIR_CONFORMANCE_EXPORT_TIMEOUT": "2"},
               slow_job_seconds=60)
    assert time.monotonic() - started < 45, "the suite waited for the slow job instead of timing out"
    assert run.exit_code == 3, run.output[-3000:]
    verdict = {r["id"]: r for r in run.summary["requirements"]}["BULK-EXPORT-MEMBERS"]
    assert verdict["verdict"] == "error" and "did not complete within 2 s" in verdict["reason"], verdict


def test_expired_file_fails_the_file_checks(tmp_path):
    run = _run(tmp_path, "expired-file", "BULK-EXPORT-FILE-LINES")
    assert run.exit_code == 1, run.output[-3000:]
    assert run.verdicts()["BULK-EXPORT-FILE-LINES"] == "fail"
    reason = {r["id"]: r for r in run.summary["requirements"]}["BULK-EXPORT-FILE-LINES"]["reason"]
    assert "HTTP 404" in reason, reason


def test_every_export_the_suite_starts_is_deleted(tmp_path):
    import sqlite3

    db = tmp_path / "mock.sqlite3"
    with run_in_thread(MockConfig(db=str(db), tokens=TOKENS)) as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "5", "--profile", "bulk-export", target=base_url)
        assert run.exit_code == 0, run.output[-3000:]
        with sqlite3.connect(db) as conn:
            started = conn.execute("SELECT COUNT(*) FROM export_job").fetchone()[0]
    assert started == 0, f"{started} export jobs were left on the target"
    assert not [p for p in (tmp_path / "mock.sqlite3.exports").iterdir()], "export files were left behind"
