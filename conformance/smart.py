"""SMART Backend Services as the checks see it: whether the profile applies, the discovery
document, hand-made client assertions (good and deliberately bad) and the TLS version an
origin negotiates.

The checks send their token requests through the run's ``FhirClient`` (``auth=False``), so
politeness, recording and redaction apply to them as to every other request. Only the TLS
probe opens its own connection (one handshake per origin, no HTTP), under the run's
``Politeness`` slot.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from .client import CLIENT_ASSERTION_TYPE, Exchange, FhirClient, TokenSource, json_or_none, load_signing_key

if TYPE_CHECKING:
    from .session import ConformanceRun

PROFILE = "smart-backend"
WELL_KNOWN = ".well-known/smart-configuration"
SMART_SECURITY_SERVICE = "SMART-on-FHIR"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
MAX_ASSERTION_LIFETIME = 300          # seconds: SMART's "no more than five minutes in the future"
MODERN_TLS = ("TLSv1.2", "TLSv1.3")


@dataclass
class Discovery:
    """What ``GET [base]/.well-known/smart-configuration`` answered (once per run)."""

    response: httpx.Response | None
    body: Any
    error: str = ""
    exchange: Exchange | None = None

    @property
    def published(self) -> bool:
        return self.response is not None and self.response.status_code == 200

    @property
    def token_endpoint(self) -> str | None:
        value = self.body.get("token_endpoint") if isinstance(self.body, dict) else None
        return value if isinstance(value, str) else None


_discoveries: dict[int, Discovery] = {}


def discovery(run: "ConformanceRun") -> Discovery:
    """The run's discovery document, fetched once without credentials (it is public by design)."""
    if id(run) not in _discoveries:
        probe = run.new_client(TokenSource(None))
        try:
            response = probe.get(WELL_KNOWN, auth=False, headers={"Accept": "application/json"})
            _discoveries[id(run)] = Discovery(response, json_or_none(response), exchange=probe.recorder.last)
        except httpx.HTTPError as exc:
            _discoveries[id(run)] = Discovery(None, None, f"{type(exc).__name__}: {exc}")
    return _discoveries[id(run)]


def declares_smart_security(statement: dict[str, Any] | None) -> bool:
    """The CapabilityStatement's rest.security names SMART-on-FHIR or carries the oauth-uris extension."""
    for rest in (statement or {}).get("rest", []) if isinstance(statement, dict) else []:
        security = rest.get("security") if isinstance(rest, dict) else None
        if not isinstance(security, dict):
            continue
        codes = {c.get("code") for s in security.get("service", []) if isinstance(s, dict)
                 for c in s.get("coding", []) if isinstance(c, dict)}
        if SMART_SECURITY_SERVICE in codes or any(
                isinstance(e, dict) and e.get("url") == OAUTH_URIS for e in security.get("extension", [])):
            return True
    return False


def skip_reason(run: "ConformanceRun", explicit: bool = False) -> str | None:
    """SPEC §0: smart-backend runs with SMART Backend Services credentials against a target that
    publishes SMART discovery (``explicit``: chosen with --profile, credentials suffice);
    otherwise the reason it is skipped."""
    s = run.settings
    if not (s.client_id and s.private_key):
        return ("no SMART Backend Services credentials given (--client-id with --private-key): the token "
                "endpoint checks need a registered client")
    if explicit or discovery(run).published or declares_smart_security(run.capabilities.statement):
        return None
    return ("the target publishes neither .well-known/smart-configuration nor a SMART security extension in "
            "its CapabilityStatement")


def token_url(run: "ConformanceRun") -> str:
    """Where to post token requests: the configured URL, else discovery, else the CapabilityStatement."""
    found = run.settings.token_url or discovery(run).token_endpoint or run.capabilities.token_url()
    if not found:
        raise RuntimeError("no token endpoint known: set --token-url (discovery and the CapabilityStatement "
                           "name none)")
    return found


