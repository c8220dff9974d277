"""The FHIR client every check uses: httpx underneath, every exchange recorded.

Recording is what makes a failure actionable: the report shows the requests and
responses that led to it, and a curl command reproducing the failing request with
the token replaced by an environment variable reference (Schemathesis-style).
"""

from __future__ import annotations

import json
import shlex
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping
from urllib.parse import urljoin

import httpx

FHIR_JSON = "application/fhir+json"
BODY_PREVIEW = 8_000
REDACTED = "[REDACTED]"
SENSITIVE_HEADERS = {"authorization", "cookie", "set-cookie", "proxy-authorization"}


@dataclass
class Exchange:
    """One request and its response, already redacted."""

    method: str
    url: str
    request_headers: dict[str, str]
    request_body: str
    status: int | None
    response_headers: dict[str, str]
    response_body: str
    elapsed_ms: float
    error: str | None = None

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


class Redactor:
    """Replaces every known secret, wherever it appears (a server may echo it)."""

    def __init__(self, secrets: Iterable[str]):
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        if secret and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


class Recorder:
    """Keeps the recent exchanges of the current check (bounded)."""

    def __init__(self, limit: int = 60):
        self.exchanges: deque[Exchange] = deque(maxlen=limit)

    def clear(self) -> None:
        self.exchanges.clear()

    def add(self, exchange: Exchange) -> None:
        self.exchanges.append(exchange)

    @property
    def last(self) -> Exchange | None:
        return self.exchanges[-1] if self.exchanges else None


def _redact_header(name: str, value: str) -> str:
    if name.lower() == "authorization" and value.startswith("Bearer "):
        return "Bearer " + REDACTED
    return REDACTED if name.lower() in SENSITIVE_HEADERS else value


def _preview(raw: bytes, headers: Mapping[str, str]) -> str:
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


class TokenSource:
    """Where the bearer token comes from: a static token or client credentials."""

    def __init__(self, token: str | None = None, client_id: str | None = None,
                 client_secret: str | None = None, token_url: str | None = None):
        self.static = token
        self.client_id, self.client_secret, self.token_url = client_id, client_secret, token_url
        self._token: str | None = None
        self._expires = 0.0

    def get(self, http: httpx.Client, redact: Redactor) -> str | None:
        if self.static:
            return self.static
        if not self.client_id:
            return None
        if self._token and time.monotonic() < self._expires - 30:
            return self._token
        if not self.token_url:
            raise RuntimeError("client credentials given but no token URL (set token_url)")
        response = http.post(self.token_url, data={
            "grant_type": "client_credentials", "client_id": self.client_id,
            "client_secret": self.client_secret or ""})
        if response.status_code != 200:
            raise RuntimeError(f"token endpoint {self.token_url} answered {response.status_code}")
        body = response.json()
        self._token = body["access_token"]
        redact.add(self._token)
        self._expires = time.monotonic() + float(body.get("expires_in", 300))
        return self._token


@dataclass
class FhirClient:
    """A FHIR REST client bound to one base URL and one identity."""

    base_url: str
    tokens: TokenSource
    recorder: Recorder = field(default_factory=Recorder)
    redact: Redactor = field(default_factory=lambda: Redactor([]))
    timeout: float = 30.0
    http: httpx.Client | None = None

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.http is None:
            self.http = httpx.Client(timeout=self.timeout, follow_redirects=False)
        for secret in (self.tokens.static, self.tokens.client_secret):
            if secret:
                self.redact.add(secret)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Hypothesis pretty-prints dataclasses field by field; keep falsifying examples short."""
        printer.text(repr(self))

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r})"

    def with_token(self, token: str | None) -> "FhirClient":
        """The same target seen with another identity (or none: token=None)."""
        return FhirClient(self.base_url, TokenSource(token), self.recorder, self.redact,
                          self.timeout, self.http)

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.base_url + "/", path.lstrip("/"))

    def request(self, method: str, path: str, *, json_body: Any = None, content: bytes | str | None = None,
                params: Any = None, data: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, auth: bool = True) -> httpx.Response:
        all_headers = {"Accept": FHIR_JSON}
        if json_body is not None:
            content = json.dumps(json_body)
            all_headers["Content-Type"] = FHIR_JSON
        all_headers.update(headers or {})
        if auth:
            token = self.tokens.get(self.http, self.redact)
            if token:
                all_headers["Authorization"] = f"Bearer {token}"
        request = self.http.build_request(method, self.url(path), content=content, params=params,
                                          data=data, headers=all_headers)
        started = time.perf_counter()
        try:
            response = self.http.send(request)
            response.read()
        except httpx.HTTPError as exc:
            self.recorder.add(self._exchange(request, None, started, error=f"{type(exc).__name__}: {exc}"))
            raise
        self.recorder.add(self._exchange(request, response, started))
        return response

    def _exchange(self, request: httpx.Request, response: httpx.Response | None, started: float,
                  error: str | None = None) -> Exchange:
        req_headers = {k: _redact_header(k, v) for k, v in request.headers.items()}
        body = request.content.decode("utf-8", errors="replace") if request.content else ""
        resp_headers = dict(response.headers) if response is not None else {}
        return Exchange(
            method=request.method, url=self.redact(str(request.url)),
            request_headers={k: self.redact(v) for k, v in req_headers.items()},
            request_body=self.redact(body[:BODY_PREVIEW]),
            status=response.status_code if response is not None else None,
            response_headers={k: self.redact(v) for k, v in resp_headers.items()},
            response_body=self.redact(_preview(response.content, resp_headers)) if response is not None else "",
            elapsed_ms=(time.perf_counter() - started) * 1000, error=error)

    # -- FHIR interactions -------------------------------------------------
    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, **kw)

    def create(self, resource: Mapping[str, Any], **kw: Any) -> httpx.Response:
        return self.post(resource["resourceType"], json_body=resource, **kw)

    def read(self, resource_type: str, rid: str, **kw: Any) -> httpx.Response:
        return self.get(f"{resource_type}/{rid}", **kw)

    def update(self, resource: Mapping[str, Any], rid: str | None = None, **kw: Any) -> httpx.Response:
        return self.put(f"{resource['resourceType']}/{rid or resource['id']}", json_body=resource, **kw)

    def search(self, resource_type: str, params: Any = None, *, via_post: bool = False) -> httpx.Response:
        if via_post:
            return self.post(f"{resource_type}/_search", data=params or {},
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
        return self.get(resource_type, params=params)

    def close(self) -> None:
        if self.http is not None:
            self.http.close()


def json_or_none(response: httpx.Response) -> Any:
    """The parsed body, or None when it is empty or not JSON."""
    try:
        return response.json() if response.content else None
    except ValueError:
        return None


def created_id(response: httpx.Response, resource_type: str) -> str | None:
    """The id from a create's Location header ([base]/Type/id[/_history/v])."""
    location = response.headers.get("location", "")
    parts = [p for p in location.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == resource_type:
        return parts[-1]
    return None
