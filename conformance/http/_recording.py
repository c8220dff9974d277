"""Every exchange on the wire, redacted before it is kept: what makes a failure actionable.

The report shows the requests and responses that led to a failure, and a curl command
reproducing the failing one with the token replaced by an environment variable reference
(Schemathesis-style). ``RecordingTransport`` sits between the politeness layer and the
bounded one, so it sees each attempt (a 429 and its retry are two exchanges).
"""

from __future__ import annotations

import json
import shlex
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import httpx

from ..redaction import Redactor, redact_body, redact_header, redact_url

BODY_PREVIEW = 8_000
STREAMED = "(streamed)"


@dataclass
class Exchange:
    """One request and its response, redacted.

    The two bodies may be given as functions (``Exchange.deferred``): they are then shaped and
    redacted the first time they are read. Most exchanges are never read (only those of a failing
    check are), and pretty-printing and redacting every body was a tenth of a run's time.
    """

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str
    status: int | None
    response_headers: dict[str, str]
    response_body: str
    elapsed_ms: float
    error: str | None = None
    seq: int = 0                 # order within the run (the recorder numbers exchanges)

    @classmethod
    def deferred(cls, *, request_body: Callable[[], str], response_body: Callable[[], str],
                 **fields: Any) -> "Exchange":
        exchange = cls(request_body="", response_body="", **fields)
        del exchange.request_body, exchange.response_body       # read through __getattr__, once
        exchange.__dict__["_deferred"] = {"request_body": request_body, "response_body": response_body}
        return exchange

    def __getattr__(self, name: str) -> Any:
        """Only called for an attribute not set yet: a deferred body, made now and kept."""
        make = self.__dict__.get("_deferred", {}).pop(name, None)
        if make is None:
            raise AttributeError(name)
        value = self.__dict__[name] = make()
        return value

    def curl(self) -> str:
        parts = ["curl", "-i", "-X", self.method, shlex.quote(self.url)]
        for name, value in self.request_headers.items():
            if name.lower() in ("content-length", "host", "accept-encoding", "connection", "user-agent"):
                continue
            if name.lower() == "authorization" and value.startswith("Bearer"):
                # runnable as-is once the reader exports their own token
                parts += ["-H", '"Authorization: Bearer ${FHIR_CONFORMANCE_TOKEN}"']
                continue
            parts += ["-H", shlex.quote(f"{name}: {value}")]
        if self.request_body:
            parts += ["--data-raw", shlex.quote(self.request_body)]
        return " ".join(parts)

    def render(self) -> str:
        """Plain-text rendering for reports and terminal output."""
        lines = [f"> {self.method} {self.url}"]
        lines += [f"> {k}: {v}" for k, v in self.request_headers.items()]
        if self.request_body:
            lines += [">", *(f"> {line}" for line in self.request_body.splitlines())]
        if self.error:
            lines.append(f"< (no response: {self.error})")
        else:
            lines.append(f"< {self.status}  ({self.elapsed_ms:.0f} ms)")
            lines += [f"< {k}: {v}" for k, v in self.response_headers.items()]
            if self.response_body:
                lines += ["<", *(f"< {line}" for line in self.response_body.splitlines())]
        return "\n".join(lines)


