"""The wrapping transports every request of a run passes through, outermost first:

* ``PoliteTransport``: the run-wide ``Politeness`` (rate limit, concurrency cap, 429 waits
  with an adaptive rate and a run-wide budget, circuit breaker);
* (``RecordingTransport`` from ``_recording``: every exchange on the wire, redacted);
* ``BoundedTransport``: a deadline on the response headers, a size cap and a deadline on
  the body, and every transport failure as a one-line ``TargetError``.

Request extensions steer them: ``conformance.stream`` (a bulk file: the body is left to
the caller, streamed and uncapped), ``conformance.record`` (False: not recorded, e.g. token
requests).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from typing import Any, Callable

import httpx

from ._errors import NotJson, RateLimited, TargetError, describe_transport_error, mb, unanswered, where
from ._ratelimit import asked_by

HEADER_GRACE = 0.25           # seconds past the timeout before trickled headers are cut off
DEFAULT_MAX_BODY = 20 * 1024 * 1024
GONE_STATUSES = (502, 503, 504)   # "the target is not there" as the breaker counts it (500 is one bug)
MIN_RATE = 0.2                # requests per second the adaptive rate never goes below
RAISE_AFTER = 50              # answers without a 429 before the adaptive rate is raised again
MAX_KEPT = 20                 # problems with headers kept for the report
MAX_ADAPTIVE_RATE = 100.0     # past it (and no --max-rps), the adaptive rate is lifted altogether


class FhirResponse(httpx.Response):
    """A response whose ``json()`` failure is a one-line ``NotJson`` naming the request."""

    def json(self, **kwargs: Any) -> Any:
        try:
            return json.loads(self.content, **kwargs)
        except ValueError:
            ctype = self.headers.get("content-type", "no Content-Type")
            raise NotJson(f"target answered {self.status_code} with a body that is not JSON "
                          f"({ctype}, {len(self.content)} bytes) on {where(self.request)}") from None


class Politeness:
    """What keeps the suite polite and bounded, shared by every client of a run.

    * a token bucket at ``rate`` requests per second (``max_rps``, lowered on 429s: the run
      slows itself down, and speeds up again after ``RAISE_AFTER`` answers without one),
    * a concurrency cap (at most ``max_concurrency`` requests in flight),
    * a run-wide "not before" instant set by a 429, honoured by every request; the waits of
      the whole run are bounded by ``rate_limit_budget`` seconds,
    * a circuit breaker: after ``max_consecutive_failures`` unanswered requests (or 502/503/504)
      in a row the target is treated as gone; 429s never count.
    """

    def __init__(self, max_rps: float | None = None, max_concurrency: int = 4, max_retry_wait: float = 30.0,
                 max_retries: int = 8, max_consecutive_failures: int = 5, rate_limit_budget: float | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 wall: Callable[[], float] = time.time):
        self.max_rps = max_rps if max_rps and max_rps > 0 else None
        self.rate = self.max_rps
        self.max_retry_wait, self.max_retries = max_retry_wait, max_retries
        self.rate_limit_budget = max(300.0, 10 * max_retry_wait) if rate_limit_budget is None else rate_limit_budget
        self.max_consecutive_failures = max_consecutive_failures
        self.max_concurrency = max(1, max_concurrency)
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._lock = threading.Lock()
        self._next = 0.0
        self._clock, self._sleep, self._wall = clock, sleep, wall
        self._sent: deque[float] = deque(maxlen=20)
        self._calm = 0
        self._slowed = float("-inf")
        self.failures = 0
        self.last_failure = ""
        self.rate_limited = 0           # 429s met
        self.waited = 0.0               # seconds spent waiting for 429s, run-wide
        self.header_problems: list[tuple[str, Any]] = []   # (problem, its exchange): unbelievable Retry-After
        self.retry_afters = 0           # Retry-After headers judged (429s and export polls)
        self.last_answered = ""         # "GET /Group/x": the last request the target answered
        self.current_check = ""         # set by the plugin: which check is sending
        self.gone: str = ""             # set once: who saw the target go, and after what

    # -- sending ---------------------------------------------------------------
    def acquire(self) -> None:
        """Block until this request may be sent (rate, 429 waits); then hold a concurrency slot."""
        self._slots.acquire()
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            if self.rate:
                self._next = start + 1.0 / self.rate
            self._sent.append(start)
            wait = start - now
        if wait > 0:
            self._sleep(wait)

    def release(self) -> None:
        self._slots.release()

    def defer(self, seconds: float) -> None:
        """Nobody sends before ``seconds`` from now (a 429 applies to the whole run)."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)

    # -- 429 -------------------------------------------------------------------
    def on_429(self, response: httpx.Response, request: httpx.Request, attempt: int) -> None:
        """Wait as the answer asks (or back off), slow the run down; ``RateLimited`` past the budget."""
        asked = asked_by(response.headers, self._wall())
        self.judged_retry_after(response, asked.problem)
        wait = asked.wait if asked.wait is not None else min(2.0 ** attempt, self.max_retry_wait)
        with self._lock:
            self.rate_limited += 1
            self._calm = 0
            self._slow_down(asked.rate)
        if wait > self.max_retry_wait:
            raise RateLimited(f"target rate-limited the suite (429) and asked to wait {wait:.0f} s, more than the "
                              f"{self.max_retry_wait:g} s cap, on {where(request)}")
        if self.waited + wait > self.rate_limit_budget:
            raise RateLimited(f"target rate-limited the suite (429) past the run's {self.rate_limit_budget:g} s "
                              f"budget for waiting on {where(request)}")
        self.waited += wait
        self.defer(wait)                # every request of the run waits, even if this one gives up now
        if attempt >= self.max_retries:
            raise RateLimited(f"target still answered 429 after {attempt} waits on {where(request)}")

    def judged_retry_after(self, response: httpx.Response, problem: str | None) -> None:
        """Count a Retry-After the suite read; keep its problem (and exchange) for the report."""
        if "retry-after" not in response.headers:
            return
        with self._lock:
            self.retry_afters += 1
            if problem and len(self.header_problems) < MAX_KEPT:
                self.header_problems.append((f"{problem} on {where(response.request)}",
                                             response.extensions.get("conformance.exchange")))

    def as_dict(self) -> dict[str, Any]:
        """What the run met, for summary.json."""
        return {"answered_429": self.rate_limited, "waited_s": round(self.waited, 1),
                "rate_at_end": round(self.rate, 2) if self.rate else None, "retry_after_seen": self.retry_afters,
                "retry_after_problems": [p for p, _ in self.header_problems]}

    def _slow_down(self, allowed: float | None) -> None:
        """The rate the target's ``RateLimit-Policy`` allows; else half the current one, once per second."""
        now = self._clock()
        if allowed:
            self.rate = min(allowed, self.max_rps) if self.max_rps else allowed
        elif now - self._slowed >= 1.0:
            sent = list(self._sent)
            observed = (len(sent) - 1) / (sent[-1] - sent[0]) if len(sent) > 2 and sent[-1] > sent[0] else None
            self.rate = max(MIN_RATE, (self.rate or observed or 10.0) / 2)
            self._slowed = now

    def _speed_up(self) -> None:
        """After ``RAISE_AFTER`` answers without a 429, a quarter faster (up to ``max_rps``, or unlimited)."""
        self._calm += 1
        if self._calm < RAISE_AFTER or not self.rate_limited or self.rate == self.max_rps:
            return
        self._calm = 0
        faster = (self.rate or MAX_ADAPTIVE_RATE) * 1.25
        if self.max_rps:
            self.rate = min(faster, self.max_rps)
        else:
            self.rate = None if faster > MAX_ADAPTIVE_RATE else faster

    # -- circuit breaker ---------------------------------------------------------
    def answered(self, request: httpx.Request) -> None:
        with self._lock:
            self.failures = 0
            self.last_answered = where(request)
            self._speed_up()

    def failed(self, why: str) -> None:
        with self._lock:
            self.failures += 1
            self.last_failure = why
            if self.tripped and not self.gone:
                after = f"after {self.last_answered}" if self.last_answered else "before answering any request"
                check = f" in check {self.current_check}" if self.current_check else ""
                self.gone = f"the target stopped answering {after}{check}; it may have crashed"

    @property
    def tripped(self) -> bool:
        return self.max_consecutive_failures > 0 and self.failures >= self.max_consecutive_failures


