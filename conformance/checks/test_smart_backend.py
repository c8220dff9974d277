"""SMART Backend Services: the discovery document and the token endpoint, good and bad
requests (SMART App Launch 2 backend-services.html, conformance.html,
client-confidential-asymmetric.html; RFC 6749 §5.2; RFC 7523)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from conformance import smart
from conformance.client import FhirClient, created_id, json_or_none
from conformance.markers import check, needs, profile
from conformance.rules.group import PATIENT_GROUP, group_body
from conformance.session import ConformanceRun
from conformance.target import Ledger, TargetData
from conformance.verdicts import expect

pytestmark = profile(smart.PROFILE)

INVALID_CLIENT_STATUSES = (400, 401)      # RFC 6749 §5.2: 400, or 401 for a failed client authentication
READ_ONLY_SCOPES = ("system/*.rs", "system/*.read")
WRITE_LETTERS = set("cud")


@pytest.fixture(scope="module")
def signer(conformance_run: ConformanceRun) -> smart.Signer:
    return smart.Signer.of(conformance_run, smart.token_url(conformance_run))


def _discovered(run: ConformanceRun) -> dict[str, Any]:
    body = smart.discovery(run).body
    return body if isinstance(body, dict) else {}


def _scope(run: ConformanceRun) -> str:
    """What to ask for: the configured scope, else the first system scope advertised, else system/*.read."""
    if run.settings.scope:
        return run.settings.scope
    advertised = _discovered(run).get("scopes_supported")
    system = [s for s in advertised if isinstance(s, str) and s.startswith("system/")] \
        if isinstance(advertised, list) else []
    return system[0] if system else "system/*.read"


def _strings(value: Any) -> list[str] | None:
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


@check("smart-discovery", "SMART-DISCOVERY", "SMART-DISCOVERY-BACKEND", "SMART-DISCOVERY-ASYMMETRIC")
def test_discovery_document(conformance_run: ConformanceRun):
    found = smart.discovery(conformance_run)
    exchange = found.exchange
    if found.response is None:
        expect("SMART-DISCOVERY", False, f"GET {smart.WELL_KNOWN} failed: {found.error}")
    status, ctype = found.response.status_code, found.response.headers.get("content-type", "")
    expect("SMART-DISCOVERY", status == 200 and "json" in ctype and isinstance(found.body, dict),
           f"GET {smart.WELL_KNOWN} answered {status} {ctype!r}, expected 200 with a JSON object", exchange)
    body = found.body
    endpoint = body.get("token_endpoint")
    expect("SMART-DISCOVERY", isinstance(endpoint, str) and endpoint.startswith(("https://", "http://"))
           and bool(smart.origin(endpoint).split("://", 1)[1]),
           f"token_endpoint is {endpoint!r}, expected an absolute URL", exchange)
    grants = _strings(body.get("grant_types_supported"))
    expect("SMART-DISCOVERY", grants is not None and "client_credentials" in grants,
           f"grant_types_supported is {body.get('grant_types_supported')!r}, expected an array with "
           "client_credentials", exchange)
    capabilities = _strings(body.get("capabilities"))
    expect("SMART-DISCOVERY", capabilities is not None,
           f"capabilities is {body.get('capabilities')!r}, expected an array of strings", exchange)

    problems = []
    if _strings(body.get("scopes_supported")) is None:
        problems.append(f"scopes_supported is {body.get('scopes_supported')!r}, expected an array of scopes")
    methods = _strings(body.get("token_endpoint_auth_methods_supported")) or []
    if "private_key_jwt" not in methods:
        problems.append(f"token_endpoint_auth_methods_supported {methods} lacks private_key_jwt")
    algs = _strings(body.get("token_endpoint_auth_signing_alg_values_supported")) or []
    if not {"RS384", "ES384"} & set(algs):
        problems.append(f"token_endpoint_auth_signing_alg_values_supported {algs} has neither RS384 nor ES384")
    expect("SMART-DISCOVERY-BACKEND", not problems, "; ".join(problems), exchange)
    expect("SMART-DISCOVERY-ASYMMETRIC", "client-confidential-asymmetric" in (capabilities or []),
           f"capabilities {capabilities} lack client-confidential-asymmetric", exchange)


@check("smart-token-response", "SMART-TOKEN-RESPONSE")
def test_token_response_fields(conformance_run: ConformanceRun, fhir: FhirClient, signer: smart.Signer):
    scope = _scope(conformance_run)
    response = smart.post_token(fhir, signer.aud, smart.token_form(signer.assertion(), scope))
    exchange = fhir.recorder.last
    body = json_or_none(response)
    expect("SMART-TOKEN-RESPONSE", response.status_code == 200 and isinstance(body, dict),
           f"a valid token request (scope {scope!r}) answered {response.status_code} "
           f"{smart.oauth_error(response) or ''}, expected 200 with a JSON object", exchange)
    problems = []
    if not (isinstance(body.get("access_token"), str) and body["access_token"]):
        problems.append("access_token missing or empty")
    else:
        fhir.redact.add(body["access_token"])
    if not (isinstance(body.get("token_type"), str) and body["token_type"].lower() == "bearer"):
        problems.append(f"token_type is {body.get('token_type')!r}, expected bearer")
    if not (isinstance(body.get("expires_in"), (int, float)) and not isinstance(body.get("expires_in"), bool)
            and body["expires_in"] > 0):
        problems.append(f"expires_in is {body.get('expires_in')!r}, expected a positive number of seconds")
    if not isinstance(body.get("scope"), str):
        problems.append(f"scope is {body.get('scope')!r}, expected the granted scope string")
    expect("SMART-TOKEN-RESPONSE", not problems, "token response: " + "; ".join(problems), exchange)


def _expect_oauth_error(fhir: FhirClient, response, requirement: str, statuses: tuple[int, ...],  # type: ignore[no-untyped-def]
                        error: str, what: str) -> None:
    got = smart.oauth_error(response)
    expect(requirement, response.status_code in statuses and got == error,
           f"{what}: answered {response.status_code} with error {got!r}, expected "
           f"{' or '.join(map(str, statuses))} with error {error!r}", fhir.recorder.last)


@check("smart-token-bad-grant-type", "SMART-TOKEN-GRANT-TYPE")
def test_unsupported_grant_type(fhir: FhirClient, signer: smart.Signer):
    form = smart.token_form(signer.assertion(), grant_type="urn:fhirck:not-a-grant-type")
    response = smart.post_token(fhir, signer.aud, form)
    _expect_oauth_error(fhir, response, "SMART-TOKEN-GRANT-TYPE", (400,), "unsupported_grant_type",
                        "a token request with an unknown grant_type")


@check("smart-token-bad-assertion-type", "SMART-TOKEN-ASSERTION-TYPE")
def test_invalid_client_assertion_type(fhir: FhirClient, signer: smart.Signer):
    form = smart.token_form(signer.assertion(), client_assertion_type="urn:fhirck:not-an-assertion-type")
    response = smart.post_token(fhir, signer.aud, form)
    _expect_oauth_error(fhir, response, "SMART-TOKEN-ASSERTION-TYPE", (400,), "invalid_request",
                        "a token request with an unknown client_assertion_type")


BAD_ASSERTIONS = {   # case -> (how to build it, what it is)
    "not-a-jwt": (lambda s: "not-a-jwt." + secrets.token_urlsafe(12), "a client_assertion that is not a JWT"),
    "unregistered-key": (lambda s: s.assertion(key=s.foreign_key()),
                         "an assertion signed by a key the client never registered (same kid)"),
    "wrong-aud": (lambda s: s.assertion(aud=s.aud.rstrip("/") + "/not-the-token-endpoint"),
                  "an assertion whose aud is not the token endpoint"),
    "expired": (lambda s: s.assertion(exp=int(time.time()) - 120, iat=int(time.time()) - 420),
                "an assertion that expired two minutes ago"),
}


@check("smart-token-invalid-client", "SMART-TOKEN-INVALID-CLIENT")
@pytest.mark.parametrize("case", sorted(BAD_ASSERTIONS))
def test_bad_assertion_is_invalid_client(case: str, fhir: FhirClient, signer: smart.Signer):
    build, what = BAD_ASSERTIONS[case]
    response = smart.post_token(fhir, signer.aud, smart.token_form(build(signer)))
    _expect_oauth_error(fhir, response, "SMART-TOKEN-INVALID-CLIENT", INVALID_CLIENT_STATUSES, "invalid_client",
                        what)


@check("smart-token-exp-too-far", "SMART-TOKEN-EXP-LIMIT")
def test_assertion_expiring_too_late_is_refused(fhir: FhirClient, signer: smart.Signer):
    far = int(time.time()) + 3600
    response = smart.post_token(fhir, signer.aud, smart.token_form(signer.assertion(exp=far)))
    _expect_oauth_error(fhir, response, "SMART-TOKEN-EXP-LIMIT", INVALID_CLIENT_STATUSES, "invalid_client",
                        "an assertion whose exp is an hour ahead (at most five minutes allowed)")


@check("smart-token-jti-replay", "SMART-TOKEN-JTI-REPLAY")
def test_replayed_assertion_is_refused(conformance_run: ConformanceRun, fhir: FhirClient, signer: smart.Signer):
    form = smart.token_form(signer.assertion(), _scope(conformance_run))
    first = smart.post_token(fhir, signer.aud, form)
    if first.status_code != 200:
        raise RuntimeError(f"a fresh assertion was refused ({first.status_code} "
                           f"{smart.oauth_error(first) or ''}): replay cannot be tested (see smart-token-response)")
    replay = smart.post_token(fhir, signer.aud, form)
    _expect_oauth_error(fhir, replay, "SMART-TOKEN-JTI-REPLAY", INVALID_CLIENT_STATUSES, "invalid_client",
                        "the same assertion (same jti) sent a second time")


def _grants_write(scope: str) -> bool:
    for item in scope.split():
        _, _, permission = item.partition(".")
        if permission in ("write", "*") or WRITE_LETTERS & set(permission.split("?")[0]):
            return True
    return False


@check("smart-scope-read-only-create", "SMART-SCOPE-ENFORCED")
@needs("Group", interaction="create")
def test_read_only_token_cannot_create(conformance_run: ConformanceRun, fhir: FhirClient, signer: smart.Signer,
                                       target_data: TargetData, ledger: Ledger):
    advertised = _strings(_discovered(conformance_run).get("scopes_supported")) or []
    scope = next((s for s in READ_ONLY_SCOPES if s in advertised), READ_ONLY_SCOPES[1])
    response = smart.post_token(fhir, signer.aud, smart.token_form(signer.assertion(), scope))
    body = json_or_none(response)
    if response.status_code != 200 or not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        pytest.skip(f"the token endpoint does not grant the read-only scope {scope!r} to this client "
                    f"({response.status_code} {smart.oauth_error(response) or ''})")
    granted = body.get("scope") if isinstance(body.get("scope"), str) else scope
    if _grants_write(granted):
        pytest.skip(f"asked for {scope!r}, the token endpoint granted {granted!r}, which includes writes")
    fhir.redact.add(body["access_token"])
    reader = fhir.with_token(body["access_token"])
    created = reader.create(group_body(PATIENT_GROUP, f"{target_data.run_prefix} read-only scope {secrets.token_hex(4)}"))
    if created.status_code == 201 and created_id(created, "Group"):
        ledger.created_group(created_id(created, "Group"), {})
    expect("SMART-SCOPE-ENFORCED", created.status_code == 403,
           f"a Group create with a token granted only {granted!r} answered {created.status_code}, expected 403",
           reader.recorder.last)