class Recorder:
    """Keeps the recent exchanges of the current check (bounded), and what reproduction needs.

    ``own`` holds the current check's exchanges before its first Hypothesis example and
    those of its latest example (earlier examples cannot matter once a new one starts);
    ``capture()`` lets the plugin collect what a shared fixture sent while it was set up.
    """

    OWN_LIMIT = 400

    def __init__(self, limit: int = 60):
        self.exchanges: deque[Exchange] = deque(maxlen=limit)
        self.own: list[Exchange] = []
        self._before_examples: int | None = None
        self._captures: list[list[Exchange]] = []
        self._seq = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Recorder({len(self.own)} exchanges)"

    def clear(self) -> None:
        self.exchanges.clear()
        self.own = []
        self._before_examples = None

    def new_example(self) -> None:
        """A Hypothesis example starts: forget the previous example's exchanges."""
        if self._before_examples is None:
            self._before_examples = len(self.own)
        else:
            del self.own[self._before_examples:]

    def add(self, exchange: Exchange) -> None:
        with self._lock:            # clean-up and the concurrency checks send from several threads
            self._seq += 1
            exchange.seq = self._seq
            self.exchanges.append(exchange)
            self.own.append(exchange)
            if len(self.own) > self.OWN_LIMIT:
                del self.own[(self._before_examples or 0):(self._before_examples or 0) + 100]
            for captured in self._captures:
                captured.append(exchange)

    def capture(self) -> list[Exchange]:
        captured: list[Exchange] = []
        self._captures.append(captured)
        return captured

    def release(self, captured: list[Exchange]) -> None:
        if captured in self._captures:
            self._captures.remove(captured)

    @property
    def last(self) -> Exchange | None:
        return self.exchanges[-1] if self.exchanges else None


def preview(raw: bytes, headers: Mapping[str, str]) -> str:
    """The body as a reader wants it: pretty JSON, cut at ``BODY_PREVIEW`` characters."""
    if not raw:
        return ""
    text = raw[:BODY_PREVIEW * 2].decode("utf-8", errors="replace")
    if "json" in headers.get("content-type", "") or text[:1] in "{[":
        try:
            text = json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
        except ValueError:
            pass
    if len(text) > BODY_PREVIEW:
        text = text[:BODY_PREVIEW] + f"\n… ({len(raw)} bytes in all)"
    return text


def exchange_of(request: httpx.Request, response: httpx.Response | None, elapsed_ms: float,
                redact: Redactor, error: str | None = None) -> Exchange:
    """The redacted record of one exchange (structure first, known secret values second)."""
    raw = request.read()
    request_type = request.headers.get("content-type", "")
    resp_headers = dict(response.headers) if response is not None else {}
    streamed = bool(request.extensions.get("conformance.stream"))
    content = b"" if response is None or streamed else response.content

    def request_body() -> str:
        return redact(redact_body(raw.decode("utf-8", errors="replace")[:BODY_PREVIEW], request_type))

    def response_body() -> str:
        shown = STREAMED if response is not None and streamed else preview(content, resp_headers)
        return redact(redact_body(shown, resp_headers.get("content-type", "")))

    return Exchange.deferred(
        method=request.method, url=redact(redact_url(str(request.url))),
        request_headers={k: redact(redact_header(k, v)) for k, v in request.headers.items()},
        request_body=request_body, status=response.status_code if response is not None else None,
        response_headers={k: redact(redact_header(k, v)) for k, v in resp_headers.items()},
        response_body=response_body, elapsed_ms=elapsed_ms, error=error)


class RecordingTransport(httpx.BaseTransport):
    """Records every exchange the inner transport makes (or fails to make) into the run's recorder.

    The exchange of a streamed answer is put in ``response.extensions["conformance.exchange"]``
    so that its reader can fill in what the stream held.
    """

    def __init__(self, inner: httpx.BaseTransport, recorder: Recorder, redact: Redactor):
        self.inner, self.recorder, self.redact = inner, recorder, redact

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        record = request.extensions.get("conformance.record", True)
        started = time.perf_counter()
        try:
            response = self.inner.handle_request(request)
        except httpx.HTTPError as exc:
            if record:
                self.recorder.add(exchange_of(request, None, (time.perf_counter() - started) * 1000, self.redact,
                                              error=self.redact(str(exc))))
            raise
        if record:
            exchange = exchange_of(request, response, (time.perf_counter() - started) * 1000, self.redact)
            response.extensions = {**response.extensions, "conformance.exchange": exchange}
            self.recorder.add(exchange)
        return response

    def close(self) -> None:
        self.inner.close()