@dataclass
class Signer:
    """The configured client's key, to build assertions the checks vary one claim at a time."""

    client_id: str
    key: Any
    alg: str
    kid: str
    aud: str

    @classmethod
    def of(cls, run: "ConformanceRun", aud: str) -> "Signer":
        s = run.settings
        key, alg, kid = load_signing_key(s.private_key, s.key_id, None, run.redact)
        return cls(s.client_id, key, alg, kid, aud)

    def assertion(self, key: Any = None, **claims: Any) -> str:
        """A signed assertion; ``claims`` override the good defaults (``exp`` etc.), ``key`` the signer."""
        import jwt

        now = int(time.time())
        body = {"iss": self.client_id, "sub": self.client_id, "aud": self.aud, "exp": now + 240, "iat": now,
                "jti": secrets.token_urlsafe(16)} | claims
        return jwt.encode(body, key if key is not None else self.key, algorithm=self.alg,
                          headers={"kid": self.kid, "typ": "JWT"})

    def foreign_key(self) -> Any:
        """A key of the same type the client never registered (signatures must not verify)."""
        from cryptography.hazmat.primitives.asymmetric import ec, rsa

        if self.alg == "ES384":
            return ec.generate_private_key(ec.SECP384R1())
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token_form(assertion: str, scope: str | None = None, **overrides: str) -> dict[str, str]:
    form = {"grant_type": "client_credentials", "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion}
    if scope:
        form["scope"] = scope
    return form | overrides


def post_token(fhir: FhirClient, url: str, form: dict[str, str]) -> httpx.Response:
    """One token request, recorded like any other exchange (the assertion is redacted)."""
    fhir.redact.add(form.get("client_assertion", ""))
    return fhir.post(url, data=form, auth=False, headers={"Accept": "application/json",
                                                          "Content-Type": "application/x-www-form-urlencoded"})


def oauth_error(response: httpx.Response) -> str | None:
    body = json_or_none(response)
    return body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else None


# -- TLS ---------------------------------------------------------------------------

def tls_is_modern(version: str | None) -> bool:
    """TLS 1.2 or later (the Bulk Data IG's floor); None (no TLS at all) is not."""
    return version in MODERN_TLS


def probe_context(run: "ConformanceRun") -> ssl.SSLContext:
    """The run's trust settings, but willing to speak every TLS version: the probe must see what an
    old server negotiates instead of failing the handshake."""
    s = run.settings
    ctx = ssl.create_default_context(cafile=s.ca_bundle) if s.ca_bundle else ssl.create_default_context()
    if s.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if s.client_cert:
        ctx.load_cert_chain(s.client_cert, s.client_key)
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:      # a build without security levels: its defaults still show 1.2 vs older
        pass
    return ctx


def negotiated_tls(run: "ConformanceRun", url: str) -> str:
    """The protocol version the origin of ``url`` negotiates, e.g. ``TLSv1.3``.

    Raises ``ssl.SSLError``/``OSError`` when no handshake completes at all."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    run.polite.acquire()
    try:
        with socket.create_connection((host, port), timeout=run.settings.timeout) as raw:
            with probe_context(run).wrap_socket(raw, server_hostname=host) as tls:
                return tls.version() or "unknown"
    finally:
        run.polite.release()


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def new_client_key(directory: Path, kid: str | None = None) -> tuple[Path, Path, str]:
    """A fresh ES384 (P-384) key pair for a throw-away SMART client: (private JWK file, public
    JWKS file, kid). The bundled mock registers the JWKS; the run signs with the private JWK."""
    import json

    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    kid = kid or f"fhirck-{secrets.token_hex(4)}"
    key = ec.generate_private_key(ec.SECP384R1())
    private = json.loads(ECAlgorithm.to_jwk(key)) | {"kid": kid, "alg": "ES384"}
    public = json.loads(ECAlgorithm.to_jwk(key.public_key())) | {"kid": kid, "alg": "ES384", "use": "sig"}
    private_path, jwks_path = directory / "smart-client.jwk.json", directory / "smart-client.jwks.json"
    private_path.write_text(json.dumps(private), encoding="utf-8")
    private_path.chmod(0o600)
    jwks_path.write_text(json.dumps({"keys": [public]}), encoding="utf-8")
    return private_path, jwks_path, kid
