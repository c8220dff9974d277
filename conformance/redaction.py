"""Keeping secrets out of every report, by structure first and by value second.

Structural redaction knows where credentials live: headers (``Authorization``,
cookies), form fields and URL query parameters (``client_secret``,
``client_assertion``, ``access_token`` …), JSON members (the same names, and the
private members of a JWK). It runs on each exchange before it is recorded, whatever
the secret's value.

Value redaction (``Redactor``) then replaces known secret values that a server may
echo in free text. It only replaces a value that cannot be an ordinary word of a
report (see ``replaceable``): replacing a one-letter or common-word token (``x``,
``test``) in serialised output corrupted ``summary.json`` keys and every sentence
that happened to contain it. Reports are serialised from data whose strings were
redacted, never by a text replace over the serialised file.
"""

from __future__ import annotations

import json
from typing import Any, Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

REDACTED = "[REDACTED]"
SENSITIVE_HEADERS = {"authorization", "cookie", "set-cookie", "proxy-authorization", "x-api-key"}
SENSITIVE_FIELDS = {"access_token", "refresh_token", "id_token", "client_secret", "client_assertion",
                    "assertion", "password", "code_verifier", "private_key"}
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k", "oth"}
MIN_SECRET = 8      # shorter values are redacted only by structure
MIN_WORDLIKE = 16   # a value of letters only must be this long to be replaced in free text


def replaceable(secret: str) -> bool:
    """True when ``secret`` can be replaced in free text without hitting ordinary words."""
    if len(secret) < MIN_SECRET:
        return False
    return len(secret) >= MIN_WORDLIKE or not secret.isalpha()


def redact_header(name: str, value: str) -> str:
    if name.lower() == "authorization" and " " in value:
        return value.split(" ", 1)[0] + " " + REDACTED      # keep the scheme (Bearer, Basic)
    return REDACTED if name.lower() in SENSITIVE_HEADERS else value


def redact_url(url: str) -> str:
    """A URL with sensitive query parameters and any userinfo password replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:{REDACTED}@{host}" if ":" in userinfo else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in SENSITIVE_FIELDS for k, _ in pairs):
            query = urlencode([(k, REDACTED if k.lower() in SENSITIVE_FIELDS else v) for k, v in pairs], safe="[]")
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_json(value: Any) -> Any:
    """A copy of a JSON value with sensitive members (and JWK private members) replaced."""
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    is_jwk = "kty" in value
    return {k: (REDACTED if (k.lower() in SENSITIVE_FIELDS or (is_jwk and k in PRIVATE_JWK_MEMBERS))
                and isinstance(v, (str, list)) else redact_json(v))
            for k, v in value.items()}


def redact_body(text: str, content_type: str = "") -> str:
    """A request or response body with its credentials replaced (form-encoded or JSON)."""
    if not text:
        return text
    stripped = text.lstrip()
    if "json" in content_type or stripped[:1] in "{[":
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        redacted = redact_json(parsed)
        return text if redacted == parsed else json.dumps(redacted, indent=2, ensure_ascii=False)
    if "x-www-form-urlencoded" in content_type or ("=" in text and " " not in text.strip()):
        pairs = parse_qsl(text, keep_blank_values=True)
        if any(k.lower() in SENSITIVE_FIELDS for k, _ in pairs):
            return urlencode([(k, REDACTED if k.lower() in SENSITIVE_FIELDS else v) for k, v in pairs], safe="[]")
    return text


class Redactor:
    """Replaces every known, replaceable secret value wherever it appears (a server may echo it)."""

    def __init__(self, secrets: Iterable[str]):
        self._secrets: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        if secret and replaceable(secret) and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def tree(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string value (never a key) redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, list):
            return [self.tree(v) for v in value]
        if isinstance(value, dict):
            return {k: self.tree(v) for k, v in value.items()}
        return value
