"""Mock-level checks of the SMART Backend Services, TLS and declaration deviations (imported by
test_mock_deviations.py: one function per deviation, named after it, that passes only when the
deviation is on)."""
from __future__ import annotations

import json
import secrets
import socket
import ssl
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from conftest import auth, patient_group
from keys import pki
from mock_server.server import run_tls_in_thread
from test_mock_export import kickoff, local, wait

__all__ = [
    "smart_config_token_endpoint_relative", "smart_config_no_private_key_jwt",
    "smart_config_no_asymmetric_capability", "token_response_no_scope", "token_grant_type_invalid_request",
    "token_assertion_type_unchecked", "token_aud_unchecked", "token_expired_accepted",
    "token_exp_limit_unchecked", "token_jti_replay_accepted", "token_scope_not_bound",
    "capability_no_instantiates", "export_definition_url_wrong", "export_download_without_token_403",
    "tls_legacy_only", "tls_off",
]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_PATH = "/auth/token/"
CLIENT = "dev-smart-app"


def _config(c) -> dict:
    return c.get("/.well-known/smart-configuration").get_json()


def _signer(c):
    """Register a fresh ES384 client with the app; returns a function building assertions."""
    key = ec.generate_private_key(ec.SECP384R1())
    public = json.loads(ECAlgorithm.to_jwk(key.public_key())) | {"kid": "k1", "alg": "ES384"}
    app = c.application
    app.config["MOCK"] = replace(app.config["MOCK"], jwks_clients={CLIENT: ({"keys": [public]}, "")})
    aud = "http://localhost" + TOKEN_PATH

    def sign(**claims) -> str:
        now = int(time.time())
        body = {"iss": CLIENT, "sub": CLIENT, "aud": aud, "exp": now + 240, "jti": secrets.token_hex(8)} | claims
        return jwt.encode(body, key, algorithm="ES384", headers={"kid": "k1"})

    return sign


def _token(c, assertion: str, **form):
    return c.post(TOKEN_PATH, data={"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                                    "client_assertion": assertion} | form)


def smart_config_token_endpoint_relative(c):
    assert _config(c)["token_endpoint"].startswith("/")


def smart_config_no_private_key_jwt(c):
    assert "private_key_jwt" not in _config(c)["token_endpoint_auth_methods_supported"]


def smart_config_no_asymmetric_capability(c):
    assert "client-confidential-asymmetric" not in _config(c)["capabilities"]


def token_response_no_scope(c):
    r = _token(c, _signer(c)())
    assert r.status_code == 200 and "scope" not in r.get_json()


def token_grant_type_invalid_request(c):
    assert _token(c, _signer(c)(), grant_type="password").get_json()["error"] == "invalid_request"


def token_assertion_type_unchecked(c):
    assert _token(c, _signer(c)(), client_assertion_type="urn:x:other").status_code == 200


def token_aud_unchecked(c):
    assert _token(c, _signer(c)(aud="https://elsewhere.invalid/token")).status_code == 200


def token_expired_accepted(c):
    assert _token(c, _signer(c)(exp=int(time.time()) - 120)).status_code == 200


def token_exp_limit_unchecked(c):
    assert _token(c, _signer(c)(exp=int(time.time()) + 3600)).status_code == 200


def token_jti_replay_accepted(c):
    assertion = _signer(c)()
    assert _token(c, assertion).status_code == 200
    assert _token(c, assertion).status_code == 200


def token_scope_not_bound(c):
    r = _token(c, _signer(c)(), scope="system/*.read")
    assert r.status_code == 200 and r.get_json()["scope"] == "system/*.read"
    created = c.post("/Group", json=patient_group(), headers={"Authorization": f"Bearer {r.get_json()['access_token']}"})
    assert created.status_code == 201


def capability_no_instantiates(c):
    assert "instantiates" not in c.get("/metadata").get_json()


def export_definition_url_wrong(c):
    group = next(r for r in c.get("/metadata").get_json()["rest"][0]["resource"] if r["type"] == "Group")
    assert [o["definition"] for o in group["operation"]] != ["http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"]


def export_download_without_token_403(c):
    manifest = wait(c, kickoff(c).headers["Content-Location"]).get_json()
    assert c.get(local(manifest["output"][0]["url"])).status_code == 403



@contextmanager
def _tls_listener(c) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The test client's configuration served by the TLS listener, with a throw-away certificate."""
    with tempfile.TemporaryDirectory() as tmp:
        certs = pki(Path(tmp))
        config = replace(c.application.config["MOCK"], db=":memory:")
        with run_tls_in_thread(config, str(certs.server_cert), str(certs.server_key)) as url:
            yield url


def _negotiated(url: str) -> str:
    """The TLS version a client willing to speak any version ends up with."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        return tls.version() or ""


def tls_legacy_only(c):
    with _tls_listener(c) as url:
        assert _negotiated(url) in ("TLSv1", "TLSv1.1")


def tls_off(c):
    with _tls_listener(c) as url:
        assert url.startswith("http://")
