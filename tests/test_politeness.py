"""Politeness, measured on a real server: the global rate limit (request spacing), the
concurrency cap, 429 Retry-After (seconds and HTTP-date) honoured run-wide with a cap, and no
fixed sleeps anywhere in the suite."""

from __future__ import annotations

import ast
import email.utils
import threading
import time
from pathlib import Path

import pytest

from conformance.client import FhirClient, Politeness, TargetError, TokenSource, retry_after_seconds

from misbehaving import Misbehaving

SUITE = Path(__file__).resolve().parents[1] / "conformance"


def client(url: str, polite: Politeness) -> FhirClient:
    return FhirClient(url, TokenSource("tok"), timeout=5, polite=polite)


def gaps(arrivals: list[tuple[float, str]]) -> list[float]:
    times = sorted(t for t, _ in arrivals)
    return [b - a for a, b in zip(times, times[1:])]


def test_rate_limit_spaces_requests_across_clients_and_threads():
    """10 rps shared by two identities on two threads: arrivals at least ~0.1 s apart."""
    polite = Politeness(max_rps=10, max_concurrency=4)
    with Misbehaving("ok") as srv:
        a = client(srv.url, polite)
        b = a.with_token("other")          # another identity shares the run's limiter
        threads = [threading.Thread(target=lambda c=c: [c.get("Group") for _ in range(4)]) for c in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        spacing = gaps(srv.arrivals)
    assert len(srv.arrivals) == 8
    # sends are 0.1 s apart; arrivals carry the server's scheduling jitter (a loaded CI box)
    assert sum(spacing) >= 0.65, spacing
    assert min(a + b for a, b in zip(spacing, spacing[1:])) >= 0.16, spacing
    assert min(spacing) >= 0.05, spacing


def test_without_a_rate_limit_the_same_requests_are_not_spaced():
    """The control for the test above: it would fail without the limiter."""
    with Misbehaving("ok") as srv:
        fhir = client(srv.url, Politeness())
        for _ in range(8):
            fhir.get("Group")
        spacing = gaps(srv.arrivals)
    assert sum(spacing) < 0.65 and min(spacing) < 0.05, spacing


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
    with Misbehaving("429", retry_after="1") as srv:
        fhir = client(srv.url, Politeness(max_retry_wait=5))
        response = fhir.get("Group")
        spacing = gaps(srv.arrivals)
    assert response.status_code == 200
    assert len(srv.arrivals) == 2 and 0.95 <= spacing[0] < 2.0, spacing


def test_429_retry_after_http_date_is_honoured():
    def in_two_seconds() -> str:
        return email.utils.formatdate(time.time() + 2, usegmt=True)

    with Misbehaving("429", retry_after=in_two_seconds) as srv:
        fhir = client(srv.url, Politeness(max_retry_wait=5))
        assert fhir.get("Group").status_code == 200
        spacing = gaps(srv.arrivals)
    assert 0.9 <= spacing[0] < 3.0, spacing      # an HTTP-date has one-second resolution


def test_429_wait_applies_to_every_request_of_the_run():
    """While one request waits out a Retry-After, another client of the run does not send either."""
    polite = Politeness(max_retry_wait=5)
    with Misbehaving("429", retry_after="1") as srv:
        first = client(srv.url, polite)
        other = first.with_token(None)
        waiting = threading.Thread(target=first.get, args=("Group",))
        waiting.start()
        deadline = time.monotonic() + 5
        while polite._next <= time.monotonic() and time.monotonic() < deadline:
            threading.Event().wait(0.01)              # poll until the 429 has been received
        other.get("Patient", auth=False)
        waiting.join()
        t0 = srv.arrivals[0][0]
        patient = next(t for t, path in srv.arrivals if path.startswith("/Patient"))
    assert patient - t0 >= 0.95, srv.arrivals


def test_429_asking_for_longer_than_the_cap_is_reported_not_waited():
    with Misbehaving("429", retry_after="120") as srv:
        fhir = client(srv.url, Politeness(max_retry_wait=2))
        started = time.monotonic()
        with pytest.raises(TargetError, match=r"asked to wait 120 s, more than the 2 s cap, on GET /Group"):
            fhir.get("Group")
        assert time.monotonic() - started < 0.5
        assert len(srv.arrivals) == 1


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
