"""Bearer tokens and SMART-style scopes, plus the OAuth2 client-credentials token endpoint."""
from __future__ import annotations

import re
import secrets
import time
from functools import wraps
from typing import Any, Callable, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request

from .deviations import deviates
from .outcomes import FhirError

SCOPE_RE = re.compile(r"^(user|system|patient)/([A-Za-z]+|\*)\.(read|write|\*)$")
FULL_ACCESS = "system/*.*"
F = TypeVar("F", bound=Callable[..., Any])

bp = Blueprint("auth", __name__)


def parse_scopes(text: str) -> list[str]:
    """Split a scope string (space or comma separated); raise ValueError on a malformed scope."""
    scopes = [s for s in re.split(r"[\s,]+", text.strip()) if s]
    bad = [s for s in scopes if not SCOPE_RE.match(s)]
    if bad:
        raise ValueError(f"invalid scope(s): {' '.join(bad)}")
    return scopes


def covers(scopes: list[str], rtype: str, mode: str) -> bool:
    """True when one scope grants ``mode`` (read/write) on ``rtype``; no scopes = full access."""
    if not scopes:
        return True
    for scope in scopes:
        m = SCOPE_RE.match(scope)
        if m and m.group(2) in (rtype, "*") and m.group(3) in (mode, "*"):
            return True
    return False


def _token_scopes(token: str) -> list[str] | None:
    """Scopes of a known, unexpired token, or None."""
    static = current_app.config["MOCK"].tokens
    if token in static:
        return parse_scopes(static[token])
    with current_app.extensions["fhir.store"].read() as conn:
        row = conn.execute("SELECT scopes, expires_at FROM access_token WHERE token = ?", (token,)).fetchone()
    if row is None or row[1] < time.time():
        return None
    return parse_scopes(row[0])


def authorize(rtype: str, mode: str) -> None:
    """401 without a valid bearer token, 403 when its scopes do not cover the interaction."""
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    scopes = _token_scopes(token.strip()) if kind.lower() == "bearer" and token.strip() else None
    if scopes is None:
        if deviates("auth-not-enforced"):
            return
        raise FhirError(401, "Authentication failed", headers={"WWW-Authenticate": 'Bearer realm="fhir-mock"'})
    if not covers(scopes, rtype, mode) and not deviates("scopes-not-enforced"):
        raise FhirError(403, "Authorization failed")


def requires(rtype: str, mode: str) -> Callable[[F], F]:
    """View decorator: authorize the request for ``mode`` on ``rtype`` first."""

    def deco(view: F) -> F:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            authorize(rtype, mode)
            return view(*args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return deco


def _oauth_error(status: int, error: str, description: str) -> Response:
    resp = jsonify({"error": error, "error_description": description})
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post("/auth/token/")
def token() -> Response:
    """Client-credentials grant: form fields or HTTP Basic client authentication."""
    form = request.form
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    client_id, secret = form.get("client_id"), form.get("client_secret")
    if request.authorization and request.authorization.type == "basic":
        client_id, secret = request.authorization.username, request.authorization.password
    clients = current_app.config["MOCK"].clients
    if not client_id or client_id not in clients or not secrets.compare_digest(clients[client_id][0], secret or ""):
        return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
    try:
        allowed = parse_scopes(clients[client_id][1])
        requested = parse_scopes(form.get("scope", ""))
    except ValueError as exc:
        return _oauth_error(400, "invalid_scope", str(exc))
    if not requested:
        granted = allowed or [FULL_ACCESS]
    else:
        refused = [s for s in requested if allowed and not _scope_within(s, allowed)]
        if refused:
            return _oauth_error(400, "invalid_scope", f"scope not allowed for this client: {' '.join(refused)}")
        granted = requested
    ttl = current_app.config["MOCK"].token_ttl
    access = secrets.token_urlsafe(32)
    scope = " ".join(granted)
    with current_app.extensions["fhir.store"].write() as conn:
        conn.execute("DELETE FROM access_token WHERE expires_at < ?", (time.time(),))
        conn.execute("INSERT INTO access_token VALUES (?, ?, ?)", (access, scope, time.time() + ttl))
    resp = jsonify({"access_token": access, "token_type": "Bearer", "expires_in": ttl, "scope": scope})
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _scope_within(scope: str, allowed: list[str]) -> bool:
    m = SCOPE_RE.match(scope)
    assert m
    rtypes = [m.group(2)] if m.group(2) != "*" else ["*"]
    modes = ["read", "write"] if m.group(3) == "*" else [m.group(3)]
    return all(
        any(
            (a := SCOPE_RE.match(s)) and a.group(2) in (t, "*") and a.group(3) in (mode, "*")
            for s in allowed
        )
        for t in rtypes
        for mode in modes
    )
