"""Who the suite is to the target, as ``httpx.Auth``: a static token, client id + secret, or SMART
Backend Services (client credentials with a signed JWT assertion); tokens from a token endpoint
are refreshed before they expire, and once more when the target answers 401 to one of them.

The token request is part of the auth flow (httpx's idiom), so it travels the same transports
as every other request (politeness, deadline, 429 handling) without being recorded.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Generator

import httpx

from ..redaction import Redactor
from ._errors import AuthError

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
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
    """Where the bearer token comes from (see the module docstring); shared by the requests of one identity."""

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

    def __repr__(self) -> str:
        return f"TokenSource({'static' if self.static else self.client_id or 'anonymous'})"

    @property
    def refreshable(self) -> bool:
        return not self.static and bool(self.client_id)

    def invalidate(self) -> None:
        self._token, self._expires = None, 0.0

    def current(self) -> str | None:
        """The token to send now, or None when there is none or a fresh one must be fetched."""
        if self.static:
            return self.static
        if self._token and time.monotonic() < self._expires:
            return self._token
        return None

    def assertion(self, redact: Redactor) -> str:
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

    def token_request(self, redact: Redactor) -> httpx.Request:
        """The client-credentials request to the token endpoint (not recorded)."""
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
        return httpx.Request("POST", self.token_url, data=form, headers={"Accept": "application/json"},
                             extensions={"conformance.record": False})

    def accept(self, response: httpx.Response, redact: Redactor) -> str:
        """Take the token from the endpoint's answer (``AuthError`` when it refused)."""
        response.read()
        try:
            body = json.loads(response.content) if response.content else None
        except ValueError:
            body = None
        if response.status_code != 200:
            detail = ""
            if isinstance(body, dict) and body.get("error"):
                detail = f" ({body['error']}: {str(body.get('error_description', ''))[:120]})"
            raise AuthError(f"token endpoint {self.token_url} answered {response.status_code}{detail}")
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


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer`` from a ``TokenSource``; a 401 to a fetched token fetches one fresh token."""

    def __init__(self, tokens: TokenSource, redact: Redactor):
        self.tokens, self.redact = tokens, redact

    def _token(self) -> Generator[httpx.Request, httpx.Response, str | None]:
        token = self.tokens.current()
        if token is None and self.tokens.refreshable:
            token = self.tokens.accept((yield self.tokens.token_request(self.redact)), self.redact)
        return token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = yield from self._token()
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and self.tokens.refreshable:
            response.read()          # the token expired early or was revoked: one fresh one
            self.tokens.invalidate()
            token = yield from self._token()
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
