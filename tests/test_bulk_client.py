"""Unit tests of the suite's export flow client (conformance/bulk.py) against scripted answers."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from conformance.bulk import BulkClient, ExportTimeout, retry_after_seconds
from conformance.client import FhirClient, TokenSource

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_retry_after_seconds_and_http_date():
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(format_datetime(NOW + timedelta(seconds=30), usegmt=True), NOW.timestamp()) == 30.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


def _client(answers: list[httpx.Response]) -> tuple[BulkClient, list[float]]:
    script = iter(answers)
    sleeps: list[float] = []
    clock = [0.0]

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock[0] += s

    fhir = FhirClient("http://target", TokenSource("t"),
                      network=httpx.MockTransport(lambda request: next(script)))
    return BulkClient(fhir, timeout=30, sleep=sleep, clock=lambda: clock[0]), sleeps


def test_poll_obeys_retry_after_backs_off_and_retries_transient():
    transient = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "transient"}]}
    bulk, sleeps = _client([httpx.Response(202, headers={"Retry-After": "3"}), httpx.Response(202),
                            httpx.Response(202), httpx.Response(503, json=transient),
                            httpx.Response(200, json={"output": []})])
    result = bulk.poll("http://target/status/1")
    assert result.outcome == "complete"
    assert sleeps == [0.0, 3.0, 0.5, 1.0, 2.0]


def test_poll_reports_failure_and_times_out():
    bulk, _ = _client([httpx.Response(500, json={"resourceType": "OperationOutcome",
                                                 "issue": [{"severity": "error", "code": "exception"}]})])
    assert bulk.poll("http://target/status/1").outcome == "failed"
    bulk, _ = _client([httpx.Response(202, headers={"Retry-After": "10"})] * 10)
    with pytest.raises(ExportTimeout, match="did not complete within 25 s"):
        bulk.poll("http://target/status/1", timeout=25)


def test_download_summarises_problems_per_file():
    lines = "\n".join(['{"resourceType":"Patient","id":"a"}', "not json", '{"resourceType":"Observation","id":"b"}',
                       '{"resourceType":"Patient","id":"c","birthDate":"not-a-date"}'] + ['{"resourceType":"Patient"}'] * 5)
    bulk, _ = _client([httpx.Response(200, text=lines, headers={"Content-Type": "application/fhir+ndjson"})])
    f = bulk.download("Patient", "http://target/files/Patient.ndjson")
    assert f.lines == 9 and f.problem_count == 7 and len(f.problems) == 3 and f.ids == {"a", "c"}
    assert "(and 4 more)" in f.summary() and "line 2: not JSON" in f.summary()
    # validity against R4 is kept apart (BULK-EXPORT-RESOURCE-VALID), with line, path and rule
    assert (f.validity.resources, f.validity.invalid["schema"]) == (2, 1)
    [problem] = f.validity.examples["schema"]
    assert (problem.line, problem.path, problem.rule) == (4, "Patient.birthDate", "schema primitive format")
