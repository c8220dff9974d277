"""Politeness: the global rate limit (request spacing, on an injected clock), the concurrency cap
(on a real server), 429 Retry-After (seconds and HTTP-date) honoured run-wide with a cap, and no
fixed sleeps anywhere in the suite."""

from __future__ import annotations

import ast
import email.utils
import threading
from pathlib import Path

import pytest

from conformance.client import FhirClient, Politeness, TargetError, TokenSource, retry_after_seconds

from misbehaving import Misbehaving
from fake_network import NOW, OK, FakeTime, too_many
from fake_network import client as fake_client

SUITE = Path(__file__).resolve().parents[1] / "conformance"


def client(url: str, polite: Politeness) -> FhirClient:
    return FhirClient(url, TokenSource("tok"), timeout=5, polite=polite)


def test_rate_limit_spaces_requests_across_identities():
    """10 rps shared by two identities: sends exactly 0.1 s apart on the run's clock."""
    time_ = FakeTime()
    a, seen = fake_client(lambda request: OK, time_, max_rps=10)
    b = a.with_token("other")          # another identity shares the run's limiter
    for _ in range(4):
        a.get("Group")
        b.get("Group")
    assert [t for t, _ in seen] == pytest.approx([0.1 * n for n in range(8)])


def test_without_a_rate_limit_the_same_requests_are_not_spaced():
    """The control for the test above: it would fail without the limiter."""
    time_ = FakeTime()
    fhir, seen = fake_client(lambda request: OK, time_)
    for _ in range(8):
        fhir.get("Group")
    assert time_.sleeps == [] and len(seen) == 8


def test_concurrency_cap_bounds_requests_in_flight():
    polite = Politeness(max_concurrency=2)
    with Misbehaving("ok", hold=0.2) as srv:
        fhir = client(srv.url, polite)
        threads = [threading.Thread(target=fhir.get, args=("Group",)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(srv.arrivals) == 6
    assert srv.max_in_flight == 2


def test_429_retry_after_seconds_is_honoured_then_the_request_retried():
    time_ = FakeTime()
    fhir, seen = fake_client([too_many(**{"Retry-After": "1"}), OK], time_, max_retry_wait=5)
    assert fhir.get("Group").status_code == 200
    assert [t for t, _ in seen] == [0.0, 1.0]


def test_429_retry_after_http_date_is_honoured():
    time_ = FakeTime()
    when = email.utils.formatdate(NOW + 2, usegmt=True)
    fhir, seen = fake_client([too_many(**{"Retry-After": when}), OK], time_, max_retry_wait=5)
    assert fhir.get("Group").status_code == 200
    assert seen[1][0] == pytest.approx(2.0, abs=1)             # an HTTP-date has one-second resolution


def test_429_wait_applies_to_every_request_of_the_run():
    """A Retry-After holds every client of the run, even when the request that met it gives up."""
    time_ = FakeTime()
    first, seen = fake_client([too_many(**{"Retry-After": "1"}), OK], time_, max_retries=0)
    other = first.with_token(None)
    with pytest.raises(TargetError, match="still answered 429"):
        first.get("Group")
    other.get("Patient", auth=False)
    assert seen == [(0.0, "/Group"), (1.0, "/Patient")]


def test_429_asking_for_longer_than_the_cap_is_reported_not_waited():
    time_ = FakeTime()
    fhir, seen = fake_client([too_many(**{"Retry-After": "120"})], time_, max_retry_wait=2)
    with pytest.raises(TargetError, match=r"asked to wait 120 s, more than the 2 s cap, on GET /Group"):
        fhir.get("Group")
    assert time_.sleeps == [] and len(seen) == 1


def test_retry_after_parsing():
    now = 1_000_000.0
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert retry_after_seconds(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_no_fixed_sleeps_anywhere_in_the_suite():
    """Waits are computed (rate limit, Retry-After); a literal ``sleep(2)`` would be a fixed sleep."""
    offenders = []
    for path in SUITE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "attr", None) or getattr(node.func, "id", None)
                if name in ("sleep", "wait") and node.args and isinstance(node.args[0], ast.Constant):
                    offenders.append(f"{path.relative_to(SUITE)}:{node.lineno}")
    assert offenders == []


def test_settings_reach_the_run_s_shared_limiter(tmp_path):
    from conformance import options as cfg
    from conformance.session import ConformanceRun

    env = {"FHIR_CONFORMANCE_MAX_RPS": "5", "FHIR_CONFORMANCE_MAX_CONCURRENCY": "2",
           "FHIR_CONFORMANCE_MAX_RETRY_WAIT": "7", "FHIR_CONFORMANCE_MAX_BODY_MB": "3"}
    run = ConformanceRun(cfg.load({"target": "http://127.0.0.1:9"}, env, tmp_path / "none.toml"))
    assert (run.polite.max_rps, run.polite.max_retry_wait) == (5.0, 7.0)
    assert run.client.polite is run.polite and run.client.with_token(None).polite is run.polite
    assert run.client.max_body == 3 * 1024 * 1024
    with pytest.raises(cfg.SettingsError):
        cfg.load({"target": "http://x", "max_rps": "0"}, {}, tmp_path / "none.toml")