class PoliteTransport(httpx.BaseTransport):
    """Sends through the run's ``Politeness``; retries 429s as they ask, within the budget."""

    def __init__(self, inner: httpx.BaseTransport, polite: Politeness):
        self.inner, self.polite = inner, polite

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        polite = self.polite
        for attempt in range(polite.max_retries + 1):
            if polite.tripped:
                raise TargetError(f"target unresponsive: {polite.failures} requests in a row failed "
                                 f"(last: {polite.last_failure}); not sent: {where(request)}")
            polite.acquire()
            try:
                response = self.inner.handle_request(request)
            except TargetError as exc:
                if exc.unanswered:
                    polite.failed(str(exc))
                raise
            finally:
                polite.release()
            if response.status_code == 429:
                response.close()
                polite.on_429(response, request, attempt)
                continue
            if response.status_code in GONE_STATUSES:
                polite.failed(f"HTTP {response.status_code} on {where(request)}")
            else:
                polite.answered(request)
            return response
        raise AssertionError("unreachable")  # pragma: no cover - on_429 raises on the last attempt

    def close(self) -> None:
        self.inner.close()


class _Job:
    def __init__(self, work: Callable[[], Any]):
        self.work, self.done, self.outcome = work, threading.Event(), {}


class _Senders:
    """Daemon threads that send requests, reused from one request to the next (no thread per request).

    A thread stuck on a trickling target is not waited for: the caller gives up at its deadline
    and closes the socket, which frees the thread; the next request takes another idle one.
    """

    def __init__(self) -> None:
        self._idle: list["queue.SimpleQueue[_Job]"] = []
        self._lock = threading.Lock()

    def submit(self, work: Callable[[], Any]) -> _Job:
        job = _Job(work)
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name="fhir-request", daemon=True).start()
        inbox.put(job)
        return job

    def _serve(self, inbox: "queue.SimpleQueue[_Job]") -> None:
        while True:
            job = inbox.get()
            try:
                job.outcome["response"] = job.work()
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                job.outcome["error"] = exc
            job.work = None  # type: ignore[assignment]
            job.done.set()
            with self._lock:
                self._idle.append(inbox)


