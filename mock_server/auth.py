"""Bearer tokens and SMART-style scopes, plus the OAuth2 client-credentials token endpoint."""
from __future__ import annotations

import re
import secrets
import threading
import time
from functools import wraps
from typing import Any, Callable, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request

from .deviations import deviates
from .variants import varies
from .http import FhirError
from .urls import base_url

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300
_seen_jti: dict[str, float] = {}
_jti_lock = threading.Lock()
# SMART App Launch scopes, v1 (read | write | *) and v2 (c r u d s, in that order, at least one)
SCOPE_RE = re.compile(r"^(user|system|patient)/([A-Za-z]+|\*)\.(read|write|\*|c?r?u?d?s?)$")
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
# what each interaction needs; "read"/"write" are the v1 words the views may still use
NEEDS = {"read": "r", "search": "s", "create": "c", "update": "u", "delete": "d", "write": "cud"}
FULL_ACCESS = "system/*.*"
SCOPES_SUPPORTED = ["system/*.read", "system/*.write", "system/*.*", "system/*.rs", "system/*.cud", "system/*.cruds",
                    "user/*.read", "user/*.rs"]
F = TypeVar("F", bound=Callable[..., Any])

bp = Blueprint("auth", __name__)


def parse_scopes(text: str) -> list[str]:
    """Split a scope string (space or comma separated); raise ValueError on a malformed scope."""
    scopes = [s for s in re.split(r"[\s,]+", text.strip()) if s]
    bad = [s for s in scopes if not (m := SCOPE_RE.match(s)) or not m.group(3)]
    if bad:
        raise ValueError(f"invalid scope(s): {' '.join(bad)}")
    return scopes


def grants(scope: str) -> tuple[str, str]:
    """(resource type or '*', permission letters) a well-formed v1 or v2 scope grants."""
    m = SCOPE_RE.match(scope)
    if not m or not m.group(3):
        raise ValueError(f"invalid scope: {scope}")
    return m.group(2), V1_PERMISSIONS.get(m.group(3), m.group(3))


def covers(scopes: list[str], rtype: str, mode: str) -> bool:
    """True when the scopes grant ``mode`` on ``rtype``; no scopes = full access.

    ``mode`` is an interaction (read, search, create, update, delete) or v1 ``write``
    (any of create/update/delete, for endpoints that do all three)."""
    if not scopes:
        return True
    needed = NEEDS[mode]
    for scope in scopes:
        scope_type, letters = grants(scope)
        if scope_type in (rtype, "*") and any(p in letters for p in needed):
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


def authenticate() -> list[str] | None:
    """The scopes of the request's bearer token; 401 without a valid one (None: auth-not-enforced)."""
    header = request.headers.get("Authorization", "")
    kind, _, token = header.partition(" ")
    scopes = _token_scopes(token.strip()) if kind.lower() == "bearer" and token.strip() else None
    if varies("open-server"):
        return                      # no access control at all (tokens are ignored)
    if scopes is None:
        if deviates("auth-not-enforced"):
            return None
        raise FhirError(401, "Authentication failed", headers={"WWW-Authenticate": 'Bearer realm="fhir-mock"'})
    return scopes


def authorize(rtype: str, mode: str) -> None:
    """401 without a valid bearer token, 403 when its scopes do not cover the interaction."""
    scopes = authenticate()
    if scopes is None:
        return
    if not covers(scopes, rtype, mode) and not deviates("scopes-not-enforced"):
        raise FhirError(403, "Authorization failed")


PUBLIC_PATHS = frozenset({"/metadata", "/.well-known/smart-configuration", "/auth/token/"})


def authenticate_unrouted() -> None:
    """before_request hook: a request no view will take (unknown path or method) still needs a token
    first, so 404/405 never tell an anonymous client which ids or interactions exist (SPEC §7)."""
    if request.routing_exception is not None and request.path not in PUBLIC_PATHS:
        authenticate()


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


def token_endpoint() -> str:
    return base_url() + "/auth/token/"


@bp.get("/.well-known/smart-configuration")
def smart_configuration() -> Response:
    """SMART App Launch discovery: where the token endpoint is and what it accepts."""
    if varies("open-server"):           # no access control, so nothing to discover
        raise FhirError(404, "This server has no authorization: no SMART configuration", "not-found")
    config = {
        "token_endpoint": "/auth/token/" if deviates("smart-config-token-endpoint-relative") else token_endpoint(),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_post", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "scopes_supported": SCOPES_SUPPORTED,
        "capabilities": ["client-confidential-asymmetric", "client-confidential-symmetric",
                         "permission-v1", "permission-v2"],
    }
    if deviates("smart-config-no-private-key-jwt"):
        config["token_endpoint_auth_methods_supported"].remove("private_key_jwt")
    if deviates("smart-config-no-asymmetric-capability"):
        config["capabilities"].remove("client-confidential-asymmetric")
    return jsonify(config)


