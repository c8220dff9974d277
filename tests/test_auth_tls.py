"""SMART Backend Services (signed JWT assertions verified by the mock's token endpoint),
token refresh, and TLS: CA bundle, mutual TLS against the mock's TLS listener, --insecure."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import warnings

import httpx
import pytest

from conformance import smart
from conformance.client import AuthError, FhirClient, Politeness, Redactor, TargetError, TokenSource, tls_context
from conformance.options import Settings
from conformance.session import ConformanceRun
from mock_server import MockConfig
from mock_server.server import run_in_thread, run_tls_in_thread

from keys import ec_pem, pki, rsa_jwk
from suite_runner import TOKENS, run_suite


def smart_run(base_url: str, client_id: str, key_path, **extra) -> ConformanceRun:  # type: ignore[no-untyped-def]
    return ConformanceRun(Settings(target=base_url, client_id=client_id, private_key=str(key_path), **extra))


def test_rs384_jwk_assertion_is_accepted_and_token_url_is_discovered(tmp_path):
    key = rsa_jwk(tmp_path)
    config = MockConfig(db=":memory:", tokens=TOKENS, jwks_clients={"smart-app": (key.jwks, "system/*.read")})
    with run_in_thread(config) as base_url:
        run = smart_run(base_url, "smart-app", key.private_path)      # no token URL: smart-configuration
        response = run.client.search("Group", {"_count": 1})
        assert response.status_code == 200, response.text
        assert run.client.tokens.token_url == f"{base_url}/auth/token/"
        # the granted scope is read-only: the mock really bound the token to this client
        assert run.client.create({"resourceType": "Group", "type": "person", "actual": True,
                                  "name": "x"}).status_code == 403
        # the key material and the token are known to the redactor, so no output can show them
        private = json.loads(key.private_text)
        for member in ("d", "p", "q", "dp", "dq", "qi"):
            assert run.redact(f"x{private[member]}x") == "x[REDACTED]x", member
        rendered = "".join(e.render() + e.curl() for e in run.recorder.exchanges)
        assert run.client.tokens._token not in rendered


def test_es384_pem_assertion_with_explicit_kid_and_token_url(tmp_path):
    key = ec_pem(tmp_path)
    config = MockConfig(db=":memory:", tokens=TOKENS, jwks_clients={"ec-app": (key.jwks, "")})
    with run_in_thread(config) as base_url:
        run = smart_run(base_url, "ec-app", key.private_path, key_id=key.kid, token_url=f"{base_url}/auth/token/")
        assert run.client.search("Group", {"_count": 1}).status_code == 200
        body = [line for line in key.private_text.splitlines() if not line.startswith("-----") and len(line) >= 16]
        assert all(run.redact(line) == "[REDACTED]" for line in body)


def test_assertion_signed_by_an_unregistered_key_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    registered = rsa_jwk(tmp_path / "a")
    other = rsa_jwk(tmp_path / "b")            # same kid, different key: the signature must not verify
    config = MockConfig(db=":memory:", tokens=TOKENS, jwks_clients={"smart-app": (registered.jwks, "")})
    with run_in_thread(config) as base_url:
        run = smart_run(base_url, "smart-app", other.private_path)
        with pytest.raises(AuthError, match=r"answered 401 \(invalid_client: invalid client_assertion"):
            run.client.search("Group")


def test_replayed_assertion_is_refused_by_the_mock(tmp_path):
    key = rsa_jwk(tmp_path)
    config = MockConfig(db=":memory:", tokens=TOKENS, jwks_clients={"smart-app": (key.jwks, "")})
    with run_in_thread(config) as base_url:
        source = TokenSource(client_id="smart-app", token_url=f"{base_url}/auth/token/",
                             private_key=str(key.private_path))
        assertion = source.assertion(Redactor([]))
        form = {"grant_type": "client_credentials", "client_assertion": assertion,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
        assert httpx.post(f"{base_url}/auth/token/", data=form).status_code == 200
        replay = httpx.post(f"{base_url}/auth/token/", data=form)
        assert replay.status_code == 401 and "jti" in replay.json()["error_description"]


def test_token_is_refreshed_when_it_expires_mid_run():
    """Tokens live 1 s; 1.5 s of polite requests need a second token and never see a 401."""
    config = MockConfig(db=":memory:", tokens=TOKENS, clients={"c": ("s3cret", "")}, token_ttl=1)
    with run_in_thread(config) as base_url:
        client = FhirClient(base_url, TokenSource(None, "c", "s3cret", f"{base_url}/auth/token/"),
                            polite=Politeness(max_rps=20))
        started = time.monotonic()
        statuses = set()
        while time.monotonic() - started < 1.5:
            statuses.add(client.search("Group", {"_count": 1}).status_code)
        assert statuses == {200}
        assert client.tokens.fetched >= 2


def test_token_refused_with_401_is_refreshed_once():
    """The client believes its token valid; the server expired it: one fresh token, no 401 seen."""
    config = MockConfig(db=":memory:", tokens=TOKENS, clients={"c": ("s3cret", "")}, token_ttl=1)
    with run_in_thread(config) as base_url:
        client = FhirClient(base_url, TokenSource(None, "c", "s3cret", f"{base_url}/auth/token/"),
                            polite=Politeness(max_rps=20))
        assert client.search("Group").status_code == 200
        client.tokens._expires = time.monotonic() + 3600          # stale belief
        deadline = time.monotonic() + 3
        while client.tokens.fetched < 2 and time.monotonic() < deadline:
            assert client.search("Group", {"_count": 1}).status_code == 200
        assert client.tokens.fetched == 2


# -- TLS -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_mock(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pki")
    certs = pki(tmp)
    config = MockConfig(db=":memory:", tokens=TOKENS)
    with run_tls_in_thread(config, str(certs.server_cert), str(certs.server_key), str(certs.ca)) as url:
        yield url, certs


def _metadata(url: str, **tls) -> int:  # type: ignore[no-untyped-def]
    client = FhirClient(url, TokenSource(None), timeout=5, verify=tls_context(**tls))
    try:
        return client.get("metadata", auth=False).status_code
    finally:
        client.close()


def test_mutual_tls_with_ca_bundle_and_client_certificate(tls_mock):
    url, certs = tls_mock
    assert url.startswith("https://")
    assert _metadata(url, ca_bundle=str(certs.ca), client_cert=str(certs.client_cert),
                     client_key=str(certs.client_key)) == 200


def test_mutual_tls_without_client_certificate_is_refused(tls_mock):
    url, certs = tls_mock
    with pytest.raises(TargetError) as info:
        _metadata(url, ca_bundle=str(certs.ca))
    assert "\n" not in str(info.value)


def test_untrusted_server_certificate_is_a_one_line_error(tls_mock):
    url, certs = tls_mock
    with pytest.raises(TargetError, match="TLS certificate not trusted"):
        _metadata(url, ca_bundle=str(certs.other_ca), client_cert=str(certs.client_cert),
                  client_key=str(certs.client_key))


def test_insecure_run_works_and_every_report_says_so_loudly(tls_mock, tmp_path):
    url, certs = tls_mock
    run = run_suite(tmp_path / "reports", "--insecure", "--client-cert", str(certs.client_cert),
                    "--client-key", str(certs.client_key), "--seed", "5", "--examples", "1",
                    "--requirement", "CANVAS-GROUP-CREATE", target=url)
    assert run.exit_code == 0, run.output[-3000:]
    assert run.summary["tls"]["insecure"] is True
    assert "TLS certificate verification was DISABLED" in run.output
    assert "TLS CERTIFICATE VERIFICATION WAS DISABLED" in (run.report_dir / "report.html").read_text()


def test_smart_run_end_to_end_keeps_key_material_out_of_every_report(tmp_path):
    key = rsa_jwk(tmp_path)
    config = MockConfig(db=":memory:", tokens=TOKENS, jwks_clients={"smart-app": (key.jwks, "")})
    with run_in_thread(config) as base_url:
        run = run_suite(tmp_path / "reports", "--client-id", "smart-app", "--private-key", str(key.private_path),
                        "--seed", "9", "--examples", "1", "--requirement", "CANVAS-GROUP-CREATE",
                        target=base_url, token=None, limited=None)
    assert run.exit_code == 0, run.output[-3000:]
    private = json.loads(key.private_text)
    for name in ("report.html", "junit.xml", "summary.json", "requirements.csv"):
        text = (run.report_dir / name).read_text()
        for member in ("d", "p", "q", "dp", "dq", "qi"):
            assert private[member] not in text, f"private key member {member} leaked into {name}"
    assert private["d"] not in run.output


def test_fhir_mock_command_serves_https_with_a_jwks_client(tmp_path):
    """The command-line options: --tls-cert/--tls-key/--tls-client-ca and --jwks-client."""
    import subprocess
    import sys

    certs, key = pki(tmp_path), rsa_jwk(tmp_path)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(key.jwks))
    proc = subprocess.Popen([sys.executable, "-m", "mock_server", "--port", "0", "--db", ":memory:",
                             "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
                             "--tls-client-ca", str(certs.ca), "--jwks-client", f"smart-app:{jwks}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        while "listening on" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "fhir-mock exited"
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("https://")
        run = ConformanceRun(Settings(target=url, client_id="smart-app", private_key=str(key.private_path),
                                      ca_bundle=str(certs.ca), client_cert=str(certs.client_cert),
                                      client_key=str(certs.client_key)))
        assert run.client.search("Group", {"_count": 1}).status_code == 200
        assert run.client.tokens.token_url == f"{url}/auth/token/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- TLS version (Bulk Data IG: TLS 1.2 or later) ------------------------------------


def test_tls_listener_passes_the_tls_checks(tls_mock, tmp_path):
    url, certs = tls_mock
    run = run_suite(tmp_path / "reports", "--ca-bundle", str(certs.ca), "--client-cert", str(certs.client_cert),
                    "--client-key", str(certs.client_key), "--seed", "5", "--requirement", "BULK-TLS",
                    "--requirement", "BULK-TLS-HTTP", target=url)
    assert run.exit_code == 0, run.output[-3000:]
    assert run.verdicts()["BULK-TLS"] == "pass" and run.verdicts()["BULK-TLS-HTTP"] == "pass"


def test_plain_http_target_gets_the_tls_warning_not_a_failure(tmp_path):
    config = MockConfig(db=":memory:", tokens=TOKENS)
    with run_in_thread(config) as base_url:
        run = run_suite(tmp_path / "reports", "--seed", "5", "--requirement", "BULK-TLS",
                        "--requirement", "BULK-TLS-HTTP", target=base_url)
    assert run.exit_code == 0, run.output[-3000:]
    verdicts = {r["id"]: r for r in run.summary["requirements"]}
    assert verdicts["BULK-TLS-HTTP"]["verdict"] == "warn"
    assert verdicts["BULK-TLS"]["verdict"] == "skip" and "plain http" in verdicts["BULK-TLS"]["reason"]
    assert "SHALL be secured using TLS 1.2" in json.dumps(run.summary)      # the warning quotes the SHALL


def test_the_mock_tls_listener_refuses_tls_1_1(tls_mock):
    url, certs = tls_mock
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    ctx.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version, ctx.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")


@pytest.fixture
def legacy_tls_server(tmp_path):
    """A bare TLS 1.0/1.1-only listener (this Python's OpenSSL still serves it at security level 0):
    a stand-in for an old server, outside the mock, so the probe can be shown to catch it."""
    certs = pki(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certs.server_cert), str(certs.server_key))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version, ctx.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            try:
                with ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}", certs
    stop.set()
    thread.join(timeout=5)
    listener.close()


def test_tls_probe_catches_a_tls_1_1_only_server(legacy_tls_server):
    url, certs = legacy_tls_server
    run = ConformanceRun(Settings(target=url, ca_bundle=str(certs.ca)))
    version = smart.negotiated_tls(run, url)
    assert version == "TLSv1.1"
    assert not smart.tls_is_modern(version)


def test_tls_probe_sees_the_mock_at_1_2_or_later(tls_mock):
    url, certs = tls_mock
    run = ConformanceRun(Settings(target=url, ca_bundle=str(certs.ca), client_cert=str(certs.client_cert),
                                  client_key=str(certs.client_key)))
    assert smart.tls_is_modern(smart.negotiated_tls(run, url))


@pytest.mark.parametrize("version, modern", [("TLSv1.3", True), ("TLSv1.2", True), ("TLSv1.1", False),
                                             ("TLSv1", False), ("SSLv3", False), (None, False)])
def test_tls_classification(version, modern):
    assert smart.tls_is_modern(version) is modern


def test_a_tls_1_1_only_target_fails_bulk_tls_instead_of_being_unreachable(legacy_tls_server, tmp_path):
    """The suite's client refuses TLS below 1.2, so such a target could only look unreachable; the
    pre-flight probe names the cause: BULK-TLS fails (exit 1) and nothing is sent over it."""
    url, certs = legacy_tls_server
    run = run_suite(tmp_path / "reports", "--ca-bundle", str(certs.ca), "--seed", "5", target=url)
    assert run.exit_code == 1, run.output
    assert "negotiates TLSv1.1 at most" in run.output and "BULK-TLS" in run.output
    assert "unreachable" not in run.output.lower()
    verdicts = {r["id"]: r["verdict"] for r in run.summary["requirements"]}
    assert verdicts["BULK-TLS"] == "fail" and run.summary["verdict"]["label"] == "FAIL"
    assert {v for rid, v in verdicts.items() if rid != "BULK-TLS"} == {"untested"}


def test_a_target_without_any_handshake_is_still_unreachable(tmp_path):
    """The probe only speaks up when a handshake completes: a closed port stays 'unreachable' (exit 3)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    run = run_suite(tmp_path / "reports", "--seed", "5", target=f"https://127.0.0.1:{port}")
    assert run.exit_code == 3 and "unreachable" in run.output.lower(), run.output