SENDERS = _Senders()


class BoundedTransport(httpx.BaseTransport):
    """A deadline on the headers (httpx's timeouts are per read: a trickling target would hold a
    check forever), a size cap and a deadline on the body, and one-line errors."""

    def __init__(self, inner: httpx.BaseTransport, timeout: float, max_body: int = DEFAULT_MAX_BODY,
                 redact: Callable[[str], str] = str, clock: Callable[[], float] = time.perf_counter):
        self.inner, self.timeout, self.max_body, self.redact, self.clock = inner, timeout, max_body, redact, clock

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = self.clock() + self.timeout
        try:
            response = self._headers_by(request, deadline)
        except TargetError:
            raise
        except httpx.HTTPError as exc:
            raise unanswered(self.redact(describe_transport_error(exc, request, self.timeout))) from None
        if request.extensions.get("conformance.stream"):
            return response
        try:
            content = self._body(response, request, deadline)
        finally:
            response.close()
        return FhirResponse(response.status_code, headers=response.headers, content=content,
                            extensions=response.extensions, request=request)

    def _headers_by(self, request: httpx.Request, deadline: float) -> httpx.Response:
        sockets: list[Any] = []

        def trace(event: str, info: dict[str, Any]) -> None:
            if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
                sockets.append(info["return_value"])

        request.extensions = {**request.extensions, "trace": trace}
        job = SENDERS.submit(lambda: self.inner.handle_request(request))
        # a little grace, so that httpx's own per-read timeout (a more precise cause) wins where it applies
        if not job.done.wait(max(0.0, deadline - self.clock()) + HEADER_GRACE):
            for stream in sockets:
                try:
                    stream.close()
                except Exception:  # noqa: BLE001 - best effort: the sender thread is a daemon anyway
                    pass
            raise unanswered(f"target did not answer within {self.timeout:g} s (headers still incomplete) "
                             f"on {self.redact(where(request))}")
        if "error" in job.outcome:
            raise job.outcome["error"]
        return job.outcome["response"]

    def _body(self, response: httpx.Response, request: httpx.Request, deadline: float) -> bytes:
        declared = response.headers.get("content-length", "")
        name = self.redact(where(request))
        if declared.isdigit() and int(declared) > self.max_body:
            raise TargetError(f"response body of {mb(int(declared))} exceeds the {mb(self.max_body)} cap "
                              f"(Content-Length) on {name}")
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.stream:  # type: ignore[union-attr] - raw bytes, decoded by FhirResponse
                size += len(chunk)
                if size > self.max_body:
                    raise TargetError(f"response body exceeds the {mb(self.max_body)} cap "
                                      f"(read {mb(size)} so far) on {name}")
                if self.clock() > deadline:
                    raise TargetError(f"target did not finish answering within {self.timeout:g} s "
                                      f"(slow body, {size} bytes so far) on {name}")
                chunks.append(chunk)
        except TargetError:
            raise
        except httpx.HTTPError as exc:
            raise unanswered(self.redact(describe_transport_error(exc, request, self.timeout))) from None
        return b"".join(chunks)

    def close(self) -> None:
        self.inner.close()