def verify_assertion(assertion: str) -> tuple[str | None, str]:
    """SMART Backend Services: (client id, "") for a valid signed assertion, else (None, why)."""
    import jwt

    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None, "client_assertion is not a JWT"
    client_id = unverified.get("iss")
    registered = current_app.config["MOCK"].jwks_clients
    if not isinstance(client_id, str) or client_id not in registered:
        return None, "unknown client (iss)"
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ASSERTION_ALGS:
        return None, f"alg must be one of {', '.join(ASSERTION_ALGS)}"
    keys = [k for k in registered[client_id][0].get("keys", []) if k.get("kid") == kid]
    if not kid or not keys:
        return None, "no registered key with that kid"
    try:
        key = jwt.PyJWK(keys[0], algorithm=alg).key
        claims = jwt.decode(assertion, key, algorithms=[alg], audience=token_endpoint(), issuer=client_id,
                            options={"require": ["iss", "sub", "aud", "exp", "jti"],
                                     "verify_aud": not deviates("token-aud-unchecked"),
                                     "verify_exp": not deviates("token-expired-accepted")})
    except jwt.PyJWTError as exc:
        return None, f"invalid client_assertion: {exc}"
    if claims["sub"] != client_id:
        return None, "sub must equal iss (the client id)"
    now = time.time()
    if claims["exp"] > now + MAX_ASSERTION_LIFETIME + 5 and not deviates("token-exp-limit-unchecked"):
        return None, f"exp more than {MAX_ASSERTION_LIFETIME} s in the future"
    with _jti_lock:
        for old in [j for j, exp in _seen_jti.items() if exp < now]:
            del _seen_jti[old]
        if claims["jti"] in _seen_jti and not deviates("token-jti-replay-accepted"):
            return None, "jti already used (replayed assertion)"
        _seen_jti[claims["jti"]] = claims["exp"]
    return client_id, ""


@bp.post("/auth/token/")
def token() -> Response:
    """Client-credentials grant: form fields, HTTP Basic, or a signed JWT assertion (SMART Backend Services)."""
    form = request.form
    if form.get("grant_type") != "client_credentials":
        if deviates("token-grant-type-invalid-request"):
            return _oauth_error(400, "invalid_request", "only client_credentials is supported")
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    jwt_client = form.get("client_assertion_type") == CLIENT_ASSERTION_TYPE or bool(form.get("client_assertion"))
    if jwt_client:
        if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE and not deviates("token-assertion-type-unchecked"):
            return _oauth_error(400, "invalid_request", f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}")
        client_id, why = verify_assertion(form.get("client_assertion", ""))
        if client_id is None:
            return _oauth_error(400 if varies("token-invalid-client-400") else 401, "invalid_client", why)
        allowed_text = current_app.config["MOCK"].jwks_clients[client_id][1]
    else:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if request.authorization and request.authorization.type == "basic":
            client_id, secret = request.authorization.username, request.authorization.password
        clients = current_app.config["MOCK"].clients
        if not client_id or client_id not in clients or not secrets.compare_digest(clients[client_id][0], secret or ""):
            return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
        allowed_text = clients[client_id][1]
    try:
        allowed = parse_scopes(allowed_text)
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
    bound = FULL_ACCESS if jwt_client and deviates("token-scope-not-bound") else scope
    with current_app.extensions["fhir.store"].write() as conn:
        conn.execute("DELETE FROM access_token WHERE expires_at < ?", (time.time(),))
        conn.execute("INSERT INTO access_token VALUES (?, ?, ?)", (access, bound, time.time() + ttl))
    body = {"access_token": access, "token_type": "Bearer", "expires_in": ttl, "scope": scope}
    if deviates("token-response-no-scope"):
        del body["scope"]
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _scope_within(scope: str, allowed: list[str]) -> bool:
    """Every permission ``scope`` asks for is granted by some allowed scope of the same (or every) type."""
    rtype, letters = grants(scope)
    return all(
        any(a_type == "*" or (a_type == rtype != "*") for a_type, a_letters in map(grants, allowed) if p in a_letters)
        for p in letters
    )
