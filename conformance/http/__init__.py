"""The only way to the target: a FHIR client in httpx's style.

A request travels ``FhirClient`` (interactions) → ``httpx.Client`` (redirects, ``BearerAuth``
from ``_auth``) → ``PoliteTransport`` (rate, concurrency, 429, circuit breaker) →
``RecordingTransport`` (redacted exchanges) → ``BoundedTransport`` (deadline, body cap,
one-line errors) → the network. Bulk downloads take the same path with a streamed body.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import urljoin

import httpx

from ..brief import Brief
from ..redaction import Redactor
from ._auth import CLIENT_ASSERTION_TYPE, AuthError, BearerAuth, TokenSource, load_signing_key
from ._errors import (DEFAULT_MAX_REDIRECTS, NotJson, RateLimited, TargetError,
                      describe_transport_error, where)
from ._ratelimit import judge_retry_after, retry_after_seconds
from ._recording import BODY_PREVIEW, Exchange, Recorder, RecordingTransport
from ._transport import DEFAULT_MAX_BODY, BoundedTransport, Politeness, PoliteTransport

__all__ = ["AuthError", "BODY_PREVIEW", "CLIENT_ASSERTION_TYPE", "Exchange", "FhirClient", "NotJson", "Politeness", "RateLimited",
           "Recorder", "Redactor", "TargetError", "TokenSource", "created_id", "json_or_none", "judge_retry_after",
           "load_signing_key", "not_json_problem", "open_http", "retry_after_seconds", "tls_context"]

FHIR_JSON = "application/fhir+json"


def tls_context(ca_bundle: str | None = None, client_cert: str | None = None, client_key: str | None = None,
                insecure: bool = False) -> ssl.SSLContext | bool:
    """httpx ``verify``: a context with the CA bundle and client certificate (mutual TLS), or
    verification switched off (``insecure``, which the report marks loudly)."""
    if not (ca_bundle or client_cert or insecure):
        return True
    ctx = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key)
    return ctx


def open_http(polite: Politeness, recorder: Recorder, redact: Redactor, *, timeout: float = 30.0,
              max_body: int = DEFAULT_MAX_BODY, max_redirects: int = DEFAULT_MAX_REDIRECTS, verify: Any = True,
              network: httpx.BaseTransport | None = None) -> httpx.Client:
    """The run's one ``httpx.Client``: its connection pool behind the wrapping transports."""
    network = network or httpx.HTTPTransport(verify=verify)
    transport = PoliteTransport(RecordingTransport(BoundedTransport(network, timeout, max_body, redact),
                                                   recorder, redact), polite)
    return httpx.Client(transport=transport, timeout=timeout, follow_redirects=True, max_redirects=max_redirects)


@dataclass(repr=False)
class FhirClient(Brief):
    """A FHIR REST client bound to one base URL and one identity (see the module docstring)."""

    base_url: str
    tokens: TokenSource
    recorder: Recorder = field(default_factory=Recorder)
    redact: Redactor = field(default_factory=lambda: Redactor([]))
    timeout: float = 30.0
    http: httpx.Client | None = None
    polite: Politeness = field(default_factory=Politeness)
    max_body: int = DEFAULT_MAX_BODY
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    verify: Any = True
    network: httpx.BaseTransport | None = None     # what the wrapping transports send through (tests: a fake)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.http is None:
            self.http = open_http(self.polite, self.recorder, self.redact, timeout=self.timeout,
                                  max_body=self.max_body, max_redirects=self.max_redirects, verify=self.verify,
                                  network=self.network)
        for secret in (self.tokens.static, self.tokens.client_secret):
            if secret:
                self.redact.add(secret)
        self.auth = BearerAuth(self.tokens, self.redact)

    def __repr__(self) -> str:
        return f"FhirClient({self.base_url!r})"

    def with_token(self, token: str | None) -> "FhirClient":
        """The same target seen with another identity (or none: token=None)."""
        return FhirClient(self.base_url, TokenSource(token), self.recorder, self.redact, self.timeout, self.http,
                          self.polite, self.max_body, self.max_redirects, self.verify)

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.base_url + "/", path.lstrip("/"))

    def request(self, method: str, path: str, *, json_body: Any = None, content: bytes | str | None = None,
                params: Any = None, data: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, auth: bool = True) -> httpx.Response:
        """One interaction; a transport failure or a 2xx body that is no JSON is a one-line ``TargetError``."""
        all_headers = {"Accept": FHIR_JSON}
        if json_body is not None:
            content = json.dumps(json_body)
            all_headers["Content-Type"] = FHIR_JSON
        all_headers.update(headers or {})
        request = self.http.build_request(method, self.url(path), content=content, params=params, data=data,
                                          headers=all_headers)
        response = self._send(request, auth)
        problem = not_json_problem(response, self.redact(where(request)))
        if problem:
            raise NotJson(problem)
        return response

    def stream(self, path: str, *, accept: str, auth: bool = True) -> httpx.Response:
        """A GET whose body the caller streams (bulk files: any size, no body cap); close it after."""
        request = self.http.build_request("GET", self.url(path), headers={"Accept": accept},
                                          extensions={"conformance.stream": True})
        return self._send(request, auth, stream=True)

    def _send(self, request: httpx.Request, auth: bool, stream: bool = False) -> httpx.Response:
        try:
            return self.http.send(request, auth=self.auth if auth else None, stream=stream)
        except TargetError:
            raise
        except httpx.HTTPError as exc:            # raised above the transports: a redirect loop
            message = self.redact(describe_transport_error(exc, request, self.timeout, self.max_redirects))
            self.polite.failed(message)
            raise TargetError(message) from None

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


def not_json_problem(response: httpx.Response, name: str) -> str | None:
    """A successful answer that is HTML, or claims JSON and is not, is no FHIR answer at all.

    Error answers (4xx/5xx) are left to the checks (a missing OperationOutcome is a
    conformance failure), and so are NDJSON and other non-JSON media types (bulk files).
    """
    if not 200 <= response.status_code < 300 or not response.content.strip():
        return None
    ctype = response.headers.get("content-type", "").lower()
    looks_html = "html" in ctype or (not ctype and response.content.lstrip()[:1] == b"<")
    claims_json = "json" in ctype and "ndjson" not in ctype
    if not (looks_html or claims_json):
        return None
    if claims_json:
        try:
            json.loads(response.content)
            return None
        except ValueError:
            pass
    return (f"target answered {response.status_code} with a body that is not JSON "
            f"({ctype or 'no Content-Type'}, {len(response.content)} bytes) on {name}")



def json_or_none(response: httpx.Response) -> Any:
    """The parsed body, or None when it is empty or not JSON."""
    try:
        return json.loads(response.content) if response.content else None
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
