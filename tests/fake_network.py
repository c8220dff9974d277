"""A fake network and an injected clock for the client's timing: waits asserted exactly, no wall clock."""

from __future__ import annotations

import threading

import httpx

from conformance.http import FhirClient, Politeness, TokenSource

NOW = 1_764_800_000.0      # the wall clock the headers are judged against


class FakeTime:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.lock = threading.Lock()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.sleeps.append(round(seconds, 6))
            self.now += seconds


def polite(time: FakeTime, **kw) -> Politeness:  # type: ignore[no-untyped-def]
    return Politeness(clock=time.clock, sleep=time.sleep, wall=lambda: NOW + time.now, **kw)


def scripted(answers, seen: list[tuple[float, str]], time: FakeTime) -> httpx.MockTransport:  # type: ignore[no-untyped-def]
    """A network answering from ``answers`` (a list, or a function of the request), noting when each arrived."""
    script = iter(answers) if isinstance(answers, list) else None

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((time.now, request.url.path))
        answer = next(script) if script is not None else answers(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handle)


def client(answers, time: FakeTime, **kw) -> tuple[FhirClient, list[tuple[float, str]]]:  # type: ignore[no-untyped-def]
    seen: list[tuple[float, str]] = []
    fhir = FhirClient("http://target", TokenSource("tok"), polite=polite(time, **kw),
                      network=scripted(answers, seen, time))
    return fhir, seen


def too_many(**headers: str) -> httpx.Response:
    return httpx.Response(429, headers=headers, json={"resourceType": "OperationOutcome", "issue": []})


OK = httpx.Response(200, json={"resourceType": "Bundle", "type": "searchset"})
