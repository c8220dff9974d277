"""Rate limits are not failures (issue 11): 429 headers read in order and judged, an adaptive
rate, a run-wide budget, a breaker that 429s never trip, and bulk downloads on the same path.

Everything runs on a fake network (``httpx.MockTransport``) and an injected clock: the
waits are asserted exactly, with no wall-clock bound."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from conformance.bulk import BulkClient
from conformance.http import RateLimited, TargetError, judge_retry_after
from conformance.http._ratelimit import asked_by

from fake_network import NOW, OK, FakeTime, client, too_many


# -- what the headers ask ------------------------------------------------------------

@pytest.mark.parametrize("value, seconds", [("7", 7.0), ("0", 0.0),
                                            (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
                                            (email.utils.formatdate(NOW - 30, usegmt=True), 0.0)])
def test_valid_retry_after_values_are_obeyed(value, seconds):
    assert judge_retry_after(value, NOW) == (pytest.approx(seconds, abs=1), None)


@pytest.mark.parametrize("value, problem", [
    ("1764800030", "more than a day (an epoch timestamp?)"),
    ("1.5", "not delta-seconds"), ("-3", "not delta-seconds"),
    ("172800", "more than a day"),
    (email.utils.formatdate(NOW + 3 * 86_400, usegmt=True), "more than a day away"),
    ("soon", "neither delta-seconds nor an HTTP-date")])
def test_absurd_or_malformed_retry_after_is_a_problem_not_a_wait(value, problem):
    seconds, found = judge_retry_after(value, NOW)
    assert seconds is None and problem in found


def test_ratelimit_headers_are_read_after_retry_after():
    assert asked_by({"ratelimit": '"default";r=0;t=5'}, NOW).wait == 5
    assert asked_by({"ratelimit": "limit=10, remaining=0, reset=4"}, NOW).wait == 4
    assert asked_by({"ratelimit-reset": "3"}, NOW).wait == 3
    assert asked_by({"x-ratelimit-reset": str(int(NOW) + 6)}, NOW).wait == 6       # a Unix time
    assert asked_by({"retry-after": "2", "ratelimit-reset": "9"}, NOW).wait == 2
    assert asked_by({"ratelimit-policy": '"default";q=100;w=60'}, NOW).rate == pytest.approx(100 / 60)
    assert asked_by({"ratelimit-policy": "10;w=1"}, NOW).rate == 10
    assert asked_by({}, NOW).wait is None


# -- the client's answer to a 429 ------------------------------------------------------

def test_429_with_ratelimit_headers_waits_as_asked_and_slows_the_run_down():
    time = FakeTime()
    fhir, seen = client([too_many(RateLimit='"default";r=0;t=3', **{"RateLimit-Policy": '"default";q=4;w=1'}),
                         OK, OK, OK], time)
    assert fhir.get("Group").status_code == 200
    assert [t for t, _ in seen[:2]] == [0.0, 3.0]             # waited exactly what the header asked
    assert fhir.polite.rate == 4                               # the policy's sustainable rate, from now on
    fhir.get("Group")
    fhir.get("Group")
    assert [round(b - a, 6) for (a, _), (b, _) in zip(seen[1:], seen[2:])] == [0.25, 0.25]
    assert [e.status for e in list(fhir.recorder.exchanges)[:2]] == [429, 200]   # each attempt recorded


def test_429_without_any_header_backs_off_exponentially_and_halves_the_rate():
    time = FakeTime()
    fhir, seen = client([too_many(), too_many(), too_many(), OK], time, max_rps=8)
    assert fhir.get("Group").status_code == 200
    assert [t for t, _ in seen] == [0.0, 1.0, 3.0, 7.0]        # 1, 2, 4 s
    assert fhir.polite.rate == 1.0                             # 8 → 4 → 2 → 1 (once per second of 429s)


def test_absurd_retry_after_falls_back_to_own_back_off_and_is_kept_for_the_report():
    time = FakeTime()
    fhir, seen = client([too_many(**{"Retry-After": "1764800030"}), OK], time)
    assert fhir.get("Group").status_code == 200
    assert seen[1][0] == 1.0                                   # not 1.7 billion seconds
    (problem, exchange), = fhir.polite.header_problems
    assert "epoch timestamp" in problem and "GET /Group" in problem and exchange.status == 429


def test_429s_never_trip_the_circuit_breaker():
    time = FakeTime()
    answers = [too_many(RateLimit="t=1")] * 6 + [OK]
    fhir, _ = client(answers, time, max_consecutive_failures=2)
    assert fhir.get("Group").status_code == 200
    assert not fhir.polite.tripped and fhir.polite.rate_limited == 6


def test_waiting_beyond_the_run_wide_budget_is_a_rate_limited_error():
    time = FakeTime()
    fhir, seen = client(lambda request: too_many(RateLimit="t=4"), time, rate_limit_budget=10)
    with pytest.raises(RateLimited, match=r"past the run's 10 s budget for waiting on GET /Group"):
        fhir.get("Group")
    assert time.sleeps == [4.0, 4.0] and len(seen) == 3
    with pytest.raises(RateLimited):                           # the budget is the run's, not the request's
        fhir.get("Patient")


def test_breaker_counts_gateway_errors_and_names_where_the_target_went():
    time = FakeTime()
    gone = httpx.Response(503, text="no upstream")
    fhir, seen = client([OK, gone, gone], time, max_consecutive_failures=2)
    fhir.polite.current_check = "group-read"
    fhir.read("Group", "g1")
    fhir.get("Group")
    fhir.get("Group")
    with pytest.raises(TargetError, match="target unresponsive: 2 requests in a row failed"):
        fhir.get("Task")
    assert len(seen) == 3
    assert fhir.polite.gone == ("the target stopped answering after GET /Group/g1 in check group-read; "
                                "it may have crashed")


# -- bulk downloads take the same path ---------------------------------------------------

NDJSON = httpx.Response(200, text='{"resourceType":"Patient","id":"a"}\n',
                        headers={"Content-Type": "application/fhir+ndjson"})


def test_bulk_downloads_obey_max_rps_and_the_token():
    time = FakeTime()
    fhir, seen = client(lambda request: NDJSON if request.headers.get("authorization") == "Bearer tok"
                        else httpx.Response(401), time, max_rps=2)
    bulk = BulkClient(fhir, sleep=time.sleep, clock=time.clock)
    files = [bulk.download("Patient", f"http://target/files/{n}.ndjson") for n in range(4)]
    assert [f.ids for f in files] == [{"a"}] * 4
    assert [t for t, _ in seen] == [0.0, 0.5, 1.0, 1.5]
    assert all(f.exchange is not None and f.exchange.response_body == "(1 NDJSON lines streamed and checked)"
               for f in files)


def test_bulk_downloads_trip_and_obey_the_circuit_breaker():
    time = FakeTime()
    fhir, seen = client(lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused", request=request)),
                        time, max_consecutive_failures=3)
    bulk = BulkClient(fhir, sleep=time.sleep, clock=time.clock)
    for n in range(3):
        with pytest.raises(TargetError, match="refused the connection"):
            bulk.download("Patient", f"http://target/files/{n}.ndjson")
    with pytest.raises(TargetError, match="target unresponsive: 3 requests in a row failed"):
        bulk.download("Patient", "http://target/files/3.ndjson")
    with pytest.raises(TargetError, match="target unresponsive"):
        list(bulk.resources("http://target/files/4.ndjson"))
    assert len(seen) == 3                                      # nothing sent once the breaker opened


def test_a_429_on_a_bulk_download_is_waited_out_like_any_request():
    time = FakeTime()
    fhir, seen = client([too_many(**{"RateLimit-Reset": "2"}), NDJSON], time)
    result = BulkClient(fhir, sleep=time.sleep, clock=time.clock).download("Patient", "http://target/f.ndjson")
    assert result.ids == {"a"} and [t for t, _ in seen] == [0.0, 2.0]


# -- what issue 11 reports, on the issue-9 layout (results.judge, results.RequirementFailed, reporting.console)

def _finished_with(exc: BaseException):
    from conformance.results import Finished, one_line
    return Finished("call", "failed", error=exc, error_line=one_line(exc))


def test_a_rate_limited_check_headlines_the_run_rate_limited_even_when_others_failed():
    from conformance.results import EXIT_BROKEN, CheckRecord, classify, judge
    record = CheckRecord("n", "group-create", ("CANVAS-GROUP-CREATE",))
    limited = classify(_finished_with(RateLimited("429 past the run's 300 s budget for waiting on GET /Group")),
                       "group-create", "n", "canvas", record, strict=False)
    assert limited.outcome == "error" and limited.message.startswith("RateLimited: ")
    verdict = judge([{"id": "CANVAS-TASK-CREATE", "verdict": "fail"}], [limited])
    assert (verdict.label, verdict.exit_code) == ("RATE LIMITED", EXIT_BROKEN)
    assert "1 check(s) could not be judged" in verdict.reason and "1 requirement(s) failed" in verdict.reason
    other = classify(_finished_with(TargetError("target answered nothing")), "g", "n", "canvas", record, False)
    assert judge([], [other]).label == "BROKEN"                   # only 429s make a run RATE LIMITED


def test_a_failure_shows_what_the_server_said():
    from conformance.http import Exchange
    from conformance.results import RequirementFailed
    said = Exchange("POST", "http://t/Group", {}, "", 422, {}, '{"resourceType": "OperationOutcome", "issue": '
                    '[{"severity": "error", "code": "invalid", "diagnostics": "type is required"}]}', 1.0)
    assert "\n  the server said: type is required\n" in str(RequirementFailed("CANVAS-GROUP-CREATE", "refused", said))
    ok = Exchange("GET", "http://t/Group", {}, "", 200, {}, '{"resourceType": "Bundle"}', 1.0)
    assert "the server said" not in str(RequirementFailed("CANVAS-GROUP-CREATE", "wrong", ok))


def test_the_console_lists_what_clean_up_left_behind_by_id():
    from conformance.options import Settings
    from conformance.reporting.console import print_summary
    from conformance.reporting.summary import build_summary
    from conformance.session import ConformanceRun
    run = ConformanceRun(Settings(target="http://t"))
    run.cleaned.left_behind["Group/g1"] = "releasing its responsibilities answered HTTP 500"
    run.cleanup_problems += run.cleaned.problems()
    lines: list[str] = []
    print_summary(run, lines.append)
    assert "left behind on the target: 1 resource(s): Group/g1 (releasing its responsibilities answered HTTP 500)" \
        in lines
    assert not any(line.startswith("clean-up problems:") for line in lines)   # shown once, by id
    assert build_summary(run)["cleanup"] == {"deleted": 0, "released": 0, "cancelled": 0, "left_behind": [
        {"reference": "Group/g1", "why": "releasing its responsibilities answered HTTP 500"}]}
