"""What can go wrong below the FHIR level, each in one line the reader understands."""

from __future__ import annotations

import httpx

DEFAULT_MAX_REDIRECTS = 5


class TargetError(httpx.TransportError):
    """The target misbehaved below the FHIR level (no answer, too slow, too big, …): the check is an error."""

    unanswered = False       # True: no (complete) answer at all, what the circuit breaker counts


def unanswered(message: str) -> TargetError:
    """A ``TargetError`` for a request the target did not answer (timeout, refused, dropped)."""
    error = TargetError(message)
    error.unanswered = True
    return error


class NotJson(TargetError, ValueError):
    """A body that does not parse as JSON (also a ``ValueError``, like json's own)."""


class RateLimited(TargetError):
    """The target kept answering 429 past the run's waiting budget: the check could not be judged."""


class AuthError(RuntimeError):
    """The suite could not obtain a token (wrong credentials, token endpoint refused)."""


def where(request: httpx.Request) -> str:
    """``GET /Group/x`` (the path, shortened): how a request is named in messages."""
    path = request.url.raw_path.decode("ascii", errors="replace")
    return f"{request.method} {path[:120]}"


def mb(n: int) -> str:
    return f"{round(n / (1024 * 1024), 1):g} MB"


def describe_transport_error(exc: BaseException, request: httpx.Request, timeout: float,
                             max_redirects: int = DEFAULT_MAX_REDIRECTS) -> str:
    """One line, in the reader's terms, for an httpx error on ``request``."""
    kind = type(exc).__name__
    text = str(exc)
    if isinstance(exc, httpx.ConnectTimeout):
        cause = f"target did not accept the connection within {timeout:g} s"
    elif isinstance(exc, httpx.TimeoutException):
        cause = f"target did not answer within {timeout:g} s"
    elif isinstance(exc, httpx.ConnectError):
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
        cause = f"transport failure: {text.splitlines()[0][:160] if text else kind}"
    return f"{cause} ({kind}) on {where(request)}"
