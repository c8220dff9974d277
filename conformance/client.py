"""The FHIR client every check uses: httpx underneath, every exchange recorded.

Recording is what makes a failure actionable: the report shows the requests and
responses that led to it, and a curl command reproducing the failing request with
the token replaced by an environment variable reference (Schemathesis-style).
"""

from __future__ import annotations

import email.utils
import json
import queue
import shlex
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass, field
import secrets
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urljoin

import httpx

from .redaction import Redactor, redact_body, redact_header, redact_url  # noqa: F401 (Redactor re-exported)

FHIR_JSON = "application/fhir+json"
BODY_PREVIEW = 8_000
HEADER_GRACE = 0.25      # seconds past --timeout before a trickled header is cut off
DEFAULT_MAX_BODY = 20 * 1024 * 1024
DEFAULT_MAX_REDIRECTS = 5
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class TargetError(httpx.TransportError):
    """The target misbehaved below the FHIR level: no answer, too slow, too big, a redirect
    loop, a dropped connection, a body that is not JSON, a rate limit too long to wait for.

    A subclass of ``httpx.TransportError`` so code catching ``httpx.HTTPError`` keeps
    working; its message is one line naming the cause and the request. A check that
    raises it is reported as an *error* (never a pass), with that line and no traceback.
    """


class NotJson(TargetError, ValueError):
    """A response body that does not parse as JSON (also a ``ValueError``, like json's own)."""


def _mb(n: int) -> str:
    return f"{round(n / (1024 * 1024), 1):g} MB"


def _where(request: httpx.Request) -> str:
    path = request.url.raw_path.decode("ascii", errors="replace")
    return f"{request.method} {path[:120]}"


def describe_transport_error(exc: BaseException, request: httpx.Request, timeout: float,
                             max_redirects: int = DEFAULT_MAX_REDIRECTS) -> str:
    """One line, in the reader's terms, for an httpx error on ``request``."""
    kind = type(exc).__name__
    where = _where(request)
    if isinstance(exc, httpx.ConnectTimeout):
        cause = f"target did not accept the connection within {timeout:g} s"
    elif isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout, httpx.TimeoutException)):
        cause = f"target did not answer within {timeout:g} s"
    elif isinstance(exc, httpx.ConnectError):
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate" in text.lower():
            cause = f"TLS certificate not trusted ({text.splitlines()[0][:160]})"
        elif "SSL" in text or "TLS" in text or "handshake" in text.lower():
            cause = f"TLS handshake failed ({text.splitlines()[0][:160]})"
        else:
            cause = "target refused the connection or cannot be reached"
    elif isinstance(exc, httpx.TooManyRedirects):
        cause = f"target redirected more than {max_redirects} times (redirect loop?)"
    elif isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        cause = "target dropped the connection or broke HTTP mid-response"
    else:
        cause = f"transport failure: {str(exc).splitlines()[0][:160] if str(exc) else kind}"
    return f"{cause} ({kind}) on {where}"


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class Politeness:
    """What keeps the suite polite and bounded, shared by every client of a run.

    * a global token bucket (``max_rps`` requests per second, monotonic clock; burst 1),
    * a concurrency cap (at most ``max_concurrency`` requests in flight),
    * a shared "not before" instant set by a ``429 Retry-After``, honoured by every request,
    * a circuit breaker: after ``max_consecutive_failures`` transport failures in a row the
      target is treated as gone and further requests fail at once (the run stays within
      its timeout budget instead of waiting out every remaining request).
    """

    def __init__(self, max_rps: float | None = None, max_concurrency: int = 4, max_retry_wait: float = 30.0,
                 max_retries: int = 3, max_consecutive_failures: int = 5,
                 clock: Any = time.monotonic, sleep: Any = time.sleep):
        self.max_rps = max_rps if max_rps and max_rps > 0 else None
        self.max_retry_wait, self.max_retries = max_retry_wait, max_retries
        self.max_consecutive_failures = max_consecutive_failures
        self._slots = threading.BoundedSemaphore(max(1, max_concurrency))
        self._lock = threading.Lock()
        self._next = 0.0
        self._clock, self._sleep = clock, sleep
        self.failures = 0
        self.last_failure = ""

    def acquire(self) -> None:
        """Block until this request may be sent (rate, 429 waits); then take a concurrency slot."""
        self._slots.acquire()
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            if self.max_rps:
                self._next = start + 1.0 / self.max_rps
            wait = start - now
        if wait > 0:
            self._sleep(wait)

    def release(self) -> None:
        self._slots.release()

    def defer(self, seconds: float) -> None:
        """Nobody sends before ``seconds`` from now (a 429 Retry-After applies to the whole run)."""
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)

    def succeeded(self) -> None:
        self.failures = 0

    def failed(self, why: str) -> None:
        self.failures += 1
        self.last_failure = why

    @property
    def tripped(self) -> bool:
        return self.max_consecutive_failures > 0 and self.failures >= self.max_consecutive_failures


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
    seq: int = 0                 # order within the run (the recorder numbers exchanges)

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


class _Job:
    """One send handed to a sender thread: its outcome and when it is done."""

    def __init__(self, work: Callable[[], Any]):
        self.work, self.done, self.outcome = work, threading.Event(), {}


class _Senders:
    """Daemon threads that send requests, reused from one request to the next.

    A thread stuck on a trickling target is not waited for: the caller gives up at its
    deadline and the next request takes another idle thread (or a new one). A thread
    returns to the idle list once its send is over, however it ended.
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


_SENDERS = _Senders()


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


_redact_header = redact_header   # the name bulk.py imports


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


class AuthError(RuntimeError):
    """The suite could not obtain a token (wrong credentials, token endpoint refused)."""


PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")


def load_signing_key(path: str, key_id: str | None = None, alg: str | None = None,
                     redact: "Redactor | None" = None) -> tuple[Any, str, str]:
    """A private key for SMART Backend Services from a JWK (or JWKS) or PEM file: (key, alg, kid).

    RSA keys sign RS384, P-384 EC keys ES384 (the two algorithms SMART requires servers to
    support). Every piece of key material is handed to the redactor before anything else.
    """
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthError(f"cannot read private key file {path}: {exc.strerror}") from None
    if redact is not None:
        redact.add(text.strip())
        for line in text.splitlines():
            if len(line.strip()) >= 16 and not line.startswith("-----"):
                redact.add(line.strip())
    kid = key_id
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise AuthError(f"{path}: neither a JWK (JSON) nor a PEM private key") from None
        if "keys" in data:
            private = [k for k in data["keys"] if isinstance(k, dict) and "d" in k]
            if key_id:
                private = [k for k in private if k.get("kid") == key_id] or private
            if not private:
                raise AuthError(f"{path}: the JWKS holds no private key")
            data = private[0]
        if redact is not None:
            for member in PRIVATE_JWK_MEMBERS:
                if isinstance(data.get(member), str):
                    redact.add(data[member])
        if "d" not in data:
            raise AuthError(f"{path}: the JWK is a public key; a private key is needed to sign")
        try:
            key = jwt.PyJWK(data).key
        except (jwt.PyJWKError, ValueError, KeyError) as exc:
            raise AuthError(f"{path}: unusable JWK ({exc})") from None
        kid = kid or data.get("kid")
        alg = alg or data.get("alg")
    else:
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            raise AuthError(f"{path}: not a readable unencrypted PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        alg = alg or "RS384"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        if key.curve.name != "secp384r1":
            raise AuthError(f"{path}: ES384 needs a P-384 key, this one is {key.curve.name}")
        alg = alg or "ES384"
    else:
        raise AuthError(f"{path}: only RSA (RS384) and P-384 EC (ES384) keys are supported")
    if alg not in ("RS384", "ES384"):
        raise AuthError(f"{path}: algorithm {alg} not supported (RS384 or ES384)")
    if not kid:
        raise AuthError(f"{path}: a key id is needed (set key_id / --key-id, or 'kid' in the JWK)")
    return key, alg, kid


class TokenSource:
    """Where the bearer token comes from: a static token, client id + secret, or SMART Backend
    Services (client credentials with a signed JWT assertion). Tokens from a token endpoint are
    refreshed before they expire, and once more when the target answers 401 to one of them."""

    def __init__(self, token: str | None = None, client_id: str | None = None,
                 client_secret: str | None = None, token_url: str | None = None, *,
                 private_key: str | None = None, key_id: str | None = None, alg: str | None = None,
                 scope: str | None = None, discover: Callable[[], str | None] | None = None):
        self.static = token
        self.client_id, self.client_secret, self.token_url = client_id, client_secret, token_url
        self.private_key, self.key_id, self.alg, self.scope = private_key, key_id, alg, scope
        self.discover = discover
        self._signing: tuple[Any, str, str] | None = None
        self._token: str | None = None
        self._expires = 0.0
        self.fetched = 0                 # how many tokens were obtained (refreshes show here)

    @property
    def refreshable(self) -> bool:
        return not self.static and bool(self.client_id)

    def invalidate(self) -> None:
        self._token, self._expires = None, 0.0

    def assertion(self, redact: "Redactor") -> str:
        """A fresh signed client assertion (RFC 7523 / SMART Backend Services)."""
        import jwt

        if self._signing is None:
            self._signing = load_signing_key(self.private_key, self.key_id, self.alg, redact)
        key, alg, kid = self._signing
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.token_url,
                  "exp": now + 240, "iat": now, "jti": secrets.token_urlsafe(16)}
        signed = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "JWT"})
        redact.add(signed)
        return signed

    def get(self, http: httpx.Client, redact: "Redactor",
            send: Callable[[httpx.Request], httpx.Response] | None = None) -> str | None:
        if self.static:
            return self.static
        if not self.client_id:
            return None
        if self._token and time.monotonic() < self._expires:
            return self._token
        if not self.token_url and self.discover is not None:
            self.token_url = self.discover()
        if not self.token_url:
            raise AuthError("client credentials given but no token URL (set token_url; the target's "
                            ".well-known/smart-configuration and CapabilityStatement name none)")
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        if self.private_key:
            form.update(client_assertion_type=CLIENT_ASSERTION_TYPE, client_assertion=self.assertion(redact))
        else:
            form.update(client_id=self.client_id, client_secret=self.client_secret or "")
        request = http.build_request("POST", self.token_url, data=form, headers={"Accept": "application/json"})
        response = send(request) if send is not None else http.send(request)
        if response.status_code != 200:
            body = json_or_none(response)
            detail = ""
            if isinstance(body, dict) and body.get("error"):
                detail = f" ({body['error']}: {str(body.get('error_description', ''))[:120]})"
            raise AuthError(f"token endpoint {self.token_url} answered {response.status_code}{detail}")
        body = json_or_none(response)
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise AuthError(f"token endpoint {self.token_url} answered without an access_token")
        self._token = body["access_token"]
        redact.add(self._token)
        try:
            lifetime = float(body.get("expires_in", 300))
        except (TypeError, ValueError):
            lifetime = 300.0
        self._expires = time.monotonic() + lifetime - min(30.0, lifetime * 0.1)
        self.fetched += 1
        return self._token


@dataclass
class FhirClient:
    """A FHIR REST client bound to one base URL and one identity.

    Every request goes through the run's ``Politeness`` (rate limit, concurrency cap, 429
    waits, circuit breaker), reads the body with a size cap and a deadline, and turns
    every transport failure into a one-line ``TargetError``.
    """

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

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        if self.http is None:
            self.http = httpx.Client(timeout=self.timeout, follow_redirects=True,
                                     max_redirects=self.max_redirects, verify=self.verify)
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
                          self.timeout, self.http, self.polite, self.max_body, self.max_redirects, self.verify)

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.base_url + "/", path.lstrip("/"))

    def request(self, method: str, path: str, *, json_body: Any = None, content: bytes | str | None = None,
                params: Any = None, data: Mapping[str, Any] | None = None,
                headers: Mapping[str, str] | None = None, auth: bool = True) -> httpx.Response:
        if json_body is not None:
            content = json.dumps(json_body)
        refreshed = False
        for attempt in range(self.polite.max_retries + 1):
            all_headers = {"Accept": FHIR_JSON}
            if json_body is not None:
                all_headers["Content-Type"] = FHIR_JSON
            all_headers.update(headers or {})
            if auth:
                token = self.tokens.get(self.http, self.redact, lambda r: self.send(r, record=False))
                if token:
                    all_headers["Authorization"] = f"Bearer {token}"
            request = self.http.build_request(method, self.url(path), content=content, params=params,
                                              data=data, headers=all_headers)
            response = self.send(request, record=True)
            if response.status_code == 401 and auth and self.tokens.refreshable and not refreshed:
                refreshed = True             # the token expired early or was revoked: one fresh one
                self.tokens.invalidate()
                continue
            if response.status_code != 429:
                return response
            self._wait_for_429(response, request, attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait_for_429(self, response: httpx.Response, request: httpx.Request, attempt: int) -> None:
        wait = retry_after_seconds(response.headers.get("retry-after"))
        where = _where(request)
        if wait is None:
            wait = min(2.0 ** attempt, self.polite.max_retry_wait)
        if wait > self.polite.max_retry_wait:
            raise TargetError(f"target rate-limited the suite (429) and asked to wait {wait:.0f} s, more than "
                              f"the {self.polite.max_retry_wait:g} s cap, on {self.redact(where)}")
        if attempt >= self.polite.max_retries:
            raise TargetError(f"target still answered 429 after {attempt} waits on {self.redact(where)}")
        self.polite.defer(wait)

    def send(self, request: httpx.Request, record: bool = True) -> httpx.Response:
        """Send one request politely; the body is read with a size cap and a deadline."""
        where = self.redact(_where(request))
        if self.polite.tripped:
            raise TargetError(f"target unresponsive: {self.polite.failures} requests in a row failed "
                              f"(last: {self.polite.last_failure}); not sent: {where}")
        self.polite.acquire()
        started = time.perf_counter()
        try:
            response = self._send_capped(request, started)
        except TargetError as exc:
            if record:
                self.recorder.add(self._exchange(request, None, started, error=str(exc)))
            raise
        except httpx.HTTPError as exc:
            message = self.redact(describe_transport_error(exc, request, self.timeout, self.max_redirects))
            self.polite.failed(message)
            if record:
                self.recorder.add(self._exchange(request, None, started, error=message))
            raise TargetError(message) from None
        finally:
            self.polite.release()
        self.polite.succeeded()
        _guard_json(response, where)
        if record:
            self.recorder.add(self._exchange(request, response, started))
        problem = _not_json_problem(response, where)
        if problem:
            raise NotJson(problem)
        return response

    def _send_capped(self, request: httpx.Request, started: float) -> httpx.Response:
        deadline = started + self.timeout
        response = self._send_by(request, deadline)
        chunks: list[bytes] = []
        try:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_body:
                raise TargetError(f"response body of {_mb(int(declared))} exceeds the {_mb(self.max_body)} cap "
                                  f"(Content-Length) on {self.redact(_where(request))}")
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_body:
                    raise TargetError(f"response body exceeds the {_mb(self.max_body)} cap "
                                      f"(read {_mb(size)} so far) on {self.redact(_where(request))}")
                if time.perf_counter() > deadline:
                    raise TargetError(f"target did not finish answering within {self.timeout:g} s "
                                      f"(slow body, {size} bytes so far) on {self.redact(_where(request))}")
                chunks.append(chunk)
        finally:
            response.close()
        response._content = b"".join(chunks)      # what response.read() would have set
        return response

    def _send_by(self, request: httpx.Request, deadline: float) -> httpx.Response:
        """``http.send`` with a wall-clock deadline for the response headers.

        httpx's timeouts apply to each read, so a target that trickles its headers a byte
        at a time would hold a check forever. The send runs on a reused daemon sender thread
        (starting a thread per request cost more than many requests on a loaded machine); past
        the deadline the socket it opened (seen through httpcore's trace hook) is closed, which
        frees the thread, and the check gets a one-line TargetError.
        """
        sockets: list[Any] = []

        def trace(event: str, info: dict[str, Any]) -> None:
            if event == "connection.connect_tcp.complete" and info.get("return_value") is not None:
                sockets.append(info["return_value"])

        request.extensions["trace"] = trace
        job = _SENDERS.submit(lambda: self.http.send(request, stream=True))
        # a little grace, so that httpx's own per-read timeout (a more precise cause) wins where it applies
        if not job.done.wait(max(0.0, deadline - time.perf_counter()) + HEADER_GRACE):
            for stream in sockets:
                try:
                    stream.close()
                except Exception:  # noqa: BLE001 - best effort: the sender thread is a daemon anyway
                    pass
            message = (f"target did not answer within {self.timeout:g} s (headers still incomplete) "
                       f"on {self.redact(_where(request))}")
            self.polite.failed(message)
            raise TargetError(message)
        outcome = job.outcome
        if "error" in outcome:
            raise outcome["error"]
        return outcome["response"]

    def _exchange(self, request: httpx.Request, response: httpx.Response | None, started: float,
                  error: str | None = None) -> Exchange:
        req_headers = {k: _redact_header(k, v) for k, v in request.headers.items()}
        body = request.content.decode("utf-8", errors="replace") if request.content else ""
        resp_headers = dict(response.headers) if response is not None else {}
        preview = _preview(response.content, resp_headers) if response is not None else ""
        return Exchange(
            method=request.method, url=self.redact(redact_url(str(request.url))),
            request_headers={k: self.redact(v) for k, v in req_headers.items()},
            request_body=self.redact(redact_body(body[:BODY_PREVIEW], request.headers.get("content-type", ""))),
            status=response.status_code if response is not None else None,
            response_headers={k: self.redact(redact_header(k, v)) for k, v in resp_headers.items()},
            response_body=self.redact(redact_body(preview, resp_headers.get("content-type", ""))),
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


def _not_json_problem(response: httpx.Response, where: str) -> str | None:
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
            f"({ctype or 'no Content-Type'}, {len(response.content)} bytes) on {where}")


def _guard_json(response: httpx.Response, where: str) -> None:
    """``response.json()`` on a body that is not JSON raises a one-line ``NotJson``."""
    original = response.json

    def json_checked(**kwargs: Any) -> Any:
        try:
            return original(**kwargs)
        except ValueError:
            ctype = response.headers.get("content-type", "no Content-Type")
            raise NotJson(f"target answered {response.status_code} with a body that is not JSON "
                          f"({ctype}, {len(response.content)} bytes) on {where}") from None

    response.json = json_checked  # type: ignore[method-assign]


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
